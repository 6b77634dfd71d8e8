#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "healer/metrics/metric.hpp"
#include "healer/metrics/probe.hpp"

// Shared by the libFuzzer targets: every target parses the input with one parser, then pushes
// whatever parsed through the code that consumes it (metrics, labels), so a parser that accepts
// something odd is exercised downstream too.
namespace healer::metrics::fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// Formats every metric of `sample` (what storing it would do).
inline void consume(const Sample& sample) {
  for (const auto& metric : to_metrics(sample)) {
    (void)series_key(metric);
  }
}

}  // namespace healer::metrics::fuzz
