#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// Splitting and whole-string numbers for text read from servers (/proc files, command output):
// the one copy the procfs, metrics and checks parsers share. Views point into the input.
namespace healer::text {

/// `s` without leading and trailing ASCII whitespace (space, \t, \n, \r, \v, \f).
[[nodiscard]] std::string_view trim(std::string_view s) noexcept;
/// Lines without their '\n' (and a trailing '\r'); a final line without '\n' is kept.
[[nodiscard]] std::vector<std::string_view> lines(std::string_view s);
/// Whitespace-separated fields of one line.
[[nodiscard]] std::vector<std::string_view> fields(std::string_view line);
/// Whole-string unsigned decimal: no sign, no junk, no overflow.
[[nodiscard]] std::optional<std::uint64_t> to_u64(std::string_view s) noexcept;
/// Whole-string non-negative finite number ("12", "0.25", ".5", "1e3"): no sign, no junk.
[[nodiscard]] std::optional<double> to_unsigned_double(std::string_view s) noexcept;

/// `s` trimmed, on one line of at most `max_chars` ("..." after), control characters as spaces:
/// for quoting server output in an error's detail.
[[nodiscard]] std::string excerpt(std::string_view s, std::size_t max_chars = 120);

}  // namespace healer::text
