#include "healer/service/heal.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "healer/checks/catalog.hpp"
#include "healer/checks/runner.hpp"
#include "healer/core/log.hpp"
#include "healer/heal/errors.hpp"
#include "healer/pool/errors.hpp"
#include "healer/service/errors.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/store/errors.hpp"

namespace healer::service {

using ConfigPtr = std::shared_ptr<const heal::HealConfig>;
using Key = std::pair<std::string, std::string>;

struct HealEngine::State {
  explicit State(Runtime& runtime_ref) : runtime(runtime_ref) {}

  Runtime& runtime;
  HealStats stats;
  bool stopping = false;
  std::function<void(const HealNotice&)> sink;
  // (server, rule) -> bad results in a row of an automatic rule's check (flap suppression)
  std::map<Key, int> consecutive;
  // (server, action) being healed now (from its start to its verification)
  std::set<Key> in_flight;
  int healing = 0;  // servers healing now: the global cap counts these
};

namespace {

using State = HealEngine::State;
using StatePtr = std::shared_ptr<State>;
using std::chrono::milliseconds;

constexpr std::size_t kOutputCap = 4096;       // per stream, in the audit log
constexpr std::size_t kMaxOutput = 64 * 1024;  // per stream, kept from the server
constexpr std::size_t kParallelServers = 32;   // probes and re-checks
constexpr milliseconds kTick{50};
constexpr std::int64_t kHourMs = 3'600'000;

const auto& logger() {
  static const auto instance = log::get("heal");
  return instance;
}

bool stopping(const State& state) { return state.stopping || state.runtime.stopping(); }

std::string random_id() {
  std::array<unsigned char, 8> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  std::string hex;
  for (const auto byte : bytes) {
    hex += fmt::format("{:02x}", byte);
  }
  return hex;
}

std::string capped(std::string_view text) {
  if (text.size() <= kOutputCap) {
    return std::string(text);
  }
  return fmt::format("{}\n[{} more bytes not kept]", text.substr(0, kOutputCap),
                     text.size() - kOutputCap);
}

std::string combined_output(const ssh::CommandResult& result) {
  std::string out = capped(result.out);
  if (!result.err.empty()) {
    out += fmt::format("{}--- stderr ---\n{}", out.empty() || out.back() == '\n' ? "" : "\n",
                       capped(result.err));
  }
  return out;
}

Json facts_json(const heal::Facts& facts) {
  return Json{{"state", facts.state}, {"info", facts.info}};
}

std::string state_json(const std::map<std::string, std::string>& checks, const heal::Facts& facts) {
  return dump(Json{{"checks", checks}, {"facts", facts_json(facts)}});
}

std::string params_json(const std::map<std::string, std::string>& params) {
  return dump(Json(params));
}

std::string describe_params(const std::map<std::string, std::string>& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", name, value);
  }
  return out;
}

heal::DiagnosisView view_of(const store::DiagnosisRun& run) {
  heal::DiagnosisView view;
  view.run_id = run.id;
  view.at = run.started_at;
  view.status = std::string(store::to_string(run.status));
  for (const auto& check : run.checks) {
    view.checks[check.name] = {std::string(store::to_string(check.status)), check.message};
  }
  return view;
}

heal::DiagnosisView view_of(const checks::Diagnosis& diagnosis, std::int64_t run_id) {
  heal::DiagnosisView view;
  view.run_id = run_id;
  view.at =
      std::chrono::duration_cast<milliseconds>(diagnosis.started_at.time_since_epoch()).count();
  view.status = std::string(checks::status_name(diagnosis.status));
  for (const auto& run : diagnosis.checks) {
    view.checks[run.result.name] = {std::string(checks::status_name(run.result.status)),
                                    run.result.message};
  }
  return view;
}

// Runs `job(i)` for i in [0, count), at most `parallel` at once, on `executor`.
struct Fan {
  Fan(asio::any_io_executor executor, std::size_t total,
      std::function<asio::awaitable<void>(std::size_t)> work)
      : job(std::move(work)), count(total), done(std::move(executor)) {}
  std::function<asio::awaitable<void>(std::size_t)> job;
  std::size_t count;
  std::size_t next = 0;
  std::size_t running = 0;
  asio::steady_timer done;
};

asio::awaitable<void> fan_worker(std::shared_ptr<Fan> fan) {
  while (fan->next < fan->count) {
    const std::size_t index = fan->next++;
    co_await fan->job(index);
  }
  if (--fan->running == 0) {
    fan->done.cancel();
  }
}

asio::awaitable<void> for_each_bounded(asio::any_io_executor executor, std::size_t count,
                                       std::size_t parallel,
                                       std::function<asio::awaitable<void>(std::size_t)> job) {
  if (count == 0) {
    co_return;
  }
  auto fan = std::make_shared<Fan>(executor, count, std::move(job));
  fan->running = std::min(count, std::max<std::size_t>(parallel, 1));
  for (std::size_t i = 0; i < fan->running; ++i) {
    asio::co_spawn(executor, fan_worker(fan), asio::detached);
  }
  while (fan->running > 0) {
    fan->done.expires_at(Clock::time_point::max());
    co_await fan->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

// Sleeps `duration` unless healer is stopping; false when it stopped early.
asio::awaitable<bool> sleep_unless_stopping(StatePtr state, milliseconds duration) {
  asio::steady_timer timer(state->runtime.io());
  const auto end = Clock::now() + duration;
  while (!stopping(*state) && Clock::now() < end) {
    timer.expires_after(std::min<Clock::duration>(kTick, end - Clock::now()));
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  co_return !stopping(*state);
}

// Appends one audit event on the store thread; false (logged) when it could not be written.
asio::awaitable<bool> append(StatePtr state, store::HealEvent event) {
  auto& runtime = state->runtime;
  auto job = [&runtime, event = std::move(event)]() {
    return runtime.store().append_heal_event(event);
  };
  auto appended = co_await runtime.async_offload(std::move(job));
  if (!appended) {
    logger()->error("could not write the heal audit log: {}", appended.error().message());
    co_return false;
  }
  co_return true;
}

void notify(State& state, HealNotice notice) {
  logger()->warn("[{}] {}: {} ({})", notice.server, notice.event, notice.action, notice.reason);
  if (state.sink) {
    state.sink(notice);
  }
}

// Opens the breaker of (server, action): automatic rules stop healing it until a person resets
// it (`healer heal reset`), and someone is told.
asio::awaitable<void> open_breaker(StatePtr state, std::string server,
                                   std::optional<std::int64_t> server_id, std::string action,
                                   std::string actor, std::string rule, std::string heal_id,
                                   std::string reason, std::string event_name) {
  store::HealEvent event;
  event.heal_id = heal_id.empty() ? random_id() : heal_id;
  event.kind = store::HealEventKind::breaker_open;
  event.at = store::now_unix_ms();
  event.actor = actor;
  event.server = server;
  event.server_id = server_id;
  event.action = action;
  event.result = "open";
  event.detail = reason;
  co_await append(state, std::move(event));
  notify(*state,
         HealNotice{std::move(event_name), std::move(server), std::move(action), std::move(rule),
                    std::move(heal_id), std::move(reason), store::now_unix_ms()});
}

// The trigger checks `names` run now on `record`'s server: name -> status and message.
asio::awaitable<Result<std::map<std::string, heal::DiagnosisView::Check>>> run_checks(
    StatePtr state, store::ServerRecord record, std::vector<std::string> names, Deadline deadline) {
  std::map<std::string, heal::DiagnosisView::Check> out;
  if (names.empty()) {
    co_return out;
  }
  std::vector<checks::CheckDefinition> definitions;
  for (const auto& name : names) {
    auto definition = checks::find_check(name);
    if (!definition) {
      co_return make_error(Errc::invalid_input, fmt::format("no check named '{}'", name));
    }
    definitions.push_back(std::move(*definition));
  }
  auto& runtime = state->runtime;
  auto settings = runtime.settings().checks.settings_for(record.name, record.tags);
  checks::DiagnoseOptions options;
  options.deadline = deadline;
  options.priority = pool::Priority::normal;
  auto diagnosis =
      co_await checks::async_diagnose(runtime.executor(), record.name, std::move(definitions),
                                      std::move(settings), std::move(options));
  if (diagnosis.server_error) {
    co_return *diagnosis.server_error;
  }
  for (const auto& run : diagnosis.checks) {
    out[run.result.name] = {std::string(checks::status_name(run.result.status)),
                            run.result.message};
  }
  co_return out;
}

// Probes each candidate on `server` and judges it.
asio::awaitable<std::vector<heal::Step>> probe_steps(StatePtr state, ConfigPtr config,
                                                     std::string server,
                                                     std::vector<heal::Candidate> candidates,
                                                     heal::Privilege privilege, Deadline deadline) {
  std::vector<std::string> commands;
  for (const auto& candidate : candidates) {
    commands.push_back(heal::probe_command(*candidate.action, candidate.params, privilege));
  }
  std::vector<heal::Step> steps;
  if (commands.empty()) {
    co_return steps;
  }
  exec::RunOptions options;
  options.deadline = deadline;
  options.max_output = kMaxOutput;
  auto results =
      co_await state->runtime.executor().async_run_all(server, std::move(commands), options);
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const auto& candidate = candidates[i];
    const auto effective =
        candidate.action->privilege == heal::Privilege::none ? heal::Privilege::none : privilege;
    if (!results[i]) {
      steps.push_back(heal::make_step(candidate, privilege, {}, error_name(results[i].error())));
      continue;
    }
    if (results[i]->exit_status != 0) {
      steps.push_back(
          heal::make_step(candidate, privilege, {},
                          fmt::format("the probe exited with {}", results[i]->shell_exit_code())));
      continue;
    }
    steps.push_back(heal::make_step(
        candidate, privilege,
        heal::parse_facts(results[i]->out, candidate.action->probe, effective), std::nullopt));
  }
  (void)config;  // keeps the actions the candidates point to alive
  co_return steps;
}

// One server to plan for, with what it needs.
struct PlanTarget {
  store::ServerRecord record;  // secret decrypted
  std::optional<heal::DiagnosisView> diagnosis;
  std::vector<heal::ActionRequest> requests;
};

asio::awaitable<void> plan_one(StatePtr state, ConfigPtr config, const PlanTarget* target,
                               std::vector<heal::Candidate> candidates, heal::ServerPlan* out,
                               Deadline deadline) {
  const auto privilege = config->privilege_for(target->record.name, target->record.tags);
  out->steps = co_await probe_steps(state, config, target->record.name, std::move(candidates),
                                    privilege, deadline);
}

// Builds a plan: candidates for every server first (bad input fails before anything runs), then
// the probes, servers in parallel.
asio::awaitable<Result<heal::Plan>> build_plan(StatePtr state, ConfigPtr config,
                                               std::vector<PlanTarget> targets, heal::RuleSet rules,
                                               Deadline deadline) {
  heal::Plan plan;
  plan.rules = rules;
  std::vector<std::vector<heal::Candidate>> candidates;
  for (const auto& target : targets) {
    heal::ServerInput input;
    input.name = target.record.name;
    input.id = target.record.id;
    input.tags = target.record.tags;
    input.diagnosis = target.diagnosis;
    heal::ServerPlan server;
    server.server = target.record.name;
    server.server_id = target.record.id;
    auto list = heal::candidates(*config, input, target.requests, rules, &server.checks);
    if (!list) {
      co_return std::move(list).error();
    }
    if (target.diagnosis) {
      server.run_id =
          target.diagnosis->run_id == 0 ? std::nullopt : std::optional(target.diagnosis->run_id);
      server.diagnosed_at = target.diagnosis->at;
      server.status = target.diagnosis->status;
      if (rules == heal::RuleSet::all) {
        for (const auto& [name, check] : target.diagnosis->checks) {
          if (check.status != "OK" && check.status != "UNKNOWN" && !server.checks.contains(name)) {
            server.notes.push_back(fmt::format(
                "{} is {} and no [[heal.rules]] entry acts on it: add a rule, or plan an action "
                "explicitly (--action ID --param K=V)",
                name, check.status));
          }
        }
      }
    } else if (rules != heal::RuleSet::none) {
      server.notes.emplace_back("no diagnosis stored yet: rules need one (healer diagnose NAME)");
    }
    candidates.push_back(std::move(*list));
    plan.servers.push_back(std::move(server));
  }
  std::vector<store::ServerRecord> records;
  for (const auto& target : targets) {
    records.push_back(target.record);
  }
  auto registered = register_servers(state->runtime, records);
  if (!registered) {
    co_return std::move(registered).error();
  }
  auto* servers = &plan.servers;
  auto* candidate_lists = &candidates;
  const auto* target_list = &targets;
  // Named jobs throughout: GCC 12 mis-builds a capturing lambda temporary inside co_await
  // (its captured shared_ptrs are released twice).
  std::function<asio::awaitable<void>(std::size_t)> job = [state, config, servers, candidate_lists,
                                                           target_list, deadline](std::size_t i) {
    return plan_one(state, config, &(*target_list)[i], std::move((*candidate_lists)[i]),
                    &(*servers)[i], deadline);
  };
  co_await for_each_bounded(state->runtime.io().get_executor(), targets.size(), kParallelServers,
                            std::move(job));
  plan.hash = heal::plan_hash(plan);
  plan.created_at = store::now_unix_ms();
  co_return plan;
}

// What a plan step looked like before it ran, for an outcome.
HealStepOutcome outcome_of(const std::string& server, const heal::Step& step) {
  HealStepOutcome outcome;
  outcome.server = server;
  outcome.action = step.action;
  outcome.params = step.params;
  outcome.command = step.command;
  return outcome;
}

store::HealEvent event_of(const std::string& server, std::int64_t server_id, const heal::Step& step,
                          const std::string& actor, const std::string& plan_hash) {
  store::HealEvent event;
  event.at = store::now_unix_ms();
  event.actor = actor;
  event.plan_hash = plan_hash;
  event.server = server;
  event.server_id = server_id;
  event.action = step.action;
  event.params = params_json(step.params);
  event.command = step.command;
  return event;
}

// A step refused for a missing sudo rule (the user's to fix, exit 77): recorded in the audit log
// as a refusal, the outcome says so and carries the event's heal id.
asio::awaitable<void> record_refusal(StatePtr state, HealStepOutcome& outcome,
                                     std::int64_t server_id, const heal::Step& step,
                                     const std::map<std::string, std::string>& checks,
                                     const std::string& actor, const std::string& plan_hash) {
  outcome.result = "privilege_missing";
  outcome.detail = step.blocked;
  auto event = event_of(outcome.server, server_id, step, actor, plan_hash);
  event.heal_id = random_id();
  event.kind = store::HealEventKind::refused;
  event.result = "privilege_missing";
  event.before = state_json(checks, step.facts);
  event.detail = step.blocked;
  outcome.heal_id = event.heal_id;
  co_await append(state, std::move(event));
  ++state->stats.refused;
}

// A step's server, its steps and who asks.
struct ServerWork {
  store::ServerRecord record;
  std::string actor;
  std::string plan_hash;
  std::string rule;                           // for notices; "" for a manual apply
  std::map<std::string, std::string> checks;  // the consulted checks' statuses before
  std::vector<heal::Step> steps;
};

// Re-checks the steps that ran after the grace period and records the verdicts.
asio::awaitable<void> verify(StatePtr state, ConfigPtr config, const ServerWork* work,
                             std::vector<std::size_t> ran, std::vector<std::string> heal_ids,
                             std::vector<HealStepOutcome>* outcomes) {
  auto grace = std::chrono::seconds(0);
  for (const auto index : ran) {
    grace = std::max(grace, work->steps[index].grace);
  }
  const bool waited = co_await sleep_unless_stopping(state, grace);
  std::map<std::string, heal::DiagnosisView::Check> checks_after;
  std::optional<Error> checks_error;
  std::vector<Result<ssh::CommandResult>> probes(ran.size());
  if (waited) {
    std::vector<std::string> names;
    for (const auto index : ran) {
      const auto& trigger = work->steps[index].trigger;
      if (trigger && std::find(names.begin(), names.end(), trigger->check) == names.end()) {
        names.push_back(trigger->check);
      }
    }
    const auto deadline = Deadline::after(std::chrono::seconds(60));
    auto checked = co_await run_checks(state, work->record, names, deadline);
    if (checked) {
      checks_after = std::move(*checked);
    } else {
      checks_error = checked.error();
    }
    std::vector<std::string> commands;
    for (const auto index : ran) {
      const auto& step = work->steps[index];
      const auto* action = config->find_action(step.action);
      commands.push_back(action == nullptr
                             ? std::string("exit 0")
                             : heal::probe_command(*action, step.params, heal::Privilege::none));
    }
    exec::RunOptions options;
    options.deadline = deadline;
    options.max_output = kMaxOutput;
    probes = co_await state->runtime.executor().async_run_all(work->record.name,
                                                              std::move(commands), options);
  }
  for (std::size_t k = 0; k < ran.size(); ++k) {
    const auto& step = work->steps[ran[k]];
    auto& outcome = (*outcomes)[ran[k]];
    const auto* action = config->find_action(step.action);
    HealVerification verification;
    std::vector<std::string> problems;
    bool unknown = false;
    bool failed = false;
    if (!waited) {
      verification.result = "interrupted";
      verification.detail = "healer stopped before the grace period ended: not verified";
    } else {
      if (action != nullptr && action->probe != heal::ProbeKind::none) {
        if (!probes[k] || probes[k]->exit_status != 0) {
          unknown = true;
          problems.push_back(
              probes[k] ? fmt::format("the probe exited with {}", probes[k]->shell_exit_code())
                        : "the probe failed: " + probes[k].error().message());
        } else {
          verification.facts =
              heal::parse_facts(probes[k]->out, action->probe, heal::Privilege::none);
          for (const auto& condition : heal::judge(action->verification, verification.facts)) {
            if (!condition.holds) {
              failed = true;
              problems.push_back(
                  fmt::format("{} is {}, expected {}", condition.fact,
                              condition.actual.empty() ? "not reported" : condition.actual,
                              fmt::join(condition.expected, " or ")));
            }
          }
        }
      }
      if (step.trigger) {
        const auto found = checks_after.find(step.trigger->check);
        if (checks_error || found == checks_after.end()) {
          unknown = true;
          problems.push_back(fmt::format("{} could not be re-run{}", step.trigger->check,
                                         checks_error ? ": " + checks_error->message() : ""));
        } else {
          verification.checks[step.trigger->check] = found->second.status;
          const auto* rule = config->find_rule(step.trigger->rule);
          const bool still_bad =
              rule != nullptr ? rule->matches(found->second.status) : found->second.status != "OK";
          if (found->second.status == "UNKNOWN") {
            unknown = true;
            problems.push_back(
                fmt::format("{} is UNKNOWN: {}", step.trigger->check, found->second.message));
          } else if (still_bad) {
            failed = true;
            problems.push_back(fmt::format("{} is still {}: {}", step.trigger->check,
                                           found->second.status, found->second.message));
          }
        }
      }
      const bool nothing_to_check =
          !step.trigger && (action == nullptr || action->verification.empty());
      if (nothing_to_check && problems.empty()) {
        verification.result = "unverifiable";
        verification.detail =
            "the action has nothing to re-check (no rule's check, no probe "
            "expectation): the command succeeded";
      } else if (problems.empty()) {
        verification.result = "verified";
      } else {
        verification.result = failed || !unknown ? "failed" : "unknown";
        verification.detail = fmt::format("{}", fmt::join(problems, "; "));
      }
    }
    auto event = event_of(work->record.name, work->record.id, step, work->actor, work->plan_hash);
    event.heal_id = heal_ids[k];
    event.kind = store::HealEventKind::verified;
    event.result = verification.result;
    event.after = state_json(verification.checks, verification.facts);
    event.detail = verification.detail;
    co_await append(state, std::move(event));
    if (verification.result == "verified") {
      ++state->stats.verified;
    } else if (verification.result == "failed" || verification.result == "unknown") {
      // Never retry blindly: the problem remains (or cannot be seen), so automation stops here.
      ++state->stats.failed;
      outcome.breaker_opened = true;
      co_await open_breaker(
          state, work->record.name, work->record.id, step.action, work->actor, work->rule,
          heal_ids[k], fmt::format("verification {}: {}", verification.result, verification.detail),
          "heal_failed");
    }
    outcome.verification = std::move(verification);
  }
}

// Runs one server's ready steps in order (the first failure stops the rest), records each in
// the audit log, then verifies after the grace period. The caller holds a global-cap slot.
asio::awaitable<std::vector<HealStepOutcome>> execute_server(StatePtr state, ConfigPtr config,
                                                             ServerWork work) {
  std::vector<HealStepOutcome> outcomes;
  std::vector<std::size_t> ran;
  std::vector<std::string> heal_ids;
  std::vector<Key> claimed;
  bool failed_earlier = false;
  const std::string& server = work.record.name;
  for (const auto& step : work.steps) {
    auto outcome = outcome_of(server, step);
    const Key key{server, step.action};
    if (failed_earlier) {
      outcome.result = "skipped";
      outcome.detail = "an earlier step on this server did not succeed";
    } else if (!step.ready) {
      if (step.blocked.starts_with("privilege_missing")) {
        co_await record_refusal(state, outcome, work.record.id, step, work.checks, work.actor,
                                work.plan_hash);
      } else {
        outcome.result = "skipped";
        outcome.detail = step.blocked;
      }
    } else if (stopping(*state)) {
      outcome.result = "skipped";
      outcome.detail = "healer is stopping";
    } else if (state->in_flight.contains(key) &&
               std::find(claimed.begin(), claimed.end(), key) == claimed.end() &&
               work.rule.empty()) {
      outcome.result = "skipped";
      outcome.detail = "this action is being applied to this server already";
    } else {
      if (state->in_flight.insert(key).second) {
        claimed.push_back(key);
      }
      outcome.heal_id = random_id();
      auto started = event_of(server, work.record.id, step, work.actor, work.plan_hash);
      started.heal_id = outcome.heal_id;
      started.kind = store::HealEventKind::started;
      started.result = "running";
      started.before = state_json(work.checks, step.facts);
      if (!co_await append(state, std::move(started))) {
        // No audit row, no action.
        outcome.result = "error";
        outcome.detail = "the audit log could not be written: nothing was run";
        failed_earlier = true;
        outcomes.push_back(std::move(outcome));
        continue;
      }
      ++state->stats.started;
      logger()->info("[{}] heal {}: {} {} ({})", server, outcome.heal_id, step.action,
                     describe_params(step.params), work.actor);
      exec::RunOptions options;
      options.deadline = Deadline::after(step.timeout);
      options.max_output = kMaxOutput;
      auto result =
          co_await state->runtime.executor().async_run(server, step.command, std::move(options));
      heal::RunOutcome run = heal::RunOutcome::error;
      if (result) {
        run = heal::classify_exit(result->exit_status, result->err, step.privilege);
        outcome.exit_code = result->shell_exit_code();
        outcome.output = combined_output(*result);
      } else if (stopping(*state)) {
        run = heal::RunOutcome::interrupted;
        outcome.detail = "healer stopped while the action ran: " + result.error().message();
      } else if (result.error().code == ssh::Errc::timeout) {
        run = heal::RunOutcome::timeout;
        outcome.detail = fmt::format(
            "no end within {} s: the remote command was sent TERM, then "
            "KILL",
            step.timeout.count());
      } else {
        outcome.detail = result.error().message();
      }
      outcome.result = std::string(heal::to_string(run));
      if (run == heal::RunOutcome::privilege_missing) {
        outcome.detail =
            "sudo refused (no sudoers rule, or it wants a password): see `healer heal "
            "sudoers`";
      } else if (run == heal::RunOutcome::precondition_failed) {
        outcome.detail = "the server changed since the plan: nothing was done";
      }
      auto finished = event_of(server, work.record.id, step, work.actor, work.plan_hash);
      finished.heal_id = outcome.heal_id;
      finished.kind = store::HealEventKind::finished;
      finished.result = outcome.result;
      finished.exit_code = outcome.exit_code;
      finished.output = outcome.output;
      finished.detail = outcome.detail;
      co_await append(state, std::move(finished));
      if (run == heal::RunOutcome::succeeded) {
        ran.push_back(outcomes.size());
        heal_ids.push_back(outcome.heal_id);
      } else {
        failed_earlier = true;
        if (run == heal::RunOutcome::failed || run == heal::RunOutcome::timeout ||
            run == heal::RunOutcome::privilege_missing) {
          ++state->stats.failed;
          outcome.breaker_opened = true;
          co_await open_breaker(
              state, server, work.record.id, step.action, work.actor, work.rule, outcome.heal_id,
              fmt::format("the action {}: {}", outcome.result,
                          outcome.detail.empty() ? outcome.output : outcome.detail),
              "heal_failed");
        }
      }
    }
    outcomes.push_back(std::move(outcome));
  }
  if (!ran.empty()) {
    co_await verify(state, config, &work, ran, heal_ids, &outcomes);
  }
  for (const auto& key : claimed) {
    state->in_flight.erase(key);
  }
  co_return outcomes;
}

// Holds one global-cap slot for its lifetime.
struct CapSlot {
  explicit CapSlot(StatePtr s) : state(std::move(s)) { ++state->healing; }
  CapSlot(const CapSlot&) = delete;
  CapSlot& operator=(const CapSlot&) = delete;
  ~CapSlot() { --state->healing; }
  StatePtr state;
};

// Counts a running operation (apply, automatic heal) for async_stop.
struct Running {
  explicit Running(StatePtr s) : state(std::move(s)) { ++state->stats.running; }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;
  ~Running() { --state->stats.running; }
  StatePtr state;
};

asio::awaitable<void> apply_server(StatePtr state, ConfigPtr config, ServerWork work,
                                   std::vector<HealStepOutcome>* out) {
  // The global cap: wait for a slot (a manual apply is waited for; automatic rules skip).
  asio::steady_timer timer(state->runtime.io());
  while (state->healing >= config->max_concurrent && !stopping(*state)) {
    timer.expires_after(kTick);
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  CapSlot slot(state);
  *out = co_await execute_server(state, config, std::move(work));
}

std::string step_key(const heal::Step& step) {
  return fmt::format("{} {}", step.action, describe_params(step.params));
}

// What differs between the plan and the same plan built now, one line per difference.
std::vector<std::string> describe_changes(const heal::Plan& before, const heal::Plan& now) {
  std::vector<std::string> changes;
  for (std::size_t i = 0; i < before.servers.size(); ++i) {
    const auto& old_server = before.servers[i];
    if (i >= now.servers.size() || now.servers[i].server != old_server.server) {
      changes.push_back(fmt::format("{}: not in the plan built now", old_server.server));
      continue;
    }
    const auto& new_server = now.servers[i];
    if (new_server.server_id != old_server.server_id) {
      changes.push_back(
          fmt::format("{}: it is another server now (removed and added again)", old_server.server));
    }
    for (const auto& [check, status] : old_server.checks) {
      const auto found = new_server.checks.find(check);
      const auto current =
          found == new_server.checks.end() ? std::string("not run") : found->second;
      if (current != status) {
        changes.push_back(
            fmt::format("{}: {} was {}, now {}", old_server.server, check, status, current));
      }
    }
    for (const auto& step : old_server.steps) {
      const auto match = std::find_if(
          new_server.steps.begin(), new_server.steps.end(),
          [&](const heal::Step& s) { return s.action == step.action && s.params == step.params; });
      if (match == new_server.steps.end()) {
        changes.push_back(
            fmt::format("{}: {} no longer applies", old_server.server, step_key(step)));
        continue;
      }
      for (const auto& [fact, value] : step.facts.state) {
        const auto found = match->facts.state.find(fact);
        const auto current =
            found == match->facts.state.end() ? std::string("not reported") : found->second;
        if (current != value) {
          changes.push_back(fmt::format("{}: {}: {} was {}, now {}", old_server.server,
                                        step_key(step), fact, value, current));
        }
      }
      if (match->blocked != step.blocked && match->facts.state == step.facts.state) {
        changes.push_back(
            fmt::format("{}: {}: {}", old_server.server, step_key(step),
                        match->blocked.empty() ? std::string("may run now") : match->blocked));
      }
      if (match->command != step.command) {
        changes.push_back(fmt::format("{}: {}: the command differs (privilege or catalog changed)",
                                      old_server.server, step_key(step)));
      }
    }
    for (const auto& step : new_server.steps) {
      const bool known = std::any_of(
          old_server.steps.begin(), old_server.steps.end(),
          [&](const heal::Step& s) { return s.action == step.action && s.params == step.params; });
      if (!known) {
        changes.push_back(fmt::format("{}: {} applies now", old_server.server, step_key(step)));
      }
    }
  }
  if (changes.empty()) {
    changes.emplace_back("the plan built now differs from it");
  }
  return changes;
}

asio::awaitable<void> recheck_one(StatePtr state, const heal::ServerPlan* server,
                                  const store::ServerRecord* record,
                                  std::optional<heal::DiagnosisView>* out,
                                  std::optional<std::string>* failure, Deadline deadline) {
  std::vector<std::string> names;
  for (const auto& [name, status] : server->checks) {
    names.push_back(name);
  }
  auto checked = co_await run_checks(state, *record, names, deadline);
  if (!checked) {
    *failure = fmt::format("{}: could not re-run its checks: {}", server->server,
                           checked.error().message());
    co_return;
  }
  heal::DiagnosisView view;
  view.checks = std::move(*checked);
  *out = std::move(view);
}

// The automatic path for one due rule on one server (in the background).
asio::awaitable<void> auto_heal(StatePtr state, ConfigPtr config, store::ServerRecord record,
                                heal::Rule rule, heal::Trigger trigger) {
  Running running(state);
  const Key key{record.name, rule.action};
  struct Release {
    StatePtr state;
    Key key;
    Key counter;
    ~Release() {
      state->in_flight.erase(key);
      // After an attempt the rule needs `consecutive` new bad results (re-judged after grace).
      state->consecutive.erase(counter);
    }
  } release{state, key, Key{record.name, rule.name}};
  const std::string actor = "rule:" + rule.name;
  const auto now = store::now_unix_ms();
  struct Brakes {
    bool breaker_open = false;
    std::vector<std::int64_t> automatic_starts;
    Result<store::ServerRecord> record;
  };
  auto& runtime = state->runtime;
  auto job = [&runtime, name = record.name, id = record.id, action = rule.action, now]() {
    Brakes brakes;
    auto& store = runtime.store();
    store::HealEventQuery breaker;
    breaker.server = name;
    breaker.action = action;
    breaker.kinds = {store::HealEventKind::breaker_open, store::HealEventKind::breaker_closed};
    breaker.limit = 1;
    if (auto events = store.heal_events(breaker); events && !events->empty()) {
      brakes.breaker_open = events->front().kind == store::HealEventKind::breaker_open;
    }
    store::HealEventQuery starts;
    starts.server = name;
    starts.action = action;
    starts.kinds = {store::HealEventKind::started};
    starts.since_ms = now - kHourMs;
    starts.limit = 10000;
    if (auto events = store.heal_events(starts); events) {
      for (const auto& event : *events) {
        if (event.actor.starts_with("rule:")) {
          brakes.automatic_starts.push_back(event.at);
        }
      }
    }
    brakes.record = store.get_server(id, store::SecretAccess::decrypt);
    return brakes;
  };
  auto brakes = co_await runtime.async_offload(std::move(job));
  if (stopping(*state)) {
    co_return;
  }
  if (!brakes.record) {
    logger()->warn("[{}] rule {}: cannot read the server: {}", record.name, rule.name,
                   brakes.record.error().message());
    co_return;
  }
  if (brakes.breaker_open) {
    ++state->stats.automatic_skipped;
    logger()->debug("[{}] rule {}: breaker of {} open, not healing", record.name, rule.name,
                    rule.action);
    co_return;
  }
  if (!heal::within_rate(brakes.automatic_starts, rule.max_per_hour, now)) {
    ++state->stats.refused;
    co_await open_breaker(
        state, record.name, record.id, rule.action, actor, rule.name, "",
        fmt::format("rate limit: {} automatic {} heals in the last hour (at most {}); automatic "
                    "healing of it stops until `healer heal reset {} {}`",
                    brakes.automatic_starts.size(), rule.action, rule.max_per_hour, record.name,
                    rule.action),
        "heal_breaker_open");
    co_return;
  }
  if (state->healing >= config->max_concurrent) {
    ++state->stats.automatic_skipped;
    logger()->info("[{}] rule {}: {} servers healing already ([heal] max_concurrent), not now",
                   record.name, rule.name, state->healing);
    co_return;
  }
  CapSlot slot(state);
  auto full = std::move(*brakes.record);
  auto registered = register_servers(runtime, {full});
  if (!registered) {
    logger()->warn("[{}] rule {}: {}", record.name, rule.name, registered.error().message());
    co_return;
  }
  const auto* action = config->find_action(rule.action);
  if (action == nullptr) {
    co_return;
  }
  heal::Candidate candidate{action, rule.params, trigger, rule.grace};
  const auto privilege = config->privilege_for(full.name, full.tags);
  std::vector<heal::Candidate> candidates{candidate};
  const auto probe_deadline = Deadline::after(std::chrono::seconds(30));
  auto steps = co_await probe_steps(state, config, full.name, std::move(candidates), privilege,
                                    probe_deadline);
  if (steps.empty()) {
    co_return;
  }
  heal::Plan plan;
  plan.rules = heal::RuleSet::automatic;
  heal::ServerPlan server;
  server.server = full.name;
  server.server_id = full.id;
  server.checks[trigger.check] = trigger.status;
  server.steps = steps;
  plan.servers.push_back(server);
  plan.hash = heal::plan_hash(plan);
  plan.created_at = now;
  plan.created_by = actor;
  if (!steps.front().ready && !steps.front().blocked.starts_with("privilege_missing")) {
    logger()->info("[{}] rule {}: {} not applied: {}", full.name, rule.name, rule.action,
                   steps.front().blocked);
    co_return;
  }
  auto keep = [&runtime, hash = plan.hash, body = dump(heal::to_json(plan))]() {
    return runtime.store().put_heal_plan(hash, body);
  };
  (void)co_await runtime.async_offload(std::move(keep));
  ServerWork work;
  work.record = std::move(full);
  work.actor = actor;
  work.plan_hash = plan.hash;
  work.rule = rule.name;
  work.checks = server.checks;
  work.steps = std::move(steps);
  auto outcomes = co_await execute_server(state, config, std::move(work));
  if (!outcomes.empty() && outcomes.front().result == "privilege_missing") {
    // Otherwise the same refusal would be written after every scheduled diagnosis.
    co_await open_breaker(state, record.name, record.id, rule.action, actor, rule.name,
                          outcomes.front().heal_id, outcomes.front().detail, "heal_breaker_open");
  }
}

}  // namespace

std::string notice_json(const HealNotice& notice) {
  return dump(Json{{"event", notice.event},
                   {"server", notice.server},
                   {"action", notice.action},
                   {"rule", notice.rule.empty() ? Json(nullptr) : Json(notice.rule)},
                   {"heal_id", notice.heal_id.empty() ? Json(nullptr) : Json(notice.heal_id)},
                   {"reason", notice.reason},
                   {"at", notice.at},
                   {"healer_version", version()}});
}

bool HealApplyOutcome::all_good() const {
  static const std::set<std::string, std::less<>> kBad{
      "failed", "privilege_missing", "precondition_failed", "timeout", "error", "interrupted",
      "stale"};
  return std::none_of(steps.begin(), steps.end(), [](const HealStepOutcome& step) {
    return kBad.contains(step.result) ||
           (step.verification && step.verification->result != "verified" &&
            step.verification->result != "unverifiable");
  });
}

HealEngine::HealEngine(Runtime& runtime) : state_(std::make_shared<State>(runtime)) {}

HealEngine::~HealEngine() { state_->stopping = true; }

void HealEngine::set_notice_sink(std::function<void(const HealNotice&)> sink) {
  state_->sink = std::move(sink);
}

const HealStats& HealEngine::stats() const noexcept { return state_->stats; }

bool HealEngine::stopping() const noexcept { return state_->stopping; }

asio::awaitable<Result<heal::Plan>> HealEngine::async_plan(HealPlanRequest request) {
  auto state = state_;
  auto& runtime = state->runtime;
  if (state->stopping) {
    co_return make_error(Errc::unavailable, "healer is stopping");
  }
  if (request.selection.empty()) {
    co_return make_error(Errc::invalid_input, "name servers, or use --tag TAG or --all");
  }
  if (!runtime.has_store()) {
    co_return make_error(Errc::unavailable, "healing needs the inventory database");
  }
  auto config = std::make_shared<const heal::HealConfig>(runtime.settings().heal);
  // Explicit actions are checked before the inventory is read.
  for (const auto& asked : request.actions) {
    const auto* action = config->find_action(asked.action);
    if (action == nullptr) {
      co_return heal::make_error(heal::Errc::unknown_action,
                                 fmt::format("no action named '{}' (healer heal sudoers lists "
                                             "them)",
                                             asked.action));
    }
    if (auto valid = heal::validate_parameters(*action, asked.params, config->validation());
        !valid) {
      co_return std::move(valid).error();
    }
  }
  struct Read {
    Result<std::vector<store::ServerRecord>> records;
    std::map<std::int64_t, store::DiagnosisRun> runs;
  };
  auto job = [&runtime, selection = request.selection]() {
    Read read;
    read.records = select_servers(runtime.store(), selection);
    if (auto runs = runtime.store().latest_runs(); runs) {
      for (auto& run : *runs) {
        read.runs.emplace(run.server_id, std::move(run));
      }
    }
    return read;
  };
  auto read = co_await runtime.async_offload(std::move(job));
  if (!read.records) {
    co_return std::move(read.records).error();
  }
  std::vector<PlanTarget> targets;
  for (auto& record : *read.records) {
    PlanTarget target;
    if (const auto run = read.runs.find(record.id); run != read.runs.end()) {
      target.diagnosis = view_of(run->second);
    }
    target.requests = request.actions;
    target.record = std::move(record);
    targets.push_back(std::move(target));
  }
  const auto rules = request.rules ? heal::RuleSet::all : heal::RuleSet::none;
  Running running(state);
  auto plan = co_await build_plan(state, config, std::move(targets), rules,
                                  Deadline::after(request.timeout));
  if (!plan) {
    co_return plan;
  }
  plan->created_by = request.actor;
  auto keep = [&runtime, hash = plan->hash, body = dump(heal::to_json(*plan))]() {
    return runtime.store().put_heal_plan(hash, body);
  };
  if (auto kept = co_await runtime.async_offload(std::move(keep)); !kept) {
    logger()->warn("could not keep plan {}: {}", plan->hash, kept.error().message());
  }
  co_return plan;
}

asio::awaitable<Result<HealApplyOutcome>> HealEngine::async_apply(HealApplyRequest request) {
  auto state = state_;
  auto& runtime = state->runtime;
  if (state->stopping) {
    co_return make_error(Errc::unavailable, "healer is stopping");
  }
  if (!runtime.has_store()) {
    co_return make_error(Errc::unavailable, "healing needs the inventory database");
  }
  const auto& given = request.plan;
  if (heal::plan_hash(given) != given.hash) {
    co_return heal::make_error(heal::Errc::invalid_plan,
                               "the plan's content does not match its hash: it was edited");
  }
  HealApplyOutcome outcome;
  outcome.plan_hash = given.hash;
  outcome.dry_run = request.dry_run;
  if (given.ready_steps() == 0) {
    outcome.status = "nothing_to_do";
    for (const auto& server : given.servers) {
      for (const auto& step : server.steps) {
        auto skipped = outcome_of(server.server, step);
        skipped.result = "skipped";
        skipped.detail = step.blocked;
        // A missing sudo rule is the user's to fix: say so (exit 77) and record the refusal.
        if (step.blocked.starts_with("privilege_missing")) {
          skipped.result = "privilege_missing";
          if (!request.dry_run) {
            co_await record_refusal(state, skipped, server.server_id, step, server.checks,
                                    request.actor, given.hash);
          }
        }
        outcome.steps.push_back(std::move(skipped));
      }
    }
    co_return outcome;
  }
  if (static_cast<int>(given.highest_ready_risk()) > static_cast<int>(request.allow_risk)) {
    std::vector<std::string> risky;
    for (const auto& server : given.servers) {
      for (const auto& step : server.steps) {
        if (step.ready && static_cast<int>(step.risk) > static_cast<int>(request.allow_risk)) {
          risky.push_back(fmt::format("{} on {} ({} risk)", step.action, server.server,
                                      heal::to_string(step.risk)));
        }
      }
    }
    co_return make_error(
        Errc::invalid_input,
        fmt::format("the plan has {}: apply it with --allow-risk {} (API: \"allow_risk\")",
                    fmt::join(risky, ", "), heal::to_string(given.highest_ready_risk())));
  }
  Running running(state);
  auto config = std::make_shared<const heal::HealConfig>(runtime.settings().heal);
  // The server's state now: the inventory rows, the plan's checks run again, the probes.
  Selection selection;
  for (const auto& server : given.servers) {
    selection.names.push_back(server.server);
  }
  auto job = [&runtime, selection]() { return select_servers(runtime.store(), selection); };
  auto records = co_await runtime.async_offload(std::move(job));
  std::vector<std::string> changes;
  std::vector<PlanTarget> targets;
  if (!records) {
    changes.push_back(records.error().detail.empty() ? records.error().message()
                                                     : records.error().detail);
  } else {
    auto registered = register_servers(runtime, *records);
    if (!registered) {
      co_return std::move(registered).error();
    }
    targets.resize(records->size());
    std::vector<std::optional<std::string>> failures(records->size());
    std::vector<std::optional<heal::DiagnosisView>> views(records->size());
    const auto deadline = Deadline::after(request.timeout);
    const auto* plan_servers = &given.servers;
    const auto* record_list = &*records;
    auto* view_list = &views;
    auto* failure_list = &failures;
    std::function<asio::awaitable<void>(std::size_t)> recheck =
        [state, plan_servers, record_list, view_list, failure_list, deadline](std::size_t i) {
          return recheck_one(state, &(*plan_servers)[i], &(*record_list)[i], &(*view_list)[i],
                             &(*failure_list)[i], deadline);
        };
    co_await for_each_bounded(runtime.io().get_executor(), records->size(), kParallelServers,
                              std::move(recheck));
    for (std::size_t i = 0; i < records->size(); ++i) {
      if (failures[i]) {
        changes.push_back(*failures[i]);
        continue;
      }
      targets[i].record = (*records)[i];
      targets[i].diagnosis = views[i];
      for (const auto& step : given.servers[i].steps) {
        if (!step.trigger) {
          targets[i].requests.push_back(heal::ActionRequest{step.action, step.params});
        }
      }
    }
  }
  heal::Plan now;
  if (changes.empty()) {
    auto rebuilt =
        co_await build_plan(state, config, targets, given.rules, Deadline::after(request.timeout));
    if (!rebuilt) {
      changes.push_back(rebuilt.error().detail);
    } else if (rebuilt->hash != given.hash) {
      changes = describe_changes(given, *rebuilt);
    } else {
      now = std::move(*rebuilt);
    }
  }
  if (!changes.empty()) {
    outcome.status = "stale";
    outcome.changes = changes;
    for (const auto& server : given.servers) {
      for (const auto& step : server.steps) {
        if (!step.ready) {
          continue;
        }
        auto refused = outcome_of(server.server, step);
        refused.result = "stale";
        refused.detail = "the server's state changed since the plan: nothing was run (plan again)";
        if (!request.dry_run) {
          auto event = event_of(server.server, server.server_id, step, request.actor, given.hash);
          event.heal_id = random_id();
          event.kind = store::HealEventKind::refused;
          event.result = "stale";
          event.before = state_json(server.checks, step.facts);
          event.detail = fmt::format("{}", fmt::join(changes, "; "));
          refused.heal_id = event.heal_id;
          co_await append(state, std::move(event));
          ++state->stats.refused;
        }
        outcome.steps.push_back(std::move(refused));
      }
    }
    co_return outcome;
  }
  if (request.dry_run) {
    outcome.status = "dry_run";
    for (const auto& server : now.servers) {
      for (const auto& step : server.steps) {
        auto planned = outcome_of(server.server, step);
        planned.result = step.ready ? "would_run" : "skipped";
        planned.detail = step.blocked;
        outcome.steps.push_back(std::move(planned));
      }
    }
    co_return outcome;
  }
  outcome.status = "applied";
  std::vector<std::vector<HealStepOutcome>> per_server(now.servers.size());
  std::vector<ServerWork> work(now.servers.size());
  for (std::size_t i = 0; i < now.servers.size(); ++i) {
    work[i].record = targets[i].record;
    work[i].actor = request.actor;
    work[i].plan_hash = now.hash;
    work[i].checks = now.servers[i].checks;
    work[i].steps = now.servers[i].steps;
  }
  auto* work_list = &work;
  auto* results = &per_server;
  std::function<asio::awaitable<void>(std::size_t)> apply = [state, config, work_list,
                                                             results](std::size_t i) {
    return apply_server(state, config, std::move((*work_list)[i]), &(*results)[i]);
  };
  co_await for_each_bounded(runtime.io().get_executor(), work.size(),
                            static_cast<std::size_t>(config->max_concurrent), std::move(apply));
  for (auto& list : per_server) {
    for (auto& step : list) {
      outcome.steps.push_back(std::move(step));
    }
  }
  co_return outcome;
}

void HealEngine::observe(const store::ServerRecord& record, const DiagnosedServer& diagnosed) {
  auto& state = *state_;
  if (state.stopping || !state.runtime.has_store()) {
    return;
  }
  const auto& settings = state.runtime.settings().heal;
  if (std::none_of(settings.rules.begin(), settings.rules.end(),
                   [](const heal::Rule& rule) { return rule.automatic; })) {
    return;
  }
  const auto view = view_of(diagnosed.diagnosis, diagnosed.run_id);
  std::vector<std::pair<const heal::Rule*, heal::Trigger>> due;
  for (const auto& rule : settings.rules) {
    if (!rule.automatic || !rule.applies_to(record.name, record.tags)) {
      continue;
    }
    const Key counter{record.name, rule.name};
    const auto check = view.checks.find(rule.check);
    if (check == view.checks.end() || !rule.matches(check->second.status)) {
      state.consecutive.erase(counter);
      continue;
    }
    const int seen = ++state.consecutive[counter];
    if (seen < rule.consecutive) {
      logger()->debug("[{}] rule {}: {} is {} ({} of {} in a row)", record.name, rule.name,
                      rule.check, check->second.status, seen, rule.consecutive);
      continue;
    }
    due.emplace_back(
        &rule, heal::Trigger{rule.name, rule.check, check->second.status, check->second.message});
  }
  if (due.empty()) {
    return;
  }
  auto config = std::make_shared<const heal::HealConfig>(settings);
  for (const auto& [rule, trigger] : due) {
    const Key key{record.name, rule->action};
    if (state.in_flight.contains(key)) {
      continue;  // being healed (or in its grace period): not judged again yet
    }
    if (const auto* silence = config->silence_for(record.name, record.tags, store::now_unix_ms());
        silence != nullptr) {
      ++state.stats.automatic_skipped;
      logger()->info("[{}] rule {}: silenced{}", record.name, rule->name,
                     silence->reason.empty() ? "" : " (" + silence->reason + ")");
      continue;
    }
    state.in_flight.insert(key);
    asio::co_spawn(state.runtime.io(), auto_heal(state_, config, record, *rule, trigger),
                   asio::detached);
  }
}

asio::awaitable<void> HealEngine::async_stop(Deadline deadline) {
  auto state = state_;
  state->stopping = true;
  asio::steady_timer timer(state->runtime.io());
  while (state->stats.running > 0 && !deadline.expired()) {
    timer.expires_after(kTick);
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

Result<HealHistoryPage> heal_history(store::Store& store, const HealHistoryQuery& query) {
  store::HealEventQuery heads;
  heads.server = query.server;
  heads.before_id = query.before_id;
  heads.limit = std::max<std::size_t>(query.limit, 1) + 1;
  heads.kinds = {store::HealEventKind::started, store::HealEventKind::refused,
                 store::HealEventKind::breaker_open, store::HealEventKind::breaker_closed};
  auto events = store.heal_events(heads);
  if (!events) {
    return std::move(events).error();
  }
  HealHistoryPage page;
  const bool more = events->size() > std::max<std::size_t>(query.limit, 1);
  if (more) {
    events->pop_back();
  }
  std::vector<std::string> started;
  for (const auto& event : *events) {
    if (event.kind == store::HealEventKind::started) {
      started.push_back(event.heal_id);
    }
  }
  std::multimap<std::string, store::HealEvent> tails;
  if (!started.empty()) {
    store::HealEventQuery rest;
    rest.heal_ids = started;
    rest.kinds = {store::HealEventKind::finished, store::HealEventKind::verified};
    rest.limit = started.size() * 4 + 10;
    auto more_events = store.heal_events(rest);
    if (!more_events) {
      return std::move(more_events).error();
    }
    for (auto& event : *more_events) {
      tails.emplace(event.heal_id, std::move(event));
    }
  }
  for (const auto& head : *events) {
    HealRecord record;
    record.id = head.id;
    record.heal_id = head.heal_id;
    record.at = head.at;
    record.actor = head.actor;
    record.plan_hash = head.plan_hash;
    record.server = head.server;
    record.action = head.action;
    record.params = head.params;
    record.command = head.command;
    record.before = head.before;
    record.detail = head.detail;
    record.result = head.result;
    switch (head.kind) {
      case store::HealEventKind::started:
        record.kind = "heal";
        record.result = "unfinished";
        break;
      case store::HealEventKind::refused:
        record.kind = "refused";
        break;
      case store::HealEventKind::breaker_open:
        record.kind = "breaker_open";
        break;
      default:
        record.kind = "breaker_closed";
        break;
    }
    const auto [first, last] = tails.equal_range(head.heal_id);
    for (auto it = first; it != last; ++it) {
      const auto& tail = it->second;
      if (tail.kind == store::HealEventKind::finished) {
        record.result = tail.result;
        record.exit_code = tail.exit_code;
        record.output = tail.output;
        record.finished_at = tail.at;
        if (!tail.detail.empty()) {
          record.detail = tail.detail;
        }
      } else if (tail.kind == store::HealEventKind::verified) {
        record.verification = tail.result;
        record.verified_at = tail.at;
        record.after = tail.after;
        if (!tail.detail.empty()) {
          record.detail = record.detail.empty() ? tail.detail : record.detail + "; " + tail.detail;
        }
      }
    }
    page.items.push_back(std::move(record));
  }
  if (more && !page.items.empty()) {
    page.next_cursor = page.items.back().id;
  }
  return page;
}

Result<std::vector<store::HealEvent>> heal_events(store::Store& store,
                                                  const HealHistoryQuery& query) {
  store::HealEventQuery events;
  events.server = query.server;
  events.before_id = query.before_id;
  events.limit = std::max<std::size_t>(query.limit, 1);
  return store.heal_events(events);
}

Result<bool> reset_breaker(store::Store& store, const std::string& server,
                           const std::string& action, const std::string& actor) {
  store::HealEventQuery query;
  query.server = server;
  query.action = action;
  query.kinds = {store::HealEventKind::breaker_open, store::HealEventKind::breaker_closed};
  query.limit = 1;
  auto events = store.heal_events(query);
  if (!events) {
    return std::move(events).error();
  }
  const bool open = !events->empty() && events->front().kind == store::HealEventKind::breaker_open;
  if (!open) {
    return false;
  }
  store::HealEvent event;
  event.heal_id = random_id();
  event.kind = store::HealEventKind::breaker_closed;
  event.at = store::now_unix_ms();
  event.actor = actor;
  event.server = server;
  event.server_id = events->front().server_id;
  event.action = action;
  event.result = "closed";
  event.detail = "reset by " + actor;
  auto appended = store.append_heal_event(event);
  if (!appended) {
    return std::move(appended).error();
  }
  return true;
}

Result<heal::Plan> load_plan(store::Store& store, const std::string& hash) {
  auto body = store.heal_plan(hash);
  if (!body) {
    if (body.error().code == store::Errc::not_found) {
      return make_error(Errc::not_found,
                        fmt::format("no plan with hash {} (plans are kept 7 days)", hash));
    }
    return std::move(body).error();
  }
  auto document = Json::parse(*body, nullptr, false);
  if (document.is_discarded()) {
    return heal::make_error(heal::Errc::invalid_plan, "the stored plan is not valid JSON");
  }
  return heal::plan_from_json(document);
}

std::string local_actor() { return "cli:" + local_user(); }

Json to_json(const HealApplyOutcome& outcome) {
  Json steps = Json::array();
  for (const auto& step : outcome.steps) {
    Json verification = nullptr;
    if (step.verification) {
      verification = Json{{"result", step.verification->result},
                          {"detail", step.verification->detail},
                          {"checks", step.verification->checks},
                          {"facts", facts_json(step.verification->facts)}};
    }
    steps.push_back(Json{{"server", step.server},
                         {"action", step.action},
                         {"params", step.params},
                         {"command", step.command},
                         {"heal_id", step.heal_id.empty() ? Json(nullptr) : Json(step.heal_id)},
                         {"result", step.result},
                         {"exit_code", step.exit_code ? Json(*step.exit_code) : Json(nullptr)},
                         {"output", step.output},
                         {"detail", step.detail},
                         {"verification", std::move(verification)},
                         {"breaker_opened", step.breaker_opened}});
  }
  return Json{{"plan_hash", outcome.plan_hash},
              {"dry_run", outcome.dry_run},
              {"status", outcome.status},
              {"changes", outcome.changes},
              {"steps", std::move(steps)}};
}

Json to_json(const HealRecord& record) {
  auto parsed = [](const std::string& text) {
    auto document = Json::parse(text, nullptr, false);
    return document.is_discarded() ? Json::object() : document;
  };
  return Json{
      {"id", record.id},
      {"kind", record.kind},
      {"heal_id", record.heal_id},
      {"at", record.at},
      {"actor", record.actor},
      {"plan_hash", record.plan_hash.empty() ? Json(nullptr) : Json(record.plan_hash)},
      {"server", record.server},
      {"action", record.action},
      {"params", parsed(record.params)},
      {"command", record.command},
      {"result", record.result},
      {"exit_code", record.exit_code ? Json(*record.exit_code) : Json(nullptr)},
      {"output", record.output},
      {"finished_at", record.finished_at ? Json(*record.finished_at) : Json(nullptr)},
      {"verification", record.verification.empty() ? Json(nullptr) : Json(record.verification)},
      {"verified_at", record.verified_at ? Json(*record.verified_at) : Json(nullptr)},
      {"before", parsed(record.before)},
      {"after", parsed(record.after)},
      {"detail", record.detail}};
}

Json to_json(const HealHistoryPage& page) {
  Json items = Json::array();
  for (const auto& record : page.items) {
    items.push_back(to_json(record));
  }
  return Json{
      {"items", std::move(items)},
      {"next_cursor", page.next_cursor ? Json(std::to_string(*page.next_cursor)) : Json(nullptr)}};
}

Json to_json(const store::HealEvent& event) {
  auto parsed = [](const std::string& text) {
    auto document = Json::parse(text, nullptr, false);
    return document.is_discarded() ? Json::object() : document;
  };
  return Json{{"id", event.id},
              {"heal_id", event.heal_id},
              {"event", store::to_string(event.kind)},
              {"at", event.at},
              {"actor", event.actor},
              {"plan_hash", event.plan_hash},
              {"server", event.server},
              {"server_id", event.server_id ? Json(*event.server_id) : Json(nullptr)},
              {"action", event.action},
              {"params", parsed(event.params)},
              {"command", event.command},
              {"result", event.result},
              {"exit_code", event.exit_code ? Json(*event.exit_code) : Json(nullptr)},
              {"output", event.output},
              {"before", parsed(event.before)},
              {"after", parsed(event.after)},
              {"detail", event.detail}};
}

}  // namespace healer::service
