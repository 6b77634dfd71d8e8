#pragma once

#include <memory>
#include <string>
#include <vector>

#include "healer/daemon/control_server.hpp"
#include "healer/daemon/fleet.hpp"
#include "healer/daemon/http.hpp"
#include "healer/daemon/leases.hpp"
#include "healer/daemon/notifier.hpp"
#include "healer/daemon/remote_writer.hpp"
#include "healer/daemon/scheduler.hpp"
#include "healer/pool/pool.hpp"
#include "healer/store/store.hpp"

// /metrics: healer's own metrics (pool, scheduler, HTTP, notifications) and every server's latest
// collected node_exporter-named series with a `server` label, in the Prometheus text format.
namespace healer::daemon {

/// What one scrape shows, copied on the loop (cheap: the servers' series are shared, already
/// rendered) and rendered off it.
struct ExpositionSnapshot {
  struct Server {
    std::string name;
    std::optional<int> status;      ///< the latest diagnosis' status (Nagios code), if any
    std::int64_t diagnosed_at = 0;  ///< when it started, Unix ms
    std::optional<std::int64_t> collected_at;
    bool collection_failed = false;
    std::shared_ptr<const NodeExposition> series;  ///< its latest collection's, shared
    pool::PoolStats pool;
  };
  std::vector<Server> servers;
  pool::PoolStats pool_total;
  SchedulerStats scheduler;
  HttpStats http;
  NotifierStats notifier;
  std::optional<RemoteWriteStats> remote_write;  ///< unset: remote write is off
  ControlStats control;
  store::StoreStats store;
  std::string node;                 ///< this node's id ("" in snapshots without healer metrics)
  LeaseStats leases;                ///< this node's share of the fleet
  bool with_healer_metrics = true;  ///< false for /probe (one server's series only)
  /// Which series: all; only those of no server (`/metrics?servers=none`); or only the
  /// per-server ones of the servers listed (a shard, `/metrics?shard=I&shards=N`).
  enum class Part { all, fleet, servers };
  Part part = Part::all;
  std::size_t servers_owned = 0;  ///< servers this node polls, whichever part is shown
};

/// Which of `shards` a server's series are on: FNV-1a (64-bit) of its name, modulo `shards`.
/// Stable across restarts, versions and nodes (documented in docs/scaling.md).
[[nodiscard]] std::size_t shard_of(std::string_view server, std::size_t shards);

/// The Prometheus text exposition (version 0.0.4) of a snapshot.
[[nodiscard]] std::string render_exposition(const ExpositionSnapshot& snapshot);

}  // namespace healer::daemon
