#include "metrics_command.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "healer/cli/exit_codes.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/collector.hpp"
#include "healer/metrics/metric.hpp"
#include "healer/metrics/probe.hpp"
#include "healer/metrics/rates.hpp"
#include "healer/pool/pool.hpp"
#include "inventory.hpp"
#include "pool_options.hpp"
#include "retention.hpp"

namespace healer::cli {
namespace {

struct MetricsArgs {
  StoreArgs store;
  PoolOptionValues pool;
  Selection selection;
  bool json = false;
  bool no_store = false;
  bool no_progress = false;
  double timeout_s = 15;
  std::size_t parallel = 64;
  // show
  std::string server;
  std::string since = "1h";
  std::string name;
};

std::int64_t unix_ms(std::chrono::system_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}

// "90s", "15m", "2h", "7d" -> milliseconds.
std::optional<std::int64_t> parse_duration_ms(const std::string& text) {
  if (text.size() < 2) {
    return std::nullopt;
  }
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1000;
      break;
    case 'm':
      unit = 60'000;
      break;
    case 'h':
      unit = 3'600'000;
      break;
    case 'd':
      unit = 86'400'000;
      break;
    default:
      return std::nullopt;
  }
  std::int64_t count = 0;
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9' || count > 1'000'000'000) {
      return std::nullopt;
    }
    count = count * 10 + (text[i] - '0');
  }
  return count * unit;
}

// The few figures a person looks at first, from one sample.
std::string headline(const metrics::Sample& sample, const std::optional<metrics::Rates>& rates) {
  std::vector<std::string> parts;
  if (rates && rates->cpu) {
    parts.push_back(fmt::format("cpu {:.1f}% busy ({:.1f}% iowait) over {:.0f} s", rates->cpu->busy,
                                rates->cpu->iowait, rates->interval_seconds));
  }
  if (sample.load) {
    parts.push_back(fmt::format("load {:.2f} {:.2f} {:.2f}", sample.load->load1, sample.load->load5,
                                sample.load->load15));
  }
  if (sample.stat) {
    parts.push_back(fmt::format("{} CPU", sample.stat->cpus.size()));
  }
  if (sample.memory) {
    double total = 0;
    double available = -1;
    for (const auto& field : *sample.memory) {
      if (field.name == "MemTotal_bytes") {
        total = field.value;
      } else if (field.name == "MemAvailable_bytes") {
        available = field.value;
      }
    }
    if (total > 0 && available >= 0) {
      parts.push_back(fmt::format("mem {:.0f}% available of {:.1f} GiB", 100.0 * available / total,
                                  total / (1024.0 * 1024 * 1024)));
    }
  }
  if (sample.filesystems) {
    for (const auto& fs : *sample.filesystems) {
      if (fs.mountpoint == "/" && fs.size_bytes > 0) {
        parts.push_back(
            fmt::format("/ {:.0f}% used",
                        100.0 * static_cast<double>(fs.size_bytes - fs.free_bytes) /
                            static_cast<double>(fs.size_bytes - fs.free_bytes + fs.avail_bytes)));
      }
    }
  }
  std::string text;
  for (const auto& part : parts) {
    text += text.empty() ? part : ", " + part;
  }
  return text;
}

// How far back `collect` looks for the previous collection of a server to compute rates from
// (a 5-minute schedule keeps ~3 collections in it; older ones make poor rates anyway).
constexpr std::int64_t kRateWindowMs = 15 * 60 * 1000;

struct Previous {
  std::chrono::system_clock::time_point at;
  metrics::Sample counters;
};

// The latest stored collection of `server_id` within the window, rebuilt as counters.
std::optional<Previous> previous_collection(store::Store& store, std::int64_t server_id) {
  auto samples = store.samples_since(server_id, store::now_unix_ms() - kRateWindowMs);
  if (!samples || samples->empty()) {
    return std::nullopt;
  }
  const auto latest = samples->back().collected_at;
  std::vector<metrics::Metric> collection;
  for (const auto& sample : *samples) {
    if (sample.collected_at != latest) {
      continue;
    }
    auto labels = metrics::parse_labels(sample.labels);
    if (labels) {
      collection.push_back(metrics::Metric{sample.name, std::move(*labels), sample.value});
    }
  }
  return Previous{std::chrono::system_clock::time_point(std::chrono::milliseconds(latest)),
                  metrics::counters_from_metrics(collection)};
}

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

asio::awaitable<std::vector<metrics::CollectResult>> sweep(std::vector<pool::Server> servers,
                                                           PoolConfig config,
                                                           metrics::CollectOptions options) {
  auto executor = co_await asio::this_coro::executor;
  pool::Registry registry(executor, std::move(config));
  std::vector<std::string> ids;
  for (auto& server : servers) {
    ids.push_back(server.id);
    registry.add_server(std::move(server));
  }
  exec::Executor runner(registry);
  auto results = co_await metrics::async_collect(runner, std::move(ids), std::move(options));
  co_await registry.async_shutdown(Deadline::after(std::chrono::seconds(2)));
  co_return results;
}

int run_collect(const MetricsArgs& args) {
  auto config = resolve_pool_config(args.pool);
  if (!config) {
    return usage(config.error().message());
  }
  auto config_file = read_config_file(args.pool);
  if (!config_file) {
    return usage(config_file.error().message());
  }
  auto retention =
      load_retention(config::Environment::process(),
                     *config_file ? std::optional<std::string>((*config_file)->text) : std::nullopt,
                     *config_file ? (*config_file)->path.string() : std::string());
  if (!retention) {
    return usage(retention.error().detail);
  }
  auto store = open_store(args.store);
  if (!store) {
    return fail(store.error());
  }
  auto records = select_servers(*store, args.selection);
  if (!records) {
    return fail(records.error());
  }
  std::vector<pool::Server> servers;
  std::map<std::string, std::int64_t> ids;
  for (const auto& record : *records) {
    auto server = pool_server_for(record, *config);
    if (!server) {
      return fail(server.error());
    }
    ids[record.name] = record.id;
    servers.push_back(std::move(*server));
  }

  std::map<std::string, Previous> previous;
  if (!args.no_store) {
    for (const auto& record : *records) {
      if (auto found = previous_collection(*store, record.id)) {
        previous.emplace(record.name, std::move(*found));
      }
    }
  }
  std::map<std::string, metrics::Rates> rates;

  Progress progress;
  progress.enabled = !args.no_progress && isatty(STDERR_FILENO) != 0;
  progress.total = servers.size();
  std::size_t stored = 0;
  std::size_t store_failures = 0;
  metrics::CollectOptions options;
  options.concurrency = args.parallel;
  options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(args.timeout_s * 1000.0));
  // Samples are written as each server finishes (off the loop: the store has its own thread).
  options.on_result = [&](const metrics::CollectResult& result) {
    ++progress.done;
    if (!result.sample) {
      ++progress.failed;
    } else {
      auto metric_list = metrics::to_metrics(*result.sample);
      if (auto before = previous.find(result.server_id); before != previous.end()) {
        auto computed = metrics::compute_rates(before->second.counters, before->second.at,
                                               *result.sample, result.collected_at);
        if (computed) {
          auto rate_metrics = metrics::to_metrics(*computed);
          metric_list.insert(metric_list.end(), std::make_move_iterator(rate_metrics.begin()),
                             std::make_move_iterator(rate_metrics.end()));
          rates.emplace(result.server_id, std::move(*computed));
        }
      }
      if (args.no_store) {
        if (progress.enabled) {
          progress.update();
        }
        return;
      }
      std::vector<store::MetricSample> rows;
      const auto at = unix_ms(result.collected_at);
      for (auto& metric : metric_list) {
        rows.push_back(store::MetricSample{ids[result.server_id], at, std::move(metric.name),
                                           metrics::format_labels(std::move(metric.labels)),
                                           metric.value});
      }
      stored += rows.size();
      store->append_samples_async(std::move(rows), [&store_failures](Result<std::size_t> done) {
        if (!done) {
          ++store_failures;  // logged by the store; counted for the exit status
        }
      });
    }
    if (progress.enabled) {
      progress.update();
    }
  };

  asio::io_context io;
  std::vector<metrics::CollectResult> results;
  asio::co_spawn(io, sweep(std::move(servers), *config, std::move(options)),
                 [&results](std::exception_ptr failure, std::vector<metrics::CollectResult> value) {
                   if (failure) {
                     std::rethrow_exception(failure);
                   }
                   results = std::move(value);
                 });
  io.run();
  if (!args.no_store) {
    store->prune_async(*retention);  // samples older than the retention go
  }
  store->flush();
  if (progress.enabled) {
    std::cerr << "\r\033[K" << std::flush;
  }

  std::size_t failed = 0;
  std::size_t partial = 0;
  auto doc = nlohmann::json::array();
  for (const auto& result : results) {
    const double ms = static_cast<double>(result.elapsed.count()) / 1000.0;
    if (!result.sample) {
      ++failed;
      if (args.json) {
        doc.push_back({{"server", result.server_id},
                       {"ok", false},
                       {"elapsed_ms", ms},
                       {"error",
                        {{"category", result.sample.error().code.category().name()},
                         {"message", result.sample.error().message()}}}});
      } else {
        std::cout << fmt::format("{:<16} FAILED  {}\n", result.server_id,
                                 result.sample.error().message());
      }
      continue;
    }
    const auto& sample = *result.sample;
    if (!sample.failures.empty()) {
      ++partial;
    }
    const auto metric_list = metrics::to_metrics(sample);
    const auto rate = rates.find(result.server_id);
    const std::optional<metrics::Rates> server_rates =
        rate == rates.end() ? std::nullopt : std::optional<metrics::Rates>(rate->second);
    if (args.json) {
      nlohmann::json entry{{"server", result.server_id},
                           {"ok", true},
                           {"elapsed_ms", ms},
                           {"collected_at", unix_ms(result.collected_at)}};
      entry["metrics"] = nlohmann::json::array();
      for (const auto& metric : metric_list) {
        nlohmann::json labels = nlohmann::json::object();
        for (const auto& [key, value] : metric.labels) {
          labels[key] = value;
        }
        entry["metrics"].push_back(
            {{"name", metric.name}, {"labels", labels}, {"value", metric.value}});
      }
      entry["rates"] = nlohmann::json::array();
      if (server_rates) {
        for (const auto& metric : metrics::to_metrics(*server_rates)) {
          nlohmann::json labels = nlohmann::json::object();
          for (const auto& [key, value] : metric.labels) {
            labels[key] = value;
          }
          entry["rates"].push_back(
              {{"name", metric.name}, {"labels", labels}, {"value", metric.value}});
        }
      }
      entry["failed_sections"] = nlohmann::json::array();
      for (const auto& failure : sample.failures) {
        entry["failed_sections"].push_back(
            {{"section", failure.section}, {"message", failure.error.message()}});
      }
      doc.push_back(std::move(entry));
      continue;
    }
    std::cout << fmt::format("{:<16} OK      {} series in {:.0f} ms: {}\n", result.server_id,
                             metric_list.size(), ms, headline(sample, server_rates));
    for (const auto& failure : sample.failures) {
      std::cout << fmt::format("{:<16}         section {} failed: {}\n", "", failure.section,
                               failure.error.message());
    }
  }
  if (args.json) {
    std::cout << doc.dump(2) << '\n';
  } else {
    std::cout.flush();
    std::cerr << fmt::format("{} server(s): {} collected ({} partial), {} failed; {} values {}\n",
                             results.size(), results.size() - failed, partial, failed,
                             args.no_store ? 0 : stored, args.no_store ? "(not stored)" : "stored");
  }
  if (store_failures > 0) {
    std::cerr << fmt::format("healer: {} server(s)' samples could not be stored (see the log)\n",
                             store_failures);
  }
  return failed > 0 || partial > 0 || store_failures > 0 ? 1 : 0;
}

int run_show(const MetricsArgs& args) {
  const auto since = parse_duration_ms(args.since);
  if (!since) {
    return usage(fmt::format("--since '{}' is not a duration like 90s, 15m, 2h or 7d", args.since));
  }
  auto store = open_store(args.store);
  if (!store) {
    return fail(store.error());
  }
  auto record = store->get_server_by_name(args.server);
  if (!record) {
    return record.error().code == store::Errc::not_found
               ? usage(fmt::format("no server named '{}'", args.server))
               : fail(record.error());
  }
  auto samples = store->samples_since(record->id, store::now_unix_ms() - *since, args.name);
  if (!samples) {
    return fail(samples.error());
  }
  if (args.json) {
    auto doc = nlohmann::json::array();
    for (const auto& sample : *samples) {
      doc.push_back({{"collected_at", sample.collected_at},
                     {"name", sample.name},
                     {"labels", sample.labels},
                     {"value", sample.value}});
    }
    std::cout << doc.dump(2) << '\n';
    return 0;
  }
  if (samples->empty()) {
    std::cerr << fmt::format("no samples of {} in the last {} (healer metrics collect {})\n",
                             args.server, args.since, args.server);
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
  std::cout << fmt::format("{}: {} collection(s) in the last {}; the latest, {} s ago:\n",
                           args.server, collections, args.since, age_s);
  for (const auto& sample : *samples) {
    if (sample.collected_at == latest) {
      std::cout << fmt::format("{}{}{}{} {}\n", sample.name, sample.labels.empty() ? "" : "{",
                               sample.labels, sample.labels.empty() ? "" : "}", sample.value);
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
  collect->add_option("--timeout", a.timeout_s, "Seconds per server")->check(CLI::PositiveNumber);
  collect->add_option("--parallel", a.parallel, "Servers collected at once")
      ->check(CLI::Range(1, 10000));
  add_store_options(*collect, a.store);
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
