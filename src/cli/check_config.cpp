#include "check_config.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <set>
#include <system_error>

#include "healer/checks/catalog.hpp"

namespace healer::cli {
namespace {

Error config_error(std::string_view origin, std::string detail) {
  return Error{std::make_error_code(std::errc::invalid_argument),
               fmt::format("{}: {}", std::string(origin), detail)};
}

Result<std::optional<double>> level(const toml::node* node, std::string_view where,
                                    std::string_view origin) {
  if (node == nullptr) {
    return std::optional<double>{};
  }
  if (auto value = node->value<double>(); value) {
    return std::optional<double>{*value};
  }
  return config_error(origin, fmt::format("{} must be a number", where));
}

Result<checks::Thresholds> parse_threshold(const toml::node& node, const std::string& path,
                                           std::string_view origin) {
  checks::Thresholds levels;
  if (const auto* array = node.as_array(); array != nullptr) {
    if (array->size() != 2) {
      return config_error(origin, fmt::format("{} must be [warn, crit]", path));
    }
    auto warn = level(array->get(0), path + "[0]", origin);
    auto crit = level(array->get(1), path + "[1]", origin);
    if (!warn || !crit) {
      return !warn ? std::move(warn).error() : std::move(crit).error();
    }
    levels.warn = *warn;
    levels.crit = *crit;
    return levels;
  }
  if (const auto* table = node.as_table(); table != nullptr) {
    for (const auto& [key, value] : *table) {
      if (key.str() != "warn" && key.str() != "crit") {
        return config_error(
            origin, fmt::format("{}.{}: unknown key (warn, crit)", path, std::string(key.str())));
      }
    }
    auto warn = level(table->get("warn"), path + ".warn", origin);
    auto crit = level(table->get("crit"), path + ".crit", origin);
    if (!warn || !crit) {
      return !warn ? std::move(warn).error() : std::move(crit).error();
    }
    levels.warn = *warn;
    levels.crit = *crit;
    return levels;
  }
  return config_error(origin,
                      fmt::format("{} must be [warn, crit] or {{ warn = N, crit = N }}", path));
}

Result<std::vector<std::string>> strings(const toml::node& node, const std::string& path,
                                         std::string_view origin) {
  const auto* array = node.as_array();
  if (array == nullptr) {
    return config_error(origin, fmt::format("{} must be an array of strings", path));
  }
  std::vector<std::string> out;
  for (const auto& item : *array) {
    auto text = item.value<std::string>();
    if (!text) {
      return config_error(origin, fmt::format("{} must be an array of strings", path));
    }
    out.push_back(std::move(*text));
  }
  return out;
}

Result<checks::CheckSettings> parse_settings(const toml::table& table, const std::string& path,
                                             std::string_view origin,
                                             const std::vector<std::string>& known_keys) {
  checks::CheckSettings settings;
  for (const auto& [key_node, node] : table) {
    const std::string key(key_node.str());
    const std::string where = path + "." + key;
    if (key == "thresholds") {
      const auto* thresholds = node.as_table();
      if (thresholds == nullptr) {
        return config_error(origin, fmt::format("{} must be a table", where));
      }
      for (const auto& [name_node, value] : *thresholds) {
        const std::string name(name_node.str());
        if (std::find(known_keys.begin(), known_keys.end(), name) == known_keys.end()) {
          return config_error(origin, fmt::format("{}.{}: no check reads this threshold (see "
                                                  "`healer diagnose --list-checks`)",
                                                  where, name));
        }
        auto parsed = parse_threshold(value, where + "." + name, origin);
        if (!parsed) {
          return std::move(parsed).error();
        }
        settings.thresholds[name] = *parsed;
      }
    } else if (key == "expected_ports") {
      const auto* array = node.as_array();
      if (array == nullptr) {
        return config_error(origin, fmt::format("{} must be an array of ports", where));
      }
      for (const auto& item : *array) {
        auto port = item.value<std::int64_t>();
        if (!port || *port < 1 || *port > 65535) {
          return config_error(origin, fmt::format("{} must hold ports 1-65535", where));
        }
        settings.expected_ports.push_back(static_cast<std::uint16_t>(*port));
      }
    } else if (key == "ignored_mounts" || key == "ignored_fstypes" || key == "ignored_units" ||
               key == "ignored_log_patterns") {
      auto list = strings(node, where, origin);
      if (!list) {
        return std::move(list).error();
      }
      auto& target = key == "ignored_mounts"    ? settings.ignored_mounts
                     : key == "ignored_fstypes" ? settings.ignored_fstypes
                     : key == "ignored_units"   ? settings.ignored_units
                                                : settings.ignored_log_patterns;
      target = std::move(*list);
    } else if (!(path == "checks" && (key == "tags" || key == "servers"))) {
      return config_error(
          origin, fmt::format("{}: unknown key (thresholds, expected_ports, ignored_mounts, "
                              "ignored_fstypes, ignored_units, ignored_log_patterns{})",
                              where, path == "checks" ? ", tags, servers" : ""));
    }
  }
  return settings;
}

Result<void> parse_group(const toml::table& checks_table, std::string_view group,
                         std::string_view origin, const std::vector<std::string>& known_keys,
                         std::map<std::string, checks::CheckSettings, std::less<>>& out) {
  const auto* node = checks_table.get(group);
  if (node == nullptr) {
    return {};
  }
  const auto* table = node->as_table();
  if (table == nullptr) {
    return config_error(origin, fmt::format("checks.{} must be a table", group));
  }
  for (const auto& [name_node, value] : *table) {
    const std::string name(name_node.str());
    const auto* settings_table = value.as_table();
    const std::string path = fmt::format("checks.{}.{}", group, name);
    if (settings_table == nullptr) {
      return config_error(origin, fmt::format("{} must be a table", path));
    }
    auto settings = parse_settings(*settings_table, path, origin, known_keys);
    if (!settings) {
      return std::move(settings).error();
    }
    out[name] = std::move(*settings);
  }
  return {};
}

}  // namespace

checks::CheckSettings CheckConfig::settings_for(std::string_view server,
                                                const std::vector<std::string>& tags) const {
  checks::CheckSettings settings = all;
  for (const auto& tag : tags) {
    if (auto it = by_tag.find(tag); it != by_tag.end()) {
      settings = checks::overlay(std::move(settings), it->second);
    }
  }
  if (auto it = by_server.find(server); it != by_server.end()) {
    settings = checks::overlay(std::move(settings), it->second);
  }
  return settings;
}

Result<CheckConfig> parse_check_config(std::string_view toml_text, std::string_view origin,
                                       const std::vector<std::string>& known_keys) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return config_error(
        origin, fmt::format("line {}: {}", e.source().begin.line, std::string(e.description())));
  }
  CheckConfig config;
  const auto* node = root.get("checks");
  if (node == nullptr) {
    return config;
  }
  const auto* table = node->as_table();
  if (table == nullptr) {
    return config_error(origin, "checks must be a table ([checks])");
  }
  auto all = parse_settings(*table, "checks", origin, known_keys);
  if (!all) {
    return std::move(all).error();
  }
  config.all = std::move(*all);
  if (auto tags = parse_group(*table, "tags", origin, known_keys, config.by_tag); !tags) {
    return std::move(tags).error();
  }
  if (auto servers = parse_group(*table, "servers", origin, known_keys, config.by_server);
      !servers) {
    return std::move(servers).error();
  }
  return config;
}

std::vector<std::string> known_threshold_keys() {
  std::set<std::string> keys;
  checks::ApplicationSpec app;
  app.units = {"u"};
  app.health_url = "u";
  app.log_paths = {"u"};
  for (const auto& list :
       {checks::default_checks(), checks::seed_checks(), checks::application_checks(app)}) {
    for (const auto& check : list) {
      for (const auto& named : check.thresholds) {
        keys.emplace(named.key);
      }
    }
  }
  return {keys.begin(), keys.end()};
}

}  // namespace healer::cli
