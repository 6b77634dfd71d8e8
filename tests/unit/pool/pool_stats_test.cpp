// The pool's counters as plain arithmetic: Histogram buckets and quantiles, hit rate, reuse, and
// PoolStats::operator+= (what total_stats() is built from). No sessions, no sockets.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

#include "healer/pool/pool.hpp"
#include "sparse_histogram.hpp"

namespace healer::pool {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(HistogramTest, BucketIIsBelowTwoToTheI) {
  Histogram histogram;
  histogram.record(microseconds(0));
  histogram.record(microseconds(1));
  histogram.record(microseconds(2));
  histogram.record(microseconds(3));
  histogram.record(microseconds(4));
  histogram.record(microseconds(1000));  // 512 <= 1000 < 1024
  EXPECT_EQ(histogram.counts[0], 1U);
  EXPECT_EQ(histogram.counts[1], 1U);
  EXPECT_EQ(histogram.counts[2], 2U);
  EXPECT_EQ(histogram.counts[3], 1U);
  EXPECT_EQ(histogram.counts[10], 1U);
  EXPECT_EQ(histogram.total, 6U);
  EXPECT_EQ(histogram.sum_us, 1010U);
}

TEST(HistogramTest, NegativeDurationsCountAsZero) {
  Histogram histogram;
  histogram.record(microseconds(-5));
  EXPECT_EQ(histogram.counts[0], 1U);
  EXPECT_EQ(histogram.sum_us, 0U);
}

TEST(HistogramTest, HugeValuesLandInTheLastBucket) {
  Histogram histogram;
  histogram.record(microseconds(std::int64_t{1} << 40));
  EXPECT_EQ(histogram.counts[Histogram::kBuckets - 1], 1U);
  EXPECT_EQ(histogram.total, 1U);
}

TEST(HistogramTest, QuantileIsTheUpperBoundOfItsBucket) {
  Histogram histogram;
  EXPECT_EQ(histogram.quantile_us(0.5), 0U);  // empty
  for (int i = 0; i < 90; ++i) {
    histogram.record(microseconds(100));  // bucket 7: [64, 128)
  }
  for (int i = 0; i < 10; ++i) {
    histogram.record(microseconds(5000));  // bucket 13: [4096, 8192)
  }
  EXPECT_EQ(histogram.quantile_us(0.0), 128U);
  EXPECT_EQ(histogram.quantile_us(0.5), 128U);
  EXPECT_EQ(histogram.quantile_us(0.9), 128U);
  EXPECT_EQ(histogram.quantile_us(0.91), 8192U);
  EXPECT_EQ(histogram.quantile_us(0.99), 8192U);
  EXPECT_EQ(histogram.quantile_us(1.0), 8192U);
  // Every quantile bounds at least that share of the samples from above.
  for (const double q : {0.1, 0.5, 0.9, 0.95, 0.99, 1.0}) {
    const auto bound = histogram.quantile_us(q);
    std::uint64_t below = 0;
    for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
      if ((std::uint64_t{1} << i) <= bound) {
        below += histogram.counts[i];
      }
    }
    EXPECT_GE(static_cast<double>(below), q * static_cast<double>(histogram.total)) << q;
  }
}

TEST(HistogramTest, ZeroSamplesHaveQuantileZero) {
  Histogram histogram;
  histogram.record(microseconds(0));
  EXPECT_EQ(histogram.quantile_us(0.99), 0U);
}

TEST(SparseHistogramTest, CountsWhatAHistogramCountsHoldingOnlyTheBucketsUsed) {
  Histogram full;
  detail::SparseHistogram sparse;
  const std::int64_t values[] = {3000, 0, 1, 2, 3, -5, 1000, 3000, 2000, std::int64_t{1} << 40,
                                 3500};
  for (int round = 0; round < 100; ++round) {
    for (const auto us : values) {
      full.record(microseconds(us));
      sparse.record(microseconds(us));
    }
  }
  Histogram copy;
  sparse.copy_to(copy);
  for (std::size_t i = 0; i < Histogram::kBuckets; ++i) {
    EXPECT_EQ(copy.counts[i], full.counts[i]) << "bucket " << i;
  }
  EXPECT_EQ(copy.total, full.total);
  EXPECT_EQ(copy.sum_us, full.sum_us);
  EXPECT_EQ(copy.quantile_us(0.99), full.quantile_us(0.99));
  // 0 and -5; 1; 2 and 3; 1000; 2000; 3000 and 3500; 2^40 (the last bucket)
  EXPECT_EQ(sparse.buckets_used(), 7U);
  EXPECT_EQ(copy.counts[Histogram::kBuckets - 1], 100U);
}

TEST(PoolStatsTest, HitRateAndReuseAreZeroWithoutTraffic) {
  const PoolStats stats;
  EXPECT_EQ(stats.hit_rate(), 0.0);
  EXPECT_EQ(stats.reuse(), 0.0);
}

TEST(PoolStatsTest, HitRateAndReuseFollowTheSeedsDefinitions) {
  PoolStats stats;
  stats.acquisitions = 20;
  stats.served_by_existing = 19;
  stats.commands = 20;
  stats.sessions_opened = 1;
  EXPECT_DOUBLE_EQ(stats.hit_rate(), 0.95);
  EXPECT_DOUBLE_EQ(stats.reuse(), 20.0);
  stats.sessions_opened = 4;
  EXPECT_DOUBLE_EQ(stats.reuse(), 5.0);
}

PoolStats numbered(std::uint64_t base) {
  PoolStats stats;
  stats.sessions_connecting = base + 1;
  stats.sessions_ready = base + 2;
  stats.sessions_draining = base + 3;
  stats.channels_in_use = base + 4;
  stats.waiters = base + 5;
  stats.acquisitions = base + 6;
  stats.served_by_existing = base + 7;
  stats.commands = base + 8;
  stats.handshakes_started = base + 9;
  stats.handshakes_failed = base + 10;
  stats.sessions_opened = base + 11;
  stats.exhausted = base + 12;
  stats.timeouts = base + 13;
  stats.channel_limit_lowered = base + 14;
  stats.health_checks = base + 15;
  stats.health_check_failures = base + 16;
  stats.direct_connections = base + 17;
  stats.cleanup_runs = base + 18;
  stats.sessions_cleaned = base + 19;
  for (std::size_t i = 0; i < kEvictionKinds; ++i) {
    stats.evictions[i] = base + 20 + i;
  }
  stats.channel_capacity = base + 30;
  stats.circuits_open = base + 31;
  stats.backing_off = base + 32;
  stats.handshakes_cancelled = base + 33;
  stats.handshakes_retried = base + 34;
  stats.acquires_cancelled = base + 35;
  stats.commands_cancelled = base + 36;
  stats.wait_time.record(microseconds(base + 100));
  stats.handshake_time.record(microseconds(base + 5000));
  return stats;
}

TEST(PoolStatsTest, PlusEqualsAddsEveryField) {
  PoolStats total = numbered(0);
  total += numbered(1000);
  EXPECT_EQ(total.sessions_connecting, 1002U);
  EXPECT_EQ(total.sessions_ready, 1004U);
  EXPECT_EQ(total.sessions_draining, 1006U);
  EXPECT_EQ(total.channels_in_use, 1008U);
  EXPECT_EQ(total.waiters, 1010U);
  EXPECT_EQ(total.acquisitions, 1012U);
  EXPECT_EQ(total.served_by_existing, 1014U);
  EXPECT_EQ(total.commands, 1016U);
  EXPECT_EQ(total.handshakes_started, 1018U);
  EXPECT_EQ(total.handshakes_failed, 1020U);
  EXPECT_EQ(total.sessions_opened, 1022U);
  EXPECT_EQ(total.exhausted, 1024U);
  EXPECT_EQ(total.timeouts, 1026U);
  EXPECT_EQ(total.channel_limit_lowered, 1028U);
  EXPECT_EQ(total.health_checks, 1030U);
  EXPECT_EQ(total.health_check_failures, 1032U);
  EXPECT_EQ(total.direct_connections, 1034U);
  EXPECT_EQ(total.cleanup_runs, 1036U);
  EXPECT_EQ(total.sessions_cleaned, 1038U);
  for (std::size_t i = 0; i < kEvictionKinds; ++i) {
    EXPECT_EQ(total.evictions[i], 1040U + 2 * i) << i;
  }
  EXPECT_EQ(total.wait_time.total, 2U);
  EXPECT_EQ(total.wait_time.sum_us, 100U + 1100U);
  EXPECT_EQ(total.wait_time.counts[7], 1U);   // 100 us
  EXPECT_EQ(total.wait_time.counts[11], 1U);  // 1100 us
  EXPECT_EQ(total.handshake_time.total, 2U);
  EXPECT_EQ(total.handshake_time.sum_us, 5000U + 6000U);
  EXPECT_EQ(total.handshake_time.counts[13], 2U);  // 5000 and 6000 us
  EXPECT_EQ(total.channel_capacity, 1060U);
  EXPECT_EQ(total.circuits_open, 1062U);
  EXPECT_EQ(total.backing_off, 1064U);
  EXPECT_EQ(total.handshakes_cancelled, 1066U);
  EXPECT_EQ(total.handshakes_retried, 1068U);
  EXPECT_EQ(total.acquires_cancelled, 1070U);
  EXPECT_EQ(total.commands_cancelled, 1072U);
}

// Not sums: the lowest channel limit among servers that have one, the longest wait for a circuit
// or a backoff.
TEST(PoolStatsTest, PlusEqualsTakesTheLowestLimitAndTheLongestWaits) {
  PoolStats total;
  PoolStats first;
  first.channel_limit = 10;
  first.circuit_retry_in = milliseconds(300);
  first.backoff_retry_in = milliseconds(20);
  PoolStats second;
  second.channel_limit = 4;
  second.circuit_retry_in = milliseconds(100);
  second.backoff_retry_in = milliseconds(50);
  PoolStats unknown;  // a server that reports no limit (zero) does not lower it
  total += first;
  total += unknown;
  total += second;
  EXPECT_EQ(total.channel_limit, 4U);
  EXPECT_EQ(total.circuit_retry_in, milliseconds(300));
  EXPECT_EQ(total.backoff_retry_in, milliseconds(50));
}

TEST(PoolStatsTest, SumOfNothingIsZero) {
  PoolStats total;
  total += PoolStats{};
  EXPECT_EQ(total.acquisitions, 0U);
  EXPECT_EQ(total.wait_time.total, 0U);
  EXPECT_EQ(total.hit_rate(), 0.0);
}

}  // namespace
}  // namespace healer::pool
