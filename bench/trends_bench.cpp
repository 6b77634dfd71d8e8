// healer-trends-bench: what the daemon's per-server history (src/daemon/trends.hpp) holds for a
// fleet once it is full: a day of sparkline buckets and an hour of pool points per server, as
// the daemon keeps them, next to what a 6-minute soak of healer-daemon-bench has seen. The
// heap is read with mallinfo2 before and after, in one process; nothing else allocates between.
//
//   healer-trends-bench [--servers 10000] [--interval 300]

#include <fmt/format.h>
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "healer/daemon/fleet.hpp"
#include "healer/pool/pool.hpp"
#include "trends.hpp"

namespace {

using healer::daemon::CollectionSummary;
using healer::daemon::FleetState;
using healer::daemon::Trends;

std::size_t heap_in_use() { return mallinfo2().uordblks; }

struct Fill {
  FleetState fleet;
  std::unique_ptr<Trends> trends;
  std::vector<double> figures_ms;  // per sampler minute: record_figures over the fleet
  std::vector<double> pool_ms;     // per sampler minute: every server's pool point
};

double median(std::vector<double> values) {
  if (values.empty()) {
    return 0;
  }
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2),
                   values.end());
  return values[values.size() / 2];
}

// Runs `minutes` of the daemon's sampling over `servers` servers collected every `interval_s`:
// the figures recorded at every sampler tick (5 s; only a new collection changes anything, so
// a tick per collection is the same), a pool sample per server every minute, each collection
// one acquisition, one command and a wait of a few microseconds, as on a warm pool.
void run(Fill& fill, std::size_t servers, int interval_s, int minutes) {
  constexpr std::int64_t kStart = 1'790'000'000'000;  // Unix ms, a fixed day
  std::vector<healer::pool::PoolStats> pools(servers);
  std::vector<std::string> names;
  names.reserve(servers);
  for (std::size_t i = 0; i < servers; ++i) {
    names.push_back(fmt::format("sim-{:05}", i));
    fill.fleet.servers().try_emplace(names.back());
    pools[i].sessions_ready = 1;
  }
  const auto interval_ms = static_cast<std::int64_t>(interval_s) * 1000;
  for (std::int64_t at = kStart; at < kStart + std::int64_t{minutes} * 60'000; at += 60'000) {
    // This minute's collections: each server once per interval, spread over it.
    for (std::size_t i = 0; i < servers; ++i) {
      const std::int64_t offset =
          static_cast<std::int64_t>(i) * interval_ms / static_cast<std::int64_t>(servers);
      const std::int64_t due =
          at - ((at - kStart - offset) % interval_ms + interval_ms) % interval_ms;
      if (due <= at - 60'000 || due > at) {
        continue;
      }
      auto& state = fill.fleet.servers().find(names[i])->second;
      CollectionSummary summary;
      summary.collected_at = due;
      summary.load1 = 0.25 + static_cast<double>(i % 7) / 10.0;
      summary.memory_used_percent = 40.0 + static_cast<double>(i % 30);
      summary.disk_used_percent = 55.5;
      summary.cpu_busy_percent = 3.0 + static_cast<double>(i % 11);
      state.collection = std::move(summary);
      auto& pool = pools[i];
      ++pool.acquisitions;
      ++pool.served_by_existing;
      ++pool.commands;
      pool.wait_time.record(std::chrono::microseconds(4));
    }
    const auto started = std::chrono::steady_clock::now();
    fill.trends->record_figures(fill.fleet);
    const auto figured = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < servers; ++i) {
      fill.trends->record_pool_server(at, names[i], pools[i]);
    }
    const auto pooled = std::chrono::steady_clock::now();
    fill.figures_ms.push_back(std::chrono::duration<double, std::milli>(figured - started).count());
    fill.pool_ms.push_back(std::chrono::duration<double, std::milli>(pooled - figured).count());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"the daemon's per-server history: memory once full"};
  std::size_t servers = 10000;
  int interval_s = 300;
  app.add_option("--servers", servers, "servers in the fleet");
  app.add_option("--interval", interval_s, "metrics_interval in seconds");
  CLI11_PARSE(app, argc, argv);
  if (servers == 0 || interval_s <= 0) {
    std::cerr << "--servers and --interval must be positive\n";
    return 2;
  }

  std::cout << fmt::format(
      "healer-trends-bench: {} servers collected every {} s, the daemon's Trends options "
      "(sparkline buckets of 30 min x 48, a pool point per server a minute, 60 kept)\n",
      servers, interval_s);
  std::cout << "| history | heap for the trends | per server | loop time: figures per tick, every "
               "server's pool point at once (the daemon takes a twelfth a tick) (medians) "
               "|\n|---|---|---|---|\n";
  for (const int minutes : {6, 60, 24 * 60}) {
    Fill fill;
    run(fill, servers, interval_s, 0);  // the fleet's own entries, outside the figure
    const auto before = heap_in_use();
    fill.trends = std::make_unique<Trends>();
    run(fill, servers, interval_s, minutes);
    const auto after = heap_in_use();
    const auto bytes = static_cast<double>(after - before);
    std::cout << fmt::format("| {} min | {:.1f} MiB | {:.0f} B | {:.2f} ms, {:.2f} ms |\n", minutes,
                             bytes / (1024.0 * 1024.0), bytes / static_cast<double>(servers),
                             median(fill.figures_ms), median(fill.pool_ms));
  }
  return 0;
}
