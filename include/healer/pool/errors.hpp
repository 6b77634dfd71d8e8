#pragma once

#include <system_error>

#include "healer/core/error.hpp"

namespace healer::pool {

/// Why the pool could not hand out a connection.
enum class Errc {
  pool_exhausted = 1,  ///< no free channel and no room to grow until the deadline
  circuit_open,        ///< recent auth or host-key failure: no attempt until backoff or new creds
  backing_off,         ///< recent connection failures: waiting before the next attempt
  unknown_server,      ///< server id not registered
  shutting_down,       ///< the pool is closing
};

/// The error category of pool::Errc ("pool").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Short stable name ("pool_exhausted"), for JSON and logs.
[[nodiscard]] const char* errc_name(Errc e) noexcept;

}  // namespace healer::pool

template <>
struct std::is_error_code_enum<healer::pool::Errc> : std::true_type {};
