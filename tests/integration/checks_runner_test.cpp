// checks::async_diagnose and async_diagnose_all against a real OpenSSH sshd on 127.0.0.1 (this
// Debian machine is the server): every default and seed check runs live without a CRITICAL from
// a missing tool; a server's checks share one connection; a sweep with a closed port and a wrong
// key gives typed UNKNOWNs and exactly one failed authentication; a check past its deadline is
// UNKNOWN while the others finish; the result cache; batched mode (its figures against concurrent
// mode: bench/checks_bench.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "async_poll.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/checks/parsers.hpp"
#include "healer/checks/report.hpp"
#include "healer/checks/runner.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/pool.hpp"
#include "healer/ssh/errors.hpp"
#include "poll_until.hpp"
#include "pool_helpers.hpp"
#include "ports.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"

namespace healer::checks {
namespace {

using namespace std::chrono_literals;
using test::SshdFixture;

std::vector<CheckDefinition> all_checks() {
  auto checks = default_checks();
  for (auto& seed : seed_checks()) {
    checks.push_back(std::move(seed));
  }
  return checks;
}

DiagnoseOptions diagnose_options(std::chrono::seconds timeout, RunMode mode = RunMode::concurrent) {
  DiagnoseOptions options;
  options.deadline = Deadline::after(timeout);
  options.mode = mode;
  return options;
}

struct Observed {
  std::vector<Diagnosis> diagnoses;
  std::map<std::string, pool::PoolStats> stats;
  std::vector<std::size_t> completed;  // indexes, in completion order
  Clock::duration diagnosed_in{};      // diagnose_one: async_diagnose alone
};

asio::awaitable<Observed> diagnose_one(pool::Registry* registry, std::string server_id,
                                       std::vector<CheckDefinition> checks,
                                       DiagnoseOptions options) {
  Observed seen;
  exec::Executor executor(*registry);
  CheckSettings settings;
  const auto started = Clock::now();
  seen.diagnoses.push_back(co_await async_diagnose(executor, server_id, std::move(checks),
                                                   std::move(settings), std::move(options)));
  seen.diagnosed_in = Clock::now() - started;
  seen.stats[server_id] = registry->stats(server_id);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// The same after a first command has logged in (30 ms on a quiet machine, seconds on a loaded
// one), with the diagnosis deadline set only then: a short deadline or check timeout is then the
// checks' alone.
asio::awaitable<Observed> diagnose_one_logged_in(pool::Registry* registry, std::string server_id,
                                                 std::vector<CheckDefinition> checks,
                                                 std::chrono::milliseconds deadline) {
  {
    exec::Executor executor(*registry);
    exec::RunOptions login;
    login.deadline = Deadline::after(std::chrono::seconds(20));
    const auto warm = co_await executor.async_run(server_id, "true", login);
    EXPECT_TRUE(warm) << warm.error().message();
  }
  DiagnoseOptions options;
  options.deadline = Deadline::after(deadline);
  co_return co_await diagnose_one(registry, std::move(server_id), std::move(checks),
                                  std::move(options));
}

asio::awaitable<Observed> diagnose_rounds(pool::Registry* registry, std::string server_id,
                                          std::vector<std::vector<CheckDefinition>> rounds,
                                          ResultCache* cache) {
  Observed seen;
  exec::Executor executor(*registry);
  for (std::size_t i = 0; i < rounds.size(); ++i) {
    auto options = diagnose_options(10s);
    options.cache = cache;
    const CheckSettings settings;
    seen.diagnoses.push_back(
        co_await async_diagnose(executor, server_id, rounds[i], settings, options));
    seen.stats[server_id + std::to_string(i)] = registry->stats(server_id);
  }
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

class ChecksRunnerTest : public ::testing::Test {
 protected:
  // Lets the pool's detached work (closing a session drained after a timeout) finish before the
  // loop is destroyed: destroying its pending frames in arbitrary order is not safe (see the
  // report: ssh WaitList use-after-free under ASan). Returns as soon as the loop runs dry.
  void TearDown() override {
    io_.restart();
    io_.run_for(std::chrono::seconds(5));
  }

  asio::io_context io_;
};

// --- every check, live -----------------------------------------------------------------------

void expect_sane(const Diagnosis& diagnosis) {
  for (const auto& run : diagnosis.checks) {
    const auto& result = run.result;
    SCOPED_TRACE(result.name + ": " + std::string(status_name(result.status)) + " - " +
                 result.message);
    EXPECT_FALSE(run.error.has_value()) << run.error->message();
    EXPECT_FALSE(result.message.empty());
    EXPECT_EQ(result.message.find('|'), std::string::npos);
    EXPECT_GT(run.duration.count(), 0);
    if (result.status == Status::unknown) {
      EXPECT_GT(result.message.size(), 5U) << "an UNKNOWN needs a reason";
    }
    // A CRITICAL here can only be a measured finding on this (shared, busy) machine, never a
    // missing tool: pending updates, or CPU, load and zombies from other work on it.
    if (result.status == Status::critical) {
      static const std::set<std::string> kFindings = {"security_updates", "failed_units", "cpu",
                                                      "load", "processes"};
      EXPECT_TRUE(kFindings.contains(result.name)) << "unexpected CRITICAL";
      EXPECT_FALSE(result.perfdata.empty()) << "a CRITICAL must be a measurement";
    }
  }
}

TEST_F(ChecksRunnerTest, EveryDefaultAndSeedCheckRunsLive) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "local"));
  // security_updates (apt-get -s, seconds on a busy machine) has its own test below.
  auto checks = all_checks();
  ASSERT_EQ(checks.size(), 25U);
  std::erase_if(checks,
                [](const CheckDefinition& check) { return check.name == "security_updates"; });
  const auto seen =
      test::run_async(io_, diagnose_one(&registry, "local", checks, diagnose_options(40s)), 50s);
  const Diagnosis& diagnosis = seen.diagnoses.at(0);
  std::fputs(render_table(diagnosis, RenderOptions()).c_str(), stdout);
  ASSERT_TRUE(diagnosis.reachable()) << diagnosis.server_error->message();
  ASSERT_EQ(diagnosis.checks.size(), checks.size());
  Status expected = Status::ok;
  for (std::size_t i = 0; i < checks.size(); ++i) {
    EXPECT_EQ(diagnosis.checks[i].result.name, checks[i].name) << "input order";
    expected = worst(expected, diagnosis.checks[i].result.status);
  }
  EXPECT_EQ(diagnosis.status, expected);
  expect_sane(diagnosis);

  // What this machine must report: measurements with perfdata; memory and disks are fine here.
  static const std::set<std::string> kMeasured = {
      "disk_space",   "disk_inodes", "memory",           "swap",
      "load",         "cpu",         "oom_kills",        "clock_skew",
      "processes",    "uptime",      "file_descriptors", "seed.uptime",
      "seed.df_root", "seed.free",   "seed.loadavg",     "seed.processes",
      "seed.meminfo"};
  static const std::set<std::string> kHealthy = {"disk_space", "disk_inodes",      "memory",
                                                 "swap",       "file_descriptors", "seed.df_root",
                                                 "seed.free",  "seed.meminfo"};
  std::size_t measured = 0;
  for (const auto& run : diagnosis.checks) {
    const auto& result = run.result;
    SCOPED_TRACE(result.name + ": " + result.message);
    if (kMeasured.contains(result.name)) {
      ++measured;
      EXPECT_NE(result.status, Status::unknown);
      EXPECT_FALSE(result.perfdata.empty());
      EXPECT_TRUE(run.exit_status.has_value());
    }
    if (kHealthy.contains(result.name)) {
      EXPECT_TRUE(result.status == Status::ok || result.status == Status::warning);
    }
  }
  EXPECT_EQ(measured, kMeasured.size());
  // Packed on one connection: max_channels (10) checks at a time.
  EXPECT_EQ(seen.stats.at("local").handshakes_started, 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
}

TEST_F(ChecksRunnerTest, SecurityUpdatesRunsLiveAndIsCached) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "apt"));
  auto check = find_check("security_updates");
  ASSERT_TRUE(check.has_value());
  ASSERT_GT(check->cache_for.count(), 0);
  ResultCache cache;
  const auto seen =
      test::run_async(io_, diagnose_rounds(&registry, "apt", {{*check}, {*check}}, &cache), 50s);
  ASSERT_EQ(seen.diagnoses.size(), 2U);
  const auto& first = seen.diagnoses[0];
  std::fputs(render_table(first, RenderOptions()).c_str(), stdout);
  ASSERT_TRUE(first.reachable());
  expect_sane(first);
  const auto& run = first.checks.at(0);
  // Debian has apt: a count of pending updates (CRITICAL when there are security ones), or
  // UNKNOWN with the reason when apt cannot tell (e.g. no package lists yet).
  if (run.result.status != Status::unknown) {
    EXPECT_FALSE(run.result.perfdata.empty());
    EXPECT_TRUE(seen.diagnoses[1].checks.at(0).cached);
    EXPECT_EQ(seen.diagnoses[1].checks.at(0).result.message, run.result.message);
  } else {
    EXPECT_FALSE(seen.diagnoses[1].checks.at(0).cached) << "an UNKNOWN is not cached";
  }
}

// --- ordering: expensive checks after the others --------------------------------------------

TEST_F(ChecksRunnerTest, ExpensiveChecksStartAfterTheOthers) {
  SshdFixture sshd;
  sshd.start();
  for (const bool expensive_last : {true, false}) {
    SCOPED_TRACE(expensive_last ? "expensive last" : "all at once");
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "order"));
    // The cheap check leaves a file when it is done; the expensive one (cache_for > 0) only
    // succeeds when the file is already there.
    const std::string done_file = expensive_last ? "$HOME/cheap-done-1" : "$HOME/cheap-done-2";
    CheckDefinition cheap;
    cheap.name = "cheap";
    cheap.command = "sleep 0.3; touch \"" + done_file + "\"; cat /proc/uptime";
    cheap.parse = parse_uptime;
    CheckDefinition expensive;
    expensive.name = "expensive";
    expensive.command = "test -e \"" + done_file + "\" && cat /proc/uptime";
    expensive.parse = parse_uptime;
    expensive.cache_for = 60s;
    auto options = diagnose_options(10s);
    options.expensive_last = expensive_last;
    const auto seen =
        test::run_async(io_, diagnose_one(&registry, "order", {expensive, cheap}, options));
    const auto& diagnosis = seen.diagnoses.at(0);
    ASSERT_EQ(diagnosis.checks.size(), 2U);
    EXPECT_EQ(diagnosis.checks[0].result.name, "expensive");
    EXPECT_EQ(diagnosis.checks[1].result.status, Status::ok);
    EXPECT_EQ(diagnosis.checks[0].exit_status, expensive_last ? 0 : 1);
    EXPECT_EQ(diagnosis.checks[0].result.status, expensive_last ? Status::ok : Status::unknown);
  }
}

// --- one connection -------------------------------------------------------------------------

TEST_F(ChecksRunnerTest, SeedChecksShareOneConnection) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "seed"));
  const auto seen =
      test::run_async(io_, diagnose_one(&registry, "seed", seed_checks(), diagnose_options(20s)));
  const Diagnosis& diagnosis = seen.diagnoses.at(0);
  ASSERT_TRUE(diagnosis.reachable()) << diagnosis.server_error->message();
  ASSERT_EQ(diagnosis.checks.size(), 7U);
  expect_sane(diagnosis);
  for (const auto& run : diagnosis.checks) {
    EXPECT_TRUE(run.exit_status.has_value()) << run.result.name;
  }
  const auto& stats = seen.stats.at("seed");
  EXPECT_EQ(stats.handshakes_started, 1U);
  EXPECT_EQ(stats.sessions_opened, 1U);
  EXPECT_EQ(stats.commands, 8U);  // 7 checks + the connection probe's lease
  EXPECT_EQ(sshd.connection_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_TRUE(sshd.wait_for_log("Starting session: ", 7));
  EXPECT_EQ(sshd.session_open_count(), 7U);
}

// --- a sweep with bad servers ---------------------------------------------------------------

asio::awaitable<Observed> sweep(pool::Registry* registry, std::vector<ServerChecks> servers,
                                std::size_t max_servers) {
  Observed seen;
  exec::Executor executor(*registry);
  SweepOptions options;
  options.max_servers = max_servers;
  options.server_timeout = 20s;
  options.on_diagnosis = [&seen, &servers](std::size_t index, const Diagnosis& diagnosis) {
    EXPECT_EQ(diagnosis.server_id, servers.at(index).server_id);
    seen.completed.push_back(index);
  };
  seen.diagnoses = co_await async_diagnose_all(executor, servers, std::move(options));
  for (const auto& server : servers) {
    seen.stats[server.server_id] = registry->stats(server.server_id);
  }
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

TEST_F(ChecksRunnerTest, SweepReportsDownAndWrongKeyServersAsUnknown) {
  SshdFixture sshd;
  sshd.start();
  const auto stranger =
      sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, /*authorized=*/false);
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "good1"));
  auto down = test::pool_server(sshd, "down");
  down.endpoint = ssh::Endpoint(sshd.host(), test::closed_port());
  registry.add_server(down);
  registry.add_server(test::pool_server(sshd, "wrong-key", stranger.private_key));
  registry.add_server(test::pool_server(sshd, "good2"));
  SshdFixture impostor;  // a server whose host key no longer matches known_hosts
  impostor.start();
  impostor.regenerate_host_key();
  registry.add_server(test::pool_server(impostor, "changed-host-key"));
  std::vector<ServerChecks> servers;
  for (const char* id : {"good1", "down", "wrong-key", "good2", "changed-host-key"}) {
    servers.emplace_back(id, seed_checks());
  }
  servers.emplace_back("not-registered", seed_checks());
  const auto seen = test::run_async(io_, sweep(&registry, servers, 2));

  ASSERT_EQ(seen.diagnoses.size(), servers.size());
  for (std::size_t i = 0; i < servers.size(); ++i) {
    EXPECT_EQ(seen.diagnoses[i].server_id, servers[i].server_id) << "input order";
  }
  // Each server completed once.
  auto completed = seen.completed;
  std::sort(completed.begin(), completed.end());
  EXPECT_EQ(completed, (std::vector<std::size_t>{0, 1, 2, 3, 4, 5}));

  for (const std::size_t good : {0U, 3U}) {
    const auto& diagnosis = seen.diagnoses[good];
    SCOPED_TRACE(diagnosis.server_id);
    EXPECT_TRUE(diagnosis.reachable());
    ASSERT_EQ(diagnosis.checks.size(), 7U);
    expect_sane(diagnosis);
    EXPECT_EQ(seen.stats.at(diagnosis.server_id).handshakes_started, 1U);
  }
  const auto expect_unreachable = [&](std::size_t index, std::error_code code,
                                      std::string_view words) {
    const auto& diagnosis = seen.diagnoses[index];
    SCOPED_TRACE(diagnosis.server_id);
    ASSERT_FALSE(diagnosis.reachable());
    EXPECT_EQ(diagnosis.server_error->code, code) << diagnosis.server_error->message();
    EXPECT_EQ(diagnosis.status, Status::unknown);
    ASSERT_EQ(diagnosis.checks.size(), 7U);
    for (const auto& run : diagnosis.checks) {
      EXPECT_EQ(run.result.status, Status::unknown);
      ASSERT_TRUE(run.error.has_value());
      EXPECT_EQ(run.error->code, code);
      EXPECT_NE(run.result.message.find(words), std::string::npos) << run.result.message;
      EXPECT_EQ(run.result.message.find('\n'), std::string::npos);
    }
  };
  expect_unreachable(1, ssh::Errc::connect_refused, "connection refused");
  expect_unreachable(2, ssh::Errc::auth_failed, "authentication failed");
  expect_unreachable(4, ssh::Errc::host_key_changed, "HOST KEY CHANGED");
  expect_unreachable(5, pool::Errc::unknown_server, "not-registered");
  EXPECT_EQ(impostor.accepted_auth_count(), 0U);  // no credentials sent to an impostor
  EXPECT_EQ(seen.stats.at("wrong-key").handshakes_started, 1U);
  EXPECT_EQ(seen.stats.at("down").handshakes_started, 1U);
  // One try with the wrong key, not one per check.
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
  EXPECT_EQ(nagios_exit_code(seen.diagnoses), 3 /* no WARNING or CRITICAL above the UNKNOWNs */)
      << render_json(seen.diagnoses, 2);
}

// --- deadlines --------------------------------------------------------------------------------

TEST_F(ChecksRunnerTest, CheckPastItsDeadlineIsUnknownAndTheOthersFinish) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "slow"));
  auto checks = seed_checks();
  CheckDefinition stuck;
  stuck.name = "stuck";
  stuck.command = "sleep 31338; cat /proc/uptime";
  stuck.parse = parse_uptime;
  stuck.timeout = 1s;
  checks.insert(checks.begin() + 2, stuck);
  const auto seen = test::run_async(io_, diagnose_one_logged_in(&registry, "slow", checks, 20s));
  const auto elapsed = seen.diagnosed_in;
  const Diagnosis& diagnosis = seen.diagnoses.at(0);
  ASSERT_TRUE(diagnosis.reachable());
  ASSERT_EQ(diagnosis.checks.size(), 8U);
  const auto& late = diagnosis.checks[2];
  EXPECT_EQ(late.result.name, "stuck");
  EXPECT_EQ(late.result.status, Status::unknown);
  ASSERT_TRUE(late.error.has_value());
  EXPECT_EQ(late.error->code, ssh::Errc::timeout);
  EXPECT_NE(late.result.message.find("timed out after 1 s"), std::string::npos)
      << late.result.message;
  EXPECT_GE(late.duration, 1s);
  EXPECT_LT(elapsed, 15s);  // bounded by its own timeout, not the 20 s diagnosis deadline
  for (std::size_t i = 0; i < diagnosis.checks.size(); ++i) {
    if (i == 2) {
      continue;
    }
    const auto& run = diagnosis.checks[i];
    EXPECT_FALSE(run.error.has_value()) << run.result.name << ": " << run.error->message();
    EXPECT_TRUE(run.exit_status.has_value()) << run.result.name;
  }
  EXPECT_EQ(seen.stats.at("slow").timeouts, 1U);
  EXPECT_TRUE(
      test::poll_until([&] { return sshd.remote_processes_matching("sleep 31338") == 0; }, 10s));
  sshd.kill_remote_processes_matching("sleep 31338");
}

TEST_F(ChecksRunnerTest, OverallDeadlineBoundsEveryCheck) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "slow"));
  CheckDefinition stuck;
  stuck.name = "stuck";
  stuck.command = "sleep 31339";
  stuck.parse = parse_uptime;
  stuck.timeout = 30s;
  const auto seen =
      test::run_async(io_, diagnose_one_logged_in(&registry, "slow", {stuck}, 1500ms));
  const auto& run = seen.diagnoses.at(0).checks.at(0);
  EXPECT_EQ(run.result.status, Status::unknown);
  EXPECT_NE(run.result.message.find("diagnosis deadline"), std::string::npos) << run.result.message;
  EXPECT_LT(run.duration, 5s);
  sshd.kill_remote_processes_matching("sleep 31339");
}

// --- cache ------------------------------------------------------------------------------------

TEST_F(ChecksRunnerTest, CachedChecksAreNotRunAgain) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "cached"));
  auto checks = seed_checks();
  checks.resize(2);  // seed.uptime, seed.df_root
  checks[1].cache_for = 60s;
  ResultCache cache;
  const auto seen = test::run_async(
      io_, diagnose_rounds(&registry, "cached", {checks, checks, {checks[1]}}, &cache));
  ASSERT_EQ(seen.diagnoses.size(), 3U);
  const auto& first = seen.diagnoses[0];
  const auto& second = seen.diagnoses[1];
  EXPECT_FALSE(first.checks[1].cached);
  EXPECT_TRUE(second.checks[1].cached);
  EXPECT_FALSE(second.checks[0].cached);
  EXPECT_EQ(second.checks[1].result.message, first.checks[1].result.message);
  EXPECT_EQ(second.checks[1].result.status, first.checks[1].result.status);
  EXPECT_EQ(second.checks[1].exit_status, 0);
  EXPECT_EQ(cache.size(), 1U);
  // 2 commands, then 1 (each run also takes one lease to probe the connection).
  EXPECT_EQ(seen.stats.at("cached0").commands, 3U);
  EXPECT_EQ(seen.stats.at("cached1").commands, 5U);
  // Only cached checks: no lease at all.
  const auto& third = seen.diagnoses[2];
  EXPECT_TRUE(third.reachable());
  EXPECT_TRUE(third.checks.at(0).cached);
  EXPECT_EQ(seen.stats.at("cached2").acquisitions, seen.stats.at("cached1").acquisitions);
  EXPECT_EQ(sshd.session_open_count(), 3U);
  cache.forget("other");
  EXPECT_EQ(cache.size(), 1U);
  cache.forget("cached");
  EXPECT_EQ(cache.size(), 0U);
}

// --- batched mode -----------------------------------------------------------------------------

TEST_F(ChecksRunnerTest, BatchedModeRunsEveryCheckInOneExec) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "batch"));
  auto checks = seed_checks();
  CheckDefinition failing;
  failing.name = "failing";
  failing.command = "echo partial; echo oops >&2; exit 127";
  failing.parse = parse_uptime;
  checks.push_back(failing);
  const auto seen = test::run_async(
      io_, diagnose_one(&registry, "batch", checks, diagnose_options(20s, RunMode::batched)));
  const Diagnosis& diagnosis = seen.diagnoses.at(0);
  ASSERT_TRUE(diagnosis.reachable());
  EXPECT_EQ(diagnosis.mode, RunMode::batched);
  ASSERT_EQ(diagnosis.checks.size(), 8U);
  for (std::size_t i = 0; i < 7; ++i) {
    const auto& run = diagnosis.checks[i];
    SCOPED_TRACE(run.result.name + ": " + run.result.message);
    EXPECT_EQ(run.exit_status, 0);
    EXPECT_NE(run.result.status, Status::critical);
  }
  // seed.system_state may be UNKNOWN without systemd; the measured ones are not.
  for (const std::size_t i : {0U, 1U, 2U, 3U, 5U, 6U}) {
    EXPECT_NE(diagnosis.checks[i].result.status, Status::unknown)
        << diagnosis.checks[i].result.name << ": " << diagnosis.checks[i].result.message;
  }
  EXPECT_EQ(diagnosis.checks[7].exit_status, 127);
  EXPECT_EQ(diagnosis.checks[7].result.status, Status::unknown);
  EXPECT_EQ(seen.stats.at("batch").commands, 2U);  // the probe's lease + the batch
  EXPECT_TRUE(sshd.wait_for_log("Starting session: "));
  EXPECT_EQ(sshd.session_open_count(), 1U);
}

// --- framing cannot be forged -----------------------------------------------------------------

// A full root filesystem as GNU df prints it, with the line a FUSE mount named
// "@@healer unavailable ..." (fusermount -o fsname=, no root needed) adds: through a real sshd,
// in both modes, the disk stays CRITICAL.
CheckDefinition hostile_df_check() {
  CheckDefinition check;
  check.name = "disk_space";
  check.command =
      "printf '%s\\n' 'Filesystem Type 1024-blocks Used Available Capacity Mounted on' "
      "'@@healer unavailable (a FUSE mount) fuse.x 100 1 99 1% /home/eve/m' "
      "'/dev/sda1 ext4 41152736 40625132 527604 99% /'";
  check.parse = parse_disk_space;
  return check;
}

// Prints the command line of the shell that runs it ($$ is the `sh -c` of the exec, or the
// batched script's shell in a subshell); its parser says whether the run's marker is on it.
CheckDefinition own_command_line_check() {
  CheckDefinition check;
  check.name = "command_line";
  check.command = "tr '\\000' ' ' < /proc/$$/cmdline; echo";
  check.parse = [](const CheckInput& input, const CheckSettings&) {
    CheckResult result;
    if (input.marker.empty() || input.out.find("random/uuid") == std::string_view::npos) {
      result.status = Status::unknown;
      result.message = "no marker, or not the shell's command line: " + std::string(input.out);
    } else if (input.out.find(input.marker) != std::string_view::npos) {
      result.status = Status::critical;
      result.message = "the marker is on the command line: " + std::string(input.out);
    } else {
      result.status = Status::ok;
      result.message = "no marker on the command line";
    }
    return result;
  };
  return check;
}

// Uses the marker the prologue drew on the server to say it cannot run.
CheckDefinition honest_unavailable_check() {
  CheckDefinition check;
  check.name = "unavailable";
  check.command = "echo \"$HM unavailable the tool is missing\"; exit 0";
  check.parse = parse_uptime;
  return check;
}

TEST_F(ChecksRunnerTest, ServerOutputCannotForgeFramingInEitherMode) {
  SshdFixture sshd;
  sshd.start();
  for (const auto mode : {RunMode::concurrent, RunMode::batched}) {
    SCOPED_TRACE(mode == RunMode::batched ? "batched" : "concurrent");
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "hostile"));
    const std::vector<CheckDefinition> checks = {hostile_df_check(), own_command_line_check(),
                                                 honest_unavailable_check()};
    const auto seen = test::run_async(
        io_, diagnose_one(&registry, "hostile", checks, diagnose_options(20s, mode)));
    const Diagnosis& diagnosis = seen.diagnoses.at(0);
    ASSERT_TRUE(diagnosis.reachable()) << diagnosis.server_error->message();
    ASSERT_EQ(diagnosis.checks.size(), 3U);
    const auto& disk = diagnosis.checks[0].result;
    EXPECT_EQ(disk.status, Status::critical) << disk.nagios_line();
    EXPECT_NE(disk.message.find("/ 98.7% used (!!)"), std::string::npos) << disk.message;
    const auto& command_line = diagnosis.checks[1].result;
    EXPECT_EQ(command_line.status, Status::ok) << command_line.message;
    const auto& unavailable = diagnosis.checks[2].result;
    EXPECT_EQ(unavailable.status, Status::unknown);
    EXPECT_EQ(unavailable.message, "the tool is missing");
  }
}
}  // namespace
}  // namespace healer::checks
