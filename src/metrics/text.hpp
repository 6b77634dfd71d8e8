#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/core/text.hpp"
#include "healer/metrics/errors.hpp"

// Private text helpers of the metrics module.
namespace healer::metrics::text {

// Splitting and unsigned integers: the shared helpers (healer/core/text.hpp).
using healer::text::excerpt;
using healer::text::fields;
using healer::text::lines;
using healer::text::to_u64;
using healer::text::trim;

/// Whole-string non-negative finite number: no sign, no leading/trailing junk.
[[nodiscard]] std::optional<double> to_double(std::string_view s) noexcept;

/// An Error of this module.
[[nodiscard]] Error error(Errc code, std::string_view what, std::string_view excerpt_of = {});

}  // namespace healer::metrics::text
