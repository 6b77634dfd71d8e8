#include "healer/core/config_loader.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>
#include <variant>

#include "healer/core/config_document.hpp"

namespace healer::config {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// Durations are capped so that `now + duration` can never overflow steady_clock's nanoseconds.
constexpr std::uint64_t kMaxMillis = 31'536'000'000;  // one year

using Field = std::variant<std::size_t PoolConfig::*, int PoolConfig::*, milliseconds PoolConfig::*,
                           OnExhausted PoolConfig::*>;

// One row of the settings table: every source's name for one PoolConfig field, and its rule.
struct Setting {
  std::string_view name;      // PoolConfig field
  std::string_view env;       // environment variable
  std::string_view toml_key;  // key in [pool]
  std::string_view flag;      // long flag without "--"
  Field field;
  std::uint64_t min;  // smallest accepted value of a numeric setting
  std::string_view help;
};

// The one table every source, the CLI and the docs are driven by; in PoolConfig order.
constexpr std::array kSettings{
    Setting{"max_connections", "SSH_POOL_MAX_SIZE", "max_connections", "max-connections",
            &PoolConfig::max_connections, 1, "SSH connections per server at most"},
    Setting{"max_channels", "HEALER_MAX_CHANNELS", "max_channels", "max-channels",
            &PoolConfig::max_channels, 1,
            "Concurrent channels per connection (keep <= the server's MaxSessions)"},
    Setting{"spare_channels", "HEALER_SPARE_CHANNELS", "spare_channels", "spare-channels",
            &PoolConfig::spare_channels, 0,
            "Channels per connection opened ahead of time for the next commands, at most (each "
            "counts against max_channels; sized from recent demand; 0: none)"},
    Setting{"max_concurrent", "HEALER_MAX_CONCURRENT", "max_concurrent", "max-concurrent",
            &PoolConfig::max_concurrent, 1, "Concurrent operations per server"},
    Setting{"max_concurrent_total", "HEALER_MAX_CONCURRENT_TOTAL", "max_concurrent_total",
            "max-concurrent-total", &PoolConfig::max_concurrent_total, 1,
            "Concurrent operations over all servers"},
    Setting{"max_handshakes_per_server", "HEALER_MAX_HANDSHAKES", "max_handshakes_per_server",
            "max-handshakes-per-server", &PoolConfig::max_handshakes_per_server, 1,
            "SSH handshakes in flight per server (keeps bursts under MaxStartups)"},
    Setting{"max_handshakes_total", "HEALER_MAX_HANDSHAKES_TOTAL", "max_handshakes_total",
            "max-handshakes-total", &PoolConfig::max_handshakes_total, 1,
            "SSH handshakes in flight over all servers"},
    Setting{"command_delay", "HEALER_COMMAND_DELAY", "command_delay_ms", "command-delay-ms",
            &PoolConfig::command_delay, 0,
            "Pause between commands started on one server, ms (0: none)"},
    Setting{"on_exhausted", "HEALER_ON_EXHAUSTED", "on_exhausted", "on-exhausted",
            &PoolConfig::on_exhausted, 0,
            "When a server's pool is full: queue (wait until the deadline), fail (at once), "
            "direct (RISKY: unpooled connection that bypasses every limit)"},
    Setting{"idle_timeout", "SSH_POOL_TIMEOUT", "idle_timeout_ms", "idle-timeout-ms",
            &PoolConfig::idle_timeout, 0, "Idle connections older than this are closed, ms"},
    Setting{"cleanup_interval", "SSH_POOL_CLEANUP_INTERVAL", "cleanup_interval_ms",
            "cleanup-interval-ms", &PoolConfig::cleanup_interval, 1,
            "How often idle connections are looked for, ms"},
    Setting{"keepalive_interval", "SSH_KEEPALIVE_INTERVAL", "keepalive_interval_ms",
            "keepalive-interval-ms", &PoolConfig::keepalive_interval, 0,
            "Keepalive request interval, ms (0: no keepalive)"},
    Setting{"keepalive_max_missed", "SSH_KEEPALIVE_MAX_MISSED", "keepalive_max_missed",
            "keepalive-max-missed", &PoolConfig::keepalive_max_missed, 1,
            "Unanswered keepalives before a connection is declared dead"},
    Setting{"max_lifetime", "HEALER_MAX_LIFETIME", "max_lifetime_ms", "max-lifetime-ms",
            &PoolConfig::max_lifetime, 0,
            "Connections are replaced after this long (+-10% jitter), ms (0: no limit)"},
    Setting{"health_check_idle", "HEALER_HEALTH_CHECK_IDLE", "health_check_idle_ms",
            "health-check-idle-ms", &PoolConfig::health_check_idle, 0,
            "A connection idle longer than this is pinged before reuse, ms (0: never)"},
    Setting{"min_idle", "HEALER_MIN_IDLE", "min_idle", "min-idle", &PoolConfig::min_idle, 0,
            "Idle connections kept open per server (connection warming; <= max_connections)"},
    Setting{"connect_timeout", "HEALER_CONNECT_TIMEOUT", "connect_timeout_ms", "connect-timeout-ms",
            &PoolConfig::connect_timeout, 1, "Deadline of one connect + authenticate, ms"},
    Setting{"backoff_initial", "HEALER_BACKOFF_INITIAL", "backoff_initial_ms", "backoff-initial-ms",
            &PoolConfig::backoff_initial, 1,
            "First wait after a failed connect, doubling per failure up to backoff_max, ms"},
    Setting{"backoff_max", "HEALER_BACKOFF_MAX", "backoff_max_ms", "backoff-max-ms",
            &PoolConfig::backoff_max, 1,
            "Longest wait between connect attempts, and how long an auth or host-key failure "
            "keeps the circuit open, ms"},
};

constexpr std::size_t kSettingCount = kSettings.size();

// A description of where each setting's current value came from, indexed like kSettings, e.g.
// `SSH_POOL_TIMEOUT=5000 (environment)`; relation errors quote both sides with it.
using Origins = std::array<std::string, kSettingCount>;

constexpr std::size_t index_of_name(std::string_view name) {
  for (std::size_t i = 0; i < kSettingCount; ++i) {
    if (kSettings[i].name == name) {
      return i;
    }
  }
  return kSettingCount;
}

bool is_mode(const Setting& setting) {
  return std::holds_alternative<OnExhausted PoolConfig::*>(setting.field);
}

bool is_millis(const Setting& setting) {
  return std::holds_alternative<milliseconds PoolConfig::*>(setting.field);
}

const char* mode_name(OnExhausted mode) {
  switch (mode) {
    case OnExhausted::queue:
      return "queue";
    case OnExhausted::fail:
      return "fail";
    case OnExhausted::direct:
      return "direct";
  }
  return "unknown";
}

// The largest value a numeric setting's field can hold (durations: see kMaxMillis).
std::uint64_t max_value(const Setting& setting) {
  struct Visitor {
    std::uint64_t operator()(std::size_t PoolConfig::*) const {
      return std::numeric_limits<std::size_t>::max();
    }
    std::uint64_t operator()(int PoolConfig::*) const { return INT_MAX; }
    std::uint64_t operator()(milliseconds PoolConfig::*) const { return kMaxMillis; }
    std::uint64_t operator()(OnExhausted PoolConfig::*) const { return 0; }
  };
  return std::visit(Visitor{}, setting.field);
}

// The setting's value in `config` as it would be written in any source ("300000", "queue").
std::string value_text(const Setting& setting, const PoolConfig& config) {
  struct Visitor {
    const PoolConfig& config;
    std::string operator()(std::size_t PoolConfig::*field) const {
      return std::to_string(config.*field);
    }
    std::string operator()(int PoolConfig::*field) const { return std::to_string(config.*field); }
    std::string operator()(milliseconds PoolConfig::*field) const {
      return std::to_string((config.*field).count());
    }
    std::string operator()(OnExhausted PoolConfig::*field) const {
      return mode_name(config.*field);
    }
  };
  return std::visit(Visitor{config}, setting.field);
}

std::string not_a_number(const Setting& setting) {
  return is_millis(setting) ? "not a whole number of milliseconds" : "not a whole number";
}

std::string below_min(const Setting& setting) {
  std::string text = "must be >= " + std::to_string(setting.min);
  if (setting.min == 1 && !is_millis(setting)) {
    text += " (zero is not allowed)";
  }
  return text;
}

std::string above_max(const Setting& setting) {
  std::string text = "too large (at most " + std::to_string(max_value(setting));
  text += is_millis(setting) ? " ms, one year)" : ")";
  return text;
}

// Text from outside quoted for a message: quotes and control bytes escaped, long values cut.
std::string shown(std::string_view text) {
  constexpr std::size_t kMaxShown = 64;
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (text[i] == '"' || text[i] == '\\') {
      out += '\\';
      out += text[i];
    } else if (byte < 0x20 || byte == 0x7f) {
      constexpr std::string_view kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4U];
      out += kHex[byte & 0xfU];
    } else {
      out += text[i];
    }
  }
  if (text.size() > kMaxShown) {
    out += "...";
  }
  out += '"';
  return out;
}

// Each store_* returns the problem with a value ("not a whole number"), or nullopt after storing
// it in `config`.
std::optional<std::string> store_number(const Setting& setting, std::uint64_t value,
                                        PoolConfig& config) {
  if (value < setting.min) {
    return below_min(setting);
  }
  if (value > max_value(setting)) {
    return above_max(setting);
  }
  struct Visitor {
    PoolConfig& config;
    std::uint64_t value;
    void operator()(std::size_t PoolConfig::*field) const {
      config.*field = static_cast<std::size_t>(value);
    }
    void operator()(int PoolConfig::*field) const { config.*field = static_cast<int>(value); }
    void operator()(milliseconds PoolConfig::*field) const {
      config.*field = milliseconds{static_cast<milliseconds::rep>(value)};
    }
    void operator()(OnExhausted PoolConfig::*) const {}
  };
  std::visit(Visitor{config, value}, setting.field);
  return std::nullopt;
}

std::optional<std::string> store_mode(const Setting& setting, std::string_view text,
                                      PoolConfig& config) {
  const auto field = std::get<OnExhausted PoolConfig::*>(setting.field);
  for (const auto mode : {OnExhausted::queue, OnExhausted::fail, OnExhausted::direct}) {
    if (text == mode_name(mode)) {
      config.*field = mode;
      return std::nullopt;
    }
  }
  return std::string("must be one of queue, fail, direct");
}

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A value from the environment or the command line: plain decimal digits, nothing else.
std::optional<std::string> store_text(const Setting& setting, std::string_view text,
                                      PoolConfig& config) {
  if (is_mode(setting)) {
    return store_mode(setting, text, config);
  }
  if (text.empty()) {
    return "empty: " + not_a_number(setting);
  }
  if (text.front() == '-' && all_digits(text.substr(1))) {
    return below_min(setting);
  }
  if (!all_digits(text)) {
    return not_a_number(setting);
  }
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) {
    return above_max(setting);
  }
  if (ec != std::errc{} || end != text.data() + text.size()) {
    return not_a_number(setting);
  }
  return store_number(setting, value, config);
}

// A value from the config file: TOML's own types, so a number must not be quoted.
std::optional<std::string> store_node(const Setting& setting, const toml::node& node,
                                      PoolConfig& config) {
  if (is_mode(setting)) {
    if (const auto* text = node.as_string(); text != nullptr) {
      return store_mode(setting, text->get(), config);
    }
    return std::string("must be a string: \"queue\", \"fail\" or \"direct\"");
  }
  if (const auto* integer = node.as_integer(); integer != nullptr) {
    const std::int64_t value = integer->get();
    if (value < 0) {
      return below_min(setting);
    }
    return store_number(setting, static_cast<std::uint64_t>(value), config);
  }
  if (node.is_floating_point()) {
    return not_a_number(setting);
  }
  if (node.is_string()) {
    return std::string("must be an integer, not a string (write it without quotes)");
  }
  return std::string("must be an integer");
}

// A TOML value as written in the file, for messages (tables and arrays abbreviated).
std::string node_text(const toml::node& node) {
  if (node.is_table()) {
    return "{...}";
  }
  if (node.is_array()) {
    return "[...]";
  }
  if (const auto* text = node.as_string(); text != nullptr) {
    return shown(text->get());
  }
  std::ostringstream out;
  node.visit([&out](const auto& value) { out << value; });
  return out.str();
}

std::string file_place(const fs::path& file, const toml::source_region& where) {
  return "(" + file.string() + " line " + std::to_string(where.begin.line) + ")";
}

// Edit distance of two short names, for "did you mean" hints.
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0U : 1U)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean X?)" for a near miss of a key or flag, else "".
template <class Name>
std::string suggestion(std::string_view unknown, Name name_of) {
  if (unknown.empty()) {
    return {};
  }
  std::string_view best;
  std::size_t best_distance = 3;  // hints further away than 2 edits are noise
  for (const auto& setting : kSettings) {
    const std::string_view candidate = name_of(setting);
    // "idle_timeout" for "idle_timeout_ms": the unit suffix is the commonest miss
    const std::size_t d = candidate.starts_with(unknown) ? 1 : distance(unknown, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  if (best.empty()) {
    return {};
  }
  return " (did you mean " + std::string(best) + "?)";
}

const Setting* find_by_toml_key(std::string_view key) {
  for (const auto& setting : kSettings) {
    if (setting.toml_key == key) {
      return &setting;
    }
  }
  return nullptr;
}

const Setting* find_by_flag(std::string_view flag) {
  for (const auto& setting : kSettings) {
    if (setting.flag == flag) {
      return &setting;
    }
  }
  return nullptr;
}

std::size_t index_of(const Setting& setting) {
  return static_cast<std::size_t>(&setting - kSettings.data());
}

// Applies the [pool] table of `file` over `config`; other top-level tables belong to other parts
// of healer and are left alone.
Result<void> apply_file(const ConfigFile& config_file, PoolConfig& config, Origins& origins) {
  const fs::path& file = config_file.path();
  const toml::table& root = config_file.document().root;
  for (const auto& [key, node] : root) {
    if (key.str() == "pool") {
      if (!node.is_table()) {
        return make_error(Errc::invalid_value, "pool = " + node_text(node) + " " +
                                                   file_place(file, node.source()) +
                                                   ": must be a table ([pool])");
      }
    } else if (find_by_toml_key(key.str()) != nullptr) {
      return make_error(Errc::unknown_key, std::string(key.str()) + " " +
                                               file_place(file, key.source()) +
                                               ": pool settings belong in the [pool] table");
    }
  }
  const toml::table* pool = root["pool"].as_table();
  if (pool == nullptr) {
    return {};
  }
  for (const auto& [key, node] : *pool) {
    const Setting* setting = find_by_toml_key(key.str());
    if (setting == nullptr) {
      return make_error(Errc::unknown_key,
                        "pool." + std::string(key.str()) + " " + file_place(file, key.source()) +
                            ": unknown key" +
                            suggestion(key.str(), [](const Setting& s) { return s.toml_key; }));
    }
    const std::string label = "pool." + std::string(key.str()) + " = " + node_text(node) + " " +
                              file_place(file, node.source());
    if (auto problem = store_node(*setting, node, config)) {
      return make_error(Errc::invalid_value, label + ": " + *problem);
    }
    origins[index_of(*setting)] = label;
  }
  return {};
}

Result<void> apply_environment(const Environment& env, PoolConfig& config, Origins& origins) {
  for (const auto& setting : kSettings) {
    const auto text = env.get(setting.env);
    if (!text) {
      continue;
    }
    const std::string label = std::string(setting.env) + "=" + shown(*text) + " (environment)";
    if (auto problem = store_text(setting, *text, config)) {
      return make_error(Errc::invalid_value, label + ": " + *problem);
    }
    origins[index_of(setting)] = label;
  }
  return {};
}

Result<void> apply_flags(const std::map<std::string, std::string>& flags, PoolConfig& config,
                         Origins& origins) {
  for (const auto& [given, text] : flags) {
    std::string_view flag = given;
    while (flag.starts_with('-')) {
      flag.remove_prefix(1);
    }
    const Setting* setting = find_by_flag(flag);
    if (setting == nullptr) {
      return make_error(Errc::unknown_key,
                        "--" + std::string(flag) + " (command line): unknown option" +
                            suggestion(flag, [](const Setting& s) { return s.flag; }));
    }
    const std::string label = "--" + std::string(flag) + "=" + shown(text) + " (command line)";
    if (auto problem = store_text(*setting, text, config)) {
      return make_error(Errc::invalid_value, label + ": " + *problem);
    }
    origins[index_of(*setting)] = label;
  }
  return {};
}

// True when the value of field `a` is <= that of field `b` in `config`.
struct Ordered {
  const PoolConfig& config;
  template <class T>
  bool operator()(T PoolConfig::*a, T PoolConfig::*b) const {
    return config.*a <= config.*b;
  }
  template <class A, class B>
  bool operator()(A, B) const {
    return true;  // fields of different types are never compared
  }
};

bool ordered(const Setting& low, const Setting& high, const PoolConfig& config) {
  return std::visit(Ordered{config}, low.field, high.field);
}

// `lower` must not exceed `upper`; both are quoted with where they came from.
Result<void> check_order(const PoolConfig& config, const Origins& origins, std::string_view lower,
                         std::string_view upper, std::string_view why) {
  const std::size_t low = index_of_name(lower);
  const std::size_t high = index_of_name(upper);
  if (ordered(kSettings[low], kSettings[high], config)) {
    return {};
  }
  return make_error(Errc::invalid_value,
                    origins[low] + " must be <= " + origins[high] + ": " + std::string(why));
}

Result<void> check_relations(const PoolConfig& config, const Origins& origins) {
  if (auto checked = check_order(config, origins, "backoff_initial", "backoff_max",
                                 "the first retry wait cannot exceed the longest one");
      !checked) {
    return checked;
  }
  if (auto checked = check_order(config, origins, "min_idle", "max_connections",
                                 "warm idle connections count against max_connections");
      !checked) {
    return checked;
  }
  // A connection is declared dead after interval x max_missed of silence: that product is a
  // duration too, capped like every other (it would overflow steady_clock's nanoseconds, or
  // even the milliseconds it is computed in).
  const auto interval = config.keepalive_interval.count();
  const auto missed = config.keepalive_max_missed;
  if (interval > 0 && missed > 0 &&
      static_cast<std::uint64_t>(interval) > kMaxMillis / static_cast<std::uint64_t>(missed)) {
    const auto wide_interval = static_cast<std::uint64_t>(interval);
    const auto wide_missed = static_cast<std::uint64_t>(missed);
    const bool fits = wide_interval <= std::numeric_limits<std::uint64_t>::max() / wide_missed;
    return make_error(
        Errc::invalid_value,
        origins[index_of_name("keepalive_interval")] + " x " +
            origins[index_of_name("keepalive_max_missed")] + " = " +
            (fits ? std::to_string(wide_interval * wide_missed) : std::string("more than 2^64")) +
            " ms: a silent connection would be declared dead only after that long; the product "
            "must be <= " +
            std::to_string(kMaxMillis) + " ms (one year)");
  }
  return {};
}

Origins default_origins(const PoolConfig& config, std::string_view how) {
  Origins origins;
  for (std::size_t i = 0; i < kSettingCount; ++i) {
    origins[i] = std::string(kSettings[i].toml_key) + " = " + value_text(kSettings[i], config) +
                 " (" + std::string(how) + ")";
  }
  return origins;
}

}  // namespace

// --- errors ---------------------------------------------------------------------------------

namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "config"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::invalid_value:
        return "invalid configuration value";
      case Errc::unknown_key:
        return "unknown configuration setting";
      case Errc::file_unreadable:
        return "config file unreadable";
      case Errc::parse_error:
        return "config file is not valid TOML";
    }
    return "unknown config error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

const char* errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::invalid_value:
      return "invalid_value";
    case Errc::unknown_key:
      return "unknown_key";
    case Errc::file_unreadable:
      return "file_unreadable";
    case Errc::parse_error:
      return "parse_error";
  }
  return "unknown";
}

// --- Environment ----------------------------------------------------------------------------

Environment::Environment(Lookup lookup) : lookup_(std::move(lookup)) {}

Environment Environment::process() {
  return Environment([](std::string_view name) -> std::optional<std::string> {
    const std::string key(name);
    if (const char* value = std::getenv(key.c_str()); value != nullptr) {
      return std::string(value);
    }
    return std::nullopt;
  });
}

Environment Environment::from_map(std::map<std::string, std::string> variables) {
  return Environment(
      [variables = std::move(variables)](std::string_view name) -> std::optional<std::string> {
        if (const auto it = variables.find(std::string(name)); it != variables.end()) {
          return it->second;
        }
        return std::nullopt;
      });
}

std::optional<std::string> Environment::get(std::string_view name) const {
  if (!lookup_) {
    return std::nullopt;
  }
  return lookup_(name);
}

// --- loading --------------------------------------------------------------------------------

std::vector<SettingInfo> pool_settings() {
  const PoolConfig defaults;
  std::vector<SettingInfo> settings;
  settings.reserve(kSettingCount);
  for (const auto& setting : kSettings) {
    std::string rule;
    if (is_mode(setting)) {
      rule = "queue|fail|direct";
    } else {
      rule =
          std::string(is_millis(setting) ? "ms" : "integer") + " >= " + std::to_string(setting.min);
    }
    settings.push_back(SettingInfo{
        .name = std::string(setting.name),
        .env = std::string(setting.env),
        .toml_key = std::string(setting.toml_key),
        .flag = std::string(setting.flag),
        .default_text = value_text(setting, defaults),
        .rule = std::move(rule),
        .help = std::string(setting.help),
    });
  }
  return settings;
}

Result<PoolConfig> load_pool_config(const Environment& env,
                                    const std::optional<std::filesystem::path>& file,
                                    const std::map<std::string, std::string>& flags) {
  if (!file) {
    return load_pool_config(env, static_cast<const ConfigFile*>(nullptr), flags);
  }
  auto parsed = ConfigFile::read(*file);
  if (!parsed) {
    return std::move(parsed).error();
  }
  return load_pool_config(env, &*parsed, flags);
}

Result<PoolConfig> load_pool_config(const Environment& env, const ConfigFile* file,
                                    const std::map<std::string, std::string>& flags) {
  PoolConfig config;
  Origins origins = default_origins(config, "default");
  // Lowest precedence first: each layer overwrites what the one before set.
  if (file != nullptr) {
    if (auto applied = apply_file(*file, config, origins); !applied) {
      return std::move(applied).error();
    }
  }
  if (auto applied = apply_environment(env, config, origins); !applied) {
    return std::move(applied).error();
  }
  if (auto applied = apply_flags(flags, config, origins); !applied) {
    return std::move(applied).error();
  }
  if (auto checked = check_relations(config, origins); !checked) {
    return std::move(checked).error();
  }
  return config;
}

Result<void> validate_pool_config(const PoolConfig& config) {
  struct Visitor {
    const PoolConfig& config;
    // The value of a signed field (it may be negative when set in code), else nullopt.
    std::optional<std::int64_t> operator()(std::size_t PoolConfig::*) const { return {}; }
    std::optional<std::int64_t> operator()(int PoolConfig::*field) const { return config.*field; }
    std::optional<std::int64_t> operator()(milliseconds PoolConfig::*field) const {
      return (config.*field).count();
    }
    std::optional<std::int64_t> operator()(OnExhausted PoolConfig::*) const { return {}; }
  };
  const Origins origins = default_origins(config, "set in code");
  PoolConfig checked;
  for (std::size_t i = 0; i < kSettingCount; ++i) {
    const Setting& setting = kSettings[i];
    if (is_mode(setting)) {
      continue;
    }
    const auto signed_value = std::visit(Visitor{config}, setting.field);
    if (signed_value && *signed_value < 0) {
      return make_error(Errc::invalid_value, origins[i] + ": " + below_min(setting));
    }
    const std::string text = value_text(setting, config);
    if (auto problem = store_text(setting, text, checked)) {
      return make_error(Errc::invalid_value, origins[i] + ": " + *problem);
    }
  }
  return check_relations(config, origins);
}

Result<std::optional<std::filesystem::path>> find_config_file(
    const Environment& env, const std::optional<std::filesystem::path>& explicit_file) {
  const auto must_exist = [](const fs::path& file,
                             std::string_view how) -> Result<std::optional<fs::path>> {
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      return make_error(Errc::file_unreadable,
                        file.string() + " (" + std::string(how) + "): no such file");
    }
    return std::optional<fs::path>(file);
  };
  if (explicit_file) {
    return must_exist(*explicit_file, "--config");
  }
  if (const auto named = env.get("HEALER_CONFIG"); named && !named->empty()) {
    return must_exist(fs::path(*named), "HEALER_CONFIG");
  }
  // XDG base directories: a relative XDG_CONFIG_HOME is invalid and ignored.
  fs::path base;
  if (const auto xdg = env.get("XDG_CONFIG_HOME"); xdg && !xdg->empty() && xdg->front() == '/') {
    base = *xdg;
  } else if (const auto home = env.get("HOME"); home && !home->empty()) {
    base = fs::path(*home) / ".config";
  } else {
    return std::optional<fs::path>();
  }
  const fs::path candidate = base / "healer" / "config.toml";
  std::error_code ec;
  if (fs::exists(candidate, ec)) {
    return std::optional<fs::path>(candidate);
  }
  return std::optional<fs::path>();
}

}  // namespace healer::config
