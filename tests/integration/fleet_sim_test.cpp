// The simulated fleet (healer-fleet-sim) validated against a real OpenSSH sshd: the same
// scenarios through healer's own library (pool::Registry, exec::Executor, checks::async_diagnose,
// metrics::async_collect) against both, with the same results: commands' output and exit codes,
// stdin, a status per check, metric names, a wrong key, a changed host key, MaxSessions, a
// stalled host, a TERM signal. Then what only the simulator does: a host key per address,
// deterministic faults of each kind and the client error each one gives, counters that grow
// between collections, sessions and descriptors released, and its bounds (parent death, max
// lifetime).
#include "fleet_sim.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "async_poll.hpp"
#include "child_process.hpp"
#include "fleet_sim_pool.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/checks/runner.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/collector.hpp"
#include "healer/metrics/parsers.hpp"
#include "healer/metrics/probe.hpp"
#include "healer/metrics/rates.hpp"
#include "healer/pool/errors.hpp"
#include "healer/pool/pool.hpp"
#include "healer/ssh/errors.hpp"
#include "poll_until.hpp"
#include "pool_helpers.hpp"
#include "process_table.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

using namespace std::chrono_literals;
using test::evictions;
using test::FleetSim;
using test::SshdFixture;

// --- running things through the library ------------------------------------------------------

struct Command {
  Command(std::string command_text, std::string input = {})
      : text(std::move(command_text)), stdin_data(std::move(input)) {}
  std::string text;
  std::string stdin_data;
  std::optional<std::chrono::milliseconds> timeout;  ///< this command's own; else the run's
};

struct Ran {
  std::vector<Result<ssh::CommandResult>> results;
  pool::PoolStats stats;
};

// Each command in turn on `server_id`, then a polite shutdown.
asio::awaitable<Ran> run_commands(pool::Registry* registry, std::string server_id,
                                  std::vector<Command> commands,
                                  std::chrono::milliseconds timeout) {
  exec::Executor executor(*registry);
  Ran ran;
  for (const auto& command : commands) {
    exec::RunOptions options;
    options.deadline = Deadline::after(command.timeout.value_or(timeout));
    options.stdin_data = command.stdin_data;
    options.kill_grace = 200ms;
    ran.results.push_back(co_await executor.async_run(server_id, command.text, options));
  }
  ran.stats = registry->stats(server_id);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return ran;
}

// All commands at once on `server_id`.
asio::awaitable<Ran> run_concurrently(pool::Registry* registry, std::string server_id,
                                      std::vector<std::string> commands) {
  exec::Executor executor(*registry);
  exec::RunOptions options;
  options.deadline = Deadline::after(15s);
  Ran ran;
  ran.results = co_await executor.async_run_all(server_id, std::move(commands), options);
  ran.stats = registry->stats(server_id);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return ran;
}

// One command on each server, all at once; results in input order.
asio::awaitable<Ran> run_on_each(pool::Registry* registry, std::vector<std::string> server_ids,
                                 std::string command, std::chrono::milliseconds timeout) {
  exec::Executor executor(*registry);
  Ran ran;
  std::vector<std::string> commands(server_ids.size(), command);
  // async_run_all is per server; a sweep over servers is what async_collect does, so use the
  // plain loop with a short per-command deadline: every failure mode here ends by its deadline.
  for (const auto& id : server_ids) {
    exec::RunOptions options;
    options.deadline = Deadline::after(timeout);
    options.kill_grace = 100ms;
    ran.results.push_back(co_await executor.async_run(id, command, options));
  }
  ran.stats = registry->total_stats();
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return ran;
}

struct Diagnosed {
  checks::Diagnosis diagnosis;
  pool::PoolStats stats;
};

asio::awaitable<Diagnosed> diagnose(pool::Registry* registry, std::string server_id,
                                    std::vector<checks::CheckDefinition> checks,
                                    checks::ResultCache* cache) {
  exec::Executor executor(*registry);
  checks::DiagnoseOptions options;
  options.deadline = Deadline::after(30s);
  options.cache = cache;
  Diagnosed seen;
  seen.diagnosis = co_await checks::async_diagnose(executor, server_id, std::move(checks),
                                                   checks::CheckSettings{}, options);
  seen.stats = registry->stats(server_id);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return seen;
}

// One diagnosis per server, all at once (async_diagnose_all).
asio::awaitable<std::vector<checks::Diagnosis>> diagnose_all(
    pool::Registry* registry, std::vector<checks::ServerChecks> servers,
    checks::RunMode mode = checks::RunMode::concurrent) {
  exec::Executor executor(*registry);
  checks::SweepOptions options;
  options.server_timeout = 30s;
  options.per_server.mode = mode;
  auto diagnoses = co_await checks::async_diagnose_all(executor, std::move(servers), options);
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return diagnoses;
}

// `rounds` sweeps, `pause` apart (pacing only: the simulated counters grow with time).
asio::awaitable<std::vector<metrics::CollectResult>> collect(
    pool::Registry* registry, std::vector<std::string> server_ids, int rounds,
    std::chrono::milliseconds pause = std::chrono::milliseconds(0)) {
  exec::Executor executor(*registry);
  metrics::CollectOptions options;
  options.timeout = 15s;
  options.concurrency = 64;
  std::vector<metrics::CollectResult> all;
  for (int round = 0; round < rounds; ++round) {
    if (round > 0) {
      co_await test::async_pause(pause);
    }
    auto results = co_await metrics::async_collect(executor, server_ids, options);
    all.insert(all.end(), std::make_move_iterator(results.begin()),
               std::make_move_iterator(results.end()));
  }
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return all;
}

std::vector<checks::CheckDefinition> all_checks() {
  auto list = checks::default_checks();
  for (auto& seed : checks::seed_checks()) {
    list.push_back(std::move(seed));
  }
  return list;
}

std::set<std::string> metric_names(const metrics::Sample& sample) {
  std::set<std::string> names;
  for (const auto& metric : metrics::to_metrics(sample)) {
    names.insert(metric.name);
  }
  return names;
}

std::string describe(const Result<ssh::CommandResult>& result) {
  if (!result) {
    return "error: " + result.error().message();
  }
  return "exit " + std::to_string(result->shell_exit_code()) + ", out '" + result->out +
         "', err '" + result->err + "'";
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

FleetSim::Options small_fleet(std::size_t hosts = 4) {
  FleetSim::Options options;
  options.hosts = hosts;
  return options;
}

class FleetSimTest : public ::testing::Test {
 protected:
  // Lets the pool's detached work (sessions drained after a timeout) finish before the loop
  // goes away.
  void TearDown() override {
    io_.restart();
    io_.run_for(std::chrono::seconds(5));
  }

  Ran run(const pool::Server& server, std::vector<Command> commands,
          std::chrono::milliseconds timeout = 10s, PoolConfig config = {}) {
    pool::Registry registry(io_.get_executor(), config);
    registry.add_server(server);
    return test::run_async(io_, run_commands(&registry, server.id, std::move(commands), timeout));
  }

  // Runs the loop (the client's detached work: a timed-out command's reaper) until `condition`
  // holds or `timeout` passes.
  template <class Condition>
  bool run_loop_until(Condition condition, std::chrono::milliseconds timeout) {
    const auto give_up = Clock::now() + timeout;
    while (!condition()) {
      if (Clock::now() >= give_up) {
        return condition();
      }
      io_.restart();
      io_.run_for(10ms);
    }
    return true;
  }

  asio::io_context io_;
};

// --- the same results as sshd ---------------------------------------------------------------

TEST_F(FleetSimTest, CommandsGiveTheSameOutputAndExitCodesAsSshd) {
  SshdFixture sshd;
  sshd.start();
  FleetSim sim(small_fleet());
  sim.start();
  const std::vector<Command> commands = {
      {"true"},
      {"false"},
      {"echo hello world"},
      {"echo 'two  spaces' \"and quotes\""},
      {"echo -n no newline"},
      {"exit 3"},
      {"sleep 0.2"},
      {"sleep 0.1; echo after && echo and || echo never"},
      {"LC_ALL=C; export LC_ALL; echo with prologue"},
      {"cat", "line one\nline two\n"},  // stdin reaches the command; its EOF ends it
      {"cat /proc/no-such-file"},
      {"healer-no-such-command-31337 --flag"},
  };
  const Ran real = run(test::pool_server(sshd, "sshd"), commands);
  const Ran simulated = run(test::pool_server(sim, 0), commands);
  ASSERT_EQ(real.results.size(), commands.size());
  ASSERT_EQ(simulated.results.size(), commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) {
    SCOPED_TRACE(commands[i].text + "\n sshd: " + describe(real.results[i]) +
                 "\n  sim: " + describe(simulated.results[i]));
    ASSERT_TRUE(real.results[i]);
    ASSERT_TRUE(simulated.results[i]);
    EXPECT_EQ(simulated.results[i]->exit_status, real.results[i]->exit_status);
    EXPECT_EQ(simulated.results[i]->exit_signal, real.results[i]->exit_signal);
    EXPECT_EQ(simulated.results[i]->out, real.results[i]->out);
    // Error messages differ in wording between tools; both must say something.
    EXPECT_EQ(simulated.results[i]->err.empty(), real.results[i]->err.empty());
  }
  // The unknown command: dash's wording on both.
  EXPECT_EQ(simulated.results.back()->exit_status, 127);
  EXPECT_NE(simulated.results.back()->err.find("healer-no-such-command-31337: not found"),
            std::string::npos);
  EXPECT_NE(real.results.back()->err.find("healer-no-such-command-31337"), std::string::npos);
  // One connection carried every command, on both.
  EXPECT_EQ(real.stats.handshakes_started, 1U);
  EXPECT_EQ(simulated.stats.handshakes_started, 1U);
  const auto stats = sim.stats();
  EXPECT_EQ(stats.connections, 1U);
  EXPECT_EQ(stats.auth_successes, 1U);
  EXPECT_EQ(stats.commands, commands.size());
  EXPECT_EQ(stats.commands_answered, commands.size());
  EXPECT_EQ(stats.commands_by_kind.at("unknown"), 1U);
}

TEST_F(FleetSimTest, ProcFilesHaveTheShapeOfTheRealOnes) {
  SshdFixture sshd;
  sshd.start();
  FleetSim sim(small_fleet());
  sim.start();
  const std::vector<Command> commands = {
      {"cat /proc/loadavg /proc/meminfo"}, {"cat /proc/stat"}, {"cat /proc/net/dev"}};
  const Ran real = run(test::pool_server(sshd, "sshd"), commands);
  const Ran simulated = run(test::pool_server(sim, 1), commands);
  for (const Ran* ran : {&real, &simulated}) {
    ASSERT_EQ(ran->results.size(), 3U);
    for (const auto& result : ran->results) {
      ASSERT_TRUE(result) << result.error().message();
      EXPECT_EQ(result->exit_status, 0);
    }
    const std::string& both = ran->results[0]->out;
    const auto split = both.find('\n') + 1;
    const auto load = metrics::parse_loadavg(both.substr(0, split));
    ASSERT_TRUE(load) << load.error().message();
    const auto memory = metrics::parse_meminfo(both.substr(split));
    ASSERT_TRUE(memory) << memory.error().message();
    EXPECT_GT(memory->size(), 10U);
    const auto stat = metrics::parse_proc_stat(ran->results[1]->out, 100.0);
    ASSERT_TRUE(stat) << stat.error().message();
    EXPECT_FALSE(stat->cpus.empty());
    EXPECT_TRUE(stat->boot_time.has_value());
    const auto network = metrics::parse_net_dev(ran->results[2]->out);
    ASSERT_TRUE(network) << network.error().message();
    EXPECT_FALSE(network->empty());
  }
}

TEST_F(FleetSimTest, EveryCatalogCheckIsOkOnTheSimulator) {
  FleetSim sim(small_fleet());
  sim.start();
  const auto checks = all_checks();
  std::vector<checks::Diagnosis> diagnoses;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    std::vector<checks::ServerChecks> servers;
    for (std::size_t host = 0; host < sim.size(); ++host) {  // different CPUs, memory, disks
      registry.add_server(test::pool_server(sim, host));
      servers.emplace_back(sim.host(host), checks);
    }
    diagnoses = test::run_async(io_, diagnose_all(&registry, std::move(servers)));
  }
  ASSERT_EQ(diagnoses.size(), sim.size());
  for (const auto& diagnosis : diagnoses) {
    ASSERT_TRUE(diagnosis.reachable()) << diagnosis.server_error->message();
    ASSERT_EQ(diagnosis.checks.size(), checks.size());
    for (const auto& check : diagnosis.checks) {
      EXPECT_EQ(check.result.status, checks::Status::ok)
          << diagnosis.server_id << ": " << check.result.name << ": " << check.result.message;
      EXPECT_FALSE(check.error.has_value());
    }
    EXPECT_EQ(diagnosis.status, checks::Status::ok);
  }
  const auto stats = sim.stats();
  EXPECT_EQ(stats.commands_by_kind.at("check"), checks.size() * sim.size());
  EXPECT_EQ(stats.commands_by_kind.count("unknown"), 0U);
  EXPECT_EQ(stats.connections, sim.size()) << "one connection per server";
}

// Batched mode: every check of a server in one exec (checks::batch_script), each one's output
// framed by the run's marker with its exit code.
TEST_F(FleetSimTest, EveryCatalogCheckIsOkOnTheSimulatorInBatchedMode) {
  FleetSim sim(small_fleet());
  sim.start();
  const auto checks = all_checks();
  std::vector<checks::Diagnosis> diagnoses;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    std::vector<checks::ServerChecks> servers;
    for (std::size_t host = 0; host < sim.size(); ++host) {
      registry.add_server(test::pool_server(sim, host));
      servers.emplace_back(sim.host(host), checks);
    }
    diagnoses =
        test::run_async(io_, diagnose_all(&registry, std::move(servers), checks::RunMode::batched));
  }
  ASSERT_EQ(diagnoses.size(), sim.size());
  for (const auto& diagnosis : diagnoses) {
    ASSERT_TRUE(diagnosis.reachable()) << diagnosis.server_error->message();
    EXPECT_EQ(diagnosis.mode, checks::RunMode::batched);
    ASSERT_EQ(diagnosis.checks.size(), checks.size());
    for (const auto& check : diagnosis.checks) {
      EXPECT_EQ(check.result.status, checks::Status::ok)
          << diagnosis.server_id << ": " << check.result.name << ": " << check.result.message;
      EXPECT_EQ(check.exit_status, 0) << check.result.name;
    }
    EXPECT_EQ(diagnosis.status, checks::Status::ok);
  }
  const auto stats = sim.stats();
  EXPECT_EQ(stats.commands_by_kind.at("batch"), sim.size()) << "one exec per server";
  EXPECT_EQ(stats.commands_by_kind.count("check"), 0U);
  EXPECT_EQ(stats.commands_by_kind.count("unknown"), 0U);
}

// A batch with a check the simulator does not know (an application's) is not simulated: the
// run fails as a whole, every check UNKNOWN with the reason, none judged from a partial answer.
TEST_F(FleetSimTest, BatchWithAnUnknownCheckIsNotSimulated) {
  FleetSim sim(small_fleet(1));
  sim.start();
  auto checks = std::vector{*checks::find_check("uptime")};
  checks::ApplicationSpec app;
  app.name = "web";
  app.units = {"nginx.service"};
  checks.push_back(checks::application_checks(app).at(0));
  std::vector<checks::Diagnosis> diagnoses;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sim, 0));
    std::vector<checks::ServerChecks> servers;
    servers.emplace_back(sim.host(0), checks);
    diagnoses =
        test::run_async(io_, diagnose_all(&registry, std::move(servers), checks::RunMode::batched));
  }
  ASSERT_EQ(diagnoses.size(), 1U);
  ASSERT_TRUE(diagnoses[0].reachable());
  ASSERT_EQ(diagnoses[0].checks.size(), 2U);
  for (const auto& check : diagnoses[0].checks) {
    EXPECT_EQ(check.result.status, checks::Status::unknown) << check.result.name;
    EXPECT_NE(check.result.message.find("batched run failed (exit 2)"), std::string::npos)
        << check.result.message;
  }
  EXPECT_EQ(sim.stats().commands_by_kind.at("unknown"), 1U);
  EXPECT_EQ(sim.stats().commands_by_kind.count("batch"), 0U);
}

// The machine's own outputs, replayed by the simulator, give the same status per check through
// the whole diagnose path (channels, stdout/stderr, exit codes, parsing); and a live diagnosis
// of sshd gives the same checks, in the same order, with the same statuses (but for the ones
// whose input moves between two runs).
TEST_F(FleetSimTest, DiagnosisStatusPerCheckMatchesSshd) {
  SshdFixture sshd;
  sshd.start();
  // security_updates runs apt-get -s, 3 s of CPU here: checks_runner_test runs it live, and
  // EveryCatalogCheckIsOkOnTheSimulator covers the simulator's answer.
  auto checks = all_checks();
  std::erase_if(checks, [](const checks::CheckDefinition& check) {
    return check.name == "security_updates";
  });
  // As the runner sends them: after the prologue that draws the run's marker.
  std::vector<std::string> commands;
  for (const auto& check : checks) {
    commands.push_back(std::string(checks::kDrawMarker) + check.command);
  }
  // 1. Every check's command on sshd, its raw output (marker line included) kept.
  const double sent_at = unix_now();
  Ran captured;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "sshd"));
    captured = test::run_async(io_, run_concurrently(&registry, "sshd", commands), 40s);
  }
  const double received_at = unix_now();
  ASSERT_EQ(captured.results.size(), checks.size());
  std::vector<FleetSim::Response> responses;
  std::map<std::string, checks::Status> expected;
  checks::ResultCache real_cache;  // reboot_required (cache_for > 0) is not run twice
  for (std::size_t i = 0; i < checks.size(); ++i) {
    const auto& result = captured.results[i];
    ASSERT_TRUE(result) << checks[i].name << ": " << result.error().message();
    std::string out = result->out;
    const std::string marker = checks::take_marker(out);
    ASSERT_FALSE(marker.empty()) << checks[i].name << ": " << result->out;
    checks::CheckInput input;
    input.out = out;
    input.marker = marker;
    input.err = result->err;
    input.exit_status = result->exit_status;
    input.sent_at = sent_at;
    input.received_at = received_at;
    expected[checks[i].name] = checks[i].parse(input, checks::CheckSettings{}).status;
    responses.push_back({commands[i], result->out, result->err, result->exit_status.value_or(255)});
    if (checks[i].cache_for.count() > 0) {
      checks::CachedOutput output;
      output.out = out;
      output.marker = marker;
      output.err = result->err;
      output.exit_status = result->exit_status;
      output.expires_at = Clock::now() + 1h;
      real_cache.store("sshd", checks[i], std::move(output));
    }
  }
  // 2. The simulator replays them.
  auto options = small_fleet(1);
  options.responses = responses;
  FleetSim sim(options);
  sim.start();
  Diagnosed simulated;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sim, 0, "sim"));
    simulated = test::run_async(io_, diagnose(&registry, "sim", checks, nullptr));
  }
  // 3. A live diagnosis of sshd.
  Diagnosed real;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "sshd"));
    real = test::run_async(io_, diagnose(&registry, "sshd", checks, &real_cache));
  }
  ASSERT_TRUE(simulated.diagnosis.reachable());
  ASSERT_TRUE(real.diagnosis.reachable());
  ASSERT_EQ(simulated.diagnosis.checks.size(), checks.size());
  ASSERT_EQ(real.diagnosis.checks.size(), checks.size());
  // Inputs that move between two runs on a shared machine: CPU and load from others' builds,
  // process counts; their status may differ between the capture and the live run.
  static const std::set<std::string> kMoving = {"cpu", "load", "processes", "seed.processes"};
  for (std::size_t i = 0; i < checks.size(); ++i) {
    const auto& sim_run = simulated.diagnosis.checks[i];
    const auto& real_run = real.diagnosis.checks[i];
    SCOPED_TRACE(checks[i].name + ": sim '" + sim_run.result.message + "', sshd '" +
                 real_run.result.message + "'");
    EXPECT_EQ(sim_run.result.name, checks[i].name);
    EXPECT_EQ(real_run.result.name, checks[i].name);
    EXPECT_EQ(sim_run.result.status, expected.at(checks[i].name));
    EXPECT_EQ(sim_run.exit_status, captured.results[i]->exit_status);
    EXPECT_FALSE(sim_run.error.has_value());
    EXPECT_FALSE(real_run.error.has_value());
    if (!kMoving.contains(checks[i].name)) {
      EXPECT_EQ(real_run.result.status, sim_run.result.status);
    }
  }
  EXPECT_EQ(sim.stats().commands_by_kind.at("canned"), checks.size());
}

TEST_F(FleetSimTest, MetricsCollectionHasTheSameMetricNamesAsSshd) {
  SshdFixture sshd;
  sshd.start();
  // The hosts take this machine's /proc as their layout (its meminfo fields, disks,
  // interfaces, mounts) and fill in values of their own.
  auto options = small_fleet(2);
  options.proc_template = "/proc";
  FleetSim sim(options);
  sim.start();
  std::vector<metrics::CollectResult> results;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "sshd"));
    registry.add_server(test::pool_server(sim, 0, "sim0"));
    registry.add_server(test::pool_server(sim, 1, "sim1"));
    results = test::run_async(io_, collect(&registry, {"sshd", "sim0", "sim1"}, 1));
  }
  ASSERT_EQ(results.size(), 3U);
  for (const auto& result : results) {
    ASSERT_TRUE(result.sample) << result.server_id << ": " << result.sample.error().message();
    for (const auto& failure : result.sample->failures) {
      ADD_FAILURE() << result.server_id << ": " << failure.section << ": "
                    << failure.error.message();
    }
  }
  const auto real = metric_names(*results[0].sample);
  EXPECT_GT(real.size(), 30U);
  EXPECT_EQ(metric_names(*results[1].sample), real);
  EXPECT_EQ(metric_names(*results[2].sample), real);
  // Hosts differ from each other.
  EXPECT_NE(results[1].sample->uname->nodename, results[2].sample->uname->nodename);
  EXPECT_EQ(sim.stats().commands_by_kind.at("script"), 2U);
}

TEST_F(FleetSimTest, CountersGrowBetweenCollectionsSoRatesAreMeaningful) {
  FleetSim sim(small_fleet(3));
  sim.start();
  std::vector<metrics::CollectResult> results;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    std::vector<std::string> ids;
    for (std::size_t host = 0; host < sim.size(); ++host) {
      registry.add_server(test::pool_server(sim, host));
      ids.push_back(sim.host(host));
    }
    results = test::run_async(io_, collect(&registry, ids, 2, 1500ms));
  }
  ASSERT_EQ(results.size(), 6U);
  std::set<double> busy;
  for (std::size_t host = 0; host < 3; ++host) {
    const auto& first = results[host];
    const auto& second = results[host + 3];
    ASSERT_TRUE(first.sample) << first.sample.error().message();
    ASSERT_TRUE(second.sample) << second.sample.error().message();
    EXPECT_TRUE(first.sample->failures.empty());
    EXPECT_EQ(metric_names(*first.sample), metric_names(*second.sample));
    const auto rates = metrics::compute_rates(*first.sample, first.collected_at, *second.sample,
                                              second.collected_at);
    ASSERT_TRUE(rates) << rates.error().message();
    ASSERT_TRUE(rates->cpu.has_value());
    EXPECT_GT(rates->cpu->busy, 0.0);
    EXPECT_LT(rates->cpu->busy, 90.0);
    busy.insert(rates->cpu->busy);
    double network = 0;
    for (const auto& device : rates->network) {
      network += device.receive_bytes_per_second;
    }
    EXPECT_GT(network, 0.0) << "interface counters grow";
    double disk = 0;
    for (const auto& device : rates->disks) {
      disk += device.read_bytes_per_second + device.write_bytes_per_second;
    }
    EXPECT_GT(disk, 0.0) << "disk counters grow";
    EXPECT_EQ(first.sample->stat->boot_time, second.sample->stat->boot_time);
  }
  EXPECT_EQ(busy.size(), 3U) << "each host has its own load";
}

TEST_F(FleetSimTest, WrongKeyIsAnAuthFailureOnBoth) {
  SshdFixture sshd;
  sshd.start();
  const auto sshd_key = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  FleetSim sim(small_fleet());
  const auto sim_key = sim.add_client_key(false);
  sim.start();
  const Ran real = run(test::pool_server(sshd, "sshd", sshd_key.private_key), {{"true"}});
  const Ran simulated = run(test::pool_server(sim, 0, "sim", sim_key.private_key), {{"true"}});
  ASSERT_FALSE(real.results.at(0));
  ASSERT_FALSE(simulated.results.at(0));
  EXPECT_EQ(real.results[0].error().code, ssh::Errc::auth_failed);
  EXPECT_EQ(simulated.results[0].error().code, ssh::Errc::auth_failed)
      << simulated.results[0].error().message();
  EXPECT_EQ(real.stats.handshakes_failed, 1U);
  EXPECT_EQ(simulated.stats.handshakes_failed, 1U);
  // One failed login each, never a retry loop.
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  const auto stats = sim.stats();
  EXPECT_EQ(stats.auth_failures, 1U);
  EXPECT_EQ(stats.auth_successes, 0U);
  EXPECT_EQ(stats.commands, 0U);
}

TEST_F(FleetSimTest, ChangedHostKeyIsRefusedBeforeAuthOnBoth) {
  SshdFixture sshd;
  sshd.start();
  FleetSim sim(small_fleet());
  sim.start();
  sshd.regenerate_host_key();
  sim.change_host_keys();
  const Ran real = run(test::pool_server(sshd, "sshd"), {{"true"}});
  const Ran simulated = run(test::pool_server(sim, 2), {{"true"}});
  ASSERT_FALSE(real.results.at(0));
  ASSERT_FALSE(simulated.results.at(0));
  EXPECT_EQ(real.results[0].error().code, ssh::Errc::host_key_changed);
  EXPECT_EQ(simulated.results[0].error().code, ssh::Errc::host_key_changed)
      << simulated.results[0].error().message();
  EXPECT_EQ(sshd.accepted_auth_count() + sshd.failed_auth_count(), 0U);
  // The client's last packets (its NEWKEYS, then a disconnect) reach the simulator after the
  // client returned.
  ASSERT_TRUE(test::poll_until([&] { return sim.stats().raw.at("disconnects") == 1U; }, 5s));
  const auto stats = sim.stats();
  EXPECT_EQ(stats.key_exchanges, 1U);
  EXPECT_EQ(stats.auth_requests, 0U) << "no credential was sent";
  // Trusting the new keys makes the host usable again.
  sim.trust_current_host_keys();
  const Ran again = run(test::pool_server(sim, 2), {{"echo ok"}});
  ASSERT_TRUE(again.results.at(0)) << again.results[0].error().message();
  EXPECT_EQ(again.results[0]->out, "ok\n");
}

TEST_F(FleetSimTest, MaxSessionsRefusalLowersTheChannelLimitOnBoth) {
  SshdFixture::Options sshd_options;
  sshd_options.max_sessions = 2;
  SshdFixture sshd(sshd_options);
  sshd.start();
  auto options = small_fleet();
  options.max_sessions = 2;
  FleetSim sim(options);
  sim.start();
  std::vector<std::string> commands;
  for (int i = 0; i < 12; ++i) {
    commands.push_back("sleep 0.2; echo " + std::to_string(i));
  }
  Ran real;
  Ran simulated;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "sshd"));
    real = test::run_async(io_, run_concurrently(&registry, "sshd", commands));
  }
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sim, 0, "sim"));
    simulated = test::run_async(io_, run_concurrently(&registry, "sim", commands));
  }
  for (const Ran* ran : {&real, &simulated}) {
    ASSERT_EQ(ran->results.size(), commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
      ASSERT_TRUE(ran->results[i]) << ran->results[i].error().message();
      EXPECT_EQ(ran->results[i]->out, std::to_string(i) + "\n");
    }
    EXPECT_GT(ran->stats.channel_limit_lowered, 0U);
    EXPECT_GT(ran->stats.channels_refused, 0U);
    EXPECT_EQ(ran->stats.handshakes_failed, 0U);
  }
  EXPECT_GT(sshd.refused_session_count(), 0U);
  const auto stats = sim.stats();
  EXPECT_GT(stats.channels_refused, 0U);
  EXPECT_EQ(stats.commands_answered, commands.size());
}

TEST_F(FleetSimTest, StalledHostTimesOutOnBoth) {
  SshdFixture sshd;
  sshd.start();
  sshd.pause();  // TCP accepted by the kernel, no banner
  auto options = small_fleet();
  options.profiles = {"1:stall=1"};
  FleetSim sim(options);
  sim.start();
  PoolConfig config;
  config.connect_timeout = 500ms;
  const Ran real = run(test::pool_server(sshd, "sshd"), {{"true"}}, 2s, config);
  sshd.resume();
  const Ran simulated = run(test::pool_server(sim, 1), {{"true"}}, 2s, config);
  ASSERT_FALSE(real.results.at(0));
  ASSERT_FALSE(simulated.results.at(0));
  EXPECT_EQ(real.results[0].error().code, ssh::Errc::connect_timeout)
      << real.results[0].error().message();
  EXPECT_EQ(simulated.results[0].error().code, real.results[0].error().code)
      << simulated.results[0].error().message();
  const auto stats = sim.stats();
  EXPECT_EQ(stats.stalled, 1U);
  EXPECT_EQ(stats.key_exchanges, 0U);
  // Its neighbour answers.
  const Ran neighbour = run(test::pool_server(sim, 0), {{"echo up"}}, 5s, config);
  ASSERT_TRUE(neighbour.results.at(0)) << neighbour.results[0].error().message();
}

TEST_F(FleetSimTest, TermSignalEndsASleepOnBoth) {
  SshdFixture sshd;
  sshd.start();
  FleetSim sim(small_fleet());
  sim.start();
  // A first command opens the connection, so the 300 ms deadline is the sleep's alone (a
  // handshake on a loaded machine may take longer than that).
  Command sleep("sleep 31337");
  sleep.timeout = 300ms;
  const Ran real = run(test::pool_server(sshd, "sshd"), {{"true"}, sleep});
  const Ran simulated = run(test::pool_server(sim, 0), {{"true"}, sleep});
  ASSERT_TRUE(real.results.at(0));
  ASSERT_FALSE(real.results.at(1));
  ASSERT_FALSE(simulated.results.at(1));
  EXPECT_EQ(real.results[1].error().code, ssh::Errc::timeout);
  EXPECT_EQ(simulated.results[1].error().code, ssh::Errc::timeout);
  EXPECT_EQ(real.stats.timeouts, 1U);
  EXPECT_EQ(simulated.stats.timeouts, 1U);
  // The client's reaper sent TERM: the remote sleep is gone.
  EXPECT_TRUE(
      run_loop_until([&] { return sshd.remote_processes_matching("sleep 31337") == 0; }, 5s));
  EXPECT_TRUE(run_loop_until([&] { return sim.stats().channels_open == 0; }, 5s));
  const auto stats = sim.stats();
  EXPECT_EQ(stats.commands_signalled, 1U);
  EXPECT_GE(stats.signals, 1U);
}

// --- what only the simulator does
// -------------------------------------------------------------

TEST_F(FleetSimTest, EachAddressHasItsOwnHostKey) {
  FleetSim sim(small_fleet(3));
  sim.start();
  std::set<std::string> fingerprints;
  for (std::size_t host = 0; host < 3; ++host) {
    const Ran ran = run(test::pool_server(sim, host), {{"hostname"}});
    ASSERT_TRUE(ran.results.at(0)) << ran.results[0].error().message();
    fingerprints.insert(ran.results[0]->host_key_fingerprint);
    EXPECT_EQ(ran.results[0]->out, "fleet-0000" + std::to_string(host) + "\n");
  }
  EXPECT_EQ(fingerprints.size(), 3U);
  // known_hosts has one "[address]:port" line per host.
  std::ifstream known_hosts(sim.known_hosts_path());
  std::vector<std::string> lines;
  for (std::string line; std::getline(known_hosts, line);) {
    lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 3U);
  EXPECT_EQ(
      lines[1].rfind("[" + sim.host(1) + "]:" + std::to_string(sim.port()) + " ssh-ed25519 ", 0),
      0U);
  // Host 1's key is not host 0's: a client that dials host 1 with only host 0's line refuses.
  const auto only_first = sim.dir() / "known_hosts.first";
  std::ofstream(only_first) << lines[0] << "\n";
  auto server = test::pool_server(sim, 1);
  server.connect.known_hosts_file = only_first.string();
  const Ran ran = run(server, {{"true"}});
  ASSERT_FALSE(ran.results.at(0));
  EXPECT_EQ(ran.results[0].error().code, ssh::Errc::host_unknown);
}

// The known_hosts file is OpenSSH's format: the OpenSSH client verifies every host strictly.
TEST_F(FleetSimTest, OpenSshVerifiesHostsAgainstTheKnownHostsFile) {
  FleetSim sim(small_fleet(3));
  sim.start();
  for (std::size_t host = 0; host < 3; ++host) {
    const auto result = test::run_command({"/usr/bin/ssh",
                                           "-F",
                                           "/dev/null",
                                           "-o",
                                           "BatchMode=yes",
                                           "-o",
                                           "IdentitiesOnly=yes",
                                           "-o",
                                           "StrictHostKeyChecking=yes",
                                           "-o",
                                           "UserKnownHostsFile=" + sim.known_hosts_path().string(),
                                           "-o",
                                           "GlobalKnownHostsFile=/dev/null",
                                           "-i",
                                           sim.client_key_path().string(),
                                           "-p",
                                           std::to_string(sim.port()),
                                           "-l",
                                           sim.user(),
                                           sim.host(host),
                                           "uname -n"});
    EXPECT_EQ(result.exit_code(), 0) << result.err;
    EXPECT_EQ(result.out, "fleet-0000" + std::to_string(host) + "\n");
  }
}

TEST_F(FleetSimTest, AHostWithItsOwnAuthorizedKeysAcceptsOnlyThem) {
  FleetSim sim(small_fleet(2));
  const auto own = sim.add_client_key(false);
  sim.authorize_on_host(1, own.public_key);
  sim.start();
  const Ran fleet_key_on_0 = run(test::pool_server(sim, 0, "a"), {{"true"}});
  const Ran fleet_key_on_1 = run(test::pool_server(sim, 1, "b"), {{"true"}});
  const Ran own_key_on_1 = run(test::pool_server(sim, 1, "c", own.private_key), {{"true"}});
  const Ran own_key_on_0 = run(test::pool_server(sim, 0, "d", own.private_key), {{"true"}});
  EXPECT_TRUE(fleet_key_on_0.results.at(0));
  ASSERT_FALSE(fleet_key_on_1.results.at(0));
  EXPECT_EQ(fleet_key_on_1.results[0].error().code, ssh::Errc::auth_failed);
  EXPECT_TRUE(own_key_on_1.results.at(0));
  ASSERT_FALSE(own_key_on_0.results.at(0));
  EXPECT_EQ(own_key_on_0.results[0].error().code, ssh::Errc::auth_failed);
  const auto stats = sim.stats();
  EXPECT_EQ(stats.auth_successes, 2U);
  EXPECT_EQ(stats.auth_failures, 2U);
}

// Idle pooled sessions stay: keepalives are answered, and the next command reuses the session.
TEST_F(FleetSimTest, KeepalivesAreAnsweredSoIdleSessionsStayOnBoth) {
  SshdFixture sshd;
  sshd.start();
  FleetSim sim(small_fleet(1));
  sim.start();
  PoolConfig config;
  config.keepalive_interval = 100ms;
  config.keepalive_max_missed = 2;
  config.health_check_idle = 0ms;
  const std::vector<Command> commands = {{"echo one"}, {"sleep 0.6"}, {"echo two"}};
  for (const auto& server : {test::pool_server(sshd, "sshd"), test::pool_server(sim, 0)}) {
    // `sleep 0.6` keeps the session busy but silent for 6 keepalive intervals.
    const Ran ran = run(server, commands, 10s, config);
    for (const auto& result : ran.results) {
      ASSERT_TRUE(result) << server.id << ": " << result.error().message();
    }
    EXPECT_EQ(ran.results[2]->out, "two\n");
    EXPECT_TRUE(ran.results[2]->session_reused) << server.id;
    EXPECT_EQ(ran.stats.handshakes_started, 1U) << server.id;
    EXPECT_EQ(evictions(ran.stats, pool::Eviction::dead), 0U) << server.id;
  }
}

// A client that connects and never authenticates is cut after the login grace time.
TEST_F(FleetSimTest, UnauthenticatedConnectionsEndAfterTheLoginGraceTime) {
  auto options = small_fleet(1);
  options.extra_args = {"--login-grace", "1"};
  FleetSim sim(options);
  sim.start();
  asio::ip::tcp::socket socket(io_);
  socket.connect({asio::ip::make_address(sim.host(0)), sim.port()});
  // Read the banner and whatever follows until the simulator closes the connection.
  std::string received;
  std::error_code ec;
  const auto give_up = Clock::now() + 5s;
  socket.non_blocking(true);
  while (Clock::now() < give_up) {
    char buffer[4096];
    const auto got = socket.read_some(asio::buffer(buffer), ec);
    if (ec == asio::error::would_block) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    if (ec) {
      break;
    }
    received.append(buffer, got);
  }
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
  EXPECT_EQ(received.rfind("SSH-2.0-", 0), 0U);
  EXPECT_EQ(sim.stats().raw.at("login_timeouts"), 1U);
}

// One host per fault kind, and the typed error healer reports for each.
TEST_F(FleetSimTest, EachFaultGivesItsClientError) {
  auto options = small_fleet(7);
  options.profiles = {"0:refuse=1", "1:auth_fail=1", "2:stall=1",
                      "3:drop=1",   "4:hang=1",      "5:latency=3000"};
  FleetSim sim(options);
  sim.start();
  PoolConfig config;
  config.connect_timeout = 700ms;
  pool::Registry registry(io_.get_executor(), config);
  std::vector<std::string> ids;
  for (std::size_t host = 0; host < sim.size(); ++host) {
    registry.add_server(test::pool_server(sim, host));
    ids.push_back(sim.host(host));
  }
  const Ran ran = test::run_async(io_, run_on_each(&registry, ids, "echo fine", 1000ms));
  ASSERT_EQ(ran.results.size(), 7U);
  const auto code = [&](std::size_t host) { return ran.results[host].error().code; };
  for (std::size_t host = 0; host < 6; ++host) {
    ASSERT_FALSE(ran.results[host]) << "host " << host << " answered: " << ran.results[host]->out;
  }
  // Reset right after the TCP handshake: seen while connecting or while reading the banner.
  EXPECT_TRUE(code(0) == ssh::Errc::connect_refused || code(0) == ssh::Errc::disconnected ||
              code(0) == ssh::Errc::protocol)
      << ran.results[0].error().message();
  EXPECT_EQ(code(1), ssh::Errc::auth_failed) << ran.results[1].error().message();
  EXPECT_EQ(code(2), ssh::Errc::connect_timeout) << ran.results[2].error().message();
  EXPECT_EQ(code(3), ssh::Errc::disconnected) << ran.results[3].error().message();
  EXPECT_EQ(code(4), ssh::Errc::timeout) << ran.results[4].error().message();
  EXPECT_EQ(code(5), ssh::Errc::timeout) << "3 s of latency against a 1 s deadline";
  ASSERT_TRUE(ran.results[6]) << ran.results[6].error().message();
  EXPECT_EQ(ran.results[6]->out, "fine\n");
  const auto stats = sim.stats();
  // A reset before any credential was sent is tried again while the deadline leaves room (at
  // most four times): each retry is one more refused connection, nothing else is retried.
  const auto retried = registry.stats(sim.host(0)).handshakes_retried;
  EXPECT_LE(retried, 4U);
  EXPECT_EQ(stats.refused, 1U + retried);
  EXPECT_EQ(registry.total_stats().handshakes_retried, retried);
  EXPECT_EQ(stats.stalled, 1U);
  EXPECT_EQ(stats.raw.at("auth_failures_injected"), 1U);
  EXPECT_EQ(stats.commands_dropped, 1U);
  EXPECT_EQ(stats.raw.at("commands_hung"), 1U);
}

// The same seed gives the same faults on the same hosts, whatever the order of connections.
TEST_F(FleetSimTest, FaultsAreDeterministicForASeed) {
  const auto failing_hosts = [this](std::uint64_t seed) {
    auto options = small_fleet(24);
    options.seed = seed;
    options.refuse_rate = 0.25;
    options.auth_fail_rate = 0.25;
    FleetSim sim(options);
    sim.start();
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    std::vector<std::string> ids;
    for (std::size_t host = 0; host < sim.size(); ++host) {
      registry.add_server(test::pool_server(sim, host));
      ids.push_back(sim.host(host));
    }
    const auto results = test::run_async(io_, collect(&registry, ids, 1));
    std::map<std::string, std::string> failed;  // host -> error name
    std::size_t refused_hosts = 0;
    std::size_t retried_auth = 0;  // refused first, then failed authentication on a retry
    for (const auto& result : results) {
      // Refusals are left out of the comparison: the pool retries a connection reset before any
      // credential while the deadline leaves room, and faults are drawn per connection, so what
      // a refused host ends with depends on how many retries fit (timing), not only on the seed.
      // They are still counted.
      const bool retried = registry.stats(result.server_id).handshakes_retried > 0;
      if (!result.sample && result.sample.error().code == ssh::Errc::auth_failed && !retried) {
        failed[result.server_id] = "auth";
      } else if (!result.sample && result.sample.error().code == ssh::Errc::auth_failed) {
        ++retried_auth;
      } else if (!result.sample) {
        ++refused_hosts;
      }
    }
    const auto stats = sim.stats();
    // A refused host's connection is reset before any credential: the pool tries it again while
    // the deadline leaves room, and each retry is a new connection with its own draws.
    EXPECT_EQ(
        stats.refused + stats.raw.at("auth_failures_injected").get<std::uint64_t>(),
        failed.size() + retried_auth + refused_hosts + registry.total_stats().handshakes_retried);
    return failed;
  };
  const auto first = failing_hosts(7);
  const auto again = failing_hosts(7);
  const auto other = failing_hosts(8);
  EXPECT_GT(first.size(), 2U);
  EXPECT_LT(first.size(), 20U);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, other);
}

TEST_F(FleetSimTest, SessionsAndDescriptorsAreReleased) {
  FleetSim sim(small_fleet(60));
  sim.start();
  const auto descriptors = [&] {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(
             std::filesystem::path("/proc") / std::to_string(sim.pid()) / "fd")) {
      ++count;
    }
    return count;
  };
  const std::size_t before = descriptors();
  std::vector<metrics::CollectResult> results;
  {
    pool::Registry registry(io_.get_executor(), PoolConfig{});
    std::vector<std::string> ids;
    for (std::size_t host = 0; host < sim.size(); ++host) {
      registry.add_server(test::pool_server(sim, host));
      ids.push_back(sim.host(host));
    }
    results = test::run_async(io_, collect(&registry, ids, 1));
  }
  for (const auto& result : results) {
    ASSERT_TRUE(result.sample) << result.sample.error().message();
  }
  EXPECT_TRUE(test::poll_until([&] { return sim.stats().sessions_open == 0; }, 5s));
  const auto stats = sim.stats();
  EXPECT_EQ(stats.sessions_peak, 60U);
  EXPECT_EQ(stats.channels_open, 0U);
  EXPECT_EQ(stats.raw.at("disconnects"), 60U);
  EXPECT_TRUE(test::poll_until([&] { return descriptors() == before; }, 5s))
      << descriptors() << " descriptors, " << before << " before";
}

TEST_F(FleetSimTest, ExitsWhenItsParentDiesOrItsLifetimeEnds) {
  test::TempDir dir("healer-fleet-bounds-");
  // Parent death: a shell starts it in the background and exits once it listens (so it has
  // taken the shell as its parent: an exit before that, as a fixed wait allowed under asan's
  // slower start, left it with init as its parent, which never dies).
  const auto pid_file = dir.path() / "pid";
  const auto log = (dir.path() / "orphan.log").string();
  const auto started = test::run_command(
      {"/bin/sh", "-c",
       std::string(HEALER_FLEET_SIM_PATH) + " --hosts 1 >" + log + " 2>&1 & echo $! >" +
           pid_file.string() + "; i=0; until grep -q listening " + log +
           "; do i=$((i+1)); [ $i -le 100 ] || exit 1; sleep 0.05; done"});
  pid_t orphan = 0;
  std::ifstream(pid_file) >> orphan;
  ASSERT_GT(orphan, 0);
  EXPECT_EQ(started.exit_code(), 0) << "not listening after 5 s: " << started.err;
  EXPECT_TRUE(test::poll_until([&] { return test::process_gone(orphan); }, 5s));
  if (!test::process_gone(orphan)) {
    ::kill(orphan, SIGKILL);
  }
  // Max lifetime.
  auto bounded = test::ChildProcess::spawn(
      {HEALER_FLEET_SIM_PATH, "--hosts", "1", "--max-lifetime", "1"}, dir.path() / "bounded.log");
  const auto ended = bounded.wait_for_exit(5s);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->exit_code, 0);
}

}  // namespace
}  // namespace healer
