#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/ssh/command_result.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/ssh/options.hpp"

namespace healer::ssh {

/// Counters of one session, cheap to read at any time.
struct SessionStats {
  std::uint64_t channels_opened = 0;
  std::uint64_t channels_refused = 0;
  std::uint64_t commands_timed_out = 0;
  std::uint64_t keepalives_sent = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
};

/// One authenticated SSH connection that carries many concurrent command channels.
///
/// All members must be called on the executor the session was connected on (one io_context
/// thread owns the session; there are no locks). Move-only; destroying a Session aborts it
/// (prefer async_close). Operations in flight hold the connection alive until they complete.
class Session {
 public:
  class Impl;

  /// TCP connect, key exchange, host key verification against known_hosts, then authentication,
  /// all by `deadline`. A changed host key fails before any credential is sent.
  static asio::awaitable<Result<Session>> async_connect(Endpoint endpoint, ConnectOptions options,
                                                        Deadline deadline);

  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  /// Opens a channel, runs `command`, sends stdin, collects output until the channel closes.
  /// At the deadline the remote process is signalled (TERM, then KILL) and Errc::timeout returned.
  /// Many calls may be in flight at once on one session.
  asio::awaitable<Result<CommandResult>> async_exec(std::string command, ExecOptions options,
                                                    Deadline deadline);

  /// Round trip to the server (a keepalive request; any answer counts), to check a session that
  /// sat idle before reusing it. Fails with Errc::timeout at the deadline or the session's error.
  asio::awaitable<Result<void>> async_ping(Deadline deadline);

  /// Polite close: disconnect message, then the socket. Fails waiters with Errc::cancelled.
  asio::awaitable<void> async_close(Deadline deadline);

  /// False once the connection died or was closed.
  [[nodiscard]] bool alive() const noexcept;
  /// Why the session died (default-constructed Error while alive).
  [[nodiscard]] const Error& failure() const noexcept;
  /// Channels open or opening right now (including timed-out ones being reaped).
  [[nodiscard]] std::size_t active_channels() const noexcept;
  /// Channels the server confirmed and that are not closed yet: after a refusal, exactly what
  /// the server's MaxSessions allowed.
  [[nodiscard]] std::size_t open_channels() const noexcept;
  /// The server's host key fingerprint as OpenSSH prints it ("SHA256:...").
  [[nodiscard]] const std::string& host_key_fingerprint() const noexcept;
  /// "host:port" of the peer.
  [[nodiscard]] const std::string& peer() const noexcept;
  /// Process-unique id of this connection, for "[server #conn]" log lines.
  [[nodiscard]] std::uint64_t id() const noexcept;
  [[nodiscard]] SessionStats stats() const noexcept;
  /// Executor the session runs on.
  [[nodiscard]] asio::any_io_executor executor() const noexcept;

 private:
  explicit Session(std::shared_ptr<Impl> impl) noexcept;
  std::shared_ptr<Impl> impl_;
};

}  // namespace healer::ssh
