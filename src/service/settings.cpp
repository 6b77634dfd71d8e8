#include "healer/service/settings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <asio/ip/address.hpp>
#include <cctype>
#include <charconv>
#include <set>
#include <system_error>

#include "heal_settings.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/core/config_document.hpp"

namespace healer::service {
namespace {

using std::chrono::seconds;

Error config_error(std::string_view origin, std::string detail) {
  return Error{config::make_error_code(config::Errc::invalid_value),
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

Result<CheckConfig> parse_checks_table(const toml::table& root, std::string_view origin,
                                       const std::vector<std::string>& known_keys) {
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

// --- [store] ---------------------------------------------------------------------------------

constexpr std::int64_t kMaxDays = 36500;

Result<std::optional<std::int64_t>> days_from_env(const config::Environment& env,
                                                  const char* name) {
  const auto text = env.get(name);
  if (!text) {
    return std::optional<std::int64_t>{};
  }
  std::int64_t days = 0;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), days);
  if (ec != std::errc() || ptr != text->data() + text->size() || days < 1 || days > kMaxDays) {
    return Error{config::make_error_code(config::Errc::invalid_value),
                 fmt::format("{}='{}': expected whole days, 1 to {}", name, *text, kMaxDays)};
  }
  return std::optional<std::int64_t>{days};
}

Result<store::Retention> retention_from(const config::Environment& env, const toml::table* root,
                                        std::string_view origin) {
  store::Retention retention;
  if (root != nullptr) {
    if (const auto* node = root->get("store"); node != nullptr && !node->is_table()) {
      return config_error(origin, "store must be a table ([store])");
    }
    if (const auto* table = root->get_as<toml::table>("store"); table != nullptr) {
      for (const auto& [key, node] : *table) {
        const std::string name(key.str());
        if (name != "samples_retention_days" && name != "runs_retention_days") {
          return config_error(origin, fmt::format("store.{}: unknown key (samples_retention_days, "
                                                  "runs_retention_days)",
                                                  name));
        }
        const auto days = node.value<std::int64_t>();
        if (!days || *days < 1 || *days > kMaxDays || !node.is_integer()) {
          return config_error(
              origin, fmt::format("store.{}: expected whole days, 1 to {}", name, kMaxDays));
        }
        (name == "samples_retention_days" ? retention.samples : retention.runs) =
            std::chrono::days(*days);
      }
    }
  }
  auto samples = days_from_env(env, "HEALER_SAMPLES_RETENTION_DAYS");
  if (!samples) {
    return std::move(samples).error();
  }
  if (*samples) {
    retention.samples = std::chrono::days(**samples);
  }
  auto runs = days_from_env(env, "HEALER_RUNS_RETENTION_DAYS");
  if (!runs) {
    return std::move(runs).error();
  }
  if (*runs) {
    retention.runs = std::chrono::days(**runs);
  }
  return retention;
}

// --- shared value readers --------------------------------------------------------------------

Result<seconds> duration_of(const toml::node& node, const std::string& where,
                            std::string_view origin) {
  if (const auto* integer = node.as_integer(); integer != nullptr) {
    if (integer->get() < 0) {
      return config_error(origin, fmt::format("{} must not be negative", where));
    }
    if (auto parsed = parse_duration(std::to_string(integer->get())); parsed) {
      return *parsed;
    }
  } else if (const auto* text = node.as_string(); text != nullptr) {
    if (auto parsed = parse_duration(text->get()); parsed) {
      return *parsed;
    }
  }
  return config_error(origin, fmt::format("{} must be a duration such as \"90s\", \"5m\", "
                                          "\"2h\" or a number of seconds (at most 10 years)",
                                          where));
}

Result<std::string> string_of(const toml::node& node, const std::string& where,
                              std::string_view origin) {
  if (const auto* text = node.as_string(); text != nullptr) {
    return std::string(text->get());
  }
  return config_error(origin, fmt::format("{} must be a string", where));
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

Error unknown_key(std::string_view origin, const std::string& where, std::string_view known) {
  return Error{config::make_error_code(config::Errc::unknown_key),
               fmt::format("{}: {}: unknown key ({})", std::string(origin), where, known)};
}

const toml::table* table_at(const toml::table& root, std::string_view name) {
  return root.get_as<toml::table>(name);
}

Result<void> require_table(const toml::table& root, std::string_view name,
                           std::string_view origin) {
  if (const auto* node = root.get(name); node != nullptr && !node->is_table()) {
    return config_error(origin, fmt::format("{} must be a table ([{}])", name, name));
  }
  return {};
}

// --- [schedule] ------------------------------------------------------------------------------

Result<void> read_intervals(const toml::table& table, const std::string& path,
                            std::string_view origin, bool allow_groups,
                            ScheduleSettings::Override& out) {
  for (const auto& [key_node, node] : table) {
    const std::string key(key_node.str());
    const std::string where = path + "." + key;
    if (key == "metrics_interval" || key == "diagnose_interval") {
      auto value = duration_of(node, where, origin);
      if (!value) {
        return std::move(value).error();
      }
      (key == "metrics_interval" ? out.metrics : out.diagnose) = *value;
    } else if (!(allow_groups && (key == "tags" || key == "servers" || key == "checks"))) {
      return unknown_key(origin, where,
                         allow_groups ? "metrics_interval, diagnose_interval, checks, tags, servers"
                                      : "metrics_interval, diagnose_interval");
    }
  }
  return {};
}

Result<ScheduleSettings> schedule_from(const toml::table* root, std::string_view origin) {
  ScheduleSettings schedule;
  if (root == nullptr) {
    return schedule;
  }
  if (auto checked = require_table(*root, "schedule", origin); !checked) {
    return std::move(checked).error();
  }
  const auto* table = table_at(*root, "schedule");
  if (table == nullptr) {
    return schedule;
  }
  ScheduleSettings::Override top;
  if (auto read = read_intervals(*table, "schedule", origin, true, top); !read) {
    return std::move(read).error();
  }
  if (const auto* list = table->get("checks"); list != nullptr) {
    if (list->value<std::string>() == std::optional<std::string>("seed")) {
      schedule.seed_checks = true;
    } else {
      auto names = strings(*list, "schedule.checks", origin);
      if (!names) {
        return config_error(origin, "schedule.checks must be \"seed\" or an array of check names");
      }
      for (const auto& name : *names) {
        if (!checks::find_check(name)) {
          return config_error(origin, fmt::format("schedule.checks: no check named '{}'", name));
        }
      }
      schedule.checks = std::move(*names);
    }
  }
  schedule.defaults.metrics = top.metrics.value_or(schedule.defaults.metrics);
  schedule.defaults.diagnose = top.diagnose.value_or(schedule.defaults.diagnose);
  for (const auto group : {"tags", "servers"}) {
    const auto* node = table->get(group);
    if (node == nullptr) {
      continue;
    }
    const auto* groups = node->as_table();
    if (groups == nullptr) {
      return config_error(origin, fmt::format("schedule.{} must be a table", group));
    }
    for (const auto& [name_node, value] : *groups) {
      const std::string name(name_node.str());
      const std::string path = fmt::format("schedule.{}.{}", group, name);
      const auto* entry = value.as_table();
      if (entry == nullptr) {
        return config_error(origin, fmt::format("{} must be a table", path));
      }
      ScheduleSettings::Override override_intervals;
      if (auto read = read_intervals(*entry, path, origin, false, override_intervals); !read) {
        return std::move(read).error();
      }
      (std::string_view(group) == "tags" ? schedule.by_tag : schedule.by_server)[name] =
          override_intervals;
    }
  }
  return schedule;
}

// --- [notify] --------------------------------------------------------------------------------

Result<NotifySettings> notify_from(const toml::table* root, std::string_view origin) {
  NotifySettings notify;
  if (root == nullptr) {
    return notify;
  }
  if (auto checked = require_table(*root, "notify", origin); !checked) {
    return std::move(checked).error();
  }
  const auto* table = table_at(*root, "notify");
  if (table == nullptr) {
    return notify;
  }
  for (const auto& [key_node, node] : *table) {
    const std::string key(key_node.str());
    const std::string where = "notify." + key;
    if (key == "command") {
      auto words = strings(node, where, origin);
      if (!words) {
        return std::move(words).error();
      }
      if (words->empty() || words->front().empty() || words->front().front() != '/') {
        return config_error(origin, fmt::format("{} must be an argv array whose first word is an "
                                                "absolute path (no shell is involved)",
                                                where));
      }
      notify.command = std::move(*words);
    } else if (key == "webhook") {
      auto url = string_of(node, where, origin);
      if (!url) {
        return std::move(url).error();
      }
      if (!url->starts_with("http://") && !url->starts_with("https://")) {
        return config_error(origin, fmt::format("{} must be an http:// or https:// URL", where));
      }
      notify.webhook = std::move(*url);
    } else if (key == "consecutive") {
      auto value = integer_of(node, where, origin, 1, 100);
      if (!value) {
        return std::move(value).error();
      }
      notify.consecutive = static_cast<int>(*value);
    } else if (key == "max_per_hour") {
      auto value = integer_of(node, where, origin, 1, 100000);
      if (!value) {
        return std::move(value).error();
      }
      notify.max_per_hour = static_cast<int>(*value);
    } else if (key == "timeout") {
      auto value = duration_of(node, where, origin);
      if (!value) {
        return std::move(value).error();
      }
      if (value->count() < 1 || value->count() > 300) {
        return config_error(origin, fmt::format("{} must be 1 s to 5 min", where));
      }
      notify.timeout = *value;
    } else {
      return unknown_key(origin, where, "command, webhook, consecutive, max_per_hour, timeout");
    }
  }
  return notify;
}

// --- [serve] ---------------------------------------------------------------------------------

Result<ServeSettings> serve_from(const toml::table* root, std::string_view origin) {
  ServeSettings serve;
  if (root == nullptr) {
    return serve;
  }
  if (auto checked = require_table(*root, "serve", origin); !checked) {
    return std::move(checked).error();
  }
  const auto* table = table_at(*root, "serve");
  if (table == nullptr) {
    return serve;
  }
  for (const auto& [key_node, node] : *table) {
    const std::string key(key_node.str());
    const std::string where = "serve." + key;
    if (key == "listen") {
      auto text = string_of(node, where, origin);
      if (!text) {
        return std::move(text).error();
      }
      auto parsed = parse_listen(*text);
      if (!parsed) {
        return config_error(origin, fmt::format("{}: {}", where, parsed.error().detail));
      }
      serve.listen_address = parsed->first;
      serve.listen_port = parsed->second;
    } else if (key == "token_file" || key == "tls_cert" || key == "tls_key") {
      auto text = string_of(node, where, origin);
      if (!text) {
        return std::move(text).error();
      }
      if (text->empty() || text->front() != '/') {
        return config_error(origin, fmt::format("{} must be an absolute path", where));
      }
      (key == "token_file" ? serve.token_file
                           : (key == "tls_cert" ? serve.tls_cert : serve.tls_key)) = *text;
    } else if (key == "shutdown_timeout") {
      auto value = duration_of(node, where, origin);
      if (!value) {
        return std::move(value).error();
      }
      if (value->count() < 1 || value->count() > 600) {
        return config_error(origin, fmt::format("{} must be 1 s to 10 min", where));
      }
      serve.shutdown_timeout = *value;
    } else if (key == "lease_ttl") {
      auto value = duration_of(node, where, origin);
      if (!value) {
        return std::move(value).error();
      }
      if (value->count() < 2 || value->count() > 600) {
        return config_error(origin, fmt::format("{} must be 2 s to 10 min", where));
      }
      serve.lease_ttl = *value;
    } else if (key == "node_id") {
      auto text = string_of(node, where, origin);
      if (!text) {
        return std::move(text).error();
      }
      // It shows in logs, labels and the API: a plain name.
      const bool plain = !text->empty() && text->size() <= 100 &&
                         std::all_of(text->begin(), text->end(), [](char c) {
                           return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' ||
                                  c == '_' || c == '.' || c == ':';
                         });
      if (!plain) {
        return config_error(
            origin, fmt::format("{} must be 1-100 letters, digits, '-', '_', '.' or ':'", where));
      }
      serve.node_id = *text;
    } else {
      return unknown_key(origin, where,
                         "listen, token_file, tls_cert, tls_key, shutdown_timeout, node_id, "
                         "lease_ttl");
    }
  }
  if (serve.tls_cert.empty() != serve.tls_key.empty()) {
    return config_error(origin, "serve.tls_cert and serve.tls_key go together");
  }
  return serve;
}

// --- [remote_write] --------------------------------------------------------------------------

Result<RemoteWriteSettings> remote_write_from(const toml::table* root, std::string_view origin) {
  RemoteWriteSettings remote;
  if (root == nullptr) {
    return remote;
  }
  if (auto checked = require_table(*root, "remote_write", origin); !checked) {
    return std::move(checked).error();
  }
  const auto* table = table_at(*root, "remote_write");
  if (table == nullptr) {
    return remote;
  }
  for (const auto& [key_node, node] : *table) {
    const std::string key(key_node.str());
    const std::string where = "remote_write." + key;
    if (key == "url") {
      auto url = string_of(node, where, origin);
      if (!url) {
        return std::move(url).error();
      }
      const auto scheme = url->find("://");
      const auto host_start = scheme == std::string::npos ? 0 : scheme + 3;
      const auto host_end = url->find('/', host_start);
      const auto authority = url->substr(host_start, host_end - host_start);
      if ((!url->starts_with("http://") && !url->starts_with("https://")) || authority.empty()) {
        return config_error(origin, fmt::format("{} must be an http:// or https:// URL", where));
      }
      // Credentials belong in bearer_token_file: a URL shows up in logs.
      if (authority.find('@') != std::string::npos) {
        return config_error(origin, fmt::format("{} must not hold credentials (user@); use "
                                                "bearer_token_file",
                                                where));
      }
      remote.url = std::move(*url);
    } else if (key == "timeout" || key == "flush_interval") {
      auto value = duration_of(node, where, origin);
      if (!value) {
        return std::move(value).error();
      }
      if (value->count() < 1 || value->count() > 300) {
        return config_error(origin, fmt::format("{} must be 1 s to 5 min", where));
      }
      (key == "timeout" ? remote.timeout : remote.flush_interval) = *value;
    } else if (key == "max_batch_samples") {
      auto value = integer_of(node, where, origin, 1, 1'000'000);
      if (!value) {
        return std::move(value).error();
      }
      remote.max_batch_samples = static_cast<std::size_t>(*value);
    } else if (key == "queue_max_samples") {
      auto value = integer_of(node, where, origin, 1, 100'000'000);
      if (!value) {
        return std::move(value).error();
      }
      remote.queue_max_samples = static_cast<std::size_t>(*value);
    } else if (key == "bearer_token_file") {
      auto text = string_of(node, where, origin);
      if (!text) {
        return std::move(text).error();
      }
      if (text->empty() || text->front() != '/') {
        return config_error(origin, fmt::format("{} must be an absolute path", where));
      }
      remote.bearer_token_file = *text;
    } else {
      return unknown_key(origin, fmt::format("{} (line {})", where, key_node.source().begin.line),
                         "url, timeout, flush_interval, max_batch_samples, queue_max_samples, "
                         "bearer_token_file");
    }
  }
  if (table->size() > 0 && remote.url.empty()) {
    return config_error(origin, "remote_write.url is required in [remote_write]");
  }
  if (remote.max_batch_samples > remote.queue_max_samples) {
    return config_error(origin, "remote_write.max_batch_samples must not exceed queue_max_samples");
  }
  return remote;
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

Result<CheckConfig> parse_check_config(const config::ConfigFile* file,
                                       const std::vector<std::string>& known_keys) {
  if (file == nullptr) {
    return CheckConfig{};
  }
  return parse_checks_table(file->document().root, file->path().string(), known_keys);
}

Result<CheckConfig> parse_check_config(std::string_view toml_text, std::string_view origin,
                                       const std::vector<std::string>& known_keys) {
  auto file = config::ConfigFile::parse(std::string(toml_text), std::string(origin));
  if (!file) {
    return std::move(file).error();
  }
  return parse_check_config(&*file, known_keys);
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

Result<store::Retention> load_retention(const config::Environment& env,
                                        const config::ConfigFile* file) {
  return retention_from(env, file == nullptr ? nullptr : &file->document().root,
                        file == nullptr ? std::string() : file->path().string());
}

Result<store::Retention> load_retention(const config::Environment& env,
                                        const std::optional<std::string>& toml_text,
                                        std::string_view origin) {
  if (!toml_text) {
    return load_retention(env, nullptr);
  }
  auto file = config::ConfigFile::parse(*toml_text, std::string(origin));
  if (!file) {
    return std::move(file).error();
  }
  return load_retention(env, &*file);
}

std::vector<std::string_view> known_config_tables() {
  return {"pool", "checks", "store", "schedule", "notify", "serve", "heal", "remote_write"};
}

Result<Settings> load_settings(const config::Environment& env, const config::ConfigFile* file,
                               const std::map<std::string, std::string>& pool_flags) {
  Settings settings;
  const toml::table* root = nullptr;
  std::string origin;
  if (file != nullptr) {
    const auto known = known_config_tables();
    if (auto checked = file->check_tables(known); !checked) {
      return std::move(checked).error();
    }
    root = &file->document().root;
    origin = file->path().string();
    settings.file = file->path();
  }
  auto pool = config::load_pool_config(env, file, pool_flags);
  if (!pool) {
    return std::move(pool).error();
  }
  settings.pool = *pool;
  auto check_config = parse_check_config(file, known_threshold_keys());
  if (!check_config) {
    return std::move(check_config).error();
  }
  settings.checks = std::move(*check_config);
  auto retention = retention_from(env, root, origin);
  if (!retention) {
    return std::move(retention).error();
  }
  settings.retention = *retention;
  auto schedule = schedule_from(root, origin);
  if (!schedule) {
    return std::move(schedule).error();
  }
  settings.schedule = std::move(*schedule);
  auto notify = notify_from(root, origin);
  if (!notify) {
    return std::move(notify).error();
  }
  settings.notify = std::move(*notify);
  auto serve = serve_from(root, origin);
  if (!serve) {
    return std::move(serve).error();
  }
  settings.serve = std::move(*serve);
  auto heal = heal_from(root, origin);
  if (!heal) {
    return std::move(heal).error();
  }
  settings.heal = std::move(*heal);
  auto remote_write = remote_write_from(root, origin);
  if (!remote_write) {
    return std::move(remote_write).error();
  }
  settings.remote_write = std::move(*remote_write);
  return settings;
}

Result<Settings> load_settings(const config::Environment& env, const SettingsSources& sources) {
  auto path = config::find_config_file(env, sources.config_file);
  if (!path) {
    return std::move(path).error();
  }
  if (!*path) {
    return load_settings(env, nullptr, sources.pool_flags);
  }
  auto file = config::ConfigFile::read(**path);
  if (!file) {
    return std::move(file).error();
  }
  return load_settings(env, &*file, sources.pool_flags);
}

Intervals ScheduleSettings::intervals_for(std::string_view server,
                                          const std::vector<std::string>& tags) const {
  Intervals intervals = defaults;
  // With several tags, the shortest interval any of them asks for wins (0 = off counts as
  // "asked for nothing" unless every tag says off).
  std::optional<seconds> tag_metrics;
  std::optional<seconds> tag_diagnose;
  auto shorter = [](std::optional<seconds>& current, std::optional<seconds> candidate) {
    if (!candidate) {
      return;
    }
    if (!current || (candidate->count() > 0 && (current->count() == 0 || *candidate < *current))) {
      current = candidate;
    }
  };
  for (const auto& tag : tags) {
    if (const auto it = by_tag.find(tag); it != by_tag.end()) {
      shorter(tag_metrics, it->second.metrics);
      shorter(tag_diagnose, it->second.diagnose);
    }
  }
  intervals.metrics = tag_metrics.value_or(intervals.metrics);
  intervals.diagnose = tag_diagnose.value_or(intervals.diagnose);
  if (const auto it = by_server.find(server); it != by_server.end()) {
    intervals.metrics = it->second.metrics.value_or(intervals.metrics);
    intervals.diagnose = it->second.diagnose.value_or(intervals.diagnose);
  }
  return intervals;
}

Result<std::pair<std::string, std::uint16_t>> parse_listen(std::string_view text) {
  const auto bad = [&](std::string_view why) -> Error {
    return Error{config::make_error_code(config::Errc::invalid_value),
                 fmt::format("'{}' {}: expected ADDRESS:PORT, e.g. 127.0.0.1:7464 or [::1]:7464",
                             std::string(text), why)};
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return bad("has no port");
  }
  std::string_view address = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (address.front() == '[') {
    if (address.size() < 3 || address.back() != ']') {
      return bad("has an unclosed IPv6 bracket");
    }
    address = address.substr(1, address.size() - 2);
  } else if (address.find(':') != std::string_view::npos) {
    return bad("needs brackets around an IPv6 address");
  }
  std::error_code ec;
  (void)asio::ip::make_address(std::string(address), ec);
  if (ec) {
    return bad("is not an IP address (host names are not resolved)");
  }
  if (port_text.empty() || port_text.size() > 5 || port_text.front() == '0') {
    return bad("has a port that is not a decimal number 1-65535");
  }
  unsigned port = 0;
  for (const char c : port_text) {
    if (c < '0' || c > '9') {
      return bad("has a port that is not a decimal number 1-65535");
    }
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port < 1 || port > 65535) {
    return bad("has a port that is not a decimal number 1-65535");
  }
  return std::pair{std::string(address), static_cast<std::uint16_t>(port)};
}

std::optional<seconds> parse_duration(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  std::int64_t unit = 1;
  switch (text.back()) {
    case 's':
      unit = 1;
      text.remove_suffix(1);
      break;
    case 'm':
      unit = 60;
      text.remove_suffix(1);
      break;
    case 'h':
      unit = 3600;
      text.remove_suffix(1);
      break;
    case 'd':
      unit = 86400;
      text.remove_suffix(1);
      break;
    default:
      break;
  }
  if (text.empty()) {
    return std::nullopt;
  }
  std::int64_t count = 0;
  for (const char c : text) {
    if (c < '0' || c > '9' || count > 1'000'000'000) {
      return std::nullopt;
    }
    count = count * 10 + (c - '0');
  }
  constexpr std::int64_t kTenYears = 10LL * 366 * 86400;
  if (count > kTenYears / unit) {
    return std::nullopt;
  }
  return seconds(count * unit);
}

}  // namespace healer::service
