#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"

// The allow-listed remediation actions as data: what each one runs (an argv template healer
// quotes, never a shell string built from values), which parameters it takes and how each is
// validated, the privilege it needs, what must hold before it runs and what must hold after.
// Pure: no I/O.
namespace healer::heal {

/// How much an action can hurt when it goes wrong. Automatic rules may use low-risk actions
/// only; high-risk actions need an explicit `--allow-risk high` (never automatic).
enum class Risk { low = 0, medium = 1, high = 2 };

/// "low", "medium", "high".
[[nodiscard]] std::string_view to_string(Risk risk) noexcept;
[[nodiscard]] std::optional<Risk> parse_risk(std::string_view text) noexcept;

/// How an action's commands get the rights they need on the server.
enum class Privilege {
  sudo,  ///< `sudo -n --` before each command (a sudoers rule per action, no password)
  none,  ///< run as the login user (root, or a user given the rights another way)
};

[[nodiscard]] std::string_view to_string(Privilege privilege) noexcept;
[[nodiscard]] std::optional<Privilege> parse_privilege(std::string_view text) noexcept;

/// What a server must have for an action to apply.
enum class Requirement { none, systemd, journald, logrotate };

[[nodiscard]] std::string_view to_string(Requirement requirement) noexcept;
[[nodiscard]] std::optional<Requirement> parse_requirement(std::string_view text) noexcept;

/// The validator of a parameter. Each has a strict text form (validate_parameter) and the
/// matching sudoers regular expression (sudoers.hpp).
enum class ParamType {
  unit,              ///< a systemd unit name: [A-Za-z0-9:_.@-], a known suffix (.service...)
  size,              ///< journal size: 1-999999 then K, M or G ("500M")
  days,              ///< whole days, 1-3650
  directory,         ///< exactly one of [heal] cleanup_dirs
  logrotate_config,  ///< /etc/logrotate.d/NAME or one of [heal] logrotate_configs
  pid,               ///< a process id, 2-4194304
  start_time,        ///< a process's start time in clock ticks since boot (/proc/PID/stat 22)
  signal,            ///< TERM, KILL, HUP, INT, QUIT, USR1 or USR2
};

[[nodiscard]] std::string_view to_string(ParamType type) noexcept;
[[nodiscard]] std::optional<ParamType> parse_param_type(std::string_view text) noexcept;

/// One parameter of an action.
struct ParamSpec {
  std::string name;  ///< [a-z_]+; `{name}` in the argv template
  ParamType type = ParamType::unit;
  std::string help;
  std::optional<std::string> default_value;  ///< used when a request leaves it out
};

/// A fact the probe reports must have one of these values ("ActiveState" in {"failed"}).
struct Expectation {
  std::string fact;
  std::vector<std::string> any_of;
};

/// The read-only look at the server before and after an action (run unprivileged). Every probe
/// also reports the host facts (systemd, journald, logrotate, family) and, for sudo, whether
/// `sudo -n -l` allows each command (privilege).
enum class ProbeKind {
  none,
  unit,       ///< systemctl show: LoadState, ActiveState, Result (state); SubState, NRestarts
  old_files,  ///< old_files_present = yes | no | missing_dir (state); old_files (count)
  process,    ///< process = running | gone | other (pid reused) (state); comm, state
  journal,    ///< journal_disk_usage (information only)
  logrotate,  ///< config = present | missing (state)
};

[[nodiscard]] std::string_view to_string(ProbeKind kind) noexcept;
[[nodiscard]] std::optional<ProbeKind> parse_probe_kind(std::string_view text) noexcept;

/// The facts a probe kind reports that count as the server's state (hashed into a plan and
/// compared at apply time); other facts it prints are information.
[[nodiscard]] std::vector<std::string> state_facts(ProbeKind kind);

/// One action of the catalog.
struct ActionSpec {
  std::string id;  ///< stable, [a-z][a-z0-9_]*
  std::string title;
  Risk risk = Risk::low;
  Requirement requirement = Requirement::none;
  /// Distribution families it applies to ("debian", "rhel", "suse", "alpine", "arch"); empty:
  /// any.
  std::vector<std::string> families;
  std::vector<ParamSpec> params;
  /// argv templates run in order (the next only when the previous exited 0); `{param}` may
  /// stand anywhere inside an element but never in the first one (the program).
  std::vector<std::vector<std::string>> commands;
  /// Built-in actions only: an unprivileged POSIX sh test with `{param}`s run right before the
  /// commands in the same remote shell; when it fails the commands do not run (exit 97).
  std::string guard;
  Privilege privilege = Privilege::sudo;  ///< `none`: never needs sudo, whatever the server says
  std::chrono::seconds timeout{60};       ///< for the commands together
  ProbeKind probe = ProbeKind::none;
  std::vector<Expectation> precondition;  ///< must hold (on the probe's facts) to run
  std::vector<Expectation> verification;  ///< must hold after the grace period
  std::string rollback;                   ///< a hint for a person, shown in plans
  bool builtin = true;

  /// Whether a `[[heal.rules]]` entry with `auto = true` may name it.
  [[nodiscard]] bool automatic_allowed() const noexcept { return risk == Risk::low; }
  [[nodiscard]] const ParamSpec* param(std::string_view name) const noexcept;
};

/// The built-in actions: restart_unit, reset_failed_start, vacuum_journal, delete_old_files,
/// rotate_logs, kill_process, reboot.
[[nodiscard]] const std::vector<ActionSpec>& builtin_actions();

/// What parameter validators need from the configuration.
struct ValidationContext {
  std::vector<std::string> cleanup_dirs;       ///< [heal] cleanup_dirs
  std::vector<std::string> logrotate_configs;  ///< [heal] logrotate_configs
};

/// `value` if it is a valid `type`; else heal::Errc::invalid_parameter naming `name` and why.
[[nodiscard]] Result<std::string> validate_parameter(std::string_view name, ParamType type,
                                                     std::string_view value,
                                                     const ValidationContext& context);

/// Every parameter of `action` from `given` (defaults filled in), each validated; an unknown or
/// missing parameter is an error.
[[nodiscard]] Result<std::map<std::string, std::string>> validate_parameters(
    const ActionSpec& action, const std::map<std::string, std::string>& given,
    const ValidationContext& context);

/// Checks an action defined in the config file (`[[heal.actions]]`): id, program names,
/// placeholders against declared parameters, the probe's needs, expectation facts, automatic
/// use. `where` names it in errors.
[[nodiscard]] Result<void> validate_action(const ActionSpec& action, std::string_view where);

/// A directory for [heal] cleanup_dirs: absolute, normalised (no ".", "..", "//", trailing
/// '/'), not "/", printable characters only.
[[nodiscard]] bool valid_cleanup_dir(std::string_view path) noexcept;

}  // namespace healer::heal
