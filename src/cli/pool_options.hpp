#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace healer::cli {

/// What the pool options on the command line said, before the environment and file are merged.
struct PoolOptionValues {
  /// --config FILE, when given.
  std::optional<std::filesystem::path> config_file;
  /// Flag name without dashes ("max-connections") -> value as typed; only the flags given.
  std::map<std::string, std::string> flags;
};

/// Registers --config and one option per pool setting (group "Pool") on `app`; parsing fills
/// `values`, which must outlive the parse.
void add_pool_options(CLI::App& app, PoolOptionValues& values);

}  // namespace healer::cli
