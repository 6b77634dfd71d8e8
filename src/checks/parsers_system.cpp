// System state checks: systemd units, time, reboot, updates, kernel log, listening ports.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common.hpp"
#include "healer/checks/parsers.hpp"
#include "healer/checks/records.hpp"
#include "text.hpp"

namespace healer::checks {
namespace {

// Unit names are "name.type" (foo.service, bar.timer, dev-sda.device).
bool looks_like_unit(std::string_view name) {
  const auto dot = name.rfind('.');
  return dot != std::string_view::npos && dot > 0 && dot + 1 < name.size() &&
         std::all_of(name.begin() + static_cast<std::ptrdiff_t>(dot) + 1, name.end(),
                     [](char c) { return c >= 'a' && c <= 'z'; });
}

enum class Sync { unknown, yes, no };

Sync yes_no(std::string_view value) {
  value = text::trim(value);
  if (value == "yes") {
    return Sync::yes;
  }
  if (value == "no") {
    return Sync::no;
  }
  return Sync::unknown;
}

// `timedatectl show -p NTPSynchronized` ("NTPSynchronized=yes") or, before systemd 239,
// `timedatectl status` ("System clock synchronized: yes", older "NTP synchronized: yes").
Sync timedatectl_sync(std::string_view body) {
  for (const auto line : text::lines(body)) {
    const auto trimmed = text::trim(line);
    if (trimmed.starts_with("NTPSynchronized=")) {
      return yes_no(trimmed.substr(trimmed.find('=') + 1));
    }
    for (const std::string_view key : {"System clock synchronized:", "NTP synchronized:"}) {
      if (trimmed.starts_with(key)) {
        return yes_no(trimmed.substr(key.size()));
      }
    }
  }
  return Sync::unknown;
}

struct ChronyState {
  Sync sync = Sync::unknown;
  std::optional<double> offset;  // seconds, positive when the local clock is ahead
};

// `chronyc -n tracking`: "Leap status     : Normal" when synchronised, "Not synchronised"
// otherwise; "System time     : 0.000012 seconds fast of NTP time".
ChronyState chrony_state(std::string_view body) {
  ChronyState state;
  for (const auto line : text::lines(body)) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    const auto key = text::trim(line.substr(0, colon));
    const auto value = text::trim(line.substr(colon + 1));
    if (key == "Leap status") {
      state.sync = value == "Not synchronised" ? Sync::no : Sync::yes;
    } else if (key == "System time") {
      const auto parts = text::fields(value);
      if (parts.size() >= 3) {
        if (const auto seconds = text::to_double(parts[0])) {
          state.offset = parts[2] == "slow" ? -*seconds : *seconds;
        }
      }
    }
  }
  return state;
}

// ntpstat: "synchronised to NTP server (...)" or "unsynchronised".
Sync ntpstat_sync(std::string_view body) {
  const auto first = text::first_line_view(body);
  if (first.starts_with("synchronised")) {
    return Sync::yes;
  }
  if (first.starts_with("unsynchronised")) {
    return Sync::no;
  }
  return Sync::unknown;
}

// `date +%s.%N`; busybox or non-GNU date may print "%N" or "N" literally: seconds only then.
struct RemoteTime {
  double seconds = 0;
  bool whole_seconds = false;
};

std::optional<RemoteTime> parse_remote_time(std::string_view out) {
  const auto line = text::first_line_view(out);
  const auto dot = line.find('.');
  const auto whole = text::to_i64(line.substr(0, dot));
  if (!whole || *whole <= 0) {
    return std::nullopt;
  }
  RemoteTime result{static_cast<double>(*whole), true};
  if (dot != std::string_view::npos) {
    const auto fraction = line.substr(dot + 1);
    const bool digits =
        !fraction.empty() && fraction.size() <= 9 &&
        std::all_of(fraction.begin(), fraction.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) {
      result.seconds += static_cast<double>(*text::to_u64(fraction)) /
                        std::pow(10.0, static_cast<double>(fraction.size()));
      result.whole_seconds = false;
    }
  }
  return result;
}

// Lines of a needs-restarting / reboot-required.pkgs listing, as package names.
std::vector<std::string> listed_packages(std::string_view body) {
  std::vector<std::string> packages;
  for (const auto line : text::lines(body)) {
    auto trimmed = text::trim(line);
    if (trimmed.starts_with("* ")) {
      trimmed = text::trim(trimmed.substr(2));
    } else if (line.starts_with(" ") || trimmed.find(' ') != std::string_view::npos) {
      continue;
    }
    if (!trimmed.empty() &&
        std::find(packages.begin(), packages.end(), trimmed) == packages.end()) {
      packages.emplace_back(trimmed);
    }
  }
  return packages;
}

struct UpdateCount {
  std::size_t security = 0;
  std::optional<std::size_t> total;  // known for apt only
};

// `apt-get -s dist-upgrade`: "Inst libc6 [2.36-9] (2.36-9+deb12u4 Debian-Security:12/
// stable-security [amd64])". The origin in parentheses names the security archive.
UpdateCount apt_updates(std::string_view body) {
  UpdateCount count;
  count.total = 0;
  for (const auto line : text::lines(body)) {
    if (!line.starts_with("Inst ")) {
      continue;
    }
    ++*count.total;
    const auto open = line.find('(');
    if (open != std::string_view::npos && text::icontains(line.substr(open), "security")) {
      ++count.security;
    }
  }
  return count;
}

// `dnf|yum updateinfo list --security`: "RHSA-2024:1234 Important/Sec. openssl-3.0.7-25.el9"
// (dnf5: "FEDORA-2024-abc security Moderate pkg 2024-..."). Counts distinct packages.
UpdateCount rpm_security_updates(std::string_view body) {
  std::set<std::string_view> packages;
  for (const auto line : text::lines(body)) {
    const auto parts = text::fields(line);
    if (parts.size() >= 3 && (parts[1].ends_with("/Sec.") || parts[1] == "security")) {
      packages.insert(parts[1] == "security" && parts.size() >= 4 ? parts[3] : parts[2]);
    }
  }
  return UpdateCount{packages.size(), std::nullopt};
}

// journalctl tells a user outside the journal's groups that it cannot see system messages and
// still exits 0 with no entries: that is "cannot look", not "no errors".
bool journal_not_readable(std::string_view err) {
  return text::icontains(err, "not seeing messages from other users") ||
         text::icontains(err, "insufficient permissions") ||
         text::icontains(err, "No journal files were");
}

}  // namespace

CheckResult parse_failed_units(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "failed_units";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  if (input.exit_status != 0) {
    return detail::unknown(kName, "systemctl failed" + detail::exit_note(input));
  }
  std::vector<std::string> failed_units;
  std::size_t ignored = 0;
  std::size_t bad_lines = 0;
  for (const auto line : text::lines(input.out)) {
    auto parts = text::fields(line);
    // Without --plain (or on old systemd) a failed unit line starts with a bullet.
    if (!parts.empty() && (parts[0] == "\xe2\x97\x8f" || parts[0] == "*")) {
      parts.erase(parts.begin());
    }
    if (parts.empty()) {
      continue;
    }
    if (!looks_like_unit(parts[0])) {
      ++bad_lines;
      continue;
    }
    const std::string unit(parts[0]);
    if (std::find(settings.ignored_units.begin(), settings.ignored_units.end(), unit) !=
        settings.ignored_units.end()) {
      ++ignored;
      continue;
    }
    failed_units.push_back(unit);
  }
  if (bad_lines > 0 && failed_units.empty() && ignored == 0) {
    return detail::unknown(
        kName, "cannot parse systemctl --failed output: " + text::first_line(input.out));
  }
  const Thresholds levels = settings.thresholds_for("failed_units", defaults::kFailedUnits);
  const auto count = static_cast<double>(failed_units.size());
  const Status status = levels.evaluate(count);
  std::string message =
      failed_units.empty()
          ? std::string("no failed systemd units")
          : fmt::format("{} failed systemd unit{}: {}", failed_units.size(),
                        failed_units.size() == 1 ? "" : "s", text::join_limited(failed_units, 5));
  if (ignored > 0) {
    message += fmt::format(" ({} ignored)", ignored);
  }
  return detail::make(kName, status, message, {detail::perf("failed", count, "", levels, 0.0)});
}

CheckResult parse_time_sync(const CheckInput& input, const CheckSettings& /*settings*/) {
  static constexpr std::string_view kName = "time_sync";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  std::vector<std::string> says_yes;
  std::vector<std::string> says_no;
  std::optional<double> offset;
  for (const auto& part : text::sections(input.out, input.marker)) {
    Sync sync = Sync::unknown;
    if (part.tag == "timedatectl") {
      sync = timedatectl_sync(part.body);
    } else if (part.tag == "chronyc") {
      const auto state = chrony_state(part.body);
      sync = state.sync;
      offset = state.offset;
    } else if (part.tag == "ntpstat") {
      sync = ntpstat_sync(part.body);
    }
    if (sync == Sync::yes) {
      says_yes.emplace_back(part.tag);
    } else if (sync == Sync::no) {
      says_no.emplace_back(part.tag);
    }
  }
  std::vector<Perfdata> perfdata;
  if (!says_yes.empty() || !says_no.empty()) {
    perfdata.push_back(
        detail::perf("synchronised", says_yes.empty() ? 0.0 : 1.0, "", {}, 0.0, 1.0));
  }
  std::string offset_text;
  if (offset) {
    perfdata.push_back(detail::perf("offset", *offset, "s", {}));
    offset_text = fmt::format("; offset {} s", text::number(*offset, 6));
  }
  if (!says_yes.empty()) {
    return detail::make(
        kName, Status::ok,
        fmt::format("clock synchronised ({}){}", text::join_limited(says_yes, 3), offset_text),
        std::move(perfdata));
  }
  if (!says_no.empty()) {
    return detail::make(
        kName, Status::warning,
        fmt::format("clock not synchronised ({}){}", text::join_limited(says_no, 3), offset_text),
        std::move(perfdata));
  }
  return detail::unknown(kName, "no synchronisation status from timedatectl, chronyc or ntpstat" +
                                    detail::exit_note(input));
}

CheckResult parse_clock_skew(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "clock_skew";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto remote = parse_remote_time(input.out);
  if (!remote) {
    return detail::unknown(kName, "cannot parse the server's time: \"" +
                                      text::first_line(input.out, 40) + "\"" +
                                      detail::exit_note(input));
  }
  if (!input.sent_at && !input.received_at) {
    return detail::unknown(kName, "no healer-side timestamp to compare with");
  }
  // The server read its clock somewhere between sending and receiving: assume the midpoint,
  // with half the round trip as the uncertainty (as NTP does).
  double reference = input.sent_at.value_or(0);
  std::optional<double> uncertainty;
  if (input.sent_at && input.received_at && *input.received_at >= *input.sent_at) {
    reference = (*input.sent_at + *input.received_at) / 2.0;
    uncertainty = (*input.received_at - *input.sent_at) / 2.0;
  } else if (!input.sent_at) {
    reference = *input.received_at;
  }
  if (remote->whole_seconds) {
    uncertainty = uncertainty.value_or(0) + 1.0;
  }
  const double skew = remote->seconds - reference;
  const Thresholds levels = settings.thresholds_for("clock_skew", defaults::kClockSkew);
  const Status status = levels.evaluate(std::fabs(skew));
  std::string message =
      fmt::format("server clock {} s {} healer's{}", text::number(std::fabs(skew), 3),
                  skew >= 0 ? "ahead of" : "behind", detail::mark(status));
  if (uncertainty) {
    message += fmt::format(" (+/- {} s)", text::number(*uncertainty, 3));
  }
  message += " (" + detail::levels_text(levels, " s") + ")";
  return detail::make(kName, status, message, {detail::perf("offset", skew, "s", levels)});
}

CheckResult parse_reboot_required(const CheckInput& input, const CheckSettings& /*settings*/) {
  static constexpr std::string_view kName = "reboot_required";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto parts = text::sections(input.out, input.marker);
  const auto required = [](std::string_view how, const std::vector<std::string>& packages) {
    std::string message = fmt::format("reboot required ({})", how);
    if (!packages.empty()) {
      message += ": " + text::join_limited(packages, 5);
    }
    return detail::make(kName, Status::warning, message,
                        {detail::perf("reboot_required", 1.0, "", {}, 0.0, 1.0)});
  };
  const auto not_required = [](std::string_view how) {
    return detail::make(kName, Status::ok, fmt::format("no reboot required ({})", how),
                        {detail::perf("reboot_required", 0.0, "", {}, 0.0, 1.0)});
  };
  if (const auto* part = text::find_section(parts, "debian-required")) {
    return required("/var/run/reboot-required", listed_packages(part->body));
  }
  if (text::find_section(parts, "debian-clear") != nullptr) {
    return not_required("no /var/run/reboot-required");
  }
  if (const auto* part = text::find_section(parts, "needs-restarting")) {
    // The text is the reliable signal: exit 1 means "reboot required" but also some failures.
    if (text::icontains(part->body, "Reboot is required")) {
      return required("needs-restarting -r", listed_packages(part->body));
    }
    if (text::icontains(part->body, "Reboot should not be necessary")) {
      return not_required("needs-restarting -r");
    }
    return detail::unknown(kName, "unexpected needs-restarting -r output: " +
                                      text::first_line(part->body) + detail::exit_note(input));
  }
  return detail::unknown(kName,
                         "no reboot-required status in the output" + detail::exit_note(input));
}

CheckResult parse_security_updates(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "security_updates";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  if (input.exit_status != 0) {
    return detail::unknown(kName, "package manager failed" + detail::exit_note(input));
  }
  const auto parts = text::sections(input.out, input.marker);
  UpdateCount count;
  std::string_view source;
  if (const auto* part = text::find_section(parts, "apt")) {
    count = apt_updates(part->body);
    source = "apt";
  } else if (const auto* dnf = text::find_section(parts, "dnf")) {
    count = rpm_security_updates(dnf->body);
    source = "dnf";
  } else if (const auto* yum = text::find_section(parts, "yum")) {
    count = rpm_security_updates(yum->body);
    source = "yum";
  } else {
    return detail::unknown(kName, "no package manager output" + detail::exit_note(input));
  }
  const Thresholds levels = settings.thresholds_for("security_updates", defaults::kSecurityUpdates);
  const auto security = static_cast<double>(count.security);
  const Status status = levels.evaluate(security);
  std::string message = fmt::format("{} security update{} pending ({})", count.security,
                                    count.security == 1 ? "" : "s", source);
  std::vector<Perfdata> perfdata = {detail::perf("security", security, "", levels, 0.0)};
  if (count.total) {
    message += fmt::format(", {} upgrade{} in total", *count.total, *count.total == 1 ? "" : "s");
    perfdata.push_back(detail::perf("upgrades", static_cast<double>(*count.total), "", {}, 0.0));
  }
  return detail::make(kName, status, message, std::move(perfdata));
}

CheckResult parse_kernel_errors(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "kernel_errors";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto parts = text::sections(input.out, input.marker);
  const auto* journal = text::find_section(parts, "journal");
  const auto* dmesg = text::find_section(parts, "dmesg");
  if (journal == nullptr && dmesg == nullptr) {
    return detail::unknown(kName, "no journalctl or dmesg output" + detail::exit_note(input));
  }
  // Some journalctl versions (systemd 219, and 247 in some modes) exit 1 when no entry
  // matches; with nothing on stderr and no entry printed that is "no errors".
  const bool journal_empty_exit =
      journal != nullptr && input.exit_status == 1 && text::trim(input.err).empty() &&
      (text::trim(journal->body).empty() || text::trim(journal->body) == "-- No entries --");
  if (input.exit_status != 0 && !journal_empty_exit) {
    return detail::unknown(kName, "cannot read the kernel log" + detail::exit_note(input));
  }
  if (journal != nullptr && journal_not_readable(input.err)) {
    return detail::unknown(kName,
                           "this user cannot read the system journal (needs the systemd-journal "
                           "or adm group)" +
                               detail::exit_note(input));
  }
  std::vector<std::string_view> errors;
  std::size_t ignored = 0;
  for (const auto line : text::lines(journal != nullptr ? journal->body : dmesg->body)) {
    const auto trimmed = text::trim(line);
    if (trimmed.empty() || trimmed.starts_with("-- ")) {
      continue;  // journalctl's "-- No entries --" / "-- Boot ... --"
    }
    const bool skip =
        std::any_of(settings.ignored_log_patterns.begin(), settings.ignored_log_patterns.end(),
                    [trimmed](const std::string& pattern) {
                      return trimmed.find(pattern) != std::string::npos;
                    });
    if (skip) {
      ++ignored;
      continue;
    }
    errors.push_back(trimmed);
  }
  const std::string_view window = journal != nullptr ? "in the last hour" : "since boot (dmesg)";
  const Thresholds levels = settings.thresholds_for("kernel_errors", defaults::kKernelErrors);
  const auto count = static_cast<double>(errors.size());
  const Status status = levels.evaluate(count);
  std::string message =
      fmt::format("{} kernel error{} {}", errors.size(), errors.size() == 1 ? "" : "s", window);
  if (ignored > 0) {
    message += fmt::format(" ({} ignored)", ignored);
  }
  if (!errors.empty()) {
    message += "; last: " + text::one_line(errors.back(), 160);
  }
  return detail::make(kName, status, message, {detail::perf("errors", count, "", levels, 0.0)});
}

CheckResult parse_listening_ports(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "listening_ports";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto parts = text::sections(input.out, input.marker);
  const auto* ss = text::find_section(parts, "ss");
  const auto* proc = text::find_section(parts, "proc");
  if (ss == nullptr && proc == nullptr) {
    return detail::unknown(kName, "no ss or /proc/net/tcp output" + detail::exit_note(input));
  }
  const auto sockets =
      ss != nullptr ? parse_ss_listening(ss->body) : parse_proc_net_tcp(proc->body);
  if (!sockets) {
    return detail::parse_failure(kName, ss != nullptr ? "ss output" : "/proc/net/tcp",
                                 sockets.error(), input);
  }
  std::set<std::uint16_t> listening;
  for (const auto& socket : *sockets) {
    listening.insert(socket.port);
  }
  const std::set<std::uint16_t> expected(settings.expected_ports.begin(),
                                         settings.expected_ports.end());
  std::vector<std::string> missing;
  for (const auto port : expected) {
    if (listening.count(port) == 0) {
      missing.push_back(std::to_string(port));
    }
  }
  std::vector<std::string> listening_text;
  for (const auto port : listening) {
    listening_text.push_back(std::to_string(port));
  }
  const Thresholds levels = settings.thresholds_for("listening_ports", defaults::kMissingPorts);
  const auto missing_count = static_cast<double>(missing.size());
  const Status status = levels.evaluate(missing_count);
  std::vector<Perfdata> perfdata = {
      detail::perf("missing", missing_count, "", levels, 0.0),
      detail::perf("listening", static_cast<double>(listening.size()), "", {}, 0.0)};
  if (expected.empty()) {
    return detail::make(
        kName, status,
        fmt::format("no expected ports configured; {} TCP port{} listening: {}", listening.size(),
                    listening.size() == 1 ? "" : "s", text::join_limited(listening_text, 10)),
        std::move(perfdata));
  }
  if (missing.empty()) {
    return detail::make(kName, status,
                        expected.size() == 1
                            ? fmt::format("expected TCP port {} listening", *expected.begin())
                            : fmt::format("all {} expected TCP ports listening", expected.size()),
                        std::move(perfdata));
  }
  return detail::make(kName, status,
                      fmt::format("{} of {} expected TCP port{} not listening: {}{}",
                                  missing.size(), expected.size(), expected.size() == 1 ? "" : "s",
                                  text::join_limited(missing, 10), detail::mark(status)),
                      std::move(perfdata));
}

}  // namespace healer::checks
