#include "diagnose_command.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "daemon_client.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/checks/report.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/service/diagnose.hpp"
#include "healer/service/json.hpp"
#include "pool_options.hpp"
#include "values.hpp"

namespace healer::cli {
namespace {

struct DiagnoseArgs {
  StoreArgs store;
  PoolOptionValues pool;
  service::DiagnoseRequest request;
  bool json = false;
  bool perfdata = false;
  bool no_store = false;
  bool no_daemon = false;
  double timeout_s = 60;
};

bool use_color() {
  const char* no_color = std::getenv("NO_COLOR");
  return stdout_is_terminal() && (no_color == nullptr || *no_color == '\0');
}

// The diagnosis with every text that came from a server or the inventory made terminal-safe;
// the renderer then adds its own colours.
checks::Diagnosis for_terminal(checks::Diagnosis diagnosis) {
  diagnosis.server_id = terminal_safe(diagnosis.server_id);
  if (diagnosis.server_error) {
    diagnosis.server_error->detail = terminal_safe(diagnosis.server_error->detail);
  }
  for (auto& run : diagnosis.checks) {
    run.result.message = terminal_safe(run.result.message);
    for (auto& value : run.result.perfdata) {
      value.label = terminal_safe(value.label);
    }
    if (run.error) {
      run.error->detail = terminal_safe(run.error->detail);
    }
  }
  return diagnosis;
}

// Prints an outcome the way `healer diagnose` always has: a table per server (one line for an
// unreachable one), then a summary line per server when there are several.
void print_outcome(const service::DiagnoseOutcome& outcome, bool perfdata) {
  checks::RenderOptions render(use_color());
  render.show_perfdata = perfdata;
  for (const auto& server : outcome.servers) {
    const auto diagnosis = for_terminal(server.diagnosis);
    // An unreachable server's checks all carry the same reason: one line says it.
    const auto text = diagnosis.reachable() ? checks::render_table(diagnosis, render)
                                            : checks::render_summary(diagnosis, render) + '\n';
    std::cout << text << '\n';
  }
  if (outcome.servers.size() > 1) {
    for (const auto& server : outcome.servers) {
      std::cout << checks::render_summary(for_terminal(server.diagnosis), render) << '\n';
    }
  }
}

int run_diagnose(DiagnoseArgs args) {
  auto timeout = timeout_from_seconds(args.timeout_s, "--timeout");
  if (!timeout) {
    return fail(timeout.error());
  }
  args.request.timeout = *timeout;
  args.request.store_runs = !args.no_store;
  // Bad check names and thresholds are usage errors before the inventory is opened.
  if (auto checks = service::requested_checks(args.request); !checks) {
    return fail(checks.error());
  }
  for (const auto& text : args.request.thresholds) {
    if (auto parsed = service::parse_threshold(text); !parsed) {
      return fail(parsed.error());
    }
  }
  if (args.request.selection.empty() && args.request.app.empty()) {
    return usage("name servers, or use --tag TAG, --all or --app APP");
  }
  const bool progress_bar = stderr_is_terminal() && !args.json;
  service::ProgressCallback progress;
  if (progress_bar) {
    progress = [](std::size_t done, std::size_t total) {
      if (total > 1) {
        std::cerr << fmt::format("\r\033[Kdiagnosed {}/{}", done, total) << std::flush;
      }
    };
  }
  int interrupted = 0;
  Result<service::DiagnoseOutcome> outcome;
  auto daemon = daemon_for(args.store, args.pool, args.no_daemon);
  if (!daemon) {
    return fail(daemon.error());
  }
  if (*daemon) {
    auto reply = call_daemon(**daemon, "diagnose", service::control::to_json(args.request),
                             [&progress](const service::Json& frame) {
                               if (progress) {
                                 progress(frame.value("done", std::size_t{0}),
                                          frame.value("total", std::size_t{0}));
                               }
                             });
    outcome = reply ? service::diagnose_outcome_from_json(*reply)
                    : Result<service::DiagnoseOutcome>(reply.error());
  } else {
    auto runtime = open_runtime(args.store, args.pool);
    if (!runtime) {
      return fail(runtime.error());
    }
    outcome = (*runtime)->run_one_shot(
        service::async_diagnose(**runtime, std::move(args.request), std::move(progress)),
        &interrupted);
  }
  if (progress_bar) {
    std::cerr << "\r\033[K" << std::flush;
  }
  if (!outcome) {
    return fail(outcome.error());
  }
  if (args.json) {
    std::cout << service::dump(service::to_json(*outcome), 2) << '\n';
  } else {
    print_outcome(*outcome, args.perfdata);
  }
  for (const auto& error : outcome->store_errors) {
    std::cerr << "healer: " << terminal_safe(error) << '\n';
  }
  if (interrupted != 0) {
    std::cerr << "healer: interrupted; finished runs were recorded, the others were not\n";
    return 128 + interrupted;
  }
  if (!outcome->store_errors.empty()) {
    // The checks ran, but history (and transitions) for them is missing: not a plain result.
    std::cerr << "healer: the results above were not all recorded in the inventory database\n";
    return kExitStore;
  }
  return service::nagios_exit_code(*outcome);
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
  add_selection_options(*cmd, a.request.selection);
  cmd->add_option("--app", a.request.app,
                  "An application: its server, with its ports expected to listen");
  cmd->add_option("--check,-c", a.request.checks, "Run only this check (repeatable)");
  cmd->add_flag("--seed", a.request.seed,
                "Run the seed design's seven checks instead of the default set");
  cmd->add_option("--threshold", a.request.thresholds,
                  "Override a threshold, KEY=WARN:CRIT (repeatable; see --list-checks)");
  cmd->add_flag("--batched", a.request.batched,
                "Send a server's checks in one command instead of one channel each");
  cmd->add_flag("--json", a.json, "JSON output");
  cmd->add_flag("--perfdata", a.perfdata, "Show each check's perfdata");
  cmd->add_flag("--no-store", a.no_store, "Do not record the runs in the inventory database");
  cmd->add_flag("--fresh", a.request.fresh,
                "Run every check, ignoring kept outputs of slow ones (security updates: 6 h)");
  cmd->add_option("--timeout", a.timeout_s, "Seconds per server");
  cmd->add_option("--parallel", a.request.parallel, "Servers diagnosed at once")
      ->check(CLI::Range(1, 10000));
  cmd->add_flag("--list-checks", *list, "List the checks and their thresholds, then exit");
  add_store_options(*cmd, a.store);
  add_daemon_option(*cmd, a.no_daemon);
  add_pool_options(*cmd, a.pool);
  return Command{cmd, [args, list] { return *list ? list_checks() : run_diagnose(*args); }};
}

}  // namespace healer::cli
