// Remote write's pure parts: the bounded queue (oldest dropped first, batches in order), the
// WriteRequest a batch becomes (decoded back with snappy and the same prompb messages), and the
// one naming /metrics and remote write share.
#include <gtest/gtest.h>
#include <remote_write.pb.h>
#include <snappy.h>

#include "healer/daemon/fleet.hpp"
#include "healer/daemon/remote_writer.hpp"

namespace healer::daemon {
namespace {

std::shared_ptr<const std::vector<NodeSeries>> collection(std::size_t count, double base) {
  auto series = std::make_shared<std::vector<NodeSeries>>();
  for (std::size_t i = 0; i < count; ++i) {
    series->push_back(NodeSeries{"node_series_" + std::to_string(i),
                                 {{"server", "web"}, {"device", "sda"}},
                                 base + static_cast<double>(i)});
  }
  return series;
}

TEST(SampleQueue, DropsTheOldestBeyondItsBoundAndHandsOutBatchesInOrder) {
  SampleQueue queue(5);
  EXPECT_EQ(queue.push(1000, collection(3, 0)), 0U);
  EXPECT_EQ(queue.push(2000, collection(3, 10)), 1U);  // 6 > 5: the oldest goes
  EXPECT_EQ(queue.size(), 5U);
  auto first = queue.take(2);
  ASSERT_EQ(first.size(), 2U);
  EXPECT_EQ(first[0].timestamp_ms, 1000);
  EXPECT_EQ(first[0].series().value, 1);  // sample 0 of the first collection was dropped
  EXPECT_EQ(first[1].series().value, 2);
  auto rest = queue.take(10);
  ASSERT_EQ(rest.size(), 3U);
  EXPECT_EQ(rest[0].timestamp_ms, 2000);
  EXPECT_EQ(rest[2].series().value, 12);
  EXPECT_EQ(queue.size(), 0U);
  EXPECT_TRUE(queue.take(10).empty());
  // A collection larger than the bound keeps its newest series.
  EXPECT_EQ(queue.push(3000, collection(8, 0)), 3U);
  EXPECT_EQ(queue.take(1).front().series().value, 3);
}

TEST(RemoteWrite, ABatchIsASnappyCompressedWriteRequestWithSortedLabels) {
  SampleQueue queue(100);
  (void)queue.push(1000, collection(2, 0));
  (void)queue.push(2000, collection(2, 5));
  const auto body = encode_write_request(queue.take(100));
  std::string raw;
  ASSERT_TRUE(snappy::Uncompress(body.data(), body.size(), &raw));
  prometheus::WriteRequest request;
  ASSERT_TRUE(request.ParseFromString(raw));
  // One series per label set, its samples oldest first.
  ASSERT_EQ(request.timeseries_size(), 2);
  const auto& series = request.timeseries(1);
  ASSERT_EQ(series.labels_size(), 3);
  EXPECT_EQ(series.labels(0).name(), "__name__");
  EXPECT_EQ(series.labels(0).value(), "node_series_1");
  EXPECT_EQ(series.labels(1).name(), "device");
  EXPECT_EQ(series.labels(2).name(), "server");
  EXPECT_EQ(series.labels(2).value(), "web");
  ASSERT_EQ(series.samples_size(), 2);
  EXPECT_EQ(series.samples(0).timestamp(), 1000);
  EXPECT_EQ(series.samples(0).value(), 1);
  EXPECT_EQ(series.samples(1).timestamp(), 2000);
  EXPECT_EQ(series.samples(1).value(), 6);
}

TEST(RemoteWrite, SeriesCarryTheNamesAndLabelsMetricsShows) {
  const std::vector<metrics::Metric> raw{
      {"node_load1", {}, 0.5},
      {"node_filesystem_size_bytes", {{"mountpoint", "/"}, {"device", "/dev/sda1"}}, 100},
      {"bad name", {}, 1},                    // not a metric name: left out
      {"node_x", {{"server", "forged"}}, 1},  // would override the server label: left out
      {"node_y", {{"__meta", "x"}}, 1}};      // reserved label name: left out
  const std::vector<metrics::Metric> rates{{"healer_cpu_busy_percent", {}, 12}};
  const auto series = node_series("web \"1\"", raw, rates);
  ASSERT_EQ(series.size(), 3U);
  EXPECT_EQ(series[0].name, "node_load1");
  EXPECT_EQ(series[0].labels,
            (std::vector<std::pair<std::string, std::string>>{{"server", "web \"1\""}}));
  EXPECT_EQ(series[1].labels.size(), 3U);
  EXPECT_EQ(series[2].name, "healer_cpu_busy_percent");
  // /metrics renders exactly these series.
  const auto summary = summarise("web \"1\"", 0, 0, std::nullopt, raw, rates);
  std::string exposition;
  const auto label = "server=\"" + escape_label("web \"1\"") + "\"";
  for (std::size_t f = 0; f < summary.exposition->families(); ++f) {
    summary.exposition->append_family(exposition, label, f);
  }
  EXPECT_EQ(exposition,
            "healer_cpu_busy_percent{server=\"web \\\"1\\\"\"} 12\n"
            "node_filesystem_size_bytes{server=\"web \\\"1\\\"\",mountpoint=\"/\","
            "device=\"/dev/sda1\"} 100\n"
            "node_load1{server=\"web \\\"1\\\"\"} 0.5\n");
}

}  // namespace
}  // namespace healer::daemon
