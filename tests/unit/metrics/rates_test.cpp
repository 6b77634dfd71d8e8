// compute_rates(): CPU shares over CPUs online in both samples, guest not counted twice,
// counters going backwards clamped, reboots detected, bytes/s from the interval.
#include "healer/metrics/rates.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "fixture.hpp"
#include "healer/metrics/errors.hpp"
#include "healer/metrics/probe.hpp"

namespace healer::metrics {
namespace {

using std::chrono::seconds;
using std::chrono::system_clock;
using testing::fixture;

const system_clock::time_point kT0{seconds(1'700'000'000)};

Sample stat_sample(const std::string& name) {
  Sample sample;
  auto stat = parse_proc_stat(fixture(name), 100.0);
  EXPECT_TRUE(stat) << stat.error().message();
  sample.stat = std::move(stat).value();
  return sample;
}

Sample cpu_sample(CpuTimes times, std::uint64_t boot_time = 1000) {
  Sample sample;
  ProcStat stat;
  stat.cpus.push_back(CpuLine{0, times});
  stat.all = times;
  stat.boot_time = boot_time;
  sample.stat = stat;
  return sample;
}

TEST(Rates, OfflineCpuLeftOut) {
  const auto rates = compute_rates(stat_sample("stat_6.8_4cpu"), kT0,
                                   stat_sample("stat_6.8_4cpu_offline"), kT0 + seconds(10));
  ASSERT_TRUE(rates) << rates.error().message();
  ASSERT_TRUE(rates->cpu);
  // cpu0 and cpu1: +100 user, +50 system, +500 idle each; cpu3 idle; cpu2 gone.
  EXPECT_NEAR(rates->cpu->busy, 100.0 * 300 / 1300, 1e-9);
  EXPECT_NEAR(rates->cpu->user, 100.0 * 200 / 1300, 1e-9);
  EXPECT_NEAR(rates->cpu->system, 100.0 * 100 / 1300, 1e-9);
  EXPECT_NEAR(rates->cpu->idle, 100.0 * 1000 / 1300, 1e-9);
  EXPECT_DOUBLE_EQ(rates->cpu->iowait, 0.0);
  EXPECT_DOUBLE_EQ(rates->interval_seconds, 10.0);
}

TEST(Rates, GuestTimeNotCountedTwice) {
  CpuTimes before;
  before.user = 100;
  before.idle = 100;
  CpuTimes after = before;
  after.user = 150;  // 50 s of user, all of it running a guest
  after.guest = 50;
  after.idle = 150;
  const auto rates = compute_rates(cpu_sample(before), kT0, cpu_sample(after), kT0 + seconds(1));
  ASSERT_TRUE(rates);
  ASSERT_TRUE(rates->cpu);
  EXPECT_DOUBLE_EQ(rates->cpu->busy, 50.0);
  EXPECT_DOUBLE_EQ(rates->cpu->user, 50.0);
  EXPECT_DOUBLE_EQ(rates->cpu->idle, 50.0);
}

TEST(Rates, CountersGoingBackwardsAreZeroNotNegative) {
  CpuTimes before;
  before.user = 100;
  before.system = 50;
  before.idle = 100;
  CpuTimes after = before;
  after.user = 90;  // backwards (a buggy hypervisor, or a counter reset)
  after.idle = 110;
  Sample previous = cpu_sample(before);
  Sample current = cpu_sample(after);
  previous.network = std::vector<NetDev>{{"eth0", 1000, 0, 0, 0, 5000, 0, 0, 0}};
  current.network = std::vector<NetDev>{{"eth0", 400, 0, 0, 0, 7000, 0, 0, 0}};
  previous.disks = std::vector<DiskStats>{{"sda", 0, 0, 4096, 8192, 1.0}};
  current.disks = std::vector<DiskStats>{{"sda", 0, 0, 1024, 8192 + 2048, 1.0},
                                         {"sdb", 0, 0, 1, 1, std::nullopt}};
  const auto rates = compute_rates(previous, kT0, current, kT0 + seconds(2));
  ASSERT_TRUE(rates);
  ASSERT_TRUE(rates->cpu);
  EXPECT_DOUBLE_EQ(rates->cpu->user, 0.0);
  EXPECT_DOUBLE_EQ(rates->cpu->idle, 100.0);
  EXPECT_DOUBLE_EQ(rates->cpu->busy, 0.0);
  ASSERT_EQ(rates->network.size(), 1U);
  EXPECT_DOUBLE_EQ(rates->network[0].receive_bytes_per_second, 0.0);
  EXPECT_DOUBLE_EQ(rates->network[0].transmit_bytes_per_second, 1000.0);
  ASSERT_EQ(rates->disks.size(), 1U);  // sdb is new: no rate yet
  EXPECT_EQ(rates->disks[0].device, "sda");
  EXPECT_DOUBLE_EQ(rates->disks[0].read_bytes_per_second, 0.0);
  EXPECT_DOUBLE_EQ(rates->disks[0].write_bytes_per_second, 1024.0);
}

TEST(Rates, RebootDetectedFromBootTime) {
  CpuTimes times;
  times.idle = 10;
  const auto rebooted =
      compute_rates(cpu_sample(times, 1000), kT0, cpu_sample(times, 5000), kT0 + seconds(60));
  ASSERT_FALSE(rebooted);
  EXPECT_EQ(rebooted.error().code, Errc::rebooted);
  // A second of btime wobble (NTP) is not a reboot.
  CpuTimes later = times;
  later.idle = 20;
  const auto wobble =
      compute_rates(cpu_sample(times, 1000), kT0, cpu_sample(later, 1001), kT0 + seconds(10));
  ASSERT_TRUE(wobble);
  EXPECT_DOUBLE_EQ(wobble->cpu->idle, 100.0);
}

TEST(Rates, NoIntervalAndMissingParts) {
  const Sample empty;
  const auto same_time = compute_rates(empty, kT0, empty, kT0);
  ASSERT_FALSE(same_time);
  EXPECT_EQ(same_time.error().code, Errc::no_interval);
  const auto nothing = compute_rates(empty, kT0, empty, kT0 + seconds(1));
  ASSERT_TRUE(nothing);
  EXPECT_FALSE(nothing->cpu);
  EXPECT_TRUE(nothing->disks.empty());
  // No time passed on the CPUs: no share rather than a division by zero.
  CpuTimes times;
  times.idle = 5;
  const auto idle = compute_rates(cpu_sample(times), kT0, cpu_sample(times), kT0 + seconds(1));
  ASSERT_TRUE(idle);
  EXPECT_FALSE(idle->cpu);
}

// What a daemon keeps per server between collections (rate_counters) gives the same rates as the
// whole sample, and leaves out what rates never read.
TEST(Rates, TheKeptCountersGiveTheSameRatesAsTheWholeSample) {
  const auto first = parse_probe_output(fixture("probe_full.out"), "", testing::kFixtureMarker);
  ASSERT_TRUE(first) << first.error().message();
  Sample later = *first;
  ASSERT_TRUE(later.stat && later.stat->all && later.disks && later.network);
  ASSERT_FALSE(later.disks->empty());
  ASSERT_FALSE(later.network->empty());
  later.stat->all->user += 50;
  later.stat->all->idle += 150;
  for (auto& cpu : later.stat->cpus) {
    cpu.times.user += 50.0 / static_cast<double>(later.stat->cpus.size());
    cpu.times.idle += 150.0 / static_cast<double>(later.stat->cpus.size());
  }
  later.disks->front().read_bytes += 2048 * 512;
  later.network->front().receive_bytes += 1 << 20;
  const auto whole = compute_rates(*first, kT0, later, kT0 + seconds(10));
  const Sample kept = rate_counters(*first);
  const auto from_kept = compute_rates(kept, kT0, later, kT0 + seconds(10));
  ASSERT_TRUE(whole && from_kept);
  ASSERT_TRUE(whole->cpu);
  const auto expected = to_metrics(*whole);
  const auto got = to_metrics(*from_kept);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_GT(expected.size(), 10U);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].name, expected[i].name);
    EXPECT_EQ(got[i].labels, expected[i].labels);
    EXPECT_EQ(got[i].value, expected[i].value) << got[i].name;
  }
  EXPECT_FALSE(kept.memory || kept.filesystems || kept.uname || kept.vmstat || kept.load);
}

TEST(Rates, AsMetrics) {
  Rates rates;
  rates.cpu = CpuUsage{};
  rates.cpu->busy = 12.5;
  rates.disks.push_back({"sda", 10.0, 20.0});
  rates.network.push_back({"eth0", 30.0, 40.0});
  const auto metrics = to_metrics(rates);
  ASSERT_EQ(metrics.size(), 1U + 8U + 2U + 2U);
  EXPECT_EQ(metrics[0].name, "healer_cpu_busy_percent");
  EXPECT_DOUBLE_EQ(metrics[0].value, 12.5);
  EXPECT_EQ(series_key(metrics[9]), R"(healer_disk_read_bytes_per_second{device="sda"})");
  EXPECT_EQ(series_key(metrics[12]), R"(healer_network_transmit_bytes_per_second{device="eth0"})");
  EXPECT_DOUBLE_EQ(metrics[12].value, 40.0);
}

}  // namespace
}  // namespace healer::metrics
