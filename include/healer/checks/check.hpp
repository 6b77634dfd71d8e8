#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace healer::checks {

/// Outcome of one check; the values are the Nagios plugin exit codes.
enum class Status { ok = 0, warning = 1, critical = 2, unknown = 3 };

/// "OK", "WARNING", "CRITICAL" or "UNKNOWN".
[[nodiscard]] std::string_view status_name(Status status) noexcept;

/// Rank used to aggregate statuses: OK 0 < UNKNOWN 1 < WARNING 2 < CRITICAL 3.
[[nodiscard]] int severity(Status status) noexcept;

/// The more severe of two statuses, ranked CRITICAL > WARNING > UNKNOWN > OK as Nagios and Icinga
/// rank them when summarising a host: a check that could not look must neither hide a real
/// failure found by another check nor page like one.
[[nodiscard]] Status worst(Status a, Status b) noexcept;

/// One Nagios performance value: `'label'=value[UOM];[warn];[crit];[min];[max]`.
struct Perfdata {
  std::string label{};
  double value = 0;
  std::string unit{};  ///< Nagios UOM: "" (a number), "%", "s", "B", "c" (a counter)
  std::optional<double> warn = std::nullopt;
  std::optional<double> crit = std::nullopt;
  std::optional<double> min = std::nullopt;
  std::optional<double> max = std::nullopt;
  bool lower_is_worse = false;  ///< print warn/crit as Nagios ranges "N:" (alert below N)

  /// The Nagios text: the label always single-quoted (a quote in it doubled), numbers without
  /// exponent and with at most 6 decimals, trailing empty fields dropped.
  [[nodiscard]] std::string format() const;
};

/// Warning and critical levels for one measured value. The threshold is the first bad value:
/// higher-is-worse alerts at `value >= warn` (`>= crit`), lower-is-worse at `value <= warn`
/// (`<= crit`). An absent level never alerts. (Nagios ranges are exclusive at the bound; the
/// difference only shows for a value exactly on it, and makes counts read naturally: crit 1 =
/// "any".)
struct Thresholds {
  std::optional<double> warn = std::nullopt;
  std::optional<double> crit = std::nullopt;
  bool lower_is_worse = false;  ///< e.g. available memory, uptime

  /// OK, WARNING or CRITICAL for `value`; never UNKNOWN.
  [[nodiscard]] Status evaluate(double value) const noexcept;
};

/// A threshold a check reads, with its default: what the config may override.
struct NamedThresholds {
  std::string_view key;  ///< key in CheckSettings::thresholds ("disk_space", "cpu.iowait")
  Thresholds defaults;
  std::string_view unit;     ///< unit of warn/crit ("%", "s", "" for counts)
  std::string_view meaning;  ///< one line for docs and `--help`
};

/// The outcome of one check on one server.
struct CheckResult {
  std::string name;
  Status status = Status::unknown;
  std::string message;  ///< one line, no '|' (the Nagios perfdata separator)
  std::vector<Perfdata> perfdata;

  /// The Nagios plugin output line: "WARNING - message | 'a'=1;2;3 'b'=4".
  [[nodiscard]] std::string nagios_line() const;
};

/// What a remote command produced, as the parser sees it. Views into the runner's buffers.
struct CheckInput {
  std::string_view out{};                         ///< stdout
  std::string_view err{};                         ///< stderr: only ever used to explain an UNKNOWN
  std::optional<int> exit_status = std::nullopt;  ///< unset when killed by a signal
  bool out_truncated = false;  ///< stdout hit the runner's output cap: results are UNKNOWN
  /// Healer-side wall clock (Unix seconds) when the command was sent and when its output
  /// arrived; only clock_skew reads them (skew is measured against their midpoint).
  std::optional<double> sent_at = std::nullopt;
  std::optional<double> received_at = std::nullopt;
  /// The random marker of the run that produced `out` (runner.hpp, kDrawMarker): a line of
  /// `out` is healer's framing ("<marker> <tag>") only if it starts with it. Empty: no line is.
  std::string_view marker{};
};

/// Per-server settings a parser reads. Built by layering defaults < tag < server with
/// `overlay()`.
struct CheckSettings {
  /// Threshold overrides by NamedThresholds::key; a key not present uses the check's default.
  /// The direction (lower_is_worse) always comes from the check, never from here.
  std::map<std::string, Thresholds, std::less<>> thresholds;
  std::vector<std::uint16_t> expected_ports;      ///< TCP ports that must be listening
  std::vector<std::string> ignored_mounts;        ///< mount points skipped by disk and ro checks
  std::vector<std::string> ignored_fstypes;       ///< extra fs types skipped (beyond pseudo/net)
  std::vector<std::string> ignored_units;         ///< systemd units whose failure is accepted
  std::vector<std::string> ignored_log_patterns;  ///< kernel log lines containing one are skipped
  /// oom_kill counter value already accounted for (the runner stores the last one seen, or an
  /// operator acknowledged it); unset: every OOM kill since boot counts.
  std::optional<std::uint64_t> oom_kill_baseline;

  /// Thresholds for `key`: the override's levels if present, else `defaults`; the direction is
  /// always the one of `defaults`.
  [[nodiscard]] Thresholds thresholds_for(std::string_view key, const Thresholds& defaults) const;
};

/// `base` with `layer` applied: threshold keys in `layer` replace those in `base` (whole
/// Thresholds), lists are appended, an optional set in `layer` replaces `base`'s.
[[nodiscard]] CheckSettings overlay(CheckSettings base, const CheckSettings& layer);

/// A pure parser: turns one command's output into a result. Never throws; malformed input gives
/// UNKNOWN with a reason.
using Parser = CheckResult (*)(const CheckInput& input, const CheckSettings& settings);

/// A check as data: what to run on the server and how to judge its output.
struct CheckDefinition {
  std::string name;     ///< stable id ("disk_space"), also CheckResult::name
  std::string summary;  ///< one line for docs and `--help`
  /// POSIX sh; starts with `LC_ALL=C`; hang-prone tools run under `timeout` when the server has
  /// one. Framing lines on stdout separate sections or say why it cannot run: `echo "$HM <tag>"`
  /// (`printf '%s <tag> %s\n' "$HM" "$value"` when a value follows). The runner's prologue
  /// (runner.hpp, kDrawMarker) draws HM, a random marker, on the server before the command: it is
  /// on no command line, so mount sources, process names, log lines and file names cannot forge
  /// a framing line.
  std::string command;
  Parser parse = nullptr;
  std::chrono::seconds timeout{15};         ///< healer-side deadline the runner should allow
  std::chrono::seconds cache_for{0};        ///< how long a result stays fresh; 0: run every time
  std::vector<NamedThresholds> thresholds;  ///< what the config may override, with defaults
};

}  // namespace healer::checks
