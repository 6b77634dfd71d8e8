#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace healer::ssh {

/// Where the time of one command went.
struct CommandTiming {
  std::chrono::microseconds queue{0};  ///< waiting for a slot (filled in by the pool)
  std::chrono::microseconds open{0};   ///< channel open round trip
  std::chrono::microseconds run{0};    ///< exec request until channel closed
};

/// The outcome of a remote command that ran. A non-zero exit is data, not an error.
struct CommandResult {
  std::optional<int> exit_status;  ///< set when the command exited normally
  std::string exit_signal;         ///< "TERM", "KILL"... when killed by a signal
  std::string out;                 ///< stdout, at most ExecOptions::max_output bytes
  std::string err;                 ///< stderr, at most ExecOptions::max_output bytes
  bool out_truncated = false;
  bool err_truncated = false;
  std::uint64_t out_bytes = 0;  ///< stdout bytes received, including dropped ones
  std::uint64_t err_bytes = 0;  ///< stderr bytes received, including dropped ones
  CommandTiming timing;
  std::string host_key_fingerprint;  ///< of the server the command ran on ("SHA256:...")
  bool session_reused = false;       ///< filled in by the executor
  bool on_spare_channel = false;     ///< ran on a channel opened ahead of time (no open round trip)

  /// Exit code as a shell would report it: status, or 128 + signal number, or 255 if unknown.
  [[nodiscard]] int shell_exit_code() const;
};

}  // namespace healer::ssh
