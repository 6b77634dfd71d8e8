// healer-daemon-bench: `healer serve` over a simulated fleet (tests/support/fleet_sim): a soak
// (RSS and descriptors over time, missed/skipped/late runs, daemon CPU per collection) and the
// API's latency (GET /api/v1/servers and /metrics, p50/p99) with every server's figures loaded.
//
//   healer-daemon-bench [--servers 100] [--interval 5] [--minutes 15] [--api-requests 200]
//   healer-daemon-bench --servers 500 --interval 60 --minutes 2     # the API with 500 servers
#include <arpa/inet.h>
#include <fmt/format.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "child_process.hpp"
#include "common.hpp"
#include "fleet_sim.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Sample {
  double seconds = 0;
  long rss_kib = 0;
  std::size_t fds = 0;
  double cpu_seconds = 0;
};

Sample sample_process(pid_t pid, Clock::time_point started) {
  Sample sample;
  sample.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const fs::path proc = fs::path("/proc") / std::to_string(pid);
  sample.rss_kib = healer::bench::status_kib(proc / "status", "VmRSS").value_or(0);
  std::error_code ec;
  for (auto it = fs::directory_iterator(proc / "fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++sample.fds;
  }
  std::ifstream stat(proc / "stat");
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  const auto close = text.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    long utime = 0;
    long stime = 0;
    for (int i = 3; fields >> field; ++i) {
      if (i == 14) {
        utime = std::stol(field);
      } else if (i == 15) {
        stime = std::stol(field);
        break;
      }
    }
    sample.cpu_seconds =
        static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return sample;
}

// One GET as a scraper does it (Prometheus parses the body as it streams in): a new connection,
// `Connection: close`, 64 KiB reads until the server closes; the head is kept, the body counted.
// The bench used cpp-httplib 0.11's client, which waits in select() before every 4 KiB read and
// keeps the body in a growing string: over the same 8 MB /metrics body it took ~140 ms where curl
// takes ~12 ms on this machine (and keeping the body alone ~60 ms: page faults of the growing
// buffer), so the bench timed its own client. Returns the status (0 on a socket error) and the
// body's size; a body shorter than its Content-Length counts as a failure (status 0).
std::pair<int, std::size_t> scrape(std::uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return {0, 0};
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string received;  // the first 64 KiB or more: the head
  std::size_t total = 0;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
    const std::string request =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      std::vector<char> buffer(64 * 1024);
      ssize_t n = 0;
      while ((n = ::recv(fd, buffer.data(), buffer.size(), 0)) > 0) {
        total += static_cast<std::size_t>(n);
        if (received.size() < buffer.size()) {
          received.append(buffer.data(), static_cast<std::size_t>(n));
        }
      }
    }
  }
  ::close(fd);
  const auto head_end = received.find("\r\n\r\n");
  if (!received.starts_with("HTTP/1.1 ") || head_end == std::string::npos) {
    return {0, 0};
  }
  const int status = std::atoi(received.c_str() + 9);
  const std::size_t body = total - head_end - 4;
  const auto length_at = received.find("Content-Length: ");
  if (length_at == std::string::npos || length_at > head_end ||
      std::stoull(received.substr(length_at + 16)) != body) {
    return {0, body};
  }
  return {status, body};
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const auto index = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"healer serve over a simulated fleet: soak figures and API latency"};
  std::size_t servers = 100;
  int interval = 5;
  double minutes = 15;
  int api_requests = 200;
  app.add_option("--servers", servers, "Simulated servers");
  app.add_option("--interval", interval, "metrics_interval in seconds");
  app.add_option("--minutes", minutes, "How long the soak runs");
  app.add_option("--api-requests", api_requests, "GETs per endpoint for the latency figures");
  std::vector<std::string> wrap;
  app.add_option("--wrap", wrap,
                 "Run the daemon under this command, e.g. --wrap heaptrack -o FILE (profiling "
                 "only: RSS, CPU and descriptor figures are then the wrapper's)")
      ->expected(1, 16);
  CLI11_PARSE(app, argc, argv);
  healer::bench::raise_fd_limit();

  healer::test::FleetSim::Options sim_options;
  sim_options.hosts = servers;
  sim_options.known_hosts_per_host = true;
  sim_options.verbose = false;
  sim_options.max_lifetime = std::chrono::seconds(static_cast<long>(minutes * 60) + 900);
  healer::test::FleetSim sim(sim_options);
  sim.start();

  healer::test::TempDir home;
  const auto db = home.path() / "healer.db";
  const auto config = home.path() / "config.toml";
  std::ofstream(config) << fmt::format(
      "[schedule]\nmetrics_interval = {}\ndiagnose_interval = 0\n[store]\nsamples_retention_days = "
      "1\n",
      interval);
  // The inventory from an OpenSSH client config: one import for every host.
  {
    std::ofstream ssh_config(home.path() / "ssh_config");
    for (std::size_t i = 0; i < servers; ++i) {
      ssh_config << fmt::format(
          "Host sim{:05}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n"
          "  UserKnownHostsFile {}\n",
          i, sim.host(i), sim.port(), sim.user(), sim.client_key_path().string(),
          sim.known_hosts_path(i).string());
    }
  }
  const std::vector<std::string> env{"env", "HOME=" + home.path().string(),
                                     "HEALER_DB=" + db.string(),
                                     "HEALER_CONFIG=" + config.string()};
  auto with_env = [&](std::vector<std::string> args, bool wrapped = false) {
    std::vector<std::string> command = env;
    if (wrapped) {
      command.insert(command.end(), wrap.begin(), wrap.end());
    }
    command.push_back(HEALER_BIN);
    command.insert(command.end(), args.begin(), args.end());
    return command;
  };
  const auto imported = healer::test::run_command(
      with_env({"server", "import", (home.path() / "ssh_config").string()}),
      std::chrono::minutes(5));
  if (imported.exit_code() != 0) {
    std::cerr << "import failed: " << imported.err << '\n';
    return 1;
  }
  const auto port = healer::test::closed_port();
  auto daemon = healer::test::ChildProcess::spawn(
      with_env({"serve", "--listen", "127.0.0.1:" + std::to_string(port)}, true),
      home.path() / "daemon.log");
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(std::chrono::seconds(30));
  if (!healer::test::poll_until(
          [&] {
            auto response = client.Get("/readyz");
            return response && response->status == 200;
          },
          std::chrono::seconds(60), std::chrono::milliseconds(100))) {
    std::cerr << "healer serve did not start\n";
    return 1;
  }
  const auto started = Clock::now();
  std::vector<Sample> samples;
  const auto end = started + std::chrono::milliseconds(static_cast<long>(minutes * 60000));
  // How long the loop makes a request wait while it collects: GET /healthz (no work of its own)
  // every 20 ms through the last two thirds of the soak (the first third opens the connections).
  std::vector<double> health_ms;
  std::thread health_probe([&] {
    std::this_thread::sleep_until(started + (end - started) / 3);
    while (Clock::now() < end) {
      const auto t0 = Clock::now();
      if (scrape(static_cast<std::uint16_t>(port), "/healthz").first == 200) {
        health_ms.push_back(healer::bench::ms_since(t0));
      }
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(20));
    }
  });
  while (Clock::now() < end) {
    samples.push_back(sample_process(daemon.pid(), started));
    std::this_thread::sleep_for(std::chrono::seconds(10));
  }
  health_probe.join();
  samples.push_back(sample_process(daemon.pid(), started));
  const auto scheduler = json::parse(client.Get("/api/v1/scheduler")->body);
  // The allocator's view at the same moment (healer_process_heap_bytes).
  double heap_in_use = 0;
  double heap_free = 0;
  if (auto own = client.Get("/metrics?servers=none"); own && own->status == 200) {
    std::istringstream lines(own->body);
    for (std::string line; std::getline(lines, line);) {
      const auto value = [&] { return std::stod(line.substr(line.rfind(' ') + 1)); };
      if (line.starts_with("healer_process_heap_bytes{state=\"in_use\"}")) {
        heap_in_use = value();
      } else if (line.starts_with("healer_process_heap_bytes{state=\"free\"}")) {
        heap_free = value();
      }
    }
  }

  // API latency with every server's figures in memory.
  std::vector<double> list_ms;
  std::vector<double> metrics_ms;
  std::size_t metrics_bytes = 0;
  std::size_t list_bytes = 0;
  for (int i = 0; i < api_requests; ++i) {
    auto t0 = Clock::now();
    const auto list = scrape(static_cast<std::uint16_t>(port), "/api/v1/servers?limit=1000");
    list_ms.push_back(healer::bench::ms_since(t0));
    t0 = Clock::now();
    const auto metrics = scrape(static_cast<std::uint16_t>(port), "/metrics");
    metrics_ms.push_back(healer::bench::ms_since(t0));
    if (list.first != 200 || metrics.first != 200) {
      std::cerr << "an API request failed\n";
      return 1;
    }
    metrics_bytes = metrics.second;
    list_bytes = list.second;
  }
  // What a large fleet's scrapers and dashboards ask instead: healer's own series, one of 20
  // shards of the per-server ones, the list's default page of 100, and the dashboard's walk of
  // the list's summary view (pages of 1,000, the next one each time).
  std::vector<double> fleet_ms;
  std::vector<double> shard_ms;
  std::vector<double> page_ms;
  std::vector<double> brief_ms;
  std::size_t brief_bytes = 0;
  std::size_t shard_bytes = 0;
  std::size_t fleet_bytes = 0;
  for (int i = 0; i < api_requests; ++i) {
    auto t0 = Clock::now();
    const auto fleet = scrape(static_cast<std::uint16_t>(port), "/metrics?servers=none");
    fleet_ms.push_back(healer::bench::ms_since(t0));
    t0 = Clock::now();
    const auto shard = scrape(static_cast<std::uint16_t>(port),
                              fmt::format("/metrics?shard={}&shards=20", i % 20));
    shard_ms.push_back(healer::bench::ms_since(t0));
    t0 = Clock::now();
    const auto page = scrape(static_cast<std::uint16_t>(port), "/api/v1/servers");
    page_ms.push_back(healer::bench::ms_since(t0));
    // Names are simNNNNN: the page after sim00999 starts at sim01000.
    const auto brief_page = static_cast<std::size_t>(i) % std::max<std::size_t>(servers / 1000, 1);
    const auto cursor =
        brief_page == 0 ? std::string() : fmt::format("&cursor=sim{:05}", brief_page * 1000 - 1);
    t0 = Clock::now();
    const auto brief = scrape(static_cast<std::uint16_t>(port),
                              "/api/v1/servers?view=summary&limit=1000" + cursor);
    // A daemon from before the summary view answers 400: its row stays empty.
    if (brief.first == 200) {
      brief_ms.push_back(healer::bench::ms_since(t0));
      brief_bytes = std::max(brief_bytes, brief.second);
    }
    if (fleet.first != 200 || shard.first != 200 || page.first != 200) {
      std::cerr << "an API request failed\n";
      return 1;
    }
    fleet_bytes = fleet.second;
    shard_bytes = std::max(shard_bytes, shard.second);
  }
  // What the requests left behind: the list's cached items of every server (what a dashboard
  // keeps warm) stay; the full /metrics' buffers go back to the system at the daemon's next
  // trim (once a minute).
  std::this_thread::sleep_for(std::chrono::seconds(65));
  const auto after_api = sample_process(daemon.pid(), started);
  daemon.signal(SIGTERM);
  const auto stopped = daemon.wait_for_exit(std::chrono::seconds(15));

  // RSS growth after the first two minutes (or the first third of a shorter run).
  const double settle = std::min(120.0, minutes * 60 / 3);
  const Sample* baseline = &samples.front();
  for (const auto& sample : samples) {
    if (sample.seconds >= settle) {
      baseline = &sample;
      break;
    }
  }
  const auto& last = samples.back();
  const double runs = scheduler["runs"]["metrics"].get<double>();
  const double elapsed = last.seconds;
  const double expected = static_cast<double>(servers) * elapsed / interval;
  fmt::print("healer serve over {} simulated servers, metrics every {} s, {:.1f} min\n", servers,
             interval, elapsed / 60);
  fmt::print("  collections        {:.0f} (expected ~{:.0f}: {:.1f}%), skipped {}, late {}\n", runs,
             expected, 100 * runs / expected, scheduler["skipped"]["metrics"].get<int>(),
             scheduler["late"]["metrics"].get<int>());
  fmt::print("  start delay p99    {:.1f} ms\n", scheduler["start_delay_p99_ms"].get<double>());
  fmt::print(
      "  RSS                {:.1f} MiB at {:.0f} s, {:.1f} MiB at the end: growth {:+.2f} MiB\n",
      static_cast<double>(baseline->rss_kib) / 1024, baseline->seconds,
      static_cast<double>(last.rss_kib) / 1024,
      static_cast<double>(last.rss_kib - baseline->rss_kib) / 1024);
  fmt::print(
      "  RSS after the API  {:.1f} MiB (the list cached for every server; 65 s after the last "
      "request, past the daemon's trim)\n",
      static_cast<double>(after_api.rss_kib) / 1024);
  fmt::print("  heap at the end    {:.1f} MiB in use, {:.1f} MiB free in the allocator\n",
             heap_in_use / 1048576, heap_free / 1048576);
  fmt::print("  descriptors        {} at {:.0f} s, {} at the end\n", baseline->fds,
             baseline->seconds, last.fds);
  fmt::print("  daemon CPU         {:.1f} s in all: {:.2f} ms per collection, {:.1f}% of a core\n",
             last.cpu_seconds, 1000 * last.cpu_seconds / std::max(runs, 1.0),
             100 * last.cpu_seconds / elapsed);
  const auto slow_health =
      std::count_if(health_ms.begin(), health_ms.end(), [](double ms) { return ms >= 20; });
  fmt::print(
      "  GET /healthz every 20 ms while collecting  p50 {:.2f} ms, p99 {:.2f} ms, p99.9 {:.2f} "
      "ms, max {:.2f} ms ({} requests, {} of 20 ms or more)\n",
      percentile(health_ms, 0.5), percentile(health_ms, 0.99), percentile(health_ms, 0.999),
      percentile(health_ms, 1.0), health_ms.size(), slow_health);
  fmt::print(
      "  GET /api/v1/servers?limit=1000  p50 {:.2f} ms, p99 {:.2f} ms ({} requests, {} KiB)\n",
      percentile(list_ms, 0.5), percentile(list_ms, 0.99), list_ms.size(), list_bytes / 1024);
  fmt::print("  GET /metrics         p50 {:.2f} ms, p99 {:.2f} ms ({} KiB)\n",
             percentile(metrics_ms, 0.5), percentile(metrics_ms, 0.99), metrics_bytes / 1024);
  fmt::print("  GET /api/v1/servers (default page of 100)  p50 {:.2f} ms, p99 {:.2f} ms\n",
             percentile(page_ms, 0.5), percentile(page_ms, 0.99));
  fmt::print(
      "  GET /api/v1/servers?view=summary&limit=1000 (pages in turn)  p50 {:.2f} ms, p99 {:.2f} "
      "ms (largest {} KiB)\n",
      percentile(brief_ms, 0.5), percentile(brief_ms, 0.99), brief_bytes / 1024);
  fmt::print("  GET /metrics?servers=none  p50 {:.2f} ms, p99 {:.2f} ms ({} KiB)\n",
             percentile(fleet_ms, 0.5), percentile(fleet_ms, 0.99), fleet_bytes / 1024);
  fmt::print("  GET /metrics?shard=I&shards=20  p50 {:.2f} ms, p99 {:.2f} ms (largest {} KiB)\n",
             percentile(shard_ms, 0.5), percentile(shard_ms, 0.99), shard_bytes / 1024);
  fmt::print("  SIGTERM            {}\n", stopped ? fmt::format("exit {}", stopped->exit_code)
                                                  : std::string("still running after 15 s"));
  fmt::print("  RSS over time (s: MiB, fds): ");
  for (const auto& sample : samples) {
    fmt::print("{:.0f}: {:.1f}/{}  ", sample.seconds, static_cast<double>(sample.rss_kib) / 1024,
               sample.fds);
  }
  fmt::print("\n");
  return 0;
}
