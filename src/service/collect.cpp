#include "healer/service/collect.hpp"

#include <fmt/format.h>

#include <iterator>
#include <map>
#include <memory>
#include <set>

#include "healer/metrics/collector.hpp"
#include "healer/metrics/probe.hpp"
#include "healer/metrics/rates.hpp"
#include "healer/service/errors.hpp"

namespace healer::service {
namespace {

// How far back a collection is a useful base for rates (a 5-minute schedule keeps ~3 in it;
// older ones make poor rates anyway).
constexpr std::chrono::milliseconds kRateWindow{15 * 60 * 1000};

std::int64_t unix_ms(std::chrono::system_clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}

const std::string* label_of(const metrics::Metric& metric, std::string_view key) {
  for (const auto& [name, value] : metric.labels) {
    if (name == key) {
      return &value;
    }
  }
  return nullptr;
}

// What the sweep shares between the loop's callbacks and the store thread's completions.
struct Progress {
  std::size_t values_stored = 0;
  std::size_t store_failures = 0;
  std::size_t writes_pending = 0;
};

}  // namespace

std::string headline(const std::vector<metrics::Metric>& metrics,
                     const std::vector<metrics::Metric>& rates) {
  std::vector<std::string> parts;
  std::optional<double> busy;
  std::optional<double> iowait;
  for (const auto& rate : rates) {
    if (rate.name == "healer_cpu_busy_percent") {
      busy = rate.value;
    } else if (rate.name == "healer_cpu_mode_percent") {
      if (const auto* mode = label_of(rate, "mode"); mode != nullptr && *mode == "iowait") {
        iowait = rate.value;
      }
    }
  }
  if (busy) {
    parts.push_back(fmt::format("cpu {:.1f}% busy ({:.1f}% iowait)", *busy, iowait.value_or(0)));
  }
  std::optional<double> load1;
  std::optional<double> load5;
  std::optional<double> load15;
  std::set<std::string> cpus;
  double mem_total = 0;
  double mem_available = -1;
  double root_size = 0;
  double root_free = 0;
  double root_avail = 0;
  for (const auto& metric : metrics) {
    if (metric.name == "node_load1") {
      load1 = metric.value;
    } else if (metric.name == "node_load5") {
      load5 = metric.value;
    } else if (metric.name == "node_load15") {
      load15 = metric.value;
    } else if (metric.name == "node_cpu_seconds_total") {
      if (const auto* cpu = label_of(metric, "cpu")) {
        cpus.insert(*cpu);
      }
    } else if (metric.name == "node_memory_MemTotal_bytes") {
      mem_total = metric.value;
    } else if (metric.name == "node_memory_MemAvailable_bytes") {
      mem_available = metric.value;
    } else if (metric.name.starts_with("node_filesystem_")) {
      const auto* mount = label_of(metric, "mountpoint");
      if (mount == nullptr || *mount != "/") {
        continue;
      }
      if (metric.name == "node_filesystem_size_bytes") {
        root_size = metric.value;
      } else if (metric.name == "node_filesystem_free_bytes") {
        root_free = metric.value;
      } else if (metric.name == "node_filesystem_avail_bytes") {
        root_avail = metric.value;
      }
    }
  }
  if (load1 && load5 && load15) {
    parts.push_back(fmt::format("load {:.2f} {:.2f} {:.2f}", *load1, *load5, *load15));
  }
  if (!cpus.empty()) {
    parts.push_back(fmt::format("{} CPU", cpus.size()));
  }
  if (mem_total > 0 && mem_available >= 0) {
    parts.push_back(fmt::format("mem {:.0f}% available of {:.1f} GiB",
                                100.0 * mem_available / mem_total,
                                mem_total / (1024.0 * 1024 * 1024)));
  }
  if (root_size > 0) {
    const double used = root_size - root_free;
    if (used + root_avail > 0) {
      parts.push_back(fmt::format("/ {:.0f}% used", 100.0 * used / (used + root_avail)));
    }
  }
  std::string text;
  for (const auto& part : parts) {
    text += text.empty() ? part : ", " + part;
  }
  return text;
}

std::optional<PreviousCollection> stored_collection(store::Store& store, std::int64_t server_id,
                                                    std::chrono::milliseconds window) {
  auto samples = store.latest_samples(server_id, store::now_unix_ms() - window.count());
  if (!samples || samples->empty()) {
    return std::nullopt;
  }
  std::vector<metrics::Metric> collection;
  for (const auto& sample : *samples) {
    auto labels = metrics::parse_labels(sample.labels);
    if (labels) {
      collection.push_back(metrics::Metric{sample.name, std::move(*labels), sample.value});
    }
  }
  return PreviousCollection{std::chrono::system_clock::time_point(
                                std::chrono::milliseconds(samples->front().collected_at)),
                            metrics::counters_from_metrics(collection)};
}

asio::awaitable<Result<CollectOutcome>> async_collect(Runtime& runtime, CollectRequest request,
                                                      CollectCallback on_server) {
  if (request.timeout <= std::chrono::milliseconds::zero()) {
    co_return make_error(Errc::invalid_input, "the timeout must be positive");
  }
  if (!runtime.has_store()) {
    co_return make_error(Errc::unavailable, "collecting needs the inventory database");
  }
  // The servers, and (for those this process has not collected yet) their last stored
  // collection as the base for rates.
  struct Selected {
    std::vector<store::ServerRecord> records;
    std::map<std::string, PreviousCollection, std::less<>> previous;
  };
  std::set<std::string, std::less<>> known;
  const auto& remembered = runtime.previous_collections();
  if (request.selection.tags.empty() && !request.selection.all) {
    // Named servers (the daemon's scheduled one-server runs): only their names matter. Copying
    // every remembered name per collection made a 10,000-server cycle quadratic.
    for (const auto& name : request.selection.names) {
      if (remembered.contains(name)) {
        known.insert(name);
      }
    }
  } else {
    for (const auto& [name, previous] : remembered) {
      known.insert(name);
    }
  }
  // A named job: GCC 12 mis-builds a capturing lambda temporary inside co_await.
  auto job = [&runtime, selection = request.selection, known = std::move(known),
              want_stored = request.store_samples]() -> Result<Selected> {
    auto records = select_servers(runtime.store(), selection);
    if (!records) {
      return std::move(records).error();
    }
    Selected out;
    if (want_stored) {
      for (const auto& record : *records) {
        if (known.contains(record.name)) {
          continue;
        }
        if (auto found = stored_collection(runtime.store(), record.id, kRateWindow)) {
          out.previous.emplace(record.name, std::move(*found));
        }
      }
    }
    out.records = std::move(*records);
    return out;
  };
  auto selected = co_await runtime.async_offload(std::move(job));
  if (!selected) {
    co_return std::move(selected).error();
  }
  auto ids = register_servers(runtime, selected->records);
  if (!ids) {
    co_return std::move(ids).error();
  }
  auto& memory = runtime.previous_collections();
  for (auto& [name, previous] : selected->previous) {
    memory.try_emplace(name, std::move(previous));
  }
  std::map<std::string, std::int64_t, std::less<>> inventory_ids;
  for (const auto& record : selected->records) {
    inventory_ids.emplace(record.name, record.id);
  }

  auto progress = std::make_shared<Progress>();
  std::map<std::string, CollectedServer, std::less<>> finished;
  auto loop = runtime.io().get_executor();
  metrics::CollectOptions options;
  options.concurrency = request.parallel == 0 ? 1 : request.parallel;
  options.timeout = request.timeout;
  options.priority = request.priority;
  options.on_result = [&](const metrics::CollectResult& result) {
    CollectedServer server;
    server.server = result.server_id;
    server.server_id = inventory_ids[result.server_id];
    server.elapsed_ms = static_cast<double>(result.elapsed.count()) / 1000.0;
    server.collected_at = unix_ms(result.collected_at);
    if (!result.sample) {
      server.error = result.sample.error();
    } else {
      const auto& sample = *result.sample;
      server.metrics = metrics::to_metrics(sample);
      for (const auto& failure : sample.failures) {
        server.failed_sections.emplace_back(failure.section, failure.error.message());
      }
      if (auto before = memory.find(result.server_id); before != memory.end()) {
        auto computed = metrics::compute_rates(before->second.counters, before->second.at, sample,
                                               result.collected_at);
        if (computed) {
          server.rates = metrics::to_metrics(*computed);
        }
      }
      memory[result.server_id] =
          PreviousCollection{result.collected_at, metrics::rate_counters(sample)};
      server.headline = headline(server.metrics, server.rates);
      if (request.store_samples) {
        std::vector<store::MetricSample> rows;
        rows.reserve(server.metrics.size() + server.rates.size());
        for (const auto* list : {&server.metrics, &server.rates}) {
          for (const auto& metric : *list) {
            rows.push_back(store::MetricSample{server.server_id, server.collected_at, metric.name,
                                               metrics::format_labels(metric.labels),
                                               metric.value});
          }
        }
        const std::size_t count = rows.size();
        ++progress->writes_pending;
        // The completion runs on the store thread: hand it back to the loop.
        runtime.store().append_samples_async(
            std::move(rows), [progress, loop, count](Result<std::size_t> done) {
              asio::post(loop, [progress, count, ok = done.has_value()] {
                --progress->writes_pending;
                if (ok) {
                  progress->values_stored += count;
                } else {
                  ++progress->store_failures;  // logged by the store
                }
              });
            });
      }
    }
    if (on_server) {
      on_server(server, inventory_ids.size());
    }
    finished.emplace(server.server, std::move(server));
  };
  auto results = co_await metrics::async_collect(runtime.executor(), *ids, std::move(options));

  CollectOutcome outcome;
  outcome.servers.reserve(results.size());
  for (const auto& result : results) {
    auto found = finished.find(result.server_id);
    if (found != finished.end()) {
      outcome.servers.push_back(std::move(found->second));
    }
  }
  if (request.store_samples) {
    const auto retention = runtime.settings().retention;
    // Every write queued above is done when this job runs (the store thread keeps order).
    // A named job: GCC 12 mis-builds a capturing lambda temporary inside co_await.
    auto job2 = [&runtime, retention]() {
      runtime.store().prune_async(retention);
      runtime.store().flush();
      return 0;
    };
    co_await runtime.async_offload(std::move(job2));
    // ...and their completions were posted to the loop before this resumption.
    while (progress->writes_pending > 0) {
      co_await asio::post(loop, asio::use_awaitable);
    }
  }
  outcome.values_stored = progress->values_stored;
  outcome.store_failures = progress->store_failures;
  co_return outcome;
}

}  // namespace healer::service
