// The application checks: definitions built from an application (quoting included) and their
// pure parsers on OK / WARNING / CRITICAL / UNKNOWN outputs.
#include <gtest/gtest.h>

#include <deque>
#include <string>

#include "fixture.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/checks/parsers.hpp"

namespace healer::checks {
namespace {

// `out` framed with the tests' marker; the text lives as long as the test program.
CheckInput output(std::string_view out, int exit_status = 0, std::string_view err = {}) {
  static std::deque<std::string> texts;
  CheckInput input;
  input.out = texts.emplace_back(testing::framed(out));
  input.marker = testing::kMarker;
  input.err = err;
  input.exit_status = exit_status;
  return input;
}

TEST(AppChecks, DefinitionsOnlyForWhatTheAppHas) {
  ApplicationSpec app;
  app.name = "shop";
  EXPECT_TRUE(application_checks(app).empty());
  app.units = {"shop.service"};
  app.log_paths = {"/var/log/shop.log"};
  const auto checks = application_checks(app);
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_EQ(checks[0].name, "app.units");
  EXPECT_EQ(checks[1].name, "app.logs");
  EXPECT_TRUE(checks[0].command.starts_with("LC_ALL=C"));
}

TEST(AppChecks, ValuesAreSingleQuotedSoTheyCannotInjectShell) {
  ApplicationSpec app;
  app.name = "x";
  app.units = {"a'; rm -rf / #"};
  app.health_url = "http://127.0.0.1/$(reboot)";
  const auto checks = application_checks(app);
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_NE(checks[0].command.find(R"('a'\''; rm -rf / #')"), std::string::npos)
      << checks[0].command;
  EXPECT_NE(checks[1].command.find("'http://127.0.0.1/$(reboot)'"), std::string::npos);
}

TEST(AppChecks, Units) {
  const CheckSettings none;
  const auto ok = parse_app_units(
      output("@@healer unit active shop.service\n@@healer unit active db.service\n"), none);
  EXPECT_EQ(ok.status, Status::ok);
  EXPECT_EQ(ok.message, "all 2 units active: shop.service, db.service");
  EXPECT_EQ(ok.name, "app.units");

  const auto starting = parse_app_units(output("@@healer unit activating shop.service\n"), none);
  EXPECT_EQ(starting.status, Status::warning);

  const auto down =
      parse_app_units(output("@@healer unit failed shop.service\n"
                             "@@healer unit active db.service\n@@healer unit  q.service\n",
                             3),
                      none);
  EXPECT_EQ(down.status, Status::critical);
  EXPECT_EQ(down.message, "2 of 3 units not active: shop.service failed, q.service unknown");
  ASSERT_EQ(down.perfdata.size(), 1u);
  EXPECT_EQ(down.perfdata[0].value, 2.0);

  const auto missing =
      parse_app_units(output("@@healer unavailable systemd is not running\n"), none);
  EXPECT_EQ(missing.status, Status::unknown);
  EXPECT_EQ(missing.message, "systemd is not running");
  EXPECT_EQ(parse_app_units(output(""), none).status, Status::unknown);
}

TEST(AppChecks, Health) {
  CheckSettings settings;
  const auto ok = parse_app_health(output("@@healer curl 0 200 0.012345\n"), settings);
  EXPECT_EQ(ok.status, Status::ok) << ok.message;
  EXPECT_TRUE(ok.message.starts_with("HTTP 200 in ")) << ok.message;
  EXPECT_EQ(parse_app_health(output("@@healer curl 0 302 0.1\n"), settings).status, Status::ok);
  const auto slow = parse_app_health(output("@@healer curl 0 200 3.5\n"), settings);
  EXPECT_EQ(slow.status, Status::warning);
  settings.thresholds["app.response_time"] = Thresholds{.warn = 0.1, .crit = 0.2};
  EXPECT_EQ(parse_app_health(output("@@healer curl 0 200 0.5\n"), settings).status,
            Status::critical);
  const auto error = parse_app_health(output("@@healer curl 0 503 0.01\n", 0), {});
  EXPECT_EQ(error.status, Status::critical);
  EXPECT_TRUE(error.message.starts_with("HTTP 503")) << error.message;
  const auto refused = parse_app_health(
      output("@@healer curl 7 000 0\n", 0, "curl: (7) Failed to connect to 127.0.0.1 port 9"), {});
  EXPECT_EQ(refused.status, Status::critical);
  EXPECT_NE(refused.message.find("Failed to connect"), std::string::npos);
  const auto timeout = parse_app_health(output("@@healer curl 28 000 10.001\n"), {});
  EXPECT_EQ(timeout.message, "no HTTP answer within 10 s");
  EXPECT_EQ(parse_app_health(output("@@healer wget ok\n"), {}).status, Status::ok);
  const auto wget_error = parse_app_health(output("@@healer wget failed 8\n"), {});
  EXPECT_EQ(wget_error.status, Status::critical);
  EXPECT_NE(wget_error.message.find("HTTP error"), std::string::npos);
  EXPECT_EQ(parse_app_health(output("@@healer unavailable neither curl nor wget\n"), {}).status,
            Status::unknown);
  EXPECT_EQ(parse_app_health(output("garbage\n"), {}).status, Status::unknown);
}

TEST(AppChecks, Logs) {
  const CheckSettings none;
  const auto ok = parse_app_logs(
      output("@@healer log 0 /var/log/a.log\n@@healer log 2 /var/log/b c.log\n"), none);
  EXPECT_EQ(ok.status, Status::ok);
  EXPECT_EQ(ok.message, "2 error line(s) in the last 500 of /var/log/b c.log");
  const auto warn = parse_app_logs(output("@@healer log 7 /var/log/a.log\n"), none);
  EXPECT_EQ(warn.status, Status::warning);
  const auto crit = parse_app_logs(output("@@healer log 120 /var/log/a.log\n"), none);
  EXPECT_EQ(crit.status, Status::critical);
  const auto missing =
      parse_app_logs(output("@@healer log 0 /a\n@@healer missing /var/log/gone.log\n"), none);
  EXPECT_EQ(missing.status, Status::warning);
  EXPECT_NE(missing.message.find("missing: /var/log/gone.log"), std::string::npos);
  const auto unreadable = parse_app_logs(output("@@healer unreadable /var/log/secure\n"), none);
  EXPECT_EQ(unreadable.status, Status::unknown);  // healer cannot look: not a finding
  EXPECT_NE(unreadable.message.find("permission"), std::string::npos);
}

}  // namespace
}  // namespace healer::checks
