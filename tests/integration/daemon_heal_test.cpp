// Healing through `healer serve`: the HTTP API (plan -> apply -> history, the refusals) and the
// automatic rules with their brakes, against a real daemon, a real sshd and a real SQLite file.
//
// systemd is not PID 1 in these sandboxes, so units are simulated as in heal_cli_test.cpp: the
// sshd runs in a private mount namespace where a stand-in `systemctl` (systemd_stand_in.hpp)
// records every call and keeps unit states in files the test sets. Diagnoses run on demand
// (POST /api/v1/servers/NAME/diagnose, recorded like scheduled ones) so each test decides when a
// rule sees a bad result; the schedule is off.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "daemon_fixture.hpp"
#include "poll_until.hpp"
#include "sshd_fixture.hpp"
#include "systemd_stand_in.hpp"
#include "temp_dir.hpp"
#include "webhook_receiver.hpp"

namespace healer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::DaemonFixture;
using test::SshdFixture;
using test::SystemdStandIn;
using test::WebhookReceiver;

constexpr const char* kRule =
    "[[heal.rules]]\nname = \"nginx_down\"\ncheck = \"failed_units\"\naction = "
    "\"restart_unit\"\nparams = { unit = \"nginx.service\" }\n";

// The daemon's config: no schedule (diagnoses on demand), privilege "none" (the stand-in needs
// no root), `heal` appended to [heal], then the rule with `rule` appended.
std::string config(const std::string& heal, const std::string& rule,
                   const std::string& extra = "") {
  return fmt::format(
      "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n{}"
      "[heal]\nprivilege = \"none\"\n{}\n{}{}\n",
      extra, heal, kRule, rule);
}

std::size_t restarts(const SystemdStandIn& systemd) {
  const auto changes = systemd.changes();
  return static_cast<std::size_t>(std::count_if(
      changes.begin(), changes.end(),
      [](const std::string& line) { return line.rfind("systemctl [restart]", 0) == 0; }));
}

class DaemonHeal : public ::testing::Test {
 protected:
  void start(const std::string& config_text, std::vector<std::string> servers = {"box"}) {
    sshd_.emplace(systemd_.sshd_options());
    sshd_->start();
    daemon_.emplace(HEALER_BIN, home_, config_text);
    for (const auto& name : servers) {
      std::vector<std::string> argv{"env"};
      const auto env = daemon_->cli_env();
      argv.insert(argv.end(), env.begin(), env.end());
      for (const auto& word : {std::string(HEALER_BIN), std::string("server"), std::string("add"),
                               name, std::string("--host"), sshd_->host(), std::string("--port"),
                               std::to_string(sshd_->port()), std::string("--user"), sshd_->user(),
                               std::string("--identity"), sshd_->client_key_path().string(),
                               std::string("--known-hosts"), sshd_->known_hosts_path().string(),
                               std::string("--tag"), std::string("web")}) {
        argv.push_back(word);
      }
      const auto added = test::run_command(argv, std::chrono::seconds(30));
      ASSERT_EQ(added.exit_code(), 0) << added.err;
    }
    daemon_->start();
  }

  /// Diagnoses `server` now (failed_units only); the run id.
  std::int64_t diagnose(const std::string& server = "box") {
    const auto response =
        daemon_->post("/api/v1/servers/" + server + "/diagnose", R"({"checks": ["failed_units"]})");
    EXPECT_EQ(response.status, 200) << response.body;
    const auto doc = json::parse(response.body, nullptr, false);
    EXPECT_TRUE(doc["servers"][0]["run_id"].is_number_integer()) << response.body;
    return doc["servers"][0]["run_id"].is_number_integer()
               ? doc["servers"][0]["run_id"].get<std::int64_t>()
               : 0;
  }

  json get_json(const std::string& path) {
    const auto response = daemon_->get(path);
    EXPECT_EQ(response.status, 200) << path << ": " << response.body;
    return json::parse(response.body, nullptr, false);
  }

  json history() { return get_json("/api/v1/heal/history"); }
  json stats() { return get_json("/api/v1/heal")["stats"]; }

  /// The history's items of `kind` ("heal", "breaker_open", ...).
  std::vector<json> items(const std::string& kind) {
    std::vector<json> out;
    const auto log = history();
    for (const auto& item : log["items"]) {
      if (item["kind"] == kind) {
        out.push_back(item);
      }
    }
    return out;
  }

  /// Validates `documents` (schema name, JSON text) against the daemon's OpenAPI document.
  void validate(const std::vector<std::pair<std::string, std::string>>& documents) {
    const auto openapi = daemon_->get("/api/v1/openapi.json");
    ASSERT_EQ(openapi.status, 200);
    std::ofstream(home_.path() / "openapi.json") << openapi.body;
    std::vector<std::string> argv{"/usr/bin/python3", HEALER_VALIDATE_OPENAPI,
                                  (home_.path() / "openapi.json").string()};
    for (std::size_t i = 0; i < documents.size(); ++i) {
      const auto file = home_.path() / fmt::format("response{}.json", i);
      std::ofstream(file) << documents[i].second;
      argv.push_back(documents[i].first + "=" + file.string());
    }
    const auto validated = test::run_command(argv, std::chrono::seconds(30));
    EXPECT_EQ(validated.exit_code(), 0) << validated.out << validated.err;
  }

  SystemdStandIn systemd_;
  test::TempDir home_;
  std::optional<SshdFixture> sshd_;
  std::optional<DaemonFixture> daemon_;
};

// --- the API ---------------------------------------------------------------------------------

TEST_F(DaemonHeal, PlanApplyHistoryThroughTheApi) {
  start(config("grace = \"0s\"\n", ""));
  systemd_.set_unit("nginx.service", "failed");
  diagnose();

  // Planning and applying change things: both need the token.
  const std::string plan_body = R"({"names": ["box"]})";
  EXPECT_EQ(daemon_->post("/api/v1/heal/plans", plan_body, false).status, 401);
  const auto planned = daemon_->post("/api/v1/heal/plans", plan_body);
  ASSERT_EQ(planned.status, 201) << planned.body;
  const auto plan = json::parse(planned.body);
  ASSERT_EQ(plan["ready_steps"], 1) << plan.dump(2);
  const auto hash = plan["hash"].get<std::string>();
  const auto& step = plan["servers"][0]["steps"][0];
  EXPECT_EQ(step["action"], "restart_unit");
  EXPECT_EQ(step["argv"][0], json({"systemctl", "restart", "--", "nginx.service"}));
  EXPECT_EQ(step["trigger"]["rule"], "nginx_down");
  const auto stored = daemon_->get("/api/v1/heal/plans/" + hash);
  ASSERT_EQ(stored.status, 200) << stored.body;
  EXPECT_EQ(json::parse(stored.body)["hash"], hash);
  EXPECT_EQ(daemon_->get("/api/v1/heal/plans/" + std::string(64, 'a')).status, 404);
  EXPECT_EQ(daemon_->get("/api/v1/heal/plans/not-a-hash").status, 400);

  const auto apply_path = "/api/v1/heal/plans/" + hash + "/apply";
  const auto apply_body = json{{"hash", hash}}.dump();
  EXPECT_EQ(daemon_->post(apply_path, apply_body, false).status, 401);
  // The body must repeat the hash of the plan in the URL: a different one runs nothing.
  const auto wrong = daemon_->post(apply_path, json{{"hash", std::string(64, 'b')}}.dump());
  EXPECT_EQ(wrong.status, 409) << wrong.body;
  EXPECT_EQ(json::parse(wrong.body)["error"]["code"], "conflict");
  EXPECT_EQ(daemon_->post(apply_path, "{}").status, 400);
  EXPECT_EQ(restarts(systemd_), 0U);
  EXPECT_TRUE(history()["items"].empty());

  const auto applied = daemon_->post(apply_path, apply_body);
  ASSERT_EQ(applied.status, 200) << applied.body;
  const auto outcome = json::parse(applied.body);
  EXPECT_EQ(outcome["status"], "applied");
  ASSERT_EQ(outcome["steps"].size(), 1U) << outcome.dump(2);
  EXPECT_EQ(outcome["steps"][0]["result"], "succeeded") << outcome.dump(2);
  EXPECT_EQ(outcome["steps"][0]["verification"]["result"], "verified") << outcome.dump(2);
  ASSERT_EQ(systemd_.changes(),
            std::vector<std::string>{"systemctl [restart] [--] [nginx.service]"});

  const auto log = history();
  ASSERT_EQ(log["items"].size(), 1U) << log.dump(2);
  EXPECT_EQ(log["items"][0]["actor"], "api");
  EXPECT_EQ(log["items"][0]["plan_hash"], hash);
  EXPECT_EQ(log["items"][0]["result"], "succeeded");
  EXPECT_EQ(log["items"][0]["verification"], "verified");
  EXPECT_EQ(get_json("/api/v1/heal/history?server=elsewhere")["items"].size(), 0U);
  EXPECT_EQ(daemon_->get("/api/v1/heal/history?limit=0").status, 400);

  // The export: every event, oldest first, one JSON object a line.
  const auto exported = daemon_->get("/api/v1/heal/history?format=jsonl");
  ASSERT_EQ(exported.status, 200);
  EXPECT_EQ(exported.content_type.rfind("application/x-ndjson", 0), 0U) << exported.content_type;
  std::vector<std::string> lines;
  std::istringstream in(exported.body);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 3U) << exported.body;
  EXPECT_EQ(json::parse(lines[0])["event"], "started");
  EXPECT_EQ(json::parse(lines[1])["event"], "finished");
  EXPECT_EQ(json::parse(lines[2])["event"], "verified");

  validate({{"HealPlan", planned.body},
            {"HealPlan", stored.body},
            {"HealApplyOutcome", applied.body},
            {"HealHistory", daemon_->get("/api/v1/heal/history").body},
            {"HealEvent", lines[0]},
            {"HealEvent", lines[2]},
            {"HealStatus", daemon_->get("/api/v1/heal").body},
            {"Error", wrong.body}});
}

TEST_F(DaemonHeal, AStalePlanIsRefusedWith409AndNothingRuns) {
  start(config("grace = \"0s\"\n", ""));
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto planned = daemon_->post("/api/v1/heal/plans", R"({"tags": ["web"]})");
  ASSERT_EQ(planned.status, 201) << planned.body;
  const auto hash = json::parse(planned.body)["hash"].get<std::string>();
  systemd_.set_unit("nginx.service", "active");  // someone fixed it meanwhile
  const auto refused =
      daemon_->post("/api/v1/heal/plans/" + hash + "/apply", json{{"hash", hash}}.dump());
  ASSERT_EQ(refused.status, 409) << refused.body;
  const auto outcome = json::parse(refused.body);
  EXPECT_EQ(outcome["status"], "stale");
  EXPECT_EQ(outcome["error"]["code"], "stale_plan");
  EXPECT_FALSE(outcome["changes"].empty()) << outcome.dump(2);
  EXPECT_EQ(restarts(systemd_), 0U);
  const auto log = history();
  ASSERT_EQ(log["items"].size(), 1U) << log.dump(2);
  EXPECT_EQ(log["items"][0]["kind"], "refused");
  EXPECT_EQ(log["items"][0]["result"], "stale");
  validate({{"HealApplyOutcome", refused.body}});
}

TEST_F(DaemonHeal, HighRiskNeedsAllowRiskAndBadParametersAreRejectedBeforeAnythingRuns) {
  start(config("grace = \"0s\"\n", ""));
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto hostile = daemon_->post(
      "/api/v1/heal/plans",
      R"({"names": ["box"], "rules": false, "actions": [{"action": "restart_unit", "params": {"unit": "x.service; touch /tmp/owned"}}]})");
  EXPECT_EQ(hostile.status, 400) << hostile.body;
  EXPECT_EQ(json::parse(hostile.body)["error"]["code"], "invalid_parameter");
  EXPECT_EQ(daemon_->post("/api/v1/heal/plans", R"({"names": ["ghost"]})").status, 404);
  EXPECT_EQ(daemon_->post("/api/v1/heal/plans", R"({})").status, 400);
  EXPECT_EQ(daemon_->post("/api/v1/heal/plans", "not json").status, 400);

  const auto planned =
      daemon_->post("/api/v1/heal/plans",
                    R"({"names": ["box"], "rules": false, "actions": [{"action": "reboot"}]})");
  ASSERT_EQ(planned.status, 201) << planned.body;
  const auto plan = json::parse(planned.body);
  ASSERT_EQ(plan["ready_steps"], 1) << plan.dump(2);
  EXPECT_EQ(plan["servers"][0]["steps"][0]["risk"], "high");
  const auto hash = plan["hash"].get<std::string>();
  const auto path = "/api/v1/heal/plans/" + hash + "/apply";
  for (const auto& body : {json{{"hash", hash}}, json{{"hash", hash}, {"allow_risk", "medium"}}}) {
    const auto refused = daemon_->post(path, body.dump());
    EXPECT_EQ(refused.status, 400) << refused.body;
    EXPECT_NE(refused.body.find("allow_risk"), std::string::npos) << refused.body;
  }
  EXPECT_EQ(daemon_->post(path, json{{"hash", hash}, {"allow_risk", "extreme"}}.dump()).status,
            400);
  // Nothing ran, nothing was recorded.
  EXPECT_TRUE(history()["items"].empty());
  EXPECT_EQ(systemd_.changes().size(), 0U);
}

TEST_F(DaemonHeal, AnApplyWhoseClientGoesAwayStillRunsToItsVerification) {
  start(config("grace = \"2s\"\n", ""));
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto planned = daemon_->post("/api/v1/heal/plans", R"({"names": ["box"]})");
  ASSERT_EQ(planned.status, 201) << planned.body;
  const auto hash = json::parse(planned.body)["hash"].get<std::string>();
  {
    // This client gives up during the grace period and closes its connection.
    httplib::Client client("127.0.0.1", daemon_->port());
    client.set_read_timeout(std::chrono::milliseconds(500));
    const httplib::Headers headers{{"Authorization", "Bearer " + daemon_->token()}};
    const auto response = client.Post("/api/v1/heal/plans/" + hash + "/apply", headers,
                                      json{{"hash", hash}}.dump(), "application/json");
    EXPECT_FALSE(response) << response->status;
  }
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto heals = items("heal");
        return !heals.empty() && !heals[0]["verification"].is_null();
      },
      std::chrono::seconds(10)))
      << history().dump(2) << daemon_->log_text();
  const auto heals = items("heal");
  EXPECT_EQ(heals[0]["actor"], "api");
  EXPECT_EQ(heals[0]["result"], "succeeded");
  EXPECT_EQ(heals[0]["verification"], "verified");
  EXPECT_EQ(restarts(systemd_), 1U);
}

// --- the automatic rules and their brakes ----------------------------------------------------

// (a) A failed unit is restarted by the rule once it was seen failed `consecutive` (2) times in
// a row, verified, and recorded with the rule as the actor.
TEST_F(DaemonHeal, AnAutoRuleRestartsAFailedUnitAfterConsecutiveBadResultsAndVerifies) {
  start(config("grace = \"0s\"\n", "auto = true\nconsecutive = 2\n"));
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto second_run = diagnose();
  ASSERT_TRUE(test::poll_until(
      [&] { return !items("heal").empty() && !items("heal")[0]["verification"].is_null(); },
      std::chrono::seconds(10)))
      << history().dump(2) << daemon_->log_text();
  const auto heals = items("heal");
  ASSERT_EQ(heals.size(), 1U);
  EXPECT_EQ(heals[0]["actor"], "rule:nginx_down");
  EXPECT_EQ(heals[0]["result"], "succeeded");
  EXPECT_EQ(heals[0]["verification"], "verified");
  // Flap suppression: the first bad result alone did not fire; the heal came after the second.
  const auto run = get_json("/api/v1/runs/" + std::to_string(second_run));
  EXPECT_GE(heals[0]["at"].get<std::int64_t>(), run["started_at"].get<std::int64_t>());
  EXPECT_EQ(systemd_.changes(),
            std::vector<std::string>{"systemctl [restart] [--] [nginx.service]"});
  // Healthy now: further diagnoses heal nothing.
  diagnose();
  diagnose();
  EXPECT_EQ(stats()["started"], 1);
  EXPECT_EQ(restarts(systemd_), 1U);
}

// (b) The rate limit: the 4th restart within the hour is not made, the breaker opens and a
// notification goes out.
TEST_F(DaemonHeal, TheFourthRestartWithinTheHourIsNotMadeAndNotified) {
  WebhookReceiver webhook;
  start(config("grace = \"0s\"\n", "auto = true\nconsecutive = 1\nmax_per_hour = 3\n",
               fmt::format("[notify]\nwebhook = \"http://127.0.0.1:{}/hook\"\n", webhook.port())));
  // The unit keeps failing again after each (verified) restart.
  for (std::size_t round = 1; round <= 3; ++round) {
    systemd_.set_unit("nginx.service", "failed");
    diagnose();
    ASSERT_TRUE(test::poll_until(
        [&] {
          const auto heals = items("heal");
          return heals.size() == round && !heals[0]["verification"].is_null();
        },
        std::chrono::seconds(10)))
        << "round " << round << ": " << history().dump(2) << daemon_->log_text();
  }
  EXPECT_EQ(restarts(systemd_), 3U);
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  ASSERT_TRUE(
      test::poll_until([&] { return !items("breaker_open").empty(); }, std::chrono::seconds(10)))
      << history().dump(2) << daemon_->log_text();
  const auto breaker = items("breaker_open")[0];
  EXPECT_EQ(breaker["actor"], "rule:nginx_down");
  EXPECT_NE(breaker["detail"].get<std::string>().find("rate limit"), std::string::npos)
      << breaker.dump(2);
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto events = webhook.received();
        return std::any_of(events.begin(), events.end(),
                           [](const json& event) { return event["event"] == "heal_breaker_open"; });
      },
      std::chrono::seconds(10)))
      << daemon_->log_text();
  for (const auto& event : webhook.received()) {
    if (event["event"] == "heal_breaker_open") {
      EXPECT_EQ(event["server"], "box");
      EXPECT_EQ(event["action"], "restart_unit");
      EXPECT_EQ(event["rule"], "nginx_down");
    }
  }
  // The rule stays stopped for the server: a 5th bad result is skipped (breaker open).
  const auto skipped = stats()["automatic_skipped"].get<int>();
  diagnose();
  ASSERT_TRUE(test::poll_until([&] { return stats()["automatic_skipped"].get<int>() > skipped; },
                               std::chrono::seconds(10)));
  EXPECT_EQ(restarts(systemd_), 3U);
  EXPECT_EQ(items("heal").size(), 3U);
}

// (c) Verification fails (the unit dies again within the grace period): the heal is failed, the
// breaker opens, someone is told, and the rule does not retry.
TEST_F(DaemonHeal, AFailedVerificationOpensTheBreakerAndIsNeverRetried) {
  WebhookReceiver webhook;
  start(config("grace = \"0s\"\n", "auto = true\nconsecutive = 1\n",
               fmt::format("[notify]\nwebhook = \"http://127.0.0.1:{}/hook\"\n", webhook.port())));
  systemd_.set_unit("nginx.service", "failed");
  systemd_.after_start("failed");
  diagnose();
  ASSERT_TRUE(
      test::poll_until([&] { return !items("breaker_open").empty(); }, std::chrono::seconds(10)))
      << history().dump(2) << daemon_->log_text();
  const auto heals = items("heal");
  ASSERT_EQ(heals.size(), 1U);
  EXPECT_EQ(heals[0]["actor"], "rule:nginx_down");
  EXPECT_EQ(heals[0]["verification"], "failed");
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto events = webhook.received();
        return std::any_of(events.begin(), events.end(),
                           [](const json& event) { return event["event"] == "heal_failed"; });
      },
      std::chrono::seconds(10)))
      << daemon_->log_text();
  const auto skipped = stats()["automatic_skipped"].get<int>();
  diagnose();  // still failed: the rule is due again, but its breaker is open
  ASSERT_TRUE(test::poll_until([&] { return stats()["automatic_skipped"].get<int>() > skipped; },
                               std::chrono::seconds(10)));
  EXPECT_EQ(restarts(systemd_), 1U);
  EXPECT_EQ(items("heal").size(), 1U);
}

// (d) A silenced server is not healed.
TEST_F(DaemonHeal, ASilencedServerIsNotHealed) {
  start(config("grace = \"0s\"\n", "auto = true\nconsecutive = 1\n") +
        "[[heal.silences]]\nservers = [\"box\"]\nreason = \"change freeze\"\n");
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  // observe() judges the silence as the diagnosis is recorded, before the response.
  EXPECT_EQ(stats()["automatic_skipped"], 1);
  diagnose();
  EXPECT_EQ(stats()["automatic_skipped"], 2);
  EXPECT_EQ(stats()["started"], 0);
  EXPECT_EQ(restarts(systemd_), 0U);
  EXPECT_TRUE(history()["items"].empty());
}

// The global cap: with max_concurrent = 1, a second server due while the first is in its grace
// period waits; SIGTERM then cuts the grace short and the verification is recorded interrupted.
TEST_F(DaemonHeal, TheGlobalCapHoldsASecondServerWhileOneHeals) {
  start(config("grace = \"60s\"\nmax_concurrent = 1\n", "auto = true\nconsecutive = 1\n"),
        {"box", "box2"});
  systemd_.set_unit("nginx.service", "failed");
  systemd_.after_start("failed");  // both servers keep seeing it failed
  diagnose("box");
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto heals = items("heal");
        return !heals.empty() && heals[0]["result"] == "succeeded";
      },
      std::chrono::seconds(10)))
      << history().dump(2) << daemon_->log_text();
  diagnose("box2");
  ASSERT_TRUE(
      test::poll_until([&] { return stats()["automatic_skipped"] == 1; }, std::chrono::seconds(10)))
      << stats().dump();
  EXPECT_EQ(restarts(systemd_), 1U);
  const auto heals = items("heal");
  ASSERT_EQ(heals.size(), 1U);
  EXPECT_EQ(heals[0]["server"], "box");
  EXPECT_TRUE(heals[0]["verification"].is_null());  // in its grace period
  const auto stopped = daemon_->stop();
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->exit_code, 0);
}

}  // namespace
}  // namespace healer
