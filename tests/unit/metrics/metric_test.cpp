#include "healer/metrics/metric.hpp"

#include <gtest/gtest.h>

namespace healer::metrics {
namespace {

TEST(FormatLabels, SortedAndStable) {
  EXPECT_EQ(format_labels({}), "");
  EXPECT_EQ(format_labels({{"mode", "idle"}, {"cpu", "0"}}), R"(cpu="0",mode="idle")");
  EXPECT_EQ(format_labels({{"cpu", "0"}, {"mode", "idle"}}), R"(cpu="0",mode="idle")");
}

TEST(FormatLabels, EscapesValues) {
  EXPECT_EQ(format_labels({{"mountpoint", "/mnt/a\"b\\c\nd"}}), R"(mountpoint="/mnt/a\"b\\c\nd")");
}

TEST(SeriesKey, WithAndWithoutLabels) {
  EXPECT_EQ(series_key(Metric{"node_load1", {}, 1.0}), "node_load1");
  EXPECT_EQ(series_key(Metric{"node_cpu_seconds_total", {{"mode", "user"}, {"cpu", "1"}}, 2.0}),
            R"(node_cpu_seconds_total{cpu="1",mode="user"})");
}

}  // namespace
}  // namespace healer::metrics
