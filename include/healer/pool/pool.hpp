#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
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

/// The counters of one server's pool since the registry started: what the pool keeps per server
/// (PoolStats adds the gauges, computed when asked, and the latency histograms).
struct PoolCounters {
  std::uint64_t acquisitions = 0;        ///< leases handed out
  std::uint64_t served_by_existing = 0;  ///< leases on a session that had served before
  std::uint64_t commands = 0;  ///< leases returned after running (or trying) a command; refused
                               ///< channels are not counted
  std::uint64_t channels_refused = 0;  ///< leases given back because the server refused the channel
  /// Once every handshake ended: started == sessions_opened + handshakes_failed +
  /// handshakes_cancelled.
  std::uint64_t handshakes_started = 0;
  std::uint64_t handshakes_failed = 0;
  /// Handshakes abandoned: every caller they were opened for left (deadline or cancellation),
  /// the server's settings changed, or the registry shut down.
  std::uint64_t handshakes_cancelled = 0;
  /// Connection attempts repeated because the server dropped the connection before any
  /// credential was sent (MaxStartups); never after an authentication attempt.
  std::uint64_t handshakes_retried = 0;
  std::uint64_t sessions_opened = 0;
  std::uint64_t exhausted = 0;           ///< acquires that ended in pool_exhausted
  std::uint64_t timeouts = 0;            ///< leases returned after a command timeout
  std::uint64_t acquires_cancelled = 0;  ///< acquires ended through their cancellation slot
  std::uint64_t commands_cancelled = 0;  ///< leases returned after their command was cancelled
  std::uint64_t channel_limit_lowered = 0;
  std::uint64_t spares_opened = 0;  ///< spare channels the pool asked its sessions to open
  /// Leases granted with a spare channel promised to them (their command skips the channel-open
  /// round trip unless the server closed the spare meanwhile).
  std::uint64_t leases_on_spare = 0;
  std::uint64_t spares_closed = 0;  ///< spares closed unused (demand went down, drain, close)
  /// Spares the server refused (sshd logs them as "no more sessions" like refused channels); a
  /// connection that had one refused gets no more spares.
  std::uint64_t spares_refused = 0;
  std::uint64_t health_checks = 0;
  std::uint64_t health_check_failures = 0;
  std::uint64_t direct_connections = 0;
  std::uint64_t cleanup_runs = 0;
  std::uint64_t sessions_cleaned = 0;
  std::uint64_t evictions[kEvictionKinds] = {};
};

/// Counters and gauges of one server's pool (or of all of them), cheap to read at any time: what
/// a /metrics exporter or a dashboard shows. In Registry::total_stats() every field is the sum
/// over servers, except where noted.
struct PoolStats : PoolCounters {
  // --- gauges: the pool right now --------------------------------------------------------
  /// Sessions by state (connecting -> ready <-> draining -> closed; closed ones are gone). A
  /// ready session found dead but not yet closed counts as draining.
  std::size_t sessions_connecting = 0;
  std::size_t sessions_ready = 0;
  std::size_t sessions_draining = 0;
  std::size_t channels_in_use = 0;  ///< leases out (one channel each)
  /// Channels the ready sessions can carry at once: the sum of their channel limits.
  std::size_t channel_capacity = 0;
  /// Channels per connection the server allows: PoolConfig::max_channels until the server
  /// refused one (MaxSessions) and the pool learned its real limit. In a total: the lowest.
  std::size_t channel_limit = 0;
  std::size_t waiters = 0;  ///< callers queued in async_acquire
  /// Spare channels (opened ahead of time, no command yet; PoolConfig::spare_channels) on the
  /// ready sessions, opening or open and not yet promised to a lease; each holds a channel slot.
  std::size_t spare_channels = 0;
  std::size_t spare_channels_ready = 0;  ///< of the spares, those the server confirmed
  /// 1 while an auth or host-key failure blocks new connections (the circuit is open); in a
  /// total, the servers blocked.
  std::size_t circuits_open = 0;
  /// 1 while connection failures hold back the next attempt (exponential backoff); in a total,
  /// the servers backing off.
  std::size_t backing_off = 0;
  /// While circuits_open: how long, as of this snapshot, until the next attempt is let through
  /// (add_server with new settings closes the circuit at once). In a total: the longest.
  std::chrono::milliseconds circuit_retry_in{0};
  /// While backing_off: how long, as of this snapshot, until the next connection attempt is
  /// allowed. In a total: the longest.
  std::chrono::milliseconds backoff_retry_in{0};

  // --- latency since the registry started (counters: see PoolCounters) ----------------------
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
  /// Returns the slot after the caller cancelled the command (the session already signalled it):
  /// counted, and the session is drained like after a timeout.
  void cancelled() noexcept;
  /// Returns the slot now (what the destructor does).
  void release() noexcept;

 private:
  friend class Registry;
  struct Slot;
  /// How a lease ends.
  enum class Finish { release, discard, channel_refused, timed_out, cancelled };
  Lease(std::unique_ptr<Slot> slot, bool reused, std::chrono::microseconds waited) noexcept;
  void finish(Finish how) noexcept;

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
  /// Stops the cleanup timer and cancels handshakes in flight; sessions still open are aborted
  /// (commands running on them are not signalled). Prefer async_shutdown(). Destroy a registry
  /// before its io_context.
  ~Registry();

  /// Adds a server or replaces its settings. Settings that differ in anything that reaches the
  /// server (address, user, auth method, key file, key data, passphrase, password, agent identity,
  /// known_hosts, host-key policy, accepted fingerprint) drain the sessions made with the old ones,
  /// abandon handshakes in flight, and close an open circuit and any backoff: the next request
  /// connects with the new settings at once. Identical settings change nothing.
  void add_server(Server server);
  /// Removes a server (it left the inventory): waiters fail with unknown_server, idle sessions
  /// close now and busy ones once their commands end; acquires fail until it is added again.
  void remove_server(const std::string& id);
  [[nodiscard]] bool has_server(const std::string& id) const;
  [[nodiscard]] const PoolConfig& config() const noexcept;

  /// A channel slot on a live session of `server_id`: on an existing session with a free
  /// channel, else on a new session within the limits, else after queueing by priority until the
  /// deadline. Never opens an unpooled connection unless on_exhausted == direct.
  ///
  /// Errors at the deadline: ssh::Errc::connect_timeout when no session of the server was ready
  /// and the one being opened had not finished its handshake, else pool_exhausted (with how long
  /// it waited and how full the pool was). A handshake lasts at most min(connect_timeout, the
  /// latest deadline of the callers waiting for it): it is abandoned as soon as no caller waits.
  ///
  /// Cancellation: honours the awaiting coroutine's cancellation slot (terminal cancellation,
  /// e.g. asio::bind_cancellation_slot on co_spawn, or awaitable operators): a queued caller
  /// leaves the queue at once and gets ssh::Errc::cancelled; no exception is thrown.
  asio::awaitable<Result<Lease>> async_acquire(std::string server_id, Priority priority,
                                               Deadline deadline);

  /// Opens sessions until `server_id` has `count` ready ones (connection warming), within the
  /// limits; returns how many are ready.
  asio::awaitable<std::size_t> async_warm(std::string server_id, std::size_t count,
                                          Deadline deadline);

  /// Idle expiry, lifetime draining and warming, now (the timer does it every cleanup_interval).
  void run_maintenance();

  /// Stops accepting, fails every waiter with shutting_down and cancels every handshake in
  /// flight, lets leased commands finish until `deadline`, then closes every session politely:
  /// commands still running are signalled first (TERM, then KILL after their kill grace; see
  /// ssh::Session::async_close) and their callers get ssh::Errc::cancelled. Returns once every
  /// handshake, close and kill has ended, so nothing of the registry keeps running on the loop
  /// or on a server: at most `deadline` plus about 2 x the longest kill grace + 5 s.
  asio::awaitable<void> async_shutdown(Deadline deadline);

  /// Stats of one server (zeros for an unknown id), and the sum over all servers.
  [[nodiscard]] PoolStats stats(const std::string& server_id) const;
  [[nodiscard]] PoolStats total_stats() const;
  /// The sum over all servers as of at most `max_age` ago: the last total_stats() when it is
  /// that recent, else a new one. The sum reads every server's sessions (at 10,000 servers
  /// ~10 ms of the loop in cache misses), so scrapes that come together share one.
  [[nodiscard]] PoolStats total_stats(std::chrono::milliseconds max_age) const;
  /// total_stats(), taken a slice of servers at a time with other work of the loop in between
  /// (a whole sum at 10,000 servers held the loop ~20 ms): what a periodic sampler uses. The
  /// slices follow one another within milliseconds, so the sum is as of about one moment.
  [[nodiscard]] asio::awaitable<PoolStats> async_total_stats() const;
  /// Why `server_id` gets no new connection right now: the error that opened its circuit, or the
  /// last connection failure while it backs off; nullopt when neither holds (or unknown id).
  [[nodiscard]] std::optional<Error> connect_error(const std::string& server_id) const;
  [[nodiscard]] std::vector<std::string> server_ids() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace healer::pool
