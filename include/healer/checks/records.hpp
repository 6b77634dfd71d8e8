#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/procfs/procfs.hpp"

// Pure parsers of Linux text interfaces (/proc files and tool outputs): text in, records out.
// They never throw; bad input gives an Error with checks::Errc. The /proc files the metrics probe
// reads too (meminfo, loadavg, stat, vmstat, file-nr, mounts) are parsed once, by healer_procfs;
// the functions here add what the checks conclude from them.
namespace healer::checks {

/// /proc/meminfo, in bytes.
struct MemInfo {
  std::uint64_t total = 0;
  std::uint64_t free = 0;
  /// MemAvailable (Linux >= 3.14); before that MemFree + Buffers + Cached, the figure `free`
  /// printed as "-/+ buffers/cache" (it over-estimates: Cached includes unreclaimable shmem).
  std::uint64_t available = 0;
  bool available_estimated = false;         ///< true when MemAvailable was missing
  std::optional<std::uint64_t> swap_total;  ///< absent in `head -5 /proc/meminfo`
  std::optional<std::uint64_t> swap_free;
};

/// MemTotal, MemFree and MemAvailable (or Buffers + Cached) of procfs::parse_meminfo; a MemTotal
/// of 0 or no MemFree is Errc::missing_field.
[[nodiscard]] Result<MemInfo> parse_meminfo(std::string_view text);

/// /proc/loadavg.
using LoadAvg = procfs::LoadAvg;

/// The first three fields of /proc/loadavg (procfs::parse_loadavg).
[[nodiscard]] Result<LoadAvg> parse_loadavg(std::string_view text);

/// The aggregate "cpu " line of /proc/stat, in clock ticks (steal is 0 before 2.6.11).
using CpuTimes = procfs::CpuTicks;

/// The "cpu " line of /proc/stat (procfs::parse_stat); Errc::missing_field without one.
[[nodiscard]] Result<CpuTimes> parse_proc_stat(std::string_view text);

/// CPU use between two samples, in percent of all ticks.
struct CpuUsage {
  double busy = 0;    ///< everything but idle and iowait
  double iowait = 0;  ///< idle with I/O outstanding
  double steal = 0;   ///< taken by the hypervisor
  std::uint64_t ticks = 0;
};

/// Usage between `before` and `after`; an error when the counters went backwards or no tick
/// passed.
[[nodiscard]] Result<CpuUsage> cpu_usage(const CpuTimes& before, const CpuTimes& after);

/// One row of `df -P[T][i]`: blocks (1024-byte) or inodes, depending on the command.
struct DfRow {
  std::string filesystem;
  std::string fstype;  ///< empty when df had no -T (busybox)
  std::uint64_t total = 0;
  std::uint64_t used = 0;
  std::uint64_t available = 0;
  std::string mount_point;

  /// used / (used + available) in percent, as df computes "Capacity" (reserved blocks count as
  /// unavailable); unset when both are 0 (btrfs inodes, empty pseudo filesystems).
  [[nodiscard]] std::optional<double> used_percent() const noexcept;
};

/// `df` output in POSIX format.
struct DfTable {
  bool has_type = false;  ///< the header had a "Type" column (`df -T`)
  std::vector<DfRow> rows;
};

/// Reads `df -P`, `df -PT`, `df -Pi` or `df -PTi` output (GNU or busybox). Rows that do not
/// parse are skipped; an error when the header is missing or no row parses.
[[nodiscard]] Result<DfTable> parse_df(std::string_view text);

/// One line of /proc/mounts (octal escapes such as `\040` decoded).
using MountEntry = procfs::MountEntry;

/// /proc/mounts (procfs::parse_mounts); lines that do not parse are skipped; an error when none
/// parses.
[[nodiscard]] Result<std::vector<MountEntry>> parse_mounts(std::string_view text);

/// How a filesystem type is treated by the space, inode and read-only checks.
enum class FsClass {
  local,    ///< checked
  pseudo,   ///< kernel or memory filesystems, read-only images (squashfs, iso9660): skipped
  network,  ///< nfs, cifs, sshfs...: skipped (they belong to another server and can hang)
};

/// Classifies an fstype from /proc/mounts or `df -T` ("ext4", "nfs4", "fuse.sshfs").
[[nodiscard]] FsClass classify_fstype(std::string_view fstype) noexcept;

/// Guesses the class from df's "Filesystem" column when no type is known (busybox df without a
/// mount table): "tmpfs", "host:/export" and "//server/share" are recognised.
[[nodiscard]] FsClass classify_device(std::string_view device) noexcept;

/// One process with its state, from `ps -e -o stat= -o pid= -o comm=` or /proc/<pid>/stat.
struct ProcessEntry {
  char state = '?';     ///< R, S, D, Z, T, I...
  std::string command;  ///< may be empty (plain `ps -eo stat`)
  std::optional<std::int64_t> pid;
};

/// Reads `ps -e -o stat= [-o pid= -o comm=]` lines (header lines are skipped).
[[nodiscard]] Result<std::vector<ProcessEntry>> parse_ps_states(std::string_view text);

/// Reads concatenated /proc/<pid>/stat lines ("1 (systemd) S 0 1 ..."); comm may hold spaces
/// and parentheses.
[[nodiscard]] Result<std::vector<ProcessEntry>> parse_proc_pid_stats(std::string_view text);

/// /proc/sys/fs/file-nr.
struct FileNr {
  std::uint64_t allocated = 0;
  std::uint64_t unused = 0;  ///< always 0 since Linux 2.6
  std::uint64_t max = 0;
};

/// /proc/sys/fs/file-nr (procfs::parse_file_nr); a maximum of 0 or more unused than allocated
/// handles is Errc::malformed (no percentage can be judged from it).
[[nodiscard]] Result<FileNr> parse_file_nr(std::string_view text);

/// Reads the first field of /proc/uptime, in seconds.
[[nodiscard]] Result<double> parse_proc_uptime(std::string_view text);

/// The counter `name` of /proc/vmstat lines (procfs::parse_vmstat); Errc::missing_field when
/// absent.
[[nodiscard]] Result<std::uint64_t> parse_counter(std::string_view text, std::string_view name);

/// A listening TCP socket.
struct ListeningSocket {
  std::string address;  ///< "0.0.0.0", "::", "127.0.0.53%lo", "*"
  std::uint16_t port = 0;
};

/// Reads `ss -ltn` output, with or without header and State column.
[[nodiscard]] Result<std::vector<ListeningSocket>> parse_ss_listening(std::string_view text);

/// Reads /proc/net/tcp and /proc/net/tcp6 (concatenated); keeps sockets in state 0A (LISTEN).
[[nodiscard]] Result<std::vector<ListeningSocket>> parse_proc_net_tcp(std::string_view text);

}  // namespace healer::checks
