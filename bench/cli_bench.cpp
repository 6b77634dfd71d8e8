// healer-cli-bench: the `healer` CLI as a user runs it, one fresh process per run, cold (no
// connection open before it starts), next to what people use instead, against throwaway OpenSSH
// sshds of the test bed at several added round-trip times. Prints Markdown tables of medians (and
// p90s); bench/README.md says what each row measures.
//
// 1. Diagnose one-shot: `healer diagnose SERVER --seed --no-store` (the seed's 7 checks), the
//    default check set, and the default set without security_updates, process start to exit;
//    against an OpenSSH ControlMaster started cold with the 7 commands as mux clients at once, and
//    asyncssh (connect + gather of the 7) in a fresh python process. Warm: the same `healer
//    diagnose --seed` while a `healer serve` for the same database runs (the CLI goes through its
//    control socket to the daemon's warm pool: no handshake), next to a ControlMaster already up
//    with the 7 mux clients at once.
// 2. Metrics sweep: `healer metrics collect --all` on N servers (N DelayProxies on 127.0.x.y in
//    front of one sshd, the inventory made with `healer server import`), against pdsh and
//    asyncssh running the same probe script.
// Every case also reports handshakes per server and run (sshd log), failures and peak client RSS.
// Clients take turns; they never overlap.

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

// GCC 12 at -O2 reports a potential null dereference inside CLI11's own string splitting
// (basic_string moved in vector::_M_realloc_insert): a false positive in a system header.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "common.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/metrics/probe.hpp"
#include "packet_link.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer::bench {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// OpenSSH's default MaxSessions, and healer's default max_channels: the realistic server.
constexpr int kMaxSessions = 10;
// Exit codes of `healer diagnose` (Nagios): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
constexpr int kNagiosUnknown = 3;
// The name of the one server of part 1 in its inventory.
constexpr std::string_view kServerName = "bench";
// The check the default set may leave out (apt-get -s dist-upgrade: slow).
constexpr std::string_view kSecurityUpdates = "security_updates";

struct Settings {
  int runs = 10;  // diagnose: timed runs per case, after one untimed warm-up
  std::vector<int> rtts_ms{0, 50};
  std::vector<std::string> parts{"diagnose", "metrics"};
  std::vector<std::string> cases{"seed",     "default",      "default-nosec", "openssh",
                                 "asyncssh", "openssh-warm", "daemon"};
  std::vector<int> fleet_sizes{100, 500};
  std::vector<int> metrics_rtts{0, 50};
  // RTTs at which fleets of --large-fleet servers or more run (a sweep of 500 local sshds costs
  // ~30 s of both CPUs for pdsh, at any RTT).
  std::vector<int> large_rtts{50};
  int large_fleet = 300;
  int metrics_runs = 3;  // timed runs per client and N (each a fresh process: cold)
  std::vector<std::string> clients{"healer", "pdsh", "asyncssh"};
  // healer variants: extra arguments of `healer metrics collect --all`, one string each
  std::vector<std::string> variants{"", "--parallel 128", "--no-store"};
  int fanout = 64;  // pdsh -f
  int asyncssh_concurrency = 128;
  int rss_poll_ms = 50;
  std::string python = "/usr/bin/python3";
  std::string peer_script = HEALER_BENCH_PEERS_DIR "/asyncssh_fleet.py";
  std::string healer_cli = HEALER_CLI_PATH;
  std::string markdown_out;
  LinkModel link = LinkModel::proxy;

  [[nodiscard]] bool wants(std::string_view part) const {
    return std::find(parts.begin(), parts.end(), part) != parts.end();
  }
  [[nodiscard]] bool wants_case(std::string_view name) const {
    return std::find(cases.begin(), cases.end(), name) != cases.end();
  }
  [[nodiscard]] bool wants_client(std::string_view name) const {
    return std::find(clients.begin(), clients.end(), name) != clients.end();
  }
};

/// The figures of one case (a client doing one thing at one RTT and fleet size).
struct Case {
  std::string name;
  int rtt_ms = 0;
  std::size_t servers = 1;
  std::size_t runs = 0;           ///< every run, the untimed ones included (handshakes are per run)
  std::vector<double> wall_ms;    ///< timed runs: process start to exit (or as `how` says)
  std::vector<double> inside_ms;  ///< asyncssh: timed inside python (see asyncssh_fleet.py)
  std::vector<double> rss_kib;    ///< peak client RSS per timed run
  std::vector<double> client_cpu_ms;
  std::vector<double> machine_busy_ms;
  std::vector<double> proxy_cpu_ms;  ///< this process's CPU: the DelayProxies
  /// CPU of the sshd processes the listener reaped during the run: per-connection sshds with
  /// the shells and commands they waited for (a lower bound: see reaped_children_cpu_ms)
  std::vector<double> sshd_cpu_ms;
  std::size_t failures = 0;  ///< failed runs (diagnose) or servers (metrics)
  std::string first_failure;
  LogCounts log;
  std::string rss_how = "ru_maxrss";
  std::optional<double> target_ms;
  std::string note;

  void fail(std::string why, std::size_t count = 1) {
    failures += count;
    if (first_failure.empty()) {
      first_failure = std::move(why);
    }
  }
  [[nodiscard]] double handshakes_per_server_run() const {
    const auto denominator = static_cast<double>(std::max<std::size_t>(1, runs * servers));
    return static_cast<double>(log.accepted) / denominator;
  }
};

struct Report {
  std::vector<Case> diagnose;
  std::vector<Case> metrics;
  std::vector<std::string> notes;
};

/// The JSON object on the last line of `text` that starts with '{' (a python peer's report).
nlohmann::json last_json_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  std::string last;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.front() == '{') {
      last = line;
    }
  }
  try {
    return nlohmann::json::parse(last);
  } catch (const nlohmann::json::exception&) {
    return {{"error", "no JSON report: " + trimmed_tail(text)}};
  }
}

/// CPU (user + system) of the children `pid` has reaped, in ms: /proc/PID/stat cutime + cstime.
/// For sshd's listener: every per-connection sshd it reaped, with what that one reaped in turn
/// (the privilege-separated child, the session's shell and its commands). A lower bound: a
/// process whose parent exits first is reparented and its CPU counted elsewhere.
double reaped_children_cpu_ms(pid_t pid) {
  const auto stat = read_small_file(fmt::format("/proc/{}/stat", pid));
  if (!stat) {
    return 0;
  }
  const auto close = stat->rfind(')');
  std::istringstream fields(close == std::string::npos ? std::string() : stat->substr(close + 1));
  // After "pid (comm)": state is field 3, cutime field 16, cstime field 17.
  std::vector<std::string> values;
  std::string value;
  while (fields >> value) {
    values.push_back(value);
  }
  if (values.size() < 15) {
    return 0;
  }
  const double ms_per_tick = 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  return (std::stod(values[13]) + std::stod(values[14])) * ms_per_tick;
}

/// CPU of the metrics probe run locally (`sh -c <command line>`, wait4: the shell and every process
/// it ran), median of `runs`: what each server spends on the probe itself, without sshd's
/// connection and session set-up.
double local_probe_cpu_ms(const std::string& command_line, const fs::path& log, int runs) {
  std::vector<double> cpu;
  for (int run = 0; run < runs; ++run) {
    fs::remove(log);
    const pid_t pid = spawn_process({"sh", "-c", command_line}, log, {"LC_ALL=C"});
    cpu.push_back(wait_process_usage(pid).cpu_ms);
  }
  return median_of(cpu);
}

/// The last line of `text` containing `needle`, empty when none does.
std::string last_line_with(const std::string& text, std::string_view needle) {
  std::istringstream lines(text);
  std::string line;
  std::string found;
  while (std::getline(lines, line)) {
    if (line.find(needle) != std::string::npos) {
      found = line;
    }
  }
  return found;
}

/// One run of a client process: wall time, its peak RSS and CPU, the machine's CPU, and the CPU
/// this process (the DelayProxies) spent meanwhile.
struct ProcessRun {
  double wall_ms = 0;
  ProcessUsage usage;
  double machine_busy_ms = 0;
  double proxy_cpu_ms = 0;
  long tree_rss_kib = 0;  ///< with a sampler: peak summed VmRSS of the process tree
  std::size_t tree_processes = 0;
  std::string output;
};

ProcessRun run_client(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      const fs::path& log, std::optional<std::chrono::milliseconds> sample_tree) {
  fs::remove(log);
  ProcessRun run;
  const auto busy_before = machine_cpu();
  const double self_before = rusage_cpu_ms(RUSAGE_SELF);
  const auto started = Clock::now();
  const pid_t pid = spawn_process(argv, log, env);
  std::optional<TreeRssSampler> sampler;
  if (sample_tree) {
    sampler.emplace(pid, *sample_tree);
  }
  run.usage = wait_process_usage(pid);
  run.wall_ms = ms_since(started);
  if (sampler) {
    sampler->stop();
    run.tree_rss_kib = sampler->peak_kib();
    run.tree_processes = sampler->peak_processes();
  }
  run.machine_busy_ms = (machine_cpu() - busy_before).busy();
  run.proxy_cpu_ms = rusage_cpu_ms(RUSAGE_SELF) - self_before;
  run.output = read_text(log);
  return run;
}

void add_sample(Case& c, const ProcessRun& run) {
  c.wall_ms.push_back(run.wall_ms);
  c.rss_kib.push_back(run.tree_rss_kib > 0 ? static_cast<double>(run.tree_rss_kib)
                                           : run.usage.max_rss_kib);
  c.client_cpu_ms.push_back(run.usage.cpu_ms);
  c.machine_busy_ms.push_back(run.machine_busy_ms);
  c.proxy_cpu_ms.push_back(run.proxy_cpu_ms);
}

/// A private inventory: HOME and HEALER_DB in a directory of their own.
struct Inventory {
  fs::path home;
  fs::path db;

  explicit Inventory(const fs::path& dir) : home(dir / "home"), db(dir / "healer.db") {
    fs::create_directories(home);
  }
  [[nodiscard]] std::vector<std::string> env() const {
    return {"HOME=" + home.string(), "HEALER_DB=" + db.string(), "NO_COLOR=1"};
  }
};

/// Runs a healer command that must succeed (inventory set-up); throws with its output if not.
double run_setup(const Settings& settings, const Inventory& inventory,
                 std::vector<std::string> args, const fs::path& log) {
  args.insert(args.begin(), settings.healer_cli);
  const auto run = run_client(args, inventory.env(), log, std::nullopt);
  if (run.usage.exit_code != 0) {
    throw std::runtime_error(fmt::format("`healer {}` exited {}: {}", args.at(1),
                                         run.usage.exit_code, trimmed_tail(run.output)));
  }
  return run.wall_ms;
}

// ---------------------------------------------------------------------------------------------
// Part 1: diagnose one-shot

std::vector<std::string> seed_commands() {
  std::vector<std::string> commands;
  for (const auto& check : checks::seed_checks()) {
    commands.push_back(check.command);
  }
  return commands;
}

/// "7 checks: 6 OK, 1 UNKNOWN (seed.system_state: systemctl not available); slowest: ..." from
/// the JSON of `healer diagnose --json`.
std::string describe_checks(const std::string& output) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(output);
  } catch (const nlohmann::json::exception&) {
    return "no JSON from the warm-up run: " + trimmed_tail(output, 160);
  }
  // {"status", "exit_code", "servers": [{"server", ..., "checks": [...]}]}
  const auto& servers = doc.contains("servers") ? doc["servers"] : doc;
  const auto& server = servers.is_array() && !servers.empty() ? servers.front() : servers;
  if (!server.contains("checks")) {
    return "no checks in the warm-up run's JSON";
  }
  std::map<std::string, std::size_t> statuses;
  std::string not_ok;
  std::vector<std::pair<double, std::string>> durations;
  for (const auto& check : server["checks"]) {
    const auto name = check.value("name", "?");
    const auto status = check.value("status", "?");
    ++statuses[status];
    durations.emplace_back(check.value("duration_ms", 0.0), name);
    if (status != "OK" && status != "ok") {
      not_ok += fmt::format("{}{} {} ({})", not_ok.empty() ? "" : "; ", name, status,
                            trimmed_tail(check.value("message", ""), 80));
    }
  }
  std::sort(durations.rbegin(), durations.rend());
  std::string text = fmt::format("untimed `--json` run: {} checks:", server["checks"].size());
  for (const auto& [status, count] : statuses) {
    text += fmt::format(" {} {}", count, status);
  }
  if (!not_ok.empty()) {
    text += "; not OK: " + not_ok;
  }
  text += "; slowest:";
  for (std::size_t i = 0; i < std::min<std::size_t>(3, durations.size()); ++i) {
    text += fmt::format(" {} {}", durations[i].second, format_ms(durations[i].first));
  }
  return text;
}

void run_diagnose(const Settings& settings, int rtt_ms, Report& report) {
  test::SshdFixture::Options sshd_options;
  sshd_options.max_sessions = kMaxSessions;
  sshd_options.max_startups = "300:30:1000";
  sshd_options.log_level = "VERBOSE";
  add_link(sshd_options, settings.link, std::chrono::milliseconds(rtt_ms));
  test::SshdFixture sshd(sshd_options);
  sshd.start();
  progress(fmt::format("diagnose, RTT {} ms ({} link): sshd on port {} (client port {})", rtt_ms,
                       link_model_name(settings.link), sshd.sshd_port(), sshd.port()));
  test::TempDir dir("hcb-");  // short: a unix socket path has 108 bytes at most
  const Inventory inventory(dir.path());
  run_setup(settings, inventory,
            {"server", "add", std::string(kServerName), "--host", sshd.host(), "--port",
             std::to_string(sshd.port()), "--user", sshd.user(), "--identity",
             sshd.client_key_path().string(), "--known-hosts", sshd.known_hosts_path().string()},
            dir.path() / "setup.log");
  const auto runs = static_cast<std::size_t>(settings.runs);
  const auto commands = seed_commands();

  // healer diagnose, three check sets.
  std::vector<std::string> no_security_updates;
  for (const auto& check : checks::default_checks()) {
    if (check.name != kSecurityUpdates) {
      no_security_updates.insert(no_security_updates.end(), {"--check", check.name});
    }
  }
  struct HealerCase {
    std::string key;
    std::string name;
    std::vector<std::string> args;
  };
  const std::vector<HealerCase> healer_cases{
      {"seed",
       fmt::format("`healer diagnose {} --seed --no-store` (7 checks)", kServerName),
       {"--seed"}},
      {"default",
       fmt::format("`healer diagnose {} --no-store` (default set, {} checks)", kServerName,
                   checks::default_checks().size()),
       {}},
      {"default-nosec",
       fmt::format("default set without security_updates ({} `--check`s)",
                   no_security_updates.size() / 2),
       no_security_updates}};
  // One healer case: `argv` run `runs` times after an untimed `--json` warm-up.
  const auto run_healer_case = [&](std::string name, const std::vector<std::string>& argv,
                                   std::optional<double> target_ms) {
    Case c;
    c.name = std::move(name);
    c.rtt_ms = rtt_ms;
    c.target_ms = target_ms;
    settle(sshd);
    LogWindow window(sshd);
    std::map<int, std::size_t> exit_codes;
    std::string checks_seen;
    for (std::size_t run = 0; run <= runs; ++run) {
      settle(sshd);
      // The untimed warm-up prints JSON: what every check said, and how long it took.
      auto run_argv = argv;
      if (run == 0) {
        run_argv.emplace_back("--json");
      }
      const auto outcome = run_client(run_argv, inventory.env(), dir.path() / "healer.log", {});
      ++c.runs;
      ++exit_codes[outcome.usage.exit_code];
      if (run == 0) {
        checks_seen = describe_checks(outcome.output);
      }
      // Nagios exit codes: 0-3 say the worst status among the checks (UNKNOWN: a check could
      // not judge, e.g. no systemctl); an unreachable server also exits 3, with that word.
      if (outcome.usage.exit_code < 0 || outcome.usage.exit_code > kNagiosUnknown ||
          outcome.output.find(" - unreachable: ") != std::string::npos) {
        c.fail(fmt::format("exit {}: {}", outcome.usage.exit_code, trimmed_tail(outcome.output)));
      } else if (run > 0) {
        add_sample(c, outcome);
      }
    }
    settle(sshd);
    c.log = window.counts();
    std::string codes;
    for (const auto& [code, count] : exit_codes) {
      codes += fmt::format("{}{} x exit {}", codes.empty() ? "" : ", ", count, code);
    }
    c.note = codes + "; " + checks_seen;
    report.diagnose.push_back(std::move(c));
  };
  for (const auto& healer_case : healer_cases) {
    if (!settings.wants_case(healer_case.key)) {
      continue;
    }
    progress("  " + healer_case.name);
    std::vector<std::string> argv{settings.healer_cli, "diagnose", std::string(kServerName),
                                  "--no-store"};
    argv.insert(argv.end(), healer_case.args.begin(), healer_case.args.end());
    run_healer_case(
        healer_case.name, argv,
        healer_case.key == "seed" && rtt_ms == 50 ? std::optional<double>(400) : std::nullopt);
  }

  // Warm: a `healer serve` for the same database holds the pool; the CLI finds its control
  // socket (<db>.sock) and runs there. The daemon schedules nothing (intervals 0), so only these
  // runs use its pool; its first run (the untimed warm-up) opens the one connection.
  if (settings.wants_case("daemon")) {
    progress("  `healer diagnose --seed` through a running `healer serve`");
    const auto config = dir.path() / "serve.toml";
    std::ofstream(config) << "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n";
    const auto socket = fs::path(inventory.db.string() + ".sock");
    const pid_t daemon =
        spawn_process({settings.healer_cli, "serve", "--config", config.string(), "--listen",
                       fmt::format("127.0.0.1:{}", test::closed_port())},
                      dir.path() / "serve.log", inventory.env());
    if (!test::poll_until([&] { return fs::exists(socket); }, std::chrono::seconds(15))) {
      ::kill(daemon, SIGKILL);
      wait_process(daemon);
      throw std::runtime_error("healer serve did not open its control socket: " +
                               trimmed_tail(read_text(dir.path() / "serve.log")));
    }
    run_healer_case(
        fmt::format("`healer diagnose {} --seed --no-store` through a running `healer serve` "
                    "(its warm pool)",
                    kServerName),
        {settings.healer_cli, "diagnose", std::string(kServerName), "--no-store", "--seed"},
        std::nullopt);
    ::kill(daemon, SIGTERM);
    const int exit_code = wait_process(daemon);
    if (exit_code != 0) {
      report.notes.push_back(fmt::format("healer serve exited {} on SIGTERM: {}", exit_code,
                                         trimmed_tail(read_text(dir.path() / "serve.log"))));
    }
  }

  if (settings.wants_case("openssh")) {
    progress("  OpenSSH ControlMaster cold: master + 7 mux clients at once");
    OpenSsh openssh(sshd, dir.path());
    Case c;
    c.name = "OpenSSH ControlMaster cold: `ssh -M -N -f`, then 7 `ssh -S ctl` at once";
    c.rtt_ms = rtt_ms;
    c.rss_how = "not measured";
    std::vector<double> master_ms;
    settle(sshd);
    LogWindow window(sshd);
    for (std::size_t run = 0; run <= runs; ++run) {
      settle(sshd);
      const auto control = openssh.control_path(fmt::format("cm{}", run));
      std::vector<std::vector<std::string>> batch;
      for (const auto& command : commands) {
        batch.push_back(openssh.mux_argv(control, command));
      }
      const auto started = Clock::now();
      const auto master = openssh.start_master(control);
      BatchOutcome outcome;
      if (master) {
        outcome = run_parallel(batch, openssh.log());
      }
      const double elapsed = ms_since(started);
      openssh.stop_all_masters();  // untimed
      ++c.runs;
      if (!master || outcome.failures > 0) {
        c.fail(openssh.log_tail());
      } else if (run > 0) {
        c.wall_ms.push_back(elapsed);
        master_ms.push_back(*master);
      }
    }
    settle(sshd);
    c.log = window.counts();
    c.note = fmt::format("master setup alone: median {}", format_ms(median_of(master_ms)));
    report.diagnose.push_back(std::move(c));
  }

  if (settings.wants_case("asyncssh")) {
    progress("  asyncssh one-shot: a fresh python per run, connect + gather of the 7");
    std::vector<std::string> argv{settings.python, settings.peer_script,
                                  "--mode",        "oneshot",
                                  "--host",        sshd.host(),
                                  "--port",        std::to_string(sshd.port()),
                                  "--user",        sshd.user(),
                                  "--key",         sshd.client_key_path().string(),
                                  "--known-hosts", sshd.known_hosts_path().string()};
    for (const auto& command : commands) {
      argv.insert(argv.end(), {"--command", command});
    }
    Case c;
    c.name = "asyncssh one-shot: python start, `import asyncssh`, connect, gather of the 7";
    c.rtt_ms = rtt_ms;
    std::vector<double> import_ms;
    std::vector<double> connect_run_ms;
    settle(sshd);
    LogWindow window(sshd);
    for (std::size_t run = 0; run <= runs; ++run) {
      settle(sshd);
      const auto outcome = run_client(argv, {}, dir.path() / "asyncssh.log", {});
      ++c.runs;
      const auto result = last_json_line(outcome.output);
      if (outcome.usage.exit_code != 0 || result.contains("error") ||
          result.value("failures", 1) != 0) {
        c.fail(fmt::format("exit {}: {}", outcome.usage.exit_code, trimmed_tail(outcome.output)));
      } else if (run > 0) {
        add_sample(c, outcome);
        c.inside_ms.push_back(result["inside_ms"].get<double>());
        import_ms.push_back(result["import_ms"].get<double>());
        connect_run_ms.push_back(result["connect_run_ms"].get<double>());
      }
    }
    settle(sshd);
    c.log = window.counts();
    c.note = fmt::format(
        "inside python: `import asyncssh` {}, connect + gather {}; the rest of the process time "
        "is interpreter start-up and exit",
        format_ms(median_of(import_ms)), format_ms(median_of(connect_run_ms)));
    report.diagnose.push_back(std::move(c));
  }
  if (settings.wants_case("openssh-warm")) {
    progress("  OpenSSH ControlMaster warm: 7 mux clients at once on a master already up");
    OpenSsh openssh(sshd, dir.path());
    Case c;
    c.name = "OpenSSH ControlMaster warm: 7 `ssh -S ctl` at once, the master already up";
    c.rtt_ms = rtt_ms;
    c.rss_how = "not measured";
    settle(sshd);
    LogWindow window(sshd);
    const auto control = openssh.control_path("warm");
    if (!openssh.start_master(control)) {
      c.fail(openssh.log_tail());
    } else {
      std::vector<std::vector<std::string>> batch;
      for (const auto& command : commands) {
        batch.push_back(openssh.mux_argv(control, command));
      }
      for (std::size_t run = 0; run <= runs; ++run) {
        settle(sshd);
        const auto started = Clock::now();
        const auto outcome = run_parallel(batch, openssh.log());
        const double elapsed = ms_since(started);
        ++c.runs;
        if (outcome.failures > 0) {
          c.fail(openssh.log_tail());
        } else if (run > 0) {
          c.wall_ms.push_back(elapsed);
        }
      }
    }
    openssh.stop_all_masters();
    settle(sshd);
    c.log = window.counts();
    c.note = "one master for every run (its set-up untimed)";
    report.diagnose.push_back(std::move(c));
  }
  progress(fmt::format("diagnose, RTT {} ms done", rtt_ms));
}

// ---------------------------------------------------------------------------------------------
// Part 2: metrics sweep

/// An OpenSSH client config with one Host per fleet address, for `healer server import`.
fs::path write_import_config(const fs::path& dir, const Fleet& fleet, std::size_t count,
                             const test::SshdFixture& sshd) {
  const auto path = dir / fmt::format("ssh_config_{}", count);
  std::ofstream out(path);
  for (std::size_t i = 0; i < count; ++i) {
    out << fmt::format(
        "Host s{:04}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n"
        "  UserKnownHostsFile {}\n\n",
        i + 1, fleet.address(i), fleet.port(), sshd.user(), sshd.client_key_path().string(),
        fleet.known_hosts().string());
  }
  return path;
}

void run_metrics(const Settings& settings, int rtt_ms, Report& report) {
  std::vector<std::size_t> sizes;
  for (const int size : settings.fleet_sizes) {
    const bool large = size >= settings.large_fleet;
    if (!large || std::find(settings.large_rtts.begin(), settings.large_rtts.end(), rtt_ms) !=
                      settings.large_rtts.end()) {
      sizes.push_back(static_cast<std::size_t>(size));
    }
  }
  if (sizes.empty()) {
    return;
  }
  const std::size_t largest = *std::max_element(sizes.begin(), sizes.end());
  test::SshdFixture::Options sshd_options;
  sshd_options.max_sessions = kMaxSessions;
  // MaxStartups limits unauthenticated connections only; the clients keep up to 128 handshakes
  // in flight.
  sshd_options.max_startups = "1000:30:1000";
  sshd_options.log_level = "VERBOSE";
  // On the packet-level link the fleet's addresses are the link's (Fleet); its RTT is the link's.
  add_link(sshd_options, settings.link, std::chrono::milliseconds(rtt_ms));
  test::SshdFixture sshd(sshd_options);
  sshd.start();
  test::TempDir dir("hcb-fleet-");
  Fleet fleet(sshd, largest, std::chrono::milliseconds(rtt_ms), dir.path());
  progress(
      fmt::format("metrics, RTT {} ms ({} link): sshd on {}:{}, {} addresses from {} on port {}",
                  rtt_ms, link_model_name(settings.link), sshd.host(), sshd.sshd_port(), largest,
                  fleet.address(0), fleet.port()));

  // The peers run healer's own probe (one marker for the whole bench run) as one command line,
  // `LC_ALL=C awk '<program>'` (metrics::probe_command_line): healer sends the same program on
  // stdin to `LC_ALL=C awk -f /dev/stdin`.
  const std::string marker = metrics::make_marker();
  const std::string probe_command = metrics::probe_command_line(marker);
  const std::string done_line = marker + " end time ";
  report.notes.push_back(fmt::format(
      "Metrics RTT {} ms: the probe run locally (`{}` with the {}-byte program) costs {} of CPU "
      "(median of 20, wait4: the shell and every process it starts).",
      rtt_ms, "LC_ALL=C awk '<program>'", metrics::probe_script(marker).size(),
      format_ms(local_probe_cpu_ms(probe_command, dir.path() / "probe.log", 20))));

  for (const std::size_t n : sizes) {
    const fs::path inventory_dir = dir.path() / fmt::format("inventory_{}", n);
    fs::create_directories(inventory_dir);
    const Inventory inventory(inventory_dir);
    const auto config = write_import_config(dir.path(), fleet, n, sshd);
    const double import_ms = run_setup(settings, inventory, {"server", "import", config.string()},
                                       inventory_dir / "import.log");
    report.notes.push_back(
        fmt::format("Metrics RTT {} ms, N={}: `healer server import` of {} Host entries took {}.",
                    rtt_ms, n, n, format_ms(import_ms)));
    const auto runs = static_cast<std::size_t>(settings.metrics_runs);
    const auto add_case = [&](Case c, const LogWindow& window) {
      settle(sshd, 10s);
      c.log = window.counts();
      c.rtt_ms = rtt_ms;
      c.servers = n;
      report.metrics.push_back(std::move(c));
    };

    if (settings.wants_client("healer")) {
      bool warmed_up = false;
      for (const auto& variant : settings.variants) {
        // Variant "exec": `healer exec --all -- <the command pdsh runs>` (fan-out exec, output
        // grouped per server) instead of `metrics collect --all` (the probe on stdin, parsed).
        const bool fan_out_exec = variant == "exec";
        std::vector<std::string> argv{settings.healer_cli, "metrics", "collect", "--all"};
        if (fan_out_exec) {
          argv = {settings.healer_cli, "exec", "--all", "--", probe_command};
        } else {
          std::istringstream extra(variant);
          std::string word;
          while (extra >> word) {
            argv.push_back(word);
          }
        }
        if (!warmed_up) {
          // Untimed: every proxy, sshd and the page cache see one sweep before anything is timed.
          progress(fmt::format("  N={}: untimed warm-up sweep (healer)", n));
          settle(sshd, 10s);
          run_client(argv, inventory.env(), inventory_dir / "healer.log", {});
          warmed_up = true;
        }
        Case c;
        c.name = fan_out_exec      ? "healer exec --all -- <pdsh's command>"
                 : variant.empty() ? "healer metrics collect --all"
                                   : "healer metrics collect --all " + variant;
        if (n == 500 && !fan_out_exec) {
          c.target_ms = 4000;
        }
        progress(fmt::format("  N={}: {} ({} runs)", n, c.name, runs));
        settle(sshd, 10s);
        LogWindow window(sshd);
        std::string summary;
        for (std::size_t run = 0; run < runs; ++run) {
          settle(sshd, 10s);
          const double sshd_before = reaped_children_cpu_ms(sshd.pid());
          const auto outcome = run_client(argv, inventory.env(), inventory_dir / "healer.log", {});
          settle(sshd, 10s);
          c.sshd_cpu_ms.push_back(reaped_children_cpu_ms(sshd.pid()) - sshd_before);
          ++c.runs;
          add_sample(c, outcome);
          // One line per server: "NAME  OK ..." or "NAME  FAILED  why"; exit 0 when all OK.
          // exec: a failed server prints "healer: why" in its block (identical outputs fold
          // into one block, so the probe's lines are not counted).
          const std::size_t failed = count_occurrences(
              outcome.output, fan_out_exec ? std::string("\nhealer: ") : std::string(" FAILED  "));
          if (outcome.usage.exit_code != 0 || failed > 0) {
            c.fail(fmt::format("run {}: exit {}: {}", run + 1, outcome.usage.exit_code,
                               trimmed_tail(outcome.output)),
                   std::max<std::size_t>(failed, 1));
          }
          summary = fan_out_exec ? fmt::format("{} blocks of output for {} servers",
                                               count_occurrences(outcome.output, done_line), n)
                                 : last_line_with(outcome.output, " server(s): ");
        }
        c.note = "last run: " + summary;
        add_case(std::move(c), window);
      }
    }

    if (settings.wants_client("pdsh")) {
      Case c;
      c.name = fmt::format("pdsh -R ssh -f {} (OpenSSH per host)", settings.fanout);
      c.rss_how = "summed VmRSS of pdsh and its ssh processes, sampled";
      progress(fmt::format("  N={}: {} ({} runs)", n, c.name, runs));
      const std::vector<std::string> argv{
          "pdsh", "-R", "ssh",       "-f", std::to_string(settings.fanout),    "-t",
          "120",  "-l", sshd.user(), "-w", "^" + fleet.hosts_file(n).string(), probe_command};
      const std::vector<std::string> env{"PDSH_SSH_ARGS=-F " + fleet.ssh_config().string() +
                                         " -l%u %h"};
      settle(sshd, 10s);
      LogWindow window(sshd);
      std::vector<double> processes;
      for (std::size_t run = 0; run < runs; ++run) {
        settle(sshd, 10s);
        const double sshd_before = reaped_children_cpu_ms(sshd.pid());
        const auto outcome = run_client(argv, env, dir.path() / "pdsh.log",
                                        std::chrono::milliseconds(settings.rss_poll_ms));
        settle(sshd, 10s);
        c.sshd_cpu_ms.push_back(reaped_children_cpu_ms(sshd.pid()) - sshd_before);
        ++c.runs;
        add_sample(c, outcome);
        processes.push_back(static_cast<double>(outcome.tree_processes));
        const std::size_t ok = count_occurrences(outcome.output, done_line);
        if (ok < n) {
          c.fail(fmt::format("run {}: exit {}, {} of {} hosts answered: {}", run + 1,
                             outcome.usage.exit_code, ok, n, trimmed_tail(outcome.output)),
                 n - ok);
        }
      }
      c.note = fmt::format("peak {:.0f} processes", median_of(processes));
      add_case(std::move(c), window);
    }

    if (settings.wants_client("asyncssh")) {
      Case c;
      c.name = fmt::format("asyncssh ({} connects in flight), fresh python",
                           settings.asyncssh_concurrency);
      progress(fmt::format("  N={}: {} ({} runs)", n, c.name, runs));
      const std::vector<std::string> argv{
          settings.python, settings.peer_script,
          "--mode",        "fleet",
          "--hosts-file",  fleet.hosts_file(n).string(),
          "--port",        std::to_string(fleet.port()),
          "--user",        sshd.user(),
          "--key",         sshd.client_key_path().string(),
          "--known-hosts", fleet.known_hosts().string(),
          "--command",     probe_command,
          "--warm-sweeps", "0",
          "--concurrency", std::to_string(settings.asyncssh_concurrency)};
      settle(sshd, 10s);
      LogWindow window(sshd);
      for (std::size_t run = 0; run < runs; ++run) {
        settle(sshd, 10s);
        const double sshd_before = reaped_children_cpu_ms(sshd.pid());
        const auto outcome = run_client(argv, {}, dir.path() / "asyncssh.log", {});
        settle(sshd, 10s);
        ++c.runs;
        const auto result = last_json_line(outcome.output);
        if (result.contains("error")) {
          c.fail(result["error"].get<std::string>(), n);
          continue;
        }
        c.sshd_cpu_ms.push_back(reaped_children_cpu_ms(sshd.pid()) - sshd_before);
        add_sample(c, outcome);
        c.inside_ms.push_back(result["cold_ms"].get<double>());
        const auto failures = result["failures"].get<std::size_t>();
        if (failures > 0) {
          c.fail(result["first_error"].get<std::string>(), failures);
        }
      }
      add_case(std::move(c), window);
    }
  }
  progress(fmt::format("metrics, RTT {} ms done", rtt_ms));
}

// ---------------------------------------------------------------------------------------------
// The tables

std::string figure(const std::vector<double>& samples, int rtt_ms, bool rtt_multiple) {
  if (samples.empty()) {
    return "—";
  }
  const auto s = summarize(samples);
  std::string text = fmt::format("{} (p90 {})", format_ms(s.median), format_ms(s.p90));
  if (rtt_multiple && rtt_ms > 0) {
    text += fmt::format(" = {:.1f} RTT", s.median / static_cast<double>(rtt_ms));
  }
  return text;
}

std::string mib(const std::vector<double>& kib) {
  return kib.empty() ? "—" : fmt::format("{:.1f}", median_of(kib) / 1024.0);
}

std::string verdict(const Case& c) {
  if (!c.target_ms) {
    return "—";
  }
  if (c.wall_ms.empty()) {
    return "no figure";
  }
  const double median = median_of(c.wall_ms);
  if (median <= *c.target_ms) {
    return fmt::format("yes ({} <= {}, {:.0f}% of target)", format_ms(median),
                       format_ms(*c.target_ms), 100.0 * median / *c.target_ms);
  }
  return fmt::format("**no** ({} > {}: +{:.0f}%)", format_ms(median), format_ms(*c.target_ms),
                     100.0 * (median - *c.target_ms) / *c.target_ms);
}

std::string failures_text(const Case& c) {
  return c.failures == 0 ? std::string("0")
                         : fmt::format("{} ({})", c.failures, trimmed_tail(c.first_failure, 160));
}

std::string render_diagnose(const std::vector<Case>& cases) {
  std::string table =
      "| case | RTT | wall, process start to exit: median (p90) | inside python | handshakes "
      "per run (sshd) | failed runs | peak client RSS (MiB) | target | met? | healer --seed / "
      "this |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& c : cases) {
    const Case* seed = nullptr;
    for (const auto& other : cases) {
      if (other.rtt_ms == c.rtt_ms && other.name.find("--seed") != std::string::npos) {
        seed = &other;
      }
    }
    const std::string ratio =
        seed != nullptr && !seed->wall_ms.empty() && !c.wall_ms.empty()
            ? fmt::format("{:.2f}", median_of(seed->wall_ms) / median_of(c.wall_ms))
            : "—";
    table += fmt::format(
        "| {} | {} ms | {}, n={} | {} | {:.2f} ({} in {} runs) | {} | {} | {} | {} | {} |\n",
        c.name, c.rtt_ms, figure(c.wall_ms, c.rtt_ms, true), c.wall_ms.size(),
        figure(c.inside_ms, c.rtt_ms, true), c.handshakes_per_server_run(), c.log.accepted, c.runs,
        failures_text(c), c.rss_how == "not measured" ? "—" : mib(c.rss_kib),
        c.target_ms ? "<= " + format_ms(*c.target_ms) : "—", verdict(c), ratio);
  }
  return table;
}

std::string render_metrics(const std::vector<Case>& cases) {
  std::string table =
      "| client | RTT | N | wall, process start to exit: median (p90), n | inside python | "
      "handshakes per server and run (sshd) | failed servers | peak client RSS (MiB) | client "
      "CPU (per server) | sshd CPU per server (reaped, lower bound) | DelayProxies CPU | machine "
      "CPU busy (all tenants) | target | met? |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& c : cases) {
    const auto servers = static_cast<double>(std::max<std::size_t>(1, c.servers));
    table += fmt::format(
        "| {} | {} ms | {} | {}, n={} | {} | {:.2f} ({} in {} runs) | {} | {} | {} ({}) | {} | {} "
        "| {} | {} | {} |\n",
        c.name, c.rtt_ms, c.servers, figure(c.wall_ms, c.rtt_ms, false), c.wall_ms.size(),
        figure(c.inside_ms, c.rtt_ms, false), c.handshakes_per_server_run(), c.log.accepted, c.runs,
        failures_text(c), mib(c.rss_kib), format_ms(median_of(c.client_cpu_ms)),
        format_ms(median_of(c.client_cpu_ms) / servers),
        c.sshd_cpu_ms.empty() ? "—" : format_ms(median_of(c.sshd_cpu_ms) / servers),
        format_ms(median_of(c.proxy_cpu_ms)), format_ms(median_of(c.machine_busy_ms)),
        c.target_ms ? "<= " + format_ms(*c.target_ms) : "—", verdict(c));
  }
  return table;
}

std::string render_log_counts(const std::vector<Case>& cases) {
  std::string table =
      "| case | RTT | N | runs | `Accepted publickey` | TCP connections | dropped (MaxStartups) "
      "| refused channels (MaxSessions) | sessions started | sshd error lines |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& c : cases) {
    table += fmt::format("| {} | {} ms | {} | {} | {} | {} | {} | {} | {} | {} |\n", c.name,
                         c.rtt_ms, c.servers, c.runs, c.log.accepted, c.log.connections,
                         c.log.dropped, c.log.refused, c.log.sessions, c.log.errors);
  }
  return table;
}

int bench_main(int argc, char** argv) {
  Settings settings;
  std::string rtts = "0,50";
  std::string parts = "diagnose,metrics";
  std::string cases = "seed,default,default-nosec,openssh,asyncssh,openssh-warm,daemon";
  std::string fleet_sizes = "100,500";
  std::string metrics_rtts = "0,50";
  std::string large_rtts = "50";
  std::string clients = "healer,pdsh,asyncssh";
  std::string variants = ";--parallel 128;--no-store;exec";
  std::string link = default_link_model();

  CLI::App app{"healer-cli-bench: the healer CLI one-shot (diagnose, metrics collect) vs peers"};
  app.add_option("--runs", settings.runs, "diagnose: timed runs per case (after one warm-up)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--rtts", rtts, "diagnose: added round-trip times in ms, comma-separated");
  app.add_option("--parts", parts, "subset of diagnose,metrics");
  app.add_option(
      "--cases", cases,
      "diagnose: subset of seed,default,default-nosec,openssh,asyncssh,openssh-warm,daemon");
  app.add_option("--fleet", fleet_sizes, "metrics: fleet sizes, comma-separated (at most 2500)");
  app.add_option("--metrics-rtts", metrics_rtts, "metrics: added round-trip times in ms");
  app.add_option("--large-rtts", large_rtts,
                 "metrics: RTTs at which fleets of --large-fleet servers or more run");
  app.add_option("--large-fleet", settings.large_fleet, "metrics: see --large-rtts");
  app.add_option("--metrics-runs", settings.metrics_runs, "metrics: timed runs per client and N")
      ->check(CLI::Range(1, 100));
  app.add_option("--clients", clients, "metrics: subset of healer,pdsh,asyncssh");
  app.add_option("--variants", variants,
                 "metrics: healer variants, ';'-separated extra arguments of `healer metrics "
                 "collect --all` (an empty item: none; `exec`: `healer exec --all -- <pdsh's "
                 "command>` instead)");
  app.add_option("--fanout", settings.fanout, "pdsh -f")->check(CLI::Range(1, 1024));
  app.add_option("--asyncssh-concurrency", settings.asyncssh_concurrency,
                 "asyncssh connects in flight")
      ->check(CLI::Range(1, 4096));
  app.add_option("--python", settings.python, "interpreter with asyncssh");
  app.add_option("--peer-script", settings.peer_script, "asyncssh_fleet.py");
  app.add_option("--healer-cli", settings.healer_cli, "the healer binary");
  app.add_option("--markdown-out", settings.markdown_out, "also write the tables to this file");
  app.add_option("--link", link,
                 "how RTT is added: proxy (DelayProxy) or packet (packet-level link, root); "
                 "default $HEALER_BENCH_LINK, else proxy");
  CLI11_PARSE(app, argc, argv);

  settings.link = parse_link_model(link);
  settings.rtts_ms = split_ints(rtts);
  settings.parts = split_list(parts);
  settings.cases = split_list(cases);
  settings.fleet_sizes = split_ints(fleet_sizes);
  settings.metrics_rtts = split_ints(metrics_rtts);
  settings.large_rtts = split_ints(large_rtts);
  settings.clients = split_list(clients);
  settings.variants.clear();
  std::istringstream variant_list(variants);
  for (std::string variant; std::getline(variant_list, variant, ';');) {
    settings.variants.push_back(variant);
  }
  if (settings.fleet_sizes.empty() ||
      *std::max_element(settings.fleet_sizes.begin(), settings.fleet_sizes.end()) >
          static_cast<int>(kHostsPerOctet * 10)) {
    throw std::invalid_argument("--fleet: sizes in 1..2500");
  }
  raise_fd_limit();

  const std::string load_at_start = trimmed_tail(read_text("/proc/loadavg"));
  const auto started = Clock::now();
  Report report;
  if (settings.wants("diagnose")) {
    for (const int rtt : settings.rtts_ms) {
      run_diagnose(settings, rtt, report);
    }
  }
  const std::string load_after_diagnose = trimmed_tail(read_text("/proc/loadavg"));
  if (settings.wants("metrics")) {
    for (const int rtt : settings.metrics_rtts) {
      run_metrics(settings, rtt, report);
    }
  }

  const auto ssh_version = test::run_command({"ssh", "-V"});
  std::string output;
  if (!report.diagnose.empty()) {
    output +=
        "### Diagnose one-shot: one server, a fresh client process per run (cold, unless the case "
        "says warm)\n\n";
    output += render_diagnose(report.diagnose);
    output += fmt::format(
        "\nMedian (p90) of {} timed runs after one untimed warm-up. Peak RSS: ru_maxrss of the "
        "client process (wait4).\n",
        settings.runs);
    for (const auto& c : report.diagnose) {
      if (!c.note.empty()) {
        output += fmt::format("- RTT {} ms, {}: {}\n", c.rtt_ms, c.name, c.note);
      }
    }
  }
  if (!report.metrics.empty()) {
    output += "\n### Metrics sweep: one probe per server, N servers, cold\n\n";
    output += render_metrics(report.metrics);
    output += fmt::format(
        "\nMedian (p90) of n runs, each a fresh client process (so cold); healer ran one untimed "
        "warm-up sweep per N first. Peak RSS: ru_maxrss (wait4) of healer and of python; for "
        "pdsh the summed VmRSS of pdsh and every ssh it runs, sampled every {} ms. Client CPU: "
        "user + system of the client and its children (wait4). sshd CPU: cutime + cstime of sshd's "
        "listener (the per-connection sshds it reaped, with their sessions' shells and commands). "
        "DelayProxies: this process's CPU. Machine: all CPUs (/proc/stat), other tenants "
        "included.\n",
        settings.rss_poll_ms);
    for (const auto& c : report.metrics) {
      if (!c.note.empty()) {
        output += fmt::format("- RTT {} ms, N={}, {}: {}\n", c.rtt_ms, c.servers, c.name, c.note);
      }
    }
  }
  std::vector<Case> all = report.diagnose;
  all.insert(all.end(), report.metrics.begin(), report.metrics.end());
  output += "\n### sshd log per case\n\n" + render_log_counts(all);
  output += fmt::format(
      "\nClients: healer ({}), {}, asyncssh via {}, pdsh (Debian, through the same ssh).\n",
      settings.healer_cli, trimmed_tail(ssh_version.err), settings.python);
  output += fmt::format("Link model: {}. {}\n", link_model_name(settings.link),
                        link_model_description(settings.link));
  output += fmt::format(
      "Machine: {} CPUs; /proc/loadavg at start: {}; after part 1: {}; at end: {}. Total time "
      "{:.0f} s.\n",
      std::thread::hardware_concurrency(), load_at_start, load_after_diagnose,
      trimmed_tail(read_text("/proc/loadavg")), ms_since(started) / 1000.0);
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
    std::cerr << "healer-cli-bench: " << error.what() << "\n";
    return 2;
  }
}
