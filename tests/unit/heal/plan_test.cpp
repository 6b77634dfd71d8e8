#include "healer/heal/plan.hpp"

#include <gtest/gtest.h>

#include "healer/heal/errors.hpp"

namespace healer::heal {
namespace {

HealConfig config_with_rule() {
  HealConfig config;
  Rule rule;
  rule.name = "nginx_down";
  rule.check = "systemd_failed_units";
  rule.action = "restart_unit";
  rule.params = {{"unit", "nginx.service"}};
  rule.tags = {"web"};
  config.rules.push_back(rule);
  return config;
}

ServerInput web_server(std::string status) {
  ServerInput server;
  server.name = "web1";
  server.id = 7;
  server.tags = {"web"};
  DiagnosisView view;
  view.run_id = 11;
  view.at = 1000;
  view.status = status;
  view.checks["systemd_failed_units"] = {status, "1 failed unit: nginx.service"};
  server.diagnosis = view;
  return server;
}

Facts unit_facts(std::string active) {
  Facts facts;
  facts.state = {{"systemd", "yes"},      {"journald", "yes"},    {"logrotate", "yes"},
                 {"family", "debian"},    {"privilege", "ok"},    {"LoadState", "loaded"},
                 {"ActiveState", active}, {"Result", "exit-code"}};
  facts.info = {{"NRestarts", "3"}, {"SubState", "failed"}};
  return facts;
}

Plan plan_of(const HealConfig& config, const ServerInput& server, Facts facts,
             const std::vector<ActionRequest>& requests = {}) {
  Plan plan;
  ServerPlan part;
  part.server = server.name;
  part.server_id = server.id;
  part.run_id = server.diagnosis->run_id;
  part.status = server.diagnosis->status;
  auto found = candidates(config, server, requests, RuleSet::all, &part.checks);
  if (!found) {
    throw std::runtime_error(found.error().detail);
  }
  for (const auto& candidate : *found) {
    part.steps.push_back(make_step(candidate, Privilege::sudo, facts, std::nullopt));
  }
  plan.servers.push_back(std::move(part));
  plan.created_at = 5;
  plan.created_by = "cli:me";
  plan.hash = plan_hash(plan);
  return plan;
}

TEST(HealPlan, ARuleProposesItsActionWhenItsCheckIsBad) {
  const auto config = config_with_rule();
  std::map<std::string, std::string> consulted;
  auto found = candidates(config, web_server("CRITICAL"), {}, RuleSet::all, &consulted);
  ASSERT_TRUE(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front().action->id, "restart_unit");
  EXPECT_EQ(found->front().trigger->rule, "nginx_down");
  EXPECT_EQ(consulted.at("systemd_failed_units"), "CRITICAL");

  found = candidates(config, web_server("OK"), {}, RuleSet::all, &consulted);
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->empty());
  EXPECT_EQ(consulted.at("systemd_failed_units"), "OK");

  // Not automatic: the daemon's rule set leaves it out.
  found = candidates(config, web_server("CRITICAL"), {}, RuleSet::automatic);
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->empty());

  auto other = web_server("CRITICAL");
  other.tags = {"db"};
  found = candidates(config, other, {}, RuleSet::all);
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->empty());
}

TEST(HealPlan, ExplicitRequestsAreValidatedAndDuplicatesMerged) {
  const auto config = config_with_rule();
  const auto server = web_server("CRITICAL");
  auto found =
      candidates(config, server, {{"restart_unit", {{"unit", "nginx.service"}}}}, RuleSet::all);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->size(), 1u);

  const auto bad =
      candidates(config, server, {{"restart_unit", {{"unit", "$(id).service"}}}}, RuleSet::all);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, make_error_code(Errc::invalid_parameter));

  const auto unknown = candidates(config, server, {{"format_disk", {}}}, RuleSet::none);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, make_error_code(Errc::unknown_action));
}

TEST(HealPlan, StepShowsExactlyWhatRunsAndWhetherItMay) {
  const auto plan = plan_of(config_with_rule(), web_server("CRITICAL"), unit_facts("failed"));
  ASSERT_EQ(plan.servers.front().steps.size(), 1u);
  const auto& step = plan.servers.front().steps.front();
  EXPECT_TRUE(step.ready) << step.blocked;
  EXPECT_EQ(step.argv.front(), (std::vector<std::string>{"sudo", "-n", "--", "systemctl", "restart",
                                                         "--", "nginx.service"}));
  EXPECT_NE(step.command.find("sudo -n -- systemctl restart -- nginx.service"), std::string::npos);
  EXPECT_EQ(program_argv(step).front(),
            (std::vector<std::string>{"systemctl", "restart", "--", "nginx.service"}));
  EXPECT_EQ(plan.ready_steps(), 1u);
  EXPECT_EQ(plan.highest_ready_risk(), Risk::low);

  const auto blocked = plan_of(config_with_rule(), web_server("CRITICAL"), unit_facts("active"));
  EXPECT_FALSE(blocked.servers.front().steps.front().ready);
  EXPECT_EQ(blocked.ready_steps(), 0u);

  const auto probe_failed = make_step(Candidate{&builtin_actions().front(),
                                                {{"unit", "a.service"}},
                                                std::nullopt,
                                                std::chrono::seconds(30)},
                                      Privilege::sudo, {}, std::string("timeout"));
  EXPECT_FALSE(probe_failed.ready);
  EXPECT_EQ(probe_failed.blocked, "probe_failed: timeout");
}

TEST(HealPlan, HashCoversStateNotTimesOrMessages) {
  const auto config = config_with_rule();
  const auto plan = plan_of(config, web_server("CRITICAL"), unit_facts("failed"));
  EXPECT_EQ(plan.hash.size(), 64u);
  EXPECT_EQ(plan_hash(plan), plan.hash);

  auto same = plan;
  same.created_at = 99;
  same.created_by = "api";
  same.servers.front().steps.front().facts.info["NRestarts"] = "4";
  same.servers.front().steps.front().trigger->message = "different words";
  same.servers.front().notes.push_back("a note");
  EXPECT_EQ(plan_hash(same), plan.hash);

  // The server's state changed: the unit recovered by itself.
  EXPECT_NE(plan_of(config, web_server("CRITICAL"), unit_facts("active")).hash, plan.hash);
  // The check's status changed.
  EXPECT_NE(plan_of(config, web_server("WARNING"), unit_facts("failed")).hash, plan.hash);

  auto edited = plan;
  edited.servers.front().steps.front().argv.front().back() = "ssh.service";
  EXPECT_NE(plan_hash(edited), plan.hash);
  edited = plan;
  edited.servers.front().steps.front().command += "; reboot";
  EXPECT_NE(plan_hash(edited), plan.hash);
  edited = plan;
  edited.servers.front().server_id = 8;
  EXPECT_NE(plan_hash(edited), plan.hash);
  edited = plan;
  edited.rules = RuleSet::none;
  EXPECT_NE(plan_hash(edited), plan.hash);
}

TEST(HealPlan, DocumentRoundTripsAndRefusesEdits) {
  const auto plan = plan_of(config_with_rule(), web_server("CRITICAL"), unit_facts("failed"));
  const auto document = to_json(plan);
  EXPECT_EQ(document.at("hash"), plan.hash);
  EXPECT_EQ(document.at("ready_steps"), 1);
  const auto read = plan_from_json(document);
  ASSERT_TRUE(read) << read.error().detail;
  EXPECT_EQ(read->hash, plan.hash);
  EXPECT_EQ(read->servers.front().steps.front().argv, plan.servers.front().steps.front().argv);
  EXPECT_EQ(read->servers.front().steps.front().facts.info.at("NRestarts"), "3");
  EXPECT_EQ(read->created_by, "cli:me");

  auto edited = document;
  edited["servers"][0]["steps"][0]["argv"][0][6] = "ssh.service";
  auto refused = plan_from_json(edited);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::invalid_plan));

  edited = document;
  edited["servers"][0]["steps"][0]["ready"] = "yes";
  refused = plan_from_json(edited);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::invalid_plan));

  edited = document;
  edited["servers"][0]["steps"][0]["risk"] = "none";
  EXPECT_FALSE(plan_from_json(edited));

  edited = document;
  edited.erase("servers");
  EXPECT_FALSE(plan_from_json(edited));

  EXPECT_FALSE(plan_from_json(nlohmann::json::array()));
  EXPECT_FALSE(plan_from_json(nlohmann::json{{"format", "something/1"}}));
}

}  // namespace
}  // namespace healer::heal
