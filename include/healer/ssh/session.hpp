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
  std::uint64_t commands_cancelled = 0;  ///< through the caller's cancellation slot
  std::uint64_t keepalives_sent = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t spares_opened =
      0;                          ///< spare channels the server confirmed (see open_spare_channel)
  std::uint64_t spares_used = 0;  ///< commands that ran on a spare: no channel-open round trip
  std::uint64_t spares_dropped = 0;  ///< spares lost before use: refused, failed, closed remotely
  std::uint64_t spares_refused = 0;  ///< of those, refused by the server (MaxSessions)
};

/// How far a connection attempt got: the phase Session::async_attempt stopped in.
enum class ConnectPhase {
  setup,      ///< loading the identity; nothing sent yet
  tcp,        ///< name resolution and TCP connect
  handshake,  ///< banner and key exchange; no credential sent yet
  host_key,   ///< host key check against known_hosts (local); no credential sent yet
  auth,       ///< authentication: a credential may have reached the server
  ready,      ///< connected and authenticated
};

/// Short stable name of a phase ("handshake"), for logs and JSON.
[[nodiscard]] const char* phase_name(ConnectPhase phase) noexcept;

struct ConnectAttempt;

/// One authenticated SSH connection that carries many concurrent command channels.
///
/// All members must be called on the executor the session was connected on (one io_context
/// thread owns the session; there are no locks). Move-only; destroying a Session aborts it
/// (prefer async_close). Operations in flight hold the connection alive until they complete.
///
/// Cancellation: async_attempt, async_connect, async_exec and async_ping honour the per-operation
/// cancellation slot of the coroutine that awaits them (asio::bind_cancellation_slot on co_spawn,
/// or awaitable operators), for terminal cancellation (Asio's default filter). A cancelled
/// operation returns Errc::cancelled; a cancelled command is handled like a timed-out one (remote
/// TERM, then KILL after ExecOptions::kill_grace, then the channel is closed); a cancelled
/// connection attempt closes its socket. Channel open and exec requests already sent are awaited
/// (one round trip) before the cancellation takes effect, so the server never keeps a channel the
/// client forgot.
class Session {
 public:
  class Impl;

  /// TCP connect, key exchange, host key verification against known_hosts, then authentication,
  /// all by `deadline`. A changed host key fails before any credential is sent.
  static asio::awaitable<Result<Session>> async_connect(Endpoint endpoint, ConnectOptions options,
                                                        Deadline deadline);

  /// async_connect that also says which phase a failure happened in: what a caller needs to
  /// retry a connection the server dropped before any credential was sent (see
  /// ConnectAttempt::dropped_before_auth), and never one that reached authentication.
  static asio::awaitable<ConnectAttempt> async_attempt(Endpoint endpoint, ConnectOptions options,
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

  /// Polite close. No new command starts; running ones may finish until `deadline`. Commands
  /// still running then are signalled (TERM, then KILL after their ExecOptions::kill_grace; for
  /// root logins the processes marked with the run's random HEALER_RUN value are killed from a
  /// second channel) and their callers get Errc::cancelled; then the disconnect message is sent and
  /// the socket closed. Takes at most `deadline` plus about 2 x the longest kill grace + 5 s.
  asio::awaitable<void> async_close(Deadline deadline);

  /// False once the connection died or was closed.
  [[nodiscard]] bool alive() const noexcept;
  /// Why the session died (default-constructed Error while alive).
  [[nodiscard]] const Error& failure() const noexcept;
  /// Opens a channel ahead of time, in the background (a spare): the next async_exec takes it
  /// and skips the channel-open round trip. It counts in active_channels() and spare_channels()
  /// at once, and on the server against MaxSessions. A spare that is refused, fails or is closed
  /// by the server is dropped silently (stats().spares_dropped); a command that finds only a spare
  /// still opening takes it over (its open was sent first, so it is answered first), and one that
  /// finds a dead spare opens a channel of its own. Does nothing unless the session is ready.
  void open_spare_channel();
  /// Spares opening or open that no command has taken and that are not reserved.
  [[nodiscard]] std::size_t spare_channels() const noexcept;
  /// Spares the server confirmed, reserved or not.
  [[nodiscard]] std::size_t ready_spare_channels() const noexcept;
  /// Promises one unreserved spare to a command about to start, so that it no longer counts in
  /// spare_channels(); false when there is none. The next async_exec consumes a reservation.
  bool reserve_spare_channel() noexcept;
  /// Drops reservations beyond `at_most` (commands that were promised a spare but ended first).
  void limit_spare_reservations(std::size_t at_most) noexcept;
  /// Closes open unreserved spares, newest first, until at most `keep` unreserved ones are left
  /// (spares still opening are left for a later call); returns how many it closed.
  std::size_t close_spare_channels(std::size_t keep);
  /// Channels open or opening right now (including spares and timed-out ones being reaped).
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

/// The outcome of one connection attempt: the session, or the error and the phase it failed in.
/// Not an aggregate on purpose (see ssh/options.hpp).
struct ConnectAttempt {
  ConnectAttempt(Result<Session> connected, ConnectPhase reached);

  Result<Session> session;
  ConnectPhase phase;  ///< ConnectPhase::ready on success

  /// True when the server closed or reset the connection before any credential was sent (a
  /// MaxStartups drop, a reset during key exchange): the one failure that is safe to retry at
  /// once. Never true after an authentication attempt.
  [[nodiscard]] bool dropped_before_auth() const noexcept;
};

}  // namespace healer::ssh
