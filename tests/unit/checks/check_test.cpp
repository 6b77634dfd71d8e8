#include "healer/checks/check.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace healer::checks {
namespace {

TEST(Status, ValuesAreNagiosExitCodes) {
  EXPECT_EQ(static_cast<int>(Status::ok), 0);
  EXPECT_EQ(static_cast<int>(Status::warning), 1);
  EXPECT_EQ(static_cast<int>(Status::critical), 2);
  EXPECT_EQ(static_cast<int>(Status::unknown), 3);
  EXPECT_EQ(status_name(Status::critical), "CRITICAL");
  EXPECT_EQ(status_name(Status::unknown), "UNKNOWN");
}

TEST(Status, WorstRanksCriticalThenWarningThenUnknownThenOk) {
  struct Case {
    Status a;
    Status b;
    Status expected;
  };
  const Case cases[] = {
      {Status::ok, Status::ok, Status::ok},
      {Status::ok, Status::unknown, Status::unknown},
      {Status::unknown, Status::warning, Status::warning},
      {Status::warning, Status::unknown, Status::warning},
      {Status::critical, Status::unknown, Status::critical},
      {Status::unknown, Status::critical, Status::critical},
      {Status::warning, Status::critical, Status::critical},
      {Status::critical, Status::ok, Status::critical},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(worst(c.a, c.b), c.expected) << status_name(c.a) << " vs " << status_name(c.b);
  }
}

TEST(Thresholds, TheThresholdIsTheFirstBadValue) {
  struct Case {
    Thresholds levels;
    double value;
    Status expected;
  };
  const Thresholds higher{.warn = 85.0, .crit = 95.0};
  const Thresholds lower{.warn = 10.0, .crit = 5.0, .lower_is_worse = true};
  const Case cases[] = {
      {higher, 0.0, Status::ok},
      {higher, 84.99, Status::ok},
      {higher, 85.0, Status::warning},
      {higher, 94.9, Status::warning},
      {higher, 95.0, Status::critical},
      {higher, 100.0, Status::critical},
      {lower, 50.0, Status::ok},
      {lower, 10.01, Status::ok},
      {lower, 10.0, Status::warning},
      {lower, 5.01, Status::warning},
      {lower, 5.0, Status::critical},
      {lower, 0.0, Status::critical},
      {Thresholds{}, 1e12, Status::ok},
      {Thresholds{.crit = 1.0}, 0.0, Status::ok},
      {Thresholds{.crit = 1.0}, 1.0, Status::critical},
      {Thresholds{.warn = 1.0}, 7.0, Status::warning},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(c.levels.evaluate(c.value), c.expected) << c.value;
  }
}

TEST(Perfdata, FormatsLikeANagiosPlugin) {
  struct Case {
    Perfdata perf;
    std::string expected;
  };
  const Case cases[] = {
      {{"/", 42.5, "%", 85.0, 95.0, 0.0, 100.0}, "'/'=42.5%;85;95;0;100"},
      {{"available", 12.0, "%", 10.0, 5.0, 0.0, 100.0, true}, "'available'=12%;10:;5:;0;100"},
      {{"load1", 0.52, ""}, "'load1'=0.52"},
      {{"failed", 2.0, "", std::nullopt, 1.0}, "'failed'=2;;1"},
      {{"new", 0.0, "", std::nullopt, std::nullopt, 0.0}, "'new'=0;;;0"},
      {{"it's", 1.0, "c"}, "'it''s'=1c"},
      {{"offset", -0.000012417, "s"}, "'offset'=-0.000012s"},
      {{"max", 9223372036854775807.0, ""}, "'max'=9223372036854775808"},
      {{"uptime", 5294.0, "s", 600.0, std::nullopt, 0.0, std::nullopt, true},
       "'uptime'=5294s;600:;;0"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(c.perf.format(), c.expected);
  }
}

TEST(CheckResult, NagiosLineIsOneLineWithPerfdataAfterAPipe) {
  CheckResult result{"disk_space", Status::warning, "/var 88% used", {}};
  EXPECT_EQ(result.nagios_line(), "WARNING - /var 88% used");
  result.perfdata.push_back({"/var", 88.0, "%", 85.0, 95.0, 0.0, 100.0});
  result.perfdata.push_back({"/", 40.0, "%", 85.0, 95.0, 0.0, 100.0});
  EXPECT_EQ(result.nagios_line(),
            "WARNING - /var 88% used | '/var'=88%;85;95;0;100 '/'=40%;85;95;0;100");
  result.message = "two\nlines | and a pipe";
  EXPECT_EQ(result.nagios_line().substr(0, 34), "WARNING - two lines / and a pipe |");
}

TEST(CheckSettings, OverrideReplacesLevelsButKeepsTheDirection) {
  CheckSettings settings;
  settings.thresholds["memory"] = Thresholds{.warn = 20.0, .crit = 15.0};
  const Thresholds defaults{.warn = 10.0, .crit = 5.0, .lower_is_worse = true};
  const Thresholds levels = settings.thresholds_for("memory", defaults);
  EXPECT_EQ(levels.warn, 20.0);
  EXPECT_EQ(levels.crit, 15.0);
  EXPECT_TRUE(levels.lower_is_worse);
  EXPECT_EQ(settings.thresholds_for("swap", Thresholds{.warn = 80.0}).warn, 80.0);
}

TEST(CheckSettings, OverlayLayersTagThenServer) {
  CheckSettings global;
  global.thresholds["disk_space"] = Thresholds{.warn = 80.0, .crit = 90.0};
  global.thresholds["load"] = Thresholds{.warn = 3.0, .crit = 6.0};
  global.ignored_mounts = {"/mnt/scratch"};
  CheckSettings tag;
  tag.thresholds["disk_space"] = Thresholds{.warn = 90.0, .crit = 97.0};
  tag.expected_ports = {80, 443};
  CheckSettings server;
  server.expected_ports = {5432};
  server.oom_kill_baseline = 7;

  const CheckSettings merged = overlay(overlay(global, tag), server);
  EXPECT_EQ(merged.thresholds.at("disk_space").warn, 90.0);
  EXPECT_EQ(merged.thresholds.at("load").crit, 6.0);
  EXPECT_EQ(merged.expected_ports, (std::vector<std::uint16_t>{80, 443, 5432}));
  EXPECT_EQ(merged.ignored_mounts, std::vector<std::string>{"/mnt/scratch"});
  EXPECT_EQ(merged.oom_kill_baseline, 7U);
  EXPECT_EQ(overlay(merged, CheckSettings{}).oom_kill_baseline, 7U);
}

}  // namespace
}  // namespace healer::checks
