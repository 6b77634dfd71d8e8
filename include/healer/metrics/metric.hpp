#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "healer/core/result.hpp"

namespace healer::metrics {

/// Label pairs of one metric (key, value); format_labels() sorts them.
using Labels = std::vector<std::pair<std::string, std::string>>;

/// One value of one time series, named like node_exporter names it
/// (`node_cpu_seconds_total{cpu="0",mode="idle"}`). Counters are raw totals, not rates.
struct Metric {
  std::string name;
  Labels labels;
  double value = 0.0;
};

/// `key="value",...` sorted by key (then value), with Prometheus escaping of `\`, `"` and newline
/// in values; empty for no labels. Stable: the same labels in any order give the same string,
/// which is what store::MetricSample::labels holds.
[[nodiscard]] std::string format_labels(Labels labels);

/// The inverse of format_labels(): `key="value",...` back into pairs (escapes undone).
/// Errc::malformed for text format_labels() cannot produce.
[[nodiscard]] Result<Labels> parse_labels(std::string_view text);

/// `name{labels}` (or `name` without labels): a series key for maps and messages.
[[nodiscard]] std::string series_key(const Metric& metric);

}  // namespace healer::metrics
