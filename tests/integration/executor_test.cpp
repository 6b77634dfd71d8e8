// exec::Executor against a real OpenSSH sshd on 127.0.0.1: results in input order, failures typed
// (server killed mid-command, deadline passed, unknown server), the not-started retry, output caps
// and stdin, and the pool counters each of those leaves behind.
#include "healer/exec/executor.hpp"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "async_poll.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/pool/errors.hpp"
#include "healer/pool/pool.hpp"
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

exec::RunOptions run_options(std::chrono::milliseconds timeout) {
  exec::RunOptions options;
  options.deadline = Deadline::after(timeout);
  return options;
}

struct Observed {
  std::vector<Result<ssh::CommandResult>> results;
  pool::PoolStats stats;
  pool::PoolStats stats_after;
  std::int64_t elapsed_ms = 0;
  std::size_t remote_left = 0;
};

class ExecutorTest : public ::testing::Test {
 protected:
  asio::io_context io_;
};

// --- async_run_all: results in input order ----------------------------------------------------

asio::awaitable<Observed> run_all_in_order(pool::Registry* registry,
                                           std::vector<std::string> commands) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto started = Clock::now();
  auto options = run_options(10s);
  seen.results = co_await executor.async_run_all(kServer, std::move(commands), options);
  seen.elapsed_ms = ms_since(started);
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(ExecutorTest, RunAllReturnsResultsInInputOrder) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  // They finish in reverse order; a non-zero exit is data, not an error.
  const std::vector<std::string> commands = {"sleep 0.6; echo a", "sleep 0.4; echo b",
                                             "sleep 0.2; echo c", "echo d", "echo e >&2; exit 7"};
  const auto seen = test::run_async(io_, run_all_in_order(&registry, commands));
  ASSERT_EQ(seen.results.size(), commands.size());
  for (std::size_t i = 0; i < seen.results.size(); ++i) {
    ASSERT_TRUE(seen.results[i]) << i << ": " << seen.results[i].error().message();
  }
  EXPECT_EQ(seen.results[0]->out, "a\n");
  EXPECT_EQ(seen.results[1]->out, "b\n");
  EXPECT_EQ(seen.results[2]->out, "c\n");
  EXPECT_EQ(seen.results[3]->out, "d\n");
  EXPECT_EQ(seen.results[4]->err, "e\n");
  EXPECT_EQ(seen.results[4]->exit_status, 7);
  // Concurrent, not one after another (0.6 + 0.4 + 0.2 s).
  EXPECT_LT(seen.elapsed_ms, 1150);
  EXPECT_EQ(seen.stats.handshakes_started, 1U);
  EXPECT_EQ(seen.stats.acquisitions, 5U);
}

TEST_F(ExecutorTest, RunAllOfNothingIsEmpty) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, run_all_in_order(&registry, {}));
  EXPECT_TRUE(seen.results.empty());
  EXPECT_EQ(seen.stats.handshakes_started, 0U);
}

asio::awaitable<Observed> run_one(pool::Registry* registry, std::string server_id,
                                  std::string command, exec::RunOptions options) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto started = Clock::now();
  auto result =
      co_await executor.async_run(std::move(server_id), std::move(command), std::move(options));
  seen.elapsed_ms = ms_since(started);
  seen.results.push_back(std::move(result));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(ExecutorTest, UnknownServerIsTyped) {
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  const auto seen = test::run_async(io_, run_one(&registry, "nope", "true", run_options(2s)));
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, pool::Errc::unknown_server);
  EXPECT_NE(seen.results[0].error().detail.find("nope"), std::string::npos);
}

// --- output caps and stdin --------------------------------------------------------------------

TEST_F(ExecutorTest, MaxOutputCapsEachStream) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  auto options = run_options(10s);
  options.max_output = 1000;
  const auto seen = test::run_async(
      io_, run_one(&registry, kServer,
                   "head -c 100000 /dev/zero; head -c 5000 /dev/zero >&2; echo -n x >&2", options));
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  const auto& result = *seen.results[0];
  EXPECT_EQ(result.exit_status, 0);
  EXPECT_EQ(result.out.size(), 1000U);
  EXPECT_TRUE(result.out_truncated);
  EXPECT_EQ(result.out_bytes, 100000U);
  EXPECT_EQ(result.err.size(), 1000U);
  EXPECT_TRUE(result.err_truncated);
  EXPECT_EQ(result.err_bytes, 5001U);
}

TEST_F(ExecutorTest, SendsStdinData) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  auto options = run_options(10s);
  options.stdin_data = "one\ntwo\nthree\n";
  const auto seen = test::run_async(io_, run_one(&registry, kServer, "wc -l", options));
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  EXPECT_EQ(seen.results[0]->out, "3\n");
}

// --- deadline ---------------------------------------------------------------------------------

asio::awaitable<Observed> time_out_then_run(pool::Registry* registry, SshdFixture* sshd) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto short_deadline = run_options(300ms);
  const auto started = Clock::now();
  auto slow = co_await executor.async_run(kServer, "sleep 4245", short_deadline);
  seen.elapsed_ms = ms_since(started);
  seen.results.push_back(std::move(slow));
  seen.stats = registry->stats(kServer);
  // The remote process is killed, not left behind.
  auto gone = [sshd] { return sshd->remote_processes_matching("sleep 4245") == 0; };
  EXPECT_TRUE(co_await async_poll(gone, 3s));
  seen.remote_left = sshd->remote_processes_matching("sleep 4245");
  const auto next_options = run_options(10s);
  auto next = co_await executor.async_run(kServer, "echo next", next_options);
  seen.results.push_back(std::move(next));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(ExecutorTest, TimedOutCommandIsSshTimeoutAndCounted) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, time_out_then_run(&registry, &sshd));
  ASSERT_EQ(seen.results.size(), 2U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::timeout) << seen.results[0].error().message();
  EXPECT_GE(seen.elapsed_ms, 290);
  EXPECT_LT(seen.elapsed_ms, 1500);
  EXPECT_EQ(seen.stats.timeouts, 1U);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  EXPECT_EQ(seen.remote_left, 0U);
  // The timed-out session is drained (a timeout may mean a dying connection); the next command
  // runs on a fresh one.
  ASSERT_TRUE(seen.results[1]) << seen.results[1].error().message();
  EXPECT_EQ(seen.results[1]->out, "next\n");
  EXPECT_FALSE(seen.results[1]->session_reused);
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(seen.stats_after.timeouts, 1U);
}

// --- the server dies --------------------------------------------------------------------------

asio::awaitable<void> kill_when_running(SshdFixture* sshd, std::string marker) {
  while (sshd->remote_processes_matching(marker) == 0) {
    co_await async_pause(10ms);
  }
  sshd->kill();
}

asio::awaitable<Observed> killed_mid_command(pool::Registry* registry, SshdFixture* sshd) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  asio::co_spawn(io, kill_when_running(sshd, "sleep 4246"), asio::detached);
  const auto options = run_options(10s);
  const auto started = Clock::now();
  auto cut = co_await executor.async_run(kServer, "sleep 4246", options);
  seen.elapsed_ms = ms_since(started);
  seen.results.push_back(std::move(cut));
  seen.stats = registry->stats(kServer);
  sshd->start();
  const auto next_options = run_options(5s);
  auto next = co_await executor.async_run(kServer, "echo back", next_options);
  seen.results.push_back(std::move(next));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(ExecutorTest, ServerKilledMidCommandIsDisconnectedAndTheNextCallRecovers) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, killed_mid_command(&registry, &sshd));
  ASSERT_EQ(seen.results.size(), 2U);
  ASSERT_FALSE(seen.results[0]);
  // It had started: not retried (it might have had effects), reported as disconnected.
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::disconnected)
      << seen.results[0].error().message();
  EXPECT_LT(seen.elapsed_ms, 5000);
  EXPECT_EQ(seen.stats.acquisitions, 1U);
  EXPECT_EQ(seen.stats.sessions_ready, 0U);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  EXPECT_EQ(evictions(seen.stats, pool::Eviction::dead), 1U);
  ASSERT_TRUE(seen.results[1]) << seen.results[1].error().message();
  EXPECT_EQ(seen.results[1]->out, "back\n");
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(seen.stats_after.handshakes_failed, 0U);
}

// A pooled session that died while idle (sshd restarted while the loop was blocked, so the pool
// still thinks it is alive) fails the command with not_started; the executor retries it once on a
// new session and the caller sees a normal result.
asio::awaitable<Observed> stale_session_retried(pool::Registry* registry, SshdFixture* sshd) {
  Observed seen;
  exec::Executor executor(*registry);
  const auto options = run_options(10s);
  auto first = co_await executor.async_run(kServer, "echo first", options);
  seen.results.push_back(std::move(first));
  sshd->restart();
  seen.stats = registry->stats(kServer);
  const auto next_options = run_options(5s);
  auto second = co_await executor.async_run(kServer, "echo second", next_options);
  seen.results.push_back(std::move(second));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(ExecutorTest, CommandOnASessionThatDiedBeforeItStartedIsRetried) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, stale_session_retried(&registry, &sshd));
  ASSERT_EQ(seen.results.size(), 2U);
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  ASSERT_TRUE(seen.results[1]) << seen.results[1].error().message();
  EXPECT_EQ(seen.results[1]->out, "second\n");
  EXPECT_FALSE(seen.results[1]->session_reused);
  // The pool had not noticed yet (the loop was blocked in restart()), so the stale session was
  // leased once (acquisition 2), failed before starting, and was retried (acquisition 3).
  EXPECT_EQ(seen.stats.sessions_ready, 1U);
  EXPECT_EQ(seen.stats_after.acquisitions, 3U);
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
}

}  // namespace
}  // namespace healer
