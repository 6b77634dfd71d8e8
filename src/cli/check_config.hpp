#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "healer/checks/check.hpp"
#include "healer/core/result.hpp"

namespace healer::cli {

/// The `[checks]` part of the config file: settings for every server, per tag and per server.
///
/// ```toml
/// [checks]                              # every server
/// thresholds = { disk_space = [80, 90], "cpu.busy" = { warn = 95 } }
/// ignored_mounts = ["/snap"]
/// [checks.tags.prod]                    # servers tagged prod
/// thresholds = { memory = [15, 8] }
/// [checks.servers.web1]                 # one server, by name
/// expected_ports = [22, 443]
/// ```
///
/// A threshold is `[warn, crit]` or a table with `warn` and/or `crit`; its direction always comes
/// from the check. Lists: expected_ports, ignored_mounts, ignored_fstypes, ignored_units,
/// ignored_log_patterns.
struct CheckConfig {
  checks::CheckSettings all;
  std::map<std::string, checks::CheckSettings, std::less<>> by_tag;
  std::map<std::string, checks::CheckSettings, std::less<>> by_server;

  /// The settings of one server: `all`, then each of its tags' (in the order given), then its
  /// own, layered with checks::overlay().
  [[nodiscard]] checks::CheckSettings settings_for(std::string_view server,
                                                   const std::vector<std::string>& tags) const;
};

/// Parses the `[checks]` table of a config file's text (other tables are ignored). Threshold keys
/// must be ones a check in `known_keys` reads; errors name `origin` (the file) and the key.
[[nodiscard]] Result<CheckConfig> parse_check_config(std::string_view toml_text,
                                                     std::string_view origin,
                                                     const std::vector<std::string>& known_keys);

/// Every threshold key the built-in checks read ("disk_space", "cpu.busy", ...).
[[nodiscard]] std::vector<std::string> known_threshold_keys();

}  // namespace healer::cli
