#pragma once

#include "healer/core/error.hpp"

namespace healer::cli {

/// Exit codes of healer when a command could not run to completion. A remote command that ran
/// exits with its own status (or 128 + signal number), like ssh; `diagnose` with the Nagios
/// codes 0-3; a command interrupted by SIGINT / SIGTERM with 130 / 143.
enum ExitCode : int {
  kExitUsage = 2,              ///< bad flags, input or configuration
  kExitHealStale = 75,         ///< `heal apply`: the plan is stale (EX_TEMPFAIL): plan again
  kExitPrivilegeMissing = 77,  ///< `heal apply`: sudo refused an action (EX_NOPERM)
  kExitTimeout = 124,          ///< the command (or connect) hit its deadline, as timeout(1)
  kExitStore = 239,            ///< inventory database or master key unusable (see the message)
  kExitConnectRefused = 240,   ///< nothing listening / connection refused
  kExitConnectTimeout = 241,   ///< no TCP connection or handshake in time
  kExitResolveFailed = 242,    ///< host name did not resolve
  kExitHostUnknown = 243,      ///< host key not in known_hosts (strict mode)
  kExitHostKeyChanged = 244,   ///< host key differs from known_hosts
  kExitAuthFailed = 245,       ///< server rejected the credentials
  kExitKeyInvalid = 246,       ///< local key missing, unreadable or wrong passphrase
  kExitChannelRefused = 247,   ///< server refused the channel (MaxSessions)
  kExitDisconnected = 248,     ///< connection lost
  kExitProtocol = 249,         ///< protocol or internal error
  kExitCancelled = 250,        ///< cancelled (the pool or daemon shut down)
  kExitPoolExhausted = 251,    ///< no connection slot before the deadline
  kExitCircuitOpen = 252,      ///< server blocked after an auth or host key failure
  kExitBackingOff = 253,       ///< server unreachable, waiting before the next attempt
};

/// The exit code for an error.
int exit_code_for(const Error& error);

}  // namespace healer::cli
