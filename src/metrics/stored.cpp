// Metrics read back from the store: labels parsed again, and the counters rates need rebuilt
// into a Sample.
#include <algorithm>
#include <charconv>
#include <map>

#include "healer/metrics/errors.hpp"
#include "healer/metrics/metric.hpp"
#include "healer/metrics/rates.hpp"

namespace healer::metrics {
namespace {

Error malformed(std::string_view text) {
  return Error{make_error_code(Errc::malformed),
               "stored labels are not key=\"value\" pairs: " +
                   std::string(text.substr(0, std::min<std::size_t>(text.size(), 80)))};
}

std::string label(const Metric& metric, std::string_view key) {
  for (const auto& [k, v] : metric.labels) {
    if (k == key) {
      return v;
    }
  }
  return {};
}

}  // namespace

Result<Labels> parse_labels(std::string_view text) {
  Labels labels;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto eq = text.find('=', i);
    if (eq == std::string_view::npos || eq == i || eq + 1 >= text.size() || text[eq + 1] != '"') {
      return malformed(text);
    }
    std::string key(text.substr(i, eq - i));
    std::string value;
    std::size_t j = eq + 2;
    bool closed = false;
    for (; j < text.size(); ++j) {
      const char c = text[j];
      if (c == '\\' && j + 1 < text.size()) {
        const char next = text[++j];
        value += next == 'n' ? '\n' : next;
      } else if (c == '"') {
        closed = true;
        ++j;
        break;
      } else {
        value += c;
      }
    }
    if (!closed) {
      return malformed(text);
    }
    labels.emplace_back(std::move(key), std::move(value));
    if (j < text.size()) {
      if (text[j] != ',') {
        return malformed(text);
      }
      ++j;
    }
    i = j;
  }
  return labels;
}

Sample counters_from_metrics(const std::vector<Metric>& metrics) {
  Sample sample;
  std::map<unsigned, CpuTimes> cpus;
  std::map<std::string, DiskStats> disks;
  std::map<std::string, NetDev> network;
  ProcStat stat;
  bool have_stat = false;
  for (const auto& metric : metrics) {
    const auto as_u64 = [&metric] {
      return metric.value > 0 ? static_cast<std::uint64_t>(metric.value) : std::uint64_t{0};
    };
    if (metric.name == "node_cpu_seconds_total") {
      const auto cpu_text = label(metric, "cpu");
      unsigned cpu = 0;
      const auto [ptr, ec] =
          std::from_chars(cpu_text.data(), cpu_text.data() + cpu_text.size(), cpu);
      if (ec != std::errc() || ptr != cpu_text.data() + cpu_text.size()) {
        continue;
      }
      auto& times = cpus[cpu];
      const auto mode = label(metric, "mode");
      if (mode == "user") {
        times.user = metric.value;
      } else if (mode == "nice") {
        times.nice = metric.value;
      } else if (mode == "system") {
        times.system = metric.value;
      } else if (mode == "idle") {
        times.idle = metric.value;
      } else if (mode == "iowait") {
        times.iowait = metric.value;
      } else if (mode == "irq") {
        times.irq = metric.value;
      } else if (mode == "softirq") {
        times.softirq = metric.value;
      } else if (mode == "steal") {
        times.steal = metric.value;
      }
      have_stat = true;
    } else if (metric.name == "node_boot_time_seconds") {
      stat.boot_time = as_u64();
      have_stat = true;
    } else if (metric.name == "node_disk_read_bytes_total") {
      auto& disk = disks[label(metric, "device")];
      disk.read_bytes = as_u64();
    } else if (metric.name == "node_disk_written_bytes_total") {
      auto& disk = disks[label(metric, "device")];
      disk.written_bytes = as_u64();
    } else if (metric.name == "node_network_receive_bytes_total") {
      network[label(metric, "device")].receive_bytes = as_u64();
    } else if (metric.name == "node_network_transmit_bytes_total") {
      network[label(metric, "device")].transmit_bytes = as_u64();
    }
  }
  if (have_stat) {
    for (const auto& [cpu, times] : cpus) {
      stat.cpus.push_back(CpuLine{cpu, times});
    }
    sample.stat = std::move(stat);
  }
  if (!disks.empty()) {
    sample.disks.emplace();
    for (auto& [device, disk] : disks) {
      disk.device = device;
      sample.disks->push_back(std::move(disk));
    }
  }
  if (!network.empty()) {
    sample.network.emplace();
    for (auto& [device, dev] : network) {
      dev.device = device;
      sample.network->push_back(std::move(dev));
    }
  }
  return sample;
}

}  // namespace healer::metrics
