// healer-probe-bench: what one metrics collection costs the server, next to Debian's
// prometheus-node-exporter serving one scrape, same machine, same run (issue 11 item 4).
//
//   healer-probe-bench [--rounds 7] [--per-round 10] [--local-runs 40] [--rtt 50]
//                      [--links none,proxy,packet] [--parts cpu,local,rtt] [--node-exporter PATH]
//
// Part 1 (cpu), server CPU per collection: one test-bed sshd on 127.0.0.1, one warm pooled
// connection (what `healer serve` keeps), collections one after another. The server's CPU is the
// change of utime + stime + cutime + cstime over sshd's listener and its descendants (the
// connection's processes stay up, and each command's processes are reaped by the connection's
// sshd, so their CPU lands in its cutime): sshd's channel work, the login shell, the probe.
// Cases: `true` (the floor of any command), the legacy probe (tests/data/metrics/
// probe_legacy.sh, ~20 processes), the probe, and both with busybox's sh, awk, stat, uname, cat
// and date first in PATH. node_exporter: the CPU (utime + stime, all threads) of one
// prometheus-node-exporter on 127.0.0.1 per scrape of /metrics, with its default collectors and
// with only the collectors of healer's metric set. Rounds interleave every case, so load from
// other tenants of the machine falls on all of them alike; each figure is the median (p90) over
// rounds of the per-collection mean of a round.
//
// Part 2 (local), the probe alone, no sshd: the script on stdin of `sh -s` (legacy) or
// `awk -f /dev/stdin` (the probe), CPU from wait4, processes as distinct pids under
// `strace -f -e trace=process`; next to a bare shell's and a bare awk's start.
//
// Part 3 (rtt), does sending the program on stdin cost a round trip? Warm collections on each
// link (none; proxy: the test bed's DelayProxy at --rtt; packet: the packet-level link at --rtt,
// tests/support/netdelay, root only): `true`, the probe with its program on stdin (what healer
// sends), and the same program as the command line (metrics::probe_command_line, no stdin).
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <asio/io_context.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "common.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/probe.hpp"
#include "healer/pool/pool.hpp"
#include "packet_link.hpp"
#include "poll_until.hpp"
#include "pool_helpers.hpp"
#include "ports.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Scripts and cases

std::string read_whole(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

void replace_all(std::string& text, const std::string& placeholder, const std::string& value) {
  for (auto at = text.find(placeholder); at != std::string::npos;
       at = text.find(placeholder, at + value.size())) {
    text.replace(at, placeholder.size(), value);
  }
}

std::string legacy_script(const std::string& marker) {
  std::string script = read_whole(fs::path(HEALER_TEST_DATA) / "metrics" / "probe_legacy.sh");
  if (script.empty()) {
    throw std::runtime_error("cannot read tests/data/metrics/probe_legacy.sh");
  }
  replace_all(script, "@MARKER@", marker);
  replace_all(script, "@PROC@", "/proc");
  return script;
}

/// One kind of collection: the remote command and what goes on its stdin.
struct Case {
  std::string name;
  std::string command;                                           ///< before PATH for busybox
  std::function<std::string(const std::string& marker)> script;  ///< null: no stdin
  bool busybox = false;
  bool probe = true;  ///< its output is a probe's (parsed, failures counted)
};

constexpr std::string_view kLegacyCommand = "LC_ALL=C sh -s";

std::string new_script(const std::string& marker) { return metrics::probe_script(marker); }

std::vector<Case> server_cases(bool with_busybox) {
  const std::string legacy(kLegacyCommand);
  const std::string probe(metrics::kProbeCommand);
  std::vector<Case> cases = {
      {"`true`", "true", nullptr, false, false},
      {"legacy probe (sh + cat, stat, uname...)", legacy, legacy_script, false, true},
      {"probe (one awk)", probe, new_script, false, true}};
  if (with_busybox) {
    cases.push_back({"legacy probe, busybox sh/awk/stat", legacy, legacy_script, true, true});
    cases.push_back({"probe, busybox awk/stat", probe, new_script, true, true});
  }
  return cases;
}

/// A directory of busybox applet links, readable by the test bed's login user.
class BusyboxBin {
 public:
  BusyboxBin() {
    for (const char* applet : {"sh", "awk", "stat", "uname", "cat", "date"}) {
      fs::create_symlink("/usr/bin/busybox", dir_.path() / applet);
    }
    fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read |
                                     fs::perms::group_exec | fs::perms::others_read |
                                     fs::perms::others_exec);
  }
  [[nodiscard]] std::string path() const { return dir_.path().string(); }

 private:
  test::TempDir dir_{"healer-busybox-"};
};

std::string command_of(const Case& c, const BusyboxBin* busybox) {
  return (c.busybox ? "PATH=" + busybox->path() + ":$PATH " : std::string()) + c.command;
}

// ---------------------------------------------------------------------------------------------
// CPU of processes

/// utime + stime (+ cutime + cstime with `children`) of `pid` in ms, nullopt when it is gone.
std::optional<double> process_cpu_ms(pid_t pid, bool children) {
  const auto text = read_small_file(fs::path("/proc") / std::to_string(pid) / "stat");
  if (!text) {
    return std::nullopt;
  }
  const auto paren = text->rfind(')');
  if (paren == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream fields(text->substr(paren + 2));
  std::vector<std::string> values;
  std::string value;
  while (fields >> value) {
    values.push_back(value);
  }
  // After "pid (comm) ": state is field 3, so utime (14) is values[11] ... cstime (17) values[14].
  if (values.size() < 15) {
    return std::nullopt;
  }
  double ticks = std::stod(values[11]) + std::stod(values[12]);
  if (children) {
    ticks += std::stod(values[13]) + std::stod(values[14]);
  }
  return ticks * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// The CPU of sshd's listener and every descendant, their reaped children included.
double server_cpu_ms(const test::SshdFixture& sshd) {
  double total = 0;
  for (const pid_t pid : scan_proc([&] { return sshd.server_processes(); })) {
    total += process_cpu_ms(pid, true).value_or(0.0);
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// healer's collections on a warm connection

asio::awaitable<Result<ssh::CommandResult>> run_once(pool::Registry* registry, std::string command,
                                                     std::string stdin_data) {
  exec::Executor executor(*registry);
  exec::RunOptions options;
  options.deadline = Deadline::after(30s);
  options.stdin_data = std::move(stdin_data);
  co_return co_await executor.async_run("bench", std::move(command), options);
}

asio::awaitable<int> shut_down(pool::Registry* registry) {
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return 0;
}

struct Collected {
  double wall_ms = 0;
  std::size_t out_bytes = 0;
  std::size_t series = 0;
  bool failed = false;  ///< the command failed, or the probe's output had a failed section
  std::string why;
};

Collected collect_once(asio::io_context& io, pool::Registry& registry, const std::string& command,
                       const Case& c) {
  const std::string marker = metrics::make_marker();
  const auto started = Clock::now();
  const auto ran =
      test::run_async(io, run_once(&registry, command, c.script ? c.script(marker) : ""));
  Collected out;
  out.wall_ms = ms_since(started);
  if (!ran) {
    out.failed = true;
    out.why = ran.error().message();
    return out;
  }
  out.out_bytes = ran->out.size();
  if (c.probe) {
    const auto sample = metrics::parse_probe_output(ran->out, ran->err, marker);
    if (!sample || !sample->failures.empty()) {
      out.failed = true;
      out.why = !sample ? sample.error().message() : sample->failures.front().error.message();
    } else {
      out.series = metrics::to_metrics(*sample).size();
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// node_exporter

/// GET /metrics from 127.0.0.1:port (HTTP/1.0, the body to the end): the body, or "" on failure.
std::string http_get_metrics(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return {};
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      std::array<char, 65536> chunk{};
      for (;;) {
        const ssize_t got = ::recv(fd, chunk.data(), chunk.size(), 0);
        if (got <= 0) {
          break;
        }
        response.append(chunk.data(), static_cast<std::size_t>(got));
      }
    }
  }
  ::close(fd);
  const auto body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || response.find(" 200 ") == std::string::npos ||
      body == std::string::npos) {
    return {};
  }
  return response.substr(body + 4);
}

std::size_t count_series(const std::string& body) {
  std::size_t series = 0;
  std::istringstream lines(body);
  std::string line;
  while (std::getline(lines, line)) {
    series += (!line.empty() && line[0] != '#') ? 1U : 0U;
  }
  return series;
}

/// One prometheus-node-exporter on 127.0.0.1, started here and stopped by its pid.
class NodeExporter {
 public:
  NodeExporter(const std::string& binary, const std::vector<std::string>& collector_flags,
               const fs::path& log) {
    // A free port can be taken before node_exporter binds it: a few attempts.
    for (int attempt = 0; attempt < 3 && !process_; ++attempt) {
      port_ = test::closed_port();
      std::vector<std::string> argv = {binary,
                                       "--web.listen-address=127.0.0.1:" + std::to_string(port_)};
      argv.insert(argv.end(), collector_flags.begin(), collector_flags.end());
      auto started = test::ChildProcess::spawn(argv, log);
      if (test::poll_until([&] { return !started.running() || test::is_listening(port_); }, 10s,
                           10ms) &&
          started.running()) {
        process_.emplace(std::move(started));
      }
    }
    if (!process_ || http_get_metrics(port_).empty()) {
      throw std::runtime_error("prometheus-node-exporter did not serve /metrics: " +
                               trimmed_tail(read_text(log)));
    }
  }
  ~NodeExporter() {
    if (process_) {
      process_->signal(SIGTERM);
      if (!process_->wait_for_exit(5s)) {
        process_->signal(SIGKILL);
      }
    }
  }
  NodeExporter(const NodeExporter&) = delete;
  NodeExporter& operator=(const NodeExporter&) = delete;
  NodeExporter(NodeExporter&&) = delete;
  NodeExporter& operator=(NodeExporter&&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] pid_t pid() const { return process_->pid(); }

 private:
  std::uint16_t port_ = 0;
  std::optional<test::ChildProcess> process_;
};

// ---------------------------------------------------------------------------------------------
// Local runs of the probe (no sshd): CPU from wait4, processes from strace

struct LocalRun {
  double cpu_ms = 0;
  int exit_code = -1;
};

/// `argv` with `stdin_file` on stdin and stdout/stderr to `output`, LC_ALL=C and `path_prefix`
/// before PATH; CPU of it and its children from wait4.
LocalRun run_local(const std::vector<std::string>& argv, const fs::path& stdin_file,
                   const fs::path& output, const std::string& path_prefix) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.rfind("PATH=", 0) != 0 && text.rfind("LC_ALL=", 0) != 0) {
      env.emplace_back(text);
    }
  }
  const char* path = std::getenv("PATH");
  env.push_back("PATH=" + (path_prefix.empty() ? "" : path_prefix + ":") +
                (path != nullptr ? path : "/usr/bin:/bin"));
  env.emplace_back("LC_ALL=C");
  std::vector<char*> argv_c;
  for (const auto& arg : argv) {
    argv_c.push_back(const_cast<char*>(arg.c_str()));
  }
  argv_c.push_back(nullptr);
  std::vector<char*> env_c;
  for (const auto& entry : env) {
    env_c.push_back(const_cast<char*>(entry.c_str()));
  }
  env_c.push_back(nullptr);
  const int in = ::open(stdin_file.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (in < 0 || out < 0) {
    throw std::runtime_error("run_local: cannot open " + stdin_file.string());
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execvpe(argv_c[0], argv_c.data(), env_c.data());
    ::_exit(127);
  }
  ::close(in);
  ::close(out);
  if (child < 0) {
    throw std::runtime_error("run_local: fork failed");
  }
  int status = 0;
  rusage usage{};
  ::wait4(child, &status, 0, &usage);
  LocalRun run;
  run.cpu_ms = (static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000.0) +
               (static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000.0);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

// ---------------------------------------------------------------------------------------------
// The report

std::string ms_cell(const Summary& s) {
  return format_ms(s.median) + " (p90 " + format_ms(s.p90) + ")";
}

std::string ratio(double a, double b) {
  if (b <= 0) {
    return "-";
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", a / b);
  return text;
}

struct Options {
  int rounds = 7;
  int per_round = 10;
  int local_runs = 40;
  int rtt_ms = 50;
  int rtt_runs = 10;
  std::string links = "none,proxy,packet";
  std::string node_exporter = "/usr/bin/prometheus-node-exporter";
};

// healer's metric set in node_exporter collectors.
const std::vector<std::string> kEquivalentCollectors = {
    "--collector.disable-defaults", "--collector.cpu",       "--collector.stat",
    "--collector.loadavg",          "--collector.meminfo",   "--collector.vmstat",
    "--collector.filefd",           "--collector.diskstats", "--collector.netdev",
    "--collector.filesystem",       "--collector.uname",     "--collector.time"};

void part_server_cpu(const Options& options, bool with_busybox, std::ostream& report) {
  const auto cases = server_cases(with_busybox);
  const BusyboxBin busybox;
  test::SshdFixture sshd;
  sshd.start();
  asio::io_context io;
  pool::Registry registry(io.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "bench"));

  std::map<std::string, std::vector<double>> cpu;   // case -> per-round mean server CPU
  std::map<std::string, std::vector<double>> wall;  // case -> per-round mean wall
  std::map<std::string, std::size_t> failures;
  std::map<std::string, std::string> first_failure;
  std::map<std::string, std::size_t> out_bytes;
  std::map<std::string, std::size_t> series;

  const bool exporter = fs::exists(options.node_exporter);
  test::TempDir logs("healer-probe-bench-");
  std::unique_ptr<NodeExporter> defaults;
  std::unique_ptr<NodeExporter> equivalent;
  const std::string defaults_name = "node_exporter, default collectors";
  const std::string equivalent_name =
      "node_exporter, healer's set (cpu stat loadavg meminfo "
      "vmstat filefd diskstats netdev filesystem uname time)";
  if (exporter) {
    defaults = std::make_unique<NodeExporter>(options.node_exporter, std::vector<std::string>{},
                                              logs.path() / "node_exporter.log");
    equivalent = std::make_unique<NodeExporter>(options.node_exporter, kEquivalentCollectors,
                                                logs.path() / "node_exporter_set.log");
  }
  // Warm-up: the connection, page cache, node_exporter's first scrape.
  for (const auto& c : cases) {
    collect_once(io, registry, command_of(c, &busybox), c);
  }
  if (exporter) {
    http_get_metrics(defaults->port());
    http_get_metrics(equivalent->port());
  }
  for (int round = 0; round < options.rounds; ++round) {
    progress("server CPU, round " + std::to_string(round + 1) + " of " +
             std::to_string(options.rounds));
    for (const auto& c : cases) {
      const std::string command = command_of(c, &busybox);
      const double before = server_cpu_ms(sshd);
      double wall_total = 0;
      for (int i = 0; i < options.per_round; ++i) {
        const auto collected = collect_once(io, registry, command, c);
        wall_total += collected.wall_ms;
        out_bytes[c.name] = collected.out_bytes;
        series[c.name] = collected.series;
        if (collected.failed) {
          ++failures[c.name];
          first_failure.emplace(c.name, collected.why);
        }
      }
      cpu[c.name].push_back((server_cpu_ms(sshd) - before) / options.per_round);
      wall[c.name].push_back(wall_total / options.per_round);
    }
    if (exporter) {
      for (auto* instance : {defaults.get(), equivalent.get()}) {
        const std::string& name = instance == defaults.get() ? defaults_name : equivalent_name;
        const double before = process_cpu_ms(instance->pid(), true).value_or(0.0);
        double wall_total = 0;
        for (int i = 0; i < options.per_round; ++i) {
          const auto started = Clock::now();
          const std::string body = http_get_metrics(instance->port());
          wall_total += ms_since(started);
          out_bytes[name] = body.size();
          series[name] = count_series(body);
          if (body.empty()) {
            ++failures[name];
          }
        }
        cpu[name].push_back((process_cpu_ms(instance->pid(), true).value_or(0.0) - before) /
                            options.per_round);
        wall[name].push_back(wall_total / options.per_round);
      }
    }
  }
  test::run_async(io, shut_down(&registry));

  const double floor = median_of(cpu[cases[0].name]);
  const double exporter_cpu = exporter ? median_of(cpu[defaults_name]) : 0.0;
  report << "### Server CPU per collection, warm connection, same run\n\n"
         << "| what the server runs | server CPU per collection | minus `true` | / node_exporter "
            "scrape (default collectors) | wall per collection | output bytes | series | "
            "failed |\n|---|---|---|---|---|---|---|---|\n";
  std::vector<std::string> names;
  for (const auto& c : cases) {
    names.push_back(c.name);
  }
  if (exporter) {
    names.push_back(defaults_name);
    names.push_back(equivalent_name);
  }
  for (const auto& name : names) {
    const Summary s = summarize(cpu[name]);
    const bool is_healer = name.rfind("node_exporter", 0) != 0;
    const bool is_probe = is_healer && name != cases[0].name;
    report << "| " << name << " | " << ms_cell(s) << " | "
           << (is_probe ? format_ms(s.median - floor) : std::string("-")) << " | "
           << ratio(s.median, exporter_cpu) << " | " << format_ms(median_of(wall[name])) << " | "
           << out_bytes[name] << " | " << (series[name] > 0 ? std::to_string(series[name]) : "-")
           << " | " << failures[name]
           << (first_failure.count(name) != 0 ? " (" + trimmed_tail(first_failure[name], 120) + ")"
                                              : "")
           << " |\n";
  }
  if (!exporter) {
    report << "\n(node_exporter not measured: " << options.node_exporter
           << " is missing; scripts/install-deps.sh installs prometheus-node-exporter)\n";
  }
  report << "\nMedian (p90) over " << options.rounds << " rounds of the mean of "
         << options.per_round
         << " collections (or scrapes) in a round; every round runs every case.\n\n";
}

std::size_t count_processes(const std::vector<std::string>& argv, const fs::path& script_file,
                            const std::string& path_prefix, const fs::path& dir) {
  const auto trace = dir / "trace";
  fs::remove(trace);
  std::vector<std::string> traced = {"strace",        "-f", "-qq",         "-e",
                                     "trace=process", "-o", trace.string()};
  traced.insert(traced.end(), argv.begin(), argv.end());
  run_local(traced, script_file, dir / "out", path_prefix);
  std::set<std::string> pids;
  std::istringstream lines(read_text(trace));
  std::string pid;
  std::string rest;
  while (lines >> pid && std::getline(lines, rest)) {
    pids.insert(pid);
  }
  return pids.size();
}

void part_local(const Options& options, bool with_busybox, std::ostream& report) {
  const BusyboxBin busybox;
  test::TempDir dir("healer-probe-local-");
  const bool strace = fs::exists("/usr/bin/strace");
  report << "### The probe alone, run locally (no sshd)\n\n"
         << "| what runs | tools | processes per collection | CPU per collection (wait4) | / "
            "legacy probe |\n|---|---|---|---|---|\n";
  struct Local {
    std::string name;
    std::vector<std::string> argv;
    std::function<std::string(const std::string&)> script;
  };
  const std::vector<Local> locals = {
      {"`sh -s` running `true` (a shell's start)",
       {"sh", "-s"},
       [](const std::string&) { return std::string("true\n"); }},
      {"`awk -f /dev/stdin` running `BEGIN {}` (awk's start)",
       {"awk", "-f", "/dev/stdin"},
       [](const std::string&) { return std::string("BEGIN {}\n"); }},
      {"legacy probe, `sh -s`", {"sh", "-s"}, legacy_script},
      {"probe, `awk -f /dev/stdin`", {"awk", "-f", "/dev/stdin"}, new_script}};
  for (const bool bb : {false, true}) {
    if (bb && !with_busybox) {
      continue;
    }
    const std::string prefix = bb ? busybox.path() : "";
    double legacy_median = 0;
    for (const auto& local : locals) {
      progress("local: " + local.name + (bb ? ", busybox" : ""));
      const auto script_file = dir.path() / "script";
      std::ofstream(script_file, std::ios::binary) << local.script(metrics::make_marker());
      std::vector<double> cpu;
      for (int i = 0; i < options.local_runs + 2; ++i) {
        const auto run = run_local(local.argv, script_file, dir.path() / "out", prefix);
        if (i >= 2 && run.exit_code == 0) {
          cpu.push_back(run.cpu_ms);
        }
      }
      const Summary s = summarize(cpu);
      const bool is_legacy = local.name.rfind("legacy", 0) == 0;
      legacy_median = is_legacy ? s.median : legacy_median;
      const std::size_t processes =
          strace ? count_processes(local.argv, script_file, prefix, dir.path()) : 0;
      report << "| " << local.name << " | "
             << (bb ? "busybox sh, awk, stat, uname (`sh -c` for stat: /bin/sh)"
                    : "dash, mawk, coreutils stat")
             << " | " << (strace ? std::to_string(processes) : std::string("- (no strace)"))
             << " | " << ms_cell(s) << " | "
             << (is_legacy || legacy_median <= 0 ? std::string("-")
                                                 : ratio(s.median, legacy_median))
             << " |\n";
    }
  }
  report << "\nCPU: median (p90) of " << options.local_runs
         << " runs with the script on stdin, after 2 untimed (wait4: the process and what it "
            "started); processes: distinct pids under `strace -f -e trace=process`.\n\n";
}

struct Timed {
  std::vector<double> wall;
  std::vector<double> open;  ///< channel open (CommandTiming::open)
  std::vector<double> run;   ///< exec request until the channel closed (CommandTiming::run)
};

void part_round_trips(const Options& options, std::ostream& report) {
  report << "### Does the script on stdin cost a round trip? Warm collections\n\n"
         << "| link | RTT | `true` | probe, program on stdin (`" << metrics::kProbeCommand
         << "`) | same program as the command line (`LC_ALL=C awk '...'`) | stdin - command line "
            "|\n|---|---|---|---|---|---|\n";
  for (const auto& link : split_list(options.links)) {
    test::SshdFixture::Options sshd_options;
    int rtt_ms = options.rtt_ms;
    if (link == "none") {
      rtt_ms = 0;
    } else if (link == "proxy") {
      sshd_options.rtt = std::chrono::milliseconds(rtt_ms);
    } else if (link == "packet") {
      if (const auto why = test::PacketLink::unavailable_reason()) {
        report << "| packet | " << rtt_ms << " ms | skipped: " << *why << " | | | |\n";
        continue;
      }
      sshd_options.packet_link =
          std::make_shared<test::PacketLink>(std::chrono::milliseconds(rtt_ms));
    } else {
      throw std::runtime_error("--links: none, proxy or packet, not " + link);
    }
    progress("round trips on link " + link);
    test::SshdFixture sshd(sshd_options);
    sshd.start();
    asio::io_context io;
    pool::Registry registry(io.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "bench"));
    Timed timed[3];  // true, stdin, command line
    for (int i = 0; i <= options.rtt_runs; ++i) {
      for (int kind = 0; kind < 3; ++kind) {
        const std::string marker = metrics::make_marker();
        std::string command = "true";
        std::string input;
        if (kind == 1) {
          command = std::string(metrics::kProbeCommand);
          input = metrics::probe_script(marker);
        } else if (kind == 2) {
          command = metrics::probe_command_line(marker);
        }
        const auto started = Clock::now();
        const auto ran = test::run_async(io, run_once(&registry, command, input));
        const double wall = ms_since(started);
        const bool ok =
            ran && (kind == 0 || metrics::parse_probe_output(ran->out, ran->err, marker));
        if (i == 0 || !ok) {
          continue;  // the first round pays the handshake
        }
        timed[kind].wall.push_back(wall);
        timed[kind].open.push_back(static_cast<double>(ran->timing.open.count()) / 1000.0);
        timed[kind].run.push_back(static_cast<double>(ran->timing.run.count()) / 1000.0);
      }
    }
    test::run_async(io, shut_down(&registry));
    const auto cell = [&](const Timed& t) {
      const Summary s = summarize(t.wall);
      std::string text = ms_cell(s);
      if (rtt_ms > 0) {
        char multiple[32];
        std::snprintf(multiple, sizeof multiple, " = %.2f RTT", s.median / rtt_ms);
        text += multiple;
      }
      return text + "; open " + format_ms(median_of(t.open)) + ", exec to close " +
             format_ms(median_of(t.run));
    };
    report << "| " << link << " | " << rtt_ms << " ms | " << cell(timed[0]) << " | "
           << cell(timed[1]) << " | " << cell(timed[2]) << " | "
           << format_ms(median_of(timed[1].wall) - median_of(timed[2].wall)) << " |\n";
  }
  report << "\nMedian (p90) of " << options.rtt_runs
         << " warm collections of each kind, taking turns on one pooled connection, after one "
            "untimed round; open and exec-to-close are medians of CommandTiming.\n\n";
}

int bench_main(int argc, char** argv) {
  CLI::App app{"healer-probe-bench: server CPU per metrics collection, next to node_exporter"};
  Options options;
  std::string parts = "cpu,local,rtt";
  app.add_option("--rounds", options.rounds, "rounds of the server CPU part")
      ->check(CLI::Range(1, 1000));
  app.add_option("--per-round", options.per_round, "collections per case and round")
      ->check(CLI::Range(1, 1000));
  app.add_option("--local-runs", options.local_runs, "local runs of each probe")
      ->check(CLI::Range(1, 10000));
  app.add_option("--rtt", options.rtt_ms, "round-trip time of part 4, ms")
      ->check(CLI::Range(1, 1000));
  app.add_option("--rtt-runs", options.rtt_runs, "timed collections per case in part 4")
      ->check(CLI::Range(1, 1000));
  app.add_option("--links", options.links, "links of part 4: none,proxy,packet");
  app.add_option("--node-exporter", options.node_exporter, "prometheus-node-exporter binary");
  app.add_option("--parts", parts, "cpu,local,rtt");
  CLI11_PARSE(app, argc, argv);

  const bool with_busybox = fs::exists("/usr/bin/busybox");
  std::ostringstream report;
  report << "## healer-probe-bench\n\nMachine: " << ::sysconf(_SC_NPROCESSORS_ONLN)
         << " CPUs, /proc/loadavg at start: " << trimmed_tail(read_text("/proc/loadavg"), 60)
         << "\n\n";
  const auto wanted = split_list(parts);
  const auto want = [&](const char* part) {
    return std::find(wanted.begin(), wanted.end(), part) != wanted.end();
  };
  if (want("cpu")) {
    part_server_cpu(options, with_busybox, report);
  }
  if (want("local")) {
    part_local(options, with_busybox, report);
  }
  if (want("rtt")) {
    part_round_trips(options, report);
  }
  report << "/proc/loadavg at the end: " << trimmed_tail(read_text("/proc/loadavg"), 60) << "\n";
  std::cout << report.str();
  return 0;
}

}  // namespace
}  // namespace healer::bench

int main(int argc, char** argv) {
  try {
    return healer::bench::bench_main(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "healer-probe-bench: " << error.what() << "\n";
    return 2;
  }
}
