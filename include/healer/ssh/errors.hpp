#pragma once

#include <system_error>

#include "healer/core/error.hpp"

namespace healer::ssh {

/// Why an SSH operation failed. Each value decides retry, discard and CLI exit code.
enum class Errc {
  connect_refused = 1,  ///< TCP connection refused (nothing listening, firewall reject)
  connect_timeout,      ///< no TCP connection or no SSH handshake by the deadline
  resolve_failed,       ///< host name did not resolve
  host_unknown,         ///< host key not in known_hosts and policy is strict
  host_key_changed,     ///< host key differs from known_hosts: possible MITM, never retried
  auth_failed,          ///< server rejected the credentials
  key_invalid,          ///< local key file missing, unreadable, or wrong passphrase
  channel_refused,      ///< server refused a new channel (MaxSessions); session still usable
  timeout,              ///< the operation's deadline passed
  disconnected,         ///< the connection died (peer closed, keepalive missed, reset)
  protocol,             ///< unexpected protocol or library failure
  cancelled,    ///< cancelled locally: the caller cancelled the operation, or the session (pool)
                ///< was closed while it waited or ran
  not_started,  ///< the connection failed before the command started: safe to retry
};

/// The error category of ssh::Errc ("ssh").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// True when the session an error came from must not be reused.
[[nodiscard]] bool poisons_session(const Error& error) noexcept;

/// Short stable name of an error ("auth_failed"), for JSON and logs.
[[nodiscard]] const char* errc_name(Errc e) noexcept;

}  // namespace healer::ssh

template <>
struct std::is_error_code_enum<healer::ssh::Errc> : std::true_type {};
