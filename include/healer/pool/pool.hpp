#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/core/result.hpp"
#include "healer/pool/errors.hpp"
#include "healer/ssh/options.hpp"
#include "healer/ssh/session.hpp"

namespace healer::pool {

/// Order of service when callers queue for a server: critical first, FIFO within a priority.
enum class Priority { critical = 0, normal = 1, background = 2 };

/// How to reach one server. `id` names it in the registry, logs and stats.
struct Server {
  Server() = default;

  std::string id;
  ssh::Endpoint endpoint;
  ssh::ConnectOptions connect;  ///< credentials, known_hosts and host-key policy
};

/// Why a connection left the pool.
enum class Eviction { idle = 0, lifetime, dead, error, shutdown };
inline constexpr std::size_t kEvictionKinds = 5;

/// A latency histogram with fixed log2 buckets in microseconds (bucket i: < 2^i us).
struct Histogram {
  static constexpr std::size_t kBuckets = 32;
  std::uint64_t counts[kBuckets] = {};
  std::uint64_t total = 0;
  std::uint64_t sum_us = 0;
  void record(std::chrono::microseconds value);
  /// Upper bound of the bucket holding quantile q (0..1), in microseconds.
  [[nodiscard]] std::uint64_t quantile_us(double q) const;
};

/// Counters of one server's pool (or of all of them), cheap to read at any time.
struct PoolStats {
  std::size_t sessions_connecting = 0;
  std::size_t sessions_ready = 0;
  std::size_t sessions_draining = 0;
  std::size_t channels_in_use = 0;
  std::size_t waiters = 0;
  /// Servers whose circuit is open (an auth or host-key failure blocks new attempts for now).
  std::size_t circuits_open = 0;
  /// Servers waiting out a backoff after failed connects (no connect attempt until it ends).
  std::size_t backing_off = 0;
  std::uint64_t acquisitions = 0;        ///< leases handed out
  std::uint64_t served_by_existing = 0;  ///< leases on a session that had served before
  std::uint64_t commands = 0;  ///< leases returned after running (or trying) a command; refused
                               ///< channels are not counted
  std::uint64_t channels_refused = 0;  ///< leases given back because the server refused the channel
  std::uint64_t handshakes_started = 0;
  std::uint64_t handshakes_failed = 0;
  std::uint64_t sessions_opened = 0;
  std::uint64_t exhausted = 0;  ///< acquires that ended in pool_exhausted
  std::uint64_t timeouts = 0;   ///< leases returned after a command timeout
  std::uint64_t channel_limit_lowered = 0;
  std::uint64_t health_checks = 0;
  std::uint64_t health_check_failures = 0;
  std::uint64_t direct_connections = 0;
  std::uint64_t cleanup_runs = 0;
  std::uint64_t sessions_cleaned = 0;
  std::uint64_t evictions[kEvictionKinds] = {};
  Histogram wait_time;
  Histogram handshake_time;

  /// Share of acquisitions served by a session that already existed (the seed's "hit rate").
  [[nodiscard]] double hit_rate() const;
  /// Commands per session opened (the seed's "connection reuse").
  [[nodiscard]] double reuse() const;
  PoolStats& operator+=(const PoolStats& other);
};

class Registry;

/// A channel slot on a pooled session. Move-only RAII: destroying it returns the slot and wakes
/// the next waiter; discard() drops a broken session instead. Used on the registry's executor.
class Lease {
 public:
  Lease() = default;
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  /// The session to run one command on.
  [[nodiscard]] ssh::Session& session() const;
  /// True when the session served earlier leases (no handshake for this one).
  [[nodiscard]] bool reused() const noexcept { return reused_; }
  /// Time spent queued in acquire().
  [[nodiscard]] std::chrono::microseconds waited() const noexcept { return waited_; }
  [[nodiscard]] explicit operator bool() const noexcept { return slot_ != nullptr; }

  /// Returns the slot and closes the session once its other channels are done.
  void discard() noexcept;
  /// Tells the pool the server refused a channel at this session's current load (MaxSessions):
  /// the server's channel limit is lowered; then returns the slot.
  void channel_refused() noexcept;
  /// Returns the slot after a command timed out: counted, and the session is drained (a timeout
  /// may mean a dying connection).
  void timed_out() noexcept;
  /// Returns the slot now (what the destructor does).
  void release() noexcept;

 private:
  friend class Registry;
  struct Slot;
  Lease(std::unique_ptr<Slot> slot, bool reused, std::chrono::microseconds waited) noexcept;
  void finish(int how) noexcept;

  std::unique_ptr<Slot> slot_;
  bool reused_ = false;
  std::chrono::microseconds waited_{0};
};

/// The per-server pools, keyed by server id. Owns every pooled session. All members must be used
/// on the executor given to the constructor (one io_context thread; no locks).
class Registry {
 public:
  Registry(asio::any_io_executor executor, PoolConfig config);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  /// Stops the cleanup timer; sessions still open are aborted. Prefer async_shutdown().
  ~Registry();

  /// Adds a server or replaces its settings. New credentials close an open circuit.
  void add_server(Server server);
  /// Removes a server (it left the inventory): waiters fail with unknown_server, idle sessions
  /// close now and busy ones once their commands end; acquires fail until it is added again.
  void remove_server(const std::string& id);
  [[nodiscard]] bool has_server(const std::string& id) const;
  [[nodiscard]] const PoolConfig& config() const noexcept;

  /// A channel slot on a live session of `server_id`: on an existing session with a free
  /// channel, else on a new session within the limits, else after queueing by priority until the
  /// deadline (pool_exhausted). Never opens an unpooled connection unless on_exhausted == direct.
  asio::awaitable<Result<Lease>> async_acquire(std::string server_id, Priority priority,
                                               Deadline deadline);

  /// Opens sessions until `server_id` has `count` ready ones (connection warming), within the
  /// limits; returns how many are ready.
  asio::awaitable<std::size_t> async_warm(std::string server_id, std::size_t count,
                                          Deadline deadline);

  /// Idle expiry, lifetime draining and warming, now (the timer does it every cleanup_interval).
  void run_maintenance();

  /// Stops accepting, lets leased commands finish until `deadline`, closes every session
  /// politely, fails every waiter with shutting_down.
  asio::awaitable<void> async_shutdown(Deadline deadline);

  /// Stats of one server (zeros for an unknown id), and the sum over all servers.
  [[nodiscard]] PoolStats stats(const std::string& server_id) const;
  [[nodiscard]] PoolStats total_stats() const;
  [[nodiscard]] std::vector<std::string> server_ids() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace healer::pool
