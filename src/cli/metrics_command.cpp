#include "metrics_command.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "daemon_client.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/service/collect.hpp"
#include "healer/service/errors.hpp"
#include "healer/service/json.hpp"
#include "pool_options.hpp"
#include "values.hpp"

namespace healer::cli {
namespace {

struct MetricsArgs {
  StoreArgs store;
  PoolOptionValues pool;
  service::Selection selection;
  bool json = false;
  bool no_store = false;
  bool no_progress = false;
  bool no_daemon = false;
  double timeout_s = 15;
  std::size_t parallel = 64;
  // show
  std::string server;
  std::string since = "1h";
  std::string name;
};

struct Progress {
  bool enabled = false;
  std::size_t total = 0;
  std::size_t done = 0;
  std::size_t failed = 0;

  void update() const {
    constexpr std::size_t kWidth = 30;
    const std::size_t filled = total == 0 ? kWidth : done * kWidth / total;
    std::cerr << fmt::format("\r\033[K[{}{}] {}/{} servers{}", std::string(filled, '#'),
                             std::string(kWidth - filled, ' '), done, total,
                             failed > 0 ? fmt::format(", {} failed", failed) : "")
              << std::flush;
  }
};

int run_collect(const MetricsArgs& args) {
  auto timeout = timeout_from_seconds(args.timeout_s, "--timeout");
  if (!timeout) {
    return fail(timeout.error());
  }
  if (args.selection.empty()) {
    return usage("name at least one server, or use --tag TAG or --all");
  }
  service::CollectRequest request;
  request.selection = args.selection;
  request.store_samples = !args.no_store;
  request.timeout = *timeout;
  request.parallel = args.parallel;

  Progress progress;
  progress.enabled = !args.no_progress && stderr_is_terminal();
  service::CollectCallback on_server;
  if (progress.enabled) {
    on_server = [&progress](const service::CollectedServer& server, std::size_t total) {
      progress.total = total;
      ++progress.done;
      if (!server.ok()) {
        ++progress.failed;
      }
      progress.update();
    };
  }
  int interrupted = 0;
  Result<service::CollectOutcome> outcome;
  auto daemon = daemon_for(args.store, args.pool, args.no_daemon);
  if (!daemon) {
    return fail(daemon.error());
  }
  if (*daemon) {
    auto reply = call_daemon(**daemon, "collect", service::control::to_json(request),
                             [&progress](const service::Json& frame) {
                               if (progress.enabled) {
                                 progress.total = frame.value("total", std::size_t{0});
                                 progress.done = frame.value("done", std::size_t{0});
                                 if (!frame.value("ok", true)) {
                                   ++progress.failed;
                                 }
                                 progress.update();
                               }
                             });
    outcome = reply ? service::collect_outcome_from_json(*reply)
                    : Result<service::CollectOutcome>(reply.error());
  } else {
    auto runtime = open_runtime(args.store, args.pool);
    if (!runtime) {
      return fail(runtime.error());
    }
    outcome = (*runtime)->run_one_shot(
        service::async_collect(**runtime, std::move(request), std::move(on_server)), &interrupted);
  }
  if (progress.enabled) {
    std::cerr << "\r\033[K" << std::flush;
  }
  if (!outcome) {
    return fail(outcome.error());
  }
  std::size_t failed = 0;
  std::size_t partial = 0;
  auto doc = service::Json::array();
  for (const auto& server : outcome->servers) {
    if (!server.ok()) {
      ++failed;
    } else if (server.partial()) {
      ++partial;
    }
    if (args.json) {
      doc.push_back(service::to_json(server));
      continue;
    }
    const auto name = terminal_safe(server.server);
    if (!server.ok()) {
      std::cout << fmt::format("{:<16} FAILED  {}\n", name, terminal_safe(server.error->message()));
      continue;
    }
    std::cout << fmt::format("{:<16} OK      {} series in {:.0f} ms: {}\n", name,
                             server.metrics.size(), server.elapsed_ms,
                             terminal_safe(server.headline));
    for (const auto& [section, message] : server.failed_sections) {
      std::cout << fmt::format("{:<16}         section {} failed: {}\n", "", terminal_safe(section),
                               terminal_safe(message));
    }
  }
  if (args.json) {
    std::cout << service::dump(doc, 2) << '\n';
  } else {
    std::cout.flush();
    std::cerr << fmt::format("{} server(s): {} collected ({} partial), {} failed; {} values {}\n",
                             outcome->servers.size(), outcome->servers.size() - failed, partial,
                             failed, args.no_store ? 0 : outcome->values_stored,
                             args.no_store ? "(not stored)" : "stored");
  }
  if (outcome->store_failures > 0) {
    std::cerr << fmt::format("healer: {} server(s)' samples could not be stored (see the log)\n",
                             outcome->store_failures);
  }
  if (interrupted != 0) {
    return 128 + interrupted;
  }
  return failed > 0 || partial > 0 || outcome->store_failures > 0 ? 1 : 0;
}

int run_show(const MetricsArgs& args) {
  const auto since = service::parse_duration(args.since);
  if (!since || since->count() == 0) {
    return usage(fmt::format("--since '{}' is not a duration like 90s, 15m, 2h or 7d", args.since));
  }
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  auto& store = (*runtime)->store();
  auto record = store.get_server_by_name(args.server);
  if (!record) {
    return record.error().code == store::Errc::not_found
               ? usage(fmt::format("no server named '{}'", args.server))
               : fail(record.error());
  }
  const auto since_ms =
      store::now_unix_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(*since).count();
  auto samples = store.samples_since(record->id, since_ms, args.name);
  if (!samples) {
    return fail(samples.error());
  }
  if (args.json) {
    auto doc = service::Json::array();
    for (const auto& sample : *samples) {
      doc.push_back({{"collected_at", sample.collected_at},
                     {"name", sample.name},
                     {"labels", sample.labels},
                     {"value", sample.value}});
    }
    std::cout << service::dump(doc, 2) << '\n';
    return 0;
  }
  const auto name = terminal_safe(args.server);
  if (samples->empty()) {
    std::cerr << fmt::format("no samples of {} in the last {} (healer metrics collect {})\n", name,
                             terminal_safe(args.since), name);
    return 0;
  }
  // The latest collection in full, then how many collections the window holds.
  const auto latest = samples->back().collected_at;
  std::size_t collections = 0;
  std::int64_t previous = -1;
  for (const auto& sample : *samples) {
    if (sample.collected_at != previous) {
      ++collections;
      previous = sample.collected_at;
    }
  }
  const auto age_s = (store::now_unix_ms() - latest) / 1000;
  std::cout << fmt::format("{}: {} collection(s) in the last {}; the latest, {} s ago:\n", name,
                           collections, terminal_safe(args.since), age_s);
  for (const auto& sample : *samples) {
    if (sample.collected_at == latest) {
      std::cout << terminal_safe(fmt::format("{}{}{}{} {}", sample.name,
                                             sample.labels.empty() ? "" : "{", sample.labels,
                                             sample.labels.empty() ? "" : "}", sample.value))
                << '\n';
    }
  }
  return 0;
}

}  // namespace

Command add_metrics_command(CLI::App& app) {
  auto args = std::make_shared<MetricsArgs>();
  auto& a = *args;
  auto* cmd = app.add_subcommand("metrics", "Collect and show Linux metrics (node_exporter names)");
  cmd->require_subcommand(1);

  auto* collect = cmd->add_subcommand(
      "collect",
      "Collect metrics from servers: one probe per server, over the pool; exits 0 when "
      "every server was collected in full, 1 otherwise");
  add_selection_options(*collect, a.selection);
  collect->add_flag("--json", a.json, "JSON output (every metric)");
  collect->add_flag("--no-store", a.no_store, "Do not record the samples");
  collect->add_flag("--no-progress", a.no_progress, "No progress bar on a terminal");
  collect->add_option("--timeout", a.timeout_s, "Seconds per server");
  collect->add_option("--parallel", a.parallel, "Servers collected at once")
      ->check(CLI::Range(1, 10000));
  add_store_options(*collect, a.store);
  add_daemon_option(*collect, a.no_daemon);
  add_pool_options(*collect, a.pool);

  auto* show = cmd->add_subcommand("show", "Show a server's stored samples");
  show->add_option("server", a.server, "Server name")->required();
  show->add_option("--since", a.since, "Window: 90s, 15m, 2h, 7d (default 1h)");
  show->add_option("--name", a.name, "Only this metric (e.g. node_load1)");
  show->add_flag("--json", a.json, "JSON output (every sample in the window)");
  add_store_options(*show, a.store);

  return Command{
      cmd, [args, collect] { return collect->parsed() ? run_collect(*args) : run_show(*args); }};
}

}  // namespace healer::cli
