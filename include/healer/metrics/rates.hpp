#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/metrics/probe.hpp"

namespace healer::metrics {

/// Share of CPU time by mode over an interval, in percent (0..100; the eight modes sum to 100).
struct CpuUsage {
  double busy = 0.0;  ///< everything but idle and iowait (steal included)
  double user = 0.0;  ///< guest time is inside user / nice, as in /proc/stat
  double nice = 0.0;
  double system = 0.0;
  double idle = 0.0;
  double iowait = 0.0;
  double irq = 0.0;
  double softirq = 0.0;
  double steal = 0.0;
};

/// Bytes per second of one disk over an interval.
struct DiskRate {
  std::string device;
  double read_bytes_per_second = 0.0;
  double write_bytes_per_second = 0.0;
};

/// Bytes per second of one interface over an interval.
struct NetRate {
  std::string device;
  double receive_bytes_per_second = 0.0;
  double transmit_bytes_per_second = 0.0;
};

/// Rates between two samples of one server. A part is empty when either sample lacks it.
struct Rates {
  double interval_seconds = 0.0;
  std::optional<CpuUsage> cpu;   ///< over the CPUs online in both samples
  std::vector<DiskRate> disks;   ///< devices present in both samples, current order
  std::vector<NetRate> network;  ///< interfaces present in both samples, current order
};

/// The counters compute_rates() reads (CPU seconds per CPU and mode, boot time, disk and network
/// byte counters), rebuilt from metrics as to_metrics(Sample) named them: a collection read back
/// from the store, so a one-shot CLI gets rates from the previous run.
[[nodiscard]] Sample counters_from_metrics(const std::vector<Metric>& metrics);

/// Only what compute_rates() reads of a sample as `previous` (user_hz, CPU times and boot time,
/// disk and network counters): what a process remembers per server between collections.
[[nodiscard]] Sample rate_counters(Sample sample);

/// Rates from `previous` (taken at `previous_at`) to `current` (at `current_at`). Counters that
/// went backwards count as 0 (never a negative rate); CPUs online in only one sample are left
/// out. Errc::rebooted when the boot times differ by more than 2 s (no rate spans a reboot),
/// Errc::no_interval when current_at is not after previous_at.
[[nodiscard]] Result<Rates> compute_rates(const Sample& previous,
                                          std::chrono::system_clock::time_point previous_at,
                                          const Sample& current,
                                          std::chrono::system_clock::time_point current_at);

/// The rates as metrics: healer_cpu_busy_percent, healer_cpu_mode_percent{mode},
/// healer_disk_{read,write}_bytes_per_second{device},
/// healer_network_{receive,transmit}_bytes_per_second{device}.
[[nodiscard]] std::vector<Metric> to_metrics(const Rates& rates);

}  // namespace healer::metrics
