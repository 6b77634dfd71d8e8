#pragma once

#include <system_error>

#include "healer/core/error.hpp"

namespace healer::metrics {

/// Why a probe section, a whole probe or a rate computation gave no value.
enum class Errc {
  malformed = 1,       ///< the text does not have the expected shape
  missing_field,       ///< a required field or line is absent
  empty,               ///< no output at all
  section_missing,     ///< the probe output has no section of that name (old probe, killed)
  section_failed,      ///< the section's command exited non-zero (file unreadable, tool absent)
  section_incomplete,  ///< a section started but never ended (output truncated, probe killed)
  probe_failed,        ///< the probe as a whole did not run (no shell, killed, no section at all)
  rebooted,            ///< rates: the boot time changed between the two samples
  no_interval,         ///< rates: the second sample is not later than the first
};

/// The error category of metrics::Errc ("metrics").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Short stable name ("section_failed"), for JSON and logs.
[[nodiscard]] const char* errc_name(Errc e) noexcept;

}  // namespace healer::metrics

template <>
struct std::is_error_code_enum<healer::metrics::Errc> : std::true_type {};
