#include "healer/pool/pool.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <bit>
#include <cmath>
#include <deque>
#include <map>
#include <random>

#include "healer/core/log.hpp"

namespace healer::pool {
namespace {

using asio::awaitable;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

// How a lease ends (Lease::finish).
constexpr int kReleaseNormal = 0;
constexpr int kReleaseDiscard = 1;
constexpr int kReleaseChannelRefused = 2;
constexpr int kReleaseTimedOut = 3;

// sshd frees a channel's MaxSessions slot only after a pass over its channels that follows our
// close; an open that arrives in the same read as the close is refused. A slot therefore cools
// down this long after its lease ends before it is handed out again on a full session.
constexpr auto kSlotCooldown = std::chrono::milliseconds(2);
// Refusals of channels granted within this time after a close are not taken as the limit.
constexpr auto kCloseRaceWindow = std::chrono::milliseconds(50);

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
  const auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(0, value.count()));
  const std::size_t bucket = std::min<std::size_t>(kBuckets - 1, std::bit_width(us));
  ++counts[bucket];
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
  waiters += other.waiters;
  circuits_open += other.circuits_open;
  backing_off += other.backing_off;
  acquisitions += other.acquisitions;
  served_by_existing += other.served_by_existing;
  commands += other.commands;
  channels_refused += other.channels_refused;
  handshakes_started += other.handshakes_started;
  handshakes_failed += other.handshakes_failed;
  sessions_opened += other.sessions_opened;
  exhausted += other.exhausted;
  timeouts += other.timeouts;
  channel_limit_lowered += other.channel_limit_lowered;
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

// One authenticated connection in a server's pool.
struct PooledSession {
  PooledSession(ssh::Session connected, std::size_t limit, Clock::time_point retire)
      : session(std::move(connected)),
        channel_limit(limit),
        created(Clock::now()),
        last_used(created),
        retire_at(retire) {}

  ssh::Session session;
  bool draining = false;      // no new leases; closed once in_use drops to zero
  std::size_t in_use = 0;     // leases out on this session
  std::size_t channel_limit;  // lowered when the server refuses a channel
  std::uint64_t leases = 0;   // leases granted so far
  Clock::time_point created;
  Clock::time_point last_used;
  Clock::time_point retire_at;
  Clock::duration idle_before_grant{};  // how long it sat unused before the latest lease
  // when recent leases ended, oldest first; their slots are cooling down (kSlotCooldown)
  std::deque<Clock::time_point> cooling;
  Clock::time_point last_release{};  // when a lease on it last ended

  // Free channel slots: reaped (timed-out) channels still occupy the server's MaxSessions, and
  // so do slots whose close the server may not have processed yet.
  [[nodiscard]] std::size_t free_slots(Clock::time_point now) {
    while (!cooling.empty() && cooling.front() + kSlotCooldown <= now) {
      cooling.pop_front();
    }
    const std::size_t busy = std::max(in_use, session.active_channels()) + cooling.size();
    return busy >= channel_limit ? 0 : channel_limit - busy;
  }
};

// One caller queued in acquire().
struct Waiter {
  Priority priority = Priority::normal;
  asio::steady_timer* timer = nullptr;
  std::shared_ptr<PooledSession> granted;
  std::optional<Error> failed;
  bool done = false;
};

// Same address and credentials: re-registering such a server changes nothing.
bool same_target(const Server& a, const Server& b) {
  const auto& x = a.connect;
  const auto& y = b.connect;
  return a.endpoint.host == b.endpoint.host && a.endpoint.port == b.endpoint.port &&
         x.user == y.user && x.auth == y.auth && x.identity_file == y.identity_file &&
         x.passphrase == y.passphrase && x.password == y.password &&
         x.agent_socket == y.agent_socket && x.known_hosts_file == y.known_hosts_file &&
         x.host_key_policy == y.host_key_policy && x.process_ssh_config == y.process_ssh_config;
}

}  // namespace

// One server's pool.
struct ServerPool {
  explicit ServerPool(Server config, std::size_t channel_limit)
      : server(std::move(config)), learned_channel_limit(channel_limit) {}

  Server server;
  // ready and draining sessions, in creation order
  std::vector<std::shared_ptr<PooledSession>> sessions;
  std::size_t connecting = 0;
  std::size_t active = 0;  // leases out on this server
  // waiters per priority, FIFO within each
  std::array<std::deque<Waiter*>, 3> queues;
  std::size_t learned_channel_limit;
  std::optional<Error> circuit;  // auth or host-key failure: no attempts until circuit_until
  Clock::time_point circuit_until{};
  std::optional<Error> last_connect_error;
  int consecutive_failures = 0;
  Clock::time_point retry_at{};
  Clock::time_point next_command_at{};
  bool cooldown_wake_pending = false;
  bool removed = false;  // remove_server(): drained, refuses acquires until added again
  PoolStats stats;

  [[nodiscard]] std::size_t waiting() const {
    return queues[0].size() + queues[1].size() + queues[2].size();
  }
  [[nodiscard]] std::size_t ready_count() const {
    return static_cast<std::size_t>(
        std::count_if(sessions.begin(), sessions.end(),
                      [](const auto& s) { return !s->draining && s->session.alive(); }));
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

  void add_server(Server server);
  void remove_server(const std::string& id);
  void start_cleanup();
  void release(Lease::Slot& slot, int how);
  void maintenance();
  [[nodiscard]] PoolStats stats_of(const ServerPool& pool) const;

  asio::any_io_executor executor_;
  PoolConfig config_;
  std::map<std::string, std::unique_ptr<ServerPool>> servers_;
  std::size_t total_active_ = 0;
  std::size_t total_handshakes_ = 0;
  bool shutting_down_ = false;
  bool cleanup_started_ = false;
  asio::steady_timer cleanup_timer_;
  std::mt19937_64 rng_;
  std::vector<asio::steady_timer*> drain_waiters_;  // shutdown() waiting for leases to return

 private:
  std::shared_ptr<PooledSession> pick_session(ServerPool& pool);
  void prune_dead(ServerPool& pool);
  void dispatch_all();
  void wake_after_cooldown(ServerPool& pool);
  static awaitable<void> redispatch_at(std::shared_ptr<Impl> self, ServerPool* pool,
                                       Clock::time_point when);
  void grant(ServerPool& pool, PooledSession& session);
  void dispatch(ServerPool& pool);
  void maybe_grow(ServerPool& pool, bool for_warming = false);
  void fail_waiters(ServerPool& pool, const Error& error);
  void evict(ServerPool& pool, const std::shared_ptr<PooledSession>& session, Eviction why);
  void close_later(std::shared_ptr<PooledSession> session);
  static awaitable<void> connect(std::shared_ptr<Impl> self, ServerPool* pool);
  static awaitable<void> close_session(std::shared_ptr<PooledSession> session, Deadline deadline);
  Error exhausted_error(const ServerPool& pool, Clock::time_point since) const;
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
  return session != nullptr ? fmt::format("[{} #{}]", pool.server.id, session->session.id())
                            : fmt::format("[{}]", pool.server.id);
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
  // so the next command runs on the server as now configured; and the server gets another
  // chance at once.
  pool.server = std::move(server);
  pool.circuit.reset();
  pool.consecutive_failures = 0;
  pool.retry_at = {};
  for (auto session : std::vector<std::shared_ptr<PooledSession>>(pool.sessions)) {
    session->draining = true;
    if (session->in_use == 0) {
      evict(pool, session, Eviction::error);
    }
  }
  logger()->info("[{}] settings changed; existing connections drain", id);
}

void Registry::Impl::remove_server(const std::string& id) {
  auto found = servers_.find(id);
  if (found == servers_.end() || found->second->removed) {
    return;
  }
  // The pool object stays (leases in flight point at it) but serves nobody: waiters fail, idle
  // sessions close now, busy ones when their commands end.
  ServerPool& pool = *found->second;
  pool.removed = true;
  fail_waiters(pool, make_error(Errc::unknown_server,
                                fmt::format("server \"{}\" was removed from the inventory", id)));
  for (auto session : std::vector<std::shared_ptr<PooledSession>>(pool.sessions)) {
    session->draining = true;
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
  for (auto candidate : std::vector<std::shared_ptr<PooledSession>>(pool.sessions)) {
    if (!candidate->session.alive()) {
      candidate->draining = true;
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
void Registry::Impl::dispatch_all() {
  for (auto& [id, pool] : servers_) {
    if (pool->waiting() > 0) {
      dispatch(*pool);
    }
  }
}

std::shared_ptr<PooledSession> Registry::Impl::pick_session(ServerPool& pool) {
  if (pool.active >= config_.max_concurrent || total_active_ >= config_.max_concurrent_total) {
    return nullptr;
  }
  std::shared_ptr<PooledSession> best;
  const auto now = Clock::now();
  for (auto& candidate : pool.sessions) {
    if (candidate->draining || !candidate->session.alive() || candidate->free_slots(now) == 0) {
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
  ++session.in_use;
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
}

void Registry::Impl::maybe_grow(ServerPool& pool, bool for_warming) {
  if (shutting_down_ || (!for_warming && pool.waiting() == 0)) {
    return;
  }
  const auto now = Clock::now();
  if ((pool.circuit && now < pool.circuit_until) || now < pool.retry_at) {
    return;
  }
  if (pool.active >= config_.max_concurrent || total_active_ >= config_.max_concurrent_total) {
    return;  // the limit, not the sessions, is what waiters wait for
  }
  // A slot still cooling down after a lease ended will serve a waiter within milliseconds.
  for (auto& session : pool.sessions) {
    if (!for_warming && !session->draining && session->session.alive() &&
        session->free_slots(now) + session->cooling.size() > 0) {
      return;
    }
  }
  // Sessions being opened will serve this many waiters once up.
  const std::size_t coming = pool.connecting * pool.learned_channel_limit;
  if (!for_warming && coming >= pool.waiting()) {
    return;
  }
  const std::size_t live = pool.sessions.size() + pool.connecting;
  if (live >= config_.max_connections || pool.connecting >= config_.max_handshakes_per_server ||
      total_handshakes_ >= config_.max_handshakes_total) {
    return;
  }
  ++pool.connecting;
  ++total_handshakes_;
  ++pool.stats.handshakes_started;
  asio::co_spawn(executor_, connect(shared_from_this(), &pool), asio::detached);
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

awaitable<void> Registry::Impl::close_session(std::shared_ptr<PooledSession> session,
                                              Deadline deadline) {
  co_await session->session.async_close(deadline);
}

void Registry::Impl::close_later(std::shared_ptr<PooledSession> session) {
  // Long enough for a timed-out command's TERM/KILL sequence to finish first.
  asio::co_spawn(executor_,
                 close_session(std::move(session), Deadline::after(std::chrono::seconds(3))),
                 asio::detached);
}

void Registry::Impl::evict(ServerPool& pool, const std::shared_ptr<PooledSession>& session,
                           Eviction why) {
  const auto found = std::find(pool.sessions.begin(), pool.sessions.end(), session);
  if (found == pool.sessions.end()) {
    return;
  }
  ++pool.stats.evictions[static_cast<std::size_t>(why)];
  static constexpr std::array<const char*, kEvictionKinds> kWhy{"idle", "max lifetime", "dead",
                                                                "error", "shutdown"};
  logger()->debug("{} closing connection ({}, served {} leases)", tag(pool, session.get()),
                  kWhy[static_cast<std::size_t>(why)], session->leases);
  pool.sessions.erase(found);
  close_later(session);
}

awaitable<void> Registry::Impl::connect(std::shared_ptr<Impl> self, ServerPool* pool) {
  const auto started = Clock::now();
  auto endpoint = pool->server.endpoint;
  auto options = pool->server.connect;
  options.keepalive_interval = self->config_.keepalive_interval;
  options.keepalive_max_missed = self->config_.keepalive_max_missed;
  auto connected = co_await ssh::Session::async_connect(
      std::move(endpoint), std::move(options), Deadline::after(self->config_.connect_timeout));
  --pool->connecting;
  --self->total_handshakes_;
  // A handshake slot freed up: servers held back by the global cap may grow now.
  asio::post(self->executor_, [weak = self->weak_from_this()] {
    if (auto registry = weak.lock(); registry && !registry->shutting_down_) {
      registry->dispatch_all();
    }
  });
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  if (!connected) {
    ++pool->stats.handshakes_failed;
    const Error& error = connected.error();
    if (opens_circuit(error)) {
      pool->circuit = error;
      pool->circuit_until = Clock::now() + self->config_.backoff_max;
      logger()->warn("{} {}; no new connection for {} s or until its settings change",
                     self->tag(*pool, nullptr), error.message(),
                     self->config_.backoff_max.count() / 1000);
      // The callers waiting now get the real reason; later ones get circuit_open.
      self->fail_waiters(*pool, error);
    } else {
      ++pool->consecutive_failures;
      const double factor = std::pow(2.0, std::min(pool->consecutive_failures - 1, 20));
      const auto backoff = std::chrono::milliseconds(static_cast<std::int64_t>(
          std::min(static_cast<double>(self->config_.backoff_max.count()),
                   static_cast<double>(self->config_.backoff_initial.count()) * factor) *
          self->jitter(0.2)));
      pool->retry_at = Clock::now() + backoff;
      pool->last_connect_error = error;
      logger()->warn("{} connect failed ({}): {}; next attempt in {} ms", self->tag(*pool, nullptr),
                     pool->consecutive_failures, error.message(), backoff.count());
      if (pool->ready_count() == 0 && pool->connecting == 0) {
        // Nothing will serve the queue soon: tell the callers now rather than at their deadline.
        self->fail_waiters(*pool, error);
      }
    }
    co_return;
  }
  if (self->shutting_down_) {
    // Counted like any other, so started == opened + failed always holds.
    ++pool->stats.sessions_opened;
    ++pool->stats.evictions[static_cast<std::size_t>(Eviction::shutdown)];
    co_await connected->async_close(Deadline::after(std::chrono::seconds(1)));
    co_return;
  }
  pool->consecutive_failures = 0;
  pool->last_connect_error.reset();
  ++pool->stats.sessions_opened;
  pool->stats.handshake_time.record(elapsed);
  const auto lifetime =
      self->config_.max_lifetime.count() > 0
          ? Clock::now() +
                std::chrono::milliseconds(static_cast<std::int64_t>(
                    static_cast<double>(self->config_.max_lifetime.count()) * self->jitter(0.1)))
          : Clock::time_point::max();
  auto session =
      std::make_shared<PooledSession>(std::move(*connected), pool->learned_channel_limit, lifetime);
  logger()->info("{} connected in {} ms ({} connections)", self->tag(*pool, session.get()),
                 elapsed.count() / 1000, pool->sessions.size() + 1);
  pool->sessions.push_back(std::move(session));
  self->dispatch(*pool);
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
                  pool.server.id, ms_since(since), pool.sessions.size(), pool.connecting, channels,
                  pool.active, config_.max_concurrent, pool.waiting()));
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
    const auto now = Clock::now();
    if (pool.circuit && now < pool.circuit_until) {
      co_return make_error(
          Errc::circuit_open,
          fmt::format(
              "{} (no new attempt for {} s)", pool.circuit->message(),
              std::chrono::duration_cast<std::chrono::seconds>(pool.circuit_until - now).count()));
    }
    if (pool.ready_count() == 0 && pool.connecting == 0 && now < pool.retry_at &&
        pool.last_connect_error) {
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
      }
    }
    if (!session) {
      self->prune_dead(pool);
      const bool can_grow = pool.sessions.size() + pool.connecting < self->config_.max_connections;
      if (!can_grow && pool.connecting == 0 && self->config_.on_exhausted != OnExhausted::queue) {
        ++pool.stats.exhausted;
        if (self->config_.on_exhausted == OnExhausted::direct) {
          break;  // the risky fallback below
        }
        co_return self->exhausted_error(pool, started);
      }
      asio::steady_timer timer(self->executor_, deadline.at());
      Waiter waiter;
      waiter.priority = priority;
      waiter.timer = &timer;
      auto& queue = pool.queues[static_cast<std::size_t>(priority)];
      queue.push_back(&waiter);
      self->dispatch(pool);  // grows the pool, or wakes us when a cooling slot frees up
      while (!waiter.done) {
        co_await timer.async_wait(kNoThrow);
        if (!waiter.done && Clock::now() >= deadline.at()) {
          break;
        }
      }
      if (!waiter.done) {
        queue.erase(std::find(queue.begin(), queue.end(), &waiter));
      }
      if (waiter.failed) {
        co_return *waiter.failed;
      }
      session = std::move(waiter.granted);
      if (!session) {
        ++pool.stats.exhausted;
        logger()->warn("{} connection pool exhausted", self->tag(pool, nullptr));
        co_return self->exhausted_error(pool, started);
      }
    }
    const auto waited =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
    pool.stats.wait_time.record(waited);
    auto slot = std::make_unique<Lease::Slot>();
    slot->registry = self;
    slot->server = &pool;
    slot->pooled = session;
    const bool reused = session->leases > 1;
    Lease lease(std::move(slot), reused, waited);

    // Health check before reuse: a session that sat idle may have died quietly.
    if (reused && self->config_.health_check_idle.count() > 0 &&
        session->idle_before_grant > self->config_.health_check_idle) {
      ++pool.stats.health_checks;
      auto ping = co_await session->session.async_ping(
          deadline.min(Deadline::after(std::chrono::seconds(5))));
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

void Registry::Impl::release(Lease::Slot& slot, int how) {
  ServerPool& pool = *slot.server;
  if (slot.direct) {
    auto direct = std::make_shared<PooledSession>(std::move(*slot.direct), 1, Clock::now());
    slot.direct.reset();
    close_later(std::move(direct));
    return;
  }
  auto session = std::move(slot.pooled);
  session->cooling.push_back(Clock::now());
  --session->in_use;
  --pool.active;
  --total_active_;
  if (how == kReleaseChannelRefused) {
    ++pool.stats.channels_refused;  // it ran nothing
  } else {
    ++pool.stats.commands;
  }
  session->last_used = Clock::now();
  // A refusal soon after another lease on this session ended may be the close race that the
  // cooldown could not prevent (a busy sshd reads both packets at once): retried, not learned.
  const bool near_a_close = slot.granted_at < session->last_release + kCloseRaceWindow;
  session->last_release = Clock::now();
  if (how == kReleaseChannelRefused && near_a_close) {
    logger()->debug("{} channel refused right after a close; retrying", tag(pool, session.get()));
  } else if (how == kReleaseChannelRefused) {
    // The server's real MaxSessions: the channels it had confirmed when it said no (replies come
    // in order, so every earlier open has been answered by now).
    const std::size_t limit = std::max<std::size_t>(1, session->session.open_channels());
    if (limit < session->channel_limit) {
      session->channel_limit = limit;
      pool.learned_channel_limit = std::min(pool.learned_channel_limit, limit);
      ++pool.stats.channel_limit_lowered;
      logger()->info("{} server refused a channel: limit lowered to {} channels per connection",
                     tag(pool, session.get()), limit);
    }
  }
  if (how == kReleaseTimedOut) {
    ++pool.stats.timeouts;
  }
  if (how == kReleaseDiscard || how == kReleaseTimedOut || !session->session.alive()) {
    session->draining = true;
  }
  if (session->draining && session->in_use == 0) {
    evict(pool, session,
          !session->session.alive()            ? Eviction::dead
          : Clock::now() >= session->retire_at ? Eviction::lifetime
                                               : Eviction::error);
  }
  if (total_active_ + 1 >= config_.max_concurrent_total) {
    dispatch_all();  // the global cap held back other servers' waiters
  } else {
    dispatch(pool);
  }
  for (auto* waiter : drain_waiters_) {
    waiter->cancel();
  }
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
      if (!candidate->session.alive()) {
        if (candidate->in_use == 0) {
          evict(pool, candidate, Eviction::dead);
        } else {
          candidate->draining = true;
        }
        continue;
      }
      if (!candidate->draining && now >= candidate->retire_at) {
        candidate->draining = true;  // replaced by the next waiter's growth; never cut mid-command
        --ready;
      }
      if (candidate->draining) {
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
    if (!pool.removed && pool.ready_count() + pool.connecting < config_.min_idle) {
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
    if (pool.ready_count() + pool.connecting < target) {
      self->maybe_grow(pool, true);
    }
    if (pool.connecting == 0 && pool.ready_count() < target) {
      break;  // limits or backoff stop us
    }
    asio::steady_timer tick(self->executor_, std::chrono::milliseconds(5));
    co_await tick.async_wait(kNoThrow);
  }
  co_return pool.ready_count();
}

awaitable<void> Registry::Impl::shutdown(std::shared_ptr<Impl> self, Deadline deadline) {
  self->shutting_down_ = true;
  self->cleanup_timer_.cancel();
  const Error closing = make_error(Errc::shutting_down, "the connection pool is shutting down");
  for (auto& [id, pool] : self->servers_) {
    self->fail_waiters(*pool, closing);
  }
  // Let leased commands finish until the deadline.
  while (self->total_active_ > 0 && !deadline.expired()) {
    asio::steady_timer wake(self->executor_, deadline.at());
    self->drain_waiters_.push_back(&wake);
    co_await wake.async_wait(kNoThrow);
    std::erase(self->drain_waiters_, &wake);
  }
  for (auto& [id, pool] : self->servers_) {
    for (auto& session : std::vector<std::shared_ptr<PooledSession>>(pool->sessions)) {
      ++pool->stats.evictions[static_cast<std::size_t>(Eviction::shutdown)];
      co_await close_session(session, deadline.min(Deadline::after(std::chrono::seconds(1))));
    }
    pool->sessions.clear();
  }
}

PoolStats Registry::Impl::stats_of(const ServerPool& pool) const {
  PoolStats stats = pool.stats;
  stats.sessions_connecting = pool.connecting;
  stats.waiters = pool.waiting();
  const auto now = Clock::now();
  stats.circuits_open = pool.circuit && now < pool.circuit_until ? 1 : 0;
  stats.backing_off = !stats.circuits_open && now < pool.retry_at ? 1 : 0;
  for (const auto& session : pool.sessions) {
    if (session->draining || !session->session.alive()) {
      ++stats.sessions_draining;
    } else {
      ++stats.sessions_ready;
    }
    stats.channels_in_use += session->in_use;
  }
  return stats;
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
  return slot_->direct ? *slot_->direct : slot_->pooled->session;
}

void Lease::finish(int how) noexcept {
  if (!slot_) {
    return;
  }
  auto slot = std::move(slot_);
  slot->registry->release(*slot, how);
}

void Lease::release() noexcept { finish(kReleaseNormal); }
void Lease::discard() noexcept { finish(kReleaseDiscard); }
void Lease::channel_refused() noexcept { finish(kReleaseChannelRefused); }
void Lease::timed_out() noexcept { finish(kReleaseTimedOut); }

// ---------------------------------------------------------------------------------------------
// Registry

Registry::Registry(asio::any_io_executor executor, PoolConfig config)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(config))) {}

Registry::~Registry() {
  impl_->shutting_down_ = true;
  impl_->cleanup_timer_.cancel();
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
  return Impl::acquire(impl_, std::move(server_id), priority, deadline);
}

asio::awaitable<std::size_t> Registry::async_warm(std::string server_id, std::size_t count,
                                                  Deadline deadline) {
  return Impl::warm(impl_, std::move(server_id), count, deadline);
}

void Registry::run_maintenance() { impl_->maintenance(); }

asio::awaitable<void> Registry::async_shutdown(Deadline deadline) {
  return Impl::shutdown(impl_, deadline);
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
  return total;
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
