#include "healer/metrics/rates.hpp"

#include <algorithm>
#include <cmath>

#include "healer/metrics/errors.hpp"

namespace healer::metrics {
namespace {

// btime is derived from the wall clock minus uptime and wobbles by a second under NTP slewing;
// a reboot moves it by at least the reboot's duration.
constexpr double kBootTimeTolerance = 2.0;

// A counter's increase; a counter that went backwards (wrapped, reset, driver reload) counts as
// no increase, never as a negative one.
double increase(double previous, double current) noexcept {
  return current >= previous ? current - previous : 0.0;
}

double increase(std::uint64_t previous, std::uint64_t current) noexcept {
  return current >= previous ? static_cast<double>(current - previous) : 0.0;
}

struct ModeDeltas {
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
};

void accumulate(ModeDeltas& sum, const CpuTimes& previous, const CpuTimes& current) {
  sum.user += increase(previous.user, current.user);
  sum.nice += increase(previous.nice, current.nice);
  sum.system += increase(previous.system, current.system);
  sum.idle += increase(previous.idle, current.idle);
  sum.iowait += increase(previous.iowait, current.iowait);
  sum.irq += increase(previous.irq, current.irq);
  sum.softirq += increase(previous.softirq, current.softirq);
  sum.steal += increase(previous.steal, current.steal);
}

std::optional<CpuUsage> cpu_usage(const ProcStat& previous, const ProcStat& current) {
  ModeDeltas sum;
  bool any = false;
  // Per CPU, over the CPUs online in both samples: a CPU that went offline takes its time out
  // of the aggregate "cpu" line, which would read as counters going backwards.
  for (const auto& line : current.cpus) {
    const auto before = std::find_if(previous.cpus.begin(), previous.cpus.end(),
                                     [&](const CpuLine& p) { return p.cpu == line.cpu; });
    if (before != previous.cpus.end()) {
      accumulate(sum, before->times, line.times);
      any = true;
    }
  }
  if (!any) {
    if (!previous.all || !current.all) {
      return std::nullopt;
    }
    accumulate(sum, *previous.all, *current.all);
  }
  // guest / guest_nice are inside user / nice already: not added again.
  const double total =
      sum.user + sum.nice + sum.system + sum.idle + sum.iowait + sum.irq + sum.softirq + sum.steal;
  if (!(total > 0.0)) {
    return std::nullopt;
  }
  const auto pct = [total](double part) { return 100.0 * part / total; };
  CpuUsage usage;
  usage.user = pct(sum.user);
  usage.nice = pct(sum.nice);
  usage.system = pct(sum.system);
  usage.idle = pct(sum.idle);
  usage.iowait = pct(sum.iowait);
  usage.irq = pct(sum.irq);
  usage.softirq = pct(sum.softirq);
  usage.steal = pct(sum.steal);
  usage.busy = pct(total - sum.idle - sum.iowait);
  return usage;
}

}  // namespace

Sample rate_counters(Sample sample) {
  Sample kept;
  kept.user_hz = sample.user_hz;
  kept.stat = std::move(sample.stat);
  kept.disks = std::move(sample.disks);
  kept.network = std::move(sample.network);
  return kept;
}

Result<Rates> compute_rates(const Sample& previous,
                            std::chrono::system_clock::time_point previous_at,
                            const Sample& current,
                            std::chrono::system_clock::time_point current_at) {
  if (current_at <= previous_at) {
    return make_error(Errc::no_interval, "the current sample is not later than the previous one");
  }
  if (previous.stat && current.stat && previous.stat->boot_time && current.stat->boot_time) {
    const double before = static_cast<double>(*previous.stat->boot_time);
    const double now = static_cast<double>(*current.stat->boot_time);
    if (std::fabs(now - before) > kBootTimeTolerance) {
      return make_error(Errc::rebooted, "boot time changed from " +
                                            std::to_string(*previous.stat->boot_time) + " to " +
                                            std::to_string(*current.stat->boot_time));
    }
  }
  Rates rates;
  rates.interval_seconds = std::chrono::duration<double>(current_at - previous_at).count();
  if (previous.stat && current.stat) {
    rates.cpu = cpu_usage(*previous.stat, *current.stat);
  }
  if (previous.disks && current.disks) {
    for (const auto& disk : *current.disks) {
      const auto before = std::find_if(previous.disks->begin(), previous.disks->end(),
                                       [&](const DiskStats& d) { return d.device == disk.device; });
      if (before != previous.disks->end()) {
        rates.disks.push_back(DiskRate{
            disk.device, increase(before->read_bytes, disk.read_bytes) / rates.interval_seconds,
            increase(before->written_bytes, disk.written_bytes) / rates.interval_seconds});
      }
    }
  }
  if (previous.network && current.network) {
    for (const auto& dev : *current.network) {
      const auto before = std::find_if(previous.network->begin(), previous.network->end(),
                                       [&](const NetDev& d) { return d.device == dev.device; });
      if (before != previous.network->end()) {
        rates.network.push_back(NetRate{
            dev.device, increase(before->receive_bytes, dev.receive_bytes) / rates.interval_seconds,
            increase(before->transmit_bytes, dev.transmit_bytes) / rates.interval_seconds});
      }
    }
  }
  return rates;
}

std::vector<Metric> to_metrics(const Rates& rates) {
  std::vector<Metric> out;
  if (rates.cpu) {
    const CpuUsage& cpu = *rates.cpu;
    out.push_back({"healer_cpu_busy_percent", {}, cpu.busy});
    const std::pair<const char*, double> modes[] = {
        {"user", cpu.user},     {"nice", cpu.nice}, {"system", cpu.system},   {"idle", cpu.idle},
        {"iowait", cpu.iowait}, {"irq", cpu.irq},   {"softirq", cpu.softirq}, {"steal", cpu.steal}};
    for (const auto& [mode, percent] : modes) {
      out.push_back({"healer_cpu_mode_percent", {{"mode", mode}}, percent});
    }
  }
  for (const auto& disk : rates.disks) {
    out.push_back({"healer_disk_read_bytes_per_second",
                   {{"device", disk.device}},
                   disk.read_bytes_per_second});
    out.push_back({"healer_disk_write_bytes_per_second",
                   {{"device", disk.device}},
                   disk.write_bytes_per_second});
  }
  for (const auto& dev : rates.network) {
    out.push_back({"healer_network_receive_bytes_per_second",
                   {{"device", dev.device}},
                   dev.receive_bytes_per_second});
    out.push_back({"healer_network_transmit_bytes_per_second",
                   {{"device", dev.device}},
                   dev.transmit_bytes_per_second});
  }
  return out;
}

}  // namespace healer::metrics
