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
  for (std::size_t f = 0; f < series.families(); ++f) {
    if (series.family(f).name == name) {
      return &series.family(f);
    }
  }
  return nullptr;
}

// A host's node_uname_info: its name is in it, so no two hosts have the same one.
metrics::Metric uname(const std::string& nodename) {
  return {
      "node_uname_info", {{"machine", "x86_64"}, {"nodename", nodename}, {"release", "6.1.0"}}, 1};
}

// `count` families whose one series is labelled with the host's name (LVM volumes named after
// the host, say).
std::vector<metrics::Metric> named_after(const std::string& host, std::size_t count) {
  std::vector<metrics::Metric> metrics;
  for (std::size_t i = 0; i < count; ++i) {
    metrics.push_back(
        {"node_volume_" + std::to_string(100 + i), {{"device", host + "-vg-root"}}, 1});
  }
  return metrics;
}

// What /metrics shows of the node series of `fleet`.
std::string node_text(const FleetState& fleet) {
  ExpositionSnapshot snapshot;
  snapshot.with_healer_metrics = false;
  snapshot.part = ExpositionSnapshot::Part::servers;
  for (const auto& [name, state] : fleet.servers()) {
    ExpositionSnapshot::Server server;
    server.name = name;
    server.series = state.collection->exposition;
    snapshot.servers.push_back(std::move(server));
  }
  return render_exposition(snapshot);
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
  EXPECT_EQ(a.layout->families[1].first, 2U);
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
  const auto text = node_text(fleet);
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

TEST(SeriesLayouts, ServersOfOneShapeShareOneLayoutAndKeepOnlyTheFamiliesWithTheirName) {
  auto fleet = fleet_of({"a", "b", "c"});
  for (const std::string name : {"a", "b", "c"}) {
    auto metrics = host(name == "c" ? 1.5 : 0.5, name == "c" ? 3 : 2);
    metrics.push_back(uname(name + ".example.net"));
    fleet.record(collected(name, std::move(metrics)));
  }
  const auto& a = series_of(fleet, "a");
  const auto& b = series_of(fleet, "b");
  const auto& c = series_of(fleet, "c");
  // a and b differ only in node_uname_info: one layout, and b keeps its own uname family.
  EXPECT_EQ(a.layout.get(), b.layout.get());
  EXPECT_TRUE(a.own.empty());
  ASSERT_EQ(b.own.size(), 1U);
  EXPECT_EQ(b.own[0].index, 2U);  // disks, load, uname
  EXPECT_EQ(&b.family(2), b.own[0].family.get());
  EXPECT_NE(b.family(2).tails.find("b.example.net"), std::string::npos);
  EXPECT_NE(a.family(2).tails.find("a.example.net"), std::string::npos);
  EXPECT_EQ(&a.family(0), &b.family(0));
  // c has one more disk: another shape, another layout.
  EXPECT_NE(c.layout.get(), a.layout.get());
  EXPECT_TRUE(c.own.empty());
  EXPECT_EQ(fleet.layouts().size(), 2U);
  // Every server's lines carry its own host name, in the layout's order.
  const auto text = node_text(fleet);
  for (const std::string name : {"a", "b", "c"}) {
    EXPECT_NE(text.find("node_uname_info{server=\"" + name + "\",machine=\"x86_64\",nodename=\"" +
                        name + ".example.net\",release=\"6.1.0\"} 1\n"),
              std::string::npos)
        << text;
  }
  EXPECT_NE(text.find("node_load1{server=\"a\"} 0.5\nnode_load1{server=\"b\"} 0.5\n"
                      "node_load1{server=\"c\"} 1.5\n"),
            std::string::npos)
      << text;

  // b's next collection has c's shape: it moves to c's layout; a's stays for a alone, and goes
  // once a's collection changes shape too.
  auto three = host(0.5, 3);
  three.push_back(uname("b.example.net"));
  fleet.record(collected("b", std::move(three)));
  EXPECT_EQ(series_of(fleet, "b").layout.get(), series_of(fleet, "c").layout.get());
  EXPECT_EQ(fleet.layouts().size(), 2U);
  auto none = host(0.5, 0);
  none.push_back(uname("a.example.net"));
  fleet.record(collected("a", std::move(none)));
  EXPECT_EQ(fleet.layouts().size(), 2U);  // c's, and a's new one
  EXPECT_NE(series_of(fleet, "a").layout.get(), series_of(fleet, "c").layout.get());
}

TEST(SeriesLayouts, AServerThatDiffersInTooManyFamiliesGetsALayoutOfItsOwn) {
  constexpr std::size_t kMax = SeriesLayouts::kMaxOwnFamilies;
  auto fleet = fleet_of({"a", "b", "c", "d"});
  const auto with = [](const std::string& name, std::size_t own) {
    auto metrics = host(0.5, 2);
    const auto named = named_after(name, own);
    metrics.insert(metrics.end(), named.begin(), named.end());
    auto shared = named_after("shared", kMax + 2 - own);  // the same on every host
    for (std::size_t i = 0; i < shared.size(); ++i) {
      shared[i].name = "node_volume_" + std::to_string(100 + own + i);
    }
    metrics.insert(metrics.end(), shared.begin(), shared.end());
    return metrics;
  };
  fleet.record(collected("a", with("a", kMax)));
  fleet.record(collected("b", with("b", kMax)));      // kMax families of its own: shared
  fleet.record(collected("c", with("c", kMax + 1)));  // one more: a layout of its own
  fleet.record(collected("d", with("d", kMax + 1)));  // close to neither
  const auto& a = series_of(fleet, "a");
  const auto& b = series_of(fleet, "b");
  const auto& c = series_of(fleet, "c");
  const auto& d = series_of(fleet, "d");
  EXPECT_EQ(b.layout.get(), a.layout.get());
  EXPECT_EQ(b.own.size(), kMax);
  EXPECT_NE(c.layout.get(), a.layout.get());
  EXPECT_TRUE(c.own.empty());
  EXPECT_NE(d.layout.get(), c.layout.get());
  EXPECT_NE(d.layout.get(), a.layout.get());
  EXPECT_EQ(fleet.layouts().size(), 3U);
  // Each server's lines are its own.
  const auto text = node_text(fleet);
  for (const std::string name : {"a", "b", "c", "d"}) {
    EXPECT_NE(
        text.find("node_volume_100{server=\"" + name + "\",device=\"" + name + "-vg-root\"} 1\n"),
        std::string::npos)
        << text;
  }
  // A collection without series holds no layout: d's goes.
  fleet.record(collected("d", {}));
  EXPECT_EQ(fleet.find("d")->collection->exposition, nullptr);
  EXPECT_EQ(fleet.layouts().size(), 2U);
}

}  // namespace
}  // namespace healer::daemon
