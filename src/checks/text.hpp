#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/text.hpp"

// Private text helpers of the checks module: splitting, numbers, one-line messages.
namespace healer::checks::text {

// Splitting and unsigned integers: the shared helpers (healer/core/text.hpp).
using healer::text::fields;
using healer::text::lines;
using healer::text::to_u64;
using healer::text::trim;
/// Whole-string signed numbers (to_double: fixed notation, no exponent), no junk.
[[nodiscard]] std::optional<std::int64_t> to_i64(std::string_view s) noexcept;
[[nodiscard]] std::optional<double> to_double(std::string_view s) noexcept;

/// Case-insensitive ASCII substring test.
[[nodiscard]] bool icontains(std::string_view haystack, std::string_view needle) noexcept;

/// `s` as one line for a message: control characters become spaces, runs of spaces collapse,
/// '|' (the Nagios perfdata separator) becomes '/', cut at `max_chars` with "...".
[[nodiscard]] std::string one_line(std::string_view s, std::size_t max_chars = 300);

/// The first non-blank line of `s`, trimmed, as a view into `s` (for parsing).
[[nodiscard]] std::string_view first_line_view(std::string_view s) noexcept;

/// The first non-blank line of `s`, as one_line() (for messages).
[[nodiscard]] std::string first_line(std::string_view s, std::size_t max_chars = 160);

/// A number for perfdata and messages: no exponent, at most `decimals` decimals, trailing zeros
/// dropped ("85", "0.25", "9223372036854775807").
[[nodiscard]] std::string number(double value, int decimals = 3);

/// "87.2%" (one decimal).
[[nodiscard]] std::string percent(double value);

/// "512 B", "3.4 GiB".
[[nodiscard]] std::string bytes(double value);

/// "45 s", "12 min", "5 h 3 min", "3 d 4 h".
[[nodiscard]] std::string duration(double seconds);

/// The tag of a framing line "<marker> <tag>" (or "<marker>" alone: an empty tag); nullopt for
/// any other line, and for every line when `marker` is empty. `marker` is the run's random one
/// (CheckInput::marker): server output cannot print it, so it cannot forge a framing line.
[[nodiscard]] std::optional<std::string_view> marker_tag(std::string_view line,
                                                         std::string_view marker) noexcept;

/// One part of a command's stdout: the lines after a framing line, up to the next one.
struct Section {
  std::string_view tag;   ///< text after "<marker> " (empty for text before the first marker)
  std::string_view body;  ///< may be empty
};

/// Splits stdout at framing lines of `marker`. Text before the first one (if any) is a section
/// with an empty tag.
[[nodiscard]] std::vector<Section> sections(std::string_view out, std::string_view marker);

/// The first section whose tag's first word is `word`.
[[nodiscard]] const Section* find_section(const std::vector<Section>& all, std::string_view word);

/// Joins up to `max_items` items with ", ", then "and N more".
[[nodiscard]] std::string join_limited(const std::vector<std::string>& items,
                                       std::size_t max_items);

}  // namespace healer::checks::text
