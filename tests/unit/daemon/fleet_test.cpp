// The fleet's kept node series: servers whose collections have the same shape share one layout
// (names and labels once), each keeps only its values, and /metrics renders them as the text the
// format asks for, one group per family across servers, labels escaped.
#include "healer/daemon/fleet.hpp"

#include <gtest/gtest.h>

#include "exporter.hpp"

namespace healer::daemon {
namespace {

std::vector<metrics::Metric> host(double load, std::size_t disks) {
  std::vector<metrics::Metric> metrics{{"node_load1", {}, load}};
  for (std::size_t i = 0; i < disks; ++i) {
    metrics.push_back({"node_disk_reads_completed_total",
                       {{"device", "sd" + std::string(1, static_cast<char>('a' + i))}},
                       100.0 * static_cast<double>(i + 1) + load});
  }
  return metrics;
}

service::CollectedServer collected(const std::string& name, std::vector<metrics::Metric> metrics) {
  service::CollectedServer c;
  c.server = name;
  c.collected_at = 1000;
  c.metrics = std::move(metrics);
  return c;
}

FleetState fleet_of(const std::vector<std::string>& names) {
  FleetState fleet;
  for (const auto& name : names) {
    fleet.servers()[name].record.name = name;
  }
  return fleet;
}

const NodeExposition& series_of(FleetState& fleet, const std::string& name) {
  const auto* state = fleet.find(name);
  EXPECT_NE(state, nullptr);
  EXPECT_TRUE(state->collection && state->collection->exposition);
  return *state->collection->exposition;
}

// The family `name` of a server's kept series.
const SeriesFamily* family_of(const NodeExposition& series, std::string_view name) {
  for (const auto& [family, first] : series.families) {
    if (family->name == name) {
      return family.get();
    }
  }
  return nullptr;
}

TEST(SeriesFamilies, ServersShareEveryFamilyWhoseSeriesAreTheSameAndKeepOnlyTheirValues) {
  auto fleet = fleet_of({"a", "b", "c"});
  fleet.record(collected("a", host(0.5, 2)));
  fleet.record(collected("b", host(0.75, 2)));
  fleet.record(collected("c", host(1.5, 3)));  // one more disk
  const auto& a = series_of(fleet, "a");
  const auto& b = series_of(fleet, "b");
  const auto& c = series_of(fleet, "c");
  const std::string disk = "node_disk_reads_completed_total";
  ASSERT_NE(family_of(a, disk), nullptr);
  EXPECT_EQ(family_of(a, disk), family_of(b, disk));
  EXPECT_NE(family_of(a, disk), family_of(c, disk));
  EXPECT_EQ(family_of(a, "node_load1"), family_of(c, "node_load1"));
  EXPECT_EQ(a.values, (std::vector<double>{100.5, 200.5, 0.5}));  // families sorted by name
  EXPECT_EQ(c.values.size(), 4U);
  EXPECT_EQ(a.families[1].first, 2U);
  EXPECT_EQ(fleet.families().size(), 3U);  // load, two disks, three disks

  // Once no server has a family any more, it goes.
  fleet.record(collected("a", host(0.5, 3)));
  fleet.record(collected("b", host(0.5, 3)));
  EXPECT_EQ(family_of(series_of(fleet, "a"), disk), family_of(series_of(fleet, "c"), disk));
  EXPECT_EQ(family_of(series_of(fleet, "b"), disk), family_of(series_of(fleet, "c"), disk));
  EXPECT_EQ(fleet.families().size(), 2U);
}

TEST(SeriesFamilies, MetricsShowsEachFamilyOnceAcrossServersWithEscapedLabels) {
  auto fleet = fleet_of({"web \"1\"", "db\\2"});
  fleet.record(collected("web \"1\"", host(0.5, 1)));
  auto odd = host(2, 1);
  odd[1].labels[0].second = "a\"b\nc";  // a device name from server output
  fleet.record(collected("db\\2", std::move(odd)));
  ExpositionSnapshot snapshot;
  snapshot.with_healer_metrics = false;
  snapshot.part = ExpositionSnapshot::Part::servers;
  for (const auto& [name, state] : fleet.servers()) {
    ExpositionSnapshot::Server server;
    server.name = name;
    server.series = state.collection->exposition;
    snapshot.servers.push_back(std::move(server));
  }
  const auto text = render_exposition(snapshot);
  const std::string reads =
      "# TYPE node_disk_reads_completed_total counter\n"
      "node_disk_reads_completed_total{server=\"db\\\\2\",device=\"a\\\"b\\nc\"} 102\n"
      "node_disk_reads_completed_total{server=\"web \\\"1\\\"\",device=\"sda\"} 100.5\n";
  EXPECT_NE(text.find(reads), std::string::npos) << text;
  const std::string load =
      "# TYPE node_load1 gauge\n"
      "node_load1{server=\"db\\\\2\"} 2\n"
      "node_load1{server=\"web \\\"1\\\"\"} 0.5\n";
  EXPECT_NE(text.find(load), std::string::npos) << text;
  EXPECT_EQ(text.find("# TYPE node_load1"), text.rfind("# TYPE node_load1"));
}

}  // namespace
}  // namespace healer::daemon
