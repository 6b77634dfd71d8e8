#include "healer/checks/parsers.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "fixture.hpp"

namespace healer::checks {
namespace {

using testing::fixture;

// One row of the table: a parser, its input and what it must conclude.
struct Case {
  std::string label;
  Parser parse;
  std::string out;  // command stdout (fixture contents or inline text)
  Status expected;
  std::string message_contains;
  std::optional<int> exit_status = 0;
  std::string err{};
  std::function<void(CheckSettings&, CheckInput&)> adjust = nullptr;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

class ParserTable : public ::testing::TestWithParam<Case> {};

TEST_P(ParserTable, JudgesAsExpected) {
  const Case& c = GetParam();
  CheckSettings settings;
  CheckInput input;
  const std::string out = testing::framed(c.out);
  input.out = out;
  input.marker = testing::kMarker;
  input.err = c.err;
  input.exit_status = c.exit_status;
  if (c.adjust) {
    c.adjust(settings, input);
  }
  const CheckResult result = c.parse(input, settings);
  EXPECT_EQ(result.status, c.expected) << result.nagios_line();
  EXPECT_NE(result.message.find(c.message_contains), std::string::npos) << result.message;
  EXPECT_EQ(result.message.find('\n'), std::string::npos);
  EXPECT_EQ(result.message.find('|'), std::string::npos);
}

std::string name_of(const ::testing::TestParamInfo<Case>& info) {
  std::string name;
  for (const char c : info.param.label) {
    name.push_back(std::isalnum(static_cast<unsigned char>(c)) != 0 ? c : '_');
  }
  return name;
}

// Inline outputs for the cases a fixture file would not make clearer.
const std::string kUnavailable = "@@healer unavailable systemd not present\n";

INSTANTIATE_TEST_SUITE_P(
    Disk, ParserTable,
    ::testing::Values(
        Case{"space_ok_skips_pseudo_and_network", parse_disk_space, fixture("df_gnu_ok"),
             Status::ok, "space OK on 4 filesystems (W 85%, C 95%); fullest /var 50%"},
        Case{"space_warning", parse_disk_space, fixture("df_gnu_warning"), Status::warning,
             "/var 87.8% used (!)"},
        Case{"space_critical_lists_worst_first", parse_disk_space, fixture("df_gnu_critical"),
             Status::critical, "2 of 3 filesystems low on space (W 85%, C 95%): / 96.4% used (!!)"},
        Case{"space_busybox_types_from_mounts", parse_disk_space, fixture("df_busybox"), Status::ok,
             "space OK on 2 filesystems"},
        Case{"space_busybox_types_from_devices", parse_disk_space, fixture("df_busybox_no_mounts"),
             Status::critical, "1 of 1 filesystem low on space"},
        Case{"space_threshold_override", parse_disk_space, fixture("df_gnu_warning"), Status::ok,
             "W 90%, C 97%", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.thresholds["disk_space"] = Thresholds{.warn = 90.0, .crit = 97.0};
             }},
        Case{"space_ignored_mount", parse_disk_space, fixture("df_gnu_critical"), Status::warning,
             "/var 87.8%", 0, "", [](CheckSettings& s, CheckInput&) { s.ignored_mounts = {"/"}; }},
        Case{"space_partial_output_exit_1_is_data", parse_disk_space, fixture("df_gnu_warning"),
             Status::warning, "/var", 1, "df: /mnt/stale: Stale file handle\n"},
        Case{"space_only_pseudo_is_unknown", parse_disk_space,
             "Filesystem Type 1024-blocks Used Available Capacity Mounted on\n"
             "tmpfs tmpfs 100 100 0 100% /run\n",
             Status::unknown, "no local filesystem to check (1 skipped)"},
        Case{"space_garbage", parse_disk_space, fixture("garbage"), Status::unknown,
             "cannot parse df output"},
        Case{"space_empty_with_error", parse_disk_space, "", Status::unknown,
             "df: cannot read table of mounted file systems", 1,
             "df: cannot read table of mounted file systems: No such file or directory\n"},
        Case{"space_remote_timeout", parse_disk_space, "", Status::unknown,
             "timed out on the server", 124},
        Case{"inodes_warning", parse_disk_inodes, fixture("df_gnu_inodes"), Status::warning,
             "/var 91% used (!) (471843 inodes free)"},
        Case{"inodes_critical_override", parse_disk_inodes, fixture("df_gnu_inodes"),
             Status::critical, "/var 91%", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.thresholds["disk_inodes"] = Thresholds{.warn = 80.0, .crit = 90.0};
             }},
        Case{"inodes_ok", parse_disk_inodes, fixture("df_gnu_inodes"), Status::ok,
             "inodes OK on 2 filesystems", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.thresholds["disk_inodes"] = Thresholds{.warn = 95.0, .crit = 99.0};
             }},
        Case{"ro_all_rw_skips_nfs_and_squashfs", parse_read_only_mounts, fixture("mounts_rw"),
             Status::ok, "all 4 local filesystems mounted read-write"},
        Case{"ro_ext4_critical", parse_read_only_mounts, fixture("mounts_ro_ext4"),
             Status::critical,
             "2 of 3 local filesystems mounted read-only: / (ext4 on /dev/sda1), /srv/archive"},
        Case{"ro_ignored", parse_read_only_mounts, fixture("mounts_ro_ext4"), Status::ok,
             "the 1 local filesystem is mounted read-write", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.ignored_mounts = {"/", "/srv/archive"};
             }},
        Case{"ro_warning_override", parse_read_only_mounts, fixture("mounts_ro_ext4"),
             Status::warning, "read-only", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.thresholds["read_only_mounts"] = Thresholds{.warn = 1.0};
             }},
        Case{"ro_garbage", parse_read_only_mounts, fixture("garbage"), Status::unknown,
             "cannot parse /proc/mounts"}),
    name_of);

INSTANTIATE_TEST_SUITE_P(
    Host, ParserTable,
    ::testing::Values(
        Case{"memory_ok", parse_memory, fixture("meminfo_6.18"), Status::ok, "97.9% available"},
        Case{"memory_pre_3_14", parse_memory, fixture("meminfo_2.6.32"), Status::ok,
             "estimated as MemFree+Buffers+Cached"},
        Case{"memory_warning", parse_memory, fixture("meminfo_pressure_warning"), Status::warning,
             "8% available (!)"},
        Case{"memory_critical", parse_memory, fixture("meminfo_pressure_critical"),
             Status::critical, "3% available (!!)"},
        Case{"memory_truncated", parse_memory, fixture("meminfo_truncated"), Status::unknown,
             "no MemAvailable and no Buffers/Cached"},
        Case{"swap_none_configured", parse_swap, fixture("meminfo_6.18"), Status::ok,
             "no swap configured"},
        Case{"swap_ok", parse_swap, fixture("meminfo_2.6.32"), Status::ok, "2.7% of swap used"},
        Case{"swap_warning", parse_swap, fixture("meminfo_pressure_warning"), Status::warning,
             "85% of swap used (!)"},
        Case{"swap_critical", parse_swap, fixture("meminfo_pressure_critical"), Status::critical,
             "97% of swap used (!!)"},
        Case{"swap_fields_missing", parse_swap, fixture("seed_head5_meminfo"), Status::unknown,
             "no valid SwapTotal/SwapFree"},
        Case{"load_ok", parse_load, fixture("load_4cpu_ok"), Status::ok,
             "load average 0.52 0.48 0.41 on 4 CPUs: 0.12 per CPU"},
        Case{"load_warning", parse_load, fixture("load_4cpu_warning"), Status::warning,
             "2.55 per CPU over 5 min (!)"},
        Case{"load_critical", parse_load, fixture("load_4cpu_critical"), Status::critical,
             "4.6 per CPU"},
        Case{"load_without_cpu_count", parse_load, fixture("loadavg_ok"), Status::unknown,
             "cannot count the online CPUs"},
        Case{"cpu_idle", parse_cpu, fixture("stat_pair_idle"), Status::ok,
             "busy 8%, iowait 0.5%, steal 0%"},
        Case{"cpu_iowait_warning", parse_cpu, fixture("stat_pair_iowait"), Status::warning,
             "iowait 35% (!)"},
        Case{"cpu_steal_critical", parse_cpu, fixture("stat_pair_steal"), Status::critical,
             "steal 25% (!!)"},
        Case{"cpu_busy_critical", parse_cpu, fixture("stat_pair_busy"), Status::critical,
             "busy 96% (!!)"},
        Case{"cpu_counters_backwards", parse_cpu, fixture("stat_pair_backwards"), Status::unknown,
             "went backwards"},
        Case{"cpu_one_sample", parse_cpu, fixture("stat_one_sample"), Status::unknown,
             "expected 2 /proc/stat samples, got 1"},
        Case{"oom_none", parse_oom_kills, fixture("vmstat_oom_kill_0"), Status::ok,
             "0 OOM kills since boot"},
        Case{"oom_any_warns", parse_oom_kills, fixture("vmstat_oom_kill_3"), Status::warning,
             "3 OOM kills since boot"},
        Case{"oom_accounted_for", parse_oom_kills, fixture("vmstat_oom_kill_3"), Status::ok,
             "0 new OOM kills (3 since boot, 3 accounted for)", 0, "",
             [](CheckSettings& s, CheckInput&) { s.oom_kill_baseline = 3; }},
        Case{"oom_rebooted_since_baseline", parse_oom_kills, fixture("vmstat_oom_kill_3"),
             Status::warning, "3 new OOM kills", 0, "",
             [](CheckSettings& s, CheckInput&) { s.oom_kill_baseline = 10; }},
        Case{"oom_old_kernel", parse_oom_kills, "", Status::unknown, "Linux < 4.13"},
        Case{"oom_unreadable", parse_oom_kills, "", Status::unknown,
             "cannot read /proc/vmstat (exit 1: grep: /proc/vmstat: Permission denied)", 1,
             "grep: /proc/vmstat: Permission denied\n"},
        Case{"processes_ok", parse_processes, fixture("ps_states_ok"), Status::ok,
             "0 zombie, 0 in D state of 25 processes"},
        Case{"processes_zombies_warning", parse_processes, fixture("ps_states_zombies_dstate"),
             Status::warning, "6 zombie (!), 4 in D state of 21 processes; D: nfsd[14001]"},
        Case{"processes_dstate_critical", parse_processes, fixture("ps_states_dstate_storm"),
             Status::critical, "24 in D state (!!)"},
        Case{"processes_proc_fallback", parse_processes, fixture("proc_pid_stat"), Status::ok,
             "Z: odd) name[241]"},
        Case{"processes_garbage", parse_processes, fixture("garbage"), Status::unknown,
             "cannot parse ps output"},
        Case{"fds_ok", parse_file_descriptors, fixture("file-nr_ok"), Status::ok,
             "22020 of 2466170 file handles in use: 0.9%"},
        Case{"fds_warning", parse_file_descriptors, fixture("file-nr_warning"), Status::warning,
             "85% (!)"},
        Case{"fds_critical", parse_file_descriptors, fixture("file-nr_critical"), Status::critical,
             "95% (!!)"},
        Case{"fds_garbage", parse_file_descriptors, fixture("file-nr_garbage"), Status::unknown,
             "cannot parse /proc/sys/fs/file-nr"},
        Case{"uptime_ok", parse_uptime, fixture("uptime_ok"), Status::ok, "up 1 h 28 min"},
        Case{"uptime_recent_reboot", parse_uptime, fixture("uptime_recent"), Status::warning,
             "up 5 min; rebooted recently (!)"},
        Case{"uptime_garbage", parse_uptime, fixture("garbage"), Status::unknown,
             "cannot parse /proc/uptime"}),
    name_of);

INSTANTIATE_TEST_SUITE_P(
    System, ParserTable,
    ::testing::Values(
        Case{"units_none_failed", parse_failed_units, "", Status::ok, "no failed systemd units"},
        Case{"units_failed_critical", parse_failed_units, fixture("systemctl_failed"),
             Status::critical, "2 failed systemd units: nginx.service, backup-offsite.timer"},
        Case{"units_bullet_format", parse_failed_units, fixture("systemctl_failed_bullet"),
             Status::critical, "certbot.service"},
        Case{"units_ignored", parse_failed_units, fixture("systemctl_failed"), Status::critical,
             "1 failed systemd unit: nginx.service (1 ignored)", 0, "",
             [](CheckSettings& s, CheckInput&) { s.ignored_units = {"backup-offsite.timer"}; }},
        Case{"units_warning_override", parse_failed_units, fixture("systemctl_failed"),
             Status::warning, "2 failed", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.thresholds["failed_units"] = Thresholds{.warn = 1.0, .crit = 5.0};
             }},
        Case{"units_no_systemd", parse_failed_units, kUnavailable, Status::unknown,
             "systemd not present"},
        Case{"units_bus_failure", parse_failed_units, "", Status::unknown,
             "Failed to connect to bus", 1, "Failed to connect to bus: No such file or directory\n"},
        Case{"units_garbage", parse_failed_units, fixture("garbage"), Status::unknown,
             "cannot parse systemctl --failed output"},
        Case{"time_synchronised", parse_time_sync, fixture("timedatectl_show_yes"), Status::ok,
             "clock synchronised (timedatectl)"},
        Case{"time_not_synchronised", parse_time_sync, fixture("timedatectl_show_no"),
             Status::warning, "clock not synchronised (timedatectl)"},
        Case{"time_old_timedatectl", parse_time_sync, fixture("timedatectl_status_old"),
             Status::warning, "not synchronised"},
        Case{"time_chrony_overrides_timedatectl", parse_time_sync, fixture("chronyc_tracking"),
             Status::ok, "clock synchronised (chronyc); offset -0.000012 s"},
        Case{"time_chrony_unsynchronised", parse_time_sync, fixture("chronyc_unsynced"),
             Status::warning, "clock not synchronised (chronyc)"},
        Case{"time_ntpstat", parse_time_sync, fixture("ntpstat_synced"), Status::ok,
             "(ntpstat)"},
        Case{"time_no_tool", parse_time_sync,
             "@@healer unavailable no timedatectl, chronyc or ntpstat\n", Status::unknown,
             "no timedatectl, chronyc or ntpstat"},
        Case{"time_chronyd_down", parse_time_sync, "@@healer chronyc\n", Status::unknown,
             "506 Cannot talk to daemon", 0, "506 Cannot talk to daemon\n"},
        Case{"skew_ok", parse_clock_skew, "1700000000.250000000\n", Status::ok,
             "server clock 0.25 s ahead of healer's (+/- 0.05 s)", 0, "",
             [](CheckSettings&, CheckInput& in) {
               in.sent_at = 1699999999.95;
               in.received_at = 1700000000.05;
             }},
        Case{"skew_warning", parse_clock_skew, "1700000090.000000000\n", Status::warning,
             "90 s ahead of healer's (!)", 0, "",
             [](CheckSettings&, CheckInput& in) { in.sent_at = 1700000000.0; }},
        Case{"skew_critical_behind", parse_clock_skew, "1699999850.5\n", Status::critical,
             "149.5 s behind healer's (!!)", 0, "",
             [](CheckSettings&, CheckInput& in) { in.received_at = 1700000000.0; }},
        Case{"skew_busybox_date_without_nanoseconds", parse_clock_skew, "1700000001.%N\n",
             Status::ok, "1 s ahead of healer's (+/- 1 s)", 0, "",
             [](CheckSettings&, CheckInput& in) {
               in.sent_at = 1700000000.0;
               in.received_at = 1700000000.0;
             }},
        Case{"skew_no_local_time", parse_clock_skew, "1700000000.25\n", Status::unknown,
             "no healer-side timestamp"},
        Case{"skew_garbage", parse_clock_skew, fixture("garbage"), Status::unknown,
             "cannot parse the server's time", 0, "",
             [](CheckSettings&, CheckInput& in) { in.sent_at = 1700000000.0; }},
        Case{"reboot_debian_required", parse_reboot_required, fixture("reboot_debian_required"),
             Status::warning,
             "reboot required (/var/run/reboot-required): linux-image-6.1.0-18-amd64, libc6"},
        Case{"reboot_debian_clear", parse_reboot_required, fixture("reboot_debian_clear"),
             Status::ok, "no reboot required"},
        Case{"reboot_rhel_required", parse_reboot_required,
             fixture("reboot_needs_restarting_required"), Status::warning,
             "reboot required (needs-restarting -r): kernel, systemd", 1},
        Case{"reboot_rhel_clear", parse_reboot_required, fixture("reboot_needs_restarting_clear"),
             Status::ok, "no reboot required (needs-restarting -r)"},
        Case{"reboot_rhel_error", parse_reboot_required, "@@healer needs-restarting\n",
             Status::unknown, "unexpected needs-restarting -r output", 1,
             "Error: This command has to be run with superuser privileges\n"},
        Case{"reboot_unsupported", parse_reboot_required,
             "@@healer unavailable no /var/run/reboot-required support and no needs-restarting\n",
             Status::unknown, "no /var/run/reboot-required support"},
        Case{"security_apt_critical", parse_security_updates, fixture("apt_simulate_security"),
             Status::critical, "2 security updates pending (apt), 4 upgrades in total"},
        Case{"security_apt_none", parse_security_updates, fixture("apt_simulate_none"),
             Status::ok, "0 security updates pending (apt), 0 upgrades in total"},
        Case{"security_dnf_critical", parse_security_updates, fixture("dnf_updateinfo_security"),
             Status::critical, "4 security updates pending (dnf)"},
        Case{"security_dnf_none", parse_security_updates, fixture("dnf_updateinfo_none"),
             Status::ok, "0 security updates pending (dnf)"},
        Case{"security_warning_override", parse_security_updates,
             fixture("apt_simulate_security"), Status::warning, "2 security updates", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.thresholds["security_updates"] = Thresholds{.warn = 1.0, .crit = 10.0};
             }},
        Case{"security_dnf_failure", parse_security_updates, "@@healer dnf\n", Status::unknown,
             "package manager failed (exit 1: Error: Failed to download metadata", 1,
             "Error: Failed to download metadata for repo 'baseos'\n"},
        Case{"kernel_errors_warning", parse_kernel_errors, fixture("journal_kernel_errors"),
             Status::warning, "3 kernel errors in the last hour; last: 2024-03-12T10:12:44"},
        Case{"kernel_errors_none", parse_kernel_errors, fixture("journal_kernel_none"),
             Status::ok, "0 kernel errors in the last hour"},
        Case{"kernel_errors_none_old_journalctl_exit_1", parse_kernel_errors,
             "@@healer journal\n-- No entries --\n", Status::ok, "0 kernel errors", 1},
        Case{"kernel_errors_ignored_patterns", parse_kernel_errors,
             fixture("journal_kernel_errors"), Status::warning, "1 kernel error in the last hour "
             "(2 ignored); last: 2024-03-12T09:41:07", 0, "",
             [](CheckSettings& s, CheckInput&) {
               s.ignored_log_patterns = {"ACPI Error", "blk_update_request"};
             }},
        Case{"kernel_errors_dmesg", parse_kernel_errors, fixture("dmesg_errors"),
             Status::warning, "1 kernel error since boot (dmesg)"},
        Case{"kernel_errors_journal_not_readable", parse_kernel_errors, "@@healer journal\n",
             Status::unknown, "cannot read the system journal", 0,
             "Hint: You are currently not seeing messages from other users and the system.\n"},
        Case{"kernel_errors_dmesg_restricted", parse_kernel_errors, "@@healer dmesg\n",
             Status::unknown, "Operation not permitted", 1,
             "dmesg: read kernel buffer failed: Operation not permitted\n"},
        Case{"ports_none_expected", parse_listening_ports, fixture("ss_ltn"), Status::ok,
             "no expected ports configured; 6 TCP ports listening: 22, 53, 80, 443, 5432, 9100"},
        Case{"ports_all_expected_listen", parse_listening_ports, fixture("ss_ltn"), Status::ok,
             "all 3 expected TCP ports listening", 0, "",
             [](CheckSettings& s, CheckInput&) { s.expected_ports = {22, 443, 5432, 443}; }},
        Case{"ports_missing_critical", parse_listening_ports, fixture("ss_ltn"),
             Status::critical, "2 of 3 expected TCP ports not listening: 3306, 6379 (!!)", 0, "",
             [](CheckSettings& s, CheckInput&) { s.expected_ports = {22, 3306, 6379}; }},
        Case{"ports_old_ss", parse_listening_ports, fixture("ss_ltn_old"), Status::ok,
             "all 2 expected", 0, "",
             [](CheckSettings& s, CheckInput&) { s.expected_ports = {22, 25}; }},
        Case{"ports_proc_fallback", parse_listening_ports, fixture("proc_net_tcp"), Status::ok,
             "all 3 expected", 0, "",
             [](CheckSettings& s, CheckInput&) { s.expected_ports = {22, 80, 5432}; }},
        Case{"ports_proc_missing", parse_listening_ports, fixture("proc_net_tcp"),
             Status::critical, "not listening: 443", 0, "",
             [](CheckSettings& s, CheckInput&) { s.expected_ports = {443}; }},
        Case{"ports_garbage", parse_listening_ports, "@@healer ss\n" + fixture("garbage"),
             Status::unknown, "cannot parse ss output"}),
    name_of);

INSTANTIATE_TEST_SUITE_P(
    Seed, ParserTable,
    ::testing::Values(
        Case{"uptime_days", parse_seed_uptime, fixture("seed_uptime_days"), Status::ok,
             "up 3 d 4 h, load average 0 0.01 0.05"},
        Case{"uptime_minutes_warns", parse_seed_uptime, fixture("seed_uptime_minutes"),
             Status::warning, "up 5 min; rebooted recently (!)"},
        Case{"uptime_day_and_minutes", parse_seed_uptime, fixture("seed_uptime_day_min"),
             Status::ok, "up 1 d 0 h"},
        Case{"uptime_busybox", parse_seed_uptime, fixture("seed_uptime_busybox"), Status::ok,
             "up 4 h 5 min, load average 0.33 0.25 0.2"},
        Case{"uptime_garbage", parse_seed_uptime, fixture("garbage"), Status::unknown,
             "cannot parse uptime output"},
        Case{"df_root_warning", parse_seed_df_root, fixture("df_P_root"), Status::warning,
             "/ 87.3% used (!)"},
        Case{"free_procps4", parse_seed_free, fixture("seed_free_procps4"), Status::ok,
             "92% available"},
        Case{"free_procps3_old", parse_seed_free, fixture("seed_free_procps3_old"), Status::ok,
             "75.5% available"},
        Case{"free_low_critical", parse_seed_free, fixture("seed_free_low"), Status::critical,
             "3.7% available (!!)"},
        Case{"free_busybox", parse_seed_free, fixture("seed_free_busybox"), Status::ok,
             "82.2% available"},
        Case{"free_garbage", parse_seed_free, fixture("garbage"), Status::unknown,
             "cannot parse free output"},
        Case{"loadavg", parse_seed_loadavg, fixture("loadavg_ok"), Status::ok,
             "load average 0.52 0.48 0.41 (CPU count unknown"},
        Case{"system_running", parse_seed_system_state, "running\n", Status::ok,
             "systemd system state: running"},
        Case{"system_degraded", parse_seed_system_state, "degraded\n", Status::warning, "degraded",
             1},
        Case{"system_maintenance", parse_seed_system_state, "maintenance\n", Status::critical,
             "maintenance", 1},
        Case{"system_offline_container", parse_seed_system_state, "offline\n", Status::unknown,
             "system state \"offline\""},
        Case{"system_systemctl_missing_behind_or_true", parse_seed_system_state, "",
             Status::unknown, "systemctl not available", 0, "sh: 1: systemctl: not found\n"},
        Case{"processes", parse_seed_processes, fixture("seed_ps_wc"), Status::ok, "341 processes"},
        Case{"processes_ps_missing_in_pipe", parse_seed_processes, "0\n", Status::unknown,
             "cannot count processes", 0, "sh: 1: ps: not found\n"},
        Case{"meminfo_head5", parse_seed_meminfo, fixture("seed_head5_meminfo"), Status::ok,
             "97.9% available"},
        Case{"meminfo_head5_pre_3_14", parse_seed_meminfo, fixture("seed_head5_meminfo_2.6.32"),
             Status::ok, "estimated"}),
    name_of);

}  // namespace
}  // namespace healer::checks
