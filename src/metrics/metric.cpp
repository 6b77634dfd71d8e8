#include "healer/metrics/metric.hpp"

#include <algorithm>

namespace healer::metrics {

std::string format_labels(Labels labels) {
  std::sort(labels.begin(), labels.end());
  std::string text;
  for (const auto& [key, value] : labels) {
    if (!text.empty()) {
      text += ',';
    }
    text += key;
    text += "=\"";
    for (const char c : value) {
      switch (c) {
        case '\\':
          text += "\\\\";
          break;
        case '"':
          text += "\\\"";
          break;
        case '\n':
          text += "\\n";
          break;
        default:
          text += c;
      }
    }
    text += '"';
  }
  return text;
}

std::string series_key(const Metric& metric) {
  if (metric.labels.empty()) {
    return metric.name;
  }
  return metric.name + "{" + format_labels(metric.labels) + "}";
}

}  // namespace healer::metrics
