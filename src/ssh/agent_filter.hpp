#pragma once

#include <string>
#include <thread>

#include "healer/core/result.hpp"

namespace healer::ssh::detail {

/// An in-process ssh-agent relay that shows libssh only one identity of the real agent.
///
/// libssh 0.10 has no IdentitiesOnly: ssh_userauth_agent offers every key the agent holds, and
/// each rejected key counts against MaxAuthTries and ban lists. The filter sits between libssh and
/// the agent on a socketpair: identity listings are cut down to the one allowed public key and
/// sign requests for other keys are refused. It serves on its own thread because libssh talks to
/// the agent with blocking calls; it lives only while one session authenticates.
class AgentFilter {
 public:
  AgentFilter() = default;
  AgentFilter(const AgentFilter&) = delete;
  AgentFilter& operator=(const AgentFilter&) = delete;
  ~AgentFilter();

  /// Connects to the agent at `agent_socket` and starts relaying. `allowed_key_base64` is the
  /// base64 public key blob (the middle field of a .pub line). Returns libssh's end of the
  /// socketpair; libssh owns and closes it (ssh_set_agent_socket).
  Result<int> start(const std::string& agent_socket, std::string allowed_key_base64);

  /// Stops relaying and joins the thread. Idempotent.
  void stop();

 private:
  void serve();

  std::string allowed_key_base64_;
  int agent_fd_ = -1;  // connection to the real agent
  int relay_fd_ = -1;  // our end of the socketpair
  std::thread thread_;
};

/// Base64 (RFC 4648, with padding) of `bytes`.
std::string base64_encode(std::string_view bytes);

}  // namespace healer::ssh::detail
