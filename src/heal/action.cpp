#include "healer/heal/action.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <set>

#include "healer/heal/errors.hpp"

namespace healer::heal {
namespace {

using std::chrono::seconds;

template <class E, std::size_t N>
std::optional<E> parse_named(std::string_view text,
                             const std::array<std::pair<E, std::string_view>, N>& names) {
  for (const auto& [value, name] : names) {
    if (name == text) {
      return value;
    }
  }
  return std::nullopt;
}

template <class E, std::size_t N>
std::string_view name_of(E value, const std::array<std::pair<E, std::string_view>, N>& names) {
  for (const auto& [candidate, name] : names) {
    if (candidate == value) {
      return name;
    }
  }
  return "unknown";
}

constexpr std::array kRiskNames{std::pair{Risk::low, std::string_view("low")},
                                std::pair{Risk::medium, std::string_view("medium")},
                                std::pair{Risk::high, std::string_view("high")}};
constexpr std::array kPrivilegeNames{std::pair{Privilege::sudo, std::string_view("sudo")},
                                     std::pair{Privilege::none, std::string_view("none")}};
constexpr std::array kRequirementNames{
    std::pair{Requirement::none, std::string_view("none")},
    std::pair{Requirement::systemd, std::string_view("systemd")},
    std::pair{Requirement::journald, std::string_view("journald")},
    std::pair{Requirement::logrotate, std::string_view("logrotate")}};
constexpr std::array kParamTypeNames{
    std::pair{ParamType::unit, std::string_view("unit")},
    std::pair{ParamType::size, std::string_view("size")},
    std::pair{ParamType::days, std::string_view("days")},
    std::pair{ParamType::directory, std::string_view("directory")},
    std::pair{ParamType::logrotate_config, std::string_view("logrotate_config")},
    std::pair{ParamType::pid, std::string_view("pid")},
    std::pair{ParamType::start_time, std::string_view("start_time")},
    std::pair{ParamType::signal, std::string_view("signal")}};
constexpr std::array kProbeNames{std::pair{ProbeKind::none, std::string_view("none")},
                                 std::pair{ProbeKind::unit, std::string_view("unit")},
                                 std::pair{ProbeKind::old_files, std::string_view("old_files")},
                                 std::pair{ProbeKind::process, std::string_view("process")},
                                 std::pair{ProbeKind::journal, std::string_view("journal")},
                                 std::pair{ProbeKind::logrotate, std::string_view("logrotate")}};

// systemd's unit types; a unit name must end with one.
constexpr std::array<std::string_view, 9> kUnitSuffixes{
    ".service", ".socket", ".timer", ".path", ".mount", ".automount", ".swap", ".target", ".slice"};
constexpr std::array<std::string_view, 7> kSignals{"TERM", "KILL", "HUP", "INT",
                                                   "QUIT", "USR1", "USR2"};
constexpr std::string_view kLogrotateDir = "/etc/logrotate.d/";
// The kernel's PID_MAX_LIMIT.
constexpr std::uint64_t kMaxPid = 4194304;

ParamSpec param(std::string name, ParamType type, std::string help,
                std::optional<std::string> default_value = std::nullopt) {
  ParamSpec spec;
  spec.name = std::move(name);
  spec.type = type;
  spec.help = std::move(help);
  spec.default_value = std::move(default_value);
  return spec;
}

std::vector<ActionSpec> make_builtins() {
  std::vector<ActionSpec> actions;
  const Expectation loaded{"LoadState", {"loaded"}};
  const Expectation failed{"ActiveState", {"failed"}};
  const Expectation active{"ActiveState", {"active"}};
  {
    ActionSpec a;
    a.id = "restart_unit";
    a.title = "Restart a failed systemd unit";
    a.risk = Risk::low;
    a.requirement = Requirement::systemd;
    a.params = {param("unit", ParamType::unit, "the unit, e.g. nginx.service")};
    a.commands = {{"systemctl", "restart", "--", "{unit}"}};
    a.timeout = seconds(90);
    a.probe = ProbeKind::unit;
    a.precondition = {loaded, failed};
    a.verification = {active};
    a.rollback =
        "Nothing to undo: a restart changes no configuration. If the unit fails again, read "
        "`journalctl -u UNIT` before restarting it by hand.";
    actions.push_back(std::move(a));
  }
  {
    ActionSpec a;
    a.id = "reset_failed_start";
    a.title = "Reset a unit that hit its start limit, then start it";
    a.risk = Risk::medium;
    a.requirement = Requirement::systemd;
    a.params = {param("unit", ParamType::unit, "the unit, e.g. nginx.service")};
    a.commands = {{"systemctl", "reset-failed", "--", "{unit}"},
                  {"systemctl", "start", "--", "{unit}"}};
    a.timeout = seconds(90);
    a.probe = ProbeKind::unit;
    a.precondition = {loaded, failed, Expectation{"Result", {"start-limit-hit"}}};
    a.verification = {active};
    a.rollback =
        "`systemctl stop UNIT` if it misbehaves. reset-failed cleared systemd's start counter "
        "(NRestarts is shown in the plan): StartLimitBurst counts again from zero.";
    actions.push_back(std::move(a));
  }
  {
    ActionSpec a;
    a.id = "vacuum_journal";
    a.title = "Shrink the systemd journal's archived files to a size";
    a.risk = Risk::low;
    a.requirement = Requirement::journald;
    a.params = {param("size", ParamType::size, "the size to keep, e.g. 500M", "500M")};
    a.commands = {{"journalctl", "--vacuum-size={size}"}};
    a.timeout = seconds(120);
    a.probe = ProbeKind::journal;
    a.rollback = "None: removed archived journal files cannot be restored.";
    actions.push_back(std::move(a));
  }
  {
    ActionSpec a;
    a.id = "delete_old_files";
    a.title = "Delete regular files older than N days under an allow-listed directory";
    a.risk = Risk::low;
    a.params = {param("directory", ParamType::directory, "one of [heal] cleanup_dirs"),
                param("days", ParamType::days, "age in days (find -mtime +N)", "7")};
    // -xdev: never into another filesystem; -type f: never a directory, link or device; find
    // does not follow symbolic links (-P), the starting point included.
    a.commands = {{"find", "{directory}", "-xdev", "-mindepth", "1", "-type", "f", "-mtime",
                   "+{days}", "-delete"}};
    a.timeout = seconds(300);
    a.probe = ProbeKind::old_files;
    a.precondition = {Expectation{"old_files_present", {"yes"}}};
    a.verification = {Expectation{"old_files_present", {"no"}}};
    a.rollback = "None: deleted files come back only from a backup.";
    actions.push_back(std::move(a));
  }
  {
    ActionSpec a;
    a.id = "rotate_logs";
    a.title = "Force a log rotation for one logrotate configuration";
    a.risk = Risk::low;
    a.requirement = Requirement::logrotate;
    a.params = {param("config", ParamType::logrotate_config,
                      "/etc/logrotate.d/NAME or one of [heal] logrotate_configs")};
    a.commands = {{"logrotate", "-f", "{config}"}};
    a.timeout = seconds(300);
    a.probe = ProbeKind::logrotate;
    a.precondition = {Expectation{"config", {"present"}}};
    a.rollback =
        "Rotated logs are renamed (and maybe compressed), not lost, unless the configuration's "
        "rotate count drops the oldest.";
    actions.push_back(std::move(a));
  }
  {
    ActionSpec a;
    a.id = "kill_process";
    a.title = "Signal a runaway process, named by pid and start time";
    a.risk = Risk::medium;
    a.params = {param("pid", ParamType::pid, "the process id"),
                param("start_time", ParamType::start_time,
                      "its start time, clock ticks since boot (/proc/PID/stat field 22)"),
                param("signal", ParamType::signal, "TERM (default), KILL, ...", "TERM")};
    // The guard runs in the same remote shell right before kill: a pid reused by another
    // process since the plan (different start time) is never signalled. /proc/PID/stat's
    // second field (comm) may hold spaces and ')': the fields after the last ") " start at 3.
    a.guard =
        "s=$(cat /proc/{pid}/stat 2>/dev/null) && r=${s##*) } && set -- $r && "
        "[ \"${20}\" = {start_time} ] || { echo 'healer: guard failed: process {pid} is gone "
        "or is another process now' >&2; exit 97; }";
    a.commands = {{"kill", "-s", "{signal}", "{pid}"}};
    a.timeout = seconds(30);
    a.probe = ProbeKind::process;
    a.precondition = {Expectation{"process", {"running"}}};
    a.verification = {Expectation{"process", {"gone", "other"}}};
    a.rollback = "None: healer does not restart a process; its service manager may.";
    actions.push_back(std::move(a));
  }
  {
    ActionSpec a;
    a.id = "reboot";
    a.title = "Reboot the server in one minute";
    a.risk = Risk::high;
    a.commands = {{"shutdown", "-r", "+1"}};
    a.timeout = seconds(30);
    a.rollback = "Within the minute: `sudo shutdown -c` cancels it.";
    actions.push_back(std::move(a));
  }
  return actions;
}

bool all_of_chars(std::string_view text, bool (*allowed)(char)) {
  return std::all_of(text.begin(), text.end(), allowed);
}

bool unit_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
         c == '_' || c == '.' || c == '@' || c == '-';
}

bool digit(char c) { return c >= '0' && c <= '9'; }

std::optional<std::uint64_t> decimal(std::string_view text, std::size_t max_digits) {
  if (text.empty() || text.size() > max_digits || !all_of_chars(text, digit) ||
      (text.size() > 1 && text.front() == '0')) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> unit_problem(std::string_view unit) {
  if (unit.empty() || unit.size() > 256) {
    return "must be 1 to 256 characters";
  }
  if (!all_of_chars(unit, unit_char)) {
    return "may hold only letters, digits and : _ . @ -";
  }
  if (unit.front() == '-' || unit.front() == '.') {
    return "must not start with '-' or '.'";
  }
  const auto suffix = std::find_if(kUnitSuffixes.begin(), kUnitSuffixes.end(),
                                   [&](std::string_view s) { return unit.ends_with(s); });
  if (suffix == kUnitSuffixes.end()) {
    return "must end with a unit type (.service, .socket, .timer, .path, .mount, .automount, "
           ".swap, .target, .slice)";
  }
  const auto stem = unit.substr(0, unit.size() - suffix->size());
  if (stem.empty() || stem.front() == '@' || stem.back() == '@') {
    return "needs a name (and an instance after '@' for a template)";
  }
  return std::nullopt;
}

bool printable_path_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x20 && u != 0x7f;
}

bool contains(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

Error bad(std::string_view name, std::string_view value, std::string_view why) {
  // The value is echoed escaped: it may be anything a caller sent.
  std::string shown;
  for (const char c : value.substr(0, 120)) {
    const auto u = static_cast<unsigned char>(c);
    shown += (u < 0x20 || u == 0x7f) ? fmt::format("\\x{:02x}", u) : std::string(1, c);
  }
  return make_error(Errc::invalid_parameter,
                    fmt::format("parameter {}='{}'{}: {}", std::string(name), shown,
                                value.size() > 120 ? "..." : "", std::string(why)));
}

// Placeholders "{name}" in `text`, or nullopt when a brace is unbalanced.
std::optional<std::vector<std::string>> placeholders(std::string_view text) {
  std::vector<std::string> names;
  std::size_t at = 0;
  while (at < text.size()) {
    const auto open = text.find('{', at);
    const auto close_early = text.find('}', at);
    if (open == std::string_view::npos) {
      if (close_early != std::string_view::npos) {
        return std::nullopt;
      }
      break;
    }
    if (close_early < open) {
      return std::nullopt;
    }
    const auto close = text.find('}', open);
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    names.emplace_back(text.substr(open + 1, close - open - 1));
    at = close + 1;
  }
  return names;
}

bool identifier(std::string_view text, std::size_t max) {
  if (text.empty() || text.size() > max || !(text.front() >= 'a' && text.front() <= 'z')) {
    return false;
  }
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool program_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '/' || c == '-' || c == '+';
}

}  // namespace

std::string_view to_string(Risk risk) noexcept { return name_of(risk, kRiskNames); }
std::optional<Risk> parse_risk(std::string_view text) noexcept {
  return parse_named(text, kRiskNames);
}
std::string_view to_string(Privilege privilege) noexcept {
  return name_of(privilege, kPrivilegeNames);
}
std::optional<Privilege> parse_privilege(std::string_view text) noexcept {
  return parse_named(text, kPrivilegeNames);
}
std::string_view to_string(Requirement requirement) noexcept {
  return name_of(requirement, kRequirementNames);
}
std::optional<Requirement> parse_requirement(std::string_view text) noexcept {
  return parse_named(text, kRequirementNames);
}
std::string_view to_string(ParamType type) noexcept { return name_of(type, kParamTypeNames); }
std::optional<ParamType> parse_param_type(std::string_view text) noexcept {
  return parse_named(text, kParamTypeNames);
}
std::string_view to_string(ProbeKind kind) noexcept { return name_of(kind, kProbeNames); }
std::optional<ProbeKind> parse_probe_kind(std::string_view text) noexcept {
  return parse_named(text, kProbeNames);
}

std::vector<std::string> state_facts(ProbeKind kind) {
  switch (kind) {
    case ProbeKind::unit:
      return {"LoadState", "ActiveState", "Result"};
    case ProbeKind::old_files:
      return {"old_files_present"};
    case ProbeKind::process:
      return {"process"};
    case ProbeKind::logrotate:
      return {"config"};
    case ProbeKind::journal:
    case ProbeKind::none:
      break;
  }
  return {};
}

const ParamSpec* ActionSpec::param(std::string_view name) const noexcept {
  for (const auto& spec : params) {
    if (spec.name == name) {
      return &spec;
    }
  }
  return nullptr;
}

const std::vector<ActionSpec>& builtin_actions() {
  static const std::vector<ActionSpec> actions = make_builtins();
  return actions;
}

bool valid_cleanup_dir(std::string_view path) noexcept {
  if (path.size() < 2 || path.size() > 1024 || path.front() != '/' || path.back() == '/' ||
      !all_of_chars(path, printable_path_char)) {
    return false;
  }
  std::size_t at = 1;
  while (at <= path.size()) {
    const auto next = path.find('/', at);
    const auto part =
        path.substr(at, next == std::string_view::npos ? path.size() - at : next - at);
    if (part.empty() || part == "." || part == "..") {
      return false;
    }
    if (next == std::string_view::npos) {
      break;
    }
    at = next + 1;
  }
  return true;
}

Result<std::string> validate_parameter(std::string_view name, ParamType type,
                                       std::string_view value, const ValidationContext& context) {
  switch (type) {
    case ParamType::unit:
      if (auto problem = unit_problem(value)) {
        return bad(name, value, "a unit name " + *problem);
      }
      break;
    case ParamType::size: {
      if (value.size() < 2 || (value.back() != 'K' && value.back() != 'M' && value.back() != 'G') ||
          !decimal(value.substr(0, value.size() - 1), 6) ||
          *decimal(value.substr(0, value.size() - 1), 6) == 0) {
        return bad(name, value, "a size is 1 to 999999 followed by K, M or G (e.g. 500M)");
      }
      break;
    }
    case ParamType::days: {
      const auto days = decimal(value, 4);
      if (!days || *days < 1 || *days > 3650) {
        return bad(name, value, "days are a whole number, 1 to 3650");
      }
      break;
    }
    case ParamType::directory:
      if (!contains(context.cleanup_dirs, value)) {
        return bad(name, value,
                   context.cleanup_dirs.empty()
                       ? "no directory is allowed: list them in [heal] cleanup_dirs"
                       : "not one of [heal] cleanup_dirs");
      }
      break;
    case ParamType::logrotate_config: {
      if (contains(context.logrotate_configs, value)) {
        break;
      }
      const auto file = value.starts_with(kLogrotateDir) ? value.substr(kLogrotateDir.size())
                                                         : std::string_view();
      const bool plain_name = !file.empty() && file.size() <= 128 && file.front() != '.' &&
                              file.front() != '-' &&
                              std::all_of(file.begin(), file.end(), [](char c) {
                                return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
                              });
      if (!plain_name) {
        return bad(name, value,
                   "a logrotate configuration is /etc/logrotate.d/NAME (letters, digits, _ . -) or "
                   "one of [heal] logrotate_configs");
      }
      break;
    }
    case ParamType::pid: {
      const auto pid = decimal(value, 7);
      if (!pid || *pid < 2 || *pid > kMaxPid) {
        return bad(name, value, "a process id is a whole number, 2 to 4194304");
      }
      break;
    }
    case ParamType::start_time:
      if (!decimal(value, 20)) {
        return bad(name, value, "a start time is a whole number of clock ticks since boot");
      }
      break;
    case ParamType::signal:
      if (std::find(kSignals.begin(), kSignals.end(), value) == kSignals.end()) {
        return bad(name, value, "a signal is TERM, KILL, HUP, INT, QUIT, USR1 or USR2");
      }
      break;
  }
  return std::string(value);
}

Result<std::map<std::string, std::string>> validate_parameters(
    const ActionSpec& action, const std::map<std::string, std::string>& given,
    const ValidationContext& context) {
  for (const auto& [name, value] : given) {
    if (action.param(name) == nullptr) {
      std::vector<std::string> known;
      for (const auto& spec : action.params) {
        known.push_back(spec.name);
      }
      return make_error(Errc::invalid_parameter,
                        fmt::format("{} has no parameter '{}' ({})", action.id, name,
                                    known.empty() ? std::string("it takes none")
                                                  : fmt::format("{}", fmt::join(known, ", "))));
    }
  }
  std::map<std::string, std::string> out;
  for (const auto& spec : action.params) {
    const auto found = given.find(spec.name);
    if (found == given.end() && !spec.default_value) {
      return make_error(Errc::invalid_parameter, fmt::format("{} needs the parameter {} ({})",
                                                             action.id, spec.name, spec.help));
    }
    const std::string& value = found != given.end() ? found->second : *spec.default_value;
    auto valid = validate_parameter(spec.name, spec.type, value, context);
    if (!valid) {
      return std::move(valid).error();
    }
    out.emplace(spec.name, std::move(*valid));
  }
  return out;
}

Result<void> validate_action(const ActionSpec& action, std::string_view where) {
  auto fail = [&](std::string why) {
    return make_error(Errc::invalid_config, fmt::format("{}: {}", std::string(where), why));
  };
  if (!identifier(action.id, 48)) {
    return fail("id must be 1-48 of [a-z0-9_], starting with a letter");
  }
  for (const auto& builtin : builtin_actions()) {
    if (builtin.id == action.id) {
      return fail(fmt::format("'{}' is a built-in action", action.id));
    }
  }
  if (action.title.empty() || action.title.size() > 200) {
    return fail("title must be 1-200 characters");
  }
  if (!action.guard.empty()) {
    return fail("only built-in actions have a guard");
  }
  std::set<std::string, std::less<>> declared;
  for (const auto& spec : action.params) {
    if (!identifier(spec.name, 32) || !declared.insert(spec.name).second) {
      return fail(fmt::format("parameter '{}' must be a unique name of [a-z0-9_]", spec.name));
    }
  }
  if (action.commands.empty()) {
    return fail("needs argv (an array of strings) or commands (an array of argv arrays)");
  }
  std::set<std::string, std::less<>> used;
  for (const auto& argv : action.commands) {
    if (argv.empty() || argv.front().empty() || !all_of_chars(argv.front(), program_char) ||
        argv.front().front() == '-') {
      return fail(
          "each command's first word is a program name or absolute path ([A-Za-z0-9_./+-]), "
          "without placeholders");
    }
    for (std::size_t i = 1; i < argv.size(); ++i) {
      if (!all_of_chars(argv[i], printable_path_char)) {
        return fail("arguments must be printable text");
      }
      auto names = placeholders(argv[i]);
      if (!names) {
        return fail(fmt::format("argument '{}' has an unbalanced brace", argv[i]));
      }
      for (const auto& name : *names) {
        if (!declared.contains(name)) {
          return fail(fmt::format("argument '{}' uses {{{}}}, which is no declared parameter",
                                  argv[i], name));
        }
        used.insert(name);
      }
    }
  }
  for (const auto& name : declared) {
    if (!used.contains(name)) {
      return fail(fmt::format("parameter '{}' is declared but no argument uses it", name));
    }
  }
  if (action.timeout.count() < 1 || action.timeout.count() > 3600) {
    return fail("timeout must be 1 s to 1 h");
  }
  // A probe reads the parameters it needs by name and type.
  auto needs = [&](std::string_view name, ParamType type) -> Result<void> {
    const auto* spec = action.param(name);
    if (spec == nullptr || spec->type != type) {
      return fail(fmt::format("probe '{}' needs a parameter {} of type {}", to_string(action.probe),
                              std::string(name), to_string(type)));
    }
    return {};
  };
  Result<void> probe_ok;
  switch (action.probe) {
    case ProbeKind::unit:
      probe_ok = needs("unit", ParamType::unit);
      break;
    case ProbeKind::old_files:
      probe_ok = needs("directory", ParamType::directory);
      if (probe_ok) {
        probe_ok = needs("days", ParamType::days);
      }
      break;
    case ProbeKind::process:
      probe_ok = needs("pid", ParamType::pid);
      if (probe_ok) {
        probe_ok = needs("start_time", ParamType::start_time);
      }
      break;
    case ProbeKind::logrotate:
      probe_ok = needs("config", ParamType::logrotate_config);
      break;
    case ProbeKind::journal:
    case ProbeKind::none:
      break;
  }
  if (!probe_ok) {
    return probe_ok;
  }
  const auto facts = state_facts(action.probe);
  for (const auto* list : {&action.precondition, &action.verification}) {
    for (const auto& expectation : *list) {
      if (std::find(facts.begin(), facts.end(), expectation.fact) == facts.end()) {
        return fail(fmt::format("'{}' is not a state fact of probe '{}' ({})", expectation.fact,
                                to_string(action.probe),
                                facts.empty() ? std::string("it has none")
                                              : fmt::format("{}", fmt::join(facts, ", "))));
      }
      if (expectation.any_of.empty()) {
        return fail(fmt::format("'{}' needs at least one expected value", expectation.fact));
      }
    }
  }
  return {};
}

}  // namespace healer::heal
