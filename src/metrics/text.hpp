#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/metrics/errors.hpp"

// Private text helpers of the metrics module.
namespace healer::metrics::text {

[[nodiscard]] std::string_view trim(std::string_view s) noexcept;

/// Lines without their '\n' (and a trailing '\r'); a final line without '\n' is kept.
[[nodiscard]] std::vector<std::string_view> lines(std::string_view s);

/// Whitespace-separated fields of one line.
[[nodiscard]] std::vector<std::string_view> fields(std::string_view line);

/// Whole-string numbers: no sign, no leading/trailing junk.
[[nodiscard]] std::optional<std::uint64_t> to_u64(std::string_view s) noexcept;
[[nodiscard]] std::optional<double> to_double(std::string_view s) noexcept;

/// `s` cut to one line of at most `max_chars` (control characters become spaces), for details.
[[nodiscard]] std::string excerpt(std::string_view s, std::size_t max_chars = 120);

/// An Error of this module.
[[nodiscard]] Error error(Errc code, std::string_view what, std::string_view excerpt_of = {});

}  // namespace healer::metrics::text
