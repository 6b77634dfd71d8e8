#include "healer/heal/config.hpp"

#include <gtest/gtest.h>

namespace healer::heal {
namespace {

constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kHour = 60 * kMinute;

TEST(HealBrakes, RateLimitCountsTheLastHourOnly) {
  const std::int64_t now = 100 * kHour;
  EXPECT_TRUE(within_rate({}, 3, now));
  EXPECT_TRUE(within_rate({now - 50 * kMinute, now - 10 * kMinute}, 3, now));
  EXPECT_FALSE(within_rate({now - 50 * kMinute, now - 10 * kMinute, now - kMinute}, 3, now));
  // One of the three is older than an hour: a fourth may start.
  EXPECT_TRUE(within_rate({now - kHour, now - 10 * kMinute, now - kMinute}, 3, now));
  EXPECT_FALSE(within_rate({}, 0, now));
}

TEST(HealBrakes, RulesMatchByServerOrTagAndStatus) {
  Rule rule;
  EXPECT_TRUE(rule.applies_to("any", {}));
  EXPECT_TRUE(rule.matches("CRITICAL"));
  EXPECT_FALSE(rule.matches("WARNING"));
  EXPECT_FALSE(rule.matches("OK"));
  rule.tags = {"web"};
  rule.servers = {"db1"};
  EXPECT_TRUE(rule.applies_to("db1", {}));
  EXPECT_TRUE(rule.applies_to("web7", {"eu", "web"}));
  EXPECT_FALSE(rule.applies_to("web7", {"eu"}));
}

TEST(HealBrakes, SilencesFixedAndWeeklyAcrossMidnight) {
  const auto monday = parse_utc_time("2025-06-02T00:00:00Z");
  ASSERT_TRUE(monday);
  Silence fixed;
  fixed.from_ms = *monday;
  fixed.until_ms = *monday + 2 * kHour;
  EXPECT_TRUE(fixed.covers("a", {}, *monday));
  EXPECT_TRUE(fixed.covers("a", {}, *monday + kHour));
  EXPECT_FALSE(fixed.covers("a", {}, *monday + 2 * kHour));
  EXPECT_FALSE(fixed.covers("a", {}, *monday - 1));

  Silence weekly;  // Sundays 22:00 to 02:00
  weekly.tags = {"db"};
  weekly.days = {0};
  weekly.start_minute = 22 * 60;
  weekly.end_minute = 2 * 60;
  EXPECT_TRUE(weekly.covers("x", {"db"}, *monday - kHour));        // Sunday 23:00
  EXPECT_TRUE(weekly.covers("x", {"db"}, *monday + kHour));        // Monday 01:00
  EXPECT_FALSE(weekly.covers("x", {"db"}, *monday + 3 * kHour));   // Monday 03:00
  EXPECT_FALSE(weekly.covers("x", {"db"}, *monday + 23 * kHour));  // Monday 23:00
  EXPECT_FALSE(weekly.covers("x", {"web"}, *monday - kHour));      // another tag

  HealConfig config;
  config.silences = {weekly};
  EXPECT_NE(config.silence_for("x", {"db"}, *monday - kHour), nullptr);
  EXPECT_EQ(config.silence_for("x", {"db"}, *monday + 3 * kHour), nullptr);
}

TEST(HealConfigValues, TimesClocksDays) {
  EXPECT_EQ(parse_utc_time("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_utc_time("1970-01-02 00:00:01Z"), 86'401'000);
  EXPECT_FALSE(parse_utc_time("2025-02-30T00:00:00Z"));
  EXPECT_FALSE(parse_utc_time("2025-06-01T24:00:00Z"));
  EXPECT_FALSE(parse_utc_time("2025-06-01T00:00:00"));
  EXPECT_EQ(parse_clock("22:30"), 22 * 60 + 30);
  EXPECT_EQ(parse_clock("24:00"), 24 * 60);
  EXPECT_FALSE(parse_clock("24:01"));
  EXPECT_FALSE(parse_clock("7:30"));
  EXPECT_EQ(parse_weekday("sun"), 0);
  EXPECT_EQ(parse_weekday("saturday"), 6);
  EXPECT_FALSE(parse_weekday("Sun"));
}

TEST(HealConfigValues, PrivilegeByServerThenTagThenDefault) {
  HealConfig config;
  config.privilege_by_tag = {{"root", Privilege::none}};
  config.privilege_by_server = {{"special", Privilege::sudo}};
  EXPECT_EQ(config.privilege_for("a", {}), Privilege::sudo);
  EXPECT_EQ(config.privilege_for("a", {"x", "root"}), Privilege::none);
  EXPECT_EQ(config.privilege_for("special", {"root"}), Privilege::sudo);
  EXPECT_NE(config.find_action("restart_unit"), nullptr);
  EXPECT_EQ(config.find_action("nope"), nullptr);
  EXPECT_EQ(config.all_actions().size(), builtin_actions().size());
}

}  // namespace
}  // namespace healer::heal
