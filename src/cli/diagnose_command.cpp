#include "diagnose_command.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "check_config.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/checks/check.hpp"
#include "healer/checks/report.hpp"
#include "healer/checks/runner.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/core/config_loader.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/pool.hpp"
#include "inventory.hpp"
#include "pool_options.hpp"
#include "retention.hpp"

namespace healer::cli {
namespace {

struct DiagnoseArgs {
  StoreArgs store;
  PoolOptionValues pool;
  Selection selection;
  std::string app;
  std::vector<std::string> checks;
  std::vector<std::string> thresholds;
  bool seed = false;
  bool batched = false;
  bool json = false;
  bool perfdata = false;
  bool no_store = false;
  bool fresh = false;
  double timeout_s = 60;
  std::size_t parallel = 32;
};

std::optional<double> parse_number(std::string_view text) {
  double value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

// "KEY=WARN:CRIT" (either level may be empty: "disk_space=:97") -> a threshold override.
Result<std::pair<std::string, checks::Thresholds>> parse_threshold(std::string_view text) {
  auto bad = [&](const char* why) -> Error {
    return Error{std::make_error_code(std::errc::invalid_argument),
                 fmt::format("threshold '{}' {}: expected KEY=WARN:CRIT, e.g. disk_space=80:90",
                             std::string(text), why)};
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
      return bad("has a warning level that is not a number");
    }
  }
  if (!crit.empty()) {
    levels.crit = parse_number(crit);
    if (!levels.crit) {
      return bad("has a critical level that is not a number");
    }
  }
  return std::pair{std::string(text.substr(0, eq)), levels};
}

bool known_threshold_key(std::string_view key) {
  const auto keys = known_threshold_keys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

store::CheckStatus to_store(checks::Status status) {
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

struct Target {
  store::ServerRecord record;
  checks::CheckSettings settings;
  std::optional<std::int64_t> app_id;
  std::vector<checks::CheckDefinition> extra_checks;  ///< the application's own checks
};

asio::awaitable<std::vector<checks::Diagnosis>> sweep(std::vector<pool::Server> servers,
                                                      std::vector<checks::ServerChecks> work,
                                                      PoolConfig config,
                                                      checks::SweepOptions options) {
  auto executor = co_await asio::this_coro::executor;
  pool::Registry registry(executor, std::move(config));
  for (auto& server : servers) {
    registry.add_server(std::move(server));
  }
  exec::Executor runner(registry);
  auto diagnoses = co_await checks::async_diagnose_all(runner, std::move(work), std::move(options));
  co_await registry.async_shutdown(Deadline::after(std::chrono::seconds(2)));
  co_return diagnoses;
}

std::int64_t wall_ms_from_steady(Clock::time_point at) {
  return store::now_unix_ms() +
         std::chrono::duration_cast<std::chrono::milliseconds>(at - Clock::now()).count();
}

void load_cache(store::Store& store, const std::vector<Target>& targets,
                const std::vector<checks::ServerChecks>& work, checks::ResultCache& cache) {
  for (std::size_t i = 0; i < targets.size(); ++i) {
    auto outputs = store.cached_check_outputs(targets[i].record.id);
    if (!outputs) {
      continue;  // a cache is an optimisation: the checks simply run
    }
    for (auto& output : *outputs) {
      for (const auto& check : work[i].checks) {
        if (check.name != output.check_name || check.command != output.command) {
          continue;
        }
        checks::CachedOutput kept;
        kept.out = std::move(output.out);
        kept.err = std::move(output.err);
        kept.marker = std::move(output.marker);
        kept.exit_status = output.exit_status;
        kept.out_truncated = output.out_truncated;
        kept.sent_at = output.sent_at;
        kept.received_at = output.received_at;
        kept.expires_at =
            Clock::now() + std::chrono::milliseconds(output.expires_at - store::now_unix_ms());
        cache.store(work[i].server_id, check, std::move(kept));
        break;
      }
    }
  }
}

void save_cache(store::Store& store, const std::vector<Target>& targets,
                const checks::ResultCache& cache) {
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
  if (auto saved = store.put_cached_check_outputs(rows); !saved) {
    std::cerr << "healer: could not keep the check output cache: " << saved.error().message()
              << '\n';
  }
}

int run_diagnose(const DiagnoseArgs& args) {
  auto config = resolve_pool_config(args.pool);
  if (!config) {
    return usage(config.error().message());
  }
  // The checks to run.
  std::vector<checks::CheckDefinition> check_list;
  if (!args.checks.empty()) {
    for (const auto& name : args.checks) {
      auto check = checks::find_check(name);
      if (!check) {
        return usage(
            fmt::format("no check named '{}' (see `healer diagnose --list-checks`)", name));
      }
      check_list.push_back(std::move(*check));
    }
  } else {
    check_list = args.seed ? checks::seed_checks() : checks::default_checks();
  }
  checks::CheckSettings overrides;
  for (const auto& text : args.thresholds) {
    auto parsed = parse_threshold(text);
    if (!parsed) {
      return usage(parsed.error().detail);
    }
    if (!known_threshold_key(parsed->first)) {
      return usage(fmt::format("no check reads the threshold '{}'", parsed->first));
    }
    overrides.thresholds[parsed->first] = parsed->second;
  }

  // Per-server and per-tag settings from the config file's [checks] table.
  CheckConfig check_config;
  auto config_file = read_config_file(args.pool);
  if (!config_file) {
    return usage(config_file.error().message());
  }
  if (*config_file) {
    auto parsed = parse_check_config((*config_file)->text, (*config_file)->path.string(),
                                     known_threshold_keys());
    if (!parsed) {
      return usage(parsed.error().detail);
    }
    check_config = std::move(*parsed);
  }
  auto retention =
      load_retention(config::Environment::process(),
                     *config_file ? std::optional<std::string>((*config_file)->text) : std::nullopt,
                     *config_file ? (*config_file)->path.string() : std::string());
  if (!retention) {
    return usage(retention.error().detail);
  }
  auto settings_for = [&](const store::ServerRecord& record) {
    return checks::overlay(check_config.settings_for(record.name, record.tags), overrides);
  };

  auto store = open_store(args.store);
  if (!store) {
    std::cerr << "healer: " << store.error().message() << '\n';
    return exit_code_for(store.error());
  }
  std::vector<Target> targets;
  if (!args.app.empty()) {
    auto app = store->get_application_by_name(args.app);
    if (!app) {
      return app.error().code == store::Errc::not_found
                 ? usage(fmt::format("no application named '{}'", args.app))
                 : usage(app.error().message());
    }
    auto record = store->get_server(app->server_id, store::SecretAccess::decrypt);
    if (!record) {
      return usage(record.error().message());
    }
    auto settings = settings_for(*record);
    settings.expected_ports.insert(settings.expected_ports.end(), app->ports.begin(),
                                   app->ports.end());
    checks::ApplicationSpec spec;
    spec.name = app->name;
    spec.units = app->systemd_units;
    spec.health_url = app->health_url;
    spec.log_paths = app->log_paths;
    Target target{std::move(*record), std::move(settings), app->id,
                  checks::application_checks(spec)};
    targets.push_back(std::move(target));
  }
  if (!args.selection.empty()) {
    auto records = select_servers(*store, args.selection);
    if (!records) {
      std::cerr << "healer: " << records.error().message() << '\n';
      return exit_code_for(records.error());
    }
    for (auto& record : *records) {
      auto settings = settings_for(record);
      targets.push_back(Target{std::move(record), std::move(settings), std::nullopt, {}});
    }
  }
  if (targets.empty()) {
    return usage("name servers, or use --tag TAG, --all or --app APP");
  }

  std::vector<pool::Server> servers;
  std::vector<checks::ServerChecks> work;
  for (const auto& target : targets) {
    auto server = pool_server_for(target.record, *config);
    if (!server) {
      return usage(server.error().detail);
    }
    servers.push_back(std::move(*server));
    auto list = check_list;
    list.insert(list.end(), target.extra_checks.begin(), target.extra_checks.end());
    work.emplace_back(target.record.name, std::move(list), target.settings);
  }

  // Outputs of expensive checks (security updates) kept in the store by earlier runs, reused
  // until they expire; --fresh runs everything.
  checks::ResultCache cache;
  if (!args.fresh) {
    load_cache(*store, targets, work, cache);
  }

  const bool tty = isatty(STDERR_FILENO) != 0;
  checks::SweepOptions options;
  options.per_server.cache = &cache;
  options.max_servers = args.parallel;
  options.server_timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(args.timeout_s * 1000.0));
  options.deadline = Deadline::after(options.server_timeout * 4 + std::chrono::seconds(5));
  options.per_server.mode = args.batched ? checks::RunMode::batched : checks::RunMode::concurrent;
  std::size_t done = 0;
  const std::size_t total = targets.size();
  if (tty && total > 1 && !args.json) {
    options.on_diagnosis = [&done, total](std::size_t, const checks::Diagnosis&) {
      ++done;
      std::cerr << fmt::format("\r\033[Kdiagnosed {}/{}", done, total) << std::flush;
    };
  }

  asio::io_context io;
  std::vector<checks::Diagnosis> diagnoses;
  asio::co_spawn(io, sweep(std::move(servers), std::move(work), *config, std::move(options)),
                 [&diagnoses](std::exception_ptr failure, std::vector<checks::Diagnosis> value) {
                   if (failure) {
                     std::rethrow_exception(failure);
                   }
                   diagnoses = std::move(value);
                 });
  io.run();
  if (tty && total > 1 && !args.json) {
    std::cerr << "\r\033[K" << std::flush;
  }

  if (!args.no_store) {
    save_cache(*store, targets, cache);
    store->prune_async(*retention);  // history older than the retention goes
    for (std::size_t i = 0; i < diagnoses.size(); ++i) {
      if (auto recorded =
              store->record_run(to_run(diagnoses[i], targets[i].record.id, targets[i].app_id));
          !recorded) {
        std::cerr << fmt::format("healer: could not store the run of {}: {}\n",
                                 targets[i].record.name, recorded.error().message());
      }
    }
  }

  if (args.json) {
    std::cout << checks::render_json(diagnoses, 2) << '\n';
  } else {
    const char* no_color = std::getenv("NO_COLOR");
    checks::RenderOptions render(isatty(STDOUT_FILENO) != 0 &&
                                 (no_color == nullptr || *no_color == '\0'));
    render.show_perfdata = args.perfdata;
    for (const auto& diagnosis : diagnoses) {
      // An unreachable server's checks all carry the same reason: one line says it.
      std::cout << (diagnosis.reachable() ? checks::render_table(diagnosis, render)
                                          : checks::render_summary(diagnosis, render) + '\n')
                << '\n';
    }
    if (diagnoses.size() > 1) {
      for (const auto& diagnosis : diagnoses) {
        std::cout << checks::render_summary(diagnosis, render) << '\n';
      }
    }
  }
  return checks::nagios_exit_code(diagnoses);
}

int list_checks() {
  checks::ApplicationSpec app;
  app.name = "--app";
  app.units = {"u"};
  app.health_url = "u";
  app.log_paths = {"u"};
  for (const auto& list :
       {checks::default_checks(), checks::seed_checks(), checks::application_checks(app)}) {
    for (const auto& check : list) {
      std::cout << fmt::format("{:<18} {}\n", check.name, check.summary);
      for (const auto& named : check.thresholds) {
        std::cout << fmt::format("    {}={}:{}{}  {}\n", named.key,
                                 named.defaults.warn ? fmt::format("{}", *named.defaults.warn) : "",
                                 named.defaults.crit ? fmt::format("{}", *named.defaults.crit) : "",
                                 named.unit, named.meaning);
      }
    }
  }
  return 0;
}

}  // namespace

Command add_diagnose_command(CLI::App& app) {
  auto args = std::make_shared<DiagnoseArgs>();
  auto& a = *args;
  auto list = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand(
      "diagnose",
      "Run health checks on servers, each server's checks concurrently over one pooled "
      "connection; exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios)");
  add_selection_options(*cmd, a.selection);
  cmd->add_option("--app", a.app, "An application: its server, with its ports expected to listen");
  cmd->add_option("--check,-c", a.checks, "Run only this check (repeatable)");
  cmd->add_flag("--seed", a.seed, "Run the seed design's seven checks instead of the default set");
  cmd->add_option("--threshold", a.thresholds,
                  "Override a threshold, KEY=WARN:CRIT (repeatable; see --list-checks)");
  cmd->add_flag("--batched", a.batched,
                "Send a server's checks in one command instead of one channel each");
  cmd->add_flag("--json", a.json, "JSON output");
  cmd->add_flag("--perfdata", a.perfdata, "Show each check's perfdata");
  cmd->add_flag("--no-store", a.no_store, "Do not record the runs in the inventory database");
  cmd->add_flag("--fresh", a.fresh,
                "Run every check, ignoring kept outputs of slow ones (security updates: 6 h)");
  cmd->add_option("--timeout", a.timeout_s, "Seconds per server")->check(CLI::PositiveNumber);
  cmd->add_option("--parallel", a.parallel, "Servers diagnosed at once")
      ->check(CLI::Range(1, 10000));
  cmd->add_flag("--list-checks", *list, "List the checks and their thresholds, then exit");
  add_store_options(*cmd, a.store);
  add_pool_options(*cmd, a.pool);
  return Command{cmd, [args, list] { return *list ? list_checks() : run_diagnose(*args); }};
}

}  // namespace healer::cli
