// exec::Executor against a real OpenSSH sshd on 127.0.0.1: results in input order, failures typed
// (server killed mid-command, deadline passed, unknown server), the not-started retry, output caps
// and stdin, and the pool counters each of those leaves behind.
#include "healer/exec/executor.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "async_poll.hpp"
#include "blackhole_proxy.hpp"
#include "cancellable.hpp"
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

exec::RunOptions run_options(std::chrono::milliseconds timeout) {
  exec::RunOptions options;
  options.deadline = Deadline::after(timeout);
  return options;
}

struct Observed {
  std::vector<Result<ssh::CommandResult>> results;
  pool::PoolStats stats;
  pool::PoolStats stats_after;
  std::size_t remote_left = 0;
  std::vector<bool> checks;  // conditions seen inside the scenario, in order
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
  auto options = run_options(10s);
  seen.results = co_await executor.async_run_all(kServer, std::move(commands), options);
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// Waits (up to 5 s) until `count` commands of this rendezvous have arrived in `dir` (a directory
// on the server), then sleeps `after` seconds and prints `name`: the commands can only all finish
// if they run at the same time, and they finish in the order their `after` gives.
std::string rendezvous(const std::filesystem::path& dir, int count, const std::string& name,
                       const std::string& after) {
  return "mkdir -p " + dir.string() + " && touch " + dir.string() + "/" + name +
         " && for i in $(seq 100); do [ $(ls " + dir.string() + " | wc -l) -ge " +
         std::to_string(count) + " ] && break; sleep 0.05; done; [ $(ls " + dir.string() +
         " | wc -l) -ge " + std::to_string(count) + " ] || exit 99; sleep " + after + "; echo " +
         name;
}

TEST_F(ExecutorTest, RunAllReturnsResultsInInputOrder) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  // The first three meet before any of them finishes (so they run concurrently, not one after
  // another), then finish in reverse order; a non-zero exit is data, not an error.
  const auto meeting = sshd.home_dir() / "rendezvous";
  const std::vector<std::string> commands = {
      rendezvous(meeting, 3, "a", "0.4"), rendezvous(meeting, 3, "b", "0.2"),
      rendezvous(meeting, 3, "c", "0"), "echo d", "echo e >&2; exit 7"};
  const auto seen = test::run_async(io_, run_all_in_order(&registry, commands));
  ASSERT_EQ(seen.results.size(), commands.size());
  for (std::size_t i = 0; i < seen.results.size(); ++i) {
    ASSERT_TRUE(seen.results[i]) << i << ": " << seen.results[i].error().message();
  }
  EXPECT_EQ(seen.results[0]->out, "a\n") << "exit " << seen.results[0]->shell_exit_code();
  EXPECT_EQ(seen.results[1]->out, "b\n") << "exit " << seen.results[1]->shell_exit_code();
  EXPECT_EQ(seen.results[2]->out, "c\n") << "exit " << seen.results[2]->shell_exit_code();
  EXPECT_EQ(seen.results[3]->out, "d\n");
  EXPECT_EQ(seen.results[4]->err, "e\n");
  EXPECT_EQ(seen.results[4]->exit_status, 7);
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
  auto result =
      co_await executor.async_run(std::move(server_id), std::move(command), std::move(options));
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
  // The login first (30 ms on a quiet machine, seconds on a loaded one): the short deadline is
  // the command's alone.
  const auto warm_options = run_options(20s);
  auto warm = co_await executor.async_run(kServer, "true", warm_options);
  EXPECT_TRUE(warm) << warm.error().message();
  const auto short_deadline = run_options(1s);
  auto slow = co_await executor.async_run(kServer, "sleep 4245", short_deadline);
  seen.checks.push_back(short_deadline.deadline.expired());  // ended at its deadline, not before
  seen.results.push_back(std::move(slow));
  seen.stats = registry->stats(kServer);
  // The remote process is killed, not left behind.
  auto gone = [sshd] { return sshd->remote_processes_matching("sleep 4245") == 0; };
  EXPECT_TRUE(co_await async_poll(gone, 10s));
  seen.remote_left = sshd->remote_processes_matching("sleep 4245");
  const auto next_options = run_options(20s);  // a new login
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
  ASSERT_EQ(seen.checks.size(), 1U);
  EXPECT_TRUE(seen.checks[0]) << "the timeout came before the deadline";
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
  auto cut = co_await executor.async_run(kServer, "sleep 4246", options);
  seen.checks.push_back(!options.deadline.expired());  // the loss ended it, not the deadline
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
  ASSERT_EQ(seen.checks.size(), 1U);
  EXPECT_TRUE(seen.checks[0]) << "the lost connection was noticed only at the deadline";
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

// --- cancellation through the caller's slot --------------------------------------------------

// A marker no other run of a test shares (a killed test can leave its sleep behind).
std::string unique_sleep(int seconds) {
  return "sleep " + std::to_string(seconds) + "." + std::to_string(::getpid());
}

asio::awaitable<Observed> cancel_running_command(pool::Registry* registry, SshdFixture* sshd,
                                                 std::string marker) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  // A compound command: the shell forks the sleep, as a check's command does.
  test::Cancellable<Result<ssh::CommandResult>> running(
      io, executor.async_run(kServer, marker + "; echo never", run_options(20s)));
  auto started = [sshd, &marker] { return sshd->server_commands_running(marker) == 1; };
  EXPECT_TRUE(co_await async_poll(started, 15s));
  running.cancel();
  auto done = [&running] { return running.done(); };
  seen.checks.push_back(co_await async_poll(done, 10s));
  if (running.done()) {
    seen.results.push_back(std::move(running.value()));
  }
  seen.stats = registry->stats(kServer);
  auto gone = [sshd, &marker] { return sshd->remote_processes_matching(marker) == 0; };
  seen.checks.push_back(co_await async_poll(gone, 10s));
  auto next = co_await executor.async_run(kServer, "echo next", run_options(10s));
  seen.results.push_back(std::move(next));
  seen.stats_after = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// A cancelled command is a timed-out one: TERM, then KILL, on the server; its slot returned, the
// session drained; the next command runs on a new session.
TEST_F(ExecutorTest, CancelledCommandIsKilledOnTheServer) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto marker = unique_sleep(4250);
  const auto seen = test::run_async(io_, cancel_running_command(&registry, &sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  ASSERT_EQ(seen.checks.size(), 2U);
  EXPECT_TRUE(seen.checks[0]) << "the cancelled call did not return";
  EXPECT_TRUE(seen.checks[1]) << "the cancelled command is still running on the server";
  ASSERT_EQ(seen.results.size(), 2U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::cancelled)
      << seen.results[0].error().message();
  EXPECT_EQ(seen.stats.commands_cancelled, 1U);
  EXPECT_EQ(seen.stats.timeouts, 0U);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  ASSERT_TRUE(seen.results[1]) << seen.results[1].error().message();
  EXPECT_EQ(seen.results[1]->out, "next\n");
  EXPECT_EQ(seen.stats_after.sessions_opened, 2U);
}

asio::awaitable<Observed> cancel_batch(pool::Registry* registry, SshdFixture* sshd,
                                       std::string marker) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  test::Cancellable<std::vector<Result<ssh::CommandResult>>> batch(
      io, executor.async_run_all(kServer, {marker + "; echo never", "echo quick", marker},
                                 run_options(20s)));
  auto started = [sshd, registry, &marker] {
    return sshd->server_commands_running(marker) == 2 && registry->stats(kServer).commands == 1;
  };
  EXPECT_TRUE(co_await async_poll(started, 15s));
  batch.cancel();
  auto done = [&batch] { return batch.done(); };
  seen.checks.push_back(co_await async_poll(done, 10s));
  if (batch.done()) {
    seen.results = std::move(batch.value());
  }
  auto gone = [sshd, &marker] { return sshd->remote_processes_matching(marker) == 0; };
  seen.checks.push_back(co_await async_poll(gone, 10s));
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// Cancelling async_run_all cancels every command still running; the one that finished keeps
// its result; it returns once all of them ended.
TEST_F(ExecutorTest, CancelledRunAllCancelsEveryCommandStillRunning) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto marker = unique_sleep(4251);
  const auto seen = test::run_async(io_, cancel_batch(&registry, &sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  ASSERT_EQ(seen.checks.size(), 2U);
  EXPECT_TRUE(seen.checks[0]) << "the cancelled batch did not return";
  EXPECT_TRUE(seen.checks[1]) << "a cancelled command is still running on the server";
  ASSERT_EQ(seen.results.size(), 3U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::cancelled)
      << seen.results[0].error().message();
  ASSERT_TRUE(seen.results[1]) << seen.results[1].error().message();
  EXPECT_EQ(seen.results[1]->out, "quick\n");
  ASSERT_FALSE(seen.results[2]);
  EXPECT_EQ(seen.results[2].error().code, ssh::Errc::cancelled)
      << seen.results[2].error().message();
  EXPECT_EQ(seen.stats.commands_cancelled, 2U);
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
}

asio::awaitable<Observed> cancel_before_start(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  auto io = co_await asio::this_coro::executor;
  auto warm = co_await executor.async_run(kServer, "true", run_options(10s));
  seen.results.push_back(std::move(warm));
  test::Cancellable<Result<ssh::CommandResult>> late(
      io, executor.async_run(kServer, "echo ran", run_options(10s)));
  late.cancel();  // before it could get anywhere
  auto done = [&late] { return late.done(); };
  seen.checks.push_back(co_await async_poll(done, 5s));
  if (late.done()) {
    seen.results.push_back(std::move(late.value()));
  }
  seen.stats = registry->stats(kServer);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// A call cancelled before its command was sent runs nothing on the server.
TEST_F(ExecutorTest, CallCancelledBeforeItsCommandStartsRunsNothing) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(server_for(sshd));
  const auto seen = test::run_async(io_, cancel_before_start(&registry));
  ASSERT_EQ(seen.checks.size(), 1U);
  EXPECT_TRUE(seen.checks[0]);
  ASSERT_EQ(seen.results.size(), 2U);
  ASSERT_TRUE(seen.results[0]) << seen.results[0].error().message();
  ASSERT_FALSE(seen.results[1]);
  EXPECT_EQ(seen.results[1].error().code, ssh::Errc::cancelled)
      << seen.results[1].error().message();
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  EXPECT_EQ(sshd.count_in_log("Starting session: "), 1U) << "the cancelled command ran";
}

// --- a server that accepts TCP and never speaks SSH -------------------------------------------

asio::awaitable<Observed> run_on_silent_server(pool::Registry* registry) {
  Observed seen;
  exec::Executor executor(*registry);
  auto options = run_options(1s);
  auto result = co_await executor.async_run(kServer, "true", options);
  seen.checks.push_back(options.deadline.expired());
  seen.results.push_back(std::move(result));
  co_await registry->async_shutdown(Deadline::after(5s));
  seen.stats = registry->stats(kServer);
  co_return seen;
}

// The caller's deadline, not connect_timeout (a minute here), ends the wait for the handshake,
// with connect_timeout; shutdown ends the handshake at once (run_async's limit is 10 s).
TEST_F(ExecutorTest, SilentServerIsConnectTimeoutAtTheCallersDeadline) {
  test::BlackholeProxy blackhole;
  blackhole.start();
  PoolConfig config;
  config.connect_timeout = 60s;
  pool::Registry registry(io_.get_executor(), config);
  pool::Server server;
  server.id = kServer;
  server.endpoint = ssh::Endpoint(blackhole.host(), blackhole.port());
  server.connect.auth = ssh::AuthMethod::password;
  server.connect.password = "unused";
  registry.add_server(server);
  const auto seen = test::run_async(io_, run_on_silent_server(&registry), 10s);
  ASSERT_EQ(seen.results.size(), 1U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, ssh::Errc::connect_timeout)
      << seen.results[0].error().message();
  ASSERT_EQ(seen.checks.size(), 1U);
  EXPECT_TRUE(seen.checks[0]);
  EXPECT_EQ(seen.stats.sessions_connecting, 0U);
  EXPECT_EQ(seen.stats.handshakes_cancelled, 1U);
}

}  // namespace
}  // namespace healer
