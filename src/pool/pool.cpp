#include "healer/pool/pool.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <bit>
#include <cassert>
#include <cmath>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <queue>
#include <random>
#include <set>

#include "healer/core/log.hpp"
#include "healer/ssh/cancellation.hpp"
#include "sparse_histogram.hpp"

namespace healer::pool {
namespace {

using asio::awaitable;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

// sshd frees a channel's MaxSessions slot only after a pass over its channels that follows our
// close; an open that arrives in the same read as the close is refused. A slot therefore cools
// down this long after its lease ends before it is handed out again on a full session.
constexpr auto kSlotCooldown = std::chrono::milliseconds(2);
// Refusals of channels granted within this time after a close are not taken as the limit.
constexpr auto kCloseRaceWindow = std::chrono::milliseconds(50);
// Spare channels follow demand: a session keeps as many as the most leases it had at once in the
// current or the previous window of this length (or of half the idle timeout, if shorter), so
// spares of a session without commands are closed within two windows.
constexpr auto kSpareWindow = std::chrono::seconds(60);
// Demand windows that end close together are applied in one pass (a spare closes at most this
// late, or an eighth of the window if shorter), a few sessions at a time between other work.
constexpr auto kSparePassGap = std::chrono::milliseconds(250);
constexpr std::size_t kSpareVisitsPerTurn = 32;
// Servers summed per turn of the loop in async_total_stats (~1 ms at 10,000 servers).
constexpr std::size_t kTotalSlice = 500;
// A channel close older than this has been read by the server (see PooledSession::unsettled).
constexpr auto kUnsettledAtMost = std::chrono::seconds(1);
// A connection the server dropped before any credential was sent (MaxStartups' random early
// drop, a reset during key exchange) is tried again at most this often, after a pause that
// doubles each time (250 ms, 500 ms, 1 s, 2 s), x0.5..1.5 so that a burst of clients spreads
// out. sshd's stock MaxStartups (10:30:100) drops ~30 % of the startups when 30 clients arrive at
// once; two retries left about one in 30 such clients failed (dropped three times in a row).
constexpr int kDropRetries = 4;
constexpr auto kDropRetryPause = std::chrono::milliseconds(250);
// How long async_shutdown waits, beyond its deadline, for closes, kills and cancelled
// handshakes to end (each is bounded on its own; this only guards against a broken invariant).
constexpr auto kShutdownGrace = std::chrono::seconds(30);

std::shared_ptr<spdlog::logger> logger() {
  static const auto instance = log::get("pool");
  return instance;
}

std::int64_t ms_since(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

// Credentials or host identity are wrong: retrying cannot help and would look like an attack.
bool opens_circuit(const Error& error) {
  if (error.code.category() != ssh::error_category()) {
    return false;
  }
  switch (static_cast<ssh::Errc>(error.code.value())) {
    case ssh::Errc::auth_failed:
    case ssh::Errc::host_key_changed:
    case ssh::Errc::host_unknown:
    case ssh::Errc::key_invalid:
      return true;
    default:
      return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Stats

void Histogram::record(std::chrono::microseconds value) {
  const auto us = detail::microseconds_of(value);
  ++counts[detail::bucket_of(us)];
  ++total;
  sum_us += us;
}

std::uint64_t Histogram::quantile_us(double q) const {
  if (total == 0) {
    return 0;
  }
  const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts[i];
    if (seen >= std::max<std::uint64_t>(1, rank)) {
      return i == 0 ? 0 : (std::uint64_t{1} << i);
    }
  }
  return std::uint64_t{1} << (kBuckets - 1);
}

double PoolStats::hit_rate() const {
  return acquisitions == 0
             ? 0.0
             : static_cast<double>(served_by_existing) / static_cast<double>(acquisitions);
}

double PoolStats::reuse() const {
  return sessions_opened == 0
             ? 0.0
             : static_cast<double>(commands) / static_cast<double>(sessions_opened);
}

PoolStats& PoolStats::operator+=(const PoolStats& other) {
  sessions_connecting += other.sessions_connecting;
  sessions_ready += other.sessions_ready;
  sessions_draining += other.sessions_draining;
  channels_in_use += other.channels_in_use;
  channel_capacity += other.channel_capacity;
  if (other.channel_limit > 0) {
    channel_limit =
        channel_limit == 0 ? other.channel_limit : std::min(channel_limit, other.channel_limit);
  }
  waiters += other.waiters;
  circuits_open += other.circuits_open;
  backing_off += other.backing_off;
  circuit_retry_in = std::max(circuit_retry_in, other.circuit_retry_in);
  backoff_retry_in = std::max(backoff_retry_in, other.backoff_retry_in);
  acquisitions += other.acquisitions;
  served_by_existing += other.served_by_existing;
  commands += other.commands;
  channels_refused += other.channels_refused;
  handshakes_started += other.handshakes_started;
  handshakes_failed += other.handshakes_failed;
  handshakes_cancelled += other.handshakes_cancelled;
  handshakes_retried += other.handshakes_retried;
  sessions_opened += other.sessions_opened;
  exhausted += other.exhausted;
  timeouts += other.timeouts;
  acquires_cancelled += other.acquires_cancelled;
  commands_cancelled += other.commands_cancelled;
  channel_limit_lowered += other.channel_limit_lowered;
  spare_channels += other.spare_channels;
  spare_channels_ready += other.spare_channels_ready;
  spares_opened += other.spares_opened;
  leases_on_spare += other.leases_on_spare;
  spares_closed += other.spares_closed;
  spares_refused += other.spares_refused;
  health_checks += other.health_checks;
  health_check_failures += other.health_check_failures;
  direct_connections += other.direct_connections;
  cleanup_runs += other.cleanup_runs;
  sessions_cleaned += other.sessions_cleaned;
  for (std::size_t i = 0; i < kEvictionKinds; ++i) {
    evictions[i] += other.evictions[i];
  }
  for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
    wait_time.counts[i] += other.wait_time.counts[i];
    handshake_time.counts[i] += other.handshake_time.counts[i];
  }
  wait_time.total += other.wait_time.total;
  wait_time.sum_us += other.wait_time.sum_us;
  handshake_time.total += other.handshake_time.total;
  handshake_time.sum_us += other.handshake_time.sum_us;
  return *this;
}

// ---------------------------------------------------------------------------------------------
// Internal state

namespace {

// A pooled session's state; changed only by Registry::Impl::set_state().
enum class SessionState { connecting = 0, ready, draining, closed };
constexpr std::size_t kSessionStates = 4;

// One connection in a server's pool, from its handshake on.
struct PooledSession : std::enable_shared_from_this<PooledSession> {
  explicit PooledSession(bool for_warming, std::uint64_t settings)
      : warming(for_warming), generation(settings) {}

  SessionState state = SessionState::connecting;
  std::optional<ssh::Session> session;  // set when the handshake succeeded

  // --- while connecting
  bool warming;                      // for min_idle / async_warm: not abandoned when waiters leave
  std::uint64_t generation;          // ServerPool::generation of the settings it connects with
  bool abandoned = false;            // cancelled: no caller needs it, settings changed, shutdown
  asio::cancellation_signal cancel;  // bound to the handshake coroutine's cancellation slot

  // --- once ready
  std::size_t in_use = 0;         // leases out on this session
  std::size_t channel_limit = 0;  // lowered when the server refuses a channel
  std::uint64_t leases = 0;       // leases granted so far
  Clock::time_point last_used{};
  Clock::time_point retire_at = Clock::time_point::max();
  Clock::duration idle_before_grant{};  // how long it sat unused before the latest lease
  // when recent leases ended, oldest first; their slots are cooling down (kSlotCooldown)
  std::list<Clock::time_point> cooling;
  Clock::time_point last_release{};  // when a lease on it last ended

  // --- spare channels (PoolConfig::spare_channels), sized from recent demand
  std::size_t peak_now = 0;               // most leases at once in the current window
  std::size_t peak_before = 0;            // most leases at once in the window before
  Clock::time_point window_start{};       // of the current window
  bool spares_refused = false;            // the server refused a spare: no more spares here
  bool spare_check_queued = false;        // in Registry::Impl::spare_checks_
  std::uint64_t spares_refused_seen = 0;  // the session's spares_refused counted so far
  // When channels were closed (ours or the server's, answered), oldest first, until a round trip
  // sent after them came back. sshd frees a closed channel's slot a loop pass after it read the
  // close; an open read together with the close is refused. Leases retry such a refusal (and use
  // the 2 ms cooling above); a spare must never be refused, so spares count these slots as taken
  // until a ping sent after the close was answered: sshd then read the close in an earlier pass.
  std::list<Clock::time_point> unsettled;
  bool settling = false;  // a ping for `unsettled` is in flight

  // Starts a new demand window once the current one is over.
  void roll_demand(Clock::time_point now, Clock::duration window) {
    if (now - window_start < window) {
      return;
    }
    peak_before = now - window_start < 2 * window ? peak_now : 0;
    peak_now = in_use;
    window_start = now;
  }
  // Spares wanted now: the recent peak of leases at once, at most `cap`.
  [[nodiscard]] std::size_t spare_target(std::size_t cap) const {
    return std::min(cap, std::max(peak_now, peak_before));
  }

  // Ready and alive: may take new leases.
  [[nodiscard]] bool usable() const { return state == SessionState::ready && session->alive(); }
  // Has (or had) a connection: ready or draining.
  [[nodiscard]] bool connected() const {
    return state == SessionState::ready || state == SessionState::draining;
  }

  // Channel slots taken or promised on the server: every lease holds (or will open) one channel,
  // unless it was promised a spare; reaped (timed-out) channels, closing spares and reserved ones
  // are among the active channels; unreserved spares hold one each; and so do slots whose close
  // the server may not have processed yet (cooling).
  [[nodiscard]] std::size_t committed(Clock::time_point now) {
    while (!cooling.empty() && cooling.front() + kSlotCooldown <= now) {
      cooling.pop_front();
    }
    const std::size_t spares = session->spare_channels();
    const std::size_t active = session->active_channels();
    const std::size_t others = active - std::min(spares, active);
    return std::max(in_use, others) + spares + cooling.size();
  }
  // committed() for opening a spare: closes count until a round trip confirmed them.
  [[nodiscard]] std::size_t committed_for_spares() const {
    const std::size_t spares = session->spare_channels();
    const std::size_t active = session->active_channels();
    const std::size_t others = active - std::min(spares, active);
    return std::max(in_use, others) + spares + unsettled.size();
  }
  // Leases it can take now: free slots, plus its unreserved spares (a lease granted here is
  // promised one, which costs the server no new slot).
  [[nodiscard]] std::size_t free_slots(Clock::time_point now) {
    const std::size_t busy = committed(now);
    return (busy >= channel_limit ? 0 : channel_limit - busy) + session->spare_channels();
  }
};

// One caller queued in acquire().
struct Waiter {
  Priority priority = Priority::normal;
  Deadline deadline;
  asio::steady_timer* timer = nullptr;
  std::shared_ptr<PooledSession> granted;
  std::optional<Error> failed;
  bool done = false;
};

// Same address and everything that reaches the server: re-registering such a server changes
// nothing (a daemon re-adds its whole inventory on every reload). Keepalive settings are the
// pool's, not the server's.
bool same_target(const Server& a, const Server& b) {
  const auto& x = a.connect;
  const auto& y = b.connect;
  return a.endpoint.host == b.endpoint.host && a.endpoint.port == b.endpoint.port &&
         x.user == y.user && x.auth == y.auth && x.identity_file == y.identity_file &&
         x.private_key == y.private_key && x.passphrase == y.passphrase &&
         x.password == y.password && x.agent_socket == y.agent_socket &&
         x.known_hosts_file == y.known_hosts_file && x.host_key_policy == y.host_key_policy &&
         x.accept_fingerprint == y.accept_fingerprint &&
         x.process_ssh_config == y.process_ssh_config;
}

}  // namespace

// One server's pool.
struct ServerPool {
  explicit ServerPool(Server config, std::size_t channel_limit)
      : server(std::move(config)), learned_channel_limit(channel_limit) {}

  Server server;
  std::uint64_t generation = 0;  // bumped when the settings change
  // every session not closed yet (connecting, ready, draining), in creation order
  std::vector<std::shared_ptr<PooledSession>> sessions;
  std::array<std::size_t, kSessionStates> in_state{};  // sessions per state, kept by set_state()
  std::size_t active = 0;                              // leases out on this server
  // waiters per priority, FIFO within each. Lists, not deques: an empty std::deque holds ~580
  // bytes, and every server of a large fleet has these (and each session two more below).
  std::array<std::list<Waiter*>, 3> queues;
  std::size_t learned_channel_limit;
  std::optional<Error> circuit;  // auth or host-key failure: no attempts until circuit_until
  Clock::time_point circuit_until{};
  std::optional<Error> last_connect_error;
  int consecutive_failures = 0;
  Clock::time_point retry_at{};
  Clock::time_point next_command_at{};
  bool cooldown_wake_pending = false;
  bool removed = false;  // remove_server(): drained, refuses acquires until added again
  // Counters; the gauges are computed in stats_of(). One of these per server of a fleet.
  PoolCounters stats;
  detail::SparseHistogram wait_time;
  detail::SparseHistogram handshake_time;

  [[nodiscard]] std::size_t waiting() const {
    return queues[0].size() + queues[1].size() + queues[2].size();
  }
  [[nodiscard]] std::size_t connecting() const {
    return in_state[static_cast<std::size_t>(SessionState::connecting)];
  }
  [[nodiscard]] std::size_t connected_count() const { return sessions.size() - connecting(); }
  [[nodiscard]] std::size_t ready_count() const {
    return static_cast<std::size_t>(
        std::count_if(sessions.begin(), sessions.end(), [](const auto& s) { return s->usable(); }));
  }
  // The latest deadline of the callers queued now: how long a handshake opened for them may be
  // worth waiting for. Deadline::never() when nobody waits.
  [[nodiscard]] Deadline latest_waiter_deadline() const {
    std::optional<Deadline> latest;
    for (const auto& queue : queues) {
      for (const Waiter* waiter : queue) {
        if (!latest || latest->at() < waiter->deadline.at()) {
          latest = waiter->deadline;
        }
      }
    }
    return latest.value_or(Deadline::never());
  }
  [[nodiscard]] bool circuit_open(Clock::time_point now) const {
    return circuit && now < circuit_until;
  }
  [[nodiscard]] bool backing_off(Clock::time_point now) const {
    return last_connect_error && now < retry_at;
  }
};

struct Lease::Slot {
  Clock::time_point granted_at = Clock::now();
  std::shared_ptr<Registry::Impl> registry;
  ServerPool* server = nullptr;
  std::shared_ptr<PooledSession> pooled;
  std::optional<ssh::Session> direct;  // on_exhausted == direct only: an unpooled connection
};

class Registry::Impl : public std::enable_shared_from_this<Registry::Impl> {
 public:
  Impl(asio::any_io_executor executor, PoolConfig config)
      : executor_(std::move(executor)),
        config_(std::move(config)),
        cleanup_timer_(executor_),
        spare_timer_(executor_),
        rng_(std::random_device{}()) {
    if (config_.on_exhausted == OnExhausted::direct) {
      logger()->warn(
          "on_exhausted = direct: a full pool will open unpooled connections outside every limit "
          "(this is what trips MaxStartups, per-source limits and fail2ban)");
    }
  }

  static awaitable<Result<Lease>> acquire(std::shared_ptr<Impl> self, std::string server_id,
                                          Priority priority, Deadline deadline);
  static awaitable<std::size_t> warm(std::shared_ptr<Impl> self, std::string server_id,
                                     std::size_t count, Deadline deadline);
  static awaitable<void> shutdown(std::shared_ptr<Impl> self, Deadline deadline);
  static awaitable<void> cleanup_loop(std::shared_ptr<Impl> self);
  static awaitable<PoolStats> total_in_slices(std::shared_ptr<Impl> self);

  void add_server(Server server);
  void remove_server(const std::string& id);
  void start_cleanup();
  void release(Lease::Slot& slot, Lease::Finish how);
  void maintenance();
  // Cancels the handshakes in flight (of every server); the registry is going away.
  void abandon_all_handshakes();
  [[nodiscard]] PoolStats stats_of(const ServerPool& pool) const;
  [[nodiscard]] std::optional<Error> connect_error_of(const ServerPool& pool) const;

  asio::any_io_executor executor_;
  PoolConfig config_;
  std::map<std::string, std::unique_ptr<ServerPool>> servers_;
  // total_stats(max_age): the last sum over servers and when it was taken.
  mutable std::optional<std::pair<Clock::time_point, PoolStats>> recent_total_;
  struct ById {
    bool operator()(const ServerPool* a, const ServerPool* b) const {
      return a->server.id < b->server.id;
    }
  };
  // Every server with callers queued (and some whose queue emptied since), by id: what
  // dispatch_all visits. servers_ never drops a pool, so the pointers stay valid.
  std::set<ServerPool*, ById> waiting_servers_;
  std::size_t total_active_ = 0;
  std::size_t total_handshakes_ = 0;
  std::size_t handshakes_running_ = 0;  // handshake coroutines not finished yet
  std::size_t closes_running_ = 0;      // session closes (and their kills) not finished yet
  bool shutting_down_ = false;
  bool cleanup_started_ = false;
  asio::steady_timer cleanup_timer_;
  bool spare_loop_running_ = false;
  asio::steady_timer spare_timer_;  // wakes spare_loop() when a demand window ends
  // Sessions holding spares, by the end of their demand window: what spare_loop() visits (a
  // session's entry may be early when its window rolled on since; it is queued again then).
  struct SpareCheck {
    Clock::time_point at;
    ServerPool* pool;  // servers_ never drops a pool
    std::weak_ptr<PooledSession> session;
    bool operator>(const SpareCheck& other) const { return at > other.at; }
  };
  std::priority_queue<SpareCheck, std::vector<SpareCheck>, std::greater<>> spare_checks_;
  std::mt19937_64 rng_;
  // shutdown() waiting for leases, handshakes and closes to end; woken by notify_progress()
  std::vector<asio::steady_timer*> progress_waiters_;

 private:
  // The one place a pooled session changes state: connecting -> ready <-> draining -> closed,
  // and connecting -> closed for a handshake that failed or was abandoned. Keeps the counts.
  void set_state(ServerPool& pool, PooledSession& session, SessionState to);
  // No new leases on a ready session; closed once its leases are back.
  void drain(ServerPool& pool, PooledSession& session);
  // Removes a connecting session whose handshake ended without a connection.
  void forget(ServerPool& pool, const std::shared_ptr<PooledSession>& session);
  std::shared_ptr<PooledSession> pick_session(ServerPool& pool);
  void prune_dead(ServerPool& pool);
  // The global limits a finished handshake or lease frees a unit of.
  enum class GlobalLimit { handshakes, operations };
  void dispatch_all(GlobalLimit freed);
  void wake_after_cooldown(ServerPool& pool);
  static awaitable<void> redispatch_at(std::shared_ptr<Impl> self, ServerPool* pool,
                                       Clock::time_point when);
  void grant(ServerPool& pool, PooledSession& session);
  // Opens or closes spare channels on a ready session to match its recent demand, within its
  // channel limit and never while callers queue for the server.
  void adjust_spares(ServerPool& pool, PooledSession& session);
  // A round trip on `session` so that its unsettled closes are known to be processed, then
  // adjust_spares() again.
  static awaitable<void> settle_closes(std::shared_ptr<Impl> self, ServerPool* pool,
                                       std::shared_ptr<PooledSession> session);
  [[nodiscard]] Clock::duration spare_window() const;
  // Queues `session` (holding spares) for a spare_loop() visit when its demand window ends.
  void queue_spare_check(ServerPool& pool, PooledSession& session);
  void start_spare_loop();
  // Applies demand windows as they end, so that an idle session's spares are closed.
  static awaitable<void> spare_loop(std::shared_ptr<Impl> self);
  void dispatch(ServerPool& pool);
  void maybe_grow(ServerPool& pool, bool for_warming = false);
  void fail_waiters(ServerPool& pool, const Error& error);
  // A caller left the queue without a slot (deadline, cancellation): handshakes opened for the
  // queue are abandoned once nobody waits.
  void waiter_left(ServerPool& pool);
  void abandon_handshakes(ServerPool& pool, bool include_warming);
  void evict(ServerPool& pool, const std::shared_ptr<PooledSession>& session, Eviction why);
  void close_later(std::shared_ptr<PooledSession> session, Deadline deadline);
  void notify_progress();
  // Sleeps until notify_progress() or `until`.
  static awaitable<void> wait_progress(std::shared_ptr<Impl> self, Deadline until);
  static awaitable<void> connect(std::shared_ptr<Impl> self, ServerPool* pool,
                                 std::shared_ptr<PooledSession> pending);
  static awaitable<void> close_session(std::shared_ptr<Impl> self,
                                       std::shared_ptr<PooledSession> session, Deadline deadline);
  void connect_failed(ServerPool& pool, const Error& error);
  Error exhausted_error(const ServerPool& pool, Clock::time_point since) const;
  Error cancelled_error(const ServerPool& pool, Clock::time_point since) const;
  Error handshake_timeout_error(const ServerPool& pool, Clock::time_point since) const;
  [[nodiscard]] double jitter(double spread);
  [[nodiscard]] std::string tag(const ServerPool& pool, const PooledSession* session) const;

  friend class Lease;
};

// ---------------------------------------------------------------------------------------------
// Registry::Impl

double Registry::Impl::jitter(double spread) {
  std::uniform_real_distribution<double> pick(1.0 - spread, 1.0 + spread);
  return pick(rng_);
}

std::string Registry::Impl::tag(const ServerPool& pool, const PooledSession* session) const {
  return session != nullptr && session->session
             ? fmt::format("[{} #{}]", pool.server.id, session->session->id())
             : fmt::format("[{}]", pool.server.id);
}

void Registry::Impl::set_state(ServerPool& pool, PooledSession& session, SessionState to) {
  const SessionState from = session.state;
  const bool allowed =
      (from == SessionState::connecting &&
       (to == SessionState::ready || to == SessionState::closed)) ||
      (from == SessionState::ready && to == SessionState::draining) ||
      (from == SessionState::draining && (to == SessionState::ready || to == SessionState::closed));
  assert(allowed && "pooled session state: connecting -> ready <-> draining -> closed");
  if (!allowed) {
    return;
  }
  --pool.in_state[static_cast<std::size_t>(from)];
  ++pool.in_state[static_cast<std::size_t>(to)];
  session.state = to;
}

void Registry::Impl::drain(ServerPool& pool, PooledSession& session) {
  if (session.state == SessionState::ready) {
    set_state(pool, session, SessionState::draining);
  }
  // No lease will come for its spares (reserved ones still serve leases granted before).
  if (session.session && session.session->spare_channels() > 0) {
    pool.stats.spares_closed += session.session->close_spare_channels(0);
  }
}

void Registry::Impl::forget(ServerPool& pool, const std::shared_ptr<PooledSession>& session) {
  set_state(pool, *session, SessionState::closed);
  std::erase(pool.sessions, session);
}

void Registry::Impl::add_server(Server server) {
  auto id = server.id;
  auto found = servers_.find(id);
  if (found == servers_.end()) {
    servers_.emplace(id, std::make_unique<ServerPool>(std::move(server), config_.max_channels));
    start_cleanup();
    logger()->info("[{}] connection pool created (max {} connections x {} channels)", id,
                   config_.max_connections, config_.max_channels);
    return;
  }
  ServerPool& pool = *found->second;
  if (same_target(pool.server, server) && !pool.removed) {
    return;
  }
  pool.removed = false;
  // New address or credentials: sessions made with the old ones drain (finishing their commands)
  // and handshakes with them are abandoned, so the next command runs on the server as now
  // configured; and the server gets another chance at once.
  pool.server = std::move(server);
  ++pool.generation;
  pool.circuit.reset();
  pool.last_connect_error.reset();
  pool.consecutive_failures = 0;
  pool.retry_at = {};
  abandon_handshakes(pool, true);
  for (auto session : std::vector<std::shared_ptr<PooledSession>>(pool.sessions)) {
    if (!session->connected()) {
      continue;
    }
    drain(pool, *session);
    if (session->in_use == 0) {
      evict(pool, session, Eviction::error);
    }
  }
  logger()->info("[{}] settings changed; existing connections drain", id);
  dispatch(pool);  // waiters queued behind an abandoned handshake get a new one
}

void Registry::Impl::remove_server(const std::string& id) {
  auto found = servers_.find(id);
  if (found == servers_.end() || found->second->removed) {
    return;
  }
  // The pool object stays (leases in flight point at it) but serves nobody: waiters fail,
  // handshakes are abandoned, idle sessions close now, busy ones when their commands end.
  ServerPool& pool = *found->second;
  pool.removed = true;
  fail_waiters(pool, make_error(Errc::unknown_server,
                                fmt::format("server \"{}\" was removed from the inventory", id)));
  abandon_handshakes(pool, true);
  for (auto session : std::vector<std::shared_ptr<PooledSession>>(pool.sessions)) {
    if (!session->connected()) {
      continue;
    }
    drain(pool, *session);
    if (session->in_use == 0) {
      evict(pool, session, Eviction::shutdown);
    }
  }
  logger()->info("[{}] removed; its connections drain", id);
}

void Registry::Impl::start_cleanup() {
  if (cleanup_started_ || shutting_down_) {
    return;
  }
  cleanup_started_ = true;
  // Warm servers with min_idle right away instead of after the first interval.
  if (config_.min_idle > 0) {
    asio::post(executor_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        self->maintenance();
      }
    });
  }
  asio::co_spawn(executor_, cleanup_loop(shared_from_this()), asio::detached);
}

// Dead sessions nobody uses leave at once, so they never hold a connection slot.
void Registry::Impl::prune_dead(ServerPool& pool) {
  // Called on every dispatch: look before copying the list (evict() edits it).
  if (std::none_of(pool.sessions.begin(), pool.sessions.end(), [](const auto& candidate) {
        return candidate->connected() && !candidate->session->alive();
      })) {
    return;
  }
  for (auto candidate : std::vector<std::shared_ptr<PooledSession>>(pool.sessions)) {
    if (candidate->connected() && !candidate->session->alive()) {
      drain(pool, *candidate);
      if (candidate->in_use == 0) {
        evict(pool, candidate, Eviction::dead);
      }
    }
  }
}

// Waiters blocked only by cooling slots are served once the cooldown passed.
void Registry::Impl::wake_after_cooldown(ServerPool& pool) {
  if (pool.cooldown_wake_pending) {
    return;
  }
  Clock::time_point earliest = Clock::time_point::max();
  for (const auto& session : pool.sessions) {
    if (!session->cooling.empty()) {
      earliest = std::min(earliest, session->cooling.front() + kSlotCooldown);
    }
  }
  if (earliest == Clock::time_point::max()) {
    return;
  }
  pool.cooldown_wake_pending = true;
  asio::co_spawn(executor_, redispatch_at(shared_from_this(), &pool, earliest), asio::detached);
}

awaitable<void> Registry::Impl::redispatch_at(std::shared_ptr<Impl> self, ServerPool* pool,
                                              Clock::time_point when) {
  asio::steady_timer timer(self->executor_, when);
  co_await timer.async_wait(kNoThrow);
  pool->cooldown_wake_pending = false;
  if (!self->shutting_down_) {
    self->dispatch(*pool);
  }
}

// Wakes waiters of every server: after a global limit (handshakes, operations) freed up.
void Registry::Impl::dispatch_all(GlobalLimit freed) {
  // Only the servers with callers queued, in servers_' order, and only while some of what was
  // freed is left: every handshake's end calls this, and a walk over every server (or every
  // waiting one after the slot was taken) made a cold sweep O(servers²). A server waiting for
  // anything else is dispatched when that happens.
  const auto used_up = [this, freed] {
    return freed == GlobalLimit::handshakes ? total_handshakes_ >= config_.max_handshakes_total
                                            : total_active_ >= config_.max_concurrent_total;
  };
  // dispatch() never queues a caller, so no element is added behind the iterator.
  for (auto it = waiting_servers_.begin(); it != waiting_servers_.end() && !used_up();) {
    ServerPool* pool = *it;
    if (pool->waiting() > 0) {
      dispatch(*pool);
    }
    it = pool->waiting() == 0 ? waiting_servers_.erase(it) : std::next(it);
  }
}

std::shared_ptr<PooledSession> Registry::Impl::pick_session(ServerPool& pool) {
  if (pool.active >= config_.max_concurrent || total_active_ >= config_.max_concurrent_total) {
    return nullptr;
  }
  std::shared_ptr<PooledSession> best;
  const auto now = Clock::now();
  for (auto& candidate : pool.sessions) {
    if (!candidate->usable() || candidate->free_slots(now) == 0) {
      continue;
    }
    // Pack leases onto the busiest session with room, so spare sessions go idle and expire.
    if (!best || candidate->in_use > best->in_use ||
        (candidate->in_use == best->in_use && candidate->last_used > best->last_used)) {
      best = candidate;
    }
  }
  return best;
}

void Registry::Impl::grant(ServerPool& pool, PooledSession& session) {
  const auto now = Clock::now();
  session.idle_before_grant = session.in_use == 0 ? now - session.last_used : Clock::duration{};
  session.roll_demand(now, spare_window());
  ++session.in_use;
  session.peak_now = std::max(session.peak_now, session.in_use);
  if (session.session->reserve_spare_channel()) {
    ++pool.stats.leases_on_spare;
  }
  ++pool.active;
  ++total_active_;
  ++pool.stats.acquisitions;
  if (session.leases > 0) {
    ++pool.stats.served_by_existing;
    logger()->debug("{} reusing connection ({} channels in use)", tag(pool, &session),
                    session.in_use);
  }
  ++session.leases;
  session.last_used = now;
}

void Registry::Impl::dispatch(ServerPool& pool) {
  prune_dead(pool);
  for (auto& queue : pool.queues) {
    while (!queue.empty()) {
      auto session = pick_session(pool);
      if (!session) {
        maybe_grow(pool);
        wake_after_cooldown(pool);
        return;
      }
      Waiter* waiter = queue.front();
      queue.pop_front();
      grant(pool, *session);
      waiter->granted = std::move(session);
      waiter->done = true;
      waiter->timer->cancel();
    }
  }
  // Nobody waits: free slots may hold spares for the next commands.
  for (auto& session : pool.sessions) {
    adjust_spares(pool, *session);
  }
}

Clock::duration Registry::Impl::spare_window() const {
  return std::min<Clock::duration>(kSpareWindow, config_.idle_timeout / 2);
}

void Registry::Impl::adjust_spares(ServerPool& pool, PooledSession& session) {
  if (!session.session) {
    return;  // connecting
  }
  ssh::Session& connection = *session.session;
  if (connection.stats().spares_refused > session.spares_refused_seen) {
    pool.stats.spares_refused += connection.stats().spares_refused - session.spares_refused_seen;
    session.spares_refused_seen = connection.stats().spares_refused;
  }
  if (!session.usable()) {
    return;  // draining sessions closed theirs (drain())
  }
  const auto now = Clock::now();
  const auto window = spare_window();
  session.roll_demand(now, window);
  if (!session.spares_refused && session.spares_refused_seen > 0) {
    // The server's limit is below ours, or it dislikes channels without a command: no more
    // spares on this connection (its leases still learn the real limit when refused).
    session.spares_refused = true;
    logger()->info("{} server refused a spare channel: no spares on this connection",
                   tag(pool, &session));
  }
  const bool allowed = config_.spare_channels > 0 && window >= std::chrono::milliseconds(1) &&
                       !session.spares_refused && !shutting_down_ && !pool.removed;
  const std::size_t target = allowed ? session.spare_target(config_.spare_channels) : 0;
  if (connection.spare_channels() > target) {
    const std::size_t closed = connection.close_spare_channels(target);
    pool.stats.spares_closed += closed;
    for (std::size_t i = 0; i < closed; ++i) {
      session.cooling.push_back(now);  // the server frees their slots a loop pass late
      session.unsettled.push_back(now);
    }
  }
  // A close a second old was read by any sshd that is still alive.
  while (!session.unsettled.empty() && session.unsettled.front() + kUnsettledAtMost <= now) {
    session.unsettled.pop_front();
  }
  while (pool.waiting() == 0 && connection.spare_channels() < target) {
    const std::size_t committed = std::max(session.committed(now), session.committed_for_spares());
    if (committed >= session.channel_limit) {
      // Held back only by closes the server may not have processed yet: confirm them with a
      // round trip, then open the spares.
      const std::size_t unconfirmed = std::max(session.cooling.size(), session.unsettled.size());
      // Only on a quiet connection: the ping's answer is then the first packet to come back
      // (with commands running, their output could arrive first and prove nothing).
      const bool quiet =
          session.in_use == 0 && connection.active_channels() == connection.spare_channels();
      if (unconfirmed > 0 && committed - unconfirmed < session.channel_limit && !session.settling &&
          quiet) {
        session.settling = true;
        for (const auto& candidate : pool.sessions) {
          if (candidate.get() == &session) {
            asio::co_spawn(executor_, settle_closes(shared_from_this(), &pool, candidate),
                           asio::detached);
            break;
          }
        }
      }
      break;
    }
    const std::size_t before = connection.spare_channels();
    connection.open_spare_channel();
    if (connection.spare_channels() == before) {
      break;  // the connection would not open one (not ready)
    }
    ++pool.stats.spares_opened;
  }
  if (connection.spare_channels() > 0) {
    queue_spare_check(pool, session);
  }
}

void Registry::Impl::queue_spare_check(ServerPool& pool, PooledSession& session) {
  if (session.spare_check_queued) {
    return;
  }
  session.spare_check_queued = true;
  const auto at = session.window_start + spare_window();
  spare_checks_.push({at, &pool, session.weak_from_this()});
  if (spare_loop_running_ && at < spare_timer_.expiry()) {
    spare_timer_.cancel();  // sleeping past its window: wake and sleep until it instead
  }
  start_spare_loop();
}

awaitable<void> Registry::Impl::settle_closes(std::shared_ptr<Impl> self, ServerPool* pool,
                                              std::shared_ptr<PooledSession> session) {
  const auto sent_at = Clock::now();
  auto answered = co_await session->session->async_ping(Deadline::after(std::chrono::seconds(5)));
  session->settling = false;
  if (!answered || self->shutting_down_ || session->in_use > 0) {
    co_return;  // a dead session is pruned elsewhere; a lease that started meanwhile may have
                // answered for the server (its release tries again)
  }
  while (!session->unsettled.empty() && session->unsettled.front() <= sent_at) {
    session->unsettled.pop_front();
  }
  if (pool->waiting() == 0) {
    self->adjust_spares(*pool, *session);
  }
}

void Registry::Impl::start_spare_loop() {
  if (spare_loop_running_ || shutting_down_) {
    return;
  }
  spare_loop_running_ = true;
  asio::co_spawn(executor_, spare_loop(shared_from_this()), asio::detached);
}

awaitable<void> Registry::Impl::spare_loop(std::shared_ptr<Impl> self) {
  // Visits only the sessions whose demand window ended, in passes at least kSparePassGap apart,
  // and lets other work run every kSpareVisitsPerTurn visits: closing a spare writes a packet,
  // and at 10,000 servers a pass over every session (as this loop once made) held the loop for
  // 20-50 ms every few seconds, API requests waiting behind it.
  while (!self->shutting_down_ && !self->spare_checks_.empty()) {
    self->spare_timer_.expires_at(std::max(
        self->spare_checks_.top().at,
        Clock::now() + std::min<Clock::duration>(kSparePassGap, self->spare_window() / 8)));
    co_await self->spare_timer_.async_wait(kNoThrow);
    // Sessions queued again during the pass wait for the next one.
    const auto pass = Clock::now();
    std::size_t visits = 0;
    while (!self->shutting_down_ && !self->spare_checks_.empty() &&
           self->spare_checks_.top().at <= pass) {
      auto check = self->spare_checks_.top();
      self->spare_checks_.pop();
      auto session = check.session.lock();
      if (!session) {
        continue;  // closed since
      }
      session->spare_check_queued = false;
      self->adjust_spares(*check.pool, *session);  // queues it again while it keeps spares
      if (++visits % kSpareVisitsPerTurn == 0) {
        co_await asio::post(self->executor_, asio::use_awaitable);
      }
    }
  }
  self->spare_loop_running_ = false;
}

void Registry::Impl::maybe_grow(ServerPool& pool, bool for_warming) {
  if (shutting_down_ || (!for_warming && pool.waiting() == 0)) {
    return;
  }
  const auto now = Clock::now();
  if (pool.circuit_open(now) || now < pool.retry_at) {
    return;
  }
  if (pool.active >= config_.max_concurrent || total_active_ >= config_.max_concurrent_total) {
    return;  // the limit, not the sessions, is what waiters wait for
  }
  // A slot still cooling down after a lease ended will serve a waiter within milliseconds.
  for (auto& session : pool.sessions) {
    if (!for_warming && session->usable() &&
        session->free_slots(now) + session->cooling.size() > 0) {
      return;
    }
  }
  // Sessions being opened (not abandoned) will serve this many waiters once up.
  const auto opening = static_cast<std::size_t>(
      std::count_if(pool.sessions.begin(), pool.sessions.end(), [](const auto& session) {
        return session->state == SessionState::connecting && !session->abandoned;
      }));
  const std::size_t coming = opening * pool.learned_channel_limit;
  if (!for_warming && coming >= pool.waiting()) {
    return;
  }
  if (pool.sessions.size() >= config_.max_connections ||
      pool.connecting() >= config_.max_handshakes_per_server ||
      total_handshakes_ >= config_.max_handshakes_total) {
    return;
  }
  auto pending = std::make_shared<PooledSession>(for_warming, pool.generation);
  pool.sessions.push_back(pending);
  ++pool.in_state[static_cast<std::size_t>(SessionState::connecting)];
  ++total_handshakes_;
  ++handshakes_running_;
  ++pool.stats.handshakes_started;
  asio::co_spawn(executor_, connect(shared_from_this(), &pool, pending),
                 asio::bind_cancellation_slot(pending->cancel.slot(), asio::detached));
}

void Registry::Impl::fail_waiters(ServerPool& pool, const Error& error) {
  for (auto& queue : pool.queues) {
    for (Waiter* waiter : queue) {
      waiter->failed = error;
      waiter->done = true;
      waiter->timer->cancel();
    }
    queue.clear();
  }
}

void Registry::Impl::waiter_left(ServerPool& pool) {
  if (pool.waiting() == 0) {
    abandon_handshakes(pool, false);
  }
}

void Registry::Impl::abandon_handshakes(ServerPool& pool, bool include_warming) {
  for (auto& session : pool.sessions) {
    if (session->state == SessionState::connecting && !session->abandoned &&
        (include_warming || !session->warming)) {
      session->abandoned = true;
      logger()->debug("{} abandoning a handshake: no caller waits for it", tag(pool, nullptr));
      session->cancel.emit(asio::cancellation_type::terminal);
    }
  }
}

void Registry::Impl::abandon_all_handshakes() {
  for (auto& [id, pool] : servers_) {
    abandon_handshakes(*pool, true);
  }
}

awaitable<void> Registry::Impl::wait_progress(std::shared_ptr<Impl> self, Deadline until) {
  asio::steady_timer wake(self->executor_, until.at());
  // Unlinked by a destructor, not after the co_await: a frame destroyed with its io_context is
  // freed without being resumed, and a later notify_progress() must not find the freed timer.
  struct Unlink {
    std::vector<asio::steady_timer*>& waiters;
    asio::steady_timer* timer;
    ~Unlink() { std::erase(waiters, timer); }
  } unlink{self->progress_waiters_, &wake};
  self->progress_waiters_.push_back(&wake);
  co_await wake.async_wait(kNoThrow);
}

void Registry::Impl::notify_progress() {
  for (auto* waiter : progress_waiters_) {
    waiter->cancel();
  }
}

awaitable<void> Registry::Impl::close_session(std::shared_ptr<Impl> self,
                                              std::shared_ptr<PooledSession> session,
                                              Deadline deadline) {
  co_await session->session->async_close(deadline);
  --self->closes_running_;
  self->notify_progress();
}

void Registry::Impl::close_later(std::shared_ptr<PooledSession> session, Deadline deadline) {
  ++closes_running_;
  asio::co_spawn(executor_, close_session(shared_from_this(), std::move(session), deadline),
                 asio::detached);
}

void Registry::Impl::evict(ServerPool& pool, const std::shared_ptr<PooledSession>& session,
                           Eviction why) {
  const auto found = std::find(pool.sessions.begin(), pool.sessions.end(), session);
  if (found == pool.sessions.end() || !session->connected()) {
    return;
  }
  ++pool.stats.evictions[static_cast<std::size_t>(why)];
  static constexpr std::array<const char*, kEvictionKinds> kWhy{"idle", "max lifetime", "dead",
                                                                "error", "shutdown"};
  logger()->debug("{} closing connection ({}, served {} leases)", tag(pool, session.get()),
                  kWhy[static_cast<std::size_t>(why)], session->leases);
  drain(pool, *session);
  set_state(pool, *session, SessionState::closed);
  pool.sessions.erase(found);
  // Long enough for a timed-out command's TERM/KILL sequence to finish first; commands still
  // running after it are signalled by the close itself.
  close_later(session, Deadline::after(std::chrono::seconds(3)));
}

awaitable<void> Registry::Impl::connect(std::shared_ptr<Impl> self, ServerPool* pool,
                                        std::shared_ptr<PooledSession> pending) {
  // Cancellation (abandon_handshakes) arrives through this coroutine's slot and is reported by
  // the ssh layer as a value; nothing here may throw because of it.
  co_await asio::this_coro::throw_if_cancelled(false);
  const auto started = Clock::now();
  const Deadline hard = Deadline::after(self->config_.connect_timeout);
  auto options = pool->server.connect;
  options.keepalive_interval = self->config_.keepalive_interval;
  options.keepalive_max_missed = self->config_.keepalive_max_missed;
  std::optional<ssh::ConnectAttempt> outcome;
  for (int attempt = 0;; ++attempt) {
    outcome.emplace(co_await ssh::Session::async_attempt(pool->server.endpoint, options, hard));
    if (outcome->session || !outcome->dropped_before_auth() || attempt >= kDropRetries ||
        pending->abandoned || self->shutting_down_) {
      break;
    }
    // Dropped before any credential was sent (MaxStartups): safe to try again, a little later
    // so that a burst of clients spreads out, and only while a deadline it serves leaves room:
    // the latest of the queued callers' (a warming handshake: connect_timeout).
    const auto pause = std::chrono::duration_cast<std::chrono::milliseconds>(
        kDropRetryPause * (1 << attempt) * self->jitter(0.5));
    const Deadline serves_until =
        pending->warming ? hard : hard.min(pool->latest_waiter_deadline());
    if (serves_until.remaining() <= pause) {
      break;
    }
    logger()->info("{} {}; trying again in {} ms ({} of {})", self->tag(*pool, nullptr),
                   outcome->session.error().message(), pause.count(), attempt + 1, kDropRetries);
    asio::steady_timer wait(self->executor_, pause);
    co_await wait.async_wait(kNoThrow);
    if (pending->abandoned || self->shutting_down_ ||
        ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
      break;
    }
    // Counted when the next attempt is made, so that it matches the connections the server saw.
    ++pool->stats.handshakes_retried;
  }
  --self->total_handshakes_;
  // A handshake slot freed up: servers held back by the global cap may grow now.
  asio::post(self->executor_, [weak = self->weak_from_this()] {
    if (auto registry = weak.lock(); registry && !registry->shutting_down_) {
      registry->dispatch_all(GlobalLimit::handshakes);
    }
  });
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  const bool stale = pending->generation != pool->generation;
  if (!outcome->session) {
    self->forget(*pool, pending);
    if (pending->abandoned || stale) {
      // Nobody needs it (callers left, settings changed, shutdown): not the server's failure.
      ++pool->stats.handshakes_cancelled;
      logger()->debug("{} handshake abandoned after {} ms: {}", self->tag(*pool, nullptr),
                      elapsed.count() / 1000, outcome->session.error().message());
    } else {
      ++pool->stats.handshakes_failed;
      self->connect_failed(*pool, outcome->session.error());
    }
  } else {
    ++pool->stats.sessions_opened;
    pending->session.emplace(std::move(*outcome->session));
    pending->channel_limit = pool->learned_channel_limit;
    pending->last_used = Clock::now();
    pending->retire_at =
        self->config_.max_lifetime.count() > 0
            ? Clock::now() +
                  std::chrono::milliseconds(static_cast<std::int64_t>(
                      static_cast<double>(self->config_.max_lifetime.count()) * self->jitter(0.1)))
            : Clock::time_point::max();
    self->set_state(*pool, *pending, SessionState::ready);
    if (self->shutting_down_ || stale) {
      // Counted like any other, so started == opened + failed + cancelled always holds.
      self->evict(*pool, pending, self->shutting_down_ ? Eviction::shutdown : Eviction::error);
    } else {
      pool->consecutive_failures = 0;
      pool->last_connect_error.reset();
      pool->handshake_time.record(elapsed);
      logger()->info("{} connected in {} ms ({} connections)", self->tag(*pool, pending.get()),
                     elapsed.count() / 1000, pool->connected_count());
      self->dispatch(*pool);
    }
  }
  --self->handshakes_running_;
  self->notify_progress();
}

void Registry::Impl::connect_failed(ServerPool& pool, const Error& error) {
  if (opens_circuit(error)) {
    pool.circuit = error;
    pool.circuit_until = Clock::now() + config_.backoff_max;
    logger()->warn("{} {}; no new connection for {} s or until its settings change",
                   tag(pool, nullptr), error.message(), config_.backoff_max.count() / 1000);
    // The callers waiting now get the real reason; later ones get circuit_open.
    fail_waiters(pool, error);
    return;
  }
  ++pool.consecutive_failures;
  const double factor = std::pow(2.0, std::min(pool.consecutive_failures - 1, 20));
  const auto backoff = std::chrono::milliseconds(static_cast<std::int64_t>(
      std::min(static_cast<double>(config_.backoff_max.count()),
               static_cast<double>(config_.backoff_initial.count()) * factor) *
      jitter(0.2)));
  pool.retry_at = Clock::now() + backoff;
  pool.last_connect_error = error;
  logger()->warn("{} connect failed ({}): {}; next attempt in {} ms", tag(pool, nullptr),
                 pool.consecutive_failures, error.message(), backoff.count());
  if (pool.ready_count() == 0 && pool.connecting() == 0) {
    // Nothing will serve the queue soon: tell the callers now rather than at their deadline.
    fail_waiters(pool, error);
  }
}

Error Registry::Impl::exhausted_error(const ServerPool& pool, Clock::time_point since) const {
  std::size_t channels = 0;
  for (const auto& session : pool.sessions) {
    channels += session->in_use;
  }
  return make_error(
      Errc::pool_exhausted,
      fmt::format("{}: waited {} ms; {} connections ({} opening), {} channels in "
                  "use, {} operations of max {}, {} callers waiting",
                  pool.server.id, ms_since(since), pool.connected_count(), pool.connecting(),
                  channels, pool.active, config_.max_concurrent, pool.waiting()));
}

Error Registry::Impl::cancelled_error(const ServerPool& pool, Clock::time_point since) const {
  return make_error(ssh::Errc::cancelled, fmt::format("{}: acquire cancelled after {} ms",
                                                      pool.server.id, ms_since(since)));
}

Error Registry::Impl::handshake_timeout_error(const ServerPool& pool,
                                              Clock::time_point since) const {
  return make_error(
      ssh::Errc::connect_timeout,
      fmt::format("{}: no SSH connection within the deadline ({} ms): the connection being opened "
                  "had not finished its handshake (the server accepts TCP but does not answer, "
                  "or is too slow)",
                  pool.server.id, ms_since(since)));
}

awaitable<Result<Lease>> Registry::Impl::acquire(std::shared_ptr<Impl> self, std::string server_id,
                                                 Priority priority, Deadline deadline) {
  const auto found = self->servers_.find(server_id);
  if (found == self->servers_.end() || found->second->removed) {
    co_return make_error(Errc::unknown_server, fmt::format("no server named \"{}\"", server_id));
  }
  ServerPool& pool = *found->second;
  const auto started = Clock::now();
  for (int attempt = 0;; ++attempt) {
    if (self->shutting_down_) {
      co_return make_error(Errc::shutting_down, "the connection pool is shutting down");
    }
    if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
      ++pool.stats.acquires_cancelled;
      co_return self->cancelled_error(pool, started);
    }
    const auto now = Clock::now();
    if (pool.circuit_open(now)) {
      co_return make_error(
          Errc::circuit_open,
          fmt::format(
              "{} (no new attempt for {} s)", pool.circuit->message(),
              std::chrono::duration_cast<std::chrono::seconds>(pool.circuit_until - now).count()));
    }
    if (pool.ready_count() == 0 && pool.connecting() == 0 && pool.backing_off(now)) {
      co_return make_error(
          Errc::backing_off,
          fmt::format(
              "{}; next attempt in {} ms", pool.last_connect_error->message(),
              std::chrono::duration_cast<std::chrono::milliseconds>(pool.retry_at - now).count()));
    }

    std::shared_ptr<PooledSession> session;
    // Serve at once only when nobody of the same or a higher priority is queued (FIFO).
    bool queued_ahead = false;
    for (std::size_t p = 0; p <= static_cast<std::size_t>(priority); ++p) {
      queued_ahead = queued_ahead || !pool.queues[p].empty();
    }
    if (!queued_ahead) {
      session = self->pick_session(pool);
      if (session) {
        self->grant(pool, *session);
        self->adjust_spares(pool, *session);  // replaces the spare it took, if there is room
      }
    }
    if (!session) {
      self->prune_dead(pool);
      const bool can_grow = pool.sessions.size() < self->config_.max_connections;
      if (!can_grow && pool.connecting() == 0 && self->config_.on_exhausted != OnExhausted::queue) {
        ++pool.stats.exhausted;
        if (self->config_.on_exhausted == OnExhausted::direct) {
          break;  // the risky fallback below
        }
        co_return self->exhausted_error(pool, started);
      }
      asio::steady_timer timer(self->executor_, deadline.at());
      Waiter waiter;
      waiter.priority = priority;
      waiter.deadline = deadline;
      waiter.timer = &timer;
      auto& queue = pool.queues[static_cast<std::size_t>(priority)];
      queue.push_back(&waiter);
      self->waiting_servers_.insert(&pool);
      // Whether a handshake was under way for the queue while we waited: at the deadline that,
      // not a full pool, is why we got nothing.
      const auto handshakes_before = pool.stats.handshakes_started;
      bool handshake_seen = pool.connecting() > 0;
      self->dispatch(pool);  // grows the pool, or wakes us when a cooling slot frees up
      bool cancelled = false;
      while (!waiter.done) {
        handshake_seen = handshake_seen || pool.connecting() > 0;
        co_await timer.async_wait(kNoThrow);
        if (waiter.done) {
          break;
        }
        if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
          cancelled = true;
          break;
        }
        if (Clock::now() >= deadline.at()) {
          break;
        }
      }
      handshake_seen = handshake_seen || pool.stats.handshakes_started != handshakes_before;
      if (!waiter.done) {
        queue.erase(std::find(queue.begin(), queue.end(), &waiter));
        self->waiter_left(pool);
      }
      if (waiter.failed) {
        co_return *waiter.failed;
      }
      if (cancelled) {
        ++pool.stats.acquires_cancelled;
        co_return self->cancelled_error(pool, started);
      }
      session = std::move(waiter.granted);
      if (!session) {
        if (handshake_seen && pool.ready_count() == 0) {
          logger()->warn("{} no connection within the deadline: handshake unfinished",
                         self->tag(pool, nullptr));
          co_return self->handshake_timeout_error(pool, started);
        }
        ++pool.stats.exhausted;
        logger()->warn("{} connection pool exhausted", self->tag(pool, nullptr));
        co_return self->exhausted_error(pool, started);
      }
    }
    const auto waited =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
    pool.wait_time.record(waited);
    auto slot = std::make_unique<Lease::Slot>();
    slot->registry = self;
    slot->server = &pool;
    slot->pooled = session;
    const bool reused = session->leases > 1;
    Lease lease(std::move(slot), reused, waited);
    if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
      // Granted and cancelled in the same instant: the caller asked to stop.
      ++pool.stats.acquires_cancelled;
      co_return self->cancelled_error(pool, started);
    }

    // Health check before reuse: a session that sat idle may have died quietly.
    if (reused && self->config_.health_check_idle.count() > 0 &&
        session->idle_before_grant > self->config_.health_check_idle) {
      ++pool.stats.health_checks;
      auto ping = co_await session->session->async_ping(
          deadline.min(Deadline::after(std::chrono::seconds(5))));
      if (!ping && ping.error().code == ssh::Errc::cancelled) {
        ++pool.stats.acquires_cancelled;
        co_return self->cancelled_error(pool, started);  // the session is fine: lease released
      }
      if (!ping) {
        ++pool.stats.health_check_failures;
        logger()->info(
            "{} failed its health check after {} ms idle: {}", self->tag(pool, session.get()),
            std::chrono::duration_cast<std::chrono::milliseconds>(session->idle_before_grant)
                .count(),
            ping.error().message());
        lease.discard();
        if (attempt < 3) {
          continue;
        }
        co_return ping.error();
      }
    }
    if (self->config_.command_delay.count() > 0) {
      const auto start_at = std::max(Clock::now(), pool.next_command_at);
      pool.next_command_at = start_at + self->config_.command_delay;
      if (start_at > Clock::now()) {
        asio::steady_timer pace(self->executor_, start_at);
        co_await pace.async_wait(kNoThrow);
        if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
          ++pool.stats.acquires_cancelled;
          co_return self->cancelled_error(pool, started);
        }
      }
    }
    co_return lease;
  }

  // on_exhausted == direct: an unpooled connection, outside every limit.
  ++pool.stats.direct_connections;
  logger()->warn("{} pool exhausted: opening a DIRECT connection outside the pool's limits",
                 self->tag(pool, nullptr));
  auto endpoint = pool.server.endpoint;
  auto options = pool.server.connect;
  auto direct =
      co_await ssh::Session::async_connect(std::move(endpoint), std::move(options), deadline);
  if (!direct) {
    co_return std::move(direct).error();
  }
  auto slot = std::make_unique<Lease::Slot>();
  slot->registry = self;
  slot->server = &pool;
  slot->direct.emplace(std::move(*direct));
  co_return Lease(std::move(slot), false,
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started));
}

void Registry::Impl::release(Lease::Slot& slot, Lease::Finish how) {
  ServerPool& pool = *slot.server;
  if (slot.direct) {
    auto direct = std::make_shared<PooledSession>(false, pool.generation);
    direct->session.emplace(std::move(*slot.direct));
    slot.direct.reset();
    close_later(std::move(direct), Deadline::after(std::chrono::seconds(3)));
    return;
  }
  auto session = std::move(slot.pooled);
  session->cooling.push_back(Clock::now());
  session->unsettled.push_back(Clock::now());
  --session->in_use;
  // A lease promised a spare may end without a command: its promise goes too.
  session->session->limit_spare_reservations(session->in_use);
  --pool.active;
  --total_active_;
  if (how == Lease::Finish::channel_refused) {
    ++pool.stats.channels_refused;  // it ran nothing
  } else {
    ++pool.stats.commands;
  }
  session->last_used = Clock::now();
  // A refusal soon after another lease on this session ended may be the close race that the
  // cooldown could not prevent (a busy sshd reads both packets at once): retried, not learned.
  const bool near_a_close = slot.granted_at < session->last_release + kCloseRaceWindow;
  session->last_release = Clock::now();
  if (how == Lease::Finish::channel_refused && near_a_close) {
    logger()->debug("{} channel refused right after a close; retrying", tag(pool, session.get()));
  } else if (how == Lease::Finish::channel_refused) {
    // The server's real MaxSessions: the channels it had confirmed when it said no (replies come
    // in order, so every earlier open has been answered by now).
    const std::size_t limit = std::max<std::size_t>(1, session->session->open_channels());
    if (limit < session->channel_limit) {
      session->channel_limit = limit;
      pool.learned_channel_limit = std::min(pool.learned_channel_limit, limit);
      ++pool.stats.channel_limit_lowered;
      logger()->info("{} server refused a channel: limit lowered to {} channels per connection",
                     tag(pool, session.get()), limit);
    }
  }
  if (how == Lease::Finish::timed_out) {
    ++pool.stats.timeouts;
  }
  if (how == Lease::Finish::cancelled) {
    ++pool.stats.commands_cancelled;
  }
  if (how == Lease::Finish::discard || how == Lease::Finish::timed_out ||
      how == Lease::Finish::cancelled || !session->session->alive()) {
    drain(pool, *session);
  }
  if (session->state == SessionState::draining && session->in_use == 0) {
    evict(pool, session,
          !session->session->alive()           ? Eviction::dead
          : Clock::now() >= session->retire_at ? Eviction::lifetime
                                               : Eviction::error);
  }
  if (total_active_ + 1 >= config_.max_concurrent_total) {
    dispatch_all(GlobalLimit::operations);  // the global cap held back other servers' waiters
  } else {
    dispatch(pool);
  }
  notify_progress();
}

void Registry::Impl::maintenance() {
  const auto now = Clock::now();
  for (auto& [id, owned] : servers_) {
    ServerPool& pool = *owned;
    ++pool.stats.cleanup_runs;
    std::size_t cleaned = 0;
    std::size_t ready = pool.ready_count();
    // Oldest first, so the newest connections are the ones kept.
    for (auto candidate : std::vector<std::shared_ptr<PooledSession>>(pool.sessions)) {
      if (!candidate->connected()) {
        continue;  // a handshake in flight
      }
      if (!candidate->session->alive()) {
        drain(pool, *candidate);
        if (candidate->in_use == 0) {
          evict(pool, candidate, Eviction::dead);
        }
        continue;
      }
      if (candidate->state == SessionState::ready && now >= candidate->retire_at) {
        drain(pool, *candidate);  // replaced by the next waiter's growth; never cut mid-command
        --ready;
      }
      if (candidate->state == SessionState::draining) {
        if (candidate->in_use == 0) {
          evict(pool, candidate, Eviction::lifetime);
        }
        continue;
      }
      if (candidate->in_use == 0 && now - candidate->last_used >= config_.idle_timeout &&
          ready > config_.min_idle) {
        evict(pool, candidate, Eviction::idle);
        --ready;
        ++cleaned;
      }
    }
    pool.stats.sessions_cleaned += cleaned;
    if (cleaned > 0) {
      logger()->info("[{}] cleaned up {} idle connections", id, cleaned);
    }
    // Connection warming: keep min_idle ready sessions.
    if (!pool.removed && pool.ready_count() + pool.connecting() < config_.min_idle) {
      maybe_grow(pool, true);
    }
    dispatch(pool);
  }
}

awaitable<void> Registry::Impl::cleanup_loop(std::shared_ptr<Impl> self) {
  while (!self->shutting_down_) {
    const auto period = std::chrono::milliseconds(static_cast<std::int64_t>(
        static_cast<double>(self->config_.cleanup_interval.count()) * self->jitter(0.1)));
    self->cleanup_timer_.expires_after(period);
    co_await self->cleanup_timer_.async_wait(kNoThrow);
    if (self->shutting_down_) {
      break;
    }
    self->maintenance();
  }
}

awaitable<std::size_t> Registry::Impl::warm(std::shared_ptr<Impl> self, std::string server_id,
                                            std::size_t count, Deadline deadline) {
  const auto found = self->servers_.find(server_id);
  if (found == self->servers_.end()) {
    co_return 0;
  }
  ServerPool& pool = *found->second;
  const std::size_t target = std::min(count, self->config_.max_connections);
  while (pool.ready_count() < target && !deadline.expired() && !self->shutting_down_) {
    if (pool.ready_count() + pool.connecting() < target) {
      self->maybe_grow(pool, true);
    }
    if (pool.connecting() == 0 && pool.ready_count() < target) {
      break;  // limits or backoff stop us
    }
    asio::steady_timer tick(self->executor_, std::chrono::milliseconds(5));
    co_await tick.async_wait(kNoThrow);
    if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
      break;
    }
  }
  co_return pool.ready_count();
}

awaitable<void> Registry::Impl::shutdown(std::shared_ptr<Impl> self, Deadline deadline) {
  self->shutting_down_ = true;
  self->cleanup_timer_.cancel();
  self->spare_timer_.cancel();
  const Error closing = make_error(Errc::shutting_down, "the connection pool is shutting down");
  for (auto& [id, pool] : self->servers_) {
    self->fail_waiters(*pool, closing);
  }
  self->abandon_all_handshakes();
  // Let leased commands finish until the deadline.
  while (self->total_active_ > 0 && !deadline.expired()) {
    co_await wait_progress(self, deadline);
  }
  // Then close every session at once; each close signals the commands still running on it.
  for (auto& [id, pool] : self->servers_) {
    for (auto& session : std::vector<std::shared_ptr<PooledSession>>(pool->sessions)) {
      if (!session->connected()) {
        continue;  // a cancelled handshake, ending
      }
      ++pool->stats.evictions[static_cast<std::size_t>(Eviction::shutdown)];
      self->drain(*pool, *session);
      self->set_state(*pool, *session, SessionState::closed);
      std::erase(pool->sessions, session);
      self->close_later(session, deadline);
    }
  }
  // Nothing of ours may keep running once we return: closes, kills and handshakes end first.
  const Deadline limit = Deadline(std::max(deadline.at(), Clock::now()) + kShutdownGrace);
  while ((self->closes_running_ > 0 || self->handshakes_running_ > 0) && !limit.expired()) {
    co_await wait_progress(self, limit);
  }
}

awaitable<PoolStats> Registry::Impl::total_in_slices(std::shared_ptr<Impl> self) {
  PoolStats total;
  std::size_t visited = 0;
  // servers_ never drops a pool, and a std::map's iterators survive inserts: `at` stays valid
  // across the pauses (a server added meanwhile is counted if it sorts after `at`).
  for (auto at = self->servers_.begin(); at != self->servers_.end(); ++at) {
    total += self->stats_of(*at->second);
    if (++visited % kTotalSlice == 0) {
      co_await asio::post(self->executor_, asio::use_awaitable);
    }
  }
  self->recent_total_.emplace(Clock::now(), total);
  co_return total;
}

PoolStats Registry::Impl::stats_of(const ServerPool& pool) const {
  PoolStats stats;
  static_cast<PoolCounters&>(stats) = pool.stats;
  pool.wait_time.copy_to(stats.wait_time);
  pool.handshake_time.copy_to(stats.handshake_time);
  stats.sessions_connecting = pool.connecting();
  stats.waiters = pool.waiting();
  stats.channel_limit = pool.learned_channel_limit;
  for (const auto& session : pool.sessions) {
    if (!session->connected()) {
      continue;
    }
    if (session->usable()) {
      ++stats.sessions_ready;
      stats.channel_capacity += session->channel_limit;
      stats.spare_channels += session->session->spare_channels();
      stats.spare_channels_ready += session->session->ready_spare_channels();
    } else {
      ++stats.sessions_draining;
    }
    stats.channels_in_use += session->in_use;
  }
  const auto now = Clock::now();
  const auto until = [now](Clock::time_point at) {
    return std::chrono::ceil<std::chrono::milliseconds>(at - now);
  };
  if (pool.circuit_open(now)) {
    stats.circuits_open = 1;
    stats.circuit_retry_in = until(pool.circuit_until);
  }
  if (pool.backing_off(now)) {
    stats.backing_off = 1;
    stats.backoff_retry_in = until(pool.retry_at);
  }
  return stats;
}

std::optional<Error> Registry::Impl::connect_error_of(const ServerPool& pool) const {
  const auto now = Clock::now();
  if (pool.circuit_open(now)) {
    return pool.circuit;
  }
  if (pool.backing_off(now)) {
    return pool.last_connect_error;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Lease

Lease::Lease(std::unique_ptr<Slot> slot, bool reused, std::chrono::microseconds waited) noexcept
    : slot_(std::move(slot)), reused_(reused), waited_(waited) {}

Lease::Lease(Lease&& other) noexcept = default;

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    slot_ = std::move(other.slot_);
    reused_ = other.reused_;
    waited_ = other.waited_;
  }
  return *this;
}

Lease::~Lease() { release(); }

ssh::Session& Lease::session() const {
  return slot_->direct ? *slot_->direct : *slot_->pooled->session;
}

void Lease::finish(Finish how) noexcept {
  if (!slot_) {
    return;
  }
  auto slot = std::move(slot_);
  slot->registry->release(*slot, how);
}

void Lease::release() noexcept { finish(Finish::release); }
void Lease::discard() noexcept { finish(Finish::discard); }
void Lease::channel_refused() noexcept { finish(Finish::channel_refused); }
void Lease::timed_out() noexcept { finish(Finish::timed_out); }
void Lease::cancelled() noexcept { finish(Finish::cancelled); }

// ---------------------------------------------------------------------------------------------
// Registry

Registry::Registry(asio::any_io_executor executor, PoolConfig config)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(config))) {}

Registry::~Registry() {
  impl_->shutting_down_ = true;
  impl_->cleanup_timer_.cancel();
  impl_->spare_timer_.cancel();
  impl_->abandon_all_handshakes();  // nothing keeps connecting for a registry that is gone
}

void Registry::add_server(Server server) { impl_->add_server(std::move(server)); }

void Registry::remove_server(const std::string& id) { impl_->remove_server(id); }

bool Registry::has_server(const std::string& id) const {
  const auto found = impl_->servers_.find(id);
  return found != impl_->servers_.end() && !found->second->removed;
}

const PoolConfig& Registry::config() const noexcept { return impl_->config_; }

asio::awaitable<Result<Lease>> Registry::async_acquire(std::string server_id, Priority priority,
                                                       Deadline deadline) {
  return ssh::async_no_cancel_throw(Impl::acquire(impl_, std::move(server_id), priority, deadline));
}

asio::awaitable<std::size_t> Registry::async_warm(std::string server_id, std::size_t count,
                                                  Deadline deadline) {
  return ssh::async_no_cancel_throw(Impl::warm(impl_, std::move(server_id), count, deadline));
}

void Registry::run_maintenance() { impl_->maintenance(); }

asio::awaitable<void> Registry::async_shutdown(Deadline deadline) {
  return ssh::async_no_cancel_throw(Impl::shutdown(impl_, deadline));
}

PoolStats Registry::stats(const std::string& server_id) const {
  const auto found = impl_->servers_.find(server_id);
  return found == impl_->servers_.end() ? PoolStats{} : impl_->stats_of(*found->second);
}

PoolStats Registry::total_stats() const {
  PoolStats total;
  for (const auto& [id, pool] : impl_->servers_) {
    total += impl_->stats_of(*pool);
  }
  impl_->recent_total_.emplace(Clock::now(), total);
  return total;
}

asio::awaitable<PoolStats> Registry::async_total_stats() const {
  return ssh::async_no_cancel_throw(Impl::total_in_slices(impl_));
}

PoolStats Registry::total_stats(std::chrono::milliseconds max_age) const {
  if (const auto& recent = impl_->recent_total_;
      recent && Clock::now() - recent->first <= max_age) {
    return recent->second;
  }
  return total_stats();
}

std::optional<Error> Registry::connect_error(const std::string& server_id) const {
  const auto found = impl_->servers_.find(server_id);
  return found == impl_->servers_.end() ? std::nullopt : impl_->connect_error_of(*found->second);
}

std::vector<std::string> Registry::server_ids() const {
  std::vector<std::string> ids;
  for (const auto& [id, pool] : impl_->servers_) {
    if (!pool->removed) {
      ids.push_back(id);
    }
  }
  return ids;
}

}  // namespace healer::pool
