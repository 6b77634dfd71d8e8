// The dashboard's in-memory history: pool points between samples (increments, restarts,
// latency quantiles of the interval only), sparkline buckets (highest value, bounded, aligned),
// and servers leaving the fleet.
#include "trends.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace healer::daemon {
namespace {

using std::chrono::microseconds;
constexpr std::int64_t kMinute = 60 * 1000;
constexpr std::int64_t kBucket = 30 * kMinute;

void collect(FleetState& fleet, const std::string& name, std::int64_t at, double load1,
             std::optional<double> memory = std::nullopt) {
  auto& state = fleet.servers()[name];
  state.record.name = name;
  CollectionSummary summary;
  summary.collected_at = at;
  summary.load1 = load1;
  summary.memory_used_percent = memory;
  state.collection = summary;
}

TEST(PoolPointTest, CountersAreIncrementsAndGaugesAreCurrent) {
  pool::PoolStats before;
  before.acquisitions = 10;
  before.served_by_existing = 9;
  before.commands = 10;
  before.evictions[0] = 1;
  pool::PoolStats after = before;
  after.acquisitions = 25;
  after.served_by_existing = 23;
  after.commands = 24;
  after.evictions[0] = 2;
  after.evictions[2] = 1;
  after.sessions_ready = 2;
  after.channels_in_use = 3;
  after.circuits_open = 1;
  const auto point = pool_point(1000, &before, after);
  EXPECT_EQ(point.at, 1000);
  EXPECT_EQ(point.acquisitions, 15U);
  EXPECT_EQ(point.served_by_existing, 14U);
  EXPECT_EQ(point.commands, 14U);
  EXPECT_EQ(point.evictions, 2U);
  EXPECT_EQ(point.sessions_ready, 2U);
  EXPECT_EQ(point.channels_in_use, 3U);
  EXPECT_EQ(point.circuits_open, 1U);
  // The first sample counts from zero.
  EXPECT_EQ(pool_point(0, nullptr, after).acquisitions, 25U);
}

TEST(PoolPointTest, ACounterThatWentBackwardsRestartedFromZero) {
  pool::PoolStats before;
  before.acquisitions = 100;
  pool::PoolStats after;
  after.acquisitions = 7;  // the server was removed and added again
  EXPECT_EQ(pool_point(0, &before, after).acquisitions, 7U);
}

TEST(PoolPointTest, LatencyQuantilesCoverOnlyTheInterval) {
  pool::PoolStats before;
  for (int i = 0; i < 1000; ++i) {
    before.wait_time.record(microseconds(100));  // fast, long ago
  }
  pool::PoolStats after = before;
  for (int i = 0; i < 10; ++i) {
    after.wait_time.record(microseconds(100000));  // slow, within the interval
  }
  const auto point = pool_point(0, &before, after);
  // Cumulative p99 would still say ~0.1 ms; the interval's says ~100 ms (log2 bucket bound).
  EXPECT_GT(point.wait_ms_p99, 100.0F);
  EXPECT_LT(point.wait_ms_p99, 300.0F);
  EXPECT_GT(point.wait_ms_p50, 100.0F);
  // Nothing measured in the interval: no number.
  EXPECT_TRUE(std::isnan(pool_point(0, &after, after).wait_ms_p99));
  EXPECT_TRUE(std::isnan(pool_point(0, &after, after).handshake_ms_p50));
}

TEST(TrendsTest, EachBucketKeepsItsHighestValueAndTheJsonAlignsBuckets) {
  Trends trends;
  FleetState fleet;
  const std::int64_t start = 1000 * kBucket;  // a bucket boundary
  collect(fleet, "web", start + kMinute, 0.5, 40.0);
  trends.record_figures(fleet);
  collect(fleet, "web", start + 2 * kMinute, 2.5, 30.0);  // same bucket: the highest stays
  trends.record_figures(fleet);
  collect(fleet, "web", start + 2 * kMinute, 9.0);  // same collection again: ignored
  trends.record_figures(fleet);
  collect(fleet, "web", start + 2 * kBucket + kMinute, 1.0);  // a bucket later, one skipped
  trends.record_figures(fleet);

  const auto load = trends.sparklines_json(Figure::load1, start + 2 * kBucket + 5 * kMinute);
  EXPECT_EQ(load["figure"], "load1");
  EXPECT_EQ(load["bucket_seconds"], 1800);
  ASSERT_EQ(load["servers"].size(), 1U);
  const auto& values = load["servers"][0]["values"];
  ASSERT_EQ(values.size(), 48U);
  EXPECT_EQ(values[47], 1.0);
  EXPECT_TRUE(values[46].is_null());
  EXPECT_EQ(values[45], 2.5);
  EXPECT_TRUE(values[44].is_null());
  EXPECT_EQ(load["from"], (start + 2 * kBucket) - 47 * kBucket);
  const auto memory = trends.sparklines_json(Figure::memory, start + 2 * kBucket);
  EXPECT_EQ(memory["servers"][0]["values"][45], 40.0);
  EXPECT_TRUE(memory["servers"][0]["values"][47].is_null());
  // A server with nothing in the window is left out.
  EXPECT_EQ(trends.sparklines_json(Figure::cpu, start)["servers"].size(), 0U);
}

TEST(TrendsTest, HistoryIsBoundedAndForgetsServersThatLeft) {
  Trends::Options options;
  options.buckets = 4;
  options.total_points = 3;
  options.server_points = 2;
  Trends trends(options);
  FleetState fleet;
  for (int i = 0; i < 10; ++i) {
    collect(fleet, "web", i * kBucket, i);
    trends.record_figures(fleet);
    pool::PoolStats stats;
    stats.acquisitions = static_cast<std::uint64_t>(i) * 10;
    trends.record_pool_total(i, stats);
    trends.record_pool_server(i, "web", stats);
  }
  const auto values = trends.sparklines_json(Figure::load1, 9 * kBucket)["servers"][0]["values"];
  EXPECT_EQ(values, nlohmann::json::parse("[6.0, 7.0, 8.0, 9.0]"));
  const auto total = trends.pool_json(nullptr);
  ASSERT_TRUE(total);
  EXPECT_EQ((*total)["points"], 3);
  EXPECT_EQ((*total)["series"]["at"], nlohmann::json::parse("[7, 8, 9]"));
  EXPECT_EQ((*total)["series"]["acquisitions"], nlohmann::json::parse("[10, 10, 10]"));
  EXPECT_TRUE((*total)["server"].is_null());
  const std::string web = "web";
  const auto one = trends.pool_json(&web);
  ASSERT_TRUE(one);
  EXPECT_EQ((*one)["points"], 2);
  EXPECT_EQ((*one)["interval_seconds"], 60.0);
  EXPECT_EQ((*one)["series"]["at"], nlohmann::json::parse("[8, 9]"));
  EXPECT_EQ((*one)["series"]["acquisitions"], nlohmann::json::parse("[10, 10]"));
  EXPECT_EQ((*one)["series"]["wait_ms_p99"], nlohmann::json::parse("[null, null]"));
  // The server leaves the fleet: its history goes with it.
  fleet.servers().erase("web");
  trends.record_figures(fleet);
  EXPECT_FALSE(trends.pool_json(&web));
  EXPECT_EQ(trends.sparklines_json(Figure::load1, 9 * kBucket)["servers"].size(), 0U);
}

TEST(PoolPointTest, IntervalsAreExactPastTwoToTheThirtyTwoRecordedLatencies) {
  pool::PoolStats before;
  before.wait_time.counts[3] = 5'000'000'000;  // a long-lived total's bucket, past 2^32
  before.wait_time.total = 5'000'000'000;
  pool::PoolStats after = before;
  after.wait_time.counts[3] += 5;
  after.wait_time.counts[20] += 5;
  after.wait_time.total += 10;
  const PoolBaseline kept(before);
  const auto point = pool_point(0, std::optional<PoolBaseline>(kept), after);
  EXPECT_FLOAT_EQ(point.wait_ms_p50, 0.008F);     // bucket 3: < 8 us
  EXPECT_FLOAT_EQ(point.wait_ms_p99, 1048.576F);  // bucket 20: < 2^20 us
  EXPECT_FLOAT_EQ(pool_point(0, &before, after).wait_ms_p99, 1048.576F);
}

// Every field of two points is the same (NaN equals NaN).
void expect_same(const PoolPoint& a, const PoolPoint& b) {
  EXPECT_EQ(a.at, b.at);
  const std::uint32_t PoolPoint::*counts[] = {&PoolPoint::sessions_ready,
                                              &PoolPoint::sessions_connecting,
                                              &PoolPoint::sessions_draining,
                                              &PoolPoint::channels_in_use,
                                              &PoolPoint::waiters,
                                              &PoolPoint::circuits_open,
                                              &PoolPoint::backing_off,
                                              &PoolPoint::acquisitions,
                                              &PoolPoint::served_by_existing,
                                              &PoolPoint::commands,
                                              &PoolPoint::handshakes,
                                              &PoolPoint::handshakes_failed,
                                              &PoolPoint::sessions_opened,
                                              &PoolPoint::evictions,
                                              &PoolPoint::sessions_cleaned,
                                              &PoolPoint::exhausted,
                                              &PoolPoint::timeouts};
  for (const auto field : counts) {
    EXPECT_EQ(a.*field, b.*field);
  }
  for (const auto field : {&PoolPoint::wait_ms_p50, &PoolPoint::wait_ms_p99,
                           &PoolPoint::handshake_ms_p50, &PoolPoint::handshake_ms_p99}) {
    if (std::isnan(a.*field)) {
      EXPECT_TRUE(std::isnan(b.*field));
    } else {
      EXPECT_EQ(a.*field, b.*field);
    }
  }
}

TEST(PackedPointsTest, PointsComeBackExactlyAndTheOldestGoPastTheLimit) {
  std::vector<PoolPoint> pushed;
  PackedPoints packed;
  for (int i = 0; i < 7; ++i) {
    PoolPoint point;
    // Times that go forwards, jump, and step back (a clock set back).
    point.at = i == 4 ? 1'700'000'000'000 - 5 : 1'700'000'000'000 + i * 60'000;
    point.sessions_ready = static_cast<std::uint32_t>(i);
    point.acquisitions = i == 2 ? 4'294'967'295U : static_cast<std::uint32_t>(i * 1000);
    point.timeouts = i == 3 ? 128U : 0U;
    if (i == 5) {  // every count and gauge at once, the last ones too
      point.sessions_connecting = 2;
      point.circuits_open = 1;
      point.backing_off = 1;
      point.served_by_existing = 300;
      point.handshakes_failed = 9;
      point.evictions = 70'000;
      point.sessions_cleaned = 5;
      point.exhausted = 1;
      point.timeouts = 2;
    }
    point.wait_ms_p50 = i % 2 == 0 ? 0.125F : std::numeric_limits<float>::quiet_NaN();
    point.wait_ms_p99 = i == 5 ? std::numeric_limits<float>::infinity() : 3.5F;
    point.handshake_ms_p50 = std::numeric_limits<float>::quiet_NaN();
    point.handshake_ms_p99 = i == 6 ? 1e-3F : std::numeric_limits<float>::quiet_NaN();
    pushed.push_back(point);
    packed.push(point, 4);
    EXPECT_EQ(packed.size(), std::min<std::size_t>(static_cast<std::size_t>(i) + 1, 4));
  }
  const auto points = packed.unpack();
  ASSERT_EQ(points.size(), 4U);
  for (std::size_t i = 0; i < points.size(); ++i) {
    expect_same(points[i], pushed[3 + i]);
  }
}

// A point a minute, a collection every 5 minutes: ~5 bytes for each of the 48 quiet points.
TEST(PackedPointsTest, AnHourOfAQuietServersPointsTakesAnEighthOfTheirSize) {
  PackedPoints packed;
  for (int minute = 0; minute < 120; ++minute) {
    PoolPoint point;
    point.at = 1'700'000'000'000 + minute * 60'000;
    point.sessions_ready = 1;
    point.acquisitions = minute % 5 == 0 ? 1 : 0;
    point.commands = point.acquisitions;
    const float none = std::numeric_limits<float>::quiet_NaN();
    point.wait_ms_p50 = minute % 5 == 0 ? 0.004F : none;
    point.wait_ms_p99 = point.wait_ms_p50;
    point.handshake_ms_p50 = none;
    point.handshake_ms_p99 = none;
    packed.push(point, 60);
  }
  EXPECT_EQ(packed.size(), 60U);
  EXPECT_LE(packed.bytes(), 60 * sizeof(PoolPoint) / 8);
  EXPECT_EQ(packed.unpack().front().at, 1'700'000'000'000 + 60 * 60'000);
}

// The sampler takes every server's pool at its first tick, then a share of the fleet at each
// tick: each server once per round of server_every ticks, never the whole fleet in one tick
// (at 10,000 servers that held the loop ~10 ms once a minute).
TEST(TrendSamplerTest, EachServersPoolIsTakenOncePerRoundAShareAtATime) {
  asio::io_context io;  // never run: the ticks are the test's sample() calls
  pool::Registry registry(io.get_executor(), PoolConfig{});
  FleetState fleet;
  constexpr std::size_t kServers = 120;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < kServers; ++i) {
    names.push_back(fmt::format("srv-{}", i));
    collect(fleet, names.back(), kMinute, 0.5);
  }
  Trends::Options options;
  options.server_every = 12;
  Trends trends(options);
  TrendSampler sampler(io.get_executor(), trends, fleet, registry);
  const auto points = [&] {
    std::vector<std::size_t> each;
    for (const auto& name : names) {
      const auto history = trends.pool_json(&name);
      each.push_back(history ? (*history)["points"].get<std::size_t>() : 0);
    }
    return each;
  };
  sampler.sample();
  EXPECT_EQ(points(), std::vector<std::size_t>(kServers, 1)) << "every server at the first tick";
  std::size_t taken = 0;
  for (unsigned tick = 1; tick <= options.server_every; ++tick) {
    const auto before = points();
    sampler.sample();
    const auto after = points();
    std::size_t share = 0;
    for (std::size_t i = 0; i < kServers; ++i) {
      share += after[i] - before[i];
    }
    EXPECT_LT(share, kServers / 4) << "tick " << tick;
    taken += share;
  }
  EXPECT_EQ(taken, kServers);
  EXPECT_EQ(points(), std::vector<std::size_t>(kServers, 2)) << "each server once in the round";
}

TEST(TrendsTest, FiguresNamesParse) {
  EXPECT_EQ(parse_figure("load1"), Figure::load1);
  EXPECT_EQ(parse_figure("memory"), Figure::memory);
  EXPECT_EQ(parse_figure("disk"), Figure::disk);
  EXPECT_EQ(parse_figure("cpu"), Figure::cpu);
  EXPECT_FALSE(parse_figure("Load1"));
  EXPECT_FALSE(parse_figure(""));
}

}  // namespace
}  // namespace healer::daemon
