#pragma once

#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "healer/core/deadline.hpp"
#include "healer/daemon/fleet.hpp"
#include "healer/service/runtime.hpp"

namespace healer::daemon {

/// Counters of this node's leases, for /metrics and the API.
struct LeaseStats {
  bool enabled = false;         ///< false: one node on a SQLite file, owning every server
  std::size_t held = 0;         ///< servers this node polls now
  std::size_t nodes = 1;        ///< live nodes on the database, this one included
  std::size_t servers = 0;      ///< servers in the inventory at the last sync
  std::uint64_t claimed = 0;    ///< leases taken (free or expired)
  std::uint64_t takeovers = 0;  ///< of those, taken from a node whose lease had expired
  std::uint64_t released = 0;   ///< given back: surplus when nodes joined, and at shutdown
  std::uint64_t lost = 0;       ///< found held by another node (this node's lease had expired)
  std::uint64_t syncs = 0;
  std::uint64_t sync_failures = 0;
  std::uint64_t refreshes = 0;  ///< reads of other nodes' latest runs and collections
};

/// This node's share of the fleet when several `healer serve` nodes use one PostgreSQL database:
/// a heartbeat every third of `[serve] lease_ttl` renews its leases and balances them
/// (store::Store::sync_leases) through the store's thread, never blocking the loop; the
/// scheduler runs scheduled work only on servers owns() says yes to. Servers other nodes poll
/// get their latest runs and collections from the store every few seconds (one query for all
/// of them). On a SQLite file (one node) it is off: the node owns everything and never asks
/// the store. Lives on the runtime's loop.
class LeaseKeeper {
 public:
  LeaseKeeper(service::Runtime& runtime, FleetState& fleet, bool enabled);
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  /// This node's id: [serve] node_id, else hostname-pid-random.
  [[nodiscard]] const std::string& node() const noexcept { return node_; }
  [[nodiscard]] bool enabled() const noexcept { return stats_.enabled; }
  /// True when this node may run scheduled work on `state` now: it holds the lease and the lease
  /// has not run out by this node's steady clock since its last successful heartbeat.
  [[nodiscard]] bool owns(const ServerState& state) const;
  /// Marks every server of the fleet with its owner (after an inventory load or a sync).
  void apply();
  /// The first heartbeat (so the scheduler starts with a share), then the heartbeat loop.
  asio::awaitable<void> async_start();
  /// Stops heartbeats and gives every lease back so other nodes take the servers at their next
  /// heartbeat (call once scheduled runs have ended).
  asio::awaitable<void> async_stop(Deadline deadline);
  [[nodiscard]] const LeaseStats& stats() const noexcept { return stats_; }

 private:
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<void> async_sync();
  asio::awaitable<void> async_refresh();

  service::Runtime& runtime_;
  FleetState& fleet_;
  std::string node_;
  std::chrono::milliseconds ttl_;
  LeaseStats stats_;
  std::set<std::int64_t> held_;                 // server ids this node holds
  std::map<std::int64_t, std::string> owners_;  // every live lease: server id -> node
  Clock::time_point valid_until_{};             // this node's leases, by its steady clock
  std::int64_t refreshed_at_ = 0;               // database time of the last refresh (Unix ms)
  Clock::time_point next_refresh_{};
  asio::steady_timer timer_;
  bool stopping_ = false;
  bool running_ = false;
  bool syncing_ = false;  // a heartbeat is waiting for the store
};

}  // namespace healer::daemon
