#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/procfs/errors.hpp"

// One pure parser per Linux /proc file that both the checks and the metrics probe read: the text
// of the file in, a record of what it says out, in the file's own units (ticks, kB as bytes).
// What each module makes of it (CPU seconds, node_exporter names, MemAvailable's pre-3.14
// estimate, thresholds) stays in that module. None reads anything but its argument or throws;
// text that does not parse is an Error (procfs::Errc), never a guess; lines a parser does not
// know are skipped, so newer kernels with more fields still parse. Table-tested through both
// modules' tests on captured files (kernels 2.6 to 6.x, busybox) and fuzzed (fuzz/).
namespace healer::procfs {

/// One field of /proc/meminfo: "MemTotal:  16318508 kB" -> {"MemTotal", 16710152192, true}.
struct MeminfoField {
  std::string key;          ///< as the kernel writes it ("Active(anon)", "HugePages_Total")
  std::uint64_t value = 0;  ///< in bytes when `kilobytes` (the kernel's kB is 1024 bytes)
  bool kilobytes = false;   ///< the line had the "kB" unit
};

/// /proc/meminfo, fields in file order (the first of a repeated key wins). Keys must be
/// [A-Za-z0-9_()]; lines with another unit than kB, or a kB value that overflows in bytes, are
/// skipped. MemTotal is required (Errc::missing_field).
[[nodiscard]] Result<std::vector<MeminfoField>> parse_meminfo(std::string_view text);

/// The value of `key` in parsed /proc/meminfo, if present.
[[nodiscard]] std::optional<std::uint64_t> meminfo_value(const std::vector<MeminfoField>& fields,
                                                         std::string_view key) noexcept;

/// /proc/loadavg: the three load averages (the run queue and last pid fields are ignored).
struct LoadAvg {
  double load1 = 0;
  double load5 = 0;
  double load15 = 0;
};

/// The first three fields of /proc/loadavg's first line: non-negative decimal numbers.
[[nodiscard]] Result<LoadAvg> parse_loadavg(std::string_view text);

/// One CPU line of /proc/stat, in USER_HZ ticks (`getconf CLK_TCK`). Counters a kernel does not
/// print (steal before 2.6.11, guest before 2.6.24) are 0.
struct CpuTicks {
  std::uint64_t user = 0;
  std::uint64_t nice = 0;
  std::uint64_t system = 0;
  std::uint64_t idle = 0;
  std::uint64_t iowait = 0;
  std::uint64_t irq = 0;
  std::uint64_t softirq = 0;
  std::uint64_t steal = 0;
  std::uint64_t guest = 0;       ///< already counted in user
  std::uint64_t guest_nice = 0;  ///< already counted in nice

  /// Every tick once: user + nice + system + idle + iowait + irq + softirq + steal (guest time
  /// is inside user and nice already).
  [[nodiscard]] std::uint64_t total() const noexcept;
};

/// A "cpuN" line of /proc/stat.
struct CpuLine {
  unsigned cpu = 0;
  CpuTicks ticks;
};

/// /proc/stat.
struct Stat {
  std::optional<CpuTicks> all;  ///< the "cpu" line (online CPUs summed)
  std::vector<CpuLine> cpus;    ///< "cpuN" lines in file order (online CPUs only), first wins
  std::optional<std::uint64_t> context_switches;  ///< ctxt
  std::optional<std::uint64_t> boot_time;         ///< btime, Unix seconds
  std::optional<std::uint64_t> procs_running;
  std::optional<std::uint64_t> procs_blocked;
};

/// /proc/stat: a cpu line needs at least user nice system idle (2.4 kernels have no more); a
/// non-numeric counter, a CPU index beyond `unsigned` or a valueless ctxt/btime/procs_* line is
/// Errc::malformed; no cpu line at all is Errc::missing_field.
[[nodiscard]] Result<Stat> parse_stat(std::string_view text);

/// One "name value" counter of /proc/vmstat.
struct VmstatCounter {
  std::string name;
  std::uint64_t value = 0;
};

/// /proc/vmstat (or `grep` lines of it): every "name number" line, in file order; other lines
/// are skipped, and text with none is Errc::malformed.
[[nodiscard]] Result<std::vector<VmstatCounter>> parse_vmstat(std::string_view text);

/// The value of counter `name`, if present.
[[nodiscard]] std::optional<std::uint64_t> vmstat_value(const std::vector<VmstatCounter>& counters,
                                                        std::string_view name) noexcept;

/// /proc/sys/fs/file-nr.
struct FileNr {
  std::uint64_t allocated = 0;
  std::uint64_t unused = 0;  ///< always 0 since Linux 2.6
  std::uint64_t maximum = 0;
};

/// /proc/sys/fs/file-nr: exactly three counts.
[[nodiscard]] Result<FileNr> parse_file_nr(std::string_view text);

/// One line of /proc/mounts, its paths with the kernel's octal escapes decoded.
struct MountEntry {
  std::string device;
  std::string mount_point;
  std::string fstype;
  std::string options;

  /// True when `option` is one of the comma-separated options.
  [[nodiscard]] bool has_option(std::string_view option) const noexcept;
};

/// /proc/mounts (or /proc/self/mounts, /etc/mtab): lines with fewer than four fields or a mount
/// point that is not absolute are skipped; none that parses is Errc::malformed.
[[nodiscard]] Result<std::vector<MountEntry>> parse_mounts(std::string_view text);

/// Decodes the octal escapes the kernel writes in /proc/mounts paths (\040 space, \011 tab,
/// \012 newline, \134 backslash: \[0-3][0-7][0-7]); anything else stays as it is.
[[nodiscard]] std::string decode_mount_path(std::string_view path);

}  // namespace healer::procfs
