#include "healer/daemon/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace healer::daemon {
namespace {

bool valid_metric_name(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) {
      return false;
    }
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  return valid_metric_name(name) && name.find(':') == std::string_view::npos &&
         !name.starts_with("__");
}

std::string number(double value) {
  if (std::isnan(value)) {
    return "NaN";
  }
  if (std::isinf(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }
  return fmt::format("{}", value);
}

const std::string* label_of(const metrics::Metric& metric, std::string_view key) {
  for (const auto& [name, value] : metric.labels) {
    if (name == key) {
      return &value;
    }
  }
  return nullptr;
}

}  // namespace

std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

ServerState* FleetState::find(std::string_view name) {
  const auto it = servers_.find(name);
  return it == servers_.end() ? nullptr : &it->second;
}

RunSummary summarise(const service::DiagnosedServer& diagnosed) {
  const auto& diagnosis = diagnosed.diagnosis;
  RunSummary summary;
  summary.run_id = diagnosed.run_id;
  summary.started_at =
      std::chrono::duration_cast<std::chrono::milliseconds>(diagnosis.started_at.time_since_epoch())
          .count();
  summary.duration_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(diagnosis.duration).count();
  summary.status = service::to_store(diagnosis.status);
  summary.checks = diagnosis.checks.size();
  summary.server_error = diagnosis.server_error;
  for (const auto& check : diagnosis.checks) {
    if (check.result.status != checks::Status::ok) {
      summary.failing.push_back(FailingCheck{
          check.result.name, service::to_store(check.result.status), check.result.message});
    }
  }
  return summary;
}

std::vector<NodeSeries> node_series(const std::string& server,
                                    const std::vector<metrics::Metric>& metrics,
                                    const std::vector<metrics::Metric>& rates) {
  std::vector<NodeSeries> out;
  out.reserve(metrics.size() + rates.size());
  for (const auto* list : {&metrics, &rates}) {
    for (const auto& metric : *list) {
      // Names and label names come from parsers of server output: anything Prometheus could
      // not read is left out rather than breaking the whole exposition.
      if (!valid_metric_name(metric.name)) {
        continue;
      }
      NodeSeries series{metric.name, {}, metric.value};
      series.labels.reserve(metric.labels.size() + 1);
      series.labels.emplace_back("server", server);
      bool valid = true;
      for (const auto& [key, value] : metric.labels) {
        if (!valid_label_name(key) || key == "server") {
          valid = false;
          break;
        }
        series.labels.emplace_back(key, value);
      }
      if (valid) {
        out.push_back(std::move(series));
      }
    }
  }
  return out;
}

namespace {

CollectionSummary summarise(std::int64_t collected_at, double elapsed_ms,
                            std::optional<Error> error, const std::vector<metrics::Metric>& metrics,
                            const std::vector<metrics::Metric>& rates,
                            const std::vector<NodeSeries>& series) {
  CollectionSummary summary;
  summary.collected_at = collected_at;
  summary.elapsed_ms = elapsed_ms;
  summary.error = std::move(error);
  summary.headline = service::headline(metrics, rates);
  double mem_total = 0;
  double mem_available = -1;
  double size = 0;
  double free_bytes = 0;
  double avail = 0;
  for (const auto* list : {&metrics, &rates}) {
    for (const auto& metric : *list) {
      if (metric.name == "node_load1") {
        summary.load1 = metric.value;
      } else if (metric.name == "node_memory_MemTotal_bytes") {
        mem_total = metric.value;
      } else if (metric.name == "node_memory_MemAvailable_bytes") {
        mem_available = metric.value;
      } else if (metric.name == "healer_cpu_busy_percent") {
        summary.cpu_busy_percent = metric.value;
      } else if (metric.name.starts_with("node_filesystem_")) {
        if (const auto* mount = label_of(metric, "mountpoint"); mount != nullptr && *mount == "/") {
          if (metric.name == "node_filesystem_size_bytes") {
            size = metric.value;
          } else if (metric.name == "node_filesystem_free_bytes") {
            free_bytes = metric.value;
          } else if (metric.name == "node_filesystem_avail_bytes") {
            avail = metric.value;
          }
        }
      }
    }
  }
  if (mem_total > 0 && mem_available >= 0) {
    summary.memory_used_percent = 100.0 * (mem_total - mem_available) / mem_total;
  }
  if (size > 0) {
    const double used = size - free_bytes;
    if (used + avail > 0) {
      summary.disk_used_percent = 100.0 * used / (used + avail);
    }
  }
  std::map<std::string, std::string> families;
  for (const auto& one : series) {
    std::string line = one.name + "{";
    for (std::size_t i = 0; i < one.labels.size(); ++i) {
      line += (i == 0 ? "" : ",") + one.labels[i].first + "=\"" +
              escape_label(one.labels[i].second) + "\"";
    }
    line += "} " + number(one.value) + "\n";
    families[one.name] += line;
  }
  auto exposition = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  exposition->reserve(families.size());
  for (auto& [name, lines] : families) {
    exposition->emplace_back(name, std::move(lines));
  }
  summary.exposition = std::move(exposition);
  return summary;
}

}  // namespace

CollectionSummary summarise(const std::string& server, std::int64_t collected_at, double elapsed_ms,
                            std::optional<Error> error, const std::vector<metrics::Metric>& metrics,
                            const std::vector<metrics::Metric>& rates) {
  return summarise(collected_at, elapsed_ms, std::move(error), metrics, rates,
                   node_series(server, metrics, rates));
}

void FleetState::record(const service::DiagnosedServer& diagnosed) {
  auto* state = find(diagnosed.diagnosis.server_id);
  if (state == nullptr) {
    return;
  }
  state->run = summarise(diagnosed);
  if (diagnosed.transition) {
    state->status_since = diagnosed.transition->at;
  }
  if (diagnosis_sink_) {
    diagnosis_sink_(*state, diagnosed);
  }
}

void FleetState::record(const service::CollectedServer& collected) {
  auto* state = find(collected.server);
  if (state == nullptr) {
    return;
  }
  if (!collected.ok() && state->collection) {
    // Keep the last good values (their time says how old they are); note the failure.
    state->collection->error = collected.error;
    return;
  }
  auto series = std::make_shared<const std::vector<NodeSeries>>(
      node_series(collected.server, collected.metrics, collected.rates));
  state->collection = summarise(collected.collected_at, collected.elapsed_ms, collected.error,
                                collected.metrics, collected.rates, *series);
  if (sink_ && !series->empty()) {
    sink_(collected.collected_at, std::move(series));
  }
}

void FleetState::seed(const store::DiagnosisRun& run, std::optional<std::int64_t> status_since) {
  for (auto& [name, state] : servers_) {
    if (state.record.id != run.server_id) {
      continue;
    }
    RunSummary summary;
    summary.run_id = run.id;
    summary.started_at = run.started_at;
    summary.duration_ms = run.finished_at - run.started_at;
    summary.status = run.status;
    summary.checks = run.checks.size();
    for (const auto& check : run.checks) {
      if (check.status != store::CheckStatus::ok) {
        summary.failing.push_back(FailingCheck{check.name, check.status, check.message});
      }
    }
    state.run = std::move(summary);
    state.status_since = status_since;
    return;
  }
}

void FleetState::seed(const std::string& name, std::int64_t collected_at,
                      const std::vector<metrics::Metric>& metrics) {
  auto* state = find(name);
  if (state == nullptr) {
    return;
  }
  std::vector<metrics::Metric> raw;
  std::vector<metrics::Metric> rates;
  for (const auto& metric : metrics) {
    (metric.name.starts_with("healer_") ? rates : raw).push_back(metric);
  }
  state->collection = summarise(name, collected_at, 0, std::nullopt, raw, rates);
}

}  // namespace healer::daemon
