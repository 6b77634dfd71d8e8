#include "healer/heal/sudoers.hpp"

#include <gtest/gtest.h>

#include <regex>

namespace healer::heal {
namespace {

ValidationContext context() {
  ValidationContext c;
  c.cleanup_dirs = {"/var/tmp/app", "/srv/a.b"};
  c.logrotate_configs = {"/opt/app/rotate.conf"};
  return c;
}

// The regular expression sudo sees: sudoers removes the backslash before , : = and \.
std::regex as_sudo_sees(const std::string& pattern) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size() &&
        std::string_view(",:=").find(pattern[i + 1]) != std::string_view::npos) {
      continue;
    }
    out += pattern[i];
  }
  return std::regex("^" + out + "$", std::regex::extended);
}

// For each type: what the validator accepts, sudo's rule accepts, and the reverse for hostile
// values (a rule wider than the validator would let a compromised healer run more).
TEST(HealSudoers, PatternsAgreeWithTheValidators) {
  const std::vector<std::pair<ParamType, std::vector<std::string>>> cases{
      {ParamType::unit,
       {"nginx.service", "getty@tty1.service", "a:b.socket", "x.timer", "nginx", "-x.service",
        "a b.service", "a;b.service", "$(id).service", ".service", "nginx.service.bak"}},
      {ParamType::size, {"500M", "1G", "0M", "1T", "05M", "1000000K", "500M;"}},
      {ParamType::days, {"7", "3650", "0", "07", "-1", "99999"}},
      {ParamType::directory, {"/var/tmp/app", "/srv/a.b", "/srv/aXb", "/var/tmp/app/x", "/"}},
      {ParamType::logrotate_config,
       {"/etc/logrotate.d/nginx", "/opt/app/rotate.conf", "/etc/logrotate.d/../x",
        "/etc/logrotate.d/a b", "/etc/logrotate.d/.x"}},
      {ParamType::pid, {"2", "4194304", "0", "012", "x"}},
      {ParamType::signal, {"TERM", "KILL", "STOP", "TERMX", "9"}},
  };
  for (const auto& [type, values] : cases) {
    const auto pattern = sudoers_pattern(type, context());
    const auto regex = as_sudo_sees(pattern);
    for (const auto& value : values) {
      const bool validator = validate_parameter("p", type, value, context()).has_value();
      const bool sudo = std::regex_match(value, regex);
      // sudo's rule may be coarser on ranges (pid 1, 4194305, days 3651) but never accepts what
      // the validator refuses for its characters or shape.
      if (validator) {
        EXPECT_TRUE(sudo) << to_string(type) << ": " << value << " vs " << pattern;
      } else if (value != "0" && value != "99999") {
        EXPECT_FALSE(sudo) << to_string(type) << ": " << value << " vs " << pattern;
      }
    }
  }
}

TEST(HealSudoers, OneRulePerCommandOnlyForSudoActions) {
  SudoersOptions options;
  options.user = "ops";
  options.context = context();
  std::vector<const ActionSpec*> actions;
  for (const auto& action : builtin_actions()) {
    actions.push_back(&action);
  }
  const auto text = sudoers_snippet(actions, options);
  EXPECT_NE(text.find("ops ALL=(root) NOPASSWD: /usr/bin/systemctl ^restart -- "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ops ALL=(root) NOPASSWD: /usr/bin/systemctl ^reset-failed -- "),
            std::string::npos);
  EXPECT_NE(text.find("ops ALL=(root) NOPASSWD: /usr/bin/systemctl ^start -- "), std::string::npos);
  EXPECT_NE(text.find("ops ALL=(root) NOPASSWD: /usr/sbin/shutdown -r +1\n"), std::string::npos);
  EXPECT_NE(text.find("/usr/bin/find ^(/var/tmp/app|/srv/a\\.b) -xdev"), std::string::npos) << text;
  // Every rule line is for the user, never ALL commands.
  std::size_t rules = 0;
  std::size_t at = 0;
  while ((at = text.find("\nops ALL=(root) NOPASSWD: ", at)) != std::string::npos) {
    ++rules;
    ++at;
  }
  EXPECT_EQ(rules, 8u);  // restart, reset-failed + start, vacuum, find, logrotate, kill, reboot
  EXPECT_EQ(text.find("NOPASSWD: ALL"), std::string::npos);

  options.context.cleanup_dirs.clear();
  const auto without_dirs = sudoers_snippet(actions, options);
  EXPECT_EQ(without_dirs.find("/usr/bin/find"), std::string::npos);
  EXPECT_NE(without_dirs.find("no [heal] cleanup_dirs"), std::string::npos);
}

TEST(HealSudoers, ConfiguredPathsAndSpecialCharactersAreEscaped) {
  ActionSpec action;
  action.id = "flush";
  action.title = "Flush";
  action.commands = {{"flushctl", "--mode=a,b:c"}};
  SudoersOptions options;
  options.paths = {{"flushctl", "/opt/bin/flushctl"}};
  const auto text = sudoers_snippet({&action}, options);
  EXPECT_NE(text.find("NOPASSWD: /opt/bin/flushctl --mode\\=a\\,b\\:c\n"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace healer::heal
