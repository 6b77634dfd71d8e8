#include "heal_command.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/heal/sudoers.hpp"
#include "healer/service/errors.hpp"
#include "healer/service/heal.hpp"
#include "healer/service/json.hpp"
#include "pool_options.hpp"
#include "values.hpp"

namespace healer::cli {
namespace {

constexpr std::size_t kMaxPlanBytes = 8 * 1024 * 1024;

struct PlanArgs {
  StoreArgs store;
  PoolOptionValues pool;
  service::Selection selection;
  std::string action;
  std::vector<std::string> params;
  bool no_rules = false;
  bool json = false;
  double timeout_s = 30;
};

struct ApplyArgs {
  StoreArgs store;
  PoolOptionValues pool;
  std::string plan;
  bool yes = false;
  std::string allow_risk = "medium";
  bool json = false;
  double timeout_s = 60;
};

struct HistoryArgs {
  StoreArgs store;
  PoolOptionValues pool;
  std::string server;
  std::size_t limit = 50;
  bool json = false;
  bool jsonl = false;
};

struct SudoersArgs {
  PoolOptionValues pool;
  std::string user = "healer";
  std::vector<std::string> paths;
};

struct ResetArgs {
  StoreArgs store;
  PoolOptionValues pool;
  std::string server;
  std::string action;
};

std::string utc(std::int64_t ms) {
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &parts);
  return text;
}

std::string params_text(const std::map<std::string, std::string>& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    out += fmt::format(" {}={}", name, value);
  }
  return out;
}

std::string argv_text(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& word : argv) {
    out += (out.empty() ? "" : " ") + heal::sh_quote(word);
  }
  return out;
}

std::string facts_text(const heal::Facts& facts) {
  std::string out;
  for (const auto& [key, value] : facts.state) {
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", key, value);
  }
  std::string info;
  for (const auto& [key, value] : facts.info) {
    info += fmt::format("{}{}={}", info.empty() ? "" : " ", key, value);
  }
  if (!info.empty()) {
    out += fmt::format("{}({})", out.empty() ? "" : " ", info);
  }
  return out;
}

void print_plan(const heal::Plan& plan) {
  std::cout << fmt::format("plan {} ({} ready step{}, rules: {})\n", plan.hash, plan.ready_steps(),
                           plan.ready_steps() == 1 ? "" : "s", heal::to_string(plan.rules));
  for (const auto& server : plan.servers) {
    std::cout << '\n' << terminal_safe(server.server);
    if (server.run_id) {
      std::cout << fmt::format(": {} (diagnosis #{}, {})", server.status, *server.run_id,
                               utc(server.diagnosed_at.value_or(0)));
    }
    std::cout << '\n';
    for (const auto& step : server.steps) {
      std::cout << fmt::format("  {:<8} {}{}  [{} risk{}]\n", step.ready ? "ready" : "blocked",
                               step.action, terminal_safe(params_text(step.params)),
                               heal::to_string(step.risk),
                               step.trigger ? fmt::format(", rule {}: {} {}", step.trigger->rule,
                                                          step.trigger->check, step.trigger->status)
                                            : std::string(", asked for"));
      for (const auto& argv : step.argv) {
        std::cout << "           $ " << terminal_safe(argv_text(argv)) << '\n';
      }
      if (!step.facts.state.empty() || !step.facts.info.empty()) {
        std::cout << "           seen: " << terminal_safe(facts_text(step.facts)) << '\n';
      }
      if (!step.ready) {
        std::cout << "           why not: " << terminal_safe(step.blocked) << '\n';
      }
      if (!step.rollback.empty()) {
        std::cout << "           rollback: " << step.rollback << '\n';
      }
    }
    for (const auto& note : server.notes) {
      std::cout << "  note: " << terminal_safe(note) << '\n';
    }
  }
  if (plan.ready_steps() > 0) {
    std::cout << fmt::format(
        "\nto apply exactly this plan: healer heal apply {} --yes   (without --yes: a dry run)\n",
        plan.hash);
  }
}

void print_outcome(const service::HealApplyOutcome& outcome) {
  if (outcome.status == "stale") {
    std::cout << fmt::format("plan {} refused: the servers' state changed since it was made\n",
                             outcome.plan_hash);
    for (const auto& change : outcome.changes) {
      std::cout << "  " << terminal_safe(change) << '\n';
    }
    std::cout << "nothing was run; plan again (healer heal plan ...)\n";
    return;
  }
  if (outcome.status == "nothing_to_do") {
    std::cout << "the plan has no ready step: nothing to do\n";
  }
  if (outcome.status == "dry_run") {
    std::cout << fmt::format(
        "dry run of plan {} (the state still matches it; add --yes to apply)\n", outcome.plan_hash);
  }
  for (const auto& step : outcome.steps) {
    std::string line = fmt::format("{}  {}{}: {}", terminal_safe(step.server), step.action,
                                   terminal_safe(params_text(step.params)), step.result);
    if (step.exit_code) {
      line += fmt::format(" (exit {})", *step.exit_code);
    }
    if (step.verification) {
      line += ", verification " + step.verification->result;
    }
    if (!step.heal_id.empty()) {
      line += "  [heal " + step.heal_id + "]";
    }
    std::cout << line << '\n';
    if (!step.detail.empty()) {
      std::cout << "    " << terminal_safe(step.detail) << '\n';
    }
    if (step.verification && !step.verification->detail.empty()) {
      std::cout << "    " << terminal_safe(step.verification->detail) << '\n';
    }
    if (step.breaker_opened) {
      std::cout << fmt::format(
          "    breaker opened: automatic healing of {} on {} stops until "
          "`healer heal reset {} {}`\n",
          step.action, terminal_safe(step.server), terminal_safe(step.server), step.action);
    }
    if (!step.output.empty()) {
      std::cout << "    | " << terminal_safe(step.output) << '\n';
    }
  }
}

int outcome_exit_code(const service::HealApplyOutcome& outcome) {
  if (outcome.status == "stale") {
    return kExitHealStale;
  }
  bool failed = false;
  bool privilege = false;
  for (const auto& step : outcome.steps) {
    privilege = privilege || step.result == "privilege_missing";
  }
  failed = !outcome.all_good();
  if (privilege) {
    return kExitPrivilegeMissing;
  }
  return failed ? 1 : 0;
}

Result<std::map<std::string, std::string>> parse_params(const std::vector<std::string>& texts) {
  std::map<std::string, std::string> params;
  for (const auto& text : texts) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0) {
      return service::make_error(service::Errc::invalid_input,
                                 fmt::format("--param '{}': expected NAME=VALUE", text));
    }
    params[text.substr(0, eq)] = text.substr(eq + 1);
  }
  return params;
}

int run_plan(PlanArgs args) {
  auto timeout = timeout_from_seconds(args.timeout_s, "--timeout");
  if (!timeout) {
    return fail(timeout.error());
  }
  if (args.selection.empty()) {
    return usage("name servers, or use --tag TAG or --all");
  }
  auto params = parse_params(args.params);
  if (!params) {
    return fail(params.error());
  }
  if (args.action.empty() && !params->empty()) {
    return usage("--param goes with --action");
  }
  service::HealPlanRequest request;
  request.selection = args.selection;
  if (!args.action.empty()) {
    request.actions.push_back(heal::ActionRequest{args.action, *params});
  }
  request.rules = !args.no_rules;
  request.actor = service::local_actor();
  request.timeout = *timeout;
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  service::HealEngine engine(**runtime);
  int interrupted = 0;
  auto plan = (*runtime)->run_one_shot(engine.async_plan(std::move(request)), &interrupted);
  if (!plan) {
    return fail(plan.error());
  }
  if (args.json) {
    std::cout << service::dump(heal::to_json(*plan), 2) << '\n';
  } else {
    print_plan(*plan);
  }
  return interrupted != 0 ? 128 + interrupted : 0;
}

bool looks_like_hash(const std::string& text) {
  return text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

int run_apply(ApplyArgs args) {
  auto timeout = timeout_from_seconds(args.timeout_s, "--timeout");
  if (!timeout) {
    return fail(timeout.error());
  }
  const auto risk = heal::parse_risk(args.allow_risk);
  if (!risk) {
    return usage("--allow-risk is low, medium or high");
  }
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  Result<heal::Plan> plan;
  std::error_code ec;
  if (args.plan != "-" && looks_like_hash(args.plan) && !std::filesystem::exists(args.plan, ec)) {
    plan = service::load_plan((*runtime)->store(), args.plan);
  } else {
    auto text = read_user_file(args.plan, kMaxPlanBytes, "PLANFILE");
    if (!text) {
      return fail(text.error());
    }
    auto document = service::Json::parse(*text, nullptr, false);
    plan = document.is_discarded()
               ? Result<heal::Plan>(service::make_error(service::Errc::invalid_input,
                                                        "the plan file is not JSON (make one "
                                                        "with healer heal plan ... --json)"))
               : heal::plan_from_json(document);
  }
  if (!plan) {
    return fail(plan.error());
  }
  service::HealApplyRequest request;
  request.plan = std::move(*plan);
  request.dry_run = !args.yes;
  request.allow_risk = *risk;
  request.actor = service::local_actor();
  request.timeout = *timeout;
  service::HealEngine engine(**runtime);
  int interrupted = 0;
  auto outcome = (*runtime)->run_one_shot(engine.async_apply(std::move(request)), &interrupted);
  if (!outcome) {
    return fail(outcome.error());
  }
  if (args.json) {
    std::cout << service::dump(service::to_json(*outcome), 2) << '\n';
  } else {
    print_outcome(*outcome);
  }
  if (interrupted != 0) {
    std::cerr << "healer: interrupted; what ran is in the audit log (healer heal history)\n";
    return 128 + interrupted;
  }
  return outcome_exit_code(*outcome);
}

int run_history(HistoryArgs args) {
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  service::HealHistoryQuery query;
  query.server = args.server;
  query.limit = args.limit;
  if (args.jsonl) {
    auto events = service::heal_events((*runtime)->store(), query);
    if (!events) {
      return fail(events.error());
    }
    // Oldest first, as an export reads.
    for (auto it = events->rbegin(); it != events->rend(); ++it) {
      std::cout << service::dump(service::to_json(*it)) << '\n';
    }
    return 0;
  }
  auto page = service::heal_history((*runtime)->store(), query);
  if (!page) {
    return fail(page.error());
  }
  if (args.json) {
    std::cout << service::dump(service::to_json(*page), 2) << '\n';
    return 0;
  }
  if (page->items.empty()) {
    std::cout << "no heals recorded\n";
  }
  for (const auto& record : page->items) {
    std::string params;
    auto document = service::Json::parse(record.params, nullptr, false);
    if (document.is_object()) {
      for (const auto& [name, value] : document.items()) {
        params += fmt::format(" {}={}", name, value.is_string() ? value.get<std::string>() : "");
      }
    }
    std::string line = fmt::format("{}  {:<14} {}  {}{}  {}", utc(record.at), record.kind,
                                   terminal_safe(record.server), record.action,
                                   terminal_safe(params), record.result);
    if (record.exit_code) {
      line += fmt::format(" (exit {})", *record.exit_code);
    }
    if (!record.verification.empty()) {
      line += ", verification " + record.verification;
    }
    line += "  by " + terminal_safe(record.actor);
    std::cout << line << '\n';
    if (!record.detail.empty()) {
      std::cout << "    " << terminal_safe(record.detail) << '\n';
    }
  }
  return 0;
}

int run_sudoers(SudoersArgs args) {
  auto settings = load_settings(args.pool);
  if (!settings) {
    return fail(settings.error());
  }
  heal::SudoersOptions options;
  options.user = args.user;
  options.context = settings->heal.validation();
  for (const auto& text : args.paths) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 >= text.size() || text[eq + 1] != '/') {
      return usage(fmt::format("--path '{}': expected PROGRAM=/absolute/path", text));
    }
    options.paths[text.substr(0, eq)] = text.substr(eq + 1);
  }
  if (options.user.empty() || options.user.find_first_of(" \t\n,:=\\#\"'") != std::string::npos) {
    return usage("--user must be a plain user name");
  }
  std::cout << heal::sudoers_snippet(settings->heal.all_actions(), options);
  return 0;
}

int run_reset(ResetArgs args) {
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  auto reset =
      service::reset_breaker((*runtime)->store(), args.server, args.action, service::local_actor());
  if (!reset) {
    return fail(reset.error());
  }
  std::cout << fmt::format("{}: automatic healing of {} on {}\n",
                           *reset ? "breaker closed" : "the breaker was not open", args.action,
                           terminal_safe(args.server));
  return 0;
}

}  // namespace

Command add_heal_command(CLI::App& app) {
  auto* heal = app.add_subcommand(
      "heal",
      "Heal servers: plan allow-listed actions from the latest diagnosis, apply a plan by hash "
      "(dry run unless --yes), verify, and keep an append-only audit log (docs/healing.md)");
  heal->require_subcommand(1);

  auto plan = std::make_shared<PlanArgs>();
  auto* plan_cmd = heal->add_subcommand(
      "plan",
      "Build a plan: per server the actions that apply, the exact commands, what the "
      "server looks like now, and a content hash");
  add_selection_options(*plan_cmd, plan->selection);
  plan_cmd->add_option("--action", plan->action,
                       "Plan this action explicitly (see `healer heal sudoers` for the catalog)");
  plan_cmd->add_option("--param", plan->params, "A parameter of --action, NAME=VALUE (repeatable)");
  plan_cmd->add_flag("--no-rules", plan->no_rules, "Only --action, no [[heal.rules]]");
  plan_cmd->add_flag("--json", plan->json, "The plan document (what `healer heal apply` reads)");
  plan_cmd->add_option("--timeout", plan->timeout_s, "Seconds for the probes");
  add_store_options(*plan_cmd, plan->store);
  add_pool_options(*plan_cmd, plan->pool);

  auto apply = std::make_shared<ApplyArgs>();
  auto* apply_cmd = heal->add_subcommand(
      "apply",
      "Apply exactly a plan (a file, - for stdin, or its hash); refused when the "
      "servers' state changed since. A dry run unless --yes. Exit 0 healed and "
      "verified, 1 a heal failed, 75 stale plan, 77 privilege missing");
  apply_cmd->add_option("plan", apply->plan, "PLANFILE, - or a plan hash")->required();
  apply_cmd->add_flag("--yes,-y", apply->yes, "Really run it (default: a dry run)");
  apply_cmd->add_option("--allow-risk", apply->allow_risk,
                        "The highest risk allowed: low, medium (default) or high (reboot)");
  apply_cmd->add_flag("--json", apply->json, "JSON output");
  apply_cmd->add_option("--timeout", apply->timeout_s, "Seconds for the re-check before applying");
  add_store_options(*apply_cmd, apply->store);
  add_pool_options(*apply_cmd, apply->pool);

  auto history = std::make_shared<HistoryArgs>();
  auto* history_cmd =
      heal->add_subcommand("history", "The audit log: heals, refusals and breaker changes");
  history_cmd->add_option("--server", history->server, "Only this server");
  history_cmd->add_option("--limit", history->limit, "At most this many (default 50)")
      ->check(CLI::Range(1, 100000));
  history_cmd->add_flag("--json", history->json, "JSON output");
  history_cmd->add_flag("--jsonl", history->jsonl, "Every audit event, one JSON object a line");
  add_store_options(*history_cmd, history->store);
  add_pool_options(*history_cmd, history->pool);

  auto sudoers = std::make_shared<SudoersArgs>();
  auto* sudoers_cmd = heal->add_subcommand(
      "sudoers", "Print the sudoers rules that let the login user run each action, nothing more");
  sudoers_cmd->add_option("--user", sudoers->user, "The login user healer connects as");
  sudoers_cmd->add_option("--path", sudoers->paths,
                          "PROGRAM=/path on the servers (repeatable; default Debian's)");
  add_pool_options(*sudoers_cmd, sudoers->pool);

  auto reset = std::make_shared<ResetArgs>();
  auto* reset_cmd = heal->add_subcommand(
      "reset", "Close the breaker of an action on a server: automatic healing resumes");
  reset_cmd->add_option("server", reset->server, "Server")->required();
  reset_cmd->add_option("action", reset->action, "Action id")->required();
  add_store_options(*reset_cmd, reset->store);
  add_pool_options(*reset_cmd, reset->pool);

  return Command{heal, [=] {
                   if (plan_cmd->parsed()) {
                     return run_plan(*plan);
                   }
                   if (apply_cmd->parsed()) {
                     return run_apply(*apply);
                   }
                   if (history_cmd->parsed()) {
                     return run_history(*history);
                   }
                   if (sudoers_cmd->parsed()) {
                     return run_sudoers(*sudoers);
                   }
                   return run_reset(*reset);
                 }};
}

}  // namespace healer::cli
