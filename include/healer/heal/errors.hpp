#pragma once

#include <string>
#include <string_view>
#include <system_error>

#include "healer/core/error.hpp"

namespace healer::heal {

/// Why healing refused input before anything ran.
enum class Errc {
  invalid_parameter = 1,  ///< a parameter fails its validator (or is missing / unknown)
  unknown_action,         ///< no action in the catalog by that id
  invalid_plan,           ///< a plan document is malformed or its hash does not match its content
  invalid_config,         ///< the [heal] table of the config file is wrong
};

/// The error category of heal::Errc ("heal").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// An Error of the heal category.
[[nodiscard]] Error make_error(Errc code, std::string detail);

/// "invalid_parameter", "unknown_action", "invalid_plan", "invalid_config".
[[nodiscard]] std::string_view errc_name(Errc e) noexcept;

}  // namespace healer::heal

template <>
struct std::is_error_code_enum<healer::heal::Errc> : std::true_type {};
