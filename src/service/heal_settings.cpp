// The [heal] table of the config file: defaults and brakes, allow-lists, privilege per tag and
// server, extra actions, rules and silences. Every key is known or an error.
#include "heal_settings.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "healer/checks/catalog.hpp"
#include "healer/core/config_loader.hpp"
#include "healer/service/settings.hpp"

namespace healer::service {
namespace {

using std::chrono::seconds;

Error config_error(std::string_view origin, std::string detail) {
  return Error{config::make_error_code(config::Errc::invalid_value),
               fmt::format("{}: {}", std::string(origin), detail)};
}

Error unknown_key(std::string_view origin, const std::string& where, std::string_view known) {
  return Error{config::make_error_code(config::Errc::unknown_key),
               fmt::format("{}: {}: unknown key ({})", std::string(origin), where, known)};
}

// Wraps a heal::Errc::invalid_parameter / invalid_config detail as a config error.
Error as_config_error(std::string_view origin, const std::string& where, const Error& error) {
  return config_error(origin, fmt::format("{}: {}", where, error.detail));
}

Result<std::string> text_of(const toml::node& node, const std::string& where,
                            std::string_view origin) {
  if (const auto* text = node.as_string(); text != nullptr) {
    return std::string(text->get());
  }
  return config_error(origin, fmt::format("{} must be a string", where));
}

Result<std::vector<std::string>> texts_of(const toml::node& node, const std::string& where,
                                          std::string_view origin, bool allow_single = false) {
  if (allow_single && node.is_string()) {
    return std::vector<std::string>{std::string(node.as_string()->get())};
  }
  const auto* array = node.as_array();
  if (array == nullptr) {
    return config_error(origin, fmt::format("{} must be an array of strings", where));
  }
  std::vector<std::string> out;
  for (const auto& item : *array) {
    const auto* text = item.as_string();
    if (text == nullptr) {
      return config_error(origin, fmt::format("{} must be an array of strings", where));
    }
    out.emplace_back(text->get());
  }
  return out;
}

Result<std::int64_t> integer_of(const toml::node& node, const std::string& where,
                                std::string_view origin, std::int64_t min, std::int64_t max) {
  const auto* integer = node.as_integer();
  if (integer == nullptr || integer->get() < min || integer->get() > max) {
    return config_error(origin,
                        fmt::format("{} must be a whole number, {} to {}", where, min, max));
  }
  return integer->get();
}

Result<seconds> duration_of(const toml::node& node, const std::string& where,
                            std::string_view origin, seconds min, seconds max) {
  std::optional<seconds> parsed;
  if (const auto* integer = node.as_integer(); integer != nullptr && integer->get() >= 0) {
    parsed = parse_duration(std::to_string(integer->get()));
  } else if (const auto* text = node.as_string(); text != nullptr) {
    parsed = parse_duration(text->get());
  }
  if (!parsed || *parsed < min || *parsed > max) {
    return config_error(origin, fmt::format("{} must be a duration (\"30s\", \"5m\" or seconds), "
                                            "{} s to {} s",
                                            where, min.count(), max.count()));
  }
  return *parsed;
}

Result<bool> bool_of(const toml::node& node, const std::string& where, std::string_view origin) {
  if (const auto* value = node.as_boolean(); value != nullptr) {
    return value->get();
  }
  return config_error(origin, fmt::format("{} must be true or false", where));
}

Result<heal::Privilege> privilege_of(const toml::node& node, const std::string& where,
                                     std::string_view origin) {
  auto text = text_of(node, where, origin);
  if (!text) {
    return std::move(text).error();
  }
  const auto privilege = heal::parse_privilege(*text);
  if (!privilege) {
    return config_error(origin, fmt::format("{} must be \"sudo\" or \"none\"", where));
  }
  return *privilege;
}

// A parameter value: a string, or a whole number (days = 7) as its decimal text.
Result<std::string> param_value(const toml::node& node, const std::string& where,
                                std::string_view origin) {
  if (const auto* integer = node.as_integer(); integer != nullptr) {
    return std::to_string(integer->get());
  }
  return text_of(node, where, origin);
}

Result<std::vector<heal::Expectation>> expectations_of(const toml::node& node,
                                                       const std::string& where,
                                                       std::string_view origin) {
  const auto* table = node.as_table();
  if (table == nullptr) {
    return config_error(origin, fmt::format("{} must be a table: {{ fact = \"value\" or [\"a\", "
                                            "\"b\"] }}",
                                            where));
  }
  std::vector<heal::Expectation> out;
  for (const auto& [key, value] : *table) {
    auto values = texts_of(value, where + "." + std::string(key.str()), origin, true);
    if (!values) {
      return std::move(values).error();
    }
    out.push_back(heal::Expectation{std::string(key.str()), std::move(*values)});
  }
  return out;
}

Result<heal::ActionSpec> action_of(const toml::table& table, const std::string& where,
                                   std::string_view origin) {
  heal::ActionSpec action;
  action.builtin = false;
  action.probe = heal::ProbeKind::none;
  bool has_argv = false;
  for (const auto& [key_node, node] : table) {
    const std::string key(key_node.str());
    const std::string at = where + "." + key;
    Result<void> read;
    if (key == "id" || key == "title" || key == "rollback") {
      auto text = text_of(node, at, origin);
      if (!text) {
        return std::move(text).error();
      }
      (key == "id" ? action.id : key == "title" ? action.title : action.rollback) = *text;
    } else if (key == "risk") {
      auto text = text_of(node, at, origin);
      const auto risk = text ? heal::parse_risk(*text) : std::nullopt;
      if (!risk) {
        return config_error(origin, fmt::format("{} must be \"low\", \"medium\" or \"high\"", at));
      }
      action.risk = *risk;
    } else if (key == "requires") {
      auto text = text_of(node, at, origin);
      const auto requirement = text ? heal::parse_requirement(*text) : std::nullopt;
      if (!requirement) {
        return config_error(
            origin,
            fmt::format("{} must be \"none\", \"systemd\", \"journald\" or \"logrotate\"", at));
      }
      action.requirement = *requirement;
    } else if (key == "families") {
      auto families = texts_of(node, at, origin);
      if (!families) {
        return std::move(families).error();
      }
      for (const auto& family : *families) {
        if (family != "debian" && family != "rhel" && family != "suse" && family != "alpine" &&
            family != "arch") {
          return config_error(origin, fmt::format("{}: '{}' is not a family (debian, rhel, suse, "
                                                  "alpine, arch)",
                                                  at, family));
        }
      }
      action.families = std::move(*families);
    } else if (key == "params") {
      const auto* params = node.as_table();
      if (params == nullptr) {
        return config_error(origin, fmt::format("{} must be a table: {{ name = \"type\" }}", at));
      }
      for (const auto& [name_node, type_node] : *params) {
        heal::ParamSpec spec;
        spec.name = std::string(name_node.str());
        auto type_text = text_of(type_node, at + "." + spec.name, origin);
        const auto type = type_text ? heal::parse_param_type(*type_text) : std::nullopt;
        if (!type) {
          return config_error(origin,
                              fmt::format("{}.{} must be a parameter type (unit, size, days, "
                                          "directory, logrotate_config, pid, start_time, signal)",
                                          at, spec.name));
        }
        spec.type = *type;
        spec.help = std::string(heal::to_string(*type));
        action.params.push_back(std::move(spec));
      }
    } else if (key == "argv") {
      auto argv = texts_of(node, at, origin);
      if (!argv) {
        return std::move(argv).error();
      }
      action.commands = {std::move(*argv)};
      has_argv = true;
    } else if (key == "commands") {
      const auto* list = node.as_array();
      if (list == nullptr) {
        return config_error(origin, fmt::format("{} must be an array of argv arrays", at));
      }
      for (const auto& item : *list) {
        auto argv = texts_of(item, at, origin);
        if (!argv) {
          return std::move(argv).error();
        }
        action.commands.push_back(std::move(*argv));
      }
      has_argv = true;
    } else if (key == "privilege") {
      auto privilege = privilege_of(node, at, origin);
      if (!privilege) {
        return std::move(privilege).error();
      }
      action.privilege = *privilege;
    } else if (key == "timeout") {
      auto timeout = duration_of(node, at, origin, seconds(1), seconds(3600));
      if (!timeout) {
        return std::move(timeout).error();
      }
      action.timeout = *timeout;
    } else if (key == "probe") {
      auto text = text_of(node, at, origin);
      const auto probe = text ? heal::parse_probe_kind(*text) : std::nullopt;
      if (!probe) {
        return config_error(origin, fmt::format("{} must be none, unit, old_files, process, "
                                                "journal or logrotate",
                                                at));
      }
      action.probe = *probe;
    } else if (key == "precondition" || key == "verification") {
      auto list = expectations_of(node, at, origin);
      if (!list) {
        return std::move(list).error();
      }
      (key == "precondition" ? action.precondition : action.verification) = std::move(*list);
    } else {
      return unknown_key(origin, at,
                         "id, title, risk, requires, families, params, argv, commands, "
                         "privilege, timeout, probe, precondition, verification, rollback");
    }
  }
  if (!has_argv) {
    return config_error(origin, fmt::format("{} needs argv or commands", where));
  }
  if (auto valid = heal::validate_action(action, where); !valid) {
    return config_error(origin, valid.error().detail);
  }
  return action;
}

bool rule_name_ok(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

Result<heal::Rule> rule_of(const toml::table& table, const std::string& where,
                           std::string_view origin, const heal::HealConfig& config) {
  heal::Rule rule;
  rule.consecutive = config.consecutive;
  rule.max_per_hour = config.max_per_hour;
  rule.grace = config.grace;
  for (const auto& [key_node, node] : table) {
    const std::string key(key_node.str());
    const std::string at = where + "." + key;
    if (key == "name" || key == "check" || key == "action") {
      auto text = text_of(node, at, origin);
      if (!text) {
        return std::move(text).error();
      }
      (key == "name" ? rule.name : key == "check" ? rule.check : rule.action) = *text;
    } else if (key == "status") {
      auto statuses = texts_of(node, at, origin, true);
      if (!statuses) {
        return std::move(statuses).error();
      }
      for (const auto& status : *statuses) {
        if (status != "WARNING" && status != "CRITICAL") {
          return config_error(origin, fmt::format("{}: '{}' is not WARNING or CRITICAL (healing "
                                                  "an UNKNOWN would act on a guess)",
                                                  at, status));
        }
      }
      if (statuses->empty()) {
        return config_error(origin, fmt::format("{} needs WARNING and/or CRITICAL", at));
      }
      rule.statuses = std::move(*statuses);
    } else if (key == "params") {
      const auto* params = node.as_table();
      if (params == nullptr) {
        return config_error(origin, fmt::format("{} must be a table", at));
      }
      for (const auto& [name, value] : *params) {
        auto text = param_value(value, at + "." + std::string(name.str()), origin);
        if (!text) {
          return std::move(text).error();
        }
        rule.params[std::string(name.str())] = *text;
      }
    } else if (key == "tags" || key == "servers") {
      auto list = texts_of(node, at, origin);
      if (!list) {
        return std::move(list).error();
      }
      (key == "tags" ? rule.tags : rule.servers) = std::move(*list);
    } else if (key == "auto") {
      auto value = bool_of(node, at, origin);
      if (!value) {
        return std::move(value).error();
      }
      rule.automatic = *value;
    } else if (key == "consecutive") {
      auto value = integer_of(node, at, origin, 1, 100);
      if (!value) {
        return std::move(value).error();
      }
      rule.consecutive = static_cast<int>(*value);
    } else if (key == "max_per_hour") {
      auto value = integer_of(node, at, origin, 1, 1000);
      if (!value) {
        return std::move(value).error();
      }
      rule.max_per_hour = static_cast<int>(*value);
    } else if (key == "grace") {
      auto value = duration_of(node, at, origin, seconds(0), seconds(3600));
      if (!value) {
        return std::move(value).error();
      }
      rule.grace = *value;
    } else {
      return unknown_key(origin, at,
                         "name, check, status, action, params, tags, servers, auto, consecutive, "
                         "max_per_hour, grace");
    }
  }
  if (!rule_name_ok(rule.name)) {
    return config_error(origin, fmt::format("{}.name must be 1-64 of [A-Za-z0-9_.-]", where));
  }
  if (!checks::find_check(rule.check)) {
    return config_error(origin, fmt::format("{}.check: no check named '{}' (see `healer diagnose "
                                            "--list-checks`)",
                                            where, rule.check));
  }
  const auto* action = config.find_action(rule.action);
  if (action == nullptr) {
    return config_error(origin, fmt::format("{}.action: no action named '{}'", where, rule.action));
  }
  auto params = heal::validate_parameters(*action, rule.params, config.validation());
  if (!params) {
    return as_config_error(origin, where, params.error());
  }
  rule.params = std::move(*params);
  if (rule.automatic && !action->automatic_allowed()) {
    return config_error(origin,
                        fmt::format("{}: auto = true needs a low-risk action; {} is {} risk "
                                    "(apply it with `healer heal plan` / `apply` instead)",
                                    where, action->id, heal::to_string(action->risk)));
  }
  return rule;
}

Result<heal::Silence> silence_of(const toml::table& table, const std::string& where,
                                 std::string_view origin) {
  heal::Silence silence;
  for (const auto& [key_node, node] : table) {
    const std::string key(key_node.str());
    const std::string at = where + "." + key;
    if (key == "servers" || key == "tags") {
      auto list = texts_of(node, at, origin);
      if (!list) {
        return std::move(list).error();
      }
      (key == "servers" ? silence.servers : silence.tags) = std::move(*list);
    } else if (key == "from" || key == "until") {
      auto text = text_of(node, at, origin);
      const auto at_ms = text ? heal::parse_utc_time(*text) : std::nullopt;
      if (!at_ms) {
        return config_error(origin,
                            fmt::format("{} must be a UTC time \"YYYY-MM-DDTHH:MM:SSZ\"", at));
      }
      (key == "from" ? silence.from_ms : silence.until_ms) = *at_ms;
    } else if (key == "days") {
      auto list = texts_of(node, at, origin);
      if (!list) {
        return std::move(list).error();
      }
      for (const auto& day : *list) {
        const auto weekday = heal::parse_weekday(day);
        if (!weekday) {
          return config_error(origin, fmt::format("{}: '{}' is not a weekday (sun..sat)", at, day));
        }
        silence.days.push_back(*weekday);
      }
    } else if (key == "start" || key == "end") {
      auto text = text_of(node, at, origin);
      const auto minute = text ? heal::parse_clock(*text) : std::nullopt;
      if (!minute) {
        return config_error(origin, fmt::format("{} must be \"HH:MM\" (UTC)", at));
      }
      (key == "start" ? silence.start_minute : silence.end_minute) = *minute;
    } else if (key == "reason") {
      auto text = text_of(node, at, origin);
      if (!text) {
        return std::move(text).error();
      }
      silence.reason = *text;
    } else {
      return unknown_key(origin, at, "servers, tags, from, until, days, start, end, reason");
    }
  }
  if (silence.start_minute.has_value() != silence.end_minute.has_value()) {
    return config_error(origin, fmt::format("{}: start and end go together", where));
  }
  if (silence.from_ms && silence.until_ms && *silence.from_ms >= *silence.until_ms) {
    return config_error(origin, fmt::format("{}: from must be before until", where));
  }
  return silence;
}

// [[heal.NAME]]: an array of tables.
template <class F>
Result<void> each_table(const toml::table& heal, const char* name, std::string_view origin,
                        F read) {
  const auto* node = heal.get(name);
  if (node == nullptr) {
    return {};
  }
  const auto* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    return config_error(origin,
                        fmt::format("heal.{0} must be an array of tables ([[heal.{0}]])", name));
  }
  std::size_t index = 0;
  for (const auto& item : *array) {
    if (auto done = read(*item.as_table(), fmt::format("heal.{}[{}]", name, index++)); !done) {
      return done;
    }
  }
  return {};
}

}  // namespace

Result<heal::HealConfig> heal_from(const toml::table* root, std::string_view origin) {
  heal::HealConfig config;
  if (root == nullptr) {
    return config;
  }
  const auto* node = root->get("heal");
  if (node == nullptr) {
    return config;
  }
  const auto* table = node->as_table();
  if (table == nullptr) {
    return config_error(origin, "heal must be a table ([heal])");
  }
  // Scalars first: rules take their defaults from them, whatever the order in the file.
  for (const auto& [key_node, value] : *table) {
    const std::string key(key_node.str());
    const std::string at = "heal." + key;
    if (key == "privilege") {
      auto privilege = privilege_of(value, at, origin);
      if (!privilege) {
        return std::move(privilege).error();
      }
      config.privilege = *privilege;
    } else if (key == "max_concurrent" || key == "max_per_hour" || key == "consecutive") {
      auto number = integer_of(value, at, origin, 1, key == "consecutive" ? 100 : 1000);
      if (!number) {
        return std::move(number).error();
      }
      (key == "max_concurrent" ? config.max_concurrent
       : key == "max_per_hour" ? config.max_per_hour
                               : config.consecutive) = static_cast<int>(*number);
    } else if (key == "grace") {
      auto grace = duration_of(value, at, origin, seconds(0), seconds(3600));
      if (!grace) {
        return std::move(grace).error();
      }
      config.grace = *grace;
    } else if (key == "cleanup_dirs" || key == "logrotate_configs") {
      auto list = texts_of(value, at, origin);
      if (!list) {
        return std::move(list).error();
      }
      for (const auto& path : *list) {
        if (!heal::valid_cleanup_dir(path)) {
          return config_error(origin,
                              fmt::format("{}: '{}' must be an absolute, normalised path (no "
                                          "'.', '..', '//' or trailing '/') other than /",
                                          at, path));
        }
      }
      (key == "cleanup_dirs" ? config.cleanup_dirs : config.logrotate_configs) = std::move(*list);
    } else if (key == "tags" || key == "servers") {
      const auto* groups = value.as_table();
      if (groups == nullptr) {
        return config_error(origin, fmt::format("{} must be a table", at));
      }
      for (const auto& [name, entry] : *groups) {
        const std::string where = at + "." + std::string(name.str());
        const auto* entry_table = entry.as_table();
        if (entry_table == nullptr) {
          return config_error(origin, fmt::format("{} must be a table", where));
        }
        for (const auto& [entry_key, entry_value] : *entry_table) {
          if (entry_key.str() != "privilege") {
            return unknown_key(origin, where + "." + std::string(entry_key.str()), "privilege");
          }
          auto privilege = privilege_of(entry_value, where + ".privilege", origin);
          if (!privilege) {
            return std::move(privilege).error();
          }
          (key == "tags" ? config.privilege_by_tag
                         : config.privilege_by_server)[std::string(name.str())] = *privilege;
        }
      }
    } else if (key != "actions" && key != "rules" && key != "silences") {
      return unknown_key(origin, at,
                         "privilege, max_concurrent, max_per_hour, consecutive, grace, "
                         "cleanup_dirs, logrotate_configs, tags, servers, actions, rules, "
                         "silences");
    }
  }
  std::set<std::string, std::less<>> ids;
  auto actions =
      each_table(*table, "actions", origin,
                 [&](const toml::table& entry, const std::string& where) -> Result<void> {
                   auto action = action_of(entry, where, origin);
                   if (!action) {
                     return std::move(action).error();
                   }
                   if (!ids.insert(action->id).second) {
                     return config_error(origin, fmt::format("{}: the id '{}' is used "
                                                             "twice",
                                                             where, action->id));
                   }
                   config.actions.push_back(std::move(*action));
                   return {};
                 });
  if (!actions) {
    return std::move(actions).error();
  }
  std::set<std::string, std::less<>> names;
  auto rules = each_table(*table, "rules", origin,
                          [&](const toml::table& entry, const std::string& where) -> Result<void> {
                            auto rule = rule_of(entry, where, origin, config);
                            if (!rule) {
                              return std::move(rule).error();
                            }
                            if (!names.insert(rule->name).second) {
                              return config_error(origin, fmt::format("{}: the name '{}' is used "
                                                                      "twice",
                                                                      where, rule->name));
                            }
                            config.rules.push_back(std::move(*rule));
                            return {};
                          });
  if (!rules) {
    return std::move(rules).error();
  }
  auto silences =
      each_table(*table, "silences", origin,
                 [&](const toml::table& entry, const std::string& where) -> Result<void> {
                   auto silence = silence_of(entry, where, origin);
                   if (!silence) {
                     return std::move(silence).error();
                   }
                   config.silences.push_back(std::move(*silence));
                   return {};
                 });
  if (!silences) {
    return std::move(silences).error();
  }
  return config;
}

}  // namespace healer::service
