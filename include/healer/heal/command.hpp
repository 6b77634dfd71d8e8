#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/heal/action.hpp"

// Turning an action and its validated parameters into exactly what runs on the server, and
// reading back what the server says. Pure.
namespace healer::heal {

/// `word` for a POSIX shell: as it is when every character is one of [A-Za-z0-9_./:=+@%,-]
/// (and it is not empty), else in single quotes with each ' written as '\''. No expansion of
/// any kind can happen inside the result.
[[nodiscard]] std::string sh_quote(std::string_view word);

/// The argv lists of `action` with `params` substituted (`{name}` -> value), each prefixed with
/// `sudo -n --` when `privilege` is sudo. `params` must be validated.
[[nodiscard]] std::vector<std::vector<std::string>> render_argv(
    const ActionSpec& action, const std::map<std::string, std::string>& params,
    Privilege privilege);

/// The shell text sent to the server for `argv` (render_argv): the C locale, /usr/sbin and
/// /sbin after the login user's PATH, the action's guard (quoted parameters), then every argv
/// quoted word by word, joined with &&.
[[nodiscard]] std::string shell_command(const ActionSpec& action,
                                        const std::map<std::string, std::string>& params,
                                        const std::vector<std::vector<std::string>>& argv);

/// The read-only probe sent before and after an action (unprivileged): host facts (systemd,
/// journald, logrotate, family), `privilege` (ok | missing, via `sudo -n -l` for each argv)
/// when `privilege` is sudo, then the probe kind's facts. Prints `key=value` lines.
[[nodiscard]] std::string probe_command(const ActionSpec& action,
                                        const std::map<std::string, std::string>& params,
                                        Privilege privilege);

/// What a probe reported, split into state (compared and hashed) and information.
struct Facts {
  std::map<std::string, std::string> state;
  std::map<std::string, std::string> info;
};

/// Reads `key=value` lines of a probe's stdout (untrusted): keys [A-Za-z_]{1,32} that the probe
/// kind (or the host part) prints, the first occurrence of each; values cut at 200 bytes; other
/// lines ignored.
[[nodiscard]] Facts parse_facts(std::string_view out, ProbeKind kind, Privilege privilege);

/// One condition of a step, judged on its facts.
struct Condition {
  std::string fact;
  std::vector<std::string> expected;
  std::string actual;  ///< "" when the probe did not report it
  bool holds = false;
};

/// `expectations` judged on `facts`.
[[nodiscard]] std::vector<Condition> judge(const std::vector<Expectation>& expectations,
                                           const Facts& facts);

/// Why a probed step may not run (nullopt: it may). In order: "not_applicable: ..." (the
/// server lacks what the action requires, or is another family), "privilege_missing: ...",
/// "precondition: ..." (the action's own conditions).
[[nodiscard]] std::optional<std::string> blocked_reason(const ActionSpec& action,
                                                        Privilege privilege, const Facts& facts,
                                                        const std::vector<Condition>& conditions);

/// The outcome of running a step's commands.
enum class RunOutcome {
  succeeded,            ///< exit 0
  failed,               ///< another exit status or a signal
  privilege_missing,    ///< sudo refused: no rule, or it wants a password (never prompted)
  precondition_failed,  ///< the guard found the server changed (exit 97)
  timeout,              ///< the action's timeout passed (the remote command was signalled)
  error,                ///< it could not run (connection, pool)
  interrupted,          ///< healer is stopping (SIGTERM, SIGINT)
};

/// "succeeded", "failed", "privilege_missing", ...
[[nodiscard]] std::string_view to_string(RunOutcome outcome) noexcept;

/// Classifies a command that ran: exit 0 succeeded; with sudo, exit 1 and sudo's own refusal on
/// stderr ("a password is required", "is not allowed to execute", "a terminal is required") or
/// exit 127 for a missing sudo is privilege_missing; exit 97 with the guard's message is
/// precondition_failed; anything else failed.
[[nodiscard]] RunOutcome classify_exit(std::optional<int> exit_status, std::string_view err,
                                       Privilege privilege);

}  // namespace healer::heal
