#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "healer/core/config_file.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/core/result.hpp"

namespace healer::config {

/// Why the configuration could not be loaded. All of them are start-up errors (exit 2).
enum class Errc {
  invalid_value = 1,  ///< a value is not a number, out of range, zero where not allowed, ...
  unknown_key,        ///< a key of the [pool] table, or a flag, that names no setting (a typo)
  file_unreadable,    ///< the config file is missing, a directory, or cannot be read
  parse_error,        ///< the config file is not valid TOML
};

/// The error category of config::Errc ("config").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Short stable name of an error ("invalid_value"), for JSON and logs.
[[nodiscard]] const char* errc_name(Errc e) noexcept;

/// Where environment variables come from: the process environment, or a map in tests.
class Environment {
 public:
  /// Returns the value of a variable, or nullopt when it is not set.
  using Lookup = std::function<std::optional<std::string>(std::string_view)>;

  /// Wraps a lookup function; the function must outlive nothing (it is copied).
  explicit Environment(Lookup lookup);

  /// The environment of this process (getenv at each lookup).
  [[nodiscard]] static Environment process();
  /// A fixed set of variables (for tests); every other variable is unset.
  [[nodiscard]] static Environment from_map(std::map<std::string, std::string> variables);

  /// The value of `name`, or nullopt when it is not set. An empty value is a value.
  [[nodiscard]] std::optional<std::string> get(std::string_view name) const;

 private:
  Lookup lookup_;
};

/// One setting of PoolConfig as the user sees it: its names in each source, default, rule.
struct SettingInfo {
  std::string name;          ///< PoolConfig field, e.g. "idle_timeout"
  std::string env;           ///< environment variable, e.g. "SSH_POOL_TIMEOUT"
  std::string toml_key;      ///< key in the [pool] table of the config file, e.g. "idle_timeout_ms"
  std::string flag;          ///< long flag without the dashes, e.g. "idle-timeout-ms"
  std::string default_text;  ///< the default as it would be written, e.g. "300000"
  std::string rule;  ///< accepted values, e.g. "integer >= 1", "ms >= 0", "queue|fail|direct"
  std::string help;  ///< one-line meaning
};

/// Every pool setting, in PoolConfig order: the one table the loader, the CLI and the docs share.
[[nodiscard]] std::vector<SettingInfo> pool_settings();

/// Builds a PoolConfig from, in increasing precedence: the defaults, the [pool] table of `file`
/// (if given; other tables are left to their owners, but a pool setting outside [pool] is an
/// error), the environment, and `flags` (flag name without dashes -> value,
/// only the flags given). Every value present in any source is validated, even one a higher source
/// overrides; then relations between settings are checked. The first problem is returned, its
/// detail naming the variable, key or flag and where it came from.
[[nodiscard]] Result<PoolConfig> load_pool_config(const Environment& env, const ConfigFile* file,
                                                  const std::map<std::string, std::string>& flags);
/// The same, reading `file` first (tests and tools; a program reads its ConfigFile once and passes
/// it to every section's parser).
[[nodiscard]] Result<PoolConfig> load_pool_config(const Environment& env,
                                                  const std::optional<std::filesystem::path>& file,
                                                  const std::map<std::string, std::string>& flags);

/// Checks relations between settings (backoff_initial <= backoff_max, min_idle <=
/// max_connections) and the per-setting ranges, for a PoolConfig built in code.
[[nodiscard]] Result<void> validate_pool_config(const PoolConfig& config);

/// The config file to read: `explicit_file` (e.g. --config) if given, else $HEALER_CONFIG if set;
/// either must exist (file_unreadable otherwise). Else $XDG_CONFIG_HOME/healer/config.toml (or
/// $HOME/.config/healer/config.toml) only if it exists; else nullopt (no file, not an error).
[[nodiscard]] Result<std::optional<std::filesystem::path>> find_config_file(
    const Environment& env, const std::optional<std::filesystem::path>& explicit_file);

}  // namespace healer::config

template <>
struct std::is_error_code_enum<healer::config::Errc> : std::true_type {};
