#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "healer/core/error.hpp"
#include "healer/core/result.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/runtime.hpp"
#include "healer/service/targets.hpp"
#include "healer/ssh/command_result.hpp"

// "Run these commands on this host, or on these inventory servers": every server's commands
// concurrently over its pooled connection, servers in parallel, one result per command.
namespace healer::service {

/// What to run where. Exactly one of `host` and `selection` names the target. Not an aggregate
/// on purpose.
struct ExecRequest {
  ExecRequest() = default;

  std::optional<AdHocTarget> host;  ///< a host given on the command line
  Selection selection;              ///< inventory servers (fan-out)
  std::vector<std::string> commands;
  std::string stdin_data;  ///< sent to every command
  std::size_t max_output = std::size_t{1} << 20;
  std::chrono::milliseconds timeout{30000};  ///< the whole run: queueing, connecting, running
  std::size_t parallel = 64;                 ///< servers at once
  pool::Priority priority = pool::Priority::normal;
  bool with_stats = false;  ///< include the pool's stats
};

/// One server's results.
struct ExecServerResult {
  std::string server;  ///< inventory name, or "user@host:port" for a host
  std::string target;  ///< "user@host:port" as describe() writes it
  std::vector<Result<ssh::CommandResult>> results;  ///< one per command, in order
};

/// What an exec request produced. Not an aggregate on purpose.
struct ExecOutcome {
  ExecOutcome() = default;

  std::vector<ExecServerResult> servers;  ///< in request order
  std::optional<pool::PoolStats> stats;   ///< the servers' pools, summed (with_stats)
};

/// Runs the request through the runtime's pool. Bad input (no command, no target, both targets,
/// an unknown server, a password that is not there) is an error before anything runs; a server
/// that fails has errors in its results. On the runtime's loop.
asio::awaitable<Result<ExecOutcome>> async_exec(Runtime& runtime, ExecRequest request);

}  // namespace healer::service
