// healer-pool-bench: healer's connection pool and executor (pool::Registry + exec::Executor) on the
// two workloads of the pool issue, next to what people use instead, against throwaway OpenSSH
// sshds of the test bed, at several added round-trip times. Prints Markdown tables of medians
// (and p90s); bench/README.md says what each row measures.
//
// 1. Diagnosis: the seed's 7 checks on one server: cold (a new Registry: handshake + 7 at once),
//    warm (7 at once, and 7 one after another, on an open pool), the `healer exec` CLI; against a
//    new `ssh` per check, an OpenSSH ControlMaster with 7 mux clients, asyncssh.
// 2. Fleet: one command on N servers (N distinct 127.0.x.y addresses, each a DelayProxy in front
//    of one sshd on 127.0.0.1), cold and warm, against pdsh, parallel-ssh and asyncssh, with peak
//    client RSS.
// 3. Handshakes and errors per case, read from the sshd log.
//
// Clients take turns; they never overlap. healer's fleet sweeps run in a child process of this
// binary (`fleet-child`), so its peak RSS is the client's alone, not the 500 proxies'.

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

// GCC 12 at -O2 reports a potential null dereference inside CLI11's own string splitting
// (basic_string moved in vector::_M_realloc_insert): a false positive in a system header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <algorithm>
#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "common.hpp"
#include "delay_proxy.hpp"
#include "healer/core/deadline.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/pool.hpp"
#include "poll_until.hpp"
#include "process_table.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer::bench {
namespace {

using namespace std::chrono_literals;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// Bound of one diagnosis (connect + 7 commands): a hang fails the figure, not the run.
constexpr auto kStepTimeout = 60s;
// Bound of one fleet sweep, per command.
constexpr auto kSweepTimeout = 300s;
// OpenSSH's default MaxSessions, and healer's default max_channels: the realistic server.
constexpr int kMaxSessions = 10;

/// The seed's diagnosis, in its order.
std::vector<std::string> diagnosis_commands() {
  return {"uptime",
          "df -P /",
          "free -b",
          "cat /proc/loadavg",
          "systemctl is-system-running || true",
          "ps -e | wc -l",
          "head -5 /proc/meminfo"};
}

constexpr std::string_view kFleetCommand = "cat /proc/loadavg /proc/meminfo";

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
  int runs = 10;               // diagnosis: timed runs after one untimed warm-up
  int fleet_runs = 3;          // fleet: healer and asyncssh runs at N < large_fleet
  int large_runs = 2;          // fleet: healer and asyncssh runs at N >= large_fleet
  int process_runs = 2;        // fleet: pdsh and parallel-ssh runs at N < large_fleet
  int process_large_runs = 1;  // fleet: pdsh and parallel-ssh runs at N >= large_fleet
  // RTTs at which pdsh and parallel-ssh run at N >= large_fleet (empty: all): one sweep of 500
  // hosts takes ~30 s of both CPUs, at any RTT.
  std::vector<int> process_large_rtts{50};
  int large_fleet = 300;
  int warm_sweeps = 3;  // fleet: warm sweeps per run (after the cold one)
  std::vector<int> rtts_ms{0, 50};
  std::vector<int> fleet_sizes{100, 500};
  std::vector<int> handshake_caps{128};
  int fanout = 64;                 // pdsh -f, parallel-ssh -p
  int asyncssh_concurrency = 128;  // connects in flight (a semaphore)
  int rss_poll_ms = 50;
  // Gap between warm diagnosis runs: the diagnosis repeats periodically, not back to back.
  int run_gap_ms = 20;
  std::vector<std::string> clients{"healer", "cli", "openssh", "asyncssh", "pdsh", "pssh"};
  std::vector<std::string> parts{"diagnosis", "fleet"};
  std::string python = "/usr/bin/python3";
  std::string peer_script = HEALER_BENCH_PEERS_DIR "/asyncssh_fleet.py";
  std::string healer_cli = HEALER_CLI_PATH;
  std::string markdown_out;
  LinkModel link = LinkModel::proxy;

  [[nodiscard]] bool wants_client(std::string_view name) const {
    return std::find(clients.begin(), clients.end(), name) != clients.end();
  }
  [[nodiscard]] bool wants(std::string_view part) const {
    return std::find(parts.begin(), parts.end(), part) != parts.end();
  }
};

/// Where and as whom every client connects.
struct Target {
  std::string host;
  std::uint16_t port = 0;
  std::string user;
  std::string key;
  std::string known_hosts;
};

// ---------------------------------------------------------------------------------------------
// Figures

double to_ms(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; }

/// One client's samples for one row (ms, or KiB for memory), or why there are none.
struct Figure {
  std::vector<double> samples;
  std::string failure;  ///< empty when the samples are valid
  std::string label;    ///< what the client did, when the column does not say it

  [[nodiscard]] bool valid() const { return failure.empty() && !samples.empty(); }
  [[nodiscard]] Summary summary() const { return summarize(samples); }
};

Figure failed_figure(std::string why) {
  Figure figure;
  figure.failure = std::move(why);
  return figure;
}

Figure not_measured() { return failed_figure("not measured"); }

enum class Unit { ms, kib };

/// One line of a result table: a case at one RTT (and fleet size), healer and its peers.
struct Row {
  int order = 0;
  std::string name;
  int rtt_ms = 0;
  std::size_t fleet_size = 0;  ///< 0 in the diagnosis table
  Unit unit = Unit::ms;
  Figure healer;
  std::vector<Figure> peers;     ///< one per peer column of its table
  std::optional<double> target;  ///< the goal for healer's median, in the row's unit
  std::string target_text;
};

/// Handshakes and errors of one case (the third table).
struct CaseCounts {
  std::string name;
  int rtt_ms = 0;
  std::size_t fleet_size = 0;
  std::string runs;                     ///< what was run, e.g. "11 runs"
  std::size_t expected_handshakes = 0;  ///< what a client that reuses perfectly would need
  LogCounts log;
  std::size_t client_failures = 0;
  std::string first_failure;
  std::string pool;  ///< healer's own counters, when it is healer
};

struct Report {
  std::vector<Row> diagnosis;
  std::vector<Row> fleet;
  std::vector<CaseCounts> counts;
  std::vector<std::string> notes;
  std::string asyncssh_version = "?";
};

// ---------------------------------------------------------------------------------------------
// healer: the pool and the executor

ssh::ConnectOptions connect_options(const Target& target) {
  ssh::ConnectOptions options;
  options.user = target.user;
  options.auth = ssh::AuthMethod::key_file;
  options.identity_file = target.key;
  options.known_hosts_file = target.known_hosts;
  options.host_key_policy = ssh::HostKeyPolicy::strict;
  return options;
}

pool::Server make_server(std::string id, const Target& target, const std::string& host) {
  pool::Server server;
  server.id = std::move(id);
  server.endpoint = ssh::Endpoint(host, target.port);
  server.connect = connect_options(target);
  return server;
}

/// Empty when every command ran and exited 0, else what went wrong first.
std::string first_failure(const std::vector<Result<ssh::CommandResult>>& results,
                          const std::vector<std::string>& commands) {
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (!results[i]) {
      return fmt::format("`{}`: {}", commands[i], results[i].error().message());
    }
    if (results[i]->exit_status.value_or(-1) != 0) {
      return fmt::format("`{}` ended with shell code {}", commands[i],
                         results[i]->shell_exit_code());
    }
  }
  return {};
}

/// The pool counters a case reports (a small copy of pool::PoolStats).
struct PoolCounters {
  std::uint64_t handshakes = 0;
  std::uint64_t handshakes_failed = 0;
  std::uint64_t acquisitions = 0;
  std::uint64_t refused = 0;
  std::uint64_t limit_lowered = 0;
  std::uint64_t exhausted = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t on_spare = 0;  ///< leases that took a spare channel (no open round trip)
  std::uint64_t spares_refused = 0;

  static PoolCounters of(const pool::PoolStats& stats) {
    PoolCounters counters;
    counters.handshakes = stats.handshakes_started;
    counters.handshakes_failed = stats.handshakes_failed;
    counters.acquisitions = stats.acquisitions;
    counters.refused = stats.channels_refused;
    counters.limit_lowered = stats.channel_limit_lowered;
    counters.exhausted = stats.exhausted;
    counters.timeouts = stats.timeouts;
    counters.on_spare = stats.leases_on_spare;
    counters.spares_refused = stats.spares_refused;
    return counters;
  }
  PoolCounters& operator+=(const PoolCounters& other) {
    handshakes += other.handshakes;
    handshakes_failed += other.handshakes_failed;
    acquisitions += other.acquisitions;
    refused += other.refused;
    limit_lowered += other.limit_lowered;
    exhausted += other.exhausted;
    timeouts += other.timeouts;
    on_spare += other.on_spare;
    spares_refused += other.spares_refused;
    return *this;
  }
  [[nodiscard]] std::string text() const {
    return fmt::format(
        "{} handshakes ({} failed), {} acquisitions ({} on a spare channel), {} refused channels "
        "({} spares), {} limit lowered, {} exhausted, {} timeouts",
        handshakes, handshakes_failed, acquisitions, on_spare, refused, spares_refused,
        limit_lowered, exhausted, timeouts);
  }
};

/// One diagnosis: wall time, what failed, and the pool's counters afterwards.
struct DiagnosisRun {
  double ms = 0;
  std::string failure;
  PoolCounters pool;
};

/// A cold diagnosis: a new Registry (so a handshake), the 7 commands at once, then a polite
/// shutdown outside the timed part.
asio::awaitable<DiagnosisRun> async_cold_diagnosis(pool::Server server,
                                                   std::vector<std::string> commands) {
  auto executor = co_await asio::this_coro::executor;
  DiagnosisRun run;
  const auto started = Clock::now();
  pool::Registry registry(executor, PoolConfig());
  const std::string id = server.id;
  registry.add_server(std::move(server));
  exec::Executor runner(registry);
  exec::RunOptions options;
  options.deadline = Deadline::after(kStepTimeout);
  auto results = co_await runner.async_run_all(id, commands, std::move(options));
  run.ms = ms_since(started);
  run.failure = first_failure(results, commands);
  run.pool = PoolCounters::of(registry.stats(id));
  co_await registry.async_shutdown(Deadline::after(5s));
  co_return run;
}

/// The 7 commands on an open pool: all at once (async_run_all), or one after another (the seed's
/// way: each waits for the previous one).
asio::awaitable<DiagnosisRun> async_warm_diagnosis(exec::Executor* runner, std::string id,
                                                   std::vector<std::string> commands,
                                                   bool sequential) {
  DiagnosisRun run;
  const auto started = Clock::now();
  std::vector<Result<ssh::CommandResult>> results;
  if (sequential) {
    for (const auto& command : commands) {
      exec::RunOptions options;
      options.deadline = Deadline::after(kStepTimeout);
      results.push_back(co_await runner->async_run(id, command, std::move(options)));
    }
  } else {
    exec::RunOptions options;
    options.deadline = Deadline::after(kStepTimeout);
    results = co_await runner->async_run_all(id, commands, std::move(options));
  }
  run.ms = ms_since(started);
  run.failure = first_failure(results, commands);
  run.pool = PoolCounters::of(runner->registry().stats(id));
  co_return run;
}

// run_async needs a value.
asio::awaitable<int> async_shutdown(pool::Registry* registry) {
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return 0;
}

// ---------------------------------------------------------------------------------------------
// healer fleet sweep (the `fleet-child` mode: a fresh process per run)

/// One command on every server at once; lives until the last of them finished.
struct Sweep {
  explicit Sweep(const asio::any_io_executor& executor)
      : all_done(executor, Clock::time_point::max()) {}

  Clock::time_point started = Clock::now();
  std::size_t pending = 0;
  std::size_t failures = 0;
  std::string first_failure;
  std::vector<double> finished_ms;  // completion times since `started`
  std::vector<double> queue_ms;     // the pool's wait (for a session: handshake included)
  std::vector<double> open_ms;      // channel open round trip
  std::vector<double> run_ms;       // exec request until the channel closed
  asio::steady_timer all_done;
};

asio::awaitable<void> async_sweep_member(exec::Executor* runner, std::shared_ptr<Sweep> sweep,
                                         std::string id, std::string command) {
  exec::RunOptions options;
  options.deadline = Deadline::after(kSweepTimeout);
  auto result = co_await runner->async_run(id, std::move(command), std::move(options));
  sweep->finished_ms.push_back(ms_since(sweep->started));
  std::string failure;
  if (!result) {
    failure = fmt::format("{}: {}", id, result.error().message());
  } else if (result->exit_status.value_or(-1) != 0) {
    failure = fmt::format("{}: shell code {}", id, result->shell_exit_code());
  } else {
    sweep->queue_ms.push_back(to_ms(result->timing.queue));
    sweep->open_ms.push_back(to_ms(result->timing.open));
    sweep->run_ms.push_back(to_ms(result->timing.run));
  }
  if (!failure.empty()) {
    ++sweep->failures;
    if (sweep->first_failure.empty()) {
      sweep->first_failure = std::move(failure);
    }
  }
  if (--sweep->pending == 0) {
    sweep->all_done.cancel();
  }
}

asio::awaitable<nlohmann::json> async_sweep(exec::Executor* runner, std::vector<std::string> ids,
                                            std::string command) {
  auto executor = co_await asio::this_coro::executor;
  auto sweep = std::make_shared<Sweep>(executor);
  sweep->pending = ids.size();
  const auto machine_before = machine_cpu();
  const double cpu_before = rusage_cpu_ms(RUSAGE_SELF);
  sweep->started = Clock::now();
  for (const auto& id : ids) {
    asio::co_spawn(executor, async_sweep_member(runner, sweep, id, command), asio::detached);
  }
  while (sweep->pending > 0) {
    co_await sweep->all_done.async_wait(kNoThrow);
  }
  nlohmann::json result;
  result["ms"] = ms_since(sweep->started);
  result["cpu_ms"] = rusage_cpu_ms(RUSAGE_SELF) - cpu_before;
  const auto machine = machine_cpu() - machine_before;
  result["machine_busy_ms"] = machine.busy();
  result["machine_user_ms"] = machine.user;
  result["machine_system_ms"] = machine.system;
  result["machine_softirq_ms"] = machine.softirq;
  result["machine_steal_ms"] = machine.steal;
  result["failures"] = sweep->failures;
  result["first_failure"] = sweep->first_failure;
  const auto finished = summarize(sweep->finished_ms);
  result["finished_p50_ms"] = finished.median;
  result["finished_p90_ms"] = finished.p90;
  result["queue_p50_ms"] = median_of(sweep->queue_ms);
  result["open_p50_ms"] = median_of(sweep->open_ms);
  result["run_p50_ms"] = median_of(sweep->run_ms);
  co_return result;
}

struct FleetChildArgs {
  std::string hosts_file;
  Target target;
  std::string command{kFleetCommand};
  int warm_sweeps = 3;
  std::size_t handshakes = 64;
};

nlohmann::json stats_json(const pool::PoolStats& stats) {
  const double handshakes =
      static_cast<double>(std::max<std::uint64_t>(1, stats.handshake_time.total));
  return {
      {"handshakes_started", stats.handshakes_started},
      {"handshakes_failed", stats.handshakes_failed},
      {"sessions_opened", stats.sessions_opened},
      {"acquisitions", stats.acquisitions},
      {"served_by_existing", stats.served_by_existing},
      {"channels_refused", stats.channels_refused},
      {"channel_limit_lowered", stats.channel_limit_lowered},
      {"exhausted", stats.exhausted},
      {"timeouts", stats.timeouts},
      {"health_checks", stats.health_checks},
      {"handshake_mean_ms", static_cast<double>(stats.handshake_time.sum_us) / handshakes / 1000},
      {"summary", PoolCounters::of(stats).text()}};
}

asio::awaitable<nlohmann::json> async_fleet_run(FleetChildArgs args,
                                                std::vector<std::string> hosts) {
  auto executor = co_await asio::this_coro::executor;
  nlohmann::json report;
  PoolConfig config;
  config.max_handshakes_total = args.handshakes;
  config.max_concurrent_total = std::max<std::size_t>(config.max_concurrent_total, hosts.size());
  pool::Registry registry(executor, config);
  for (const auto& host : hosts) {
    registry.add_server(make_server(host, args.target, host));
  }
  exec::Executor runner(registry);
  report["cold"] = co_await async_sweep(&runner, hosts, args.command);
  report["after_cold"] = stats_json(registry.total_stats());
  report["warm"] = nlohmann::json::array();
  for (int sweep = 0; sweep < args.warm_sweeps; ++sweep) {
    report["warm"].push_back(co_await async_sweep(&runner, hosts, args.command));
  }
  report["vm_hwm_kib"] = status_kib("/proc/self/status", "VmHWM").value_or(0);
  report["stats"] = stats_json(registry.total_stats());
  co_await registry.async_shutdown(Deadline::after(10s));
  co_return report;
}

int fleet_child_main(const FleetChildArgs& args) {
  nlohmann::json report;
  try {
    const auto hosts = read_lines(args.hosts_file);
    report["vm_rss_start_kib"] = status_kib("/proc/self/status", "VmRSS").value_or(0);
    asio::io_context io;
    auto run = test::run_async(io, async_fleet_run(args, hosts), std::chrono::seconds(900));
    report.update(run);
    report["hosts"] = hosts.size();
  } catch (const std::exception& error) {
    report["error"] = error.what();
  }
  std::cout << report.dump() << std::endl;
  return report.contains("error") ? 1 : 0;
}

std::vector<std::string> asyncssh_argv(const Settings& settings, const Target& target,
                                       std::string_view mode) {
  return {settings.python, settings.peer_script,
          "--mode",        std::string(mode),
          "--port",        std::to_string(target.port),
          "--user",        target.user,
          "--key",         target.key,
          "--known-hosts", target.known_hosts};
}

// ---------------------------------------------------------------------------------------------
// Part 1: the diagnosis on one server

Row make_row(int order, std::string name, int rtt_ms, std::size_t peer_columns) {
  Row row;
  row.order = order;
  row.name = std::move(name);
  row.rtt_ms = rtt_ms;
  row.healer = not_measured();
  row.peers.assign(peer_columns, not_measured());
  return row;
}

// Diagnosis peer columns.
constexpr std::size_t kOpenSsh = 0;
constexpr std::size_t kAsyncSshDiag = 1;

void run_diagnosis(const Settings& settings, int rtt_ms, Report& report) {
  test::SshdFixture::Options sshd_options;
  sshd_options.max_sessions = kMaxSessions;
  sshd_options.max_startups = "300:30:1000";
  sshd_options.log_level = "VERBOSE";  // the lowest level that logs every counted line
  add_link(sshd_options, settings.link, std::chrono::milliseconds(rtt_ms));
  test::SshdFixture sshd(sshd_options);
  sshd.start();
  progress(fmt::format("diagnosis, RTT {} ms: sshd on port {} (client port {})", rtt_ms,
                       sshd.sshd_port(), sshd.port()));

  Target target;
  target.host = sshd.host();
  target.port = sshd.port();
  target.user = sshd.user();
  target.key = sshd.client_key_path().string();
  target.known_hosts = sshd.known_hosts_path().string();
  const auto commands = diagnosis_commands();
  const auto server = make_server("diagnosis", target, target.host);
  const auto runs = static_cast<std::size_t>(settings.runs);
  const double rtt = static_cast<double>(rtt_ms);
  asio::io_context io;

  auto cold = make_row(1, "cold: connect + the 7 checks at once", rtt_ms, 2);
  auto warm = make_row(2, "warm: the 7 checks at once", rtt_ms, 2);
  auto sequential = make_row(3, "warm: the 7 checks one after another (the seed's way)", rtt_ms, 2);
  auto cli = make_row(4, "`healer exec` one-shot: process start + connect + 7 at once", rtt_ms, 2);
  if (rtt_ms > 0) {
    cold.target = 350;
    cold.target_text = "<= 350 ms";
    warm.target = 115;
    warm.target_text = "<= 115 ms (2.3 RTT)";
  }
  const auto add_counts = [&](std::string name, const LogWindow& window, std::string run_text,
                              std::size_t expected, std::size_t failures, std::string failure,
                              std::string pool) {
    settle(sshd);
    CaseCounts counts;
    counts.name = std::move(name);
    counts.rtt_ms = rtt_ms;
    counts.runs = std::move(run_text);
    counts.expected_handshakes = expected;
    counts.log = window.counts();
    counts.client_failures = failures;
    counts.first_failure = std::move(failure);
    counts.pool = std::move(pool);
    report.counts.push_back(std::move(counts));
  };

  if (settings.wants_client("healer")) {
    // Cold: a new Registry per run.
    settle(sshd);
    progress("  healer cold (new Registry per run)");
    LogWindow window(sshd);
    Figure figure;
    PoolCounters total;
    std::size_t failures = 0;
    std::string failure;
    for (std::size_t run = 0; run <= runs; ++run) {
      settle(sshd);
      auto outcome = test::run_async(io, async_cold_diagnosis(server, commands), 120s);
      total += outcome.pool;
      if (!outcome.failure.empty()) {
        ++failures;
        failure = outcome.failure;
        continue;
      }
      if (run > 0) {
        figure.samples.push_back(outcome.ms);
      }
    }
    cold.healer = failures > 0 && figure.samples.empty() ? failed_figure(failure) : figure;
    add_counts("healer cold", window, fmt::format("{} runs", runs + 1), runs + 1, failures, failure,
               total.text());

    // Warm: one Registry; 7 at once, then 7 one after another.
    settle(sshd);
    progress("  healer warm, 7 at once and 7 one after another");
    for (const bool one_by_one : {false, true}) {
      LogWindow warm_window(sshd);
      Figure warm_figure;
      std::size_t warm_failures = 0;
      std::string warm_failure;
      pool::Registry registry(io.get_executor(), PoolConfig());
      registry.add_server(server);
      exec::Executor runner(registry);
      for (std::size_t run = 0; run <= runs; ++run) {
        auto outcome = test::run_async(
            io, async_warm_diagnosis(&runner, server.id, commands, one_by_one), 120s);
        if (!outcome.failure.empty()) {
          ++warm_failures;
          warm_failure = outcome.failure;
        } else if (run > 0) {
          warm_figure.samples.push_back(outcome.ms);
        }
        io.restart();
        io.run_for(std::chrono::milliseconds(settings.run_gap_ms));  // pumps read the closes
      }
      const auto stats = PoolCounters::of(registry.stats(server.id));
      test::run_async(io, async_shutdown(&registry), 30s);
      (one_by_one ? sequential : warm).healer = warm_failures > 0 && warm_figure.samples.empty()
                                                    ? failed_figure(warm_failure)
                                                    : warm_figure;
      add_counts(one_by_one ? "healer warm, one after another" : "healer warm, 7 at once",
                 warm_window, fmt::format("1 pool, {} runs", runs + 1), 1, warm_failures,
                 warm_failure, stats.text());
    }
  }

  if (settings.wants_client("cli") && !settings.healer_cli.empty()) {
    settle(sshd);
    progress("  healer exec CLI one-shot");
    LogWindow window(sshd);
    std::vector<std::string> argv{settings.healer_cli,
                                  "exec",
                                  "--host",
                                  target.host,
                                  "--port",
                                  std::to_string(target.port),
                                  "--user",
                                  target.user,
                                  "--identity",
                                  target.key,
                                  "--known-hosts",
                                  target.known_hosts,
                                  "--"};
    for (std::size_t i = 0; i < commands.size(); ++i) {
      if (i > 0) {
        argv.emplace_back(":::");
      }
      argv.push_back(commands[i]);
    }
    test::TempDir dir("hpb-");
    Figure figure;
    std::size_t failures = 0;
    for (std::size_t run = 0; run <= runs; ++run) {
      settle(sshd);
      const auto elapsed = time_process(argv, dir.path() / "cli.log");
      if (!elapsed) {
        ++failures;
      } else if (run > 0) {
        figure.samples.push_back(*elapsed);
      }
    }
    const auto failure = failures > 0 ? trimmed_tail(read_text(dir.path() / "cli.log")) : "";
    cli.healer = figure.samples.empty() ? failed_figure(failure) : figure;
    add_counts("`healer exec` CLI", window, fmt::format("{} runs", runs + 1), runs + 1, failures,
               failure, "");
  }

  if (settings.wants_client("openssh")) {
    test::TempDir control_dir("hpb-");  // short: a unix socket path has 108 bytes at most
    OpenSsh openssh(sshd, control_dir.path());

    // The seed's "before": a new ssh process (and connection) per check, one after another.
    settle(sshd);
    progress("  OpenSSH: a new ssh per check, one after another");
    LogWindow window(sshd);
    Figure figure;
    figure.label = "new `ssh` per check, in turn";
    std::size_t failures = 0;
    for (std::size_t run = 0; run <= runs; ++run) {
      settle(sshd);
      const auto started = Clock::now();
      bool ok = true;
      for (const auto& command : commands) {
        ok = time_process(openssh.new_connection_argv(command), openssh.log()).has_value() && ok;
      }
      const double elapsed = ms_since(started);
      if (!ok) {
        ++failures;
      } else if (run > 0) {
        figure.samples.push_back(elapsed);
      }
    }
    cold.peers[kOpenSsh] = figure.samples.empty() ? failed_figure(openssh.log_tail()) : figure;
    add_counts("OpenSSH, new ssh per check", window, fmt::format("{} runs x 7 processes", runs + 1),
               (runs + 1) * commands.size(), failures, failures > 0 ? openssh.log_tail() : "", "");

    // ControlMaster: one master, 7 mux clients started at once per run.
    settle(sshd);
    progress("  OpenSSH: ControlMaster, 7 mux clients at once");
    LogWindow master_window(sshd);
    Figure mux;
    mux.label = "ControlMaster, 7 mux clients at once";
    std::size_t mux_failures = 0;
    const auto control = openssh.control_path("mux");
    if (!openssh.start_master(control)) {
      mux = failed_figure("master failed: " + openssh.log_tail());
    } else {
      std::vector<std::vector<std::string>> batch;
      for (const auto& command : commands) {
        batch.push_back(openssh.mux_argv(control, command));
      }
      for (std::size_t run = 0; run <= runs; ++run) {
        const auto outcome = run_parallel(batch, openssh.log());
        if (outcome.failures > 0) {
          ++mux_failures;
        } else if (run > 0) {
          mux.samples.push_back(outcome.wall_ms);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(settings.run_gap_ms));
      }
      openssh.stop_all_masters();
    }
    warm.peers[kOpenSsh] =
        mux.samples.empty() && mux.failure.empty() ? failed_figure(openssh.log_tail()) : mux;
    add_counts("OpenSSH ControlMaster, 7 mux clients", master_window,
               fmt::format("1 master, {} runs", runs + 1), 1, mux_failures,
               mux_failures > 0 ? openssh.log_tail() : "", "");
  }

  if (settings.wants_client("asyncssh")) {
    settle(sshd);
    progress("  asyncssh: connect + gather, and gather on one connection");
    LogWindow window(sshd);
    auto argv = asyncssh_argv(settings, target, "diagnosis");
    argv.insert(argv.end(), {"--host", target.host, "--runs", std::to_string(runs), "--gap-ms",
                             std::to_string(settings.run_gap_ms)});
    for (const auto& command : commands) {
      argv.insert(argv.end(), {"--command", command});
    }
    const auto result = run_json_command(argv, "asyncssh peer");
    std::size_t failures = 0;
    std::string failure;
    if (result.contains("error")) {
      failure = result["error"].get<std::string>();
      cold.peers[kAsyncSshDiag] = failed_figure(failure);
      warm.peers[kAsyncSshDiag] = failed_figure(failure);
      failures = 1;
    } else {
      report.asyncssh_version = result["asyncssh_version"].get<std::string>();
      cold.peers[kAsyncSshDiag].failure.clear();
      cold.peers[kAsyncSshDiag].samples = result["cold_ms"].get<std::vector<double>>();
      warm.peers[kAsyncSshDiag].failure.clear();
      warm.peers[kAsyncSshDiag].samples = result["warm_ms"].get<std::vector<double>>();
      failures = result["failures"].get<std::size_t>();
      failure = result["first_error"].get<std::string>();
    }
    add_counts("asyncssh, cold runs + 1 warm connection", window,
               fmt::format("{} connections, {} gathers", runs + 2, 2 * runs + 2), runs + 2,
               failures, failure, "");
  }

  if (rtt_ms > 0) {
    report.notes.push_back(fmt::format(
        "Diagnosis at RTT {} ms: the protocol floor of a warm batch is 2 RTT = {:.0f} ms (channel "
        "open, then exec); healer warm at once = {:.2f} RTT, cold = {:.2f} RTT.",
        rtt_ms, 2 * rtt, warm.healer.valid() ? warm.healer.summary().median / rtt : 0.0,
        cold.healer.valid() ? cold.healer.summary().median / rtt : 0.0));
  }
  for (auto* row : {&cold, &warm, &sequential, &cli}) {
    report.diagnosis.push_back(std::move(*row));
  }
  progress(fmt::format("diagnosis, RTT {} ms done", rtt_ms));
}

// ---------------------------------------------------------------------------------------------
// Part 2: the fleet sweep

// Fleet peer columns.
constexpr std::size_t kPdsh = 0;
constexpr std::size_t kPssh = 1;
constexpr std::size_t kAsyncSshFleet = 2;

/// The samples of one fleet client at one N.
struct FleetFigures {
  Figure cold;
  Figure warm;
  Figure rss_kib;
};

FleetFigures empty_fleet_figures() { return {}; }

/// A healer or asyncssh run report -> samples; returns the failure count.
std::size_t add_run(const nlohmann::json& run, FleetFigures& figures, std::string& failure,
                    std::vector<double>& cold_cpu, std::vector<double>& cold_busy) {
  figures.rss_kib.samples.push_back(run["vm_hwm_kib"].get<double>());
  std::size_t failures = 0;
  if (run.contains("cold") && run["cold"].is_object()) {  // healer
    figures.cold.samples.push_back(run["cold"]["ms"].get<double>());
    cold_cpu.push_back(run["cold"]["cpu_ms"].get<double>());
    cold_busy.push_back(run["cold"]["machine_busy_ms"].get<double>());
    failures += run["cold"]["failures"].get<std::size_t>();
    if (failure.empty()) {
      failure = run["cold"]["first_failure"].get<std::string>();
    }
    for (const auto& sweep : run["warm"]) {
      figures.warm.samples.push_back(sweep["ms"].get<double>());
      failures += sweep["failures"].get<std::size_t>();
      if (failure.empty()) {
        failure = sweep["first_failure"].get<std::string>();
      }
    }
  } else {  // asyncssh
    figures.cold.samples.push_back(run["cold_ms"].get<double>());
    cold_cpu.push_back(run["cold_cpu_ms"].get<double>());
    cold_busy.push_back(run["cold_machine_busy_ms"].get<double>());
    for (const auto& ms : run["warm_ms"]) {
      figures.warm.samples.push_back(ms.get<double>());
    }
    failures += run["failures"].get<std::size_t>();
    if (failure.empty()) {
      failure = run["first_error"].get<std::string>();
    }
  }
  return failures;
}

/// One run of pdsh or parallel-ssh: wall time, peak RSS of its process tree, CPU.
struct ProcessSweep {
  double ms = 0;
  int exit_code = 0;
  long peak_rss_kib = 0;
  std::size_t peak_processes = 0;
  double cpu_ms = 0;
  double machine_busy_ms = 0;
  std::string output;
};

ProcessSweep run_process_sweep(const std::vector<std::string>& argv,
                               const std::vector<std::string>& env,
                               const std::filesystem::path& log, const Settings& settings) {
  std::filesystem::remove(log);
  ProcessSweep sweep;
  const double cpu_before = rusage_cpu_ms(RUSAGE_CHILDREN);
  const double busy_before = machine_busy_ms();
  const auto started = Clock::now();
  const pid_t pid = spawn_process(argv, log, env);
  TreeRssSampler sampler(pid, std::chrono::milliseconds(settings.rss_poll_ms));
  sweep.exit_code = wait_process(pid);
  sweep.ms = ms_since(started);
  sampler.stop();
  sweep.machine_busy_ms = machine_busy_ms() - busy_before;
  sweep.cpu_ms = rusage_cpu_ms(RUSAGE_CHILDREN) - cpu_before;
  sweep.peak_rss_kib = sampler.peak_kib();
  sweep.peak_processes = sampler.peak_processes();
  sweep.output = read_text(log);
  return sweep;
}

/// Where the machine's CPU went during healer's sweeps (medians over sweeps).
struct BusySplit {
  std::vector<double> user;
  std::vector<double> system;
  std::vector<double> softirq;
  std::vector<double> steal;

  void add(const nlohmann::json& sweep) {
    user.push_back(sweep["machine_user_ms"].get<double>());
    system.push_back(sweep["machine_system_ms"].get<double>());
    softirq.push_back(sweep["machine_softirq_ms"].get<double>());
    steal.push_back(sweep["machine_steal_ms"].get<double>());
  }
  [[nodiscard]] std::string text() const {
    return fmt::format("user {}, system {}, irq+softirq {}, steal {}", format_ms(median_of(user)),
                       format_ms(median_of(system)), format_ms(median_of(softirq)),
                       format_ms(median_of(steal)));
  }
};

void run_fleet(const Settings& settings, int rtt_ms, Report& report) {
  const std::size_t largest = static_cast<std::size_t>(
      *std::max_element(settings.fleet_sizes.begin(), settings.fleet_sizes.end()));
  test::SshdFixture::Options sshd_options;
  sshd_options.max_sessions = kMaxSessions;
  // MaxStartups limits unauthenticated connections only; every client below keeps up to 128
  // handshakes in flight.
  sshd_options.max_startups = "1000:30:1000";
  sshd_options.log_level = "VERBOSE";
  // On the packet-level link the fleet's addresses are the link's (Fleet); its RTT is the link's.
  add_link(sshd_options, settings.link, std::chrono::milliseconds(rtt_ms));
  test::SshdFixture sshd(sshd_options);
  sshd.start();
  test::TempDir dir("hpb-fleet-");
  const auto rtt = std::chrono::milliseconds(rtt_ms);
  Fleet fleet(sshd, largest, rtt, dir.path());
  progress(fmt::format("fleet, RTT {} ms ({} link): sshd on {}:{}, {} addresses from {} on port {}",
                       rtt_ms, link_model_name(settings.link), sshd.host(), sshd.sshd_port(),
                       largest, fleet.address(0), fleet.port()));

  Target target;
  target.port = fleet.port();
  target.user = sshd.user();
  target.key = sshd.client_key_path().string();
  target.known_hosts = fleet.known_hosts().string();
  const auto self = std::filesystem::read_symlink("/proc/self/exe").string();

  const auto healer_argv = [&](std::size_t n, std::size_t cap, int warm_sweeps) {
    return std::vector<std::string>{self,
                                    "fleet-child",
                                    "--hosts-file",
                                    fleet.hosts_file(n).string(),
                                    "--port",
                                    std::to_string(target.port),
                                    "--user",
                                    target.user,
                                    "--key",
                                    target.key,
                                    "--known-hosts",
                                    target.known_hosts,
                                    "--warm-sweeps",
                                    std::to_string(warm_sweeps),
                                    "--handshakes",
                                    std::to_string(cap)};
  };

  // Untimed: every proxy, sshd and the page cache see one full sweep before anything is timed.
  if (settings.wants_client("healer")) {
    progress(fmt::format("  untimed warm-up: healer over all {} addresses", largest));
    const auto warm_up = run_json_command(healer_argv(largest, 128, 0), "healer fleet-child");
    if (warm_up.contains("error")) {
      report.notes.push_back(fmt::format("Fleet warm-up at RTT {} ms failed: {}", rtt_ms,
                                         warm_up["error"].get<std::string>()));
    }
    settle(sshd, 10s);
  }

  for (const int size : settings.fleet_sizes) {
    const auto n = static_cast<std::size_t>(size);
    const bool large = size >= settings.large_fleet;
    const int runs = large ? settings.large_runs : settings.fleet_runs;
    const int process_runs = large ? settings.process_large_runs : settings.process_runs;
    std::vector<FleetFigures> columns(3, empty_fleet_figures());
    FleetFigures best_healer = empty_fleet_figures();
    std::size_t best_cap = 0;
    const auto add_counts = [&](std::string name, const LogWindow& window, int case_runs,
                                std::size_t failures, std::string failure, std::string pool) {
      settle(sshd, 10s);
      CaseCounts counts;
      counts.name = std::move(name);
      counts.rtt_ms = rtt_ms;
      counts.fleet_size = n;
      counts.runs = fmt::format("{} run{}", case_runs, case_runs == 1 ? "" : "s");
      counts.expected_handshakes = n * static_cast<std::size_t>(case_runs);
      counts.log = window.counts();
      counts.client_failures = failures;
      counts.first_failure = std::move(failure);
      counts.pool = std::move(pool);
      if (counts.log.connections > 0 && settings.link == LinkModel::proxy) {
        const auto connections = static_cast<double>(counts.log.connections);
        report.notes.push_back(fmt::format(
            "Fleet RTT {} ms, N={}, {}: the {} DelayProxies (this process) used {} of CPU per "
            "connection (handshake + {} command(s)).",
            rtt_ms, n, counts.name, largest, format_ms(counts.log.bench_cpu_ms / connections),
            counts.log.sessions / counts.log.connections));
      }
      report.counts.push_back(std::move(counts));
    };

    if (settings.wants_client("healer")) {
      for (const int cap_value : settings.handshake_caps) {
        const auto cap = static_cast<std::size_t>(cap_value);
        progress(fmt::format("  N={} healer, max_handshakes_total {}: {} runs", n, cap, runs));
        LogWindow window(sshd);
        FleetFigures figures = empty_fleet_figures();
        std::vector<double> cold_cpu;
        std::vector<double> cold_busy;
        std::vector<double> handshake_ms;
        std::vector<double> queue_ms;
        std::vector<double> warm_cpu;
        std::vector<double> warm_busy;
        BusySplit cold_split;
        BusySplit warm_split;
        std::size_t failures = 0;
        std::string failure;
        std::string pool;
        for (int run = 0; run < runs; ++run) {
          settle(sshd, 10s);
          const auto result =
              run_json_command(healer_argv(n, cap, settings.warm_sweeps), "healer fleet-child");
          if (result.contains("error")) {
            figures.cold = failed_figure(result["error"].get<std::string>());
            ++failures;
            failure = result["error"].get<std::string>();
            break;
          }
          failures += add_run(result, figures, failure, cold_cpu, cold_busy);
          handshake_ms.push_back(result["after_cold"]["handshake_mean_ms"].get<double>());
          queue_ms.push_back(result["cold"]["queue_p50_ms"].get<double>());
          cold_split.add(result["cold"]);
          for (const auto& sweep : result["warm"]) {
            warm_cpu.push_back(sweep["cpu_ms"].get<double>());
            warm_busy.push_back(sweep["machine_busy_ms"].get<double>());
            warm_split.add(sweep);
          }
          pool = result["stats"]["summary"].get<std::string>();
        }
        add_counts(fmt::format("healer (max_handshakes_total {})", cap), window, runs, failures,
                   failure, pool + " (last run)");
        if (figures.cold.valid()) {
          report.notes.push_back(fmt::format(
              "Fleet RTT {} ms, N={}, healer max_handshakes_total {}: cold {} (p90 {}), warm {} "
              "(p90 {}); cold: mean handshake {}, median wait for a session {}, client CPU {}, "
              "machine CPU busy {} (of {} available: {}); warm: client CPU {}, machine busy {} "
              "({}); peak RSS {:.1f} MiB.",
              rtt_ms, n, cap, format_ms(figures.cold.summary().median),
              format_ms(figures.cold.summary().p90), format_ms(figures.warm.summary().median),
              format_ms(figures.warm.summary().p90), format_ms(median_of(handshake_ms)),
              format_ms(median_of(queue_ms)), format_ms(median_of(cold_cpu)),
              format_ms(median_of(cold_busy)),
              format_ms(figures.cold.summary().median *
                        static_cast<double>(std::thread::hardware_concurrency())),
              cold_split.text(), format_ms(median_of(warm_cpu)), format_ms(median_of(warm_busy)),
              warm_split.text(), figures.rss_kib.summary().median / 1024.0));
        }
        if (figures.cold.valid() &&
            (!best_healer.cold.valid() ||
             figures.cold.summary().median < best_healer.cold.summary().median)) {
          best_healer = figures;
          best_cap = cap;
        } else if (!best_healer.cold.valid() && best_cap == 0) {
          best_healer = figures;
        }
      }
    }

    if (settings.wants_client("asyncssh")) {
      progress(fmt::format("  N={} asyncssh: {} runs", n, runs));
      LogWindow window(sshd);
      FleetFigures& figures = columns[kAsyncSshFleet];
      std::vector<double> cold_cpu;
      std::vector<double> cold_busy;
      std::size_t failures = 0;
      std::string failure;
      for (int run = 0; run < runs; ++run) {
        settle(sshd, 10s);
        auto argv = asyncssh_argv(settings, target, "fleet");
        argv.insert(argv.end(), {"--hosts-file", fleet.hosts_file(n).string(), "--command",
                                 std::string(kFleetCommand), "--warm-sweeps",
                                 std::to_string(settings.warm_sweeps), "--concurrency",
                                 std::to_string(settings.asyncssh_concurrency)});
        const auto result = run_json_command(argv, "asyncssh peer");
        if (result.contains("error")) {
          figures.cold = failed_figure(result["error"].get<std::string>());
          ++failures;
          failure = result["error"].get<std::string>();
          break;
        }
        report.asyncssh_version = result["asyncssh_version"].get<std::string>();
        failures += add_run(result, figures, failure, cold_cpu, cold_busy);
      }
      add_counts("asyncssh", window, runs, failures, failure, "");
      if (figures.cold.valid()) {
        report.notes.push_back(fmt::format(
            "Fleet RTT {} ms, N={}, asyncssh (semaphore {}): cold client CPU {}, machine busy {}.",
            rtt_ms, n, settings.asyncssh_concurrency, format_ms(median_of(cold_cpu)),
            format_ms(median_of(cold_busy))));
      }
    }

    for (const std::size_t column : {kPdsh, kPssh}) {
      const bool is_pdsh = column == kPdsh;
      if (!settings.wants_client(is_pdsh ? "pdsh" : "pssh")) {
        continue;
      }
      const auto& large_rtts = settings.process_large_rtts;
      if (large && !large_rtts.empty() &&
          std::find(large_rtts.begin(), large_rtts.end(), rtt_ms) == large_rtts.end()) {
        continue;  // see Settings::process_large_rtts
      }
      const std::string name = is_pdsh ? "pdsh" : "parallel-ssh";
      progress(
          fmt::format("  N={} {} (fanout {}): {} runs", n, name, settings.fanout, process_runs));
      LogWindow window(sshd);
      FleetFigures& figures = columns[column];
      std::vector<double> cpu;
      std::vector<double> busy;
      std::size_t failures = 0;
      std::string failure;
      const auto hosts = fleet.hosts_file(n).string();
      std::vector<std::string> argv;
      std::vector<std::string> env;
      if (is_pdsh) {
        argv = {
            "pdsh", "-R",        "ssh", "-f",        std::to_string(settings.fanout), "-t", "120",
            "-l",   target.user, "-w",  "^" + hosts, std::string(kFleetCommand)};
        env = {"PDSH_SSH_ARGS=-F " + fleet.ssh_config().string() + " -l%u %h"};
      } else {
        argv = {"parallel-ssh",
                "-h",
                hosts,
                "-p",
                std::to_string(settings.fanout),
                "-t",
                "120",
                "-l",
                target.user,
                "-i",
                "-x",
                "-F " + fleet.ssh_config().string(),
                std::string(kFleetCommand)};
      }
      for (int run = 0; run < process_runs; ++run) {
        settle(sshd, 10s);
        const auto sweep = run_process_sweep(argv, env, dir.path() / (name + ".log"), settings);
        // Success = the host's output arrived: pdsh prefixes each line with "host: ",
        // parallel-ssh -i prints "[SUCCESS] host" before each host's output.
        const std::size_t ok = is_pdsh ? count_occurrences(sweep.output, ": MemTotal:")
                                       : count_occurrences(sweep.output, "[SUCCESS]");
        const std::size_t missing = ok >= n ? 0 : n - ok;
        failures += missing;
        if (missing > 0 && failure.empty()) {
          failure = fmt::format("exit {}: {}", sweep.exit_code, trimmed_tail(sweep.output));
        }
        figures.cold.samples.push_back(sweep.ms);
        figures.rss_kib.samples.push_back(static_cast<double>(sweep.peak_rss_kib));
        cpu.push_back(sweep.cpu_ms);
        busy.push_back(sweep.machine_busy_ms);
        report.notes.push_back(fmt::format(
            "Fleet RTT {} ms, N={}, {} run {}: {} in {}, exit {}, {} hosts answered, peak {} "
            "processes, client CPU {} (pdsh/parallel-ssh and every ssh), machine busy {}.",
            rtt_ms, n, name, run + 1, format_ms(sweep.ms), name, sweep.exit_code, ok,
            sweep.peak_processes, format_ms(sweep.cpu_ms), format_ms(sweep.machine_busy_ms)));
      }
      add_counts(fmt::format("{} (fanout {})", name, settings.fanout), window, process_runs,
                 failures, failure, "");
    }

    auto cold = make_row(1, "cold sweep (connect + run)", rtt_ms, 3);
    auto warm = make_row(2, "warm sweep (open connections)", rtt_ms, 3);
    auto rss = make_row(3, "peak client RSS (MiB)", rtt_ms, 3);
    for (auto* row : {&cold, &warm, &rss}) {
      row->fleet_size = n;
    }
    rss.unit = Unit::kib;
    if (n == 500) {
      cold.target = 4000;
      cold.target_text = "<= 4 s";
      warm.target = 500;
      warm.target_text = "<= 0.5 s";
    }
    cold.healer = best_healer.cold;
    warm.healer = best_healer.warm;
    rss.healer = best_healer.rss_kib;
    if (best_cap > 0) {
      cold.healer.label = fmt::format("cap {}", best_cap);
    }
    for (std::size_t column = 0; column < 3; ++column) {
      cold.peers[column] = columns[column].cold;
      warm.peers[column] = column == kAsyncSshFleet ? columns[column].warm : not_measured();
      rss.peers[column] = columns[column].rss_kib;
    }
    for (auto* row : {&cold, &warm, &rss}) {
      report.fleet.push_back(std::move(*row));
    }
  }
  progress(fmt::format("fleet, RTT {} ms done", rtt_ms));
}

// ---------------------------------------------------------------------------------------------
// The tables

std::string cell(const Figure& figure, const Row& row) {
  if (!figure.valid()) {
    return figure.failure.empty() || figure.failure == "not measured"
               ? "—"
               : "FAILED: " + trimmed_tail(figure.failure);
  }
  const auto summary = figure.summary();
  std::string text;
  if (!figure.label.empty()) {
    text = figure.label + ": ";
  }
  if (row.unit == Unit::kib) {
    text += fmt::format("{:.1f} (p90 {:.1f})", summary.median / 1024.0, summary.p90 / 1024.0);
  } else {
    text += fmt::format("{} (p90 {})", format_ms(summary.median), format_ms(summary.p90));
    if (row.rtt_ms > 0 && row.fleet_size == 0) {
      text += fmt::format(" = {:.2f} RTT", summary.median / static_cast<double>(row.rtt_ms));
    }
  }
  if (row.fleet_size > 0) {
    text += fmt::format(", n={}", summary.count);
  }
  return text;
}

std::string ratio(const Figure& healer, const Figure& peer) {
  if (!healer.valid() || !peer.valid() || peer.summary().median <= 0) {
    return "—";
  }
  return fmt::format("{:.2f}", healer.summary().median / peer.summary().median);
}

std::string verdict(const Row& row) {
  if (!row.target || !row.healer.valid()) {
    return "—";
  }
  const double median = row.healer.summary().median;
  if (median <= *row.target) {
    return fmt::format("yes ({:.0f}% of target)", 100.0 * median / *row.target);
  }
  return fmt::format("**no** (+{:.0f}%)", 100.0 * (median - *row.target) / *row.target);
}

std::string render_table(const std::vector<Row>& rows, const std::vector<std::string>& peers,
                         bool fleet) {
  std::string header = fleet ? "| sweep | RTT | N | healer |" : "| case | RTT | healer |";
  std::string rule = fleet ? "|---|---|---|---|" : "|---|---|---|";
  for (const auto& peer : peers) {
    header += " " + peer + " |";
    rule += "---|";
  }
  header += " target (healer) | met? |";
  rule += "---|---|";
  for (const auto& peer : peers) {
    header += " healer/" + peer + " |";
    rule += "---|";
  }
  std::string table = header + "\n" + rule + "\n";
  for (const auto& row : rows) {
    std::string line = fmt::format("| {} | {} ms |", row.name, row.rtt_ms);
    if (fleet) {
      line += fmt::format(" {} |", row.fleet_size);
    }
    line += " " + cell(row.healer, row) + " |";
    for (const auto& peer : row.peers) {
      line += " " + cell(peer, row) + " |";
    }
    line +=
        fmt::format(" {} | {} |", row.target_text.empty() ? "—" : row.target_text, verdict(row));
    for (const auto& peer : row.peers) {
      line += " " + ratio(row.healer, peer) + " |";
    }
    table += line + "\n";
  }
  return table;
}

std::string render_counts(const std::vector<CaseCounts>& cases) {
  std::string table =
      "| case | RTT | N | runs | handshakes (sshd `Accepted publickey`) | needed | TCP "
      "connections | dropped (MaxStartups) | refused channels (MaxSessions) | sshd error lines | "
      "client failures | healer pool counters |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& c : cases) {
    table += fmt::format(
        "| {} | {} ms | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", c.name, c.rtt_ms,
        c.fleet_size == 0 ? "1" : std::to_string(c.fleet_size), c.runs, c.log.accepted,
        c.expected_handshakes, c.log.connections, c.log.dropped, c.log.refused, c.log.errors,
        c.client_failures == 0
            ? std::string("0")
            : fmt::format("{} ({})", c.client_failures, trimmed_tail(c.first_failure, 120)),
        c.pool.empty() ? "—" : c.pool);
  }
  return table;
}

/// Only warnings and errors of the library, on stderr (its loggers print info on stdout
/// otherwise, which would corrupt the fleet child's JSON).
void quiet_logging() {
  auto logger = spdlog::stderr_color_mt("bench");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);
}

int bench_main(int argc, char** argv) {
  Settings settings;
  FleetChildArgs child_args;
  std::string rtts = "0,50";
  std::string fleet_sizes = "100,500";
  std::string caps = "128";
  std::string process_large_rtts = "50";
  std::string clients = "healer,cli,openssh,asyncssh,pdsh,pssh";
  std::string parts = "diagnosis,fleet";
  std::string link = default_link_model();

  CLI::App app{"healer-pool-bench: the pool on the seed's diagnosis and on a fleet sweep"};
  app.add_option("--runs", settings.runs, "diagnosis: timed runs per figure (after one warm-up)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--fleet-runs", settings.fleet_runs,
                 "fleet: runs per client for N < --large-fleet")
      ->check(CLI::Range(1, 100));
  app.add_option("--large-runs", settings.large_runs,
                 "fleet: runs of healer and asyncssh for N >= --large-fleet")
      ->check(CLI::Range(1, 100));
  app.add_option("--process-runs", settings.process_runs,
                 "fleet: runs of pdsh and parallel-ssh for N < --large-fleet")
      ->check(CLI::Range(1, 100));
  app.add_option("--process-large-runs", settings.process_large_runs,
                 "fleet: runs of pdsh and parallel-ssh for N >= --large-fleet")
      ->check(CLI::Range(1, 100));
  app.add_option("--process-large-rtts", process_large_rtts,
                 "RTTs at which pdsh and parallel-ssh run for N >= --large-fleet ('all': every "
                 "RTT)");
  app.add_option("--run-gap-ms", settings.run_gap_ms, "diagnosis: pause between warm runs")
      ->check(CLI::Range(0, 10000));
  app.add_option("--large-fleet", settings.large_fleet,
                 "fleet size from which the large-* counts apply");
  app.add_option("--warm-sweeps", settings.warm_sweeps, "fleet: warm sweeps per run")
      ->check(CLI::Range(0, 100));
  app.add_option("--rtts", rtts, "added round-trip times in ms, comma-separated");
  app.add_option("--fleet", fleet_sizes, "fleet sizes, comma-separated (at most 2500)");
  app.add_option("--handshakes", caps,
                 "healer max_handshakes_total values to try in the fleet, comma-separated");
  app.add_option("--fanout", settings.fanout, "pdsh -f / parallel-ssh -p")
      ->check(CLI::Range(1, 1024));
  app.add_option("--asyncssh-concurrency", settings.asyncssh_concurrency,
                 "asyncssh connects in flight in the fleet")
      ->check(CLI::Range(1, 4096));
  app.add_option("--clients", clients, "subset of healer,cli,openssh,asyncssh,pdsh,pssh");
  app.add_option("--parts", parts, "subset of diagnosis,fleet");
  app.add_option("--python", settings.python, "interpreter with asyncssh");
  app.add_option("--peer-script", settings.peer_script, "asyncssh_fleet.py");
  app.add_option("--healer-cli", settings.healer_cli, "the healer binary");
  app.add_option("--markdown-out", settings.markdown_out, "also write the tables to this file");
  app.add_option("--link", link,
                 "how RTT is added: proxy (DelayProxy) or packet (packet-level link, root); "
                 "default $HEALER_BENCH_LINK, else proxy");

  // Internal: healer's side of one fleet run, in a fresh process.
  auto* child = app.add_subcommand("fleet-child", "internal: one healer fleet run");
  child->group("");
  child->add_option("--hosts-file", child_args.hosts_file)->required();
  child->add_option("--port", child_args.target.port)->required();
  child->add_option("--user", child_args.target.user)->required();
  child->add_option("--key", child_args.target.key)->required();
  child->add_option("--known-hosts", child_args.target.known_hosts)->required();
  child->add_option("--command", child_args.command);
  child->add_option("--warm-sweeps", child_args.warm_sweeps);
  child->add_option("--handshakes", child_args.handshakes);
  CLI11_PARSE(app, argc, argv);

  raise_fd_limit();
  quiet_logging();
  if (child->parsed()) {
    return fleet_child_main(child_args);
  }
  settings.clients = split_list(clients);
  settings.parts = split_list(parts);
  settings.link = parse_link_model(link);
  settings.rtts_ms = split_ints(rtts);
  settings.fleet_sizes = split_ints(fleet_sizes);
  settings.handshake_caps = split_ints(caps);
  settings.process_large_rtts =
      process_large_rtts == "all" ? std::vector<int>{} : split_ints(process_large_rtts);
  if (settings.fleet_sizes.empty() ||
      *std::max_element(settings.fleet_sizes.begin(), settings.fleet_sizes.end()) >
          static_cast<int>(kHostsPerOctet * 10)) {
    throw std::invalid_argument("--fleet: sizes in 1..2500");
  }

  const std::string load_at_start = trimmed_tail(read_text("/proc/loadavg"));
  const auto started = Clock::now();
  Report report;
  if (settings.wants("diagnosis")) {
    for (const int rtt : settings.rtts_ms) {
      run_diagnosis(settings, rtt, report);
    }
  }
  const std::string load_after_diagnosis = trimmed_tail(read_text("/proc/loadavg"));
  if (settings.wants("fleet")) {
    for (const int rtt : settings.rtts_ms) {
      run_fleet(settings, rtt, report);
    }
  }
  std::stable_sort(report.diagnosis.begin(), report.diagnosis.end(),
                   [](const Row& a, const Row& b) { return a.order < b.order; });

  const auto ssh_version = test::run_command({"ssh", "-V"});
  std::string output;
  if (!report.diagnosis.empty()) {
    output += "### Diagnosis: the 7 checks on one server\n\n";
    output += render_table(report.diagnosis, {"OpenSSH", "asyncssh"}, false);
    output += fmt::format(
        "\nMedian (p90) of {} timed runs after one untimed warm-up; warm runs {} ms apart.\n",
        settings.runs, settings.run_gap_ms);
  }
  if (!report.fleet.empty()) {
    output += "\n### Fleet: `" + std::string(kFleetCommand) + "` on N servers\n\n";
    output += render_table(report.fleet, {"pdsh", "parallel-ssh", "asyncssh"}, true);
    output += fmt::format(
        "\nMedian (p90) of n runs (no warm-up: each run is a fresh client process); warm: {} "
        "sweeps per run. healer: the best of max_handshakes_total {{{}}} by cold median (all in "
        "the notes). pdsh -f / parallel-ssh -p {}; asyncssh: {} connects in flight. pdsh and "
        "parallel-ssh at N >= {} run at RTT {} only. RSS: VmHWM of the client process (healer, "
        "asyncssh); summed VmRSS of the process tree sampled every {} ms (pdsh, "
        "parallel-ssh).\n",
        settings.warm_sweeps, caps, settings.fanout, settings.asyncssh_concurrency,
        settings.large_fleet, process_large_rtts, settings.rss_poll_ms);
  }
  output += "\n### Handshakes and errors per case (sshd log)\n\n";
  output += render_counts(report.counts);
  output += fmt::format(
      "\nClients: healer (libssh {}), {}, asyncssh {} ({}), pdsh and parallel-ssh from Debian "
      "(through the same OpenSSH client).\n",
      HEALER_LIBSSH_VERSION, trimmed_tail(ssh_version.err), report.asyncssh_version,
      settings.python);
  output += fmt::format("Link model: {}. {}\n", link_model_name(settings.link),
                        link_model_description(settings.link));
  output += fmt::format(
      "Machine: {} CPUs; /proc/loadavg at start: {}; after the diagnosis: {}; at end: {}. "
      "Total time {:.0f} s.\n",
      std::thread::hardware_concurrency(), load_at_start, load_after_diagnosis,
      trimmed_tail(read_text("/proc/loadavg")), ms_since(started) / 1000.0);
  for (const auto& c : report.counts) {
    if (!c.log.first_error.empty()) {
      output += fmt::format("- sshd error line in \"{}\" (RTT {} ms, N {}): `{}`\n", c.name,
                            c.rtt_ms, c.fleet_size, trimmed_tail(c.log.first_error, 200));
    }
  }
  for (const auto& line : report.notes) {
    output += "- " + line + "\n";
  }
  std::cout << output << std::flush;
  if (!settings.markdown_out.empty()) {
    std::ofstream(settings.markdown_out) << output;
  }
  return 0;
}

}  // namespace
}  // namespace healer::bench

int main(int argc, char** argv) {
  try {
    return healer::bench::bench_main(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "healer-pool-bench: " << error.what() << "\n";
    return 2;
  }
}
