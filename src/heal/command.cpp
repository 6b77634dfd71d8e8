#include "healer/heal/command.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>

namespace healer::heal {
namespace {

constexpr std::string_view kEnvironment =
    "LC_ALL=C; export LC_ALL; PATH=\"$PATH:/usr/sbin:/sbin\"; export PATH; ";

// Host facts every probe prints: what the server has, and its distribution family (from
// /etc/os-release, read as text, never sourced).
constexpr std::string_view kHostFacts =
    "if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi; "
    "if [ -d /run/systemd/system ] && command -v journalctl >/dev/null 2>&1; then "
    "echo journald=yes; else echo journald=no; fi; "
    "if command -v logrotate >/dev/null 2>&1; then echo logrotate=yes; else echo logrotate=no; "
    "fi; f=other; if [ -r /etc/os-release ]; then "
    "i=$(sed -n 's/^ID=//p; s/^ID_LIKE=//p' /etc/os-release | tr -d '\"' | tr '\\n' ' '); "
    "case \" $i \" in *' debian '*|*' ubuntu '*) f=debian;; *' rhel '*|*' fedora '*|"
    "*' centos '*) f=rhel;; *suse*) f=suse;; *' alpine '*) f=alpine;; *' arch '*) f=arch;; "
    "esac; fi; echo family=$f; ";

constexpr std::array<std::string_view, 5> kHostKeys{"systemd", "journald", "logrotate", "family",
                                                    "privilege"};

bool safe_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '/' || c == ':' || c == '=' || c == '+' || c == '@' || c == '%' ||
         c == ',' || c == '-';
}

// `text` with every {name} replaced by `value_of(name)`.
template <class F>
std::string substitute(std::string_view text, F value_of) {
  std::string out;
  std::size_t at = 0;
  while (at < text.size()) {
    const auto open = text.find('{', at);
    if (open == std::string_view::npos) {
      out.append(text.substr(at));
      break;
    }
    const auto close = text.find('}', open);
    if (close == std::string_view::npos) {
      out.append(text.substr(at));
      break;
    }
    out.append(text.substr(at, open - at));
    out += value_of(std::string(text.substr(open + 1, close - open - 1)));
    at = close + 1;
  }
  return out;
}

std::string quoted_param(const std::map<std::string, std::string>& params,
                         const std::string& name) {
  const auto found = params.find(name);
  return sh_quote(found == params.end() ? std::string() : found->second);
}

std::string plain_param(const std::map<std::string, std::string>& params, const std::string& name) {
  const auto found = params.find(name);
  return found == params.end() ? std::string() : found->second;
}

std::string quoted_argv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& word : argv) {
    if (!out.empty()) {
      out += ' ';
    }
    out += sh_quote(word);
  }
  return out;
}

std::string kind_script(ProbeKind kind, const std::map<std::string, std::string>& params) {
  auto q = [&](const char* name) { return quoted_param(params, name); };
  switch (kind) {
    case ProbeKind::unit:
      return fmt::format(
          "systemctl show -p LoadState -p ActiveState -p SubState -p Result -p NRestarts -- {} "
          "2>/dev/null; ",
          q("unit"));
    case ProbeKind::old_files:
      return fmt::format(
          "d={}; if [ -d \"$d\" ] && [ ! -L \"$d\" ]; then n=$(find \"$d\" -xdev -mindepth 1 "
          "-type f -mtime +{} 2>/dev/null | wc -l | tr -d ' '); echo old_files=$n; "
          "if [ \"$n\" -gt 0 ]; then echo old_files_present=yes; else echo old_files_present=no; "
          "fi; else echo old_files_present=missing_dir; fi; ",
          q("directory"), plain_param(params, "days"));
    case ProbeKind::process:
      // comm may hold any bytes but '\0' and '/': printed last, non-printables as '?'.
      return fmt::format(
          "s=$(cat /proc/{0}/stat 2>/dev/null) || s=; if [ -z \"$s\" ]; then "
          "echo process=gone; else r=${{s##*) }}; set -- $r; if [ \"${{20}}\" = {1} ]; then "
          "echo process=running; else echo process=other; fi; echo proc_state=$1; "
          "c=${{s#*(}}; c=${{c%)*}}; printf 'comm=%s' \"$c\" | tr -c '[:print:]' '?'; echo; fi; ",
          plain_param(params, "pid"), plain_param(params, "start_time"));
    case ProbeKind::journal:
      return "u=$(journalctl --disk-usage 2>/dev/null | sed -n 's/.* take up \\([^ ]*\\) .*/\\1/p' "
             "| head -n 1); echo journal_disk_usage=${u:-unknown}; ";
    case ProbeKind::logrotate:
      return fmt::format("if [ -f {0} ]; then echo config=present; else echo config=missing; fi; ",
                         q("config"));
    case ProbeKind::none:
      break;
  }
  return {};
}

std::vector<std::string> info_facts(ProbeKind kind) {
  switch (kind) {
    case ProbeKind::unit:
      return {"SubState", "NRestarts"};
    case ProbeKind::old_files:
      return {"old_files"};
    case ProbeKind::process:
      return {"proc_state", "comm"};
    case ProbeKind::journal:
      return {"journal_disk_usage"};
    case ProbeKind::logrotate:
    case ProbeKind::none:
      break;
  }
  return {};
}

bool key_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string describe_expected(const std::vector<std::string>& values) {
  return values.size() == 1 ? values.front() : fmt::format("one of {}", fmt::join(values, ", "));
}

}  // namespace

std::string sh_quote(std::string_view word) {
  if (!word.empty() && std::all_of(word.begin(), word.end(), safe_char)) {
    return std::string(word);
  }
  std::string out = "'";
  for (const char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::vector<std::vector<std::string>> render_argv(const ActionSpec& action,
                                                  const std::map<std::string, std::string>& params,
                                                  Privilege privilege) {
  std::vector<std::vector<std::string>> out;
  for (const auto& templ : action.commands) {
    std::vector<std::string> argv;
    if (privilege == Privilege::sudo && action.privilege == Privilege::sudo) {
      argv = {"sudo", "-n", "--"};
    }
    for (const auto& word : templ) {
      argv.push_back(
          substitute(word, [&](const std::string& name) { return plain_param(params, name); }));
    }
    out.push_back(std::move(argv));
  }
  return out;
}

std::string shell_command(const ActionSpec& action,
                          const std::map<std::string, std::string>& params,
                          const std::vector<std::vector<std::string>>& argv) {
  std::string out(kEnvironment);
  if (!action.guard.empty()) {
    out += substitute(action.guard,
                      [&](const std::string& name) { return quoted_param(params, name); });
    out += " && ";
  }
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (i > 0) {
      out += " && ";
    }
    out += quoted_argv(argv[i]);
  }
  return out;
}

std::string probe_command(const ActionSpec& action,
                          const std::map<std::string, std::string>& params, Privilege privilege) {
  std::string out(kEnvironment);
  out += kHostFacts;
  if (privilege == Privilege::sudo && action.privilege == Privilege::sudo) {
    // `sudo -n -l CMD` says whether CMD may run without a password, and runs nothing.
    out += "p=ok; if ! command -v sudo >/dev/null 2>&1; then p=no_sudo; fi; ";
    for (auto argv : render_argv(action, params, Privilege::none)) {
      out += fmt::format(
          "if [ $p = ok ] && ! sudo -n -l -- {} >/dev/null 2>&1 </dev/null; then p=missing; fi; ",
          quoted_argv(argv));
    }
    out += "echo privilege=$p; ";
  }
  out += kind_script(action.probe, params);
  out += "exit 0";
  return out;
}

Facts parse_facts(std::string_view out, ProbeKind kind, Privilege privilege) {
  const auto state_keys = state_facts(kind);
  const auto info_keys = info_facts(kind);
  Facts facts;
  std::size_t at = 0;
  while (at < out.size()) {
    const auto end = out.find('\n', at);
    auto line = out.substr(at, end == std::string_view::npos ? out.size() - at : end - at);
    at = end == std::string_view::npos ? out.size() : end + 1;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq > 32 ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(eq), key_char)) {
      continue;
    }
    const std::string key(line.substr(0, eq));
    // Values are tokens (states, counts, names): anything else is shown as '?', so a fact can
    // never carry a control character or invalid UTF-8 into a plan, its hash or a terminal.
    std::string value(line.substr(eq + 1, 200));
    for (auto& c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7f) {
        c = '?';
      }
    }
    const bool host = std::find(kHostKeys.begin(), kHostKeys.end(), key) != kHostKeys.end() &&
                      (key != "privilege" || privilege == Privilege::sudo);
    if (host || std::find(state_keys.begin(), state_keys.end(), key) != state_keys.end()) {
      facts.state.emplace(key, value);  // the first occurrence wins
    } else if (std::find(info_keys.begin(), info_keys.end(), key) != info_keys.end()) {
      facts.info.emplace(key, value);
    }
  }
  return facts;
}

std::vector<Condition> judge(const std::vector<Expectation>& expectations, const Facts& facts) {
  std::vector<Condition> out;
  for (const auto& expectation : expectations) {
    Condition condition;
    condition.fact = expectation.fact;
    condition.expected = expectation.any_of;
    if (const auto found = facts.state.find(expectation.fact); found != facts.state.end()) {
      condition.actual = found->second;
    }
    condition.holds = std::find(expectation.any_of.begin(), expectation.any_of.end(),
                                condition.actual) != expectation.any_of.end();
    out.push_back(std::move(condition));
  }
  return out;
}

std::optional<std::string> blocked_reason(const ActionSpec& action, Privilege privilege,
                                          const Facts& facts,
                                          const std::vector<Condition>& conditions) {
  auto fact = [&](const char* key) {
    const auto found = facts.state.find(key);
    return found == facts.state.end() ? std::string() : found->second;
  };
  switch (action.requirement) {
    case Requirement::systemd:
      if (fact("systemd") != "yes") {
        return "not_applicable: systemd is not running on the server";
      }
      break;
    case Requirement::journald:
      if (fact("journald") != "yes") {
        return "not_applicable: no systemd journal (journalctl) on the server";
      }
      break;
    case Requirement::logrotate:
      if (fact("logrotate") != "yes") {
        return "not_applicable: logrotate is not installed on the server";
      }
      break;
    case Requirement::none:
      break;
  }
  if (!action.families.empty() && std::find(action.families.begin(), action.families.end(),
                                            fact("family")) == action.families.end()) {
    return fmt::format("not_applicable: the server's family is {}, the action is for {}",
                       fact("family").empty() ? "unknown" : fact("family"),
                       fmt::join(action.families, ", "));
  }
  if (privilege == Privilege::sudo && action.privilege == Privilege::sudo) {
    const auto granted = fact("privilege");
    if (granted == "no_sudo") {
      return "privilege_missing: sudo is not installed on the server (or set [heal] privilege = "
             "\"none\" for a login that has the rights)";
    }
    if (granted != "ok") {
      return "privilege_missing: sudo -n refused (no sudoers rule for this command, or it wants "
             "a password): see `healer heal sudoers`";
    }
  }
  for (const auto& condition : conditions) {
    if (!condition.holds) {
      return fmt::format("precondition: {} is {}, expected {}", condition.fact,
                         condition.actual.empty() ? "not reported" : condition.actual,
                         describe_expected(condition.expected));
    }
  }
  return std::nullopt;
}

std::string_view to_string(RunOutcome outcome) noexcept {
  switch (outcome) {
    case RunOutcome::succeeded:
      return "succeeded";
    case RunOutcome::failed:
      return "failed";
    case RunOutcome::privilege_missing:
      return "privilege_missing";
    case RunOutcome::precondition_failed:
      return "precondition_failed";
    case RunOutcome::timeout:
      return "timeout";
    case RunOutcome::error:
      return "error";
    case RunOutcome::interrupted:
      return "interrupted";
  }
  return "error";
}

RunOutcome classify_exit(std::optional<int> exit_status, std::string_view err,
                         Privilege privilege) {
  if (exit_status == 0) {
    return RunOutcome::succeeded;
  }
  if (privilege == Privilege::sudo) {
    if (exit_status == 1 &&
        (contains(err, "sudo: a password is required") ||
         contains(err, "sudo: a terminal is required") ||
         contains(err, "is not allowed to execute") ||
         contains(err, "is not in the sudoers file") || contains(err, "may not run sudo"))) {
      return RunOutcome::privilege_missing;
    }
    if (exit_status == 127 && contains(err, "sudo")) {
      return RunOutcome::privilege_missing;
    }
  }
  if (exit_status == 97 && contains(err, "healer: guard failed")) {
    return RunOutcome::precondition_failed;
  }
  return RunOutcome::failed;
}

}  // namespace healer::heal
