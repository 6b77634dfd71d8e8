#include "healer/daemon/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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

std::shared_ptr<const NodeExposition> exposition_of(const std::vector<NodeSeries>& series,
                                                    SeriesFamilies* families,
                                                    SeriesLayouts* layouts);

CollectionSummary summarise(std::int64_t collected_at, double elapsed_ms,
                            std::optional<Error> error, const std::vector<metrics::Metric>& metrics,
                            const std::vector<metrics::Metric>& rates,
                            const std::vector<NodeSeries>& series, SeriesFamilies* families,
                            SeriesLayouts* layouts) {
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
  summary.exposition = exposition_of(series, families, layouts);
  return summary;
}

// The series grouped by name (sorted; within a name in their order): families and values.
std::shared_ptr<const NodeExposition> exposition_of(const std::vector<NodeSeries>& series,
                                                    SeriesFamilies* families,
                                                    SeriesLayouts* layouts) {
  if (series.empty()) {
    return nullptr;
  }
  std::vector<std::size_t> order(series.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return series[a].name < series[b].name; });
  auto exposition = std::make_shared<NodeExposition>();
  exposition->values.reserve(series.size());  // kept per server: no spare capacity
  std::size_t names = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    names += i == 0 || series[order[i]].name != series[order[i - 1]].name ? 1U : 0U;
  }
  SeriesLayout layout;
  layout.families.reserve(names);
  SeriesFamily family;
  auto finish = [&] {
    const auto first = static_cast<std::uint32_t>(exposition->values.size() - family.series());
    layout.families.push_back(SeriesLayout::Family{
        families != nullptr ? families->intern(std::move(family))
                            : std::make_shared<const SeriesFamily>(std::move(family)),
        first});
    family = SeriesFamily{};
  };
  for (const std::size_t i : order) {
    const auto& one = series[i];
    if (family.name != one.name) {
      if (!family.name.empty()) {
        finish();
      }
      family.name = one.name;
    }
    // labels[0] is the server's own: the tail is what follows it.
    for (std::size_t l = 1; l < one.labels.size(); ++l) {
      family.tails += ',';
      family.tails += one.labels[l].first;
      family.tails += "=\"";
      family.tails += escape_label(one.labels[l].second);
      family.tails += '"';
    }
    family.tails += '}';
    family.tail_ends.push_back(static_cast<std::uint32_t>(family.tails.size()));
    exposition->values.push_back(one.value);
  }
  finish();
  layout.values = exposition->values.size();
  exposition->layout = layouts != nullptr ? layouts->intern(std::move(layout), exposition->own)
                                          : std::make_shared<const SeriesLayout>(std::move(layout));
  return exposition;
}

// How many families of `layout` differ from `shared`'s (pointers), or `limit` as soon as that
// many do; SIZE_MAX when the shapes differ (a name or a series count).
std::size_t differences(const SeriesLayout& shared, const SeriesLayout& layout, std::size_t limit) {
  if (shared.families.size() != layout.families.size() || shared.values != layout.values) {
    return SIZE_MAX;
  }
  std::size_t count = 0;
  for (std::size_t f = 0; f < layout.families.size(); ++f) {
    const auto& a = *shared.families[f].family;
    const auto& b = *layout.families[f].family;
    if (&a == &b) {
      continue;
    }
    if (a.series() != b.series() || a.name != b.name) {
      return SIZE_MAX;
    }
    if (++count >= limit) {
      return count;
    }
  }
  return count;
}

}  // namespace

CollectionSummary summarise(const std::string& server, std::int64_t collected_at, double elapsed_ms,
                            std::optional<Error> error, const std::vector<metrics::Metric>& metrics,
                            const std::vector<metrics::Metric>& rates) {
  return summarise(collected_at, elapsed_ms, std::move(error), metrics, rates,
                   node_series(server, metrics, rates), nullptr, nullptr);
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
                                collected.metrics, collected.rates, *series, &families_, &layouts_);
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
  state->collection = summarise(collected_at, 0, std::nullopt, raw, rates,
                                node_series(name, raw, rates), &families_, &layouts_);
}

void append_number(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
  } else if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", value);
  }
}

std::string_view SeriesFamily::tail(std::size_t series) const noexcept {
  const std::size_t begin = series == 0 ? 0 : tail_ends[series - 1];
  return std::string_view(tails).substr(begin, tail_ends[series] - begin);
}

std::size_t SeriesFamily::hash() const noexcept {
  return std::hash<std::string_view>{}(name)*31 + std::hash<std::string_view>{}(tails);
}

std::size_t SeriesLayout::shape_hash() const noexcept {
  std::size_t hash = families.size();
  for (const auto& [family, first] : families) {
    hash = hash * 31 + std::hash<std::string_view>{}(family->name);
    hash = hash * 31 + family->series();
  }
  return hash;
}

const SeriesFamily& NodeExposition::family(std::size_t index) const noexcept {
  if (!own.empty()) {
    const auto it =
        std::lower_bound(own.begin(), own.end(), index,
                         [](const OwnFamily& entry, std::size_t at) { return entry.index < at; });
    if (it != own.end() && it->index == index) {
      return *it->family;
    }
  }
  return *layout->families[index].family;
}

void NodeExposition::append_family(std::string& out, std::string_view server_label,
                                   std::size_t index) const {
  const auto& shared = family(index);
  const std::size_t first = layout->families[index].first;
  for (std::size_t i = 0; i < shared.series(); ++i) {
    out += shared.name;
    out += '{';
    out += server_label;
    out += shared.tail(i);
    out += ' ';
    append_number(out, values[first + i]);
    out += '\n';
  }
}

std::size_t NodeExposition::text_size(std::size_t label_size) const noexcept {
  // per line: name, '{', label, tail, ' ', the number (at most ~24 bytes), '\n'
  std::size_t bytes = values.size() * (label_size + 27);
  for (const auto& [family, first] : layout->families) {
    bytes += family->tails.size() + family->name.size() * family->series();
  }
  for (const auto& [index, family] : own) {
    bytes = bytes + family->tails.size() - layout->families[index].family->tails.size();
  }
  return bytes;
}

std::shared_ptr<const SeriesFamily> SeriesFamilies::intern(SeriesFamily family) {
  const std::size_t hash = family.hash();
  auto [first, last] = by_hash_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    if (auto held = it->second.lock(); held && *held == family) {
      return held;
    }
  }
  if (by_hash_.size() >= sweep_at_) {
    std::erase_if(by_hash_, [](const auto& entry) { return entry.second.expired(); });
    sweep_at_ = std::max<std::size_t>(1024, 2 * by_hash_.size());
  }
  auto shared = std::make_shared<const SeriesFamily>(std::move(family));
  by_hash_.emplace(hash, shared);
  return shared;
}

std::size_t SeriesFamilies::size() const {
  return static_cast<std::size_t>(std::count_if(by_hash_.begin(), by_hash_.end(),
                                                [](const auto& e) { return !e.second.expired(); }));
}

std::shared_ptr<const SeriesLayout> SeriesLayouts::intern(
    SeriesLayout layout, std::vector<NodeExposition::OwnFamily>& own) {
  own.clear();
  const std::size_t hash = layout.shape_hash();
  // The closest of a few layouts of this shape: servers of one kind differ from each other only
  // in node_uname_info (their names), or in a few more families (disks named after the host).
  std::shared_ptr<const SeriesLayout> best;
  std::size_t best_count = kMaxOwnFamilies + 1;
  std::size_t candidates = 0;
  auto [first, last] = by_shape_.equal_range(hash);
  for (auto it = first; it != last && candidates < kMaxCandidates; ++it) {
    auto held = it->second.lock();
    if (!held) {
      continue;
    }
    ++candidates;
    const std::size_t count = differences(*held, layout, best_count);
    if (count < best_count) {
      best = std::move(held);
      best_count = count;
      if (count == 0) {
        break;
      }
    }
  }
  if (best) {
    own.reserve(best_count);  // kept per server: no spare capacity
    for (std::size_t f = 0; f < layout.families.size(); ++f) {
      if (layout.families[f].family != best->families[f].family) {
        own.push_back(NodeExposition::OwnFamily{static_cast<std::uint32_t>(f),
                                                std::move(layout.families[f].family)});
      }
    }
    return best;
  }
  if (by_shape_.size() >= sweep_at_) {
    std::erase_if(by_shape_, [](const auto& entry) { return entry.second.expired(); });
    sweep_at_ = std::max<std::size_t>(64, 2 * by_shape_.size());
  }
  auto shared = std::make_shared<const SeriesLayout>(std::move(layout));
  by_shape_.emplace(hash, shared);
  return shared;
}

std::size_t SeriesLayouts::size() const {
  return static_cast<std::size_t>(std::count_if(by_shape_.begin(), by_shape_.end(),
                                                [](const auto& e) { return !e.second.expired(); }));
}

}  // namespace healer::daemon
