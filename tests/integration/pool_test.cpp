// pool::Registry against a real OpenSSH sshd on 127.0.0.1: the seed's claims (one handshake per
// server, slots returned, idle cleanup, "10 diagnoses in parallel" under stock sshd limits) and the
// failure paths the seed never tested (MaxSessions lower than assumed, queue deadlines, priority,
// frozen and restarted servers, wrong keys, max lifetime, shutdown), asserted on the pool's
// counters and on sshd's own log.
#include "healer/pool/pool.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "async_poll.hpp"
#include "blackhole_proxy.hpp"
#include "cancellable.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/errors.hpp"
#include "healer/ssh/errors.hpp"
#include "pool_helpers.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"

namespace healer {
namespace {

using test::async_pause;
using test::async_poll;
using test::evictions;

using namespace std::chrono_literals;
using test::SshdFixture;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
const std::string kServer = "srv";

pool::Server server_for(const SshdFixture& sshd, std::string id = kServer,
                        const std::filesystem::path& key = {}) {
  return test::pool_server(sshd, std::move(id), key);
}

std::int64_t ms_since(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

// N commands at once through the executor; results in input order.
struct Fanout {
  Fanout(std::size_t size, const asio::any_io_executor& executor)
      : results(size, Error{}), pending(size), done(executor, Clock::time_point::max()) {}
  std::vector<Result<ssh::CommandResult>> results;
  std::size_t pending;
  asio::steady_timer done;
};

asio::awaitable<void> run_into(exec::Executor* executor, std::shared_ptr<Fanout> fanout,
                               std::size_t index, std::string server_id, std::string command,
                               exec::RunOptions options) {
  auto result =
      co_await executor->async_run(std::move(server_id), std::move(command), std::move(options));
  fanout->results[index] = std::move(result);
  if (--fanout->pending == 0) {
    fanout->done.cancel();
  }
}

// commands[i] runs on server_ids[i], all at once.
asio::awaitable<std::vector<Result<ssh::CommandResult>>> async_run_on(
    exec::Executor* executor, std::vector<std::string> server_ids,
    std::vector<std::string> commands, exec::RunOptions options) {
  auto io = co_await asio::this_coro::executor;
  auto fanout = std::make_shared<Fanout>(commands.size(), io);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    asio::co_spawn(io, run_into(executor, fanout, i, server_ids[i], commands[i], options),
                   asio::detached);
  }
  while (fanout->pending > 0) {
    co_await fanout->done.async_wait(kNoThrow);
  }
  co_return std::move(fanout->results);
}

asio::awaitable<std::vector<Result<ssh::CommandResult>>> async_run_concurrently(
    exec::Executor* executor, std::string server_id, std::vector<std::string> commands,
    exec::RunOptions options) {
  std::vector<std::string> server_ids(commands.size(), server_id);
  co_return co_await async_run_on(executor, std::move(server_ids), std::move(commands),
                                  std::move(options));
}

exec::RunOptions run_options(std::chrono::milliseconds timeout) {
  exec::RunOptions options;
  options.deadline = Deadline::after(timeout);
  return options;
}

std::vector<std::string> echo_commands(int count, std::string prefix = "echo ") {
  std::vector<std::string> commands;
  for (int i = 0; i < count; ++i) {
    commands.push_back(prefix + std::to_string(i));
  }
  return commands;
}

// Counts results; prints the first few errors so a failure says why.
std::size_t count_errors(const std::vector<Result<ssh::CommandResult>>& results) {
  std::size_t errors = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (!results[i]) {
      if (++errors <= 5) {
        ADD_FAILURE() << "request " << i << ": " << results[i].error().message();
      }
    }
  }
  return errors;
}

class PoolTest : public ::testing::Test {
 protected:
  asio::io_context io_;
};

// What a scenario coroutine saw, for assertions after the loop stopped.
struct Observed {
  std::vector<Result<ssh::CommandResult>> results;
  pool::PoolStats stats;
  pool::PoolStats stats_after;
  std::vector<std::string> notes;
  std::int64_t elapsed_ms = 0;
  std::int64_t elapsed2_ms = 0;
  std::vector<Error> errors;    // of acquires
  std::vector<bool> checks;     // conditions seen inside the scenario, in order
  std::size_t remote_left = 0;  // remote processes of the scenario still running
};

// --- 1. one handshake for many commands -------------------------------------------------------

asio::awaitable<Observed> sequential_commands(pool::Registry* registry, int count) {
  Observed seen;
  exec::Executor executor(*registry);
  for (int i = 0; i < count; ++i) {
    auto options = run_options(10s);
    auto result = co_await executor.async_run(kServer, "echo " + std::to_string(i), options);
    seen.results.push_back(std::move(result));
  }
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, TwentySequentialCommandsUseOneHandshake) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, sequential_commands(&registry, 20));
  ASSERT_EQ(count_errors(seen.results), 0U);
  for (std::size_t i = 0; i < seen.results.size(); ++i) {
    EXPECT_EQ(seen.results[i]->out, std::to_string(i) + "\n");
    EXPECT_EQ(seen.results[i]->session_reused, i > 0) << i;
  }
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
  EXPECT_EQ(seen.stats.sessions_opened, 1U);
  EXPECT_EQ(seen.stats.acquisitions, 20U);
  EXPECT_EQ(seen.stats.commands, 20U);
  EXPECT_EQ(seen.stats.served_by_existing, 19U);
  EXPECT_DOUBLE_EQ(seen.stats.hit_rate(), 19.0 / 20.0);
  EXPECT_DOUBLE_EQ(seen.stats.reuse(), 20.0);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  // The server's view, not the pool's: one TCP connection, one login, twenty channels.
  EXPECT_EQ(sshd.connection_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_TRUE(sshd.wait_for_log("Starting session: ", 20));
}

// total_stats(max_age) hands back the last sum while it is that recent (scrapes that come
// together share one walk over every server), and a new one once it is older.
TEST_F(PoolTest, ARecentTotalIsSharedUntilItIsTooOld) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  EXPECT_EQ(registry.total_stats().acquisitions, 0U);
  const auto seen = test::run_async(io_, sequential_commands(&registry, 3));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(registry.total_stats(std::chrono::hours(1)).acquisitions, 0U);         // the last sum
  EXPECT_EQ(registry.total_stats(std::chrono::milliseconds(0)).acquisitions, 3U);  // a new one
  EXPECT_EQ(registry.total_stats(std::chrono::hours(1)).acquisitions, 3U);         // now the last
}

// The sum of async_total_stats, and how many turns other work of the loop got while it ran (a
// handler that posts itself again each time it runs).
struct SlicedTotal {
  pool::PoolStats total;
  int other_turns = 0;
};

asio::awaitable<SlicedTotal> sliced_total(pool::Registry* registry) {
  SlicedTotal seen;
  auto done = std::make_shared<bool>(false);
  auto executor = co_await asio::this_coro::executor;
  std::function<void()> other_work = [&seen, done, executor, &other_work] {
    if (!*done) {
      ++seen.other_turns;
      asio::post(executor, other_work);
    }
  };
  asio::post(executor, other_work);
  seen.total = co_await registry->async_total_stats();
  *done = true;
  co_await asio::post(executor, asio::use_awaitable);  // the last turn sees `done`
  co_return seen;
}

// async_total_stats sums a slice of servers at a time and lets the loop's other work run in
// between (one sum over 10,000 servers held the loop ~20 ms); the sum is the same.
TEST_F(PoolTest, ASlicedTotalLetsOtherWorkRunAndAddsUpTheSame) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  // Servers never connected to (no acquire): they only make the walk long.
  for (int i = 0; i < 1200; ++i) {
    registry.add_server(server_for(sshd, fmt::format("idle-{:04}", i)));
  }
  const auto ran = test::run_async(io_, sequential_commands(&registry, 3));
  ASSERT_EQ(count_errors(ran.results), 0U);
  const auto seen = test::run_async(io_, sliced_total(&registry));
  EXPECT_GE(seen.other_turns, 2) << "1,201 servers in slices of 500";
  const auto whole = registry.total_stats();
  EXPECT_EQ(seen.total.acquisitions, 3U);
  EXPECT_EQ(seen.total.acquisitions, whole.acquisitions);
  EXPECT_EQ(seen.total.commands, whole.commands);
  EXPECT_EQ(seen.total.sessions_opened, whole.sessions_opened);
  EXPECT_EQ(seen.total.handshake_time.total, whole.handshake_time.total);
}

asio::awaitable<Observed> concurrent_commands(pool::Registry* registry, int count) {
  Observed seen;
  exec::Executor executor(*registry);
  seen.results =
      co_await async_run_concurrently(&executor, kServer, echo_commands(count), run_options(10s));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// sshd frees a channel's MaxSessions slot only after it processed our close, so with
// max_channels == MaxSessions a slot reused at once can be refused; the executor retries such a
// command (one more lease). That must cost neither a handshake nor the learned channel limit.
TEST_F(PoolTest, TwentyConcurrentCommandsUseOneHandshake) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, concurrent_commands(&registry, 20));
  ASSERT_EQ(count_errors(seen.results), 0U);
  for (std::size_t i = 0; i < seen.results.size(); ++i) {
    EXPECT_EQ(seen.results[i]->out, std::to_string(i) + "\n");
  }
  const std::size_t refused = sshd.refused_session_count();
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
  EXPECT_EQ(seen.stats.sessions_opened, 1U);
  EXPECT_EQ(seen.stats.channel_limit_lowered, 0U);
  // (A spare channel the server refused is sshd's refusal too, but no lease: see
  // spare_channels_test.)
  EXPECT_EQ(seen.stats.acquisitions, 20U + refused - seen.stats.spares_refused);
  EXPECT_EQ(seen.stats.served_by_existing, seen.stats.acquisitions - 1);
  EXPECT_EQ(sshd.connection_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_TRUE(sshd.wait_for_log("Starting session: ", 20));
  std::cout << "20 concurrent commands: " << refused << " channel(s) refused by sshd, hit rate "
            << seen.stats.hit_rate() << ", reuse " << seen.stats.reuse() << "\n";
}

// --- 2. a lease returns its slot; discard drops the session -----------------------------------

asio::awaitable<Observed> lease_lifecycle(pool::Registry* registry) {
  Observed seen;
  {
    auto lease =
        co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
    EXPECT_TRUE(lease) << lease.error().message();
    if (!lease) {
      co_return seen;
    }
    EXPECT_FALSE(lease->reused());
    EXPECT_EQ(registry->stats(kServer).channels_in_use, 1U);
    EXPECT_EQ(registry->stats(kServer).sessions_ready, 1U);
    // Moving the lease moves the slot, it does not return it.
    pool::Lease moved = std::move(*lease);
    EXPECT_FALSE(static_cast<bool>(*lease));
    EXPECT_TRUE(static_cast<bool>(moved));
    EXPECT_EQ(registry->stats(kServer).channels_in_use, 1U);
  }
  // Out of scope: the slot is back, the session stays.
  EXPECT_EQ(registry->stats(kServer).channels_in_use, 0U);
  EXPECT_EQ(registry->stats(kServer).sessions_ready, 1U);

  // Explicit release() is the destructor's job done early, and idempotent.
  auto second =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(second);
  if (second) {
    EXPECT_TRUE(second->reused());
    second->release();
    second->release();
  }
  EXPECT_EQ(registry->stats(kServer).channels_in_use, 0U);
  EXPECT_EQ(registry->stats(kServer).commands, 2U);

  // discard(): the session leaves the pool; the next acquire opens a new one.
  auto third =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(third);
  if (third) {
    third->discard();
  }
  seen.stats = registry->stats(kServer);
  auto fourth =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(fourth);
  if (fourth) {
    EXPECT_FALSE(fourth->reused());
    ssh::ExecOptions options;
    auto result =
        co_await fourth->session().async_exec("echo fresh", options, Deadline::after(10s));
    EXPECT_TRUE(result);
    fourth->release();
  }
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, LeaseReturnsItsSlotAndDiscardDropsTheSession) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, lease_lifecycle(&registry));
  // After discard(): nothing ready, the eviction counted as an error eviction.
  EXPECT_EQ(seen.stats.sessions_ready, 0U);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::error), 1U);
  EXPECT_EQ(seen.stats_after.handshakes_started, 2U);
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(seen.stats_after.acquisitions, 4U);
  EXPECT_EQ(seen.stats_after.served_by_existing, 2U);
  EXPECT_EQ(seen.stats_after.channels_in_use, 0U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
  // The discarded session was closed politely: sshd saw the client disconnect.
  EXPECT_TRUE(sshd.wait_for_log("Received disconnect from", 1) ||
              sshd.wait_for_log("Disconnected from user", 1));
}

// --- 3. idle sessions are cleaned, min_idle keeps some ----------------------------------------

PoolConfig idle_config() {
  PoolConfig config;
  config.idle_timeout = 200ms;
  config.cleanup_interval = 100ms;
  return config;
}

asio::awaitable<Observed> idle_cleanup(pool::Registry* registry) {
  Observed seen;
  auto lease =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(20s));
  if (!lease) {
    seen.results.push_back(lease.error());
    co_return seen;
  }
  // The session idles from the release: the clock is read right before it, in the same step of
  // the loop (after a command returned, a loaded machine may resume this coroutine only later).
  const auto idle_since = Clock::now();
  lease->release();
  auto cleaned = [registry] { return registry->stats(kServer).sessions_cleaned >= 1; };
  EXPECT_TRUE(co_await async_poll(cleaned, 20s));  // never cleaning fails here
  seen.elapsed_ms = ms_since(idle_since);
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, IdleSessionIsClosedAfterIdleTimeout) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), idle_config());
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, idle_cleanup(&registry));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.stats.sessions_cleaned, 1U);
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::idle), 1U);
  EXPECT_EQ(seen.stats.sessions_ready, 0U);
  EXPECT_GE(seen.stats.cleanup_runs, 2U);
  // Not before idle_timeout; within idle_timeout + one cleanup interval (+10% jitter) + slack
  // (timers fire hundreds of ms late on a loaded machine).
  EXPECT_GE(seen.elapsed_ms, 190);
  EXPECT_LT(seen.elapsed_ms, 5000);
  // The close is polite and the server sees it.
  EXPECT_TRUE(sshd.wait_for_log("Received disconnect from", 1) ||
              sshd.wait_for_log("Disconnected from user", 1));
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
}

asio::awaitable<Observed> idle_cleanup_keeps_min_idle(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto options = run_options(10s);
  auto result = co_await executor.async_run(kServer, "true", options);
  seen.results.push_back(std::move(result));
  const auto ready = co_await registry->async_warm(kServer, 2, Deadline::after(20s));
  EXPECT_EQ(ready, 2U);
  auto cleaned = [registry] { return registry->stats(kServer).sessions_cleaned >= 1; };
  EXPECT_TRUE(co_await async_poll(cleaned, 20s));
  // Several more idle timeouts: the last session stays.
  co_await async_pause(600ms);
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, MinIdleKeepsOneSessionWarm) {
  SshdFixture sshd;
  sshd.start();
  auto config = idle_config();
  config.min_idle = 1;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, idle_cleanup_keeps_min_idle(&registry));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.stats.sessions_opened, 2U);
  EXPECT_EQ(seen.stats.sessions_cleaned, 1U);
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::idle), 1U);
  EXPECT_EQ(seen.stats.sessions_ready, 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
}

asio::awaitable<Observed> warm_without_requests(pool::Registry* registry) {
  Observed seen;
  auto warmed = [registry] { return registry->stats(kServer).sessions_ready >= 1; };
  // A login: 30 ms on a quiet machine, seconds on a loaded one. A pool that never warms fails
  // here all the same.
  EXPECT_TRUE(co_await async_poll(warmed, 20s)) << "no warm session 20 s after add_server";
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// min_idle is "connection warming": a server the pool knows gets its warm session from the
// cleanup timer, without anybody asking first.
TEST_F(PoolTest, MinIdleWarmsAServerBeforeItsFirstRequest) {
  SshdFixture sshd;
  sshd.start();
  auto config = idle_config();
  config.min_idle = 1;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, warm_without_requests(&registry));
  EXPECT_EQ(seen.stats.sessions_ready, 1U);
  EXPECT_GE(seen.stats.cleanup_runs, 1U);
}

// run_maintenance() does the warming by hand.
asio::awaitable<Observed> warm_by_maintenance(pool::Registry* registry) {
  Observed seen;
  registry->run_maintenance();
  auto warmed = [registry] { return registry->stats(kServer).sessions_ready >= 1; };
  EXPECT_TRUE(co_await async_poll(warmed, 5s));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, RunMaintenanceWarmsToMinIdle) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.min_idle = 1;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, warm_by_maintenance(&registry));
  EXPECT_EQ(seen.stats.sessions_ready, 1U);
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
  EXPECT_EQ(seen.stats.acquisitions, 0U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
}

// --- 4. the seed's "10 diagnoses in parallel" under stock sshd limits -------------------------

const std::vector<std::string> kDiagnosis = {"uptime",
                                             "df -P /",
                                             "free -b",
                                             "cat /proc/loadavg",
                                             "systemctl is-system-running || true",
                                             "ps -e | wc -l",
                                             "head -5 /proc/meminfo"};

struct Diagnoses {
  std::vector<std::vector<Result<ssh::CommandResult>>> runs;
  std::size_t pending = 0;
};

asio::awaitable<void> diagnose(exec::Executor* executor, Diagnoses* all, std::size_t index,
                               asio::steady_timer* done) {
  auto options = run_options(20s);
  all->runs[index] = co_await executor->async_run_all(kServer, kDiagnosis, options);
  if (--all->pending == 0) {
    done->cancel();
  }
}

asio::awaitable<Observed> ten_diagnoses(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  Diagnoses all;
  all.runs.resize(10);
  all.pending = 10;
  asio::steady_timer done(io, Clock::time_point::max());
  const auto started = Clock::now();
  for (std::size_t i = 0; i < 10; ++i) {
    asio::co_spawn(io, diagnose(&executor, &all, i, &done), asio::detached);
  }
  while (all.pending > 0) {
    co_await done.async_wait(kNoThrow);
  }
  seen.elapsed_ms = ms_since(started);
  for (auto& run : all.runs) {
    EXPECT_EQ(run.size(), kDiagnosis.size());
    for (auto& result : run) {
      seen.results.push_back(std::move(result));
    }
  }
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, TenDiagnosesInParallelUnderStockSshdLimits) {
  SshdFixture::Options sshd_options;
  sshd_options.max_sessions = 10;            // OpenSSH default
  sshd_options.max_startups = "10:30:100";   // OpenSSH default
  sshd_options.per_source_max_startups = 3;  // a cautious admin
  SshdFixture sshd(sshd_options);
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, ten_diagnoses(&registry));
  ASSERT_EQ(seen.results.size(), 70U);
  EXPECT_EQ(count_errors(seen.results), 0U);
  for (std::size_t i = 0; i < seen.results.size(); ++i) {
    if (seen.results[i]) {
      EXPECT_EQ(seen.results[i]->exit_status, 0)
          << kDiagnosis[i % 7] << ": " << seen.results[i]->err;
      EXPECT_FALSE(seen.results[i]->out.empty()) << kDiagnosis[i % 7];
    }
  }
  EXPECT_LE(seen.stats.handshakes_started, 2U);
  EXPECT_EQ(seen.stats.handshakes_failed, 0U);
  // One lease per command, plus one per channel sshd refused (the executor retries those).
  EXPECT_EQ(seen.stats.acquisitions,
            70U + sshd.refused_session_count() - seen.stats.spares_refused);
  EXPECT_EQ(seen.stats.commands + seen.stats.channels_refused, seen.stats.acquisitions);
  EXPECT_LE(sshd.connection_count(), 2U);
  EXPECT_LE(sshd.accepted_auth_count(), 2U);
  EXPECT_EQ(sshd.dropped_startup_count(), 0U);
  EXPECT_EQ(sshd.failed_auth_count(), 0U);
  std::cout << "10 diagnoses x 7 commands: " << seen.elapsed_ms << " ms, "
            << seen.stats.handshakes_started << " handshake(s), " << sshd.refused_session_count()
            << " channel(s) refused by sshd\n";
}

// --- 5. MaxSessions lower than the pool assumes ------------------------------------------------

asio::awaitable<Observed> many_on_low_max_sessions(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  seen.results = co_await async_run_concurrently(
      &executor, kServer, echo_commands(12, "sleep 0.2; echo "), run_options(15s));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, AdaptsToServerMaxSessionsWithoutFailingRequests) {
  SshdFixture::Options sshd_options;
  sshd_options.max_sessions = 2;
  SshdFixture sshd(sshd_options);
  sshd.start();
  PoolConfig config;  // assumes max_channels = 10
  ASSERT_EQ(config.max_channels, 10U);
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, many_on_low_max_sessions(&registry));
  ASSERT_EQ(count_errors(seen.results), 0U);
  for (std::size_t i = 0; i < seen.results.size(); ++i) {
    EXPECT_EQ(seen.results[i]->out, std::to_string(i) + "\n");
  }
  EXPECT_GT(seen.stats.channel_limit_lowered, 0U);
  EXPECT_GT(sshd.refused_session_count(), 0U);  // the server really said no
  EXPECT_EQ(seen.stats.handshakes_failed, 0U);
  EXPECT_EQ(sshd.dropped_startup_count(), 0U);
  std::cout << "MaxSessions=2: " << seen.stats.sessions_opened << " sessions, "
            << seen.stats.channel_limit_lowered << " limit lowerings, "
            << sshd.refused_session_count() << " refusals, " << seen.stats.acquisitions
            << " acquisitions for 12 commands\n";
}

// The seed's "connection reuse" is commands per connection: a lease whose channel the server
// refused ran no command and must not count. MaxSessions=2 against an assumed 10 makes sure
// there are refusals.
TEST_F(PoolTest, ReuseCountsCommandsNotRefusedChannels) {
  SshdFixture::Options sshd_options;
  sshd_options.max_sessions = 2;
  SshdFixture sshd(sshd_options);
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, many_on_low_max_sessions(&registry));
  ASSERT_EQ(count_errors(seen.results), 0U);
  ASSERT_GT(sshd.refused_session_count(), 0U);
  ASSERT_GT(seen.stats.sessions_opened, 0U);
  EXPECT_DOUBLE_EQ(seen.stats.reuse(), 12.0 / static_cast<double>(seen.stats.sessions_opened))
      << seen.stats.commands << " commands counted for 12 run, " << sshd.refused_session_count()
      << " refusals";
  EXPECT_EQ(seen.stats.commands, 12U);
}

// --- 6. queue deadline -> pool_exhausted ------------------------------------------------------

PoolConfig one_slot_config() {
  PoolConfig config;
  config.max_connections = 1;
  config.max_channels = 1;
  return config;
}

asio::awaitable<Observed> exhaust_one_slot(pool::Registry* registry) {
  Observed seen;
  auto held =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(held);
  const auto started = Clock::now();
  auto second =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(300ms));
  seen.elapsed_ms = ms_since(started);
  if (second) {
    seen.notes.push_back("second acquire succeeded");
  } else {
    seen.results.push_back(second.error());
  }
  seen.stats = registry->stats(kServer);
  // The slot comes back and serves again at once.
  if (held) {
    held->release();
  }
  const auto third_started = Clock::now();
  // A deadline far beyond the bound below: a slot that did not come back would keep it waiting.
  auto third =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(20s));
  seen.elapsed2_ms = ms_since(third_started);
  EXPECT_TRUE(third);
  if (third) {
    third->release();
  }
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, QueueDeadlineIsPoolExhaustedWithWaitAndFullness) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), one_slot_config());
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, exhaust_one_slot(&registry));
  ASSERT_TRUE(seen.notes.empty()) << seen.notes.front();
  ASSERT_EQ(seen.results.size(), 1U);
  const Error& error = seen.results[0].error();
  EXPECT_EQ(error.code, pool::Errc::pool_exhausted) << error.message();
  // Ended by its deadline (a timer: hundreds of ms late on a loaded machine), not by the slot,
  // which is held until after this returns.
  EXPECT_GE(seen.elapsed_ms, 290);
  EXPECT_LT(seen.elapsed_ms, 5000);
  // The message says how long it waited (the timer's 300 ms, later on a loaded machine, never
  // more than was measured) and how full the pool was.
  const auto waited = error.detail.find("waited ");
  ASSERT_NE(waited, std::string::npos) << error.detail;
  const std::int64_t waited_ms = std::strtoll(error.detail.c_str() + waited + 7, nullptr, 10);
  EXPECT_GE(waited_ms, 290) << error.detail;
  EXPECT_LE(waited_ms, seen.elapsed_ms + 1) << error.detail;
  EXPECT_NE(error.detail.find("1 connections"), std::string::npos) << error.detail;
  EXPECT_NE(error.detail.find("1 channels in use"), std::string::npos) << error.detail;
  EXPECT_NE(error.detail.find(kServer), std::string::npos) << error.detail;
  EXPECT_EQ(seen.stats.exhausted, 1U);
  EXPECT_EQ(seen.stats.waiters, 0U);  // the timed-out waiter left the queue
  EXPECT_LT(seen.elapsed2_ms, 2000);
  EXPECT_EQ(seen.stats_after.handshakes_started, 1U);
  EXPECT_EQ(sshd.connection_count(), 1U);
}

asio::awaitable<Observed> exhaust_fail_fast(pool::Registry* registry) {
  Observed seen;
  auto held =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(held);
  const auto started = Clock::now();
  // Failing "at once" is told from waiting by a deadline far beyond the bound the test sets.
  auto second =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(20s));
  seen.elapsed_ms = ms_since(started);
  if (second) {
    seen.notes.push_back("second acquire succeeded");
  } else {
    seen.results.push_back(second.error());
  }
  seen.stats = registry->stats(kServer);
  if (held) {
    held->release();
  }
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, OnExhaustedFailFailsAtOnce) {
  SshdFixture sshd;
  sshd.start();
  auto config = one_slot_config();
  config.on_exhausted = OnExhausted::fail;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, exhaust_fail_fast(&registry));
  ASSERT_TRUE(seen.notes.empty()) << seen.notes.front();
  ASSERT_EQ(seen.results.size(), 1U);
  EXPECT_EQ(seen.results[0].error().code, pool::Errc::pool_exhausted)
      << seen.results[0].error().message();
  EXPECT_LT(seen.elapsed_ms, 2000);  // not the 20 s deadline
  EXPECT_EQ(seen.stats.exhausted, 1U);
  EXPECT_EQ(seen.stats.direct_connections, 0U);
  EXPECT_EQ(sshd.connection_count(), 1U);
}

// --- 7. priority, then FIFO ------------------------------------------------------------------

asio::awaitable<void> wait_and_record(pool::Registry* registry, pool::Priority priority,
                                      std::string name, std::vector<std::string>* order) {
  auto lease = co_await registry->async_acquire(kServer, priority, Deadline::after(8s));
  order->push_back(lease ? name : name + " failed: " + lease.error().message());
  // The lease goes out of scope here: the slot passes to the next waiter.
}

asio::awaitable<Observed> priority_order(pool::Registry* registry) {
  Observed seen;
  auto held =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(held);
  auto io = co_await asio::this_coro::executor;
  std::vector<std::string> order;
  const std::vector<std::pair<pool::Priority, std::string>> arrivals = {
      {pool::Priority::background, "background-1"}, {pool::Priority::normal, "normal-1"},
      {pool::Priority::critical, "critical-1"},     {pool::Priority::background, "background-2"},
      {pool::Priority::normal, "normal-2"},         {pool::Priority::critical, "critical-2"}};
  std::size_t queued = 0;
  for (const auto& [priority, name] : arrivals) {
    asio::co_spawn(io, wait_and_record(registry, priority, name, &order), asio::detached);
    ++queued;
    auto in_queue = [registry, queued] { return registry->stats(kServer).waiters == queued; };
    EXPECT_TRUE(co_await async_poll(in_queue, 2s)) << name << " did not queue";
  }
  EXPECT_TRUE(order.empty());
  if (held) {
    held->release();
  }
  auto all_served = [&order, &arrivals] { return order.size() == arrivals.size(); };
  EXPECT_TRUE(co_await async_poll(all_served, 5s));
  seen.notes = order;
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, WaitersAreServedByPriorityThenFifo) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), one_slot_config());
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, priority_order(&registry));
  const std::vector<std::string> expected = {"critical-1", "critical-2",   "normal-1",
                                             "normal-2",   "background-1", "background-2"};
  EXPECT_EQ(seen.notes, expected);
  EXPECT_EQ(seen.stats.acquisitions, 7U);
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
}

TEST_F(PoolTest, MaxConcurrentOneAlsoServesByPriority) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.max_concurrent = 1;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, priority_order(&registry));
  const std::vector<std::string> expected = {"critical-1", "critical-2",   "normal-1",
                                             "normal-2",   "background-1", "background-2"};
  EXPECT_EQ(seen.notes, expected);
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
}

// --- 8. keepalive evicts a frozen session ------------------------------------------------------

asio::awaitable<Observed> frozen_server(pool::Registry* registry, SshdFixture* sshd) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto before = run_options(10s);
  auto first = co_await executor.async_run(kServer, "echo before", before);
  // The session's last packet arrived just before this: silence is measured from here (pause_all
  // itself takes a while under load).
  const auto quiet_since = Clock::now();
  seen.results.push_back(std::move(first));
  sshd->pause_all();
  auto evicted = [registry] {
    return evictions(registry->stats(kServer), pool::Eviction::dead) >= 1;
  };
  // Never noticing would take this long; noticing takes ~300 ms (bounded in the test).
  const bool noticed = co_await async_poll(evicted, 20s);
  seen.elapsed_ms = ms_since(quiet_since);
  EXPECT_TRUE(noticed) << "frozen session not evicted";
  seen.stats = registry->stats(kServer);
  sshd->resume_all();
  const auto after = run_options(10s);
  auto second = co_await executor.async_run(kServer, "echo after", after);
  seen.results.push_back(std::move(second));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, KeepaliveEvictsAFrozenSessionAndTheNextRequestReconnects) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.keepalive_interval = 100ms;
  config.keepalive_max_missed = 3;
  config.cleanup_interval = 100ms;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, frozen_server(&registry, &sshd));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.results[1]->out, "after\n");
  EXPECT_FALSE(seen.results[1]->session_reused);
  // 3 x 100 ms of silence, then at most one cleanup interval (+10%) until the pool sweeps it.
  // (pause_all() itself, scanning /proc and stopping sshd's processes, is within the bound too.)
  EXPECT_GE(seen.elapsed_ms, 250);
  EXPECT_LT(seen.elapsed_ms, 5000);
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::dead), 1U);
  EXPECT_EQ(seen.stats.sessions_ready, 0U);
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
}

// --- 9. sshd restarted -------------------------------------------------------------------------

asio::awaitable<Observed> restart_between_requests(pool::Registry* registry, SshdFixture* sshd,
                                                   bool wait_until_noticed) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto before = run_options(10s);
  auto first = co_await executor.async_run(kServer, "echo before", before);
  seen.results.push_back(std::move(first));
  sshd->restart();  // blocks the loop: the pool cannot notice before the next request
  if (wait_until_noticed) {
    auto noticed = [registry] { return registry->stats(kServer).sessions_ready == 0; };
    EXPECT_TRUE(co_await async_poll(noticed, 10s)) << "the pool did not notice the dead session";
  }
  seen.stats = registry->stats(kServer);
  const auto started = Clock::now();
  // A new login (seconds on a loaded machine); a dead session occupying the slot until the next
  // sweep (5 minutes) would keep it waiting until this deadline.
  const auto after = run_options(20s);
  auto second = co_await executor.async_run(kServer, "echo after", after);
  seen.elapsed_ms = ms_since(started);
  seen.results.push_back(std::move(second));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, RequestRightAfterSshdRestartRecoversTransparently) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, restart_between_requests(&registry, &sshd, false));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.results[1]->out, "after\n");
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(seen.stats_after.channels_in_use, 0U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
  std::cout << "after restart: " << seen.stats_after.acquisitions << " acquisitions, evictions "
            << "dead=" << evictions(seen.stats_after, pool::Eviction::dead)
            << " error=" << evictions(seen.stats_after, pool::Eviction::error) << ", "
            << seen.elapsed_ms << " ms\n";
}

TEST_F(PoolTest, RequestAfterThePoolNoticedTheRestartRecovers) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, restart_between_requests(&registry, &sshd, true));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.results[1]->out, "after\n");
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
}

// The same with a one-connection pool and the default 5-minute cleanup interval: the dead session
// must not keep occupying the only connection slot until the next sweep.
TEST_F(PoolTest, DeadSessionDoesNotBlockAOneConnectionPoolAfterRestart) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.max_connections = 1;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, restart_between_requests(&registry, &sshd, true));
  EXPECT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_LT(seen.elapsed_ms, 10000);
}

// --- 10. wrong key -> circuit open -------------------------------------------------------------

asio::awaitable<Observed> wrong_key_then_right_key(pool::Registry* registry, pool::Server good) {
  Observed seen;
  exec::Executor executor(*registry);
  seen.results =
      co_await async_run_concurrently(&executor, kServer, echo_commands(10), run_options(10s));
  // And ten more one after another, once the circuit is known to be open.
  for (int i = 0; i < 10; ++i) {
    const auto options = run_options(10s);
    auto result = co_await executor.async_run(kServer, "true", options);
    seen.results.push_back(std::move(result));
  }
  seen.stats = registry->stats(kServer);
  registry->add_server(std::move(good));  // new credentials close the circuit
  const auto options = run_options(10s);
  auto fixed = co_await executor.async_run(kServer, "echo fixed", options);
  seen.notes.push_back(fixed ? fixed->out : "error: " + fixed.error().message());
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, WrongKeyOpensTheCircuitAfterOneFailedLogin) {
  SshdFixture sshd;
  sshd.start();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd, kServer, stranger.private_key));
  const auto seen =
      test::run_async(io_, wrong_key_then_right_key(&registry, server_for(sshd, kServer)));
  ASSERT_EQ(seen.results.size(), 20U);
  for (std::size_t i = 0; i < seen.results.size(); ++i) {
    ASSERT_FALSE(seen.results[i]) << i;
    const auto& code = seen.results[i].error().code;
    EXPECT_TRUE(code == pool::Errc::circuit_open || code == ssh::Errc::auth_failed)
        << i << ": " << seen.results[i].error().message();
  }
  // Every circuit_open names the underlying reason.
  EXPECT_NE(seen.results.back().error().detail.find("auth"), std::string::npos)
      << seen.results.back().error().message();
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
  EXPECT_EQ(seen.stats.handshakes_failed, 1U);
  EXPECT_EQ(seen.stats.acquisitions, 0U);
  // The stats show the open circuit (the dashboard's pool page) until new credentials close it.
  EXPECT_EQ(seen.stats.circuits_open, 1U);
  EXPECT_EQ(seen.stats.backing_off, 0U);
  EXPECT_EQ(seen.stats_after.circuits_open, 0U);
  ASSERT_EQ(seen.notes.size(), 1U);
  EXPECT_EQ(seen.notes[0], "fixed\n");
  EXPECT_EQ(seen.stats_after.sessions_opened, 1U);
  EXPECT_EQ(seen.stats_after.handshakes_started, 2U);
  // The server saw exactly one rejected login and one accepted one: nothing fail2ban would ban.
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_EQ(sshd.connection_count(), 2U);
}

// --- 11. max lifetime drains without cutting a command -----------------------------------------

asio::awaitable<Observed> command_across_lifetime(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto options = run_options(10s);
  const auto started = Clock::now();
  auto long_one = co_await executor.async_run(kServer, "sleep 1; echo done", options);
  seen.elapsed_ms = ms_since(started);
  seen.results.push_back(std::move(long_one));
  seen.stats = registry->stats(kServer);
  const auto next_options = run_options(10s);
  auto next = co_await executor.async_run(kServer, "echo next", next_options);
  seen.results.push_back(std::move(next));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, MaxLifetimeDrainsWithoutCuttingACommand) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.max_lifetime = 300ms;
  config.cleanup_interval = 100ms;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, command_across_lifetime(&registry));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.results[0]->out, "done\n");
  EXPECT_EQ(seen.results[0]->exit_status, 0);
  EXPECT_GE(seen.elapsed_ms, 1000);
  // Retired as soon as the command returned its slot.
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::lifetime), 1U);
  EXPECT_EQ(seen.stats.sessions_ready, 0U);
  EXPECT_EQ(seen.results[1]->out, "next\n");
  EXPECT_FALSE(seen.results[1]->session_reused);
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
}

// --- 12. stress: 20 servers, 3,000 requests (5,000 took 7-13 s on 2 cores) -----------------

constexpr std::size_t kStressServers = 20;
constexpr int kStressRequests = 3000;
constexpr int kStressWorkers = 200;

struct Stress {
  int next = 0;
  int finished = 0;
  int successes = 0;
  int wrong_output = 0;
  std::map<std::string, int> errors;  // by "category:name"
};

asio::awaitable<void> stress_worker(exec::Executor* executor, Stress* stress,
                                    asio::steady_timer* done) {
  while (stress->next < kStressRequests) {
    const int n = stress->next++;
    const std::string server_id =
        "server-" + std::to_string(static_cast<std::size_t>(n) % kStressServers);
    const auto options = run_options(20s);
    auto result = co_await executor->async_run(server_id, "echo " + std::to_string(n), options);
    if (result) {
      ++stress->successes;
      if (result->out != std::to_string(n) + "\n") {
        ++stress->wrong_output;
      }
    } else {
      ++stress->errors[std::string(result.error().code.category().name()) + ":" +
                       result.error().code.message()];
    }
    ++stress->finished;
  }
  if (stress->finished == kStressRequests) {
    done->cancel();
  }
}

std::string fmt_stats(const std::string& id, const pool::PoolStats& stats) {
  std::ostringstream line;
  line << id << ": " << stats.sessions_opened << " sessions opened, " << stats.sessions_ready
       << " ready, " << stats.acquisitions << " acquisitions, " << stats.channel_limit_lowered
       << " limit lowerings, evictions idle/lifetime/dead/error/shutdown";
  for (const auto count : stats.evictions) {
    line << " " << count;
  }
  return line.str();
}

asio::awaitable<Observed> stress(pool::Registry* registry, Stress* state) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  asio::steady_timer done(io, Clock::time_point::max());
  const auto started = Clock::now();
  for (int i = 0; i < kStressWorkers; ++i) {
    asio::co_spawn(io, stress_worker(&executor, state, &done), asio::detached);
  }
  while (state->finished < kStressRequests) {
    co_await done.async_wait(kNoThrow);
  }
  seen.elapsed_ms = ms_since(started);
  seen.stats = registry->total_stats();
  pool::PoolStats sum;
  for (const auto& id : registry->server_ids()) {
    sum += registry->stats(id);
  }
  seen.stats_after = sum;
  for (const auto& id : registry->server_ids()) {
    const auto one = registry->stats(id);
    if (one.sessions_opened > 1) {
      seen.notes.push_back(fmt_stats(id, one));
    }
  }
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// Twenty servers at distinct loopback addresses 127.0.0.1 .. 127.0.0.20, each with its own
// known_hosts entry. OpenSSH listens on at most 16 sockets (MAX_LISTEN_SOCKS), so two sshds serve
// them: the first 127.0.0.1-10 on its port, the second 127.0.0.11-20 on its own.
TEST_F(PoolTest, StressTwentyServersThreeThousandRequestsAllAccountedFor) {
  constexpr std::size_t kPerSshd = kStressServers / 2;
  std::vector<std::unique_ptr<SshdFixture>> sshds;
  for (std::size_t half = 0; half < 2; ++half) {
    SshdFixture::Options sshd_options;
    for (std::size_t i = 1; i <= kPerSshd; ++i) {
      const std::size_t address = half * kPerSshd + i;
      if (address != 1) {  // the fixture itself listens on 127.0.0.1
        sshd_options.extra_config.push_back("ListenAddress 127.0.0." + std::to_string(address));
      }
    }
    sshds.push_back(std::make_unique<SshdFixture>(sshd_options));
    sshds.back()->start();
  }
  const auto known_hosts = sshds[0]->dir() / "known_hosts_all";
  {
    std::ofstream out(known_hosts);
    for (std::size_t half = 0; half < sshds.size(); ++half) {
      std::ifstream fixture_known_hosts(sshds[half]->known_hosts_path());
      std::string pattern;
      std::string key_type;
      std::string key_blob;
      ASSERT_TRUE(fixture_known_hosts >> pattern >> key_type >> key_blob);
      for (std::size_t i = 1; i <= kPerSshd; ++i) {
        out << "[127.0.0." << half * kPerSshd + i << "]:" << sshds[half]->port() << " " << key_type
            << " " << key_blob << "\n";
      }
    }
  }
  PoolConfig config;
  // Ten servers behind one sshd share its MaxStartups (stock 10:30:100): the pool's global
  // handshake cap keeps unauthenticated connections well below it.
  config.max_handshakes_total = 8;
  pool::Registry registry(io_.get_executor(), config);
  for (std::size_t i = 0; i < kStressServers; ++i) {
    auto server = server_for(*sshds[i / kPerSshd], "server-" + std::to_string(i));
    server.endpoint.host = "127.0.0." + std::to_string(i + 1);
    server.connect.known_hosts_file = known_hosts.string();
    registry.add_server(server);
  }
  Stress state;
  const auto seen = test::run_async(io_, stress(&registry, &state), 60s);
  std::cout << kStressRequests << " requests on " << kStressServers
            << " servers: " << seen.elapsed_ms << " ms, " << seen.stats.handshakes_started
            << " handshakes, p99 "
            << "wait " << seen.stats.wait_time.quantile_us(0.99) << " us\n";
  for (const auto& note : seen.notes) {
    std::cout << "  " << note << "\n";
  }
  EXPECT_EQ(state.finished, kStressRequests);
  int error_total = 0;
  for (const auto& [what, count] : state.errors) {
    ADD_FAILURE() << count << " x " << what;
    error_total += count;
  }
  EXPECT_EQ(state.successes + error_total, kStressRequests);
  EXPECT_EQ(state.wrong_output, 0);
  std::size_t refused = 0;
  std::size_t dropped = 0;
  std::size_t accepted = 0;
  for (const auto& sshd : sshds) {
    refused += sshd->refused_session_count();
    dropped += sshd->dropped_startup_count();
    accepted += sshd->accepted_auth_count();
  }
  // One lease per success, plus one per channel sshd refused (the executor retries those).
  // (Spares the server refused are in sshd's count but are no lease.)
  EXPECT_EQ(seen.stats.acquisitions,
            static_cast<std::uint64_t>(state.successes) + refused - seen.stats.spares_refused);
  EXPECT_EQ(seen.stats.commands + seen.stats.channels_refused, seen.stats.acquisitions);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  EXPECT_EQ(seen.stats.waiters, 0U);
  // One connection per server would do (max_concurrent = max_channels = MaxSessions = 10); a
  // transient channel refusal can make the pool open more (see
  // TwentyConcurrentCommandsUseOneHandshake), but never more than max_concurrent per server.
  EXPECT_GE(seen.stats.handshakes_started, static_cast<std::uint64_t>(kStressServers));
  EXPECT_LE(seen.stats.handshakes_started, static_cast<std::uint64_t>(kStressServers) * 10U);
  // A handshake still in flight at the shutdown (growth for a queue that emptied meanwhile) is
  // cancelled, not failed.
  EXPECT_EQ(seen.stats.sessions_opened + seen.stats.handshakes_cancelled,
            seen.stats.handshakes_started);
  EXPECT_EQ(seen.stats.handshakes_failed, 0U);
  EXPECT_EQ(seen.stats.wait_time.total, seen.stats.acquisitions);
  // total_stats() is the sum of stats(id).
  const auto& total = seen.stats;
  const auto& sum = seen.stats_after;
  EXPECT_EQ(total.acquisitions, sum.acquisitions);
  EXPECT_EQ(total.served_by_existing, sum.served_by_existing);
  EXPECT_EQ(total.commands, sum.commands);
  EXPECT_EQ(total.handshakes_started, sum.handshakes_started);
  EXPECT_EQ(total.sessions_opened, sum.sessions_opened);
  EXPECT_EQ(total.sessions_ready, sum.sessions_ready);
  EXPECT_EQ(total.exhausted, sum.exhausted);
  EXPECT_EQ(total.wait_time.total, sum.wait_time.total);
  EXPECT_EQ(total.wait_time.sum_us, sum.wait_time.sum_us);
  for (std::size_t i = 0; i < pool::kEvictionKinds; ++i) {
    EXPECT_EQ(total.evictions[i], sum.evictions[i]);
  }
  EXPECT_EQ(dropped, 0U);
  EXPECT_EQ(accepted, static_cast<std::size_t>(seen.stats.sessions_opened));
  std::cout << "stress: " << refused << " channels refused by sshd, "
            << seen.stats.channel_limit_lowered << " limit lowerings\n";
}

asio::awaitable<void> run_into_vector(exec::Executor* executor, std::string server_id,
                                      std::string command, exec::RunOptions options,
                                      std::vector<Result<ssh::CommandResult>>* out) {
  auto result =
      co_await executor->async_run(std::move(server_id), std::move(command), std::move(options));
  out->push_back(std::move(result));
}

// --- global limits must not starve other servers ----------------------------------------------

std::vector<std::string> register_aliases(pool::Registry* registry, const SshdFixture& sshd,
                                          int count) {
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i) {
    ids.push_back("alias-" + std::to_string(i));
    registry->add_server(server_for(sshd, ids.back()));
  }
  return ids;
}

asio::awaitable<Observed> one_request_per_server(pool::Registry* registry,
                                                 std::vector<std::string> server_ids) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto started = Clock::now();
  auto commands = echo_commands(static_cast<int>(server_ids.size()));
  seen.results = co_await async_run_on(&executor, std::move(server_ids), std::move(commands),
                                       run_options(30s));
  seen.elapsed_ms = ms_since(started);
  seen.stats = registry->total_stats();
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// Six servers, one request each, at most two handshakes in flight over all servers: the servers
// that found the global cap full must get their turn when a handshake slot frees up, not wait
// until their deadline (30 s: a starved request fails with a timeout, and the run would take that
// long; three rounds of handshakes take well under half of it even on a loaded machine).
TEST_F(PoolTest, GlobalHandshakeCapDoesNotStarveOtherServers) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.max_handshakes_total = 2;
  pool::Registry registry(io_.get_executor(), config);
  const auto ids = register_aliases(&registry, sshd, 6);
  const auto seen = test::run_async(io_, one_request_per_server(&registry, ids));
  EXPECT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(seen.stats.sessions_opened, 6U);
  EXPECT_LT(seen.elapsed_ms, 15000);
  EXPECT_EQ(sshd.accepted_auth_count(), seen.stats.sessions_opened);
}

asio::awaitable<Observed> global_concurrency_handover(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  // Both servers get a session first.
  for (const char* id : {"alias-0", "alias-1"}) {
    const auto options = run_options(10s);
    auto warmup = co_await executor.async_run(id, "true", options);
    seen.results.push_back(std::move(warmup));
  }
  auto held =
      co_await registry->async_acquire("alias-0", pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(held);
  std::vector<Result<ssh::CommandResult>> other;
  // A deadline far beyond the wake-up bound: a waiter that is never woken stays queued that long.
  asio::co_spawn(io, run_into_vector(&executor, "alias-1", "echo other", run_options(20s), &other),
                 asio::detached);
  auto queued = [registry] { return registry->stats("alias-1").waiters == 1; };
  EXPECT_TRUE(co_await async_poll(queued, 5s));
  co_await async_pause(50ms);
  const auto released_at = Clock::now();
  if (held) {
    held->release();  // the one global slot is free again
  }
  // Measured to the hand-over, not to the end of the command: sshd's start of the command is
  // slow on a loaded machine, the hand-over is not.
  auto handed_over = [registry] { return registry->stats("alias-1").waiters == 0; };
  EXPECT_TRUE(co_await async_poll(handed_over, 25s));
  seen.elapsed_ms = ms_since(released_at);
  auto served = [&other] { return !other.empty(); };
  EXPECT_TRUE(co_await async_poll(served, 25s));
  for (auto& result : other) {
    seen.results.push_back(std::move(result));
  }
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// max_concurrent_total = 1: a slot returned on one server must wake a caller queued on another.
TEST_F(PoolTest, GlobalConcurrencyCapHandsTheSlotToAnotherServersWaiter) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.max_concurrent_total = 1;
  pool::Registry registry(io_.get_executor(), config);
  register_aliases(&registry, sshd, 2);
  const auto seen = test::run_async(io_, global_concurrency_handover(&registry));
  ASSERT_EQ(seen.results.size(), 3U);
  EXPECT_EQ(count_errors(seen.results), 0U);
  EXPECT_LT(seen.elapsed_ms, 1000) << "the waiter on the other server was not woken";
}

// --- on_exhausted = direct ---------------------------------------------------------------------

asio::awaitable<Observed> exhaust_direct(pool::Registry* registry) {
  Observed seen;
  auto held =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(held);
  const auto started = Clock::now();
  auto direct =  // a login: seconds on a loaded machine
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(20s));
  seen.elapsed_ms = ms_since(started);
  if (direct) {
    ssh::ExecOptions options;
    auto result =
        co_await direct->session().async_exec("echo direct", options, Deadline::after(5s));
    seen.results.push_back(std::move(result));
    direct->release();
  } else {
    seen.results.push_back(direct.error());
  }
  seen.stats = registry->stats(kServer);
  if (held) {
    held->release();
  }
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// The RISKY seed fallback: when the pool is full, an unpooled one-off connection, counted.
TEST_F(PoolTest, OnExhaustedDirectOpensACountedOneOffConnection) {
  SshdFixture sshd;
  sshd.start();
  auto config = one_slot_config();
  config.on_exhausted = OnExhausted::direct;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, exhaust_direct(&registry));
  ASSERT_EQ(seen.results.size(), 1U);
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  EXPECT_EQ(seen.results[0]->out, "direct\n");
  EXPECT_EQ(seen.stats.direct_connections, 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
  std::cout << "direct lease after " << seen.elapsed_ms << " ms\n";
}

// --- health check before reuse, backoff after connect failures ---------------------------------

asio::awaitable<Observed> reuse_after_idle(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto first_options = run_options(10s);
  auto first = co_await executor.async_run(kServer, "echo first", first_options);
  seen.results.push_back(std::move(first));
  co_await async_pause(250ms);  // longer than health_check_idle
  const auto second_options = run_options(10s);
  auto second = co_await executor.async_run(kServer, "echo second", second_options);
  seen.results.push_back(std::move(second));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, SessionIdleLongerThanHealthCheckIdleIsPingedBeforeReuse) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.health_check_idle = 100ms;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, reuse_after_idle(&registry));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_TRUE(seen.results[1]->session_reused);
  EXPECT_EQ(seen.stats.health_checks, 1U);
  EXPECT_EQ(seen.stats.health_check_failures, 0U);
  EXPECT_EQ(seen.stats.sessions_opened, 1U);
}

asio::awaitable<Observed> down_then_up(pool::Registry* registry, SshdFixture* sshd) {
  Observed seen;
  exec::Executor executor(*registry);
  for (int i = 0; i < 2; ++i) {
    const auto options = run_options(5s);
    auto refused = co_await executor.async_run(kServer, "true", options);
    seen.results.push_back(std::move(refused));
  }
  seen.stats = registry->stats(kServer);
  sshd->start();
  co_await async_pause(400ms);  // > backoff_initial (200 ms) + 20% jitter
  const auto options = run_options(5s);
  auto back = co_await executor.async_run(kServer, "echo up", options);
  seen.results.push_back(std::move(back));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, ConnectFailureBacksOffThenRecovers) {
  SshdFixture sshd;
  sshd.start();
  sshd.stop();  // the port is known and closed
  PoolConfig config;
  config.backoff_initial = 200ms;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, down_then_up(&registry, &sshd));
  ASSERT_EQ(seen.results.size(), 3U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::connect_refused)
      << seen.results[0].error().message();
  ASSERT_FALSE(seen.results[1]);
  EXPECT_EQ(seen.results[1].error().code, pool::Errc::backing_off)
      << seen.results[1].error().message();
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
  EXPECT_EQ(seen.stats.handshakes_failed, 1U);
  ASSERT_TRUE(seen.results[2]) << seen.results[2].error().message();
  EXPECT_EQ(seen.stats.backing_off, 1U);
  EXPECT_EQ(seen.stats.circuits_open, 0U);
  EXPECT_EQ(seen.stats_after.backing_off, 0U);
  EXPECT_EQ(seen.results[2]->out, "up\n");
  EXPECT_EQ(seen.stats_after.handshakes_started, 2U);
}

// --- command_delay ---------------------------------------------------------------------------

asio::awaitable<Observed> paced_commands(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  // The login first (seconds on a loaded machine): what is timed is the pacing alone. The five
  // commands start 100 ms apart after this one (it counts for the pacing too).
  const auto warm_options = run_options(20s);
  auto warm = co_await executor.async_run(kServer, "true", warm_options);
  EXPECT_TRUE(warm) << warm.error().message();
  const auto started = Clock::now();
  seen.results =
      co_await async_run_concurrently(&executor, kServer, echo_commands(5), run_options(10s));
  seen.elapsed_ms = ms_since(started);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, CommandDelayPacesCommandsOnAServer) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.command_delay = 100ms;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, paced_commands(&registry));
  EXPECT_EQ(count_errors(seen.results), 0U);
  EXPECT_GE(seen.elapsed_ms, 400);  // starts at 0, 100, 200, 300, 400 ms (or later)
  EXPECT_LT(seen.elapsed_ms, 4000);
}

// --- changed settings, changed host key, expired deadlines --------------------------------------

asio::awaitable<Observed> move_server(pool::Registry* registry, pool::Server moved) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto options = run_options(10s);
  auto before = co_await executor.async_run(kServer, "echo old", options);
  seen.results.push_back(std::move(before));
  registry->add_server(std::move(moved));  // same id, another machine
  const auto after_options = run_options(10s);
  auto after = co_await executor.async_run(kServer, "echo new", after_options);
  seen.results.push_back(std::move(after));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// add_server() with new settings for a known id (the machine moved, or its credentials were
// rotated): commands issued afterwards must run with the new settings, not on a session opened
// with the old ones. For a diagnosis tool, the old session means diagnosing the wrong machine.
TEST_F(PoolTest, ReplacedServerSettingsAreUsedByTheNextCommand) {
  SshdFixture old_machine;
  old_machine.start();
  SshdFixture new_machine;
  new_machine.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(old_machine));
  const auto seen = test::run_async(io_, move_server(&registry, server_for(new_machine)));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_EQ(old_machine.accepted_auth_count(), 1U);
  EXPECT_EQ(new_machine.accepted_auth_count(), 1U) << "the command ran on the old machine";
  EXPECT_TRUE(new_machine.wait_for_log("Starting session: ", 1, 1s));
  EXPECT_EQ(seen.stats.sessions_opened, 2U);
}

asio::awaitable<Observed> host_key_changes(pool::Registry* registry, SshdFixture* sshd) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto options = run_options(10s);
  auto before = co_await executor.async_run(kServer, "true", options);
  seen.results.push_back(std::move(before));
  sshd->regenerate_host_key();  // restarts sshd with a new key; known_hosts keeps the old one
  for (int i = 0; i < 5; ++i) {
    const auto after_options = run_options(10s);
    auto after = co_await executor.async_run(kServer, "true", after_options);
    seen.results.push_back(std::move(after));
  }
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, ChangedHostKeyOpensTheCircuitBeforeAnyCredentialIsSent) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, host_key_changes(&registry, &sshd));
  ASSERT_EQ(seen.results.size(), 6U);
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  for (std::size_t i = 1; i < seen.results.size(); ++i) {
    ASSERT_FALSE(seen.results[i]) << i;
    const auto& code = seen.results[i].error().code;
    EXPECT_TRUE(code == ssh::Errc::host_key_changed || code == pool::Errc::circuit_open)
        << i << ": " << seen.results[i].error().message();
  }
  EXPECT_EQ(seen.results[1].error().code, ssh::Errc::host_key_changed)
      << seen.results[1].error().message();
  EXPECT_EQ(seen.results.back().error().code, pool::Errc::circuit_open);
  EXPECT_EQ(seen.stats.handshakes_failed, 1U);
  // One connection to the impostor, and no credential offered to it.
  EXPECT_EQ(sshd.connection_count(), 2U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_EQ(sshd.failed_auth_count(), 0U);
}

asio::awaitable<Observed> expired_deadline(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto options = run_options(10s);
  auto first = co_await executor.async_run(kServer, "true", options);
  seen.results.push_back(std::move(first));
  exec::RunOptions late;
  late.deadline = Deadline(Clock::now() - 1ms);
  auto expired = co_await executor.async_run(kServer, "echo too late", late);
  seen.results.push_back(std::move(expired));
  seen.stats = registry->stats(kServer);
  const auto next_options = run_options(10s);
  auto next = co_await executor.async_run(kServer, "echo next", next_options);
  seen.results.push_back(std::move(next));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// A request whose deadline has already passed fails at once and costs the healthy, shared
// session nothing: it never reached the remote host.
TEST_F(PoolTest, ExpiredDeadlineFailsWithoutCostingTheSession) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, expired_deadline(&registry));
  ASSERT_EQ(seen.results.size(), 3U);
  ASSERT_FALSE(seen.results[1]);
  std::cout << "expired deadline: " << seen.results[1].error().message() << "\n";
  EXPECT_EQ(seen.stats.sessions_ready, 1U);
  EXPECT_EQ(seen.stats.timeouts, 0U);
  ASSERT_TRUE(seen.results[2]) << seen.results[2].error().message();
  EXPECT_TRUE(seen.results[2]->session_reused);
  EXPECT_EQ(seen.stats_after.sessions_opened, 1U);
}

// --- 14. shutdown ---------------------------------------------------------------------------

asio::awaitable<void> run_and_store(exec::Executor* executor, std::string command,
                                    exec::RunOptions options,
                                    std::vector<Result<ssh::CommandResult>>* out) {
  auto result = co_await executor->async_run(kServer, std::move(command), std::move(options));
  out->push_back(std::move(result));
}

asio::awaitable<Observed> shutdown_while_busy(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  std::vector<Result<ssh::CommandResult>> running;
  std::vector<Result<ssh::CommandResult>> queued;
  // The login and the command's start take seconds on a loaded machine: generous deadlines.
  asio::co_spawn(io, run_and_store(&executor, "sleep 0.5; echo done", run_options(20s), &running),
                 asio::detached);
  auto busy = [registry] { return registry->stats(kServer).channels_in_use == 1; };
  EXPECT_TRUE(co_await async_poll(busy, 20s));
  // max_concurrent = 1: this one waits in the queue.
  asio::co_spawn(io, run_and_store(&executor, "echo queued", run_options(20s), &queued),
                 asio::detached);
  auto waiting = [registry] { return registry->stats(kServer).waiters == 1; };
  EXPECT_TRUE(co_await async_poll(waiting, 5s));
  // Far beyond the rest of the command (< 0.5 s, more when loaded): a shutdown that waited for
  // its deadline with nothing left to wait for is told apart.
  const Deadline deadline = Deadline::after(15s);
  co_await registry->async_shutdown(deadline);
  // Nothing was left to wait for once the command finished: it returned before its deadline.
  seen.checks.push_back(!deadline.expired());
  // The running command finished before shutdown returned; the queued one was told why.
  EXPECT_EQ(running.size(), 1U);
  EXPECT_EQ(queued.size(), 1U);
  for (auto& result : running) {
    seen.results.push_back(std::move(result));
  }
  for (auto& result : queued) {
    seen.results.push_back(std::move(result));
  }
  const auto after = run_options(2s);
  auto late = co_await executor.async_run(kServer, "echo late", after);
  seen.results.push_back(std::move(late));
  seen.stats = registry->stats(kServer);
  co_return seen;
}

TEST_F(PoolTest, ShutdownLetsARunningCommandFinishThenRefuses) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.max_concurrent = 1;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, shutdown_while_busy(&registry));
  ASSERT_EQ(seen.results.size(), 3U);
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  EXPECT_EQ(seen.results[0]->out, "done\n");
  ASSERT_FALSE(seen.results[1]);
  EXPECT_EQ(seen.results[1].error().code, pool::Errc::shutting_down)
      << seen.results[1].error().message();
  ASSERT_FALSE(seen.results[2]);
  EXPECT_EQ(seen.results[2].error().code, pool::Errc::shutting_down)
      << seen.results[2].error().message();
  ASSERT_EQ(seen.checks.size(), 1U);
  EXPECT_TRUE(seen.checks[0]) << "async_shutdown waited for its deadline with nothing running";
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::shutdown), 1U);
  EXPECT_EQ(seen.stats.sessions_ready, 0U);
  EXPECT_EQ(seen.stats.commands_cancelled, 0U);
  EXPECT_EQ(sshd.remote_processes_matching("sleep 0.5; echo done"), 0U);
  EXPECT_TRUE(sshd.wait_for_log("Received disconnect from", 1) ||
              sshd.wait_for_log("Disconnected from user", 1));
}

// A marker no other run of a test shares (a killed test can leave its sleep behind).
std::string unique_sleep(int seconds) {
  return "sleep " + std::to_string(seconds) + "." + std::to_string(::getpid());
}

asio::awaitable<Observed> shutdown_deadline_passes(pool::Registry* registry, SshdFixture* sshd,
                                                   std::string marker) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  std::vector<Result<ssh::CommandResult>> running;
  // A compound command: the shell forks the sleep, so signalling the shell alone would leave
  // the sleep behind.
  asio::co_spawn(io, run_and_store(&executor, marker + "; echo never", run_options(20s), &running),
                 asio::detached);
  auto started = [sshd, &marker] { return sshd->server_commands_running(marker) == 1; };
  EXPECT_TRUE(co_await async_poll(started, 15s));  // a login first: seconds on a loaded machine
  const Deadline deadline = Deadline::after(300ms);
  co_await registry->async_shutdown(deadline);
  // It waited for the command until its deadline, then signalled it and returned only once the
  // kill sequence was over: nothing of it is left on the server, and its caller was told.
  seen.checks.push_back(deadline.expired());
  seen.remote_left = sshd->remote_processes_matching(marker);
  auto finished = [&running] { return !running.empty(); };
  EXPECT_TRUE(co_await async_poll(finished, 10s));
  for (auto& result : running) {
    seen.results.push_back(std::move(result));
  }
  seen.stats = registry->stats(kServer);
  co_return seen;
}

void expect_cut_by_shutdown(const Observed& seen) {
  ASSERT_EQ(seen.checks.size(), 1U);
  EXPECT_TRUE(seen.checks[0]) << "async_shutdown returned before its deadline";
  EXPECT_EQ(seen.remote_left, 0U) << "the command is still running on the server";
  ASSERT_EQ(seen.results.size(), 1U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::cancelled)
      << seen.results[0].error().message();
  std::cout << "command cut by shutdown: " << seen.results[0].error().message() << "\n";
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::shutdown), 1U);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
}

TEST_F(PoolTest, ShutdownDeadlineCutsACommandThatRunsTooLong) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto marker = unique_sleep(4244);
  const auto seen = test::run_async(io_, shutdown_deadline_passes(&registry, &sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  expect_cut_by_shutdown(seen);
}

// sshd refuses "signal" requests after a root login: the command's processes are found by the
// run's random marker in their environment and killed from a second channel.
TEST_F(PoolTest, ShutdownDeadlineCutsARootLoginsCommandToo) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to log in as root";
  }
  SshdFixture::Options sshd_options;
  sshd_options.login_as_root = true;
  SshdFixture sshd(sshd_options);
  sshd.start();
  ASSERT_EQ(sshd.user(), "root");
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto marker = unique_sleep(4243);
  const auto seen = test::run_async(io_, shutdown_deadline_passes(&registry, &sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  expect_cut_by_shutdown(seen);
}

// The one-shot CLI shuts the registry down on SIGINT and again when its task ends: both calls
// return, each once everything is closed, and nothing is closed or counted twice.
asio::awaitable<Observed> shutdown_twice(pool::Registry* registry, SshdFixture* sshd,
                                         std::string marker) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  std::vector<Result<ssh::CommandResult>> running;
  asio::co_spawn(io, run_and_store(&executor, marker, run_options(20s), &running), asio::detached);
  auto started = [sshd, &marker] { return sshd->server_commands_running(marker) == 1; };
  EXPECT_TRUE(co_await async_poll(started, 15s));  // a login first: seconds on a loaded machine
  auto first = std::make_shared<test::Cancellable<bool>>(
      io, [](pool::Registry* pool) -> asio::awaitable<bool> {
        co_await pool->async_shutdown(Deadline::after(200ms));
        co_return true;
      }(registry));
  co_await registry->async_shutdown(Deadline::after(100ms));
  seen.checks.push_back(sshd->remote_processes_matching(marker) == 0);
  auto both = [&first] { return first->done(); };
  seen.checks.push_back(co_await async_poll(both, 5s));
  co_await registry->async_shutdown(Deadline::after(1s));  // a third, after the fact: at once
  auto finished = [&running] { return !running.empty(); };
  EXPECT_TRUE(co_await async_poll(finished, 10s));
  for (auto& result : running) {
    seen.results.push_back(std::move(result));
  }
  seen.stats = registry->stats(kServer);
  co_return seen;
}

TEST_F(PoolTest, AsyncShutdownTwiceAtOnceIsSafe) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto marker = unique_sleep(4241);
  const auto seen = test::run_async(io_, shutdown_twice(&registry, &sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  ASSERT_EQ(seen.checks.size(), 2U);
  EXPECT_TRUE(seen.checks[0]) << "the command outlived the shutdown";
  EXPECT_TRUE(seen.checks[1]) << "the concurrent async_shutdown did not return";
  ASSERT_EQ(seen.results.size(), 1U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::cancelled)
      << seen.results[0].error().message();
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::shutdown), 1U);
  EXPECT_EQ(seen.stats.sessions_ready + seen.stats.sessions_draining, 0U);
  EXPECT_EQ(seen.stats.sessions_opened, 1U);
  EXPECT_TRUE(sshd.wait_for_log("Received disconnect from", 1) ||
              sshd.wait_for_log("Disconnected from user", 1));
}

// --- 15. a server that accepts TCP and never speaks SSH -----------------------------------------

pool::Server blackhole_server(const test::BlackholeProxy& blackhole) {
  pool::Server server;
  server.id = kServer;
  server.endpoint = ssh::Endpoint(blackhole.host(), blackhole.port());
  server.connect.auth = ssh::AuthMethod::password;
  server.connect.password = "unused";
  return server;
}

// True once no handshake to kServer is in progress any more (within 2 s): an abandoned handshake
// is stopped, not left running until connect_timeout.
asio::awaitable<bool> handshake_gone(pool::Registry* registry) {
  auto gone = [registry] { return registry->stats(kServer).sessions_connecting == 0; };
  co_return co_await async_poll(gone, 2s);
}

// connect_timeout far beyond every deadline below: what ends a handshake is the caller.
PoolConfig slow_connect_config() {
  PoolConfig config;
  config.connect_timeout = 60s;
  return config;
}

asio::awaitable<Observed> acquire_from_silent_server(pool::Registry* registry) {
  Observed seen;
  const Deadline deadline = Deadline::after(1s);
  auto lease = co_await registry->async_acquire(kServer, pool::Priority::normal, deadline);
  seen.checks.push_back(deadline.expired());  // not before the caller's deadline
  if (!lease) {
    seen.errors.push_back(lease.error());
  }
  seen.stats = registry->stats(kServer);
  // The handshake was for this caller only: it is abandoned with it, not left running until
  // connect_timeout.
  seen.checks.push_back(co_await handshake_gone(registry));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, SilentServerIsConnectTimeoutAtTheCallersDeadline) {
  test::BlackholeProxy blackhole;
  blackhole.start();
  pool::Registry registry(io_.get_executor(), slow_connect_config());
  registry.add_server(blackhole_server(blackhole));
  const auto seen = test::run_async(io_, acquire_from_silent_server(&registry), 10s);
  ASSERT_EQ(seen.checks.size(), 2U);
  EXPECT_TRUE(seen.checks[0]) << "the acquire ended before its deadline";
  ASSERT_EQ(seen.errors.size(), 1U);
  EXPECT_EQ(seen.errors[0].code, ssh::Errc::connect_timeout) << seen.errors[0].message();
  std::cout << "silent server: " << seen.errors[0].message() << "\n";
  EXPECT_EQ(seen.stats.exhausted, 0U);
  EXPECT_TRUE(seen.checks[1]) << "the handshake kept running after its only caller left";
  EXPECT_EQ(seen.stats_after.handshakes_started, 1U);
  EXPECT_EQ(seen.stats_after.handshakes_cancelled, 1U);
  EXPECT_EQ(seen.stats_after.handshakes_failed, 0U);
  EXPECT_EQ(blackhole.accepted_count(), 1U);
}

// Two callers share one handshake: it lasts until the later one's deadline, not the earlier's.
asio::awaitable<Observed> two_callers_one_handshake(pool::Registry* registry) {
  Observed seen;
  auto io = co_await asio::this_coro::executor;
  const Deadline late = Deadline::after(1500ms);
  test::Cancellable<Result<pool::Lease>> second(
      io, registry->async_acquire(kServer, pool::Priority::normal, late));
  auto first =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(300ms));
  seen.errors.push_back(first ? Error{} : first.error());
  seen.checks.push_back(registry->stats(kServer).sessions_connecting == 1);  // still serving
  auto done = [&second] { return second.done(); };
  EXPECT_TRUE(co_await async_poll(done, 5s));
  seen.checks.push_back(late.expired());
  seen.errors.push_back(second.done() && !second.value() ? second.value().error() : Error{});
  seen.checks.push_back(co_await handshake_gone(registry));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, HandshakeLastsUntilTheLatestDeadlineOfItsCallers) {
  test::BlackholeProxy blackhole;
  blackhole.start();
  pool::Registry registry(io_.get_executor(), slow_connect_config());
  registry.add_server(blackhole_server(blackhole));
  const auto seen = test::run_async(io_, two_callers_one_handshake(&registry), 10s);
  ASSERT_EQ(seen.errors.size(), 2U);
  EXPECT_EQ(seen.errors[0].code, ssh::Errc::connect_timeout) << seen.errors[0].message();
  EXPECT_EQ(seen.errors[1].code, ssh::Errc::connect_timeout) << seen.errors[1].message();
  ASSERT_EQ(seen.checks.size(), 3U);
  EXPECT_TRUE(seen.checks[0]) << "the handshake ended with the first caller";
  EXPECT_TRUE(seen.checks[1]);
  EXPECT_TRUE(seen.checks[2]) << "the handshake outlived its last caller";
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
  EXPECT_EQ(seen.stats.handshakes_cancelled, 1U);
  EXPECT_EQ(blackhole.accepted_count(), 1U);
}

// Shutdown fails the waiter and cancels the handshake: it returns long before connect_timeout
// (run_async's limit is far below it), and nothing keeps connecting afterwards.
asio::awaitable<Observed> shutdown_while_connecting(pool::Registry* registry) {
  Observed seen;
  auto io = co_await asio::this_coro::executor;
  test::Cancellable<Result<pool::Lease>> waiting(
      io, registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(30s)));
  auto connecting = [registry] { return registry->stats(kServer).sessions_connecting == 1; };
  EXPECT_TRUE(co_await async_poll(connecting, 5s));
  co_await registry->async_shutdown(Deadline::after(5s));
  seen.stats = registry->stats(kServer);
  auto done = [&waiting] { return waiting.done(); };
  EXPECT_TRUE(co_await async_poll(done, 1s));
  if (waiting.done() && !waiting.value()) {
    seen.errors.push_back(waiting.value().error());
  }
  co_return seen;
}

TEST_F(PoolTest, ShutdownCancelsAHandshakeInFlight) {
  test::BlackholeProxy blackhole;
  blackhole.start();
  pool::Registry registry(io_.get_executor(), slow_connect_config());
  registry.add_server(blackhole_server(blackhole));
  const auto seen = test::run_async(io_, shutdown_while_connecting(&registry), 10s);
  ASSERT_EQ(seen.errors.size(), 1U);
  EXPECT_EQ(seen.errors[0].code, pool::Errc::shutting_down) << seen.errors[0].message();
  EXPECT_EQ(seen.stats.sessions_connecting, 0U) << "a handshake outlived async_shutdown";
  EXPECT_EQ(seen.stats.handshakes_cancelled, 1U);
  EXPECT_EQ(seen.stats.handshakes_failed, 0U);
}

// --- 16. cancellation through the caller's slot ----------------------------------------------

asio::awaitable<Observed> cancel_the_only_caller(pool::Registry* registry) {
  Observed seen;
  auto io = co_await asio::this_coro::executor;
  test::Cancellable<Result<pool::Lease>> waiting(
      io, registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(30s)));
  auto queued = [registry] {
    const auto stats = registry->stats(kServer);
    return stats.sessions_connecting == 1 && stats.waiters == 1;
  };
  EXPECT_TRUE(co_await async_poll(queued, 5s));
  waiting.cancel();
  auto done = [&waiting] { return waiting.done(); };
  seen.checks.push_back(co_await async_poll(done, 1s));
  if (waiting.done() && !waiting.value()) {
    seen.errors.push_back(waiting.value().error());
  }
  seen.stats = registry->stats(kServer);
  seen.checks.push_back(co_await handshake_gone(registry));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, CancelledCallerLeavesTheQueueAndItsHandshakeIsAbandoned) {
  test::BlackholeProxy blackhole;
  blackhole.start();
  pool::Registry registry(io_.get_executor(), slow_connect_config());
  registry.add_server(blackhole_server(blackhole));
  const auto seen = test::run_async(io_, cancel_the_only_caller(&registry), 10s);
  ASSERT_EQ(seen.checks.size(), 2U);
  EXPECT_TRUE(seen.checks[0]) << "the cancelled acquire did not return";
  ASSERT_EQ(seen.errors.size(), 1U);
  EXPECT_EQ(seen.errors[0].code, ssh::Errc::cancelled) << seen.errors[0].message();
  EXPECT_EQ(seen.stats.waiters, 0U);
  EXPECT_EQ(seen.stats.acquires_cancelled, 1U);
  EXPECT_TRUE(seen.checks[1]) << "the handshake kept running for nobody";
  EXPECT_EQ(seen.stats_after.handshakes_cancelled, 1U);
}

// With the only channel leased, two callers queue; one is cancelled: it leaves the queue at once,
// and the other gets the channel when it comes back.
asio::awaitable<Observed> cancel_one_of_two_waiters(pool::Registry* registry) {
  Observed seen;
  auto io = co_await asio::this_coro::executor;
  auto held =
      co_await registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(10s));
  EXPECT_TRUE(held) << held.error().message();
  // Deadlines far beyond the polls below: a waiter that is not cancelled or not served waits
  // this long.
  test::Cancellable<Result<pool::Lease>> cancelled(
      io, registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(30s)));
  test::Cancellable<Result<pool::Lease>> patient(
      io, registry->async_acquire(kServer, pool::Priority::normal, Deadline::after(30s)));
  auto queued = [registry] { return registry->stats(kServer).waiters == 2; };
  EXPECT_TRUE(co_await async_poll(queued, 5s));
  cancelled.cancel();
  auto first_done = [&cancelled] { return cancelled.done(); };
  seen.checks.push_back(co_await async_poll(first_done, 5s));
  seen.stats = registry->stats(kServer);
  seen.checks.push_back(!patient.done());
  if (held) {
    held->release();
  }
  auto second_done = [&patient] { return patient.done(); };
  seen.checks.push_back(co_await async_poll(second_done, 5s));
  if (cancelled.done() && !cancelled.value()) {
    seen.errors.push_back(cancelled.value().error());
  }
  seen.checks.push_back(patient.done() && patient.value().has_value());
  if (patient.done() && patient.value()) {
    patient.value()->release();
  }
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, CancelledWaiterLeavesTheQueueAndTheNextOneIsServed) {
  SshdFixture sshd;
  sshd.start();
  PoolConfig config;
  config.max_concurrent = 1;
  pool::Registry registry(io_.get_executor(), config);
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, cancel_one_of_two_waiters(&registry));
  ASSERT_EQ(seen.checks.size(), 4U);
  EXPECT_TRUE(seen.checks[0]) << "the cancelled waiter did not return";
  EXPECT_TRUE(seen.checks[1]) << "the other waiter was served before the channel came back";
  EXPECT_TRUE(seen.checks[2]) << "the other waiter was not served";
  EXPECT_TRUE(seen.checks[3]);
  ASSERT_EQ(seen.errors.size(), 1U);
  EXPECT_EQ(seen.errors[0].code, ssh::Errc::cancelled) << seen.errors[0].message();
  EXPECT_EQ(seen.stats.waiters, 1U);
  EXPECT_EQ(seen.stats.acquires_cancelled, 1U);
  EXPECT_EQ(seen.stats_after.acquisitions, 2U);
  EXPECT_EQ(seen.stats_after.sessions_opened, 1U);
}

// --- 17. MaxStartups: handshakes the server dropped before any credential are tried again ------

struct OneShot {
  std::unique_ptr<pool::Registry> registry;
  std::unique_ptr<exec::Executor> executor;
  std::vector<Result<ssh::CommandResult>> results;
  bool done = false;
};

asio::awaitable<void> one_shot_diagnosis(OneShot* shot) {
  // Room for all four retries (up to ~5.6 s of jittered waits) and slow handshakes on a loaded
  // machine; an unloaded run ends in ~4 s.
  exec::RunOptions options = run_options(15s);
  // A named vector: GCC 12 rejects a braced list of literals inside the co_await expression.
  // Cheap commands: what is under test is the handshakes, not how fast a loaded machine runs
  // 210 processes.
  std::vector<std::string> checks{"uptime",
                                  "df -P /",
                                  "free -b",
                                  "cat /proc/loadavg",
                                  "cat /proc/uptime",
                                  "true",
                                  "head -5 /proc/meminfo"};
  shot->results = co_await shot->executor->async_run_all(kServer, std::move(checks), options);
  co_await shot->registry->async_shutdown(Deadline::after(2s));
  shot->done = true;
}

asio::awaitable<bool> all_done(std::vector<std::unique_ptr<OneShot>>* shots) {
  auto finished = [shots] {
    return std::all_of(shots->begin(), shots->end(), [](const auto& shot) { return shot->done; });
  };
  co_return co_await async_poll(finished, 30s);
}

// Thirty one-shot processes at once (a registry each, 7 checks each) against a stock sshd
// (MaxStartups 10:30:100) at RTT 50: sshd drops a share of the unauthenticated connections at
// random. A drop comes before any credential, so each is tried again: no diagnosis fails. A 31st
// with a key the server does not know fails its login once, and only once.
TEST_F(PoolTest, HandshakesDroppedByMaxStartupsAreTriedAgainNotLost) {
  SshdFixture::Options sshd_options;
  sshd_options.rtt = 50ms;
  SshdFixture sshd(sshd_options);
  sshd.start();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  constexpr std::size_t kClients = 30;
  std::vector<std::unique_ptr<OneShot>> shots;
  for (std::size_t i = 0; i <= kClients; ++i) {
    auto shot = std::make_unique<OneShot>();
    shot->registry = std::make_unique<pool::Registry>(io_.get_executor(), PoolConfig{});
    shot->registry->add_server(i < kClients ? server_for(sshd)
                                            : server_for(sshd, kServer, stranger.private_key));
    shot->executor = std::make_unique<exec::Executor>(*shot->registry);
    asio::co_spawn(io_, one_shot_diagnosis(shot.get()), asio::detached);
    shots.push_back(std::move(shot));
  }
  ASSERT_TRUE(test::run_async(io_, all_done(&shots), 40s));
  std::size_t failed = 0;
  std::uint64_t retried = 0;
  for (std::size_t i = 0; i < kClients; ++i) {
    failed += count_errors(shots[i]->results) > 0 ? 1U : 0U;
    retried += shots[i]->registry->stats(kServer).handshakes_retried;
  }
  const auto& stranger_results = shots[kClients]->results;
  retried += shots[kClients]->registry->stats(kServer).handshakes_retried;
  const std::size_t dropped = sshd.dropped_startup_count();
  std::cout << "MaxStartups drops " << dropped << ", retried " << retried << "\n";
  EXPECT_EQ(failed, 0U);
  EXPECT_EQ(sshd.accepted_auth_count(), kClients);
  // Every drop was one retry (no client gave up), and nothing else was retried.
  EXPECT_EQ(retried, dropped);
  ASSERT_EQ(stranger_results.size(), 7U);
  for (const auto& result : stranger_results) {
    ASSERT_FALSE(result);
    EXPECT_TRUE(result.error().code == ssh::Errc::auth_failed ||
                result.error().code == pool::Errc::circuit_open)
        << result.error().message();
  }
  EXPECT_EQ(sshd.failed_auth_count(), 1U) << "a failed login was tried again";
  shots.clear();  // registries before the loop
}

// --- 18. new credentials: rotated keys, accepted fingerprints --------------------------------

std::string file_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

pool::Server key_data_server(const SshdFixture& sshd, const std::filesystem::path& key) {
  pool::Server server = server_for(sshd);
  server.connect.auth = ssh::AuthMethod::key_data;
  server.connect.identity_file.clear();
  server.connect.private_key = file_text(key);
  return server;
}

asio::awaitable<Observed> rotate_keys(pool::Registry* registry, pool::Server rotated,
                                      pool::Server fixed) {
  Observed seen;
  exec::Executor executor(*registry);
  auto first = co_await executor.async_run(kServer, "echo first", run_options(10s));
  seen.results.push_back(std::move(first));
  // The stored key is rotated (only the key text differs): the old session drains, the next
  // command logs in with the new key, which the server does not accept: the circuit opens.
  registry->add_server(std::move(rotated));
  auto refused = co_await executor.async_run(kServer, "echo refused", run_options(10s));
  seen.results.push_back(std::move(refused));
  auto blocked = co_await executor.async_run(kServer, "echo blocked", run_options(10s));
  seen.results.push_back(std::move(blocked));
  seen.stats = registry->stats(kServer);
  // Rotated again, to a key the server accepts: the circuit closes at once.
  registry->add_server(std::move(fixed));
  auto after = co_await executor.async_run(kServer, "echo after", run_options(10s));
  seen.results.push_back(std::move(after));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, RotatedKeyDrainsOldSessionsAndClosesAnOpenCircuit) {
  SshdFixture sshd;
  sshd.start();
  const auto unknown = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  const auto second = sshd.add_client_key(SshdFixture::KeyType::ed25519);
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(key_data_server(sshd, sshd.client_key_path()));
  const auto seen =
      test::run_async(io_, rotate_keys(&registry, key_data_server(sshd, unknown.private_key),
                                       key_data_server(sshd, second.private_key)));
  ASSERT_EQ(seen.results.size(), 4U);
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  ASSERT_FALSE(seen.results[1]) << "the command ran on the session of the old key";
  EXPECT_EQ(seen.results[1].error().code, ssh::Errc::auth_failed)
      << seen.results[1].error().message();
  ASSERT_FALSE(seen.results[2]);
  EXPECT_EQ(seen.results[2].error().code, pool::Errc::circuit_open)
      << seen.results[2].error().message();
  EXPECT_EQ(seen.stats.circuits_open, 1U);
  EXPECT_GT(seen.stats.circuit_retry_in.count(), 0);
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::error), 1U);  // the old key's session
  ASSERT_TRUE(seen.results[3]) << seen.results[3].error().message();
  EXPECT_EQ(seen.results[3]->out, "after\n");
  EXPECT_EQ(seen.stats_after.circuits_open, 0U);
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
}

// Re-adding identical settings (a daemon reloads its inventory) changes nothing: the session is
// kept, nothing drains.
asio::awaitable<Observed> readd_same(pool::Registry* registry, pool::Server same) {
  Observed seen;
  exec::Executor executor(*registry);
  auto first = co_await executor.async_run(kServer, "echo first", run_options(10s));
  seen.results.push_back(std::move(first));
  registry->add_server(std::move(same));
  auto second = co_await executor.async_run(kServer, "echo second", run_options(10s));
  seen.results.push_back(std::move(second));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(PoolTest, IdenticalSettingsReaddedKeepTheSession) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(key_data_server(sshd, sshd.client_key_path()));
  const auto seen =
      test::run_async(io_, readd_same(&registry, key_data_server(sshd, sshd.client_key_path())));
  ASSERT_EQ(count_errors(seen.results), 0U);
  EXPECT_TRUE(seen.results[1]->session_reused);
  EXPECT_EQ(seen.stats.sessions_opened, 1U);
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::error), 0U);
}

}  // namespace
}  // namespace healer
