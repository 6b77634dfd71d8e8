#include "healer/heal/plan.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <array>

#include "healer/heal/errors.hpp"

namespace healer::heal {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kFormat = "healer-heal-plan/1";

std::string canonical(const Json& document) {
  // Objects are sorted maps: one text per content. Invalid UTF-8 cannot occur (facts are
  // sanitised, names validated) but must never throw here either.
  return document.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json hashed_step(const Step& step) {
  Json trigger = nullptr;
  if (step.trigger) {
    trigger = Json{{"rule", step.trigger->rule},
                   {"check", step.trigger->check},
                   {"status", step.trigger->status}};
  }
  return Json{{"action", step.action},
              {"params", step.params},
              {"risk", to_string(step.risk)},
              {"privilege", to_string(step.privilege)},
              {"argv", step.argv},
              {"command", step.command},
              {"trigger", std::move(trigger)},
              {"facts", step.facts.state},
              {"ready", step.ready},
              {"blocked", step.blocked}};
}

Error invalid(std::string detail) { return make_error(Errc::invalid_plan, std::move(detail)); }

template <class T>
T field(const Json& object, const char* name) {
  return object.at(name).get<T>();
}

std::map<std::string, std::string> string_map(const Json& object, const char* name) {
  std::map<std::string, std::string> out;
  if (!object.contains(name) || object.at(name).is_null()) {
    return out;
  }
  for (const auto& [key, value] : object.at(name).items()) {
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

Step step_from_json(const Json& doc) {
  Step step;
  step.action = field<std::string>(doc, "action");
  step.title = doc.value("title", std::string());
  const auto risk = parse_risk(field<std::string>(doc, "risk"));
  const auto privilege = parse_privilege(field<std::string>(doc, "privilege"));
  if (!risk || !privilege) {
    throw std::invalid_argument("risk or privilege");
  }
  step.risk = *risk;
  step.privilege = *privilege;
  step.params = string_map(doc, "params");
  step.argv = field<std::vector<std::vector<std::string>>>(doc, "argv");
  step.command = field<std::string>(doc, "command");
  if (doc.contains("trigger") && !doc.at("trigger").is_null()) {
    const auto& t = doc.at("trigger");
    step.trigger = Trigger{field<std::string>(t, "rule"), field<std::string>(t, "check"),
                           field<std::string>(t, "status"), t.value("message", std::string())};
  }
  step.facts.state = string_map(doc, "facts");
  step.facts.info = string_map(doc, "info");
  if (doc.contains("conditions")) {
    for (const auto& c : doc.at("conditions")) {
      Condition condition;
      condition.fact = field<std::string>(c, "fact");
      condition.expected = field<std::vector<std::string>>(c, "expected");
      condition.actual = c.value("actual", std::string());
      condition.holds = c.value("holds", false);
      step.conditions.push_back(std::move(condition));
    }
  }
  step.ready = field<bool>(doc, "ready");
  step.blocked = doc.value("blocked", Json()).is_string() ? doc.at("blocked").get<std::string>()
                                                          : std::string();
  step.rollback = doc.value("rollback", std::string());
  step.timeout = std::chrono::seconds(doc.value("timeout_seconds", std::int64_t{60}));
  step.grace = std::chrono::seconds(doc.value("grace_seconds", std::int64_t{30}));
  return step;
}

}  // namespace

std::string_view to_string(RuleSet rules) noexcept {
  switch (rules) {
    case RuleSet::all:
      return "all";
    case RuleSet::automatic:
      return "automatic";
    case RuleSet::none:
      return "none";
  }
  return "all";
}

std::optional<RuleSet> parse_rule_set(std::string_view text) noexcept {
  for (const auto rules : {RuleSet::all, RuleSet::automatic, RuleSet::none}) {
    if (to_string(rules) == text) {
      return rules;
    }
  }
  return std::nullopt;
}

std::size_t Plan::ready_steps() const {
  std::size_t count = 0;
  for (const auto& server : servers) {
    count += static_cast<std::size_t>(std::count_if(server.steps.begin(), server.steps.end(),
                                                    [](const Step& s) { return s.ready; }));
  }
  return count;
}

Risk Plan::highest_ready_risk() const {
  Risk highest = Risk::low;
  for (const auto& server : servers) {
    for (const auto& step : server.steps) {
      if (step.ready && static_cast<int>(step.risk) > static_cast<int>(highest)) {
        highest = step.risk;
      }
    }
  }
  return highest;
}

Result<std::vector<Candidate>> candidates(const HealConfig& config, const ServerInput& server,
                                          const std::vector<ActionRequest>& requests, RuleSet rules,
                                          std::map<std::string, std::string>* consulted) {
  std::vector<Candidate> out;
  auto add = [&](Candidate candidate) {
    const bool duplicate = std::any_of(out.begin(), out.end(), [&](const Candidate& c) {
      return c.action->id == candidate.action->id && c.params == candidate.params;
    });
    if (!duplicate) {
      out.push_back(std::move(candidate));
    }
  };
  const auto context = config.validation();
  if (rules != RuleSet::none && server.diagnosis) {
    for (const auto& rule : config.rules) {
      if ((rules == RuleSet::automatic && !rule.automatic) ||
          !rule.applies_to(server.name, server.tags)) {
        continue;
      }
      const auto check = server.diagnosis->checks.find(rule.check);
      if (check == server.diagnosis->checks.end()) {
        continue;
      }
      if (consulted != nullptr) {
        (*consulted)[rule.check] = check->second.status;
      }
      if (!rule.matches(check->second.status)) {
        continue;
      }
      const auto* action = config.find_action(rule.action);
      if (action == nullptr) {
        return make_error(Errc::unknown_action, fmt::format("rule {} names no known action '{}'",
                                                            rule.name, rule.action));
      }
      auto params = validate_parameters(*action, rule.params, context);
      if (!params) {
        return std::move(params).error();
      }
      add(Candidate{action, std::move(*params),
                    Trigger{rule.name, rule.check, check->second.status, check->second.message},
                    rule.grace});
    }
  }
  for (const auto& request : requests) {
    const auto* action = config.find_action(request.action);
    if (action == nullptr) {
      return make_error(Errc::unknown_action,
                        fmt::format("no action named '{}' (see `healer heal sudoers` for the list)",
                                    request.action));
    }
    auto params = validate_parameters(*action, request.params, context);
    if (!params) {
      return std::move(params).error();
    }
    add(Candidate{action, std::move(*params), std::nullopt, config.grace});
  }
  return out;
}

Step make_step(const Candidate& candidate, Privilege privilege, Facts facts,
               const std::optional<std::string>& probe_failure) {
  const auto& action = *candidate.action;
  Step step;
  step.action = action.id;
  step.title = action.title;
  step.risk = action.risk;
  step.privilege = action.privilege == Privilege::none ? Privilege::none : privilege;
  step.params = candidate.params;
  step.argv = render_argv(action, candidate.params, step.privilege);
  step.command = shell_command(action, candidate.params, step.argv);
  step.trigger = candidate.trigger;
  step.facts = std::move(facts);
  step.conditions = judge(action.precondition, step.facts);
  step.rollback = action.rollback;
  step.timeout = action.timeout;
  step.grace = candidate.grace;
  if (probe_failure) {
    step.blocked = "probe_failed: " + *probe_failure;
  } else if (auto reason = blocked_reason(action, step.privilege, step.facts, step.conditions)) {
    step.blocked = std::move(*reason);
  }
  step.ready = step.blocked.empty();
  return step;
}

std::string plan_hash(const Plan& plan) {
  Json servers = Json::array();
  for (const auto& server : plan.servers) {
    Json steps = Json::array();
    for (const auto& step : server.steps) {
      steps.push_back(hashed_step(step));
    }
    servers.push_back(Json{{"server", server.server},
                           {"server_id", server.server_id},
                           {"checks", server.checks},
                           {"steps", std::move(steps)}});
  }
  const std::string text = canonical(
      Json{{"format", kFormat}, {"rules", to_string(plan.rules)}, {"servers", std::move(servers)}});
  static const int initialised = sodium_init();
  (void)initialised;
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(text.data()),
                     text.size());
  std::string hex;
  for (const auto byte : digest) {
    hex += fmt::format("{:02x}", byte);
  }
  return hex;
}

Json to_json(const Step& step) {
  Json conditions = Json::array();
  for (const auto& c : step.conditions) {
    conditions.push_back(
        Json{{"fact", c.fact}, {"expected", c.expected}, {"actual", c.actual}, {"holds", c.holds}});
  }
  Json trigger = nullptr;
  if (step.trigger) {
    trigger = Json{{"rule", step.trigger->rule},
                   {"check", step.trigger->check},
                   {"status", step.trigger->status},
                   {"message", step.trigger->message}};
  }
  return Json{{"action", step.action},
              {"title", step.title},
              {"risk", to_string(step.risk)},
              {"privilege", to_string(step.privilege)},
              {"params", step.params},
              {"argv", step.argv},
              {"command", step.command},
              {"trigger", std::move(trigger)},
              {"facts", step.facts.state},
              {"info", step.facts.info},
              {"conditions", std::move(conditions)},
              {"ready", step.ready},
              {"blocked", step.blocked.empty() ? Json(nullptr) : Json(step.blocked)},
              {"rollback", step.rollback},
              {"timeout_seconds", step.timeout.count()},
              {"grace_seconds", step.grace.count()}};
}

Json to_json(const Plan& plan) {
  Json servers = Json::array();
  for (const auto& server : plan.servers) {
    Json steps = Json::array();
    for (const auto& step : server.steps) {
      steps.push_back(to_json(step));
    }
    servers.push_back(
        Json{{"server", server.server},
             {"server_id", server.server_id},
             {"run_id", server.run_id ? Json(*server.run_id) : Json(nullptr)},
             {"diagnosed_at", server.diagnosed_at ? Json(*server.diagnosed_at) : Json(nullptr)},
             {"status", server.status.empty() ? Json(nullptr) : Json(server.status)},
             {"checks", server.checks},
             {"steps", std::move(steps)},
             {"notes", server.notes}});
  }
  return Json{{"format", kFormat},
              {"hash", plan.hash},
              {"rules", to_string(plan.rules)},
              {"created_at", plan.created_at},
              {"created_by", plan.created_by},
              {"ready_steps", plan.ready_steps()},
              {"servers", std::move(servers)}};
}

Result<Plan> plan_from_json(const Json& document) {
  Plan plan;
  try {
    if (!document.is_object() || document.value("format", std::string()) != kFormat) {
      return invalid(fmt::format("not a heal plan (format is not {})", kFormat));
    }
    plan.hash = field<std::string>(document, "hash");
    const auto rules = parse_rule_set(document.value("rules", std::string("all")));
    if (!rules) {
      return invalid("rules must be all, automatic or none");
    }
    plan.rules = *rules;
    plan.created_at = document.value("created_at", std::int64_t{0});
    plan.created_by = document.value("created_by", std::string());
    for (const auto& server_doc : document.at("servers")) {
      ServerPlan server;
      server.server = field<std::string>(server_doc, "server");
      server.server_id = field<std::int64_t>(server_doc, "server_id");
      if (server_doc.contains("run_id") && !server_doc.at("run_id").is_null()) {
        server.run_id = server_doc.at("run_id").get<std::int64_t>();
      }
      if (server_doc.contains("diagnosed_at") && !server_doc.at("diagnosed_at").is_null()) {
        server.diagnosed_at = server_doc.at("diagnosed_at").get<std::int64_t>();
      }
      if (server_doc.contains("status") && server_doc.at("status").is_string()) {
        server.status = server_doc.at("status").get<std::string>();
      }
      server.checks = string_map(server_doc, "checks");
      for (const auto& step_doc : server_doc.at("steps")) {
        server.steps.push_back(step_from_json(step_doc));
      }
      if (server_doc.contains("notes")) {
        server.notes = server_doc.at("notes").get<std::vector<std::string>>();
      }
      plan.servers.push_back(std::move(server));
    }
  } catch (const std::exception&) {
    return invalid("the plan document is malformed (a field is missing or of the wrong type)");
  }
  if (plan_hash(plan) != plan.hash) {
    return invalid("the plan's content does not match its hash: it was edited or is damaged");
  }
  return plan;
}

std::vector<std::vector<std::string>> program_argv(const Step& step) {
  std::vector<std::vector<std::string>> out;
  for (const auto& argv : step.argv) {
    if (argv.size() > 3 && argv[0] == "sudo" && argv[1] == "-n" && argv[2] == "--") {
      out.emplace_back(argv.begin() + 3, argv.end());
    } else {
      out.push_back(argv);
    }
  }
  return out;
}

}  // namespace healer::heal
