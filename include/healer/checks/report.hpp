#pragma once

#include <string>
#include <vector>

#include "healer/checks/check.hpp"
#include "healer/checks/runner.hpp"

// Pure rendering of diagnoses for people (table, one-line summary), for Nagios (exit code) and
// for machines (JSON). No I/O: the caller prints the strings.
namespace healer::checks {

/// How to render for a terminal. Not an aggregate on purpose.
struct RenderOptions {
  RenderOptions() = default;
  explicit RenderOptions(bool use_color) : color(use_color) {}

  bool color = false;           ///< ANSI colours (the CLI passes isatty(stdout) and NO_COLOR)
  bool show_perfdata = false;   ///< a perfdata line under each check's row
  std::size_t max_message = 0;  ///< cut messages to this many characters; 0: no limit
};

/// A table of one server's checks: a header line with the server and its status, then one row
/// per check (check, status, message, duration), in the diagnosis' order. Ends with '\n'.
[[nodiscard]] std::string render_table(const Diagnosis& diagnosis, const RenderOptions& options);

/// One line for one server: "web1: WARNING - 16 OK, 2 WARNING, 0 CRITICAL, 0 UNKNOWN (1.2 s)",
/// or "web1: UNKNOWN - unreachable: <reason> (0.1 s)". No '\n'.
[[nodiscard]] std::string render_summary(const Diagnosis& diagnosis, const RenderOptions& options);

/// worst() over every check of every diagnosis; OK for no diagnoses, UNKNOWN for a diagnosis
/// without checks.
[[nodiscard]] Status overall_status(const std::vector<Diagnosis>& diagnoses);

/// The Nagios plugin exit code of a set of diagnoses: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, of
/// overall_status() (so UNKNOWN ranks between OK and WARNING, as worst() does).
[[nodiscard]] int nagios_exit_code(const std::vector<Diagnosis>& diagnoses);

/// One diagnosis as a JSON object (text): server, status, exit_code, reachable, error, started_at
/// (ISO 8601 UTC), duration_ms, mode, checks[] {name, status, message, duration_ms, cached,
/// exit_status, error, perfdata[] {label, value, unit, warn, crit, min, max}}. An error is
/// {category, code, name, message}. Absent values are null.
[[nodiscard]] std::string render_json(const Diagnosis& diagnosis, int indent = -1);

/// A set of diagnoses: {"status", "exit_code", "servers": [...]} as render_json() renders each.
/// `indent` < 0: one line.
[[nodiscard]] std::string render_json(const std::vector<Diagnosis>& diagnoses, int indent = -1);

}  // namespace healer::checks
