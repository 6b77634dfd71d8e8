#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

namespace healer::service {

/// What `healer serve` was asked on its command line. Not an aggregate on purpose.
struct ServeOptions {
  ServeOptions() = default;

  std::optional<std::filesystem::path> config_file;  ///< --config
  std::map<std::string, std::string> pool_flags;     ///< pool flags as typed
  std::optional<std::filesystem::path> db;           ///< --db
  std::optional<std::string> listen;                 ///< --listen ADDR:PORT
  bool check_config = false;                         ///< validate and exit
  bool print_token = false;                          ///< print the API token and exit
  std::string log_level = "info";
};

/// Runs the daemon until SIGTERM/SIGINT; returns the process exit code. The CLI gets it from
/// main (the daemon module is above the CLI's reach in the dependency rule).
using ServeEntry = std::function<int(const ServeOptions&)>;

}  // namespace healer::service
