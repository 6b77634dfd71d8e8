#include "host_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iterator>
#include <numbers>
#include <set>
#include <sstream>
#include <stdexcept>

#include "behaviour.hpp"

namespace healer::fleet_sim {
namespace {

constexpr double kUserHz = 100.0;

std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw std::runtime_error("fleet sim template: cannot read " + file.string());
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto end = text.find('\n');
    lines.push_back(text.substr(0, end));
    if (end == std::string_view::npos) {
      break;
    }
    text.remove_prefix(end + 1);
  }
  return lines;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t pos = 0;
  while (pos < line.size()) {
    const auto start = line.find_first_not_of(" \t\r\n", pos);
    if (start == std::string_view::npos) {
      break;
    }
    const auto end = line.find_first_of(" \t\r\n", start);
    fields.push_back(line.substr(start, end == std::string_view::npos ? end : end - start));
    pos = end == std::string_view::npos ? line.size() : end;
  }
  return fields;
}

std::optional<std::uint64_t> to_u64(std::string_view text) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return std::nullopt;
  }
  return value;
}

std::uint64_t to_u64_or_throw(std::string_view text, std::string_view file) {
  const auto value = to_u64(text);
  if (!value) {
    throw std::runtime_error(
        fmt::format("fleet sim template {}: '{}' is not a number", file, text));
  }
  return *value;
}

// What each template file is called in tests/data (the default templates: a 6.x kernel).
struct TestDataFiles {
  const char* stat = "metrics/stat_6.8_4cpu";
  const char* meminfo = "proc/meminfo_6.18";
  const char* vmstat = "metrics/vmstat_4.19";
  const char* diskstats = "metrics/diskstats_4.19";
  const char* net_dev = "metrics/net_dev_6.x";
  const char* mounts = "proc/mounts_rw";
  const char* file_nr = "metrics/file-nr_6.x";
  const char* uptime = "proc/uptime_ok";
  const char* uname = "metrics/uname_gnu";
};

ProcTemplates parse_templates(const std::string& stat, const std::string& meminfo,
                              const std::string& vmstat, const std::string& diskstats,
                              const std::string& net_dev, const std::string& mounts,
                              const std::string& file_nr, const std::string& uptime) {
  ProcTemplates t;
  for (const auto line : split_lines(stat)) {
    const auto fields = split_fields(line);
    if (fields.empty() || fields[0].starts_with("cpu")) {
      continue;
    }
    ProcTemplates::NumberedLine numbered{std::string(fields[0]), {}};
    for (std::size_t i = 1; i < fields.size(); ++i) {
      numbered.numbers.push_back(to_u64_or_throw(fields[i], "stat"));
    }
    t.stat_lines.push_back(std::move(numbered));
  }
  for (const auto line : split_lines(meminfo)) {
    const auto fields = split_fields(line);
    if (fields.size() < 2 || !fields[0].ends_with(':')) {
      continue;
    }
    ProcTemplates::MeminfoField field;
    field.name = std::string(fields[0].substr(0, fields[0].size() - 1));
    field.value = to_u64_or_throw(fields[1], "meminfo");
    field.kb = fields.size() > 2 && fields[2] == "kB";
    if (field.name == "MemTotal") {
      t.mem_total_kb = std::max<std::uint64_t>(1, field.value);
    }
    t.meminfo.push_back(std::move(field));
  }
  for (const auto line : split_lines(vmstat)) {
    const auto fields = split_fields(line);
    if (fields.size() == 2) {
      t.vmstat.emplace_back(std::string(fields[0]), to_u64_or_throw(fields[1], "vmstat"));
    }
  }
  for (const auto line : split_lines(diskstats)) {
    const auto fields = split_fields(line);
    if (fields.size() < 7) {
      continue;
    }
    ProcTemplates::Disk disk{
        std::string(fields[0]), std::string(fields[1]), std::string(fields[2]), {}};
    for (std::size_t i = 3; i < fields.size(); ++i) {
      disk.stats.push_back(to_u64_or_throw(fields[i], "diskstats"));
    }
    t.disks.push_back(std::move(disk));
  }
  for (const auto line : split_lines(net_dev)) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || line.find('|') != std::string_view::npos) {
      continue;  // the two header lines
    }
    const auto name = split_fields(line.substr(0, colon));
    if (name.size() != 1) {
      continue;
    }
    ProcTemplates::Interface interface {
      std::string(name[0]), {}
    };
    for (const auto field : split_fields(line.substr(colon + 1))) {
      interface.counters.push_back(to_u64_or_throw(field, "net/dev"));
    }
    t.interfaces.push_back(std::move(interface));
  }
  for (const auto line : split_lines(mounts)) {
    const auto fields = split_fields(line);
    if (fields.size() >= 4) {
      t.mounts.push_back({std::string(fields[0]), std::string(fields[1]), std::string(fields[2]),
                          std::string(fields[3])});
    }
  }
  const auto file_nr_fields = split_fields(file_nr);
  if (file_nr_fields.size() != 3) {
    throw std::runtime_error("fleet sim template file-nr: expected three numbers");
  }
  t.file_max = to_u64_or_throw(file_nr_fields[2], "file-nr");
  const auto uptime_fields = split_fields(uptime);
  if (!uptime_fields.empty()) {
    const auto dot = uptime_fields[0].find('.');
    t.uptime = std::max(
        60.0, static_cast<double>(to_u64_or_throw(uptime_fields[0].substr(0, dot), "uptime")));
  }
  return t;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

bool is_octal(char c) { return c >= '0' && c <= '7'; }

// Octal escapes of /proc/mounts ("\040") undone, as df prints mount points.
std::string unescape_mount(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && is_octal(text[i + 1]) && is_octal(text[i + 2]) &&
        is_octal(text[i + 3])) {
      out += static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 +
                               (text[i + 3] - '0'));
      i += 3;
    } else {
      out += text[i];
    }
  }
  return out;
}

// GNU df hides these without -a; -l hides the network ones.
bool df_lists(const ProcTemplates::Mount& mount) {
  static const std::set<std::string_view> kHidden = {
      "proc",    "sysfs",       "cgroup",     "cgroup2",   "devpts",     "securityfs", "debugfs",
      "tracefs", "pstore",      "bpf",        "mqueue",    "configfs",   "fusectl",    "hugetlbfs",
      "autofs",  "binfmt_misc", "nsfs",       "selinuxfs", "rpc_pipefs", "efivarfs",   "nfs",
      "nfs4",    "cifs",        "smb3",       "smbfs",     "ncpfs",      "afs",        "9p",
      "ceph",    "glusterfs",   "fuse.sshfs", "sshfs",     "lustre",     "davfs"};
  return !kHidden.contains(mount.fstype);
}

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : text) {
    hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace

ProcTemplates ProcTemplates::load_proc_dir(const std::filesystem::path& dir) {
  auto t = parse_templates(read_text(dir / "stat"), read_text(dir / "meminfo"),
                           read_text(dir / "vmstat"), read_text(dir / "diskstats"),
                           read_text(dir / "net" / "dev"), read_text(dir / "mounts"),
                           read_text(dir / "sys" / "fs" / "file-nr"), read_text(dir / "uptime"));
  t.sysname = trimmed(read_text(dir / "sys" / "kernel" / "ostype"));
  t.release = trimmed(read_text(dir / "sys" / "kernel" / "osrelease"));
  t.version = trimmed(read_text(dir / "sys" / "kernel" / "version"));
  return t;
}

ProcTemplates ProcTemplates::load_test_data(const std::filesystem::path& data_dir) {
  const TestDataFiles files;
  auto t =
      parse_templates(read_text(data_dir / files.stat), read_text(data_dir / files.meminfo),
                      read_text(data_dir / files.vmstat), read_text(data_dir / files.diskstats),
                      read_text(data_dir / files.net_dev), read_text(data_dir / files.mounts),
                      read_text(data_dir / files.file_nr), read_text(data_dir / files.uptime));
  const auto uname = read_text(data_dir / files.uname);
  const auto lines = split_lines(uname);
  if (lines.size() < 4) {
    throw std::runtime_error("fleet sim template uname: expected -s, -r, -v, -m lines");
  }
  t.sysname = std::string(lines[0]);
  t.release = std::string(lines[1]);
  t.version = std::string(lines[2]);
  t.machine = std::string(lines[3]);
  return t;
}

HostModel::HostModel(const ProcTemplates& templates, std::uint64_t seed, std::size_t index,
                     double epoch)
    : templates_(templates), seed_(seed), index_(index) {
  static constexpr std::array<int, 9> kCpus = {1, 2, 2, 4, 4, 4, 8, 8, 16};
  static constexpr std::array<std::uint64_t, 9> kMemoryGiB = {1, 2, 4, 4, 8, 8, 16, 32, 64};
  const auto pick = [this](std::uint64_t stream, std::size_t size) {
    return std::min(size - 1, static_cast<std::size_t>(unit(stream) * static_cast<double>(size)));
  };
  cpus_ = kCpus[pick(1, kCpus.size())];
  mem_kb_ = kMemoryGiB[pick(2, kMemoryGiB.size())] * 1024 * 1024;
  boot_ = std::floor(epoch - 2 * 86400.0 - unit(3) * 200 * 86400.0);
  busy_ = 0.03 + unit(4) * 0.30;
  iowait_ = 0.001 + unit(5) * 0.02;
  steal_ = unit(6) * 0.01;
  wave_ = 0.2 + unit(7) * 0.5;
  omega_ = 2 * std::numbers::pi / (120.0 + unit(8) * 600.0);
  phase_ = unit(9) * 2 * std::numbers::pi;
  scale_ = 0.25 + unit(10) * 2.0;
  available_ = 0.35 + unit(11) * 0.5;
  disk_kb_ = static_cast<std::uint64_t>(20.0 * std::pow(2.0, unit(12) * 6.6) * 1024 * 1024);
  disk_used_ = 0.10 + unit(13) * 0.55;
  processes_ = 120 + unit(14) * 400;
  hostname_ = fmt::format("fleet-{:05}", index);
}

double HostModel::unit(std::uint64_t stream) const noexcept {
  return draw(seed_, index_, Draw::model, stream);
}

double HostModel::wave(double now) const noexcept {
  return 1.0 + wave_ * std::sin(omega_ * now + phase_);
}

double HostModel::activity(double now) const noexcept {
  // The integral of wave() from boot to now: uptime plus a bounded oscillation, so it never
  // decreases (wave_ < 1).
  const double uptime = std::max(0.0, now - boot_);
  return uptime +
         wave_ / omega_ * (std::cos(omega_ * boot_ + phase_) - std::cos(omega_ * now + phase_));
}

std::uint64_t HostModel::counter(std::uint64_t template_value, double now) const noexcept {
  const double value =
      static_cast<double>(template_value) * scale_ * activity(now) / templates_.uptime;
  return value >= 1.8e19 ? std::uint64_t{1} << 63U : static_cast<std::uint64_t>(value);
}

std::string HostModel::cpu_total_line(double now) const {
  const auto stat_text = stat(now);
  return std::string(stat_text.substr(0, stat_text.find('\n')));
}

std::string HostModel::stat(double now) const {
  const double uptime_ticks = std::max(0.0, now - boot_) * kUserHz;
  const double active_ticks = activity(now) * kUserHz;
  struct Times {
    std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                  steal = 0;
  };
  std::vector<Times> per_cpu(static_cast<std::size_t>(cpus_));
  Times total;
  for (int cpu = 0; cpu < cpus_; ++cpu) {
    // Some CPUs busier than others; the weights average to 1.
    const double weight = 1.0 + 0.3 * std::sin(1.7 * cpu + phase_);
    const double busy = busy_ * weight * active_ticks;
    Times& t = per_cpu[static_cast<std::size_t>(cpu)];
    t.user = static_cast<std::uint64_t>(busy * 0.70);
    t.nice = static_cast<std::uint64_t>(busy * 0.01);
    t.system = static_cast<std::uint64_t>(busy * 0.25);
    t.irq = static_cast<std::uint64_t>(busy * 0.01);
    t.softirq = static_cast<std::uint64_t>(busy * 0.03);
    t.iowait = static_cast<std::uint64_t>(iowait_ * uptime_ticks);
    t.steal = static_cast<std::uint64_t>(steal_ * uptime_ticks);
    const std::uint64_t used = t.user + t.nice + t.system + t.irq + t.softirq + t.iowait + t.steal;
    t.idle = static_cast<std::uint64_t>(uptime_ticks) -
             std::min<std::uint64_t>(used, static_cast<std::uint64_t>(uptime_ticks));
    total.user += t.user;
    total.nice += t.nice;
    total.system += t.system;
    total.idle += t.idle;
    total.iowait += t.iowait;
    total.irq += t.irq;
    total.softirq += t.softirq;
    total.steal += t.steal;
  }
  std::string out;
  const auto line = [&out](std::string_view name, const Times& t) {
    out += fmt::format("{} {} {} {} {} {} {} {} {} 0 0\n", name, t.user, t.nice, t.system, t.idle,
                       t.iowait, t.irq, t.softirq, t.steal);
  };
  line("cpu ", total);
  for (int cpu = 0; cpu < cpus_; ++cpu) {
    line(fmt::format("cpu{}", cpu), per_cpu[static_cast<std::size_t>(cpu)]);
  }
  for (const auto& numbered : templates_.stat_lines) {
    out += numbered.key;
    if (numbered.key == "btime") {
      out += fmt::format(" {}", static_cast<std::uint64_t>(boot_));
    } else if (numbered.key == "procs_running") {
      out += fmt::format(" {}", 1 + static_cast<int>(busy_ * cpus_ * wave(now)));
    } else if (numbered.key == "procs_blocked") {
      out += fmt::format(" {}", static_cast<int>(iowait_ * 20 * cpus_));
    } else {
      for (const auto number : numbered.numbers) {
        out += fmt::format(" {}", counter(number, now));
      }
    }
    out += '\n';
  }
  return out;
}

std::uint64_t HostModel::available_kb(double now) const noexcept {
  const double share = std::clamp(available_ * (1.0 + 0.05 * (wave(now) - 1.0)), 0.05, 0.98);
  return static_cast<std::uint64_t>(share * static_cast<double>(mem_kb_));
}

std::string HostModel::meminfo(double now) const {
  const double ratio = static_cast<double>(mem_kb_) / static_cast<double>(templates_.mem_total_kb);
  const std::uint64_t available = available_kb(now);
  std::string out;
  for (const auto& field : templates_.meminfo) {
    std::uint64_t value = field.value;
    if (field.name == "MemTotal") {
      value = mem_kb_;
    } else if (field.name == "MemAvailable") {
      value = available;
    } else if (field.name == "MemFree") {
      value = available * 2 / 5;
    } else if (field.name == "Cached") {
      value = available / 2;
    } else if (field.kb && field.name != "Hugepagesize" && field.name != "VmallocTotal") {
      value = static_cast<std::uint64_t>(static_cast<double>(value) * ratio);
    }
    const std::string name = field.name + ":";
    out += field.kb ? fmt::format("{:<15} {:>8} kB\n", name, value)
                    : fmt::format("{:<15} {:>8}\n", name, value);
  }
  return out;
}

std::string HostModel::vmstat(double now) const {
  const double ratio = static_cast<double>(mem_kb_) / static_cast<double>(templates_.mem_total_kb);
  std::string out;
  for (const auto& [name, value] : templates_.vmstat) {
    std::uint64_t shown = 0;
    if (name == "oom_kill") {
      shown = 0;  // a healthy fleet: the oom_kills check stays OK
    } else if (name.starts_with("nr_")) {
      shown = static_cast<std::uint64_t>(static_cast<double>(value) * ratio);
    } else {
      shown = counter(value, now);
    }
    out += fmt::format("{} {}\n", name, shown);
  }
  return out;
}

std::size_t HostModel::process_count(double now) const {
  return static_cast<std::size_t>(processes_ * (0.95 + 0.05 * wave(now)));
}

std::string HostModel::loadavg(double now) const {
  const double base = busy_ * cpus_;
  const double forks = activity(now) * scale_ * 2.0;
  return fmt::format("{:.2f} {:.2f} {:.2f} {}/{} {}\n", base * wave(now), base * wave(now - 150.0),
                     base, 1 + static_cast<int>(base * wave(now)), process_count(now),
                     300 + static_cast<std::uint64_t>(forks) % 4194000U);
}

std::string HostModel::diskstats(double now) const {
  std::string out;
  for (const auto& disk : templates_.disks) {
    out += fmt::format("{:>4} {:>7} {}", disk.major, disk.minor, disk.name);
    for (std::size_t i = 0; i < disk.stats.size(); ++i) {
      // Field 9 is "I/Os currently in progress": a gauge, not a counter.
      out += fmt::format(" {}", i == 8 ? 0 : counter(disk.stats[i], now));
    }
    out += '\n';
  }
  return out;
}

std::string HostModel::net_dev(double now) const {
  std::string out =
      "Inter-|   Receive                                                |  Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
      "drop fifo colls carrier compressed\n";
  for (const auto& interface : templates_.interfaces) {
    out += fmt::format("{:>6}:", interface.name);
    for (const auto value : interface.counters) {
      out += fmt::format(" {:>7}", counter(value, now));
    }
    out += '\n';
  }
  return out;
}

std::string HostModel::file_nr(double now) const {
  const auto allocated =
      static_cast<std::uint64_t>(800 + static_cast<double>(process_count(now)) * 8);
  return fmt::format("{}\t0\t{}\n", allocated, templates_.file_max);
}

std::string HostModel::uptime(double now) const {
  const double up = std::max(0.0, now - boot_);
  const double idle = up * cpus_ * std::max(0.0, 1.0 - busy_ - iowait_ - steal_);
  return fmt::format("{:.2f} {:.2f}\n", up, idle);
}

std::string HostModel::mounts() const {
  std::string out;
  for (const auto& mount : templates_.mounts) {
    out += fmt::format("{} {} {} {} 0 0\n", mount.device, mount.mountpoint, mount.fstype,
                       mount.options);
  }
  return out;
}

HostModel::Capacity HostModel::capacity(const ProcTemplates::Mount& mount) const {
  const double mix_unit =
      static_cast<double>(mix(fnv1a(mount.mountpoint) ^ seed_ ^ index_) >> 11U) * 0x1.0p-53;
  Capacity c;
  double used = disk_used_ * (0.6 + 0.6 * mix_unit);
  std::uint64_t size_kb = 0;
  if (mount.fstype == "tmpfs" || mount.fstype == "devtmpfs") {
    size_kb = mem_kb_ / 2;
    used = 0.01 + 0.05 * mix_unit;
  } else if (mount.mountpoint == "/") {
    size_kb = disk_kb_;
  } else {
    size_kb = std::max<std::uint64_t>(
        1024 * 1024,
        static_cast<std::uint64_t>(static_cast<double>(disk_kb_) * (0.05 + 0.5 * mix_unit)));
  }
  used = std::min(used, 0.75);
  c.blocks = size_kb / 4;
  c.free = static_cast<std::uint64_t>(static_cast<double>(c.blocks) * (1.0 - used));
  c.avail = c.free - std::min(c.free, c.blocks / 20);  // 5 % reserved for root
  c.files = std::max<std::uint64_t>(1024, size_kb / 16);
  c.files_free = static_cast<std::uint64_t>(static_cast<double>(c.files) * (1.0 - used / 3));
  return c;
}

std::string HostModel::filesystems(double now) const {
  (void)now;  // sizes move slowly enough to be constant over a test
  std::string out;
  for (const auto& mount : templates_.mounts) {
    const Capacity c = capacity(mount);
    out += fmt::format("{} {} {} 4096 {} {} {} {} {}\n", mount.device, mount.mountpoint,
                       mount.fstype, c.blocks, c.free, c.avail, c.files, c.files_free);
  }
  return out;
}

std::string HostModel::df(bool inodes) const {
  std::string out =
      inodes ? "Filesystem     Type        Inodes    IUsed     IFree IUse% Mounted on\n"
             : "Filesystem     Type     1024-blocks      Used Available Capacity Mounted on\n";
  std::set<std::string> seen;
  for (const auto& mount : templates_.mounts) {
    if (!df_lists(mount) || !seen.insert(mount.mountpoint).second) {
      continue;
    }
    const Capacity c = capacity(mount);
    const std::string device = unescape_mount(mount.device);
    const std::string mountpoint = unescape_mount(mount.mountpoint);
    if (inodes) {
      const std::uint64_t used = c.files - c.files_free;
      const auto percent = static_cast<unsigned>(
          std::ceil(100.0 * static_cast<double>(used) /
                    static_cast<double>(std::max<std::uint64_t>(1, c.files))));
      out += fmt::format("{:<14} {:<8} {:>9} {:>8} {:>9} {:>4}% {}\n", device, mount.fstype,
                         c.files, used, c.files_free, percent, mountpoint);
    } else {
      const std::uint64_t total = c.blocks * 4;
      const std::uint64_t used = (c.blocks - c.free) * 4;
      const std::uint64_t avail = c.avail * 4;
      const auto percent = static_cast<unsigned>(
          std::ceil(100.0 * static_cast<double>(used) /
                    static_cast<double>(std::max<std::uint64_t>(1, used + avail))));
      out += fmt::format("{:<14} {:<8} {:>11} {:>9} {:>9} {:>7}% {}\n", device, mount.fstype, total,
                         used, avail, percent, mountpoint);
    }
  }
  return out;
}

std::string HostModel::df_root() const {
  ProcTemplates::Mount root{"/dev/vda1", "/", "ext4", "rw"};
  for (const auto& mount : templates_.mounts) {
    if (mount.mountpoint == "/") {
      root = mount;
    }
  }
  const Capacity c = capacity(root);
  const std::uint64_t used = (c.blocks - c.free) * 4;
  const std::uint64_t avail = c.avail * 4;
  const auto percent = static_cast<unsigned>(
      std::ceil(100.0 * static_cast<double>(used) /
                static_cast<double>(std::max<std::uint64_t>(1, used + avail))));
  return fmt::format(
      "Filesystem     1024-blocks      Used Available Capacity Mounted on\n"
      "{:<14} {:>11} {:>9} {:>9} {:>7}% /\n",
      unescape_mount(root.device), c.blocks * 4, used, avail, percent);
}

std::string HostModel::uname() const {
  return fmt::format("{}\n{}\n{}\n{}\n{}\n", templates_.sysname, templates_.release,
                     templates_.version, templates_.machine, hostname_);
}

std::string HostModel::uptime_line(double now) const {
  const auto clock = static_cast<std::time_t>(now);
  std::tm local{};
  ::gmtime_r(&clock, &local);
  const auto up = static_cast<std::int64_t>(std::max(0.0, now - boot_));
  const auto days = up / 86400;
  const auto hours = (up % 86400) / 3600;
  const auto minutes = (up % 3600) / 60;
  const double base = busy_ * cpus_;
  return fmt::format(
      " {:02}:{:02}:{:02} up {} day{}, {:2}:{:02},  0 users,  load average: {:.2f}, "
      "{:.2f}, {:.2f}\n",
      local.tm_hour, local.tm_min, local.tm_sec, days, days == 1 ? "" : "s", hours, minutes,
      base * wave(now), base * wave(now - 150.0), base);
}

std::string HostModel::free_bytes(double now) const {
  const std::uint64_t total = mem_kb_ * 1024;
  const std::uint64_t available = available_kb(now) * 1024;
  const std::uint64_t free = available * 2 / 5;
  const std::uint64_t cache = available / 2;
  const std::uint64_t used = total - std::min(total, free + cache);
  return fmt::format(
      "               total        used        free      shared  buff/cache   available\n"
      "Mem:     {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}\n"
      "Swap:              0           0           0\n",
      total, used, free, total / 200, cache, available);
}

std::optional<std::string> HostModel::read_file(std::string_view path, double now) const {
  if (path == "/proc/stat") {
    return stat(now);
  }
  if (path == "/proc/meminfo") {
    return meminfo(now);
  }
  if (path == "/proc/vmstat") {
    return vmstat(now);
  }
  if (path == "/proc/loadavg") {
    return loadavg(now);
  }
  if (path == "/proc/uptime") {
    return uptime(now);
  }
  if (path == "/proc/diskstats") {
    return diskstats(now);
  }
  if (path == "/proc/net/dev") {
    return net_dev(now);
  }
  if (path == "/proc/mounts" || path == "/proc/self/mounts") {
    return mounts();
  }
  if (path == "/proc/sys/fs/file-nr") {
    return file_nr(now);
  }
  if (path == "/proc/sys/kernel/hostname" || path == "/etc/hostname") {
    return hostname_ + "\n";
  }
  return std::nullopt;
}

}  // namespace healer::fleet_sim
