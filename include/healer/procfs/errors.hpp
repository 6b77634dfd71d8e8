#pragma once

#include <system_error>

#include "healer/core/error.hpp"

namespace healer::procfs {

/// Why a /proc file did not parse. The values match checks::Errc and metrics::Errc for the same
/// three cases, which both map these to.
enum class Errc {
  malformed = 1,  ///< the text does not have the file's shape
  missing_field,  ///< a required field or line is absent
  empty,          ///< no text at all
};

/// The error category of procfs::Errc ("procfs").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace healer::procfs

template <>
struct std::is_error_code_enum<healer::procfs::Errc> : std::true_type {};
