// healer-fleet-bench: metrics::async_collect over a simulated fleet (healer-fleet-sim: N SSH
// hosts on 127.x.y.z in one process) through one pool::Registry, the way a daemon sweeps its
// servers. A cold sweep (every server a new connection), then warm sweeps on the pooled sessions.
// Prints, per sweep: wall time, client CPU and RSS, handshakes, failures; and the simulator's
// own cost: CPU per connection and per command, RSS per idle session. See
// tests/support/fleet_sim/README.md for the simulator.
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <spdlog/spdlog.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common.hpp"
#include "fleet_sim.hpp"
#include "fleet_sim_pool.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/collector.hpp"
#include "healer/pool/pool.hpp"
#include "run_async.hpp"

namespace healer::bench {
namespace {

using namespace std::chrono_literals;

struct Settings {
  std::size_t hosts = 1000;
  bool large = false;  // 10,000 hosts
  std::size_t concurrency = 256;
  int warm_sweeps = 2;
  std::size_t max_handshakes = 64;     // PoolConfig::max_handshakes_total (its default)
  std::string known_hosts = "shared";  // shared: one file for the fleet; per-host: one each
  std::string latency = "0";
  int timeout_s = 60;                  // per server and sweep
  std::optional<int> idle_timeout_ms;  // PoolConfig::idle_timeout; default: keep (if fds allow)
  std::string markdown_out;
};

// CPU time (user + system) of process `pid` in ms, from /proc/<pid>/stat.
double process_cpu_ms(pid_t pid) {
  const auto text = read_small_file(fmt::format("/proc/{}/stat", pid));
  if (!text) {
    return 0;
  }
  const auto close = text->rfind(')');
  std::istringstream fields(text->substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int index = 3; fields >> field; ++index) {
    if (index == 14 || index == 15) {
      ticks += std::stod(field);
    }
    if (index == 15) {
      break;
    }
  }
  return ticks * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double rss_mib(pid_t pid, std::string_view field = "VmRSS") {
  return static_cast<double>(status_kib(fmt::format("/proc/{}/status", pid), field).value_or(0)) /
         1024.0;
}

double heap_mib(const test::FleetSim::Stats& stats) {
  return static_cast<double>(stats.raw.value("heap_in_use_bytes", std::uint64_t{0})) / 1048576.0;
}

std::size_t open_fds(pid_t pid) {
  std::size_t count = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++count;
  }
  return count;
}

rlim_t fd_limit() {
  raise_fd_limit();
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

// The client's own resource use (getrusage(RUSAGE_SELF): the simulator is a child process).
struct Usage {
  double user_ms = 0;
  double system_ms = 0;
  double minor_faults = 0;
  double context_switches = 0;  // voluntary + involuntary

  static Usage now() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    const auto ms = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) * 1000.0 + static_cast<double>(t.tv_usec) / 1000.0;
    };
    return {ms(usage.ru_utime), ms(usage.ru_stime), static_cast<double>(usage.ru_minflt),
            static_cast<double>(usage.ru_nvcsw + usage.ru_nivcsw)};
  }
  Usage operator-(const Usage& before) const {
    return {user_ms - before.user_ms, system_ms - before.system_ms,
            minor_faults - before.minor_faults, context_switches - before.context_switches};
  }
};

struct Sweep {
  std::string name;
  double wall_ms = 0;
  double client_cpu_ms = 0;
  Usage client;
  double client_rss_mib = 0;
  std::uint64_t handshakes = 0;
  std::size_t failures = 0;
  std::string first_failure;
  double sim_cpu_ms = 0;
  std::uint64_t sim_connections = 0;
  std::uint64_t sim_commands = 0;
  double sim_rss_mib = 0;
  double sim_heap_in_use_mib = 0;
  std::uint64_t sim_sessions = 0;
  std::size_t client_fds = 0;
};

struct Run {
  std::vector<Sweep> sweeps;
  double sim_rss_before_mib = 0;
  double sim_heap_before_mib = 0;
  double client_rss_before_mib = 0;
};

asio::awaitable<Run> async_bench(pool::Registry* registry, const test::FleetSim* sim,
                                 std::vector<std::string> ids, Settings settings) {
  exec::Executor executor(*registry);
  metrics::CollectOptions options;
  options.concurrency = settings.concurrency;
  options.timeout = std::chrono::seconds(settings.timeout_s);
  Run run;
  run.sim_rss_before_mib = rss_mib(sim->pid());
  run.sim_heap_before_mib = heap_mib(sim->stats());
  run.client_rss_before_mib = rss_mib(::getpid());
  for (int sweep = 0; sweep <= settings.warm_sweeps; ++sweep) {
    Sweep figures;
    figures.name = sweep == 0 ? "cold" : fmt::format("warm {}", sweep);
    const auto sim_before = sim->stats();
    const double sim_cpu_before = process_cpu_ms(sim->pid());
    const double cpu_before = rusage_cpu_ms(RUSAGE_SELF);
    const Usage usage_before = Usage::now();
    const auto handshakes_before = registry->total_stats().handshakes_started;
    const auto started = Clock::now();
    auto results = co_await metrics::async_collect(executor, ids, options);
    figures.wall_ms = ms_since(started);
    figures.client_cpu_ms = rusage_cpu_ms(RUSAGE_SELF) - cpu_before;
    figures.client = Usage::now() - usage_before;
    figures.client_rss_mib = rss_mib(::getpid());
    figures.client_fds = open_fds(::getpid());
    figures.handshakes = registry->total_stats().handshakes_started - handshakes_before;
    for (const auto& result : results) {
      if (!result.sample || !result.sample->failures.empty()) {
        if (figures.failures++ == 0) {
          figures.first_failure = result.server_id + ": " +
                                  (result.sample ? result.sample->failures.front().error.message()
                                                 : result.sample.error().message());
        }
      }
    }
    figures.sim_cpu_ms = process_cpu_ms(sim->pid()) - sim_cpu_before;
    const auto sim_after = sim->stats();
    figures.sim_connections = sim_after.connections - sim_before.connections;
    figures.sim_commands = sim_after.commands - sim_before.commands;
    figures.sim_rss_mib = rss_mib(sim->pid());
    figures.sim_sessions = sim_after.sessions_open;
    figures.sim_heap_in_use_mib = heap_mib(sim_after);
    progress(fmt::format("{} sweep: {} in {}, {} handshakes, {} failures", figures.name, ids.size(),
                         format_ms(figures.wall_ms), figures.handshakes, figures.failures));
    run.sweeps.push_back(std::move(figures));
  }
  co_await registry->async_shutdown(Deadline::after(30s));
  co_return run;
}

std::string report(const Settings& settings, const Run& run, rlim_t fds,
                   std::chrono::milliseconds idle_timeout) {
  std::string out = fmt::format(
      "## healer-fleet-bench: metrics::async_collect over {} simulated hosts\n\n"
      "One pool::Registry, one io_context thread; concurrency {}, max_handshakes_total {}, "
      "known_hosts {}, simulator latency {} ms, pool idle_timeout {} ms, fd limit {}. "
      "{} cores, {}.\n\n",
      settings.hosts, settings.concurrency, settings.max_handshakes, settings.known_hosts,
      settings.latency, idle_timeout.count(), fds, std::thread::hardware_concurrency(),
      "simulator and client on the same machine");
  out +=
      "| sweep | wall | client CPU | client CPU / server | client RSS | handshakes | failures | "
      "sim CPU | sim connections | sim commands | sim RSS | sim sessions open |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& sweep : run.sweeps) {
    out += fmt::format(
        "| {} | {} | {} | {:.2f} ms | {:.1f} MiB | {} | {} | {} | {} | {} | {:.1f} MiB | {} |\n",
        sweep.name, format_ms(sweep.wall_ms), format_ms(sweep.client_cpu_ms),
        sweep.client_cpu_ms / static_cast<double>(settings.hosts), sweep.client_rss_mib,
        sweep.handshakes, sweep.failures, format_ms(sweep.sim_cpu_ms), sweep.sim_connections,
        sweep.sim_commands, sweep.sim_rss_mib, sweep.sim_sessions);
  }
  out += "\n";
  const auto& cold = run.sweeps.front();
  const auto per = [](double total, std::uint64_t count) {
    return count > 0 ? total / static_cast<double>(count) : 0.0;
  };
  const double per_connection_and_command = per(cold.sim_cpu_ms, cold.sim_connections);
  // A warm sweep only measures commands when it reused every session (no handshake).
  double warm_cpu = 0;
  std::uint64_t warm_commands = 0;
  for (std::size_t i = 1; i < run.sweeps.size(); ++i) {
    if (run.sweeps[i].handshakes == 0) {
      warm_cpu += run.sweeps[i].sim_cpu_ms;
      warm_commands += run.sweeps[i].sim_commands;
    }
  }
  if (warm_commands > 0) {
    const double per_command = per(warm_cpu, warm_commands);
    out += fmt::format(
        "- simulator CPU per command (the probe on a pooled session): {:.3f} ms; per connection "
        "(key exchange, host key, publickey auth): {:.3f} ms ({:.3f} ms with its command)\n",
        per_command, per_connection_and_command - per_command, per_connection_and_command);
  } else {
    out += fmt::format(
        "- simulator CPU per connection with its command: {:.3f} ms (no warm sweep reused its "
        "sessions, so no per-command figure)\n",
        per_connection_and_command);
  }
  const auto& last = run.sweeps.back();
  if (last.sim_sessions == settings.hosts) {
    out += fmt::format(
        "- simulator RSS: {:.1f} MiB before any connection, {:.1f} MiB with {} idle sessions: "
        "{:.1f} KiB per idle session (heap in use: {:.1f} KiB per session)\n",
        run.sim_rss_before_mib, last.sim_rss_mib, last.sim_sessions,
        (last.sim_rss_mib - run.sim_rss_before_mib) * 1024.0 /
            static_cast<double>(last.sim_sessions),
        (last.sim_heap_in_use_mib - run.sim_heap_before_mib) * 1024.0 /
            static_cast<double>(last.sim_sessions));
    out += fmt::format(
        "- client RSS: {:.1f} MiB before, {:.1f} MiB with {} pooled sessions: {:.1f} KiB per "
        "server; client descriptors open: {}\n",
        run.client_rss_before_mib, last.client_rss_mib, last.sim_sessions,
        (last.client_rss_mib - run.client_rss_before_mib) * 1024.0 /
            static_cast<double>(settings.hosts),
        last.client_fds);
  } else {
    out += fmt::format(
        "- sessions were not all kept ({} open at the end), so no per-idle-session memory; "
        "simulator heap in use {:.1f} MiB, client RSS {:.1f} MiB\n",
        last.sim_sessions, last.sim_heap_in_use_mib, last.client_rss_mib);
  }
  out +=
      fmt::format("- client CPU per server: cold {:.2f} ms, last sweep {:.2f} ms\n",
                  per(cold.client_cpu_ms, settings.hosts), per(last.client_cpu_ms, settings.hosts));
  for (const auto& sweep : run.sweeps) {
    const auto hosts = static_cast<double>(settings.hosts);
    out += fmt::format(
        "- client per server, {} sweep: user {:.3f} ms, system {:.3f} ms, {:.1f} minor page "
        "faults, {:.1f} context switches\n",
        sweep.name, sweep.client.user_ms / hosts, sweep.client.system_ms / hosts,
        sweep.client.minor_faults / hosts, sweep.client.context_switches / hosts);
  }
  for (const auto& sweep : run.sweeps) {
    if (!sweep.first_failure.empty()) {
      out += fmt::format("- {} sweep, first failure: {}\n", sweep.name,
                         trimmed_tail(sweep.first_failure, 300));
    }
  }
  return out;
}

int bench_main(Settings settings) {
  if (settings.large) {
    settings.hosts = 10000;
  }
  const rlim_t fds = fd_limit();
  test::FleetSim::Options options;
  options.hosts = settings.hosts;
  options.latency = settings.latency;
  options.known_hosts_per_host = settings.known_hosts == "per-host";
  options.verbose = false;
  options.max_lifetime = std::chrono::seconds(3600);
  test::FleetSim sim(options);
  progress(fmt::format("starting healer-fleet-sim with {} hosts", settings.hosts));
  sim.start();
  progress(fmt::format("simulator up: pid {}, port {}, RSS {:.1f} MiB", sim.pid(), sim.port(),
                       rss_mib(sim.pid())));

  PoolConfig config;
  config.max_handshakes_total = settings.max_handshakes;
  config.max_concurrent_total =
      std::max<std::size_t>(config.max_concurrent_total, settings.concurrency);
  // The client holds one descriptor per pooled session: keep sessions only if they fit.
  const bool keep = static_cast<rlim_t>(settings.hosts) + 1024 < fds;
  config.idle_timeout =
      std::chrono::milliseconds(settings.idle_timeout_ms.value_or(keep ? 3600000 : 1000));
  config.cleanup_interval = std::min(config.cleanup_interval, config.idle_timeout);
  if (!keep && !settings.idle_timeout_ms) {
    progress(
        fmt::format("{} hosts do not fit the fd limit {}: idle sessions "
                    "close after 1 s (no warm reuse)",
                    settings.hosts, fds));
  }
  asio::io_context io(1);
  pool::Registry registry(io.get_executor(), config);
  std::vector<std::string> ids;
  for (std::size_t host = 0; host < settings.hosts; ++host) {
    registry.add_server(test::pool_server(sim, host));
    ids.push_back(sim.host(host));
  }
  const auto run =
      test::run_async(io, async_bench(&registry, &sim, ids, settings), std::chrono::hours(1));
  const auto text = report(settings, run, fds, config.idle_timeout);
  std::cout << text << std::flush;
  if (!settings.markdown_out.empty()) {
    std::ofstream(settings.markdown_out) << text;
  }
  return 0;
}

}  // namespace
}  // namespace healer::bench

int main(int argc, char** argv) {
  healer::bench::Settings settings;
  CLI::App app{"healer-fleet-bench: metrics sweeps over a simulated fleet (healer-fleet-sim)"};
  app.add_option("--hosts", settings.hosts, "simulated hosts (servers in the registry)");
  app.add_flag("--large", settings.large, "10,000 hosts");
  app.add_option("--concurrency", settings.concurrency, "servers collected at once");
  app.add_option("--warm-sweeps", settings.warm_sweeps, "sweeps after the cold one");
  app.add_option("--max-handshakes", settings.max_handshakes, "PoolConfig::max_handshakes_total");
  app.add_option("--known-hosts", settings.known_hosts,
                 "shared (one file, one line per host) or per-host (one file per host)")
      ->check(CLI::IsMember({"shared", "per-host"}));
  app.add_option("--latency", settings.latency,
                 "simulator delay before each answer, ms (N or A-B)");
  app.add_option("--timeout", settings.timeout_s, "per server and sweep, seconds");
  app.add_option("--idle-timeout-ms", settings.idle_timeout_ms,
                 "PoolConfig::idle_timeout (default: keep sessions when descriptors allow)");
  app.add_option("--markdown-out", settings.markdown_out, "also write the report here");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);  // before any module logger copies the level
  try {
    return healer::bench::bench_main(settings);
  } catch (const std::exception& error) {
    std::cerr << "healer-fleet-bench: " << error.what() << '\n';
    return 1;
  }
}
