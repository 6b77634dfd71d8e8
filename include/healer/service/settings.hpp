#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "healer/checks/check.hpp"
#include "healer/core/config_file.hpp"
#include "healer/core/config_loader.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/core/result.hpp"
#include "healer/heal/config.hpp"
#include "healer/store/records.hpp"

// Everything a healer process is configured with, parsed once from one config file, the
// environment and the command line. The CLI builds it per command, `healer serve` at start and on
// SIGHUP.
namespace healer::service {

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

/// How often `healer serve` collects and diagnoses; zero turns a kind of work off.
struct Intervals {
  std::chrono::seconds metrics{300};  ///< the seed's cadence
  std::chrono::seconds diagnose{900};
};

/// The `[schedule]` table: default intervals, per tag and per server (server > tag > default;
/// with several tags the shortest interval wins).
///
/// ```toml
/// [schedule]
/// metrics_interval = "5m"      # "90s", "5m", "2h", or seconds; "0" or 0: off
/// diagnose_interval = "15m"
/// checks = ["memory", "disk_space"]   # or "seed"; default: every default check
/// [schedule.tags.prod]
/// metrics_interval = "1m"
/// [schedule.servers.web1]
/// diagnose_interval = "5m"
/// ```
struct ScheduleSettings {
  Intervals defaults;
  /// The checks a scheduled diagnosis runs (`checks = ["memory", "disk_space"]`, or
  /// `checks = "seed"`); empty: the default set.
  std::vector<std::string> checks;
  bool seed_checks = false;
  struct Override {
    std::optional<std::chrono::seconds> metrics;
    std::optional<std::chrono::seconds> diagnose;
  };
  std::map<std::string, Override, std::less<>> by_tag;
  std::map<std::string, Override, std::less<>> by_server;

  /// The intervals of one server.
  [[nodiscard]] Intervals intervals_for(std::string_view server,
                                        const std::vector<std::string>& tags) const;
};

/// The `[notify]` table: what runs when a server's status changes.
///
/// ```toml
/// [notify]
/// command = ["/usr/local/bin/page-oncall", "--team", "ops"]  # argv; the event JSON on stdin
/// webhook = "http://127.0.0.1:9000/hooks/healer"             # POSTed the event JSON
/// consecutive = 2          # a new status must be seen this many runs in a row (flapping)
/// max_per_hour = 30        # notifications per hour at most, over all servers
/// timeout = "10s"
/// ```
struct NotifySettings {
  std::vector<std::string> command;  ///< empty: none
  std::string webhook;               ///< empty: none; http:// or https://
  int consecutive = 1;
  int max_per_hour = 60;
  std::chrono::seconds timeout{10};

  [[nodiscard]] bool enabled() const noexcept { return !command.empty() || !webhook.empty(); }
};

/// The `[serve]` table: the daemon's listeners.
///
/// ```toml
/// [serve]
/// listen = "127.0.0.1:7464"   # HTTP: API, /metrics, dashboard
/// token_file = "/var/lib/healer/api.token"   # default: api.token next to the database
/// tls_cert = "/etc/healer/cert.pem"          # both or neither; required beyond loopback
/// tls_key = "/etc/healer/key.pem"
/// shutdown_timeout = "10s"
/// node_id = "healer-a"       # several nodes on one PostgreSQL: default hostname-pid-random
/// lease_ttl = "30s"          # a dead node's servers are taken over this long after it died
/// ```
struct ServeSettings {
  std::string listen_address = "127.0.0.1";
  std::uint16_t listen_port = 7464;  ///< outside 9100-9999 (Prometheus exporters), unassigned
  std::filesystem::path token_file;  ///< empty: api.token next to the database
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
  std::chrono::seconds shutdown_timeout{10};
  /// This node's name in the server leases (store::ServerLease); empty: hostname-pid-random.
  std::string node_id;
  /// How long a lease lives without a heartbeat (heartbeats every third of it).
  std::chrono::seconds lease_ttl{30};
};

/// The `[remote_write]` table: where `healer serve` pushes every collected node series
/// (Prometheus remote write 1.0: protobuf, snappy, HTTP POST). Unset `url`: off.
///
/// ```toml
/// [remote_write]
/// url = "http://127.0.0.1:9090/api/v1/write"   # Prometheus, VictoriaMetrics, Mimir, ...
/// timeout = "10s"              # one POST
/// flush_interval = "5s"        # the longest a sample waits before it is sent
/// max_batch_samples = 2000     # samples per POST
/// queue_max_samples = 500000   # held while the receiver is away; beyond: the oldest are dropped
/// bearer_token_file = "/etc/healer/remote-write.token"   # optional: Authorization: Bearer
/// ```
struct RemoteWriteSettings {
  std::string url;  ///< empty: off; http:// or https://
  std::chrono::seconds timeout{10};
  std::chrono::seconds flush_interval{5};
  std::size_t max_batch_samples = 2000;
  std::size_t queue_max_samples = 500000;
  std::filesystem::path bearer_token_file;  ///< empty: no Authorization header

  [[nodiscard]] bool enabled() const noexcept { return !url.empty(); }
};

/// Everything the config file, the environment and the flags say.
struct Settings {
  PoolConfig pool;
  CheckConfig checks;
  store::Retention retention;
  ScheduleSettings schedule;
  NotifySettings notify;
  ServeSettings serve;
  /// `[heal]`: rules, brakes, allow-lists, extra actions, silences (docs/healing.md).
  heal::HealConfig heal;
  RemoteWriteSettings remote_write;
  /// The config file these came from, if any.
  std::optional<std::filesystem::path> file;
};

/// Where settings come from besides the environment.
struct SettingsSources {
  /// --config FILE, when given (else $HEALER_CONFIG, else the XDG default if it exists).
  std::optional<std::filesystem::path> config_file;
  /// Pool flags as typed: flag name without dashes -> value.
  std::map<std::string, std::string> pool_flags;
};

/// The top-level tables a config file may hold.
[[nodiscard]] std::vector<std::string_view> known_config_tables();

/// Reads the config file once and builds every section: pool (flag > env > file > default),
/// checks, store retention (env > file > default), schedule, notify, serve, heal, remote_write.
/// An unknown top-level table or key is an error naming the file and line.
[[nodiscard]] Result<Settings> load_settings(const config::Environment& env,
                                             const SettingsSources& sources);

/// The same from an already parsed file (nullptr: none).
[[nodiscard]] Result<Settings> load_settings(const config::Environment& env,
                                             const config::ConfigFile* file,
                                             const std::map<std::string, std::string>& pool_flags);

/// The `[checks]` table of `file` (nullptr: none). Threshold keys must be ones a check in
/// `known_keys` reads.
[[nodiscard]] Result<CheckConfig> parse_check_config(const config::ConfigFile* file,
                                                     const std::vector<std::string>& known_keys);
/// The same from TOML text (tests).
[[nodiscard]] Result<CheckConfig> parse_check_config(std::string_view toml_text,
                                                     std::string_view origin,
                                                     const std::vector<std::string>& known_keys);

/// Every threshold key the built-in checks read ("disk_space", "cpu.busy", ...).
[[nodiscard]] std::vector<std::string> known_threshold_keys();

/// How long history is kept: HEALER_SAMPLES_RETENTION_DAYS / HEALER_RUNS_RETENTION_DAYS over the
/// config file's `[store] samples_retention_days` / `runs_retention_days` over the defaults
/// (30 and 90 days). Whole days >= 1.
[[nodiscard]] Result<store::Retention> load_retention(const config::Environment& env,
                                                      const config::ConfigFile* file);
/// The same from TOML text (tests); `origin` names it in errors.
[[nodiscard]] Result<store::Retention> load_retention(const config::Environment& env,
                                                      const std::optional<std::string>& toml_text,
                                                      std::string_view origin);

/// "ADDR:PORT" (IPv4 literal, or an IPv6 literal in brackets: "[::1]:7464"; the port in decimal,
/// 1-65535) -> address and port. Host names are refused: a listener binds what it is told.
[[nodiscard]] Result<std::pair<std::string, std::uint16_t>> parse_listen(std::string_view text);

/// "90s", "15m", "2h", "7d" or a whole number of seconds -> a duration; nullopt when malformed or
/// longer than 10 years.
[[nodiscard]] std::optional<std::chrono::seconds> parse_duration(std::string_view text);

}  // namespace healer::service
