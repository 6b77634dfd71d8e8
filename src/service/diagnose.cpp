#include "healer/service/diagnose.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "healer/checks/catalog.hpp"
#include "healer/checks/report.hpp"
#include "healer/core/log.hpp"
#include "healer/pool/errors.hpp"
#include "healer/service/errors.hpp"
#include "healer/ssh/errors.hpp"

namespace healer::service {
namespace {

// One server of a request, with everything read from the store before the checks run.
struct Target {
  store::ServerRecord record;
  checks::CheckSettings settings;
  std::optional<std::int64_t> app_id;
  std::vector<checks::CheckDefinition> extra_checks;  ///< the application's own checks
};

struct Plan {
  std::vector<Target> targets;
  std::vector<checks::CheckDefinition> checks;
  std::vector<store::CachedCheckOutput> kept;  ///< cached outputs read from the store
};

std::optional<double> parse_number(std::string_view text) {
  double value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

bool known_threshold_key(std::string_view key) {
  static const auto keys = known_threshold_keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// Reads what the request needs from the store (blocking; off the loop).
Result<Plan> make_plan(Runtime& runtime, const DiagnoseRequest& request) {
  Plan plan;
  auto check_list = requested_checks(request);
  if (!check_list) {
    return std::move(check_list).error();
  }
  plan.checks = std::move(*check_list);
  checks::CheckSettings overrides;
  for (const auto& text : request.thresholds) {
    auto parsed = parse_threshold(text);
    if (!parsed) {
      return std::move(parsed).error();
    }
    if (!known_threshold_key(parsed->first)) {
      return make_error(Errc::invalid_input,
                        fmt::format("no check reads the threshold '{}'", parsed->first));
    }
    overrides.thresholds[parsed->first] = parsed->second;
  }
  if (!runtime.has_store()) {
    return make_error(Errc::unavailable, "diagnosing needs the inventory database");
  }
  auto& store = runtime.store();
  const auto& check_config = runtime.settings().checks;
  auto settings_for = [&](const store::ServerRecord& record) {
    return checks::overlay(check_config.settings_for(record.name, record.tags), overrides);
  };
  if (!request.app.empty()) {
    auto app = store.get_application_by_name(request.app);
    if (!app) {
      if (app.error().code == store::Errc::not_found) {
        return make_error(Errc::not_found, fmt::format("no application named '{}'", request.app));
      }
      return std::move(app).error();
    }
    auto record = store.get_server(app->server_id, store::SecretAccess::decrypt);
    if (!record) {
      return std::move(record).error();
    }
    auto settings = settings_for(*record);
    settings.expected_ports.insert(settings.expected_ports.end(), app->ports.begin(),
                                   app->ports.end());
    checks::ApplicationSpec spec;
    spec.name = app->name;
    spec.units = app->systemd_units;
    spec.health_url = app->health_url;
    spec.log_paths = app->log_paths;
    plan.targets.push_back(
        Target{std::move(*record), std::move(settings), app->id, checks::application_checks(spec)});
  }
  if (!request.selection.empty()) {
    auto records = select_servers(store, request.selection);
    if (!records) {
      return std::move(records).error();
    }
    for (auto& record : *records) {
      auto settings = settings_for(record);
      plan.targets.push_back(Target{std::move(record), std::move(settings), std::nullopt, {}});
    }
  }
  if (plan.targets.empty()) {
    return make_error(Errc::invalid_input, "name servers, or use --tag TAG, --all or --app APP");
  }
  if (!request.fresh) {
    for (const auto& target : plan.targets) {
      // A cache is an optimisation: when it cannot be read, the checks simply run.
      if (auto outputs = store.cached_check_outputs(target.record.id); outputs) {
        plan.kept.insert(plan.kept.end(), std::make_move_iterator(outputs->begin()),
                         std::make_move_iterator(outputs->end()));
      }
    }
  }
  return plan;
}

std::int64_t wall_ms_from_steady(Clock::time_point at) {
  return store::now_unix_ms() +
         std::chrono::duration_cast<std::chrono::milliseconds>(at - Clock::now()).count();
}

// Kept outputs from the store go into the runtime's cache unless it has a fresher one.
void load_cache(checks::ResultCache& cache, const Plan& plan,
                const std::vector<checks::ServerChecks>& work) {
  std::map<std::int64_t, std::size_t> index;
  for (std::size_t i = 0; i < plan.targets.size(); ++i) {
    index.emplace(plan.targets[i].record.id, i);
  }
  for (const auto& output : plan.kept) {
    const auto found = index.find(output.server_id);
    if (found == index.end()) {
      continue;
    }
    const auto& server = work[found->second];
    for (const auto& check : server.checks) {
      if (check.name != output.check_name || check.command != output.command ||
          cache.find(server.server_id, check) != nullptr) {
        continue;
      }
      checks::CachedOutput kept;
      kept.out = output.out;
      kept.err = output.err;
      kept.marker = output.marker;
      kept.exit_status = output.exit_status;
      kept.out_truncated = output.out_truncated;
      kept.sent_at = output.sent_at;
      kept.received_at = output.received_at;
      kept.expires_at =
          Clock::now() + std::chrono::milliseconds(output.expires_at - store::now_unix_ms());
      cache.store(server.server_id, check, std::move(kept));
      break;
    }
  }
}

std::vector<store::CachedCheckOutput> cache_rows(const checks::ResultCache& cache,
                                                 const std::vector<Target>& targets) {
  std::map<std::string, std::int64_t, std::less<>> ids;
  for (const auto& target : targets) {
    ids.emplace(target.record.name, target.record.id);
  }
  std::vector<store::CachedCheckOutput> rows;
  for (const auto& entry : cache.entries()) {
    const auto id = ids.find(entry.server_id);
    if (id == ids.end() || entry.output->expires_at <= Clock::now()) {
      continue;
    }
    store::CachedCheckOutput row;
    row.server_id = id->second;
    row.check_name = entry.check_name;
    row.command = entry.command;
    row.out = entry.output->out;
    row.err = entry.output->err;
    row.marker = entry.output->marker;
    row.exit_status = entry.output->exit_status;
    row.out_truncated = entry.output->out_truncated;
    row.sent_at = entry.output->sent_at;
    row.received_at = entry.output->received_at;
    row.expires_at = wall_ms_from_steady(entry.output->expires_at);
    rows.push_back(std::move(row));
  }
  return rows;
}

bool is_interruption(const Error& error) {
  return error.code == pool::Errc::shutting_down || error.code == ssh::Errc::cancelled ||
         error.code == Errc::cancelled;
}

// A diagnosis cut short by a shutdown (SIGINT/SIGTERM) is not what the server looks like: it is
// shown but never recorded, so it cannot raise a false transition.
bool interrupted(const checks::Diagnosis& diagnosis) {
  if (diagnosis.server_error && is_interruption(*diagnosis.server_error)) {
    return true;
  }
  return std::any_of(
      diagnosis.checks.begin(), diagnosis.checks.end(),
      [](const checks::CheckRun& run) { return run.error && is_interruption(*run.error); });
}

struct Recorded {
  std::vector<std::pair<std::int64_t, std::optional<store::StatusTransition>>> runs;
  std::vector<std::string> errors;
};

}  // namespace

store::CheckStatus to_store(checks::Status status) noexcept {
  switch (status) {
    case checks::Status::ok:
      return store::CheckStatus::ok;
    case checks::Status::warning:
      return store::CheckStatus::warning;
    case checks::Status::critical:
      return store::CheckStatus::critical;
    case checks::Status::unknown:
      break;
  }
  return store::CheckStatus::unknown;
}

store::DiagnosisRun to_run(const checks::Diagnosis& diagnosis, std::int64_t server_id,
                           std::optional<std::int64_t> app_id) {
  store::DiagnosisRun run;
  run.server_id = server_id;
  run.app_id = app_id;
  run.started_at =
      std::chrono::duration_cast<std::chrono::milliseconds>(diagnosis.started_at.time_since_epoch())
          .count();
  run.finished_at =
      run.started_at +
      std::chrono::duration_cast<std::chrono::milliseconds>(diagnosis.duration).count();
  run.status = to_store(diagnosis.status);
  for (const auto& check : diagnosis.checks) {
    store::CheckResultRecord record;
    record.name = check.result.name;
    record.status = to_store(check.result.status);
    record.message = check.result.message;
    for (const auto& value : check.result.perfdata) {
      if (!record.perfdata.empty()) {
        record.perfdata += ' ';
      }
      record.perfdata += value.format();
    }
    record.duration_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(check.duration).count();
    run.checks.push_back(std::move(record));
  }
  return run;
}

Result<std::pair<std::string, checks::Thresholds>> parse_threshold(std::string_view text) {
  auto bad = [&](const char* why) -> Error {
    return make_error(
        Errc::invalid_input,
        fmt::format("threshold '{}' {}: expected KEY=WARN:CRIT, e.g. disk_space=80:90",
                    std::string(text), why));
  };
  const auto eq = text.find('=');
  const auto colon = text.find(':', eq == std::string_view::npos ? 0 : eq);
  if (eq == std::string_view::npos || eq == 0 || colon == std::string_view::npos) {
    return bad("is malformed");
  }
  checks::Thresholds levels;
  const auto warn = text.substr(eq + 1, colon - eq - 1);
  const auto crit = text.substr(colon + 1);
  if (!warn.empty()) {
    levels.warn = parse_number(warn);
    if (!levels.warn) {
      return bad("has a warning level that is not a number (or not finite)");
    }
  }
  if (!crit.empty()) {
    levels.crit = parse_number(crit);
    if (!levels.crit) {
      return bad("has a critical level that is not a number (or not finite)");
    }
  }
  return std::pair{std::string(text.substr(0, eq)), levels};
}

Result<std::vector<checks::CheckDefinition>> requested_checks(const DiagnoseRequest& request) {
  if (request.checks.empty()) {
    return request.seed ? checks::seed_checks() : checks::default_checks();
  }
  std::vector<checks::CheckDefinition> list;
  for (const auto& name : request.checks) {
    auto check = checks::find_check(name);
    if (!check) {
      return make_error(
          Errc::invalid_input,
          fmt::format("no check named '{}' (see `healer diagnose --list-checks`)", name));
    }
    list.push_back(std::move(*check));
  }
  return list;
}

asio::awaitable<Result<DiagnoseOutcome>> async_diagnose(Runtime& runtime, DiagnoseRequest request,
                                                        ProgressCallback progress) {
  if (request.parallel == 0) {
    request.parallel = 1;
  }
  if (request.timeout <= std::chrono::milliseconds::zero()) {
    co_return make_error(Errc::invalid_input, "the timeout must be positive");
  }
  // A named job: GCC 12 mis-builds a capturing lambda temporary inside co_await.
  auto job = [&runtime, request]() { return make_plan(runtime, request); };
  auto planned = co_await runtime.async_offload(std::move(job));
  if (!planned) {
    co_return std::move(planned).error();
  }
  Plan plan = std::move(*planned);
  std::vector<store::ServerRecord> records;
  records.reserve(plan.targets.size());
  for (const auto& target : plan.targets) {
    records.push_back(target.record);
  }
  auto ids = register_servers(runtime, records);
  if (!ids) {
    co_return std::move(ids).error();
  }
  std::vector<checks::ServerChecks> work;
  work.reserve(plan.targets.size());
  for (std::size_t i = 0; i < plan.targets.size(); ++i) {
    auto list = plan.checks;
    list.insert(list.end(), plan.targets[i].extra_checks.begin(),
                plan.targets[i].extra_checks.end());
    work.emplace_back((*ids)[i], std::move(list), plan.targets[i].settings);
  }
  auto& cache = runtime.cache();
  if (request.fresh) {
    for (const auto& id : *ids) {
      cache.forget(id);
    }
  } else {
    load_cache(cache, plan, work);
  }

  checks::SweepOptions options;
  options.per_server.cache = &cache;
  options.per_server.priority = request.priority;
  options.per_server.mode =
      request.batched ? checks::RunMode::batched : checks::RunMode::concurrent;
  options.max_servers = request.parallel;
  options.server_timeout = request.timeout;
  options.deadline = Deadline::after(request.timeout * 4 + std::chrono::seconds(5));
  const std::size_t total = work.size();
  if (progress) {
    options.on_diagnosis = [progress, total, done = std::size_t{0}](
                               std::size_t, const checks::Diagnosis&) mutable {
      progress(++done, total);
    };
  }
  auto diagnoses =
      co_await checks::async_diagnose_all(runtime.executor(), std::move(work), std::move(options));

  DiagnoseOutcome outcome;
  outcome.servers.reserve(diagnoses.size());
  for (std::size_t i = 0; i < diagnoses.size(); ++i) {
    DiagnosedServer server;
    server.server_id = plan.targets[i].record.id;
    server.app_id = plan.targets[i].app_id;
    server.diagnosis = std::move(diagnoses[i]);
    outcome.servers.push_back(std::move(server));
  }
  if (!request.store_runs) {
    co_return outcome;
  }
  // Runs, transitions, the slow checks' outputs and retention, in one trip to the store thread.
  std::vector<std::optional<store::DiagnosisRun>> runs;
  std::vector<std::string> names;
  for (const auto& server : outcome.servers) {
    names.push_back(server.diagnosis.server_id);
    runs.push_back(interrupted(server.diagnosis)
                       ? std::nullopt
                       : std::optional(to_run(server.diagnosis, server.server_id, server.app_id)));
  }
  auto rows = cache_rows(cache, plan.targets);
  const auto retention = runtime.settings().retention;
  // A named job: GCC 12 mis-builds a capturing lambda temporary inside co_await.
  auto job2 = [&runtime, runs = std::move(runs), names = std::move(names), rows = std::move(rows),
               retention]() {
    auto& store = runtime.store();
    Recorded result;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const auto& run = runs[i];
      if (!run) {
        result.runs.emplace_back(0, std::nullopt);
        continue;
      }
      auto stored = store.record_diagnosis(*run);
      if (!stored) {
        result.errors.push_back(
            fmt::format("could not store the run of {}: {}", names[i], stored.error().message()));
        result.runs.emplace_back(0, std::nullopt);
        continue;
      }
      result.runs.emplace_back(stored->run_id, stored->transition);
    }
    if (auto saved = store.put_cached_check_outputs(rows); !saved) {
      log::get("service")->warn("could not keep the check output cache: {}",
                                saved.error().message());
    }
    store.prune_async(retention);
    return result;
  };
  auto recorded = co_await runtime.async_offload(std::move(job2));
  for (std::size_t i = 0; i < outcome.servers.size() && i < recorded.runs.size(); ++i) {
    outcome.servers[i].run_id = recorded.runs[i].first;
    outcome.servers[i].transition = recorded.runs[i].second;
  }
  for (std::size_t i = 0; i < recorded.errors.size(); ++i) {
    outcome.store_errors.push_back(std::move(recorded.errors[i]));
  }
  co_return outcome;
}

int nagios_exit_code(const DiagnoseOutcome& outcome) {
  std::vector<checks::Diagnosis> diagnoses;
  diagnoses.reserve(outcome.servers.size());
  for (const auto& server : outcome.servers) {
    diagnoses.push_back(server.diagnosis);
  }
  return checks::nagios_exit_code(diagnoses);
}

}  // namespace healer::service
