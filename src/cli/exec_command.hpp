#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "command.hpp"
#include "common.hpp"
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
  std::size_t parallel = 64;
  std::string stdin_file;
  std::string commands_file;
  bool json = false;
  bool stats = false;
  bool no_daemon = false;
  service::Selection selection;      ///< inventory servers (fan-out)
  std::vector<std::string> words;    ///< before "--": server names, or with --host the command
  std::vector<std::string> command;  ///< after "--"; ":::" separates commands
  StoreArgs store;
  PoolOptionValues pool;
};

/// Registers `healer exec` on `app`. `after_dashdash` receives the words after "--" (the command)
/// before the command runs.
Command add_exec_command(CLI::App& app, const std::vector<std::string>* after_dashdash);

}  // namespace healer::cli
