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
class Executor {
 public:
  explicit Executor(pool::Registry& registry) : registry_(registry) {}

  /// Runs `command` on a pooled channel of `server_id`. A channel refused by the server lowers
  /// the server's channel limit and the command waits for another slot; a command whose session
  /// died before it started is retried once on another session.
  asio::awaitable<Result<ssh::CommandResult>> async_run(std::string server_id, std::string command,
                                                        RunOptions options);

  /// Runs `commands` concurrently on pooled channels of `server_id`; results in input order.
  asio::awaitable<std::vector<Result<ssh::CommandResult>>> async_run_all(
      std::string server_id, std::vector<std::string> commands, RunOptions options);

  [[nodiscard]] pool::Registry& registry() const noexcept { return registry_; }

 private:
  pool::Registry& registry_;
};

}  // namespace healer::exec
