// Metrics read back from the store: labels parse back to what was formatted, and rates computed
// from stored collections equal rates computed from the original samples.
#include <gtest/gtest.h>

#include <chrono>

#include "healer/metrics/errors.hpp"
#include "healer/metrics/metric.hpp"
#include "healer/metrics/probe.hpp"
#include "healer/metrics/rates.hpp"

namespace healer::metrics {
namespace {

TEST(StoredMetrics, LabelsRoundTrip) {
  const Labels labels{{"mountpoint", "/mnt/a \"b\"\\c\nd"}, {"device", "/dev/sda1"}, {"x", ""}};
  const auto text = format_labels(labels);
  auto parsed = parse_labels(text);
  ASSERT_TRUE(parsed) << parsed.error().message();
  Labels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(*parsed, sorted);
  EXPECT_TRUE(parse_labels("")->empty());
}

TEST(StoredMetrics, MalformedLabelsAreAnError) {
  for (const char* bad : {"cpu=0", "cpu=\"0", "=\"x\"", "a=\"1\"b=\"2\""}) {
    auto parsed = parse_labels(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, Errc::malformed) << bad;
  }
}

Sample make_sample(double scale, std::uint64_t boot) {
  Sample sample;
  ProcStat stat;
  stat.boot_time = boot;
  for (unsigned cpu = 0; cpu < 2; ++cpu) {
    CpuTimes t;
    t.user = 100 * scale + cpu;
    t.system = 50 * scale;
    t.idle = 800 * scale;
    t.iowait = 10 * scale;
    t.steal = 2 * scale;
    t.guest = 5 * scale;  // inside user already
    stat.cpus.push_back(CpuLine{cpu, t});
  }
  sample.stat = stat;
  DiskStats disk;
  disk.device = "sda";
  disk.read_bytes = static_cast<std::uint64_t>(1e6 * scale);
  disk.written_bytes = static_cast<std::uint64_t>(4e6 * scale);
  sample.disks = std::vector<DiskStats>{disk};
  NetDev dev;
  dev.device = "eth0";
  dev.receive_bytes = static_cast<std::uint64_t>(2e6 * scale);
  dev.transmit_bytes = static_cast<std::uint64_t>(3e5 * scale);
  sample.network = std::vector<NetDev>{dev};
  return sample;
}

// What the store gives back: names, label strings parsed again, values.
std::vector<Metric> through_store(const Sample& sample) {
  std::vector<Metric> out;
  for (auto metric : to_metrics(sample)) {
    auto labels = parse_labels(format_labels(metric.labels));
    EXPECT_TRUE(labels);
    out.push_back(Metric{metric.name, labels ? *labels : Labels{}, metric.value});
  }
  return out;
}

TEST(StoredMetrics, RatesFromStoredCollectionsMatchTheOriginals) {
  const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  const auto t1 = t0 + std::chrono::seconds(60);
  const auto a = make_sample(1.0, 1'700'000'000);
  const auto b = make_sample(1.5, 1'700'000'000);
  auto direct = compute_rates(a, t0, b, t1);
  auto stored = compute_rates(counters_from_metrics(through_store(a)), t0,
                              counters_from_metrics(through_store(b)), t1);
  ASSERT_TRUE(direct) << direct.error().message();
  ASSERT_TRUE(stored) << stored.error().message();
  ASSERT_TRUE(direct->cpu && stored->cpu);
  EXPECT_NEAR(stored->cpu->busy, direct->cpu->busy, 1e-9);
  EXPECT_NEAR(stored->cpu->iowait, direct->cpu->iowait, 1e-9);
  ASSERT_EQ(stored->disks.size(), 1u);
  EXPECT_NEAR(stored->disks[0].write_bytes_per_second, 2e6 / 60.0, 1e-6);
  ASSERT_EQ(stored->network.size(), 1u);
  EXPECT_EQ(stored->network[0].device, "eth0");
  EXPECT_NEAR(stored->network[0].receive_bytes_per_second,
              direct->network[0].receive_bytes_per_second, 1e-9);
}

TEST(StoredMetrics, RebootBetweenStoredCollectionsGivesNoRate) {
  const auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  auto rates =
      compute_rates(counters_from_metrics(through_store(make_sample(2.0, 1'700'000'000))), t0,
                    counters_from_metrics(through_store(make_sample(0.1, 1'700'000'500))),
                    t0 + std::chrono::seconds(60));
  ASSERT_FALSE(rates);
  EXPECT_EQ(rates.error().code, Errc::rebooted);
}

TEST(StoredMetrics, NothingUsefulGivesAnEmptySample) {
  const auto sample = counters_from_metrics({Metric{"node_load1", {}, 0.5}});
  EXPECT_FALSE(sample.stat.has_value());
  EXPECT_FALSE(sample.disks.has_value());
  EXPECT_FALSE(sample.network.has_value());
}

}  // namespace
}  // namespace healer::metrics
