#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// What a simulated host's /proc looks like at a given time. The layout (which meminfo fields,
// which disks and interfaces, which mounts) comes from templates: /proc captures in tests/data,
// or a directory shaped like /proc (the live /proc of this machine gives the same field sets as
// the real server the tests compare with). The values come from the host: CPU count, memory,
// boot time, load and activity drawn from the seed, with counters that grow with time (a slow
// wave on top of a per-host base), so rates between two collections are meaningful and stable.
namespace healer::fleet_sim {

/// The parsed templates, shared by every host. Values in them are what counters had reached
/// after `uptime` seconds; a host scales them to its own uptime and activity.
struct ProcTemplates {
  struct NumberedLine {
    std::string key;
    std::vector<std::uint64_t> numbers;
  };
  struct MeminfoField {
    std::string name;
    std::uint64_t value = 0;
    bool kb = false;  ///< "kB" unit (scaled with the host's memory)
  };
  struct Disk {
    std::string major;
    std::string minor;
    std::string name;
    std::vector<std::uint64_t> stats;
  };
  struct Interface {
    std::string name;
    std::vector<std::uint64_t> counters;
  };
  struct Mount {
    std::string device;      ///< as in /proc/mounts (octal escapes kept)
    std::string mountpoint;  ///< as in /proc/mounts (octal escapes kept)
    std::string fstype;
    std::string options;
  };

  std::vector<NumberedLine> stat_lines;  ///< /proc/stat lines other than "cpu*"
  std::vector<MeminfoField> meminfo;
  std::uint64_t mem_total_kb = 1;
  std::vector<std::pair<std::string, std::uint64_t>> vmstat;
  std::vector<Disk> disks;
  std::vector<Interface> interfaces;
  std::vector<Mount> mounts;
  std::uint64_t file_max = 0;
  std::string sysname = "Linux";
  std::string release;
  std::string version;
  std::string machine = "x86_64";
  double uptime = 86400.0;  ///< seconds the template's counters took to reach their values

  /// Reads a directory laid out like /proc: stat, meminfo, vmstat, diskstats, net/dev, mounts,
  /// sys/fs/file-nr, uptime, sys/kernel/{ostype,osrelease,version}. Throws std::runtime_error
  /// naming the file that is missing or malformed.
  static ProcTemplates load_proc_dir(const std::filesystem::path& dir);
  /// Reads the captures in tests/data (`data_dir`): a 6.x kernel's layout.
  static ProcTemplates load_test_data(const std::filesystem::path& data_dir);
};

/// One host's /proc, computed from the templates, the seed and its index. Cheap to build (a few
/// hashes): the simulator builds one per command instead of keeping state per host. Times are
/// Unix seconds (system clock).
class HostModel {
 public:
  /// `epoch`: a fixed time all hosts' boot times are drawn back from (the simulator passes its
  /// start time rounded down to the hour, so a restart within the hour keeps boot times).
  HostModel(const ProcTemplates& templates, std::uint64_t seed, std::size_t index, double epoch);

  [[nodiscard]] int cpus() const noexcept { return cpus_; }
  [[nodiscard]] double boot_time() const noexcept { return boot_; }
  [[nodiscard]] const std::string& hostname() const noexcept { return hostname_; }

  [[nodiscard]] std::string stat(double now) const;
  [[nodiscard]] std::string cpu_total_line(double now) const;  ///< "cpu  ..." of /proc/stat
  [[nodiscard]] std::string meminfo(double now) const;
  [[nodiscard]] std::string vmstat(double now) const;
  [[nodiscard]] std::string loadavg(double now) const;
  [[nodiscard]] std::string diskstats(double now) const;
  [[nodiscard]] std::string net_dev(double now) const;
  [[nodiscard]] std::string file_nr(double now) const;
  [[nodiscard]] std::string uptime(double now) const;
  [[nodiscard]] std::string mounts() const;
  /// The metrics probe's "filesystems" section: "dev mnt type bsize blocks bfree bavail files
  /// ffree" per mount.
  [[nodiscard]] std::string filesystems(double now) const;
  /// GNU `df -P -T -l` (or with -i when `inodes`): local, non-dummy filesystems.
  [[nodiscard]] std::string df(bool inodes) const;
  /// `df -P /`.
  [[nodiscard]] std::string df_root() const;
  /// uname -s, -r, -v, -m, -n on five lines.
  [[nodiscard]] std::string uname() const;
  /// `uptime`'s one line (procps format).
  [[nodiscard]] std::string uptime_line(double now) const;
  /// `free -b` (procps 4 format).
  [[nodiscard]] std::string free_bytes(double now) const;
  [[nodiscard]] std::size_t process_count(double now) const;
  /// The text of a /proc file the model knows ("/proc/meminfo"), nullopt otherwise.
  [[nodiscard]] std::optional<std::string> read_file(std::string_view path, double now) const;

 private:
  struct Capacity {
    std::uint64_t blocks = 0;  ///< 4096-byte blocks
    std::uint64_t free = 0;
    std::uint64_t avail = 0;
    std::uint64_t files = 0;
    std::uint64_t files_free = 0;
  };

  [[nodiscard]] double unit(std::uint64_t stream) const noexcept;
  /// Seconds of "activity" since boot: uptime with a wave of relative amplitude wave_ on top.
  [[nodiscard]] double activity(double now) const noexcept;
  [[nodiscard]] double wave(double now) const noexcept;
  [[nodiscard]] std::uint64_t counter(std::uint64_t template_value, double now) const noexcept;
  [[nodiscard]] std::uint64_t available_kb(double now) const noexcept;
  [[nodiscard]] Capacity capacity(const ProcTemplates::Mount& mount) const;

  const ProcTemplates& templates_;
  std::uint64_t seed_;
  std::size_t index_;
  int cpus_ = 1;
  double boot_ = 0;
  std::uint64_t mem_kb_ = 0;
  double busy_ = 0.1;       // CPU share (user + nice + system + irq + softirq), per CPU
  double iowait_ = 0.0;     // CPU share
  double steal_ = 0.0;      // CPU share
  double wave_ = 0.0;       // relative amplitude of the activity wave
  double omega_ = 0.01;     // its angular frequency
  double phase_ = 0.0;      // its phase
  double scale_ = 1.0;      // template counters' rate multiplier
  double available_ = 0.5;  // MemAvailable / MemTotal
  std::uint64_t disk_kb_ = 0;
  double disk_used_ = 0.3;
  double processes_ = 200;
  std::string hostname_;
};

}  // namespace healer::fleet_sim
