#include "healer/heal/action.hpp"

#include <gtest/gtest.h>

#include <set>

#include "healer/heal/errors.hpp"

namespace healer::heal {
namespace {

const ActionSpec& builtin(std::string_view id) {
  for (const auto& action : builtin_actions()) {
    if (action.id == id) {
      return action;
    }
  }
  throw std::logic_error("no built-in action " + std::string(id));
}

ValidationContext context() {
  ValidationContext c;
  c.cleanup_dirs = {"/var/tmp/app", "/srv/cache dir"};
  c.logrotate_configs = {"/opt/app/logrotate.conf"};
  return c;
}

bool valid(ParamType type, std::string_view value) {
  return validate_parameter("p", type, value, context()).has_value();
}

TEST(HealCatalog, BuiltinsAreTheIssuesStarterSetAndEachValidates) {
  std::set<std::string> ids;
  for (const auto& action : builtin_actions()) {
    ids.insert(action.id);
    EXPECT_FALSE(action.commands.empty()) << action.id;
    EXPECT_FALSE(action.rollback.empty()) << action.id;
    // Built-ins obey the config file's rules too, except the id clash and the guard.
    ActionSpec copy = action;
    copy.id = "copy_of_" + action.id;
    copy.guard.clear();
    const auto checked = validate_action(copy, "copy");
    if (action.id == "kill_process") {
      // start_time is used by the guard only, which configured actions cannot have.
      ASSERT_FALSE(checked);
      EXPECT_NE(checked.error().detail.find("start_time"), std::string::npos);
    } else {
      EXPECT_TRUE(checked) << action.id << ": " << checked.error().detail;
    }
  }
  EXPECT_EQ(ids,
            (std::set<std::string>{"restart_unit", "reset_failed_start", "vacuum_journal",
                                   "delete_old_files", "rotate_logs", "kill_process", "reboot"}));
  EXPECT_EQ(builtin("reboot").risk, Risk::high);
  EXPECT_FALSE(builtin("reboot").automatic_allowed());
  EXPECT_EQ(builtin("kill_process").risk, Risk::medium);
  EXPECT_EQ(builtin("reset_failed_start").risk, Risk::medium);
  EXPECT_TRUE(builtin("restart_unit").automatic_allowed());
}

TEST(HealCatalog, ResetFailedReadsTheStartLimitFirst) {
  const auto& action = builtin("reset_failed_start");
  EXPECT_EQ(action.probe, ProbeKind::unit);
  bool start_limit = false;
  for (const auto& e : action.precondition) {
    start_limit = start_limit ||
                  (e.fact == "Result" && e.any_of == std::vector<std::string>{"start-limit-hit"});
  }
  EXPECT_TRUE(start_limit);
}

TEST(HealValidators, UnitNames) {
  for (const char* good : {"nginx.service", "getty@tty1.service", "dev-sda1.mount",
                           "my_app:v2.socket", "backup.timer", "user-1000.slice"}) {
    EXPECT_TRUE(valid(ParamType::unit, good)) << good;
  }
  for (const char* hostile : {"",
                              "nginx",
                              "nginx.service; reboot",
                              "$(reboot).service",
                              "`id`.service",
                              "-H.service",
                              "--help.service",
                              ".service",
                              "@.service",
                              "a@.service",
                              "../../etc/x.service",
                              "a b.service",
                              "nginx.service\n",
                              "nginx.service\r",
                              "x'y.service",
                              "x\"y.service",
                              "x\\x2d.service",
                              "a|b.service",
                              "a>b.service",
                              "nginx.service.bak",
                              "é.service"}) {
    EXPECT_FALSE(valid(ParamType::unit, hostile)) << hostile;
  }
  EXPECT_TRUE(valid(ParamType::unit, std::string(248, 'a') + ".service"));
  EXPECT_FALSE(valid(ParamType::unit, std::string(249, 'a') + ".service"));
  // The NUL byte in the middle of a string_view.
  EXPECT_FALSE(valid(ParamType::unit, std::string_view("a\0b.service", 11)));
}

TEST(HealValidators, SizesDaysPidsStartTimesSignals) {
  EXPECT_TRUE(valid(ParamType::size, "500M"));
  EXPECT_TRUE(valid(ParamType::size, "1G"));
  EXPECT_TRUE(valid(ParamType::size, "999999K"));
  for (const char* bad :
       {"", "M", "0M", "500", "500m", "1T", "1000000K", "05M", "-1M", " 5M", "5M;", "+5M"}) {
    EXPECT_FALSE(valid(ParamType::size, bad)) << bad;
  }
  EXPECT_TRUE(valid(ParamType::days, "1"));
  EXPECT_TRUE(valid(ParamType::days, "3650"));
  for (const char* bad : {"0", "3651", "-1", "07", "1.5", "", "7 ", "+7"}) {
    EXPECT_FALSE(valid(ParamType::days, bad)) << bad;
  }
  EXPECT_TRUE(valid(ParamType::pid, "2"));
  EXPECT_TRUE(valid(ParamType::pid, "4194304"));
  for (const char* bad : {"0", "1", "4194305", "-1", "12a", "", "0x10", "1 2"}) {
    EXPECT_FALSE(valid(ParamType::pid, bad)) << bad;
  }
  EXPECT_TRUE(valid(ParamType::start_time, "0"));
  EXPECT_TRUE(valid(ParamType::start_time, "123456789"));
  EXPECT_FALSE(valid(ParamType::start_time, "12 3"));
  EXPECT_FALSE(valid(ParamType::start_time, "123456789012345678901"));
  EXPECT_TRUE(valid(ParamType::signal, "TERM"));
  EXPECT_TRUE(valid(ParamType::signal, "KILL"));
  for (const char* bad : {"9", "SIGKILL", "term", "STOP", "TERM;"}) {
    EXPECT_FALSE(valid(ParamType::signal, bad)) << bad;
  }
}

TEST(HealValidators, DirectoriesOnlyFromTheAllowList) {
  EXPECT_TRUE(valid(ParamType::directory, "/var/tmp/app"));
  EXPECT_TRUE(valid(ParamType::directory, "/srv/cache dir"));
  for (const char* bad : {"/var/tmp/app/", "/var/tmp/app/..", "/var/tmp", "/", "/var/tmp/app/x",
                          "var/tmp/app", "/var/tmp/app/../../etc"}) {
    EXPECT_FALSE(valid(ParamType::directory, bad)) << bad;
  }
  const auto none = validate_parameter("directory", ParamType::directory, "/var/tmp/app", {});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().detail.find("cleanup_dirs"), std::string::npos);
}

TEST(HealValidators, CleanupDirsMustBeNormalised) {
  EXPECT_TRUE(valid_cleanup_dir("/var/tmp/app"));
  EXPECT_TRUE(valid_cleanup_dir("/srv/with space"));
  for (const char* bad : {"/", "", "var/tmp", "/var/tmp/", "/var//tmp", "/var/./tmp", "/var/../etc",
                          "/var/tmp/..", "/var/tmp\n"}) {
    EXPECT_FALSE(valid_cleanup_dir(bad)) << bad;
  }
}

TEST(HealValidators, LogrotateConfigs) {
  EXPECT_TRUE(valid(ParamType::logrotate_config, "/etc/logrotate.d/nginx"));
  EXPECT_TRUE(valid(ParamType::logrotate_config, "/opt/app/logrotate.conf"));
  for (const char* bad : {"/etc/logrotate.d/", "/etc/logrotate.d/../shadow", "/etc/logrotate.d/.x",
                          "/etc/logrotate.d/-f", "/etc/logrotate.d/a/b", "/etc/logrotate.conf",
                          "/etc/logrotate.d/a b", "/opt/app/other.conf"}) {
    EXPECT_FALSE(valid(ParamType::logrotate_config, bad)) << bad;
  }
}

TEST(HealValidators, TheErrorEchoesAHostileValueEscaped) {
  const auto result = validate_parameter("unit", ParamType::unit, "x\x1b[31m\n.service", context());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, make_error_code(Errc::invalid_parameter));
  EXPECT_EQ(result.error().detail.find('\x1b'), std::string::npos);
  EXPECT_EQ(result.error().detail.find('\n'), std::string::npos);
  EXPECT_NE(result.error().detail.find("\\x1b"), std::string::npos);
}

TEST(HealValidators, ParametersFillDefaultsAndRefuseUnknownOrMissing) {
  const auto& vacuum = builtin("vacuum_journal");
  const auto defaults = validate_parameters(vacuum, {}, context());
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->at("size"), "500M");

  const auto& restart = builtin("restart_unit");
  const auto missing = validate_parameters(restart, {}, context());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().detail.find("unit"), std::string::npos);

  const auto unknown =
      validate_parameters(restart, {{"unit", "a.service"}, {"force", "yes"}}, context());
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().detail.find("force"), std::string::npos);

  const auto hostile = validate_parameters(restart, {{"unit", "a.service;id"}}, context());
  ASSERT_FALSE(hostile);
  EXPECT_EQ(hostile.error().code, make_error_code(Errc::invalid_parameter));
}

ActionSpec configured() {
  ActionSpec a;
  a.id = "flush_cache";
  a.title = "Flush the app cache";
  a.builtin = false;
  a.params = {ParamSpec{"unit", ParamType::unit, "the unit", std::nullopt}};
  a.commands = {{"/opt/app/bin/flush", "--unit={unit}"}};
  a.probe = ProbeKind::unit;
  a.precondition = {Expectation{"ActiveState", {"active"}}};
  return a;
}

TEST(HealConfiguredActions, AreValidatedLikeBuiltins) {
  EXPECT_TRUE(validate_action(configured(), "here"));

  auto expect_refused = [](const ActionSpec& action, std::string_view why) {
    const auto result = validate_action(action, "[[heal.actions]] #1");
    ASSERT_FALSE(result) << why;
    EXPECT_EQ(result.error().code, make_error_code(Errc::invalid_config));
    EXPECT_NE(result.error().detail.find("[[heal.actions]] #1"), std::string::npos);
  };
  auto a = configured();
  a.id = "restart_unit";
  expect_refused(a, "a built-in id");
  a = configured();
  a.id = "Bad-Id";
  expect_refused(a, "bad id");
  a = configured();
  a.commands = {{"{unit}", "x"}};
  expect_refused(a, "placeholder as the program");
  a = configured();
  a.commands = {{"sh -c", "x"}};
  expect_refused(a, "a space in the program");
  a = configured();
  a.commands = {{"flush", "{other}"}};
  expect_refused(a, "undeclared placeholder");
  a = configured();
  a.commands = {{"flush", "{unit"}};
  expect_refused(a, "unbalanced brace");
  a = configured();
  a.commands = {{"flush", "now"}};
  expect_refused(a, "declared parameter never used");
  a = configured();
  a.commands = {{"flush", "{unit}\n"}};
  expect_refused(a, "a control character");
  a = configured();
  a.guard = "true";
  expect_refused(a, "a guard");
  a = configured();
  a.precondition = {Expectation{"process", {"running"}}};
  expect_refused(a, "a fact the probe does not report");
  a = configured();
  a.precondition = {Expectation{"ActiveState", {}}};
  expect_refused(a, "no expected value");
  a = configured();
  a.params = {ParamSpec{"unit", ParamType::days, "", std::nullopt}};
  expect_refused(a, "the unit probe needs a unit parameter");
  a = configured();
  a.timeout = std::chrono::seconds(0);
  expect_refused(a, "zero timeout");
}

}  // namespace
}  // namespace healer::heal
