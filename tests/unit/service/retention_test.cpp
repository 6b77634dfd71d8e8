// Retention: environment over config file over defaults; bad values are named.
#include <gtest/gtest.h>

#include "healer/service/settings.hpp"

namespace healer::service {
namespace {

TEST(Retention, DefaultsFileAndEnvironment) {
  const auto none = config::Environment::from_map({});
  auto defaults = load_retention(none, std::nullopt, "f");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->samples.count(), 30);
  EXPECT_EQ(defaults->runs.count(), 90);

  const std::string file = "[store]\nsamples_retention_days = 7\nruns_retention_days = 365\n";
  auto from_file = load_retention(none, file, "f");
  ASSERT_TRUE(from_file) << from_file.error().message();
  EXPECT_EQ(from_file->samples.count(), 7);
  EXPECT_EQ(from_file->runs.count(), 365);

  auto env = load_retention(config::Environment::from_map({{"HEALER_SAMPLES_RETENTION_DAYS", "2"}}),
                            file, "f");
  ASSERT_TRUE(env);
  EXPECT_EQ(env->samples.count(), 2);
  EXPECT_EQ(env->runs.count(), 365);
}

TEST(Retention, BadValuesAreNamed) {
  const auto none = config::Environment::from_map({});
  auto zero = load_retention(config::Environment::from_map({{"HEALER_RUNS_RETENTION_DAYS", "0"}}),
                             std::nullopt, "f");
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().detail.find("HEALER_RUNS_RETENTION_DAYS='0'"), std::string::npos);
  auto text = load_retention(config::Environment::from_map({{"HEALER_RUNS_RETENTION_DAYS", "7d"}}),
                             std::nullopt, "f");
  EXPECT_FALSE(text);
  auto key = load_retention(none, std::string("[store]\nretention = 3\n"), "/etc/h.toml");
  ASSERT_FALSE(key);
  EXPECT_NE(key.error().detail.find("/etc/h.toml: store.retention: unknown key"),
            std::string::npos);
  auto fraction = load_retention(none, std::string("[store]\nruns_retention_days = 1.5\n"), "f");
  EXPECT_FALSE(fraction);
}

}  // namespace
}  // namespace healer::service
