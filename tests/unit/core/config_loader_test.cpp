#include "healer/core/config_loader.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>  // mkdtemp

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <system_error>

namespace healer::config {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Vars = std::map<std::string, std::string>;

// A fresh directory under the system temp dir, removed with its contents at the end of the test.
class ConfigLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "healer-config-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes `text` to `name` in the temp dir and returns its path.
  fs::path write(const std::string& name, const std::string& text) {
    const fs::path file = dir_ / name;
    fs::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary);
    out << text;
    return file;
  }

  fs::path dir_;
};

Result<PoolConfig> load(const Vars& env, const std::optional<fs::path>& file = std::nullopt,
                        const Vars& flags = {}) {
  return load_pool_config(Environment::from_map(env), file, flags);
}

Result<PoolConfig> load_flags(const Vars& flags) { return load({}, std::nullopt, flags); }

// Fails with the error's message when `result` is not an error with `code` whose detail contains
// every one of `parts`.
template <class T>
void expect_error(const Result<T>& result, Errc code, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(result.has_value()) << "expected an error containing " << *parts.begin();
  EXPECT_EQ(result.error().code, make_error_code(code)) << result.error().message();
  for (const auto& part : parts) {
    EXPECT_NE(result.error().detail.find(part), std::string::npos)
        << "'" << part << "' not in: " << result.error().detail;
  }
}

TEST(ConfigLoader, DefaultsWhenNothingIsSet) {
  const auto config = load({});
  ASSERT_TRUE(config.has_value()) << config.error().message();
  const PoolConfig defaults;
  EXPECT_EQ(config->max_connections, 20U);
  EXPECT_EQ(config->max_channels, defaults.max_channels);
  EXPECT_EQ(config->max_concurrent, defaults.max_concurrent);
  EXPECT_EQ(config->max_concurrent_total, defaults.max_concurrent_total);
  EXPECT_EQ(config->max_handshakes_per_server, defaults.max_handshakes_per_server);
  EXPECT_EQ(config->max_handshakes_total, defaults.max_handshakes_total);
  EXPECT_EQ(config->command_delay, defaults.command_delay);
  EXPECT_EQ(config->on_exhausted, OnExhausted::queue);
  EXPECT_EQ(config->idle_timeout, milliseconds{300000});
  EXPECT_EQ(config->cleanup_interval, milliseconds{300000});
  EXPECT_EQ(config->keepalive_interval, milliseconds{10000});
  EXPECT_EQ(config->keepalive_max_missed, 3);
  EXPECT_EQ(config->max_lifetime, defaults.max_lifetime);
  EXPECT_EQ(config->health_check_idle, defaults.health_check_idle);
  EXPECT_EQ(config->min_idle, defaults.min_idle);
  EXPECT_EQ(config->connect_timeout, defaults.connect_timeout);
  EXPECT_EQ(config->backoff_initial, defaults.backoff_initial);
  EXPECT_EQ(config->backoff_max, defaults.backoff_max);
  EXPECT_TRUE(validate_pool_config(defaults).has_value());
}

TEST(ConfigLoader, SeedEnvironmentVariablesInMilliseconds) {
  const auto config = load({{"SSH_POOL_MAX_SIZE", "7"},
                            {"SSH_POOL_TIMEOUT", "60000"},
                            {"SSH_POOL_CLEANUP_INTERVAL", "15000"},
                            {"SSH_KEEPALIVE_INTERVAL", "2500"},
                            {"SSH_KEEPALIVE_MAX_MISSED", "5"}});
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->max_connections, 7U);
  EXPECT_EQ(config->idle_timeout, milliseconds{60000});
  EXPECT_EQ(config->cleanup_interval, milliseconds{15000});
  EXPECT_EQ(config->keepalive_interval, milliseconds{2500});
  EXPECT_EQ(config->keepalive_max_missed, 5);
}

TEST(ConfigLoader, HealerEnvironmentVariables) {
  const auto config = load({{"HEALER_MAX_CONCURRENT", "5"},
                            {"HEALER_COMMAND_DELAY", "100"},
                            {"HEALER_ON_EXHAUSTED", "fail"},
                            {"HEALER_MIN_IDLE", "2"},
                            {"HEALER_BACKOFF_INITIAL", "1"}});
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->max_concurrent, 5U);
  EXPECT_EQ(config->command_delay, milliseconds{100});
  EXPECT_EQ(config->on_exhausted, OnExhausted::fail);
  EXPECT_EQ(config->min_idle, 2U);
  EXPECT_EQ(config->backoff_initial, milliseconds{1});
}

TEST_F(ConfigLoaderTest, FlagOverEnvironmentOverFileOverDefault) {
  const auto file = write("config.toml",
                          "[pool]\n"
                          "max_connections = 5\n"     // also in env and flags: the flag wins
                          "idle_timeout_ms = 1000\n"  // also in env: env wins
                          "max_channels = 4\n");      // only here: the file wins
  const auto config = load({{"SSH_POOL_MAX_SIZE", "7"}, {"SSH_POOL_TIMEOUT", "2000"}}, file,
                           {{"max-connections", "9"}});
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->max_connections, 9U);
  EXPECT_EQ(config->idle_timeout, milliseconds{2000});
  EXPECT_EQ(config->max_channels, 4U);
  EXPECT_EQ(config->keepalive_interval, milliseconds{10000});  // nowhere: the default
}

TEST_F(ConfigLoaderTest, FileWithEveryKey) {
  std::string text = "# generated from pool_settings()\n[pool]\n";
  for (const auto& setting : pool_settings()) {
    text += setting.toml_key + " = " +
            (setting.name == "on_exhausted" ? std::string("\"direct\"") : setting.default_text) +
            "\n";
  }
  text += "\n[server]\nother_part_of_healer = true\n";  // other tables are not the pool's
  const auto config = load({}, write("all.toml", text));
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->on_exhausted, OnExhausted::direct);
  EXPECT_EQ(config->max_lifetime, PoolConfig{}.max_lifetime);
}

TEST_F(ConfigLoaderTest, EmptyFileAndFileWithoutPoolTable) {
  EXPECT_TRUE(load({}, write("empty.toml", "")).has_value());
  EXPECT_TRUE(load({}, write("other.toml", "[http]\nport = 8080\n")).has_value());
}

TEST(ConfigLoader, EverySettingReachableByEnvAndFlag) {
  for (const auto& setting : pool_settings()) {
    // a value other than the default (backoff_max keeps >= backoff_initial's default)
    const std::string value = setting.name == "on_exhausted"  ? "fail"
                              : setting.name == "backoff_max" ? "1000"
                                                              : "1";
    const auto by_env = load({{setting.env, value}});
    EXPECT_TRUE(by_env.has_value()) << setting.env << ": " << by_env.error().message();
    const auto by_flag = load_flags({{setting.flag, value}});
    EXPECT_TRUE(by_flag.has_value()) << setting.flag << ": " << by_flag.error().message();
  }
}

TEST(ConfigLoader, SettingsTable) {
  const auto settings = pool_settings();
  EXPECT_EQ(settings.size(), 19U);
  std::set<std::string> envs;
  std::set<std::string> keys;
  std::set<std::string> flags;
  for (const auto& setting : settings) {
    envs.insert(setting.env);
    keys.insert(setting.toml_key);
    flags.insert(setting.flag);
    EXPECT_FALSE(setting.help.empty()) << setting.name;
    EXPECT_FALSE(setting.default_text.empty()) << setting.name;
  }
  EXPECT_EQ(envs.size(), settings.size());
  EXPECT_EQ(keys.size(), settings.size());
  EXPECT_EQ(flags.size(), settings.size());
  for (const char* seed : {"SSH_POOL_MAX_SIZE", "SSH_POOL_TIMEOUT", "SSH_POOL_CLEANUP_INTERVAL",
                           "SSH_KEEPALIVE_INTERVAL", "SSH_KEEPALIVE_MAX_MISSED"}) {
    EXPECT_TRUE(envs.contains(seed)) << seed;
  }
  EXPECT_EQ(settings.front().default_text, "20");
}

// --- invalid values ---------------------------------------------------------------------------

TEST(ConfigLoader, RejectsNotANumber) {
  expect_error(load({{"SSH_POOL_MAX_SIZE", "abc"}}), Errc::invalid_value,
               {"SSH_POOL_MAX_SIZE=\"abc\" (environment)", "not a whole number"});
  expect_error(load({{"SSH_POOL_TIMEOUT", "5m"}}), Errc::invalid_value,
               {"SSH_POOL_TIMEOUT", "not a whole number of milliseconds"});
  expect_error(load({{"SSH_KEEPALIVE_INTERVAL", ""}}), Errc::invalid_value,
               {"SSH_KEEPALIVE_INTERVAL", "empty"});
  expect_error(load({{"SSH_KEEPALIVE_MAX_MISSED", "1.5"}}), Errc::invalid_value,
               {"SSH_KEEPALIVE_MAX_MISSED"});
  expect_error(load({{"SSH_KEEPALIVE_MAX_MISSED", " 3"}}), Errc::invalid_value,
               {"SSH_KEEPALIVE_MAX_MISSED"});
  expect_error(load({{"SSH_KEEPALIVE_MAX_MISSED", "+3"}}), Errc::invalid_value,
               {"SSH_KEEPALIVE_MAX_MISSED"});
}

TEST(ConfigLoader, RejectsTrailingGarbage) {
  expect_error(load({{"SSH_POOL_CLEANUP_INTERVAL", "10x"}}), Errc::invalid_value,
               {"SSH_POOL_CLEANUP_INTERVAL=\"10x\"", "not a whole number"});
  expect_error(load_flags({{"max-connections", "10x"}}), Errc::invalid_value,
               {"--max-connections=\"10x\" (command line)", "not a whole number"});
}

TEST(ConfigLoader, RejectsNegative) {
  expect_error(load({{"SSH_POOL_TIMEOUT", "-5"}}), Errc::invalid_value,
               {"SSH_POOL_TIMEOUT=\"-5\"", "must be >= 0"});
  expect_error(load({{"SSH_POOL_MAX_SIZE", "-1"}}), Errc::invalid_value,
               {"SSH_POOL_MAX_SIZE", "must be >= 1"});
}

TEST(ConfigLoader, RejectsOverflow) {
  expect_error(load({{"SSH_POOL_MAX_SIZE", "99999999999999999999999"}}), Errc::invalid_value,
               {"SSH_POOL_MAX_SIZE", "too large"});
  // keepalive_max_missed is an int
  expect_error(load({{"SSH_KEEPALIVE_MAX_MISSED", "4294967296"}}), Errc::invalid_value,
               {"SSH_KEEPALIVE_MAX_MISSED", "too large"});
  // durations must not overflow deadline arithmetic
  expect_error(load({{"SSH_POOL_TIMEOUT", "9223372036854775807"}}), Errc::invalid_value,
               {"SSH_POOL_TIMEOUT", "too large"});
  EXPECT_TRUE(load({{"SSH_POOL_TIMEOUT", "31536000000"}}).has_value());
}

TEST(ConfigLoader, ZeroRejectedOnlyWhereItMakesNoSense) {
  const std::set<std::string> must_be_positive = {
      "max-connections", "max-channels", "max-concurrent", "max-concurrent-total",
      "max-handshakes-per-server", "max-handshakes-total", "cleanup-interval-ms",
      "connect-timeout-ms", "keepalive-max-missed",
      // 0 would retry a failing server in a tight
      // loop: exactly what trips fail2ban
      "backoff-initial-ms", "backoff-max-ms"};
  for (const auto& setting : pool_settings()) {
    if (setting.name == "on_exhausted") {
      continue;
    }
    const auto config = load_flags({{setting.flag, "0"}});
    if (must_be_positive.contains(setting.flag)) {
      expect_error(config, Errc::invalid_value, {"--" + setting.flag, "must be >= 1"});
    } else {
      EXPECT_TRUE(config.has_value()) << setting.flag << ": " << config.error().message();
    }
  }
  expect_error(load({{"SSH_POOL_MAX_SIZE", "0"}}), Errc::invalid_value,
               {"SSH_POOL_MAX_SIZE=\"0\" (environment)", "must be >= 1"});
  const auto zeros = load({{"SSH_POOL_TIMEOUT", "0"},
                           {"SSH_KEEPALIVE_INTERVAL", "0"},
                           {"HEALER_MAX_LIFETIME", "0"},
                           {"HEALER_HEALTH_CHECK_IDLE", "0"},
                           {"HEALER_COMMAND_DELAY", "0"},
                           {"HEALER_MIN_IDLE", "0"}});
  EXPECT_TRUE(zeros.has_value()) << zeros.error().message();
}

TEST(ConfigLoader, RejectsUnknownOnExhausted) {
  expect_error(load({{"HEALER_ON_EXHAUSTED", "Queue"}}), Errc::invalid_value,
               {"HEALER_ON_EXHAUSTED=\"Queue\"", "queue, fail, direct"});
  expect_error(load_flags({{"on-exhausted", "wait"}}), Errc::invalid_value,
               {"--on-exhausted=\"wait\""});
}

TEST(ConfigLoader, InvalidValueRejectedEvenWhenOverridden) {
  expect_error(load({{"SSH_POOL_MAX_SIZE", "abc"}}, std::nullopt, {{"max-connections", "9"}}),
               Errc::invalid_value, {"SSH_POOL_MAX_SIZE"});
}

TEST(ConfigLoader, RejectsUnknownFlag) {
  expect_error(load_flags({{"max-conections", "3"}}), Errc::unknown_key,
               {"--max-conections (command line)", "did you mean max-connections?"});
}

TEST(ConfigLoader, QuotesControlCharactersInMessages) {
  const auto config = load({{"SSH_POOL_MAX_SIZE", "1\n2\""}});
  expect_error(config, Errc::invalid_value, {"SSH_POOL_MAX_SIZE=\"1\\x0a2\\\"\""});
}

TEST_F(ConfigLoaderTest, FileRejectsNegativeWithLine) {
  const auto file = write("config.toml", "[pool]\nmax_connections = 4\nidle_timeout_ms = -5\n");
  expect_error(load({}, file), Errc::invalid_value,
               {"pool.idle_timeout_ms = -5 (" + file.string() + " line 3): must be >= 0"});
}

TEST_F(ConfigLoaderTest, FileRejectsZeroWhereNotAllowed) {
  expect_error(load({}, write("c.toml", "[pool]\nkeepalive_max_missed = 0\n")), Errc::invalid_value,
               {"pool.keepalive_max_missed = 0", "line 2", "must be >= 1"});
}

TEST_F(ConfigLoaderTest, FileRejectsWrongTypes) {
  expect_error(load({}, write("a.toml", "[pool]\nmax_connections = \"20\"\n")), Errc::invalid_value,
               {"pool.max_connections = \"20\"", "without quotes"});
  expect_error(load({}, write("b.toml", "[pool]\nidle_timeout_ms = 1.5\n")), Errc::invalid_value,
               {"pool.idle_timeout_ms = 1.5", "not a whole number"});
  expect_error(load({}, write("c.toml", "[pool]\non_exhausted = 1\n")), Errc::invalid_value,
               {"pool.on_exhausted = 1", "must be a string"});
  expect_error(load({}, write("d.toml", "[pool]\nmax_channels = [1, 2]\n")), Errc::invalid_value,
               {"pool.max_channels", "must be an integer"});
  expect_error(load({}, write("e.toml", "pool = 3\n")), Errc::invalid_value,
               {"pool = 3", "must be a table"});
}

TEST_F(ConfigLoaderTest, FileRejectsUnknownKey) {
  const auto file = write("config.toml", "[pool]\nmax_conections = 4\n");
  expect_error(load({}, file), Errc::unknown_key,
               {"pool.max_conections (" + file.string() + " line 2): unknown key",
                "did you mean max_connections?"});
  // the unit suffix is the likeliest slip
  expect_error(load({}, write("units.toml", "[pool]\nidle_timeout = 4\n")), Errc::unknown_key,
               {"pool.idle_timeout", "did you mean idle_timeout_ms?"});
  expect_error(load({}, write("nested.toml", "[pool.limits]\nmax_connections = 4\n")),
               Errc::unknown_key, {"pool.limits"});
}

TEST_F(ConfigLoaderTest, FileRejectsPoolKeyOutsidePoolTable) {
  expect_error(load({}, write("top.toml", "max_connections = 4\n")), Errc::unknown_key,
               {"max_connections", "[pool] table"});
}

TEST_F(ConfigLoaderTest, FileRejectsUnknownOnExhausted) {
  expect_error(load({}, write("c.toml", "[pool]\non_exhausted = \"sometimes\"\n")),
               Errc::invalid_value, {"pool.on_exhausted = \"sometimes\"", "queue, fail, direct"});
}

TEST_F(ConfigLoaderTest, MalformedToml) {
  const auto file = write("bad.toml", "[pool]\nmax_connections = = 4\n");
  expect_error(load({}, file), Errc::parse_error, {file.string(), "line 2"});
  expect_error(load({}, write("dup.toml", "[pool]\nmin_idle = 1\nmin_idle = 2\n")),
               Errc::parse_error, {"line 3"});
  // TOML integers are 64-bit: larger literals are a parse error, never a wrapped value
  expect_error(load({}, write("big.toml", "[pool]\nmax_connections = 99999999999999999999\n")),
               Errc::parse_error, {"line 2"});
}

TEST_F(ConfigLoaderTest, UnreadableFile) {
  expect_error(load({}, dir_ / "missing.toml"), Errc::file_unreadable, {"missing.toml"});
  expect_error(load({}, dir_), Errc::file_unreadable, {"is a directory"});
}

// --- relations --------------------------------------------------------------------------------

TEST(ConfigLoader, BackoffInitialMustNotExceedBackoffMax) {
  expect_error(load({{"HEALER_BACKOFF_INITIAL", "120000"}}), Errc::invalid_value,
               {"HEALER_BACKOFF_INITIAL=\"120000\" (environment) must be <= backoff_max_ms = "
                "60000 (default)"});
  EXPECT_TRUE(load({{"HEALER_BACKOFF_INITIAL", "5000"}, {"HEALER_BACKOFF_MAX", "5000"}}));
}

TEST_F(ConfigLoaderTest, MinIdleMustNotExceedMaxConnections) {
  const auto file = write("config.toml", "[pool]\nmin_idle = 8\n");
  expect_error(load({}, file, {{"max-connections", "4"}}), Errc::invalid_value,
               {"pool.min_idle = 8", "must be <= --max-connections=\"4\" (command line)"});
  EXPECT_TRUE(load({}, file, {{"max-connections", "8"}}));
}

// interval x max_missed is how long a silent connection lives: each factor within its own range
// may still overflow (steady_clock's nanoseconds, or the milliseconds it is computed in).
TEST(ConfigLoader, KeepaliveIntervalTimesMaxMissedMustFit) {
  expect_error(
      load({{"SSH_KEEPALIVE_INTERVAL", "31536000000"}, {"SSH_KEEPALIVE_MAX_MISSED", "2147483647"}}),
      Errc::invalid_value,
      {"SSH_KEEPALIVE_INTERVAL=\"31536000000\" (environment) x "
       "SSH_KEEPALIVE_MAX_MISSED=\"2147483647\" (environment) = more than 2^64",
       "one year"});
  expect_error(load({{"SSH_KEEPALIVE_INTERVAL", "20000000000"}}), Errc::invalid_value,
               {"= 60000000000 ms", "keepalive_max_missed = 3 (default)"});
  EXPECT_TRUE(load({{"SSH_KEEPALIVE_INTERVAL", "10512000000"}}));  // x3 = one year exactly
  EXPECT_TRUE(load({{"SSH_KEEPALIVE_INTERVAL", "0"}, {"SSH_KEEPALIVE_MAX_MISSED", "2147483647"}}));
  PoolConfig config;
  config.keepalive_interval = milliseconds{86'400'000};
  config.keepalive_max_missed = 1000;
  expect_error(validate_pool_config(config), Errc::invalid_value,
               {"keepalive_interval_ms = 86400000 (set in code) x keepalive_max_missed = 1000",
                "86400000000"});
}

TEST(ConfigLoader, ValidatesConfigBuiltInCode) {
  PoolConfig config;
  config.keepalive_max_missed = -1;
  expect_error(validate_pool_config(config), Errc::invalid_value,
               {"keepalive_max_missed", "must be >= 1"});
  config = PoolConfig{};
  config.idle_timeout = milliseconds{-3};
  expect_error(validate_pool_config(config), Errc::invalid_value,
               {"idle_timeout_ms", "must be >= 0"});
  config = PoolConfig{};
  config.max_channels = 0;
  expect_error(validate_pool_config(config), Errc::invalid_value, {"max_channels"});
  config = PoolConfig{};
  config.min_idle = 30;
  expect_error(validate_pool_config(config), Errc::invalid_value, {"min_idle", "max_connections"});
}

// --- finding the file -------------------------------------------------------------------------

TEST_F(ConfigLoaderTest, FindConfigFile) {
  const Vars none;
  // an explicit file must exist
  expect_error(find_config_file(Environment::from_map(none), dir_ / "nope.toml"),
               Errc::file_unreadable, {"nope.toml", "--config"});
  const auto named = write("named.toml", "");
  EXPECT_EQ(find_config_file(Environment::from_map(none), named).value(), named);
  // so must $HEALER_CONFIG, which wins over the XDG location
  const auto xdg_file = write("xdg/healer/config.toml", "");
  const Vars xdg = {{"XDG_CONFIG_HOME", (dir_ / "xdg").string()}};
  EXPECT_EQ(find_config_file(Environment::from_map(xdg), std::nullopt).value(), xdg_file);
  Vars with_named = xdg;
  with_named["HEALER_CONFIG"] = named.string();
  EXPECT_EQ(find_config_file(Environment::from_map(with_named), std::nullopt).value(), named);
  with_named["HEALER_CONFIG"] = (dir_ / "gone.toml").string();
  expect_error(find_config_file(Environment::from_map(with_named), std::nullopt),
               Errc::file_unreadable, {"gone.toml", "HEALER_CONFIG"});
  // ~/.config is used when XDG_CONFIG_HOME is unset, and a missing default file is no error
  const Vars home = {{"HOME", dir_.string()}};
  EXPECT_EQ(find_config_file(Environment::from_map(home), std::nullopt).value(), std::nullopt);
  const auto home_file = write(".config/healer/config.toml", "");
  EXPECT_EQ(find_config_file(Environment::from_map(home), std::nullopt).value(), home_file);
  EXPECT_EQ(find_config_file(Environment::from_map(none), std::nullopt).value(), std::nullopt);
}

// --- plumbing ---------------------------------------------------------------------------------

TEST(ConfigLoader, ProcessEnvironment) {
  const auto env = Environment::process();
  EXPECT_TRUE(env.get("PATH").has_value());
  EXPECT_FALSE(env.get("HEALER_TEST_SURELY_NOT_SET_4711").has_value());
}

TEST(ConfigLoader, ErrorCategory) {
  EXPECT_STREQ(error_category().name(), "config");
  EXPECT_EQ(make_error_code(Errc::parse_error).message(), "config file is not valid TOML");
  EXPECT_STREQ(errc_name(Errc::unknown_key), "unknown_key");
  const Error error = make_error(Errc::invalid_value, "SSH_POOL_MAX_SIZE=\"abc\"");
  EXPECT_EQ(error.message(), "invalid configuration value: SSH_POOL_MAX_SIZE=\"abc\"");
}

}  // namespace
}  // namespace healer::config
