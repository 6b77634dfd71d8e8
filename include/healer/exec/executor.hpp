#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/pool/pool.hpp"
#include "healer/ssh/command_result.hpp"

namespace healer::exec {

/// How to run one command. Not an aggregate on purpose (see ssh/options.hpp).
struct RunOptions {
  RunOptions() = default;

  Deadline deadline = Deadline::after(std::chrono::seconds(30));  ///< for queueing + running
  pool::Priority priority = pool::Priority::normal;
  std::size_t max_output = std::size_t{1} << 20;  ///< bytes kept per stream
  std::string stdin_data;
  std::chrono::milliseconds kill_grace{500};  ///< SIGTERM -> SIGKILL after a timeout
};

/// "Run this command on server X by this deadline": the one entry point the rest of the program
/// uses. Every call returns a result or a typed error by its deadline. Used on the registry's
/// executor.
///
/// Cancellation: every coroutine here honours the cancellation slot of the coroutine awaiting it
/// (terminal cancellation: asio::bind_cancellation_slot on co_spawn, awaitable operators), which
/// is how a closed HTTP request or a SIGINT/SIGTERM stops work. A call waiting for a slot leaves
/// the queue at once; a running command is handled like a timed-out one (remote SIGTERM, SIGKILL
/// after RunOptions::kill_grace, channel closed, slot returned, session drained). Either way the
/// result is ssh::Errc::cancelled; nothing throws. Cancel everything in flight, then
/// Registry::async_shutdown: every remote command is gone and every session politely closed.
class Executor {
 public:
  explicit Executor(pool::Registry& registry) : registry_(registry) {}

  /// Runs `command` on a pooled channel of `server_id`. A channel refused by the server lowers
  /// the server's channel limit and the command waits for another slot; a command whose session
  /// died before it started is retried once on another session.
  asio::awaitable<Result<ssh::CommandResult>> async_run(std::string server_id, std::string command,
                                                        RunOptions options);

  /// Runs `commands` concurrently on pooled channels of `server_id`; results in input order.
  /// Cancelling it cancels every command still queued or running (finished ones keep their
  /// results) and returns once all of them ended.
  asio::awaitable<std::vector<Result<ssh::CommandResult>>> async_run_all(
      std::string server_id, std::vector<std::string> commands, RunOptions options);

  /// Makes sure `server_id` has a live, authenticated connection and holds one channel slot on
  /// it for the caller until the lease is released (or destroyed): the connection is opened if
  /// needed, within the pool's limits, by the deadline. Callers about to send many commands use
  /// it to learn with one attempt that a server is unreachable (one failed login for a wrong
  /// key, one reason instead of N), and to keep a slot while they prepare work. Errors are those
  /// of pool::Registry::async_acquire.
  asio::awaitable<Result<pool::Lease>> async_reserve(std::string server_id, pool::Priority priority,
                                                     Deadline deadline);

  [[nodiscard]] pool::Registry& registry() const noexcept { return registry_; }

 private:
  asio::awaitable<Result<ssh::CommandResult>> run(std::string server_id, std::string command,
                                                  RunOptions options);
  asio::awaitable<std::vector<Result<ssh::CommandResult>>> run_all(
      std::string server_id, std::vector<std::string> commands, RunOptions options);

  pool::Registry& registry_;
};

}  // namespace healer::exec
