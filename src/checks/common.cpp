#include "common.hpp"

#include <fmt/format.h>

#include <cmath>

#include "text.hpp"

namespace healer::checks::detail {

CheckResult make(std::string_view name, Status status, std::string_view message,
                 std::vector<Perfdata> perfdata) {
  return CheckResult{std::string(name), status, text::one_line(message), std::move(perfdata)};
}

CheckResult unknown(std::string_view name, std::string_view reason) {
  return make(name, Status::unknown, reason);
}

std::string exit_note(const CheckInput& input) {
  const std::string err = text::first_line(input.err);
  if (input.exit_status && *input.exit_status != 0) {
    return err.empty() ? fmt::format(" (exit {})", *input.exit_status)
                       : fmt::format(" (exit {}: {})", *input.exit_status, err);
  }
  return err.empty() ? std::string{} : fmt::format(" (stderr: {})", err);
}

std::optional<CheckResult> cannot_run(std::string_view name, const CheckInput& input) {
  if (input.out_truncated) {
    return unknown(name, "output truncated at the output cap; not judged");
  }
  // Only a framing line of this run's marker says so: a mount source, process name or log line
  // that reads "... unavailable" is data, whatever it looks like.
  static constexpr std::string_view kUnavailable = "unavailable";
  for (const auto line : text::lines(input.out)) {
    const auto tag = text::marker_tag(line, input.marker);
    if (tag && (*tag == kUnavailable || tag->starts_with("unavailable "))) {
      const auto reason = text::trim(tag->substr(kUnavailable.size()));
      return unknown(name, reason.empty() ? "check not available on this server" : reason);
    }
  }
  if (!input.exit_status) {
    return unknown(name, "command killed by a signal" + exit_note(input));
  }
  switch (*input.exit_status) {
    case 124:
      return unknown(name, "timed out on the server" + exit_note(input));
    case 126:
      return unknown(name, "command cannot be executed" + exit_note(input));
    case 127:
      return unknown(name, "command not found" + exit_note(input));
    default:
      return std::nullopt;
  }
}

CheckResult parse_failure(std::string_view name, std::string_view what, const Error& error,
                          const CheckInput& input) {
  return unknown(name, fmt::format("cannot parse {}: {}{}", what, error.detail, exit_note(input)));
}

Perfdata perf(std::string label, double value, std::string unit, const Thresholds& levels,
              std::optional<double> min, std::optional<double> max) {
  Perfdata result;
  result.label = std::move(label);
  // Percentages to 0.01: more digits are noise in graphs and make the line long.
  result.value = unit == "%" ? std::round(value * 100.0) / 100.0 : value;
  result.unit = std::move(unit);
  result.warn = levels.warn;
  result.crit = levels.crit;
  result.min = min;
  result.max = max;
  result.lower_is_worse = levels.lower_is_worse;
  return result;
}

std::string levels_text(const Thresholds& levels, std::string_view unit) {
  const std::string_view op = levels.lower_is_worse ? "<= " : "";
  std::string result;
  if (levels.warn) {
    result += fmt::format("W {}{}{}", op, text::number(*levels.warn, 2), unit);
  }
  if (levels.crit) {
    result += fmt::format("{}C {}{}{}", result.empty() ? "" : ", ", op,
                          text::number(*levels.crit, 2), unit);
  }
  return result.empty() ? "no levels" : result;
}

std::string_view mark(Status status) noexcept {
  switch (status) {
    case Status::warning:
      return " (!)";
    case Status::critical:
      return " (!!)";
    default:
      return "";
  }
}

}  // namespace healer::checks::detail
