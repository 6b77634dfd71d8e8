#include "healer/checks/catalog.hpp"

#include <fmt/format.h>

#include "healer/checks/parsers.hpp"

namespace healer::checks {
namespace {

using std::chrono::seconds;

// Every command runs in the C locale, so numbers, dates and messages have one format.
constexpr std::string_view kPrologue = "LC_ALL=C; export LC_ALL; ";

std::string plain(std::string_view body) { return fmt::format("{}{}", kPrologue, body); }

// Sets T to "timeout <limit>" when the server has a working `timeout` (coreutils, busybox >=
// 1.30; older busybox wants `timeout -t`, so the probe fails there and T stays empty), for the
// body to prefix hang-prone tools with $T. The remote kill matters: a df stuck on a dead NFS
// mount would otherwise outlive healer's deadline on the server.
std::string with_timeout(int limit, std::string_view body) {
  return fmt::format(
      "{}T=; if command -v timeout >/dev/null 2>&1 && timeout 5 true >/dev/null 2>&1; then "
      "T='timeout {}'; fi; {}",
      kPrologue, limit, body);
}

// GNU df: -T for types, -l so network filesystems are neither listed nor stat()ed. busybox
// df has neither: plain -P and the mount table for the types ("df --version" tells them apart).
std::string df_command(std::string_view gnu_flags, std::string_view busybox_flags) {
  return with_timeout(
      10, fmt::format("if df --version >/dev/null 2>&1; then $T df {}; else $T df {}; rc=$?; "
                      "echo \"$HM mounts\"; cat /proc/mounts; exit $rc; fi",
                      gnu_flags, busybox_flags));
}

CheckDefinition define(std::string name, std::string summary, std::string command, Parser parse,
                       std::vector<NamedThresholds> thresholds = {}, seconds timeout = seconds(15),
                       seconds cache_for = seconds(0)) {
  CheckDefinition definition;
  definition.name = std::move(name);
  definition.summary = std::move(summary);
  definition.command = std::move(command);
  definition.parse = parse;
  definition.timeout = timeout;
  definition.cache_for = cache_for;
  definition.thresholds = std::move(thresholds);
  return definition;
}

}  // namespace

std::vector<CheckDefinition> default_checks() {
  std::vector<CheckDefinition> checks;
  checks.push_back(
      define("disk_space", "space used on local filesystems (pseudo and network ones skipped)",
             df_command("-P -T -l", "-P"), parse_disk_space,
             {{"disk_space", defaults::kDiskSpace, "%", "blocks used, per filesystem"}}));
  checks.push_back(
      define("disk_inodes", "inodes used on local filesystems (pseudo and network ones skipped)",
             df_command("-P -T -i -l", "-P -i"), parse_disk_inodes,
             {{"disk_inodes", defaults::kDiskInodes, "%", "inodes used, per filesystem"}}));
  checks.push_back(define("memory", "memory available (MemAvailable, or its pre-3.14 estimate)",
                          plain("cat /proc/meminfo"), parse_memory,
                          {{"memory", defaults::kMemory, "%", "MemAvailable / MemTotal"}}));
  checks.push_back(define("swap", "swap used", plain("cat /proc/meminfo"), parse_swap,
                          {{"swap", defaults::kSwap, "%", "swap used"}}));
  checks.push_back(define(
      "load", "5-minute load average per online CPU",
      plain("cat /proc/loadavg && echo \"$HM cores\" && "
            "{ getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c '^processor' /proc/cpuinfo; }"),
      parse_load, {{"load", defaults::kLoad, "", "load5 / online CPUs"}}));
  checks.push_back(
      define("cpu", "CPU busy, iowait and steal over one second",
             plain("echo \"$HM sample\"; grep '^cpu ' /proc/stat; sleep 1; "
                   "echo \"$HM sample\"; grep '^cpu ' /proc/stat"),
             parse_cpu,
             {{"cpu.busy", defaults::kCpuBusy, "%", "CPU time not idle and not iowait"},
              {"cpu.iowait", defaults::kCpuIowait, "%", "CPU time idle waiting for I/O"},
              {"cpu.steal", defaults::kCpuSteal, "%", "CPU time taken by the hypervisor"}}));
  checks.push_back(
      define("oom_kills", "processes killed by the kernel OOM killer (Linux >= 4.13)",
             plain("grep '^oom_kill ' /proc/vmstat || [ $? -eq 1 ]"), parse_oom_kills,
             {{"oom_kills", defaults::kOomKills, "", "OOM kills not yet accounted for"}}));
  checks.push_back(define(
      "failed_units", "systemd units in the failed state",
      with_timeout(10,
                   "if [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; "
                   "then echo \"$HM unavailable systemd not present\"; "
                   "else $T systemctl --failed --no-legend --plain --no-pager; fi"),
      parse_failed_units, {{"failed_units", defaults::kFailedUnits, "", "failed units"}}));
  checks.push_back(
      define("time_sync", "the clock is disciplined by NTP (timedatectl, chronyc or ntpstat)",
             with_timeout(
                 10,
                 "found=; if command -v timedatectl >/dev/null 2>&1 && [ -d /run/systemd/system ]; "
                 "then found=1; echo \"$HM timedatectl\"; "
                 "$T timedatectl show -p NTPSynchronized 2>/dev/null || $T timedatectl status; fi; "
                 "if command -v chronyc >/dev/null 2>&1; then found=1; echo \"$HM chronyc\"; "
                 "$T chronyc -n tracking; fi; "
                 "if command -v ntpstat >/dev/null 2>&1; then found=1; echo \"$HM ntpstat\"; "
                 "$T ntpstat; fi; "
                 "if [ -z \"$found\" ]; then "
                 "echo \"$HM unavailable no timedatectl, chronyc or ntpstat\"; fi; exit 0"),
             parse_time_sync));
  checks.push_back(
      define("clock_skew", "server clock against healer's, measured over the SSH round trip",
             plain("date +%s.%N"), parse_clock_skew,
             {{"clock_skew", defaults::kClockSkew, "s", "|server clock - healer clock|"}}));
  checks.push_back(define(
      "reboot_required", "a reboot is pending (Debian reboot-required, RHEL needs-restarting)",
      with_timeout(30,
                   "if [ -f /var/run/reboot-required ]; then echo \"$HM debian-required\"; "
                   "cat /var/run/reboot-required.pkgs 2>/dev/null; exit 0; fi; "
                   "if command -v needs-restarting >/dev/null 2>&1; then "
                   "echo \"$HM needs-restarting\"; $T needs-restarting -r; exit $?; fi; "
                   "if [ -f /etc/debian_version ]; then echo \"$HM debian-clear\"; exit 0; fi; "
                   "echo \"$HM unavailable no /var/run/reboot-required support and no "
                   "needs-restarting (dnf-utils or yum-utils)\""),
      parse_reboot_required, {}, seconds(45), seconds(3600)));
  checks.push_back(
      define("security_updates", "pending security updates (apt, dnf or yum; slow, cached 6 h)",
             with_timeout(240,
                          "if command -v apt-get >/dev/null 2>&1; then echo \"$HM apt\"; "
                          "$T apt-get -s -o Debug::NoLocking=true dist-upgrade; "
                          "elif command -v dnf >/dev/null 2>&1; then echo \"$HM dnf\"; "
                          "$T dnf -q updateinfo list --security; "
                          "elif command -v yum >/dev/null 2>&1; then echo \"$HM yum\"; "
                          "$T yum -q updateinfo list security; "
                          "else echo \"$HM unavailable no apt-get, dnf or yum\"; fi"),
             parse_security_updates,
             {{"security_updates", defaults::kSecurityUpdates, "", "pending security updates"}},
             seconds(300), seconds(6 * 3600)));
  checks.push_back(define(
      "kernel_errors", "kernel messages at priority err or worse (journal: last hour)",
      with_timeout(
          20,
          "if command -v journalctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then "
          "echo \"$HM journal\"; $T journalctl -k -p err -S -1h -q --no-pager -o short-iso; "
          "elif command -v dmesg >/dev/null 2>&1; then echo \"$HM dmesg\"; "
          "$T dmesg -l err,crit,alert,emerg; "
          "else echo \"$HM unavailable no journalctl or dmesg\"; fi"),
      parse_kernel_errors,
      {{"kernel_errors", defaults::kKernelErrors, "", "kernel error messages"}}, seconds(30)));
  checks.push_back(define(
      "read_only_mounts", "local filesystems mounted read-only", plain("cat /proc/mounts"),
      parse_read_only_mounts,
      {{"read_only_mounts", defaults::kReadOnlyMounts, "", "local filesystems mounted ro"}}));
  checks.push_back(
      define("processes", "zombie and D-state (uninterruptible) processes",
             plain("ps -e -o stat= -o pid= -o comm= 2>/dev/null || "
                   "{ echo \"$HM procstat\"; cat /proc/[0-9]*/stat 2>/dev/null; true; }"),
             parse_processes,
             {{"processes.zombie", defaults::kZombies, "", "zombie processes"},
              {"processes.dstate", defaults::kDState, "", "processes in D state"}}));
  checks.push_back(define(
      "file_descriptors", "system-wide file handles in use", plain("cat /proc/sys/fs/file-nr"),
      parse_file_descriptors,
      {{"file_descriptors", defaults::kFileDescriptors, "%", "handles in use / fs.file-max"}}));
  checks.push_back(define("uptime", "time since boot (a recent reboot warns)",
                          plain("cat /proc/uptime"), parse_uptime,
                          {{"uptime", defaults::kUptime, "s", "seconds since boot"}}));
  checks.push_back(
      define("listening_ports", "TCP ports the server's applications must listen on",
             plain("if command -v ss >/dev/null 2>&1; then echo \"$HM ss\"; ss -ltn; "
                   "else echo \"$HM proc\"; { head -1 /proc/net/tcp; "
                   "grep -h ' 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; true; }; fi"),
             parse_listening_ports,
             {{"listening_ports", defaults::kMissingPorts, "", "expected ports not listening"}}));
  return checks;
}

std::vector<CheckDefinition> seed_checks() {
  std::vector<CheckDefinition> checks;
  checks.push_back(define("seed.uptime", "seed: uptime", plain("uptime"), parse_seed_uptime,
                          {{"uptime", defaults::kUptime, "s", "seconds since boot"}}));
  checks.push_back(define("seed.df_root", "seed: space on /", plain("df -P /"), parse_seed_df_root,
                          {{"disk_space", defaults::kDiskSpace, "%", "blocks used on /"}}));
  checks.push_back(define("seed.free", "seed: memory from free", plain("free -b"), parse_seed_free,
                          {{"memory", defaults::kMemory, "%", "available / total"}}));
  checks.push_back(define("seed.loadavg", "seed: load averages (not judged)",
                          plain("cat /proc/loadavg"), parse_seed_loadavg));
  checks.push_back(define("seed.system_state", "seed: systemd system state",
                          plain("systemctl is-system-running || true"), parse_seed_system_state));
  checks.push_back(define("seed.processes", "seed: process count", plain("ps -e | wc -l"),
                          parse_seed_processes,
                          {{"seed.processes", defaults::kSeedProcesses, "", "processes"}}));
  checks.push_back(define("seed.meminfo", "seed: memory from the head of /proc/meminfo",
                          plain("head -5 /proc/meminfo"), parse_seed_meminfo,
                          {{"memory", defaults::kMemory, "%", "MemAvailable / MemTotal"}}));
  return checks;
}

namespace {

// 'text' for sh: single quotes, each ' written as '\''.
std::string sh_quote(std::string_view text) {
  std::string out = "'";
  for (const char c : text) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    out += ' ';
    out += sh_quote(item);
  }
  return out;
}

}  // namespace

std::vector<CheckDefinition> application_checks(const ApplicationSpec& app) {
  std::vector<CheckDefinition> checks;
  if (!app.units.empty()) {
    checks.push_back(
        define("app.units", fmt::format("{}: systemd units active", app.name),
               plain(fmt::format(
                   "if ! command -v systemctl >/dev/null 2>&1 || [ ! -d /run/systemd/system ]; "
                   "then echo \"$HM unavailable systemd is not running\"; exit 0; fi; "
                   "for u in{}; do printf '%s unit %s %s\\n' \"$HM\" "
                   "\"$(systemctl is-active \"$u\" 2>/dev/null)\" \"$u\"; done",
                   quoted_list(app.units))),
               parse_app_units,
               {{"app.units", defaults::kAppUnitsDown, "", "application units not active"}}));
  }
  if (!app.health_url.empty()) {
    const auto url = sh_quote(app.health_url);
    checks.push_back(define(
        "app.health", fmt::format("{}: health URL answers", app.name),
        plain(fmt::format(
            "if command -v curl >/dev/null 2>&1; then r=$(curl -sS -o /dev/null -m 10 -w "
            "'%{{http_code}} %{{time_total}}' {0}); e=$?; echo \"$HM curl $e ${{r:-000 0}}\"; "
            "elif command -v wget >/dev/null 2>&1; "
            "then if wget -q -T 10 -O /dev/null {0}; then echo \"$HM wget ok\"; else echo "
            "\"$HM wget failed $?\"; fi; else echo \"$HM unavailable neither curl "
            "nor wget on the server\"; fi",
            url)),
        parse_app_health,
        {{"app.response_time", defaults::kAppResponseTime, "s", "seconds to answer"}}));
  }
  if (!app.log_paths.empty()) {
    checks.push_back(define(
        "app.logs", fmt::format("{}: error lines in the logs", app.name),
        plain(fmt::format(
            "for f in{}; do if [ ! -e \"$f\" ]; then printf '%s missing %s\\n' \"$HM\" \"$f\"; "
            "elif [ ! -r \"$f\" ]; then printf '%s unreadable %s\\n' \"$HM\" \"$f\"; "
            "else n=$(tail -n 500 \"$f\" | grep -ciE 'error|fatal|panic|exception'); "
            "printf '%s log %s %s\\n' \"$HM\" \"$n\" \"$f\"; fi; done",
            quoted_list(app.log_paths))),
        parse_app_logs,
        {{"app.log_errors", defaults::kAppLogErrors, "", "error lines in the last 500"}}));
  }
  return checks;
}

std::optional<CheckDefinition> find_check(std::string_view name) {
  for (auto list : {default_checks(), seed_checks()}) {
    for (auto& definition : list) {
      if (definition.name == name) {
        return std::move(definition);
      }
    }
  }
  return std::nullopt;
}

}  // namespace healer::checks
