// The [checks] table of the config file: layering all < tags < server, both threshold forms, and
// errors that name the file and the key.
#include <gtest/gtest.h>

#include <string>

#include "healer/service/settings.hpp"

namespace healer::service {
namespace {

const std::vector<std::string> kKeys{"disk_space", "memory", "cpu.busy"};

CheckConfig parse_ok(std::string_view text) {
  auto parsed = parse_check_config(text, "/etc/healer.toml", kKeys);
  EXPECT_TRUE(parsed) << parsed.error().message();
  return parsed ? *parsed : CheckConfig{};
}

std::string parse_error(std::string_view text) {
  auto parsed = parse_check_config(text, "/etc/healer.toml", kKeys);
  EXPECT_FALSE(parsed);
  return parsed ? "" : parsed.error().detail;
}

TEST(CheckConfig, LayersAllThenTagsThenServer) {
  const auto config = parse_ok(R"(
[pool]
max_connections = 4          # other tables are not ours

[checks]
thresholds = { disk_space = [80, 90], "cpu.busy" = { warn = 95 } }
ignored_mounts = ["/snap"]

[checks.tags.prod]
thresholds = { disk_space = [70, 85] }
expected_ports = [443]

[checks.tags.db]
thresholds = { memory = { crit = 3 } }

[checks.servers.web1]
thresholds = { disk_space = { warn = 60, crit = 75 } }
expected_ports = [22]
ignored_mounts = ["/mnt/backup"]
)");
  const auto plain = config.settings_for("other", {});
  EXPECT_EQ(plain.thresholds.at("disk_space").warn, 80);
  EXPECT_EQ(plain.thresholds.at("disk_space").crit, 90);
  EXPECT_EQ(plain.thresholds.at("cpu.busy").warn, 95);
  EXPECT_FALSE(plain.thresholds.at("cpu.busy").crit.has_value());
  EXPECT_EQ(plain.ignored_mounts, (std::vector<std::string>{"/snap"}));

  const auto prod = config.settings_for("api", {"db", "prod"});
  EXPECT_EQ(prod.thresholds.at("disk_space").warn, 70);
  EXPECT_EQ(prod.thresholds.at("memory").crit, 3);
  EXPECT_EQ(prod.expected_ports, (std::vector<std::uint16_t>{443}));

  const auto web1 = config.settings_for("web1", {"prod"});
  EXPECT_EQ(web1.thresholds.at("disk_space").warn, 60);
  EXPECT_EQ(web1.thresholds.at("disk_space").crit, 75);
  EXPECT_EQ(web1.expected_ports, (std::vector<std::uint16_t>{443, 22}));  // lists add up
  EXPECT_EQ(web1.ignored_mounts, (std::vector<std::string>{"/snap", "/mnt/backup"}));
}

TEST(CheckConfig, NoChecksTableIsEmpty) {
  const auto config = parse_ok("[pool]\nmax_channels = 5\n");
  EXPECT_TRUE(config.settings_for("x", {"y"}).thresholds.empty());
}

TEST(CheckConfig, ErrorsNameTheFileAndTheKey) {
  EXPECT_NE(parse_error("[checks]\nthresholds = { disk = [1, 2] }\n")
                .find("/etc/healer.toml: checks.thresholds.disk: no check reads this threshold"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks]\nthresholds = { memory = [1] }\n")
                .find("checks.thresholds.memory must be [warn, crit]"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks]\nthresholds = { memory = [\"a\", 2] }\n")
                .find("checks.thresholds.memory[0] must be a number"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks]\nthresholds = { memory = { warn = 1, critical = 2 } }\n")
                .find("checks.thresholds.memory.critical: unknown key"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks.servers.a]\nexpected_ports = [0]\n")
                .find("checks.servers.a.expected_ports must hold ports 1-65535"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks.tags.t]\nignored_units = \"x\"\n")
                .find("checks.tags.t.ignored_units must be an array of strings"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks]\nthreshold = {}\n").find("checks.threshold: unknown key"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks.tags]\nprod = 1\n").find("checks.tags.prod must be a table"),
            std::string::npos);
  EXPECT_NE(parse_error("[checks\n").find("/etc/healer.toml line 1"), std::string::npos);
}

TEST(CheckConfig, KnownKeysComeFromTheChecks) {
  const auto keys = known_threshold_keys();
  for (const char* key : {"disk_space", "memory", "cpu.busy", "clock_skew"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << key;
  }
}

}  // namespace
}  // namespace healer::service
