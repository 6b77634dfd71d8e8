#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "healer/core/pool_config.hpp"
#include "healer/core/result.hpp"

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

/// The effective PoolConfig: the flags in `values` over the process environment over the config
/// file (--config, else $HEALER_CONFIG, else $XDG_CONFIG_HOME/healer/config.toml or
/// ~/.config/healer/config.toml if it exists) over the defaults. Errors name the bad setting.
[[nodiscard]] Result<PoolConfig> resolve_pool_config(const PoolOptionValues& values);

/// The config file as resolve_pool_config() finds it (--config, $HEALER_CONFIG, the XDG default):
/// its path and text, or nullopt when there is none. Errors name the file.
struct ConfigFile {
  std::filesystem::path path;
  std::string text;
};
[[nodiscard]] Result<std::optional<ConfigFile>> read_config_file(const PoolOptionValues& values);

}  // namespace healer::cli
