#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/checks/check.hpp"
#include "healer/core/error.hpp"

// Private building blocks shared by the check parsers.
namespace healer::checks::detail {

/// A result with a sanitised one-line message.
[[nodiscard]] CheckResult make(std::string_view name, Status status, std::string_view message,
                               std::vector<Perfdata> perfdata = {});

/// UNKNOWN with `reason`.
[[nodiscard]] CheckResult unknown(std::string_view name, std::string_view reason);

/// UNKNOWN when the command could not run or its output cannot be trusted: truncated output, a
/// "<marker> unavailable <reason>" line (CheckInput::marker), killed by a signal, exit 124 (remote
/// `timeout`), 126 (cannot execute) or 127 (not found). Otherwise nullopt: the parser judges the
/// output.
[[nodiscard]] std::optional<CheckResult> cannot_run(std::string_view name, const CheckInput& input);

/// " (exit 2: <first stderr line>)", " (stderr: ...)" or "": appended to UNKNOWN reasons.
[[nodiscard]] std::string exit_note(const CheckInput& input);

/// UNKNOWN "cannot parse <what>: <error detail>" + exit_note.
[[nodiscard]] CheckResult parse_failure(std::string_view name, std::string_view what,
                                        const Error& error, const CheckInput& input);

/// A perfdata value carrying `levels` as warn/crit.
[[nodiscard]] Perfdata perf(std::string label, double value, std::string unit,
                            const Thresholds& levels, std::optional<double> min = std::nullopt,
                            std::optional<double> max = std::nullopt);

/// "W 85%, C 95%", "W <= 10%, C <= 5%", "C >= 1" — the levels, for messages.
[[nodiscard]] std::string levels_text(const Thresholds& levels, std::string_view unit);

/// "", " (!)" or " (!!)" after a value that reached WARNING or CRITICAL.
[[nodiscard]] std::string_view mark(Status status) noexcept;

}  // namespace healer::checks::detail
