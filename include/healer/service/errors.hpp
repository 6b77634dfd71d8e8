#pragma once

#include <string>
#include <string_view>
#include <system_error>

#include "healer/core/error.hpp"

namespace healer::service {

/// Why a request to the service failed before or besides any remote work (the remote work's own
/// errors keep their ssh / pool codes).
enum class Errc {
  invalid_input = 1,  ///< a flag, field or value is malformed or out of range
  not_found,          ///< no server / application / run by that name or id
  conflict,           ///< the name exists already
  unauthorized,       ///< no or a wrong bearer token
  forbidden,          ///< the caller may not do this (e.g. a read beyond loopback without token)
  too_large,          ///< a request body, file or header is larger than allowed
  rate_limited,       ///< too many requests; retry later
  unavailable,        ///< shutting down, or a needed part (store) is not there
  cancelled,          ///< the caller went away or the process is stopping
  internal,           ///< a broken invariant; a bug
};

/// The error category of service::Errc ("service").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// An Error of the service category.
[[nodiscard]] Error make_error(Errc code, std::string detail);

/// What an error means to whoever asked, for every module's errors: the one mapping the CLI's
/// exit codes and the HTTP statuses are derived from.
enum class ErrorClass {
  bad_input,     ///< the request was wrong (exit 2, HTTP 400)
  not_found,     ///< (exit 2, HTTP 404)
  conflict,      ///< (exit 2, HTTP 409)
  unauthorized,  ///< (HTTP 401)
  forbidden,     ///< (HTTP 403)
  too_large,     ///< (exit 2, HTTP 413)
  rate_limited,  ///< (HTTP 429)
  store,         ///< the inventory database or master key is unusable (exit 239, HTTP 503)
  remote,        ///< the server could not be reached or the command failed to run (HTTP 502)
  timeout,       ///< a deadline passed (HTTP 504)
  unavailable,   ///< shutting down, pool exhausted, circuit open (HTTP 503)
  cancelled,     ///< (exit 130/143 or 250, HTTP 499-like: the client is gone)
  internal,      ///< a bug (HTTP 500)
};

/// The class of any healer error (ssh, pool, store, config, service, checks, metrics, errno).
[[nodiscard]] ErrorClass classify(const Error& error) noexcept;

/// The HTTP status for an error's class.
[[nodiscard]] int http_status(const Error& error) noexcept;

/// A short stable name for an error ("auth_failed", "not_found", "invalid_value"), for JSON
/// and logs; the same for an error whatever its way here (local call or control socket).
[[nodiscard]] std::string error_name(const Error& error);

/// The std::error_category of a healer module by its name ("ssh", "pool", "store", "config",
/// "service", "checks", "metrics", "generic"), or nullptr: how an error sent as JSON is rebuilt.
[[nodiscard]] const std::error_category* category_named(std::string_view name) noexcept;

}  // namespace healer::service

template <>
struct std::is_error_code_enum<healer::service::Errc> : std::true_type {};
