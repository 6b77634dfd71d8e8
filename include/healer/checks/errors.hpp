#pragma once

#include <system_error>

#include "healer/core/error.hpp"

namespace healer::checks {

/// Why a record parser could not read a command's output.
enum class Errc {
  malformed = 1,  ///< the text does not have the expected shape
  missing_field,  ///< a required field or line is absent
  empty,          ///< no output at all
};

/// The error category of checks::Errc ("checks").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace healer::checks

template <>
struct std::is_error_code_enum<healer::checks::Errc> : std::true_type {};
