#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "command.hpp"
#include "pool_options.hpp"

namespace healer::cli {

/// Flags of `healer exec`.
struct ExecArgs {
  std::string host;
  std::uint16_t port = 22;
  std::string user;
  std::string auth = "key";  ///< key | agent | password
  std::string identity;
  std::string known_hosts;
  bool accept_new_host_key = false;
  double timeout_s = 30;
  std::size_t max_output = std::size_t{1} << 20;
  std::string stdin_file;
  std::string commands_file;
  bool json = false;
  bool stats = false;
  std::vector<std::string> command;  ///< words; ":::" separates commands
  PoolOptionValues pool;
};

/// Runs the commands on one host through the connection pool, concurrently over one connection,
/// and returns the process exit code.
int run_exec(const ExecArgs& args);

/// Registers `healer exec` on `app`.
Command add_exec_command(CLI::App& app);

}  // namespace healer::cli
