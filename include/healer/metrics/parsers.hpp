#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/procfs/procfs.hpp"

// The pure parsers of the metrics probe: one file's text in, a record out. None throws or reads
// anything but its argument; text that does not parse gives an Error (metrics::Errc), never a
// guess. Lines a parser does not know are skipped, so newer kernels with extra fields still parse.
// The /proc files the checks read too (stat, loadavg, meminfo, vmstat, file-nr, mount paths) are
// parsed once, by healer_procfs (healer/procfs/procfs.hpp); these add node_exporter's names and
// units (seconds, not ticks).
//
// Traps handled here (tests/data/metrics has a fixture for each):
// - /proc/stat: guest and guest_nice are already counted in user and nice; CpuTimes::total()
//   leaves them out. Kernels before 2.6.11 have fewer columns (missing ones are 0).
// - /proc/stat times are in USER_HZ ticks (`getconf CLK_TCK`, 100 on every Linux port in use).
// - /proc/diskstats counts 512-byte sectors whatever the device's sector size; 2.6 partitions
//   have the short 4-counter form (no io_time).
// - /proc/meminfo before 3.14 has no MemAvailable (the metric is then absent, not zero).
// - /proc/net/dev on 2.6 kernels glues big counters to the interface name ("eth0:123456").
// - /proc/mounts escapes space, tab, newline and backslash in paths as \040 \011 \012 \134.
namespace healer::metrics {

/// CPU time of one CPU (or of all), in seconds, by /proc/stat mode.
struct CpuTimes {
  double user = 0.0;
  double nice = 0.0;
  double system = 0.0;
  double idle = 0.0;
  double iowait = 0.0;
  double irq = 0.0;
  double softirq = 0.0;
  double steal = 0.0;
  double guest = 0.0;       ///< already included in user
  double guest_nice = 0.0;  ///< already included in nice

  /// user + nice + system + idle + iowait + irq + softirq + steal (guest not counted twice).
  [[nodiscard]] double total() const noexcept;
};

/// One "cpuN" line of /proc/stat.
struct CpuLine {
  unsigned cpu = 0;
  CpuTimes times;
};

/// /proc/stat.
struct ProcStat {
  std::optional<CpuTimes> all;  ///< the "cpu" line (online CPUs only)
  std::vector<CpuLine> cpus;    ///< "cpuN" lines, in file order (online CPUs only)
  std::optional<std::uint64_t> context_switches;  ///< ctxt
  std::optional<std::uint64_t> boot_time;         ///< btime, Unix seconds
  std::optional<std::uint64_t> procs_running;
  std::optional<std::uint64_t> procs_blocked;
};

/// /proc/loadavg.
using LoadAvg = procfs::LoadAvg;

/// One /proc/meminfo field under its node_exporter name: "MemTotal_bytes" (kB fields, times
/// 1024), "HugePages_Total" (no unit), "Active_anon_bytes" (parentheses become "_").
struct MeminfoField {
  std::string name;
  double value = 0.0;
};

/// The counters of /proc/vmstat the probe exports.
struct VmStat {
  std::optional<std::uint64_t> oom_kill;  ///< Linux >= 4.13
};

/// /proc/sys/fs/file-nr.
struct FileNr {
  std::uint64_t allocated = 0;
  std::uint64_t maximum = 0;
};

/// One line of the probe's "filesystems" section: /proc/mounts fields plus `stat -f` figures.
struct Filesystem {
  std::string device;
  std::string mountpoint;  ///< \040-style escapes decoded
  std::string fstype;
  std::uint64_t size_bytes = 0;
  std::uint64_t free_bytes = 0;   ///< free blocks, root's reserve included
  std::uint64_t avail_bytes = 0;  ///< available to unprivileged users
  std::uint64_t files = 0;
  std::uint64_t files_free = 0;
};

/// One device of /proc/diskstats.
struct DiskStats {
  std::string device;
  std::uint64_t reads_completed = 0;
  std::uint64_t writes_completed = 0;
  std::uint64_t read_bytes = 0;           ///< sectors read * 512
  std::uint64_t written_bytes = 0;        ///< sectors written * 512
  std::optional<double> io_time_seconds;  ///< absent in the short 2.6 partition form
};

/// One interface of /proc/net/dev.
struct NetDev {
  std::string device;
  std::uint64_t receive_bytes = 0;
  std::uint64_t receive_packets = 0;
  std::uint64_t receive_errs = 0;
  std::uint64_t receive_drop = 0;
  std::uint64_t transmit_bytes = 0;
  std::uint64_t transmit_packets = 0;
  std::uint64_t transmit_errs = 0;
  std::uint64_t transmit_drop = 0;
};

/// `uname -s; uname -r; uname -v; uname -m; uname -n`, one per line.
struct Uname {
  std::string sysname;
  std::string release;
  std::string version;
  std::string machine;
  std::string nodename;
};

/// USER_HZ from `getconf CLK_TCK` (a positive integer).
[[nodiscard]] Result<double> parse_clk_tck(std::string_view text);
/// /proc/stat; tick counts divided by `user_hz` (> 0).
[[nodiscard]] Result<ProcStat> parse_proc_stat(std::string_view text, double user_hz);
/// /proc/loadavg.
[[nodiscard]] Result<LoadAvg> parse_loadavg(std::string_view text);
/// /proc/meminfo, fields in file order.
[[nodiscard]] Result<std::vector<MeminfoField>> parse_meminfo(std::string_view text);
/// /proc/vmstat.
[[nodiscard]] Result<VmStat> parse_vmstat(std::string_view text);
/// /proc/sys/fs/file-nr ("allocated unused maximum").
[[nodiscard]] Result<FileNr> parse_file_nr(std::string_view text);
/// The probe's "filesystems" section: "<device> <mountpoint> <fstype> <frsize> <blocks> <bfree>
/// <bavail> <files> <ffree>" per line ("-" instead of the figures when stat failed: skipped).
/// Excluded filesystems (is_excluded_filesystem) are dropped.
[[nodiscard]] Result<std::vector<Filesystem>> parse_filesystems(std::string_view text);
/// /proc/diskstats (full, 4.18+ discard and 5.5+ flush forms, and the short 2.6 partition form);
/// excluded devices (is_excluded_disk) are dropped.
[[nodiscard]] Result<std::vector<DiskStats>> parse_diskstats(std::string_view text);
/// /proc/net/dev.
[[nodiscard]] Result<std::vector<NetDev>> parse_net_dev(std::string_view text);
/// The probe's "uname" section.
[[nodiscard]] Result<Uname> parse_uname(std::string_view text);
/// `date +%s`: the server's clock, Unix seconds.
[[nodiscard]] Result<double> parse_time(std::string_view text);

/// node_exporter's default filesystem exclusions: pseudo filesystems (proc, sysfs, cgroup,
/// overlay, squashfs...) and mount points under /dev, /proc, /sys, /run/credentials,
/// /var/lib/docker, /var/lib/containers/storage; plus network filesystems (nfs, cifs, sshfs,
/// 9p, ceph...), which node_exporter stats but healer never does (a dead NFS server hangs stat).
[[nodiscard]] bool is_excluded_filesystem(std::string_view fstype,
                                          std::string_view mountpoint) noexcept;

/// node_exporter's default diskstats exclusion: ram, zram, loop, fd devices and partitions of
/// hd/sd/vd/xvd and nvme disks.
[[nodiscard]] bool is_excluded_disk(std::string_view device) noexcept;

/// Decodes /proc/mounts octal escapes (\040 -> ' '); anything else stays as it is.
using procfs::decode_mount_path;

}  // namespace healer::metrics
