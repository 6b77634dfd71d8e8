#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/heal/action.hpp"

// The `[heal]` part of the config file as plain values (service/settings parses the TOML).
namespace healer::heal {

/// `[[heal.rules]]`: when a check has one of these statuses on a server, this action with these
/// parameters applies. Without `auto` a rule only proposes steps for `healer heal plan`; with it
/// the daemon applies it after a scheduled diagnosis (low-risk actions only), with the brakes.
struct Rule {
  std::string name;   ///< unique; names the rule in plans and the audit log ("rule:NAME")
  std::string check;  ///< a check name (healer diagnose --list-checks)
  std::vector<std::string> statuses{"CRITICAL"};  ///< "WARNING" and/or "CRITICAL"
  std::string action;
  std::map<std::string, std::string> params;  ///< validated when the config is read
  std::vector<std::string> tags;     ///< servers with any of these tags (with servers: either)
  std::vector<std::string> servers;  ///< these servers; both empty: every server
  bool automatic = false;            ///< `auto = true`
  int consecutive = 2;               ///< bad results in a row before it fires (flapping)
  int max_per_hour = 3;              ///< per (server, action), then the breaker opens
  std::chrono::seconds grace{30};    ///< before verification

  /// Whether the rule is about `server` (with `tags`).
  [[nodiscard]] bool applies_to(std::string_view server,
                                const std::vector<std::string>& server_tags) const;
  /// Whether `status` ("OK", "WARNING", ...) is one the rule acts on.
  [[nodiscard]] bool matches(std::string_view status) const;
};

/// `[[heal.silences]]`: no automatic healing for these servers (or tags) in this window, fixed
/// (`from`/`until`, UTC) or weekly (`days`, `start`-`end` in UTC, may wrap past midnight).
struct Silence {
  std::vector<std::string> servers;
  std::vector<std::string> tags;         ///< both empty: every server
  std::optional<std::int64_t> from_ms;   ///< Unix ms
  std::optional<std::int64_t> until_ms;  ///< Unix ms
  std::vector<int> days;                 ///< 0 = Sunday ... 6 = Saturday; empty: every day
  std::optional<int> start_minute;       ///< minutes after 00:00 UTC
  std::optional<int> end_minute;
  std::string reason;

  /// Whether it covers `server` (with `tags`) at `now_ms`.
  [[nodiscard]] bool covers(std::string_view server, const std::vector<std::string>& server_tags,
                            std::int64_t now_ms) const;
};

/// Everything `[heal]` says.
struct HealConfig {
  Privilege privilege = Privilege::sudo;  ///< how actions get their rights (`none`: root login)
  std::map<std::string, Privilege, std::less<>> privilege_by_tag;
  std::map<std::string, Privilege, std::less<>> privilege_by_server;
  int max_concurrent = 4;          ///< servers healing at once (a global cap)
  int max_per_hour = 3;            ///< default of Rule::max_per_hour
  int consecutive = 2;             ///< default of Rule::consecutive
  std::chrono::seconds grace{30};  ///< default of Rule::grace; manual applies use it too
  std::vector<std::string> cleanup_dirs;
  std::vector<std::string> logrotate_configs;
  std::vector<ActionSpec> actions;  ///< `[[heal.actions]]`, beyond the built-in ones
  std::vector<Rule> rules;
  std::vector<Silence> silences;

  /// A built-in or configured action by id; nullptr when there is none.
  [[nodiscard]] const ActionSpec* find_action(std::string_view id) const;
  /// Built-in actions, then configured ones.
  [[nodiscard]] std::vector<const ActionSpec*> all_actions() const;
  /// The privilege mode of a server: by server, else the first of its tags that has one, else
  /// the default.
  [[nodiscard]] Privilege privilege_for(std::string_view server,
                                        const std::vector<std::string>& tags) const;
  /// The silence covering `server` at `now_ms`, if any.
  [[nodiscard]] const Silence* silence_for(std::string_view server,
                                           const std::vector<std::string>& tags,
                                           std::int64_t now_ms) const;
  [[nodiscard]] ValidationContext validation() const;
  [[nodiscard]] const Rule* find_rule(std::string_view name) const;
};

/// Whether (server, action) may be healed automatically again: fewer than `max_per_hour`
/// automatic starts in the hour before `now_ms` (`started_ms`: their times).
[[nodiscard]] bool within_rate(const std::vector<std::int64_t>& started_ms, int max_per_hour,
                               std::int64_t now_ms);

/// "2025-06-01T22:00:00Z" (UTC, seconds optional fraction not allowed) -> Unix ms.
[[nodiscard]] std::optional<std::int64_t> parse_utc_time(std::string_view text);
/// "HH:MM" -> minutes after midnight.
[[nodiscard]] std::optional<int> parse_clock(std::string_view text);
/// "sun".."sat" (or full names) -> 0..6.
[[nodiscard]] std::optional<int> parse_weekday(std::string_view text);

}  // namespace healer::heal
