// Cancelling the sweeps that start worker coroutines (checks::async_diagnose_all,
// metrics::async_collect, the service's exec fan-out), as a closed HTTP request or a SIGINT does:
// every worker is cancelled, the sweep returns only once all of them ended (nothing is leased or
// queued any more), every server still has a result saying why, and no remote command is left
// running. Against a real OpenSSH sshd on 127.0.0.1.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <asio/this_coro.hpp>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "async_poll.hpp"
#include "cancellable.hpp"
#include "healer/checks/parsers.hpp"
#include "healer/checks/runner.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/collector.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/exec.hpp"
#include "healer/service/runtime.hpp"
#include "healer/ssh/errors.hpp"
#include "pool_helpers.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"

namespace healer {
namespace {

using namespace std::chrono_literals;
using test::async_poll;
using test::SshdFixture;

// A marker no other run of a test shares (a killed test can leave its sleep behind).
std::string unique_sleep(int seconds) {
  return "sleep " + std::to_string(seconds) + "." + std::to_string(::getpid());
}

// True while a process has `fifo` open for reading, or is blocked opening it so: a writer's
// non-blocking open succeeds then, and fails with ENXIO once nobody reads.
// (Such an open also lets a blocked reader go on: it reads an empty file.)
bool fifo_has_reader(const std::filesystem::path& fifo) {
  const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return errno != ENXIO;
  }
  ::close(fd);
  return true;
}

pool::PoolStats totals(const pool::Registry& registry) { return registry.total_stats(); }

// --- checks::async_diagnose_all --------------------------------------------------------------

struct SweepSeen {
  std::vector<checks::Diagnosis> diagnoses;
  std::size_t callbacks = 0;
  std::vector<bool> checks;  // conditions seen inside the scenario, in order
  pool::PoolStats stats;     // right after the sweep returned
};

asio::awaitable<SweepSeen> cancel_diagnoses(pool::Registry* registry, SshdFixture* sshd,
                                            std::string marker) {
  SweepSeen seen;
  auto io = co_await asio::this_coro::executor;
  exec::Executor executor(*registry);
  checks::CheckDefinition slow;
  slow.name = "slow";
  slow.command = marker + "; uptime";
  slow.parse = checks::parse_uptime;
  slow.timeout = 30s;
  std::vector<checks::ServerChecks> servers;
  for (const char* id : {"one", "two", "three"}) {
    servers.emplace_back(id, std::vector<checks::CheckDefinition>{slow});
  }
  checks::SweepOptions options;
  options.max_servers = 2;
  options.server_timeout = 30s;
  auto callbacks = std::make_shared<std::size_t>(0);
  options.on_diagnosis = [callbacks](std::size_t, const checks::Diagnosis&) { ++*callbacks; };
  test::Cancellable<std::vector<checks::Diagnosis>> sweep(
      io, checks::async_diagnose_all(executor, std::move(servers), std::move(options)));
  auto running = [sshd, &marker] { return sshd->server_commands_running(marker) == 2; };
  seen.checks.push_back(co_await async_poll(running, 15s));
  sweep.cancel();
  auto done = [&sweep] { return sweep.done(); };
  seen.checks.push_back(co_await async_poll(done, 10s));
  seen.stats = totals(*registry);
  if (sweep.done()) {
    seen.diagnoses = std::move(sweep.value());
  }
  seen.callbacks = *callbacks;
  auto gone = [sshd, &marker] { return sshd->remote_processes_matching(marker) == 0; };
  seen.checks.push_back(co_await async_poll(gone, 10s));
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST(SweepCancellation, DiagnoseAllCancelsEveryServerAndWaitsForItsWorkers) {
  SshdFixture sshd;
  sshd.start();
  asio::io_context io;
  pool::Registry registry(io.get_executor(), PoolConfig{});
  for (const char* id : {"one", "two", "three"}) {
    registry.add_server(test::pool_server(sshd, id));
  }
  const auto marker = unique_sleep(4270);
  const auto seen = test::run_async(io, cancel_diagnoses(&registry, &sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  ASSERT_EQ(seen.checks.size(), 3U);
  EXPECT_TRUE(seen.checks[0]) << "two diagnoses were not running at once";
  EXPECT_TRUE(seen.checks[1]) << "the cancelled sweep did not return";
  EXPECT_TRUE(seen.checks[2]) << "a cancelled check is still running on the server";
  // Returned only once every worker had ended: nothing leased, nothing queued.
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  EXPECT_EQ(seen.stats.waiters, 0U);
  EXPECT_EQ(seen.stats.commands_cancelled, 2U);
  ASSERT_EQ(seen.diagnoses.size(), 3U);
  EXPECT_EQ(seen.callbacks, 3U);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& diagnosis = seen.diagnoses[i];
    ASSERT_EQ(diagnosis.checks.size(), 1U);
    ASSERT_TRUE(diagnosis.checks[0].error.has_value()) << i;
    EXPECT_EQ(diagnosis.checks[0].error->code, ssh::Errc::cancelled)
        << diagnosis.checks[0].error->message();
    EXPECT_EQ(diagnosis.status, checks::Status::unknown);
  }
  // The third never started: it says so rather than missing.
  ASSERT_TRUE(seen.diagnoses[2].server_error.has_value());
  EXPECT_EQ(seen.diagnoses[2].server_error->code, ssh::Errc::cancelled)
      << seen.diagnoses[2].server_error->message();
  ASSERT_EQ(seen.diagnoses[2].checks.size(), 1U);
  EXPECT_NE(seen.diagnoses[2].checks[0].result.message.find("cancelled"), std::string::npos)
      << seen.diagnoses[2].checks[0].result.message;
}

// --- metrics::async_collect ------------------------------------------------------------------

struct CollectSeen {
  std::vector<metrics::CollectResult> results;
  std::size_t callbacks = 0;
  std::vector<bool> checks;
  pool::PoolStats stats;
};

asio::awaitable<CollectSeen> cancel_collection(pool::Registry* registry, SshdFixture* sshd,
                                               std::filesystem::path stuck_root) {
  CollectSeen seen;
  auto io = co_await asio::this_coro::executor;
  exec::Executor executor(*registry);
  metrics::CollectOptions options;
  options.concurrency = 2;
  options.timeout = 30s;
  options.probe.proc_root = stuck_root.string();  // its "stat" is a FIFO: the probe blocks there
  auto callbacks = std::make_shared<std::size_t>(0);
  options.on_result = [callbacks](const metrics::CollectResult&) { ++*callbacks; };
  test::Cancellable<std::vector<metrics::CollectResult>> sweep(
      io, metrics::async_collect(executor, {"one", "two", "three"}, std::move(options)));
  // The probe travels on stdin (metrics::kProbeCommand): its awk runs, blocked opening the FIFO.
  auto running = [sshd] { return sshd->server_commands_running("awk -f /dev/stdin") == 2; };
  seen.checks.push_back(co_await async_poll(running, 15s));
  sweep.cancel();
  auto done = [&sweep] { return sweep.done(); };
  seen.checks.push_back(co_await async_poll(done, 10s));
  seen.stats = totals(*registry);
  if (sweep.done()) {
    seen.results = std::move(sweep.value());
  }
  seen.callbacks = *callbacks;
  // No process left blocked on the FIFO (an orphan of a closed session included).
  const auto fifo = stuck_root / "stat";
  auto gone = [&fifo] { return !fifo_has_reader(fifo); };
  seen.checks.push_back(co_await async_poll(gone, 10s));
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST(SweepCancellation, CollectCancelsEveryProbeAndWaitsForItsWorkers) {
  SshdFixture sshd;
  sshd.start();
  const auto stuck_root = sshd.home_dir() / ("stuck-proc." + std::to_string(::getpid()));
  std::filesystem::create_directories(stuck_root);
  std::filesystem::permissions(stuck_root, std::filesystem::perms::all);
  ASSERT_EQ(::mkfifo((stuck_root / "stat").c_str(), 0666), 0);
  ::chmod((stuck_root / "stat").c_str(), 0666);
  asio::io_context io;
  pool::Registry registry(io.get_executor(), PoolConfig{});
  for (const char* id : {"one", "two", "three"}) {
    registry.add_server(test::pool_server(sshd, id));
  }
  const auto seen = test::run_async(io, cancel_collection(&registry, &sshd, stuck_root));
  ASSERT_EQ(seen.checks.size(), 3U);
  EXPECT_TRUE(seen.checks[0]) << "two probes were not running at once";
  EXPECT_TRUE(seen.checks[1]) << "the cancelled sweep did not return";
  EXPECT_TRUE(seen.checks[2]) << "a cancelled probe is still running on the server";
  EXPECT_EQ(seen.stats.channels_in_use, 0U);
  EXPECT_EQ(seen.stats.waiters, 0U);
  EXPECT_EQ(seen.stats.commands_cancelled, 2U);
  ASSERT_EQ(seen.results.size(), 3U);
  EXPECT_EQ(seen.callbacks, 3U);
  for (const auto& result : seen.results) {
    ASSERT_FALSE(result.sample) << result.server_id;
    EXPECT_EQ(result.sample.error().code, ssh::Errc::cancelled) << result.sample.error().message();
  }
}

// --- the service's exec fan-out ----------------------------------------------------------------

struct ExecSeen {
  std::vector<bool> checks;
  std::vector<Result<ssh::CommandResult>> results;
  std::string error;
};

asio::awaitable<ExecSeen> cancel_fan_out(service::Runtime* runtime, SshdFixture* sshd,
                                         std::string marker) {
  ExecSeen seen;
  auto io = co_await asio::this_coro::executor;
  service::ExecRequest request;
  service::AdHocTarget host;
  host.host = sshd->host();
  host.port = sshd->port();
  host.user = sshd->user();
  host.identity = sshd->client_key_path().string();
  host.known_hosts = sshd->known_hosts_path().string();
  request.host = host;
  request.commands = {marker + "; echo never", marker};
  request.timeout = 30s;
  test::Cancellable<Result<service::ExecOutcome>> running(
      io, service::async_exec(*runtime, std::move(request)));
  auto started = [sshd, &marker] { return sshd->server_commands_running(marker) == 2; };
  seen.checks.push_back(co_await async_poll(started, 15s));
  running.cancel();
  auto done = [&running] { return running.done(); };
  seen.checks.push_back(co_await async_poll(done, 10s));
  seen.checks.push_back(runtime->registry().total_stats().channels_in_use == 0);
  if (running.done()) {
    if (running.value()) {
      for (auto& server : running.value()->servers) {
        for (auto& result : server.results) {
          seen.results.push_back(std::move(result));
        }
      }
    } else {
      seen.error = running.value().error().message();
    }
  }
  auto gone = [sshd, &marker] { return sshd->remote_processes_matching(marker) == 0; };
  seen.checks.push_back(co_await async_poll(gone, 10s));
  co_await runtime->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST(SweepCancellation, ServiceExecFanOutCancelsEveryCommand) {
  SshdFixture sshd;
  sshd.start();
  service::RuntimeOptions options;
  options.open_store = false;
  auto runtime = service::Runtime::open(std::move(options));
  ASSERT_TRUE(runtime) << runtime.error().message();
  const auto marker = unique_sleep(4271);
  const auto seen =
      test::run_async((*runtime)->io(), cancel_fan_out(runtime->get(), &sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  ASSERT_EQ(seen.checks.size(), 4U);
  EXPECT_TRUE(seen.checks[0]) << "the two commands were not running at once";
  EXPECT_TRUE(seen.checks[1]) << "the cancelled exec did not return";
  EXPECT_TRUE(seen.checks[2]) << "a channel was still leased when the exec returned";
  EXPECT_TRUE(seen.checks[3]) << "a cancelled command is still running on the server";
  ASSERT_EQ(seen.results.size(), 2U) << seen.error;
  for (const auto& result : seen.results) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, ssh::Errc::cancelled) << result.error().message();
  }
}

}  // namespace
}  // namespace healer
