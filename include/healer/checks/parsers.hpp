#pragma once

#include "healer/checks/check.hpp"

// The pure parsers of the default and seed checks: one command's output in, a CheckResult out.
// Each never throws: a command that could not run (exit 126/127, remote timeout 124, killed,
// a "<marker> unavailable <reason>" framing line, truncated output) or output that does not parse
// gives UNKNOWN with the reason, never CRITICAL. stderr is only quoted in such reasons; the one
// place it decides anything is journalctl's "you are not seeing messages from other users" hint
// (exit 0, no entries), which means "cannot look", not "no errors".
//
// Choices worth knowing (the defaults below say where each level comes from):
// - Pseudo filesystems (tmpfs, devtmpfs, proc, sysfs, cgroup, squashfs/iso9660 images that are
//   always 100 % full...) and network ones (nfs, cifs, sshfs, 9p...) are skipped by the disk and
//   read-only checks. overlay/aufs count only at "/" (a container's root); elsewhere they are a
//   view of a backing filesystem that is checked where it is mounted. GNU df runs with -l, so
//   network filesystems are not even stat()ed (a dead NFS server cannot hang it).
// - Framing lines ("<marker> <tag>", see CheckDefinition::command) count only with the run's
//   random marker (CheckInput::marker): a mount source, process name, unit name or log path that
//   prints like one is data. Output with the value after the tag ("<marker> log <n> <path>",
//   "<marker> unit <state> <name>") puts the name last, so it cannot shift the other fields.
// - busybox df has no reliable -T: the command appends /proc/mounts after "<marker> mounts" and
//   types come from there; without it the device name decides ("tmpfs", "host:/path").
// - No swap configured is OK (check_swap says CRITICAL; servers and containers without swap are
//   normal).
// - Load is load5 / online CPUs (`getconf _NPROCESSORS_ONLN`, not `nproc`, which honours the
//   caller's affinity and OMP_NUM_THREADS while the load average is system-wide).
// - CPU "busy" is everything but idle and iowait (steal included); one 1 s sample is a
//   snapshot, so alerting on CPU needs repeated results, not one.
// - Processes: zombies by the NRPE sample's check_procs levels; D state 10 / 20, since a few
//   D-state tasks are normal under I/O load and a hung NFS or disk shows as many.
// - Reboot required and an unsynchronised clock are WARNING, fixed (no levels).
// - Listening ports: TCP only, a port counts whatever address it is bound to (127.0.0.1 too).
// - Security updates: apt reads the server's own package lists (no `apt-get update`: that needs
//   root and belongs to the server's timer); dnf/yum refresh expired metadata themselves, hence
//   the long timeout and the 6 h cache_for of the definition.
namespace healer::checks {

/// Threshold keys (CheckSettings::thresholds) and their defaults.
namespace defaults {
/// disk_space: % of blocks used, check_disk's usual -w 15% -c 5% free.
inline constexpr Thresholds kDiskSpace{.warn = 85.0, .crit = 95.0};
/// disk_inodes: % of inodes used, same levels as space.
inline constexpr Thresholds kDiskInodes{.warn = 85.0, .crit = 95.0};
/// memory: % of MemTotal available (lower is worse).
inline constexpr Thresholds kMemory{.warn = 10.0, .crit = 5.0, .lower_is_worse = true};
/// swap: % of swap used, check_swap's usual -w 20% -c 10% free.
inline constexpr Thresholds kSwap{.warn = 80.0, .crit = 90.0};
/// load: 5-minute load average per online CPU.
inline constexpr Thresholds kLoad{.warn = 2.0, .crit = 4.0};
/// cpu.busy / cpu.iowait / cpu.steal: % of CPU time over a 1 s sample.
inline constexpr Thresholds kCpuBusy{.warn = 90.0, .crit = 95.0};
inline constexpr Thresholds kCpuIowait{.warn = 20.0, .crit = 40.0};
inline constexpr Thresholds kCpuSteal{.warn = 10.0, .crit = 20.0};
/// oom_kills: OOM kills not yet accounted for (CheckSettings::oom_kill_baseline): W on any.
inline constexpr Thresholds kOomKills{.warn = 1.0};
/// failed_units: failed systemd units; C on any, like check_systemd.
inline constexpr Thresholds kFailedUnits{.crit = 1.0};
/// clock_skew: |remote clock - healer clock| in seconds, check_ntp_time's -w 60 -c 120.
inline constexpr Thresholds kClockSkew{.warn = 60.0, .crit = 120.0};
/// security_updates: pending security updates; C on any, like check_apt.
inline constexpr Thresholds kSecurityUpdates{.crit = 1.0};
/// kernel_errors: kernel messages at priority err or worse (last hour, or since boot via dmesg).
inline constexpr Thresholds kKernelErrors{.warn = 1.0};
/// read_only_mounts: local filesystems mounted ro; C on any.
inline constexpr Thresholds kReadOnlyMounts{.crit = 1.0};
/// processes.zombie: zombie processes, the check_procs -w 5 -c 10 -s Z of the NRPE sample.
inline constexpr Thresholds kZombies{.warn = 5.0, .crit = 10.0};
/// processes.dstate: processes in uninterruptible sleep (a few are normal under I/O load).
inline constexpr Thresholds kDState{.warn = 10.0, .crit = 20.0};
/// file_descriptors: % of fs.file-max in use.
inline constexpr Thresholds kFileDescriptors{.warn = 80.0, .crit = 90.0};
/// uptime: seconds since boot; W below 10 min (rebooted recently; lower is worse).
inline constexpr Thresholds kUptime{.warn = 600.0, .lower_is_worse = true};
/// listening_ports: expected TCP ports not listening; C on any.
inline constexpr Thresholds kMissingPorts{.crit = 1.0};
/// seed.processes: process count of `ps -e | wc -l`; no levels by default (informational).
inline constexpr Thresholds kSeedProcesses{};
/// app.units: application units not active (any is critical).
inline constexpr Thresholds kAppUnitsDown{.crit = 1.0};
/// app.health: seconds to answer, check_http's usual -w 2 -c 5 style.
inline constexpr Thresholds kAppResponseTime{.warn = 2.0, .crit = 5.0};
/// app.logs: error-looking lines among the last 500 of the worst log file.
inline constexpr Thresholds kAppLogErrors{.warn = 5.0, .crit = 50.0};
}  // namespace defaults

/// disk_space from `df -PT -l` (GNU) or `df -P` + "<marker> mounts" + /proc/mounts (busybox).
/// Pseudo filesystems (tmpfs, squashfs, overlay except at /...) and network filesystems (nfs,
/// cifs, sshfs...) are skipped.
[[nodiscard]] CheckResult parse_disk_space(const CheckInput& input, const CheckSettings& settings);
/// disk_inodes from `df -PTi -l` or `df -Pi` (+ mounts), like parse_disk_space.
[[nodiscard]] CheckResult parse_disk_inodes(const CheckInput& input, const CheckSettings& settings);
/// memory from /proc/meminfo: MemAvailable, or MemFree + Buffers + Cached before Linux 3.14.
[[nodiscard]] CheckResult parse_memory(const CheckInput& input, const CheckSettings& settings);
/// swap from /proc/meminfo; no swap configured is OK.
[[nodiscard]] CheckResult parse_swap(const CheckInput& input, const CheckSettings& settings);
/// load from /proc/loadavg + "<marker> cores" + the online CPU count.
[[nodiscard]] CheckResult parse_load(const CheckInput& input, const CheckSettings& settings);
/// cpu from two "<marker> sample" sections, each the "cpu " line of /proc/stat.
[[nodiscard]] CheckResult parse_cpu(const CheckInput& input, const CheckSettings& settings);
/// oom_kills from the "oom_kill N" line of /proc/vmstat (Linux >= 4.13).
[[nodiscard]] CheckResult parse_oom_kills(const CheckInput& input, const CheckSettings& settings);
/// failed_units from `systemctl --failed --no-legend --plain`.
[[nodiscard]] CheckResult parse_failed_units(const CheckInput& input,
                                             const CheckSettings& settings);
/// time_sync from "<marker> timedatectl" / "chronyc" / "ntpstat" sections; unsynchronised is
/// WARNING (clock_skew judges the actual offset).
[[nodiscard]] CheckResult parse_time_sync(const CheckInput& input, const CheckSettings& settings);
/// clock_skew from `date +%s.%N` against CheckInput::sent_at / received_at.
[[nodiscard]] CheckResult parse_clock_skew(const CheckInput& input, const CheckSettings& settings);
/// reboot_required from "<marker> debian-required" (+ reboot-required.pkgs), "debian-clear" or
/// "needs-restarting" (+ `needs-restarting -r` output); a required reboot is WARNING.
[[nodiscard]] CheckResult parse_reboot_required(const CheckInput& input,
                                                const CheckSettings& settings);
/// security_updates from "<marker> apt" (`apt-get -s dist-upgrade`), "dnf" or "yum"
/// (`updateinfo list --security`).
[[nodiscard]] CheckResult parse_security_updates(const CheckInput& input,
                                                 const CheckSettings& settings);
/// kernel_errors from "<marker> journal" (`journalctl -k -p err -S -1h`) or "dmesg"
/// (`dmesg -l err,crit,alert,emerg`, since boot).
[[nodiscard]] CheckResult parse_kernel_errors(const CheckInput& input,
                                              const CheckSettings& settings);
/// read_only_mounts from /proc/mounts: local filesystems with the `ro` option.
[[nodiscard]] CheckResult parse_read_only_mounts(const CheckInput& input,
                                                 const CheckSettings& settings);
/// processes (zombie and D-state) from `ps -e -o stat= -o pid= -o comm=`, or
/// "<marker> procstat" + /proc/<pid>/stat lines when ps cannot.
[[nodiscard]] CheckResult parse_processes(const CheckInput& input, const CheckSettings& settings);
/// file_descriptors from /proc/sys/fs/file-nr.
[[nodiscard]] CheckResult parse_file_descriptors(const CheckInput& input,
                                                 const CheckSettings& settings);
/// uptime from /proc/uptime.
[[nodiscard]] CheckResult parse_uptime(const CheckInput& input, const CheckSettings& settings);
/// listening_ports from "<marker> ss" (`ss -ltn`) or "proc" (/proc/net/tcp{,6}); every port of
/// CheckSettings::expected_ports must listen on some address.
[[nodiscard]] CheckResult parse_listening_ports(const CheckInput& input,
                                                const CheckSettings& settings);

/// seed.uptime: `uptime` ("up 3 days, 4:05, 2 users, load average: ..."); uptime thresholds.
[[nodiscard]] CheckResult parse_seed_uptime(const CheckInput& input, const CheckSettings& settings);
/// seed.df_root: `df -P /`; disk_space thresholds, no exclusions.
[[nodiscard]] CheckResult parse_seed_df_root(const CheckInput& input,
                                             const CheckSettings& settings);
/// seed.free: `free -b` (procps >= 3.3.10 "available" column, older "-/+ buffers/cache", or
/// busybox); memory thresholds.
[[nodiscard]] CheckResult parse_seed_free(const CheckInput& input, const CheckSettings& settings);
/// seed.loadavg: `cat /proc/loadavg`; the CPU count is unknown, so always OK (perfdata only).
[[nodiscard]] CheckResult parse_seed_loadavg(const CheckInput& input,
                                             const CheckSettings& settings);
/// seed.system_state: `systemctl is-system-running || true`: running OK, degraded / starting
/// WARNING, maintenance / stopping CRITICAL, nothing (no systemd) UNKNOWN.
[[nodiscard]] CheckResult parse_seed_system_state(const CheckInput& input,
                                                  const CheckSettings& settings);
/// seed.processes: `ps -e | wc -l` (the header line is subtracted).
[[nodiscard]] CheckResult parse_seed_processes(const CheckInput& input,
                                               const CheckSettings& settings);
/// seed.meminfo: `head -5 /proc/meminfo`; the memory check on the first five lines.
[[nodiscard]] CheckResult parse_seed_meminfo(const CheckInput& input,
                                             const CheckSettings& settings);

/// app.units: lines "<marker> unit <state> <name>" (`systemctl is-active`); every unit must be
/// active (activating / reloading is WARNING, anything else CRITICAL).
[[nodiscard]] CheckResult parse_app_units(const CheckInput& input, const CheckSettings& settings);
/// app.health: "<marker> curl <http code> <seconds>" or "<marker> wget ok|failed <exit>": 2xx and
/// 3xx are healthy, judged further on the response time; no answer or 4xx/5xx is CRITICAL.
[[nodiscard]] CheckResult parse_app_health(const CheckInput& input, const CheckSettings& settings);
/// app.logs: "<marker> log <error lines> <path>", "<marker> missing <path>" (WARNING) or
/// "<marker> unreadable <path>" (UNKNOWN: healer cannot look, which is not a finding).
[[nodiscard]] CheckResult parse_app_logs(const CheckInput& input, const CheckSettings& settings);

}  // namespace healer::checks
