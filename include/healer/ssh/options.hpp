#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

namespace healer::ssh {

// The option structs below are passed by value into coroutines. They declare a constructor so that
// they are not aggregates: GCC 12 double-destroys an aggregate temporary built inside a co_await
// expression (`co_await f(Options{...})`), while it handles classes with constructors correctly.

/// Where to connect.
struct Endpoint {
  Endpoint() = default;
  Endpoint(std::string host_name, std::uint16_t port_number)
      : host(std::move(host_name)), port(port_number) {}

  std::string host;
  std::uint16_t port = 22;
};

/// What to do with a host key that known_hosts does not list. A changed key is always an error.
enum class HostKeyPolicy {
  strict,      ///< unknown host = error (default, like StrictHostKeyChecking=yes)
  accept_new,  ///< record an unknown host's key (trust on first use)
};

/// How to authenticate. Exactly one method is used per connection: no identity spraying.
enum class AuthMethod {
  key_file,  ///< private key file (ed25519, ECDSA, RSA with rsa-sha2-256/512)
  agent,     ///< ssh-agent; with identity_file set, only that key's public half is offered
  password,  ///< password authentication
  key_data,  ///< private key given as text in ConnectOptions::private_key; never touches disk
};

/// Connection settings of one session. Secrets (private_key, passphrase, password) are never
/// logged and never appear in error messages.
struct ConnectOptions {
  ConnectOptions() = default;

  std::string user;
  AuthMethod auth = AuthMethod::key_file;
  std::string identity_file;  ///< private key path (key_file) or public-key filter (agent)
  /// For AuthMethod::key_data: the whole private key file's text (OpenSSH "-----BEGIN OPENSSH
  /// PRIVATE KEY-----" or PEM), as read from the inventory; secret. Parsed in memory only, before
  /// connecting; the session's copy is wiped once parsed. Ignored by the other methods.
  std::string private_key;
  std::string passphrase;    ///< for encrypted private keys (key_file, key_data); secret
  std::string password;      ///< for AuthMethod::password; secret
  std::string agent_socket;  ///< empty: $SSH_AUTH_SOCK
  std::string known_hosts_file;
  HostKeyPolicy host_key_policy = HostKeyPolicy::strict;
  /// With HostKeyPolicy::accept_new: record an unknown host's key only when its SHA256
  /// fingerprint (as OpenSSH prints it, "SHA256:...") is this one, i.e. the key a person was
  /// shown and accepted; another key fails with Errc::host_key_changed before any credential is
  /// sent and nothing is recorded. Empty: any key is recorded (plain trust on first use).
  std::string accept_fingerprint;
  /// Called once the server's host key is known, before it is checked against known_hosts:
  /// its type ("ssh-ed25519") and SHA256 fingerprint. How a trust-on-first-use prompt learns
  /// which key it shows; may be empty. Runs on the session's executor; must not block.
  std::function<void(const std::string& key_type, const std::string& fingerprint)> on_host_key;
  /// Keepalive request interval; zero disables keepalive.
  std::chrono::milliseconds keepalive_interval{10000};
  /// Keepalives that may go unanswered before the session is declared dead.
  int keepalive_max_missed = 3;
  /// Read ~/.ssh/config and /etc/ssh/ssh_config (a user-visible choice, off by default).
  bool process_ssh_config = false;
};

/// Settings of one command execution.
struct ExecOptions {
  ExecOptions() = default;

  std::string stdin_data;  ///< sent to the command, then EOF
  /// Bytes kept per stream (stdout, stderr); the rest is read and counted but dropped.
  std::size_t max_output = std::size_t{1} << 20;
  /// After the deadline: time between SIGTERM and SIGKILL, then the channel is closed.
  std::chrono::milliseconds kill_grace{500};
};

}  // namespace healer::ssh
