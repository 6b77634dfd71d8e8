#include "healer/checks/records.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <limits>
#include <map>

#include "healer/checks/errors.hpp"
#include "text.hpp"

namespace healer::checks {
namespace {

Error fail(Errc code, std::string detail) { return make_error(code, std::move(detail)); }

// A procfs parser's error as one of this module (the three codes mean the same).
Error from_procfs(const Error& error) {
  Errc code = Errc::malformed;
  if (error.code == procfs::Errc::missing_field) {
    code = Errc::missing_field;
  } else if (error.code == procfs::Errc::empty) {
    code = Errc::empty;
  }
  return make_error(code, error.detail);
}

std::size_t offset_in(std::string_view line, std::string_view field) noexcept {
  return static_cast<std::size_t>(field.data() - line.data());
}

// df prints "-" for counts it does not know (inodes of some filesystems).
std::optional<std::uint64_t> df_number(std::string_view field) noexcept {
  if (field == "-") {
    return 0;
  }
  return text::to_u64(field);
}

bool valid_ps_stat(std::string_view stat) noexcept {
  static constexpr std::string_view kStates = "RSDZTtXxIWKP";
  // procps flags, plus busybox's W (no resident pages, e.g. kernel threads: "SW", "SW<").
  static constexpr std::string_view kFlags = "<NLsl+W";
  if (stat.empty() || kStates.find(stat.front()) == std::string_view::npos) {
    return false;
  }
  return std::all_of(stat.begin() + 1, stat.end(),
                     [](char c) { return kFlags.find(c) != std::string_view::npos; });
}

std::optional<std::uint32_t> hex_u32(std::string_view s) noexcept {
  std::uint32_t value = 0;
  if (s.empty() || s.size() > 8) {
    return std::nullopt;
  }
  for (const char c : s) {
    std::uint32_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint32_t>(c - '0');
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<std::uint32_t>(c - 'A' + 10);
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<std::uint32_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return value;
}

// /proc/net/tcp prints addresses as 32-bit words in host byte order; servers are assumed
// little-endian (x86, arm64). Only the port matters to the checks, and it is printed portably.
std::optional<std::string> proc_net_address(std::string_view hex) {
  if (hex.size() != 8 && hex.size() != 32) {
    return std::nullopt;
  }
  std::vector<std::uint8_t> octets;
  for (std::size_t word = 0; word < hex.size() / 8; ++word) {
    const auto value = hex_u32(hex.substr(word * 8, 8));
    if (!value) {
      return std::nullopt;
    }
    for (int shift = 0; shift < 32; shift += 8) {
      octets.push_back(static_cast<std::uint8_t>((*value >> shift) & 0xffU));
    }
  }
  if (octets.size() == 4) {
    return fmt::format("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3]);
  }
  const bool all_zero = std::all_of(octets.begin(), octets.end(), [](auto o) { return o == 0; });
  if (all_zero) {
    return std::string("::");
  }
  std::string result;
  for (std::size_t i = 0; i < octets.size(); i += 2) {
    result += fmt::format("{}{:x}", i == 0 ? "" : ":", (octets[i] << 8) | octets[i + 1]);
  }
  return result;
}

}  // namespace

Result<MemInfo> parse_meminfo(std::string_view text) {
  const auto fields = procfs::parse_meminfo(text);
  if (!fields) {
    return from_procfs(fields.error());
  }
  const auto get = [&](std::string_view key) { return procfs::meminfo_value(*fields, key); };
  MemInfo info;
  const auto total = get("MemTotal");
  const auto free = get("MemFree");
  if (!total || !free || *total == 0) {
    return fail(Errc::missing_field, "no MemTotal/MemFree in /proc/meminfo");
  }
  info.total = *total;
  info.free = *free;
  if (const auto available = get("MemAvailable")) {
    info.available = *available;
  } else {
    const auto buffers = get("Buffers");
    const auto cached = get("Cached");
    if (!buffers || !cached) {
      return fail(Errc::missing_field, "no MemAvailable and no Buffers/Cached in /proc/meminfo");
    }
    info.available = std::min(info.total, info.free + *buffers + *cached);
    info.available_estimated = true;
  }
  info.swap_total = get("SwapTotal");
  info.swap_free = get("SwapFree");
  return info;
}

Result<LoadAvg> parse_loadavg(std::string_view text) {
  auto load = procfs::parse_loadavg(text);
  if (!load) {
    return from_procfs(load.error());
  }
  return *load;
}

Result<CpuTimes> parse_proc_stat(std::string_view text) {
  auto stat = procfs::parse_stat(text);
  if (!stat) {
    return from_procfs(stat.error());
  }
  if (!stat->all) {
    return fail(Errc::missing_field, "no cpu line in /proc/stat");
  }
  return *stat->all;
}

Result<CpuUsage> cpu_usage(const CpuTimes& before, const CpuTimes& after) {
  const std::array<std::pair<std::uint64_t, std::uint64_t>, 8> pairs = {{
      {before.user, after.user},
      {before.nice, after.nice},
      {before.system, after.system},
      {before.idle, after.idle},
      {before.iowait, after.iowait},
      {before.irq, after.irq},
      {before.softirq, after.softirq},
      {before.steal, after.steal},
  }};
  // iowait may go backwards on NO_HZ kernels (proc(5)); it is clamped below. Any other counter
  // going backwards means the samples are not from one boot.
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    if (i != 4 && pairs[i].second < pairs[i].first) {
      return fail(Errc::malformed, "CPU counters went backwards between the samples");
    }
  }
  const auto delta = [](std::uint64_t a, std::uint64_t b) { return b > a ? b - a : 0; };
  const std::uint64_t idle = delta(before.idle, after.idle);
  const std::uint64_t iowait = delta(before.iowait, after.iowait);
  const std::uint64_t steal = delta(before.steal, after.steal);
  std::uint64_t ticks = 0;
  for (const auto& [a, b] : pairs) {
    ticks += delta(a, b);
  }
  if (ticks == 0) {
    return fail(Errc::malformed, "no CPU time passed between the samples");
  }
  const auto pct = [ticks](std::uint64_t part) {
    return 100.0 * static_cast<double>(part) / static_cast<double>(ticks);
  };
  CpuUsage usage;
  usage.ticks = ticks;
  usage.busy = pct(ticks - idle - iowait);
  usage.iowait = pct(iowait);
  usage.steal = pct(steal);
  return usage;
}

std::optional<double> DfRow::used_percent() const noexcept {
  const std::uint64_t denominator = used + available;
  if (denominator == 0) {
    return std::nullopt;
  }
  return 100.0 * static_cast<double>(used) / static_cast<double>(denominator);
}

Result<DfTable> parse_df(std::string_view text) {
  if (text::trim(text).empty()) {
    return fail(Errc::empty, "empty df output");
  }
  DfTable table;
  bool header_seen = false;
  std::size_t bad_rows = 0;
  for (const auto line : text::lines(text)) {
    const auto parts = text::fields(line);
    if (parts.empty()) {
      continue;
    }
    if (!header_seen) {
      if (parts[0] == "Filesystem") {
        header_seen = true;
        table.has_type = parts.size() > 1 && parts[1] == "Type";
      }
      continue;
    }
    // Filesystem [Type] total used available capacity mount-point (may contain spaces).
    const std::size_t fixed = table.has_type ? 6 : 5;
    if (parts.size() < fixed + 1) {
      ++bad_rows;
      continue;
    }
    const std::size_t numbers = table.has_type ? 2 : 1;
    const auto total = df_number(parts[numbers]);
    const auto used = df_number(parts[numbers + 1]);
    const auto available = df_number(parts[numbers + 2]);
    if (!total || !used || !available) {
      ++bad_rows;
      continue;
    }
    DfRow row;
    row.filesystem = std::string(parts[0]);
    if (table.has_type) {
      row.fstype = std::string(parts[1]);
    }
    row.total = *total;
    row.used = *used;
    row.available = *available;
    row.mount_point = std::string(text::trim(line.substr(offset_in(line, parts[fixed]))));
    table.rows.push_back(std::move(row));
  }
  if (!header_seen) {
    return fail(Errc::malformed, "no df header line (\"Filesystem ...\")");
  }
  if (table.rows.empty() && bad_rows > 0) {
    return fail(Errc::malformed, fmt::format("none of the {} df rows parsed", bad_rows));
  }
  return table;
}

Result<std::vector<MountEntry>> parse_mounts(std::string_view text) {
  auto mounts = procfs::parse_mounts(text);
  if (!mounts) {
    return from_procfs(mounts.error());
  }
  return std::move(mounts).value();
}

FsClass classify_fstype(std::string_view fstype) noexcept {
  static constexpr std::array<std::string_view, 33> kPseudo = {
      "proc",     "sysfs",     "devtmpfs", "devpts",  "tmpfs",       "ramfs",      "securityfs",
      "cgroup",   "cgroup2",   "pstore",   "debugfs", "tracefs",     "mqueue",     "hugetlbfs",
      "configfs", "fusectl",   "bpf",      "autofs",  "binfmt_misc", "rpc_pipefs", "nsfs",
      "efivarfs", "selinuxfs", "squashfs", "iso9660", "cramfs",      "erofs",      "rootfs",
      "overlay",  "aufs",      "nfsd",     "devfs",   "usbfs"};
  static constexpr std::array<std::string_view, 7> kPseudoFuse = {
      "fuse.lxcfs",    "fuse.gvfsd-fuse",       "fuse.portal",
      "fuse.snapfuse", "fuse.gvfs-fuse-daemon", "fuse.xdg-document-portal",
      "fuse.doc"};
  static constexpr std::array<std::string_view, 24> kNetwork = {"nfs",
                                                                "nfs4",
                                                                "cifs",
                                                                "smb3",
                                                                "smbfs",
                                                                "ncpfs",
                                                                "afs",
                                                                "coda",
                                                                "9p",
                                                                "ceph",
                                                                "glusterfs",
                                                                "lustre",
                                                                "gpfs",
                                                                "beegfs",
                                                                "davfs",
                                                                "sshfs",
                                                                "fuse.sshfs",
                                                                "fuse.ceph-fuse",
                                                                "fuse.glusterfs",
                                                                "fuse.s3fs",
                                                                "fuse.rclone",
                                                                "fuse.gcsfuse",
                                                                "fuse.juicefs",
                                                                "fuse.davfs2"};
  const auto in = [fstype](const auto& list) {
    return std::find(list.begin(), list.end(), fstype) != list.end();
  };
  if (in(kNetwork)) {
    return FsClass::network;
  }
  if (in(kPseudo) || in(kPseudoFuse)) {
    return FsClass::pseudo;
  }
  return FsClass::local;
}

FsClass classify_device(std::string_view device) noexcept {
  static constexpr std::array<std::string_view, 13> kPseudo = {
      "tmpfs", "devtmpfs", "udev",   "none",   "shm",  "overlay", "proc",
      "sysfs", "cgroup",   "devpts", "rootfs", "mdev", "run"};
  if (std::find(kPseudo.begin(), kPseudo.end(), device) != kPseudo.end()) {
    return FsClass::pseudo;
  }
  if (device.starts_with("//") || device.find(":/") != std::string_view::npos) {
    return FsClass::network;
  }
  return FsClass::local;
}

Result<std::vector<ProcessEntry>> parse_ps_states(std::string_view text) {
  if (text::trim(text).empty()) {
    return fail(Errc::empty, "empty ps output");
  }
  std::vector<ProcessEntry> processes;
  std::size_t bad_lines = 0;
  for (const auto line : text::lines(text)) {
    const auto parts = text::fields(line);
    if (parts.empty() || parts[0] == "STAT") {
      continue;
    }
    if (!valid_ps_stat(parts[0])) {
      ++bad_lines;
      continue;
    }
    ProcessEntry entry;
    entry.state = parts[0].front();
    if (parts.size() >= 2) {
      entry.pid = text::to_i64(parts[1]);
      if (!entry.pid) {
        ++bad_lines;
        continue;
      }
    }
    if (parts.size() >= 3) {
      entry.command = std::string(text::trim(line.substr(offset_in(line, parts[2]))));
    }
    processes.push_back(std::move(entry));
  }
  if (processes.empty()) {
    return fail(Errc::malformed, fmt::format("none of the {} ps lines parsed", bad_lines));
  }
  return processes;
}

Result<std::vector<ProcessEntry>> parse_proc_pid_stats(std::string_view text) {
  if (text::trim(text).empty()) {
    return fail(Errc::empty, "no /proc/<pid>/stat lines");
  }
  std::vector<ProcessEntry> processes;
  for (const auto line : text::lines(text)) {
    const auto open = line.find(" (");
    const auto close = line.rfind(") ");
    if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
        close + 2 >= line.size()) {
      continue;
    }
    const auto pid = text::to_i64(text::trim(line.substr(0, open)));
    const char state = line[close + 2];
    if (!pid || !valid_ps_stat(std::string_view(&state, 1))) {
      continue;
    }
    processes.push_back({state, std::string(line.substr(open + 2, close - open - 2)), pid});
  }
  if (processes.empty()) {
    return fail(Errc::malformed, "no /proc/<pid>/stat line parsed");
  }
  return processes;
}

Result<FileNr> parse_file_nr(std::string_view text) {
  const auto file_nr = procfs::parse_file_nr(text);
  if (!file_nr) {
    return from_procfs(file_nr.error());
  }
  if (file_nr->maximum == 0 || file_nr->unused > file_nr->allocated) {
    return fail(Errc::malformed, "file-nr values are not valid counts");
  }
  return FileNr{file_nr->allocated, file_nr->unused, file_nr->maximum};
}

Result<double> parse_proc_uptime(std::string_view text) {
  const auto parts = text::fields(text::first_line_view(text));
  if (parts.empty()) {
    return fail(Errc::empty, "empty /proc/uptime");
  }
  const auto seconds = text::to_double(parts[0]);
  if (!seconds || *seconds < 0) {
    return fail(Errc::malformed, "uptime is not a number of seconds");
  }
  return *seconds;
}

Result<std::uint64_t> parse_counter(std::string_view text, std::string_view name) {
  const auto counters = procfs::parse_vmstat(text);
  if (!counters) {
    return from_procfs(counters.error());
  }
  if (const auto value = procfs::vmstat_value(*counters, name)) {
    return *value;
  }
  return fail(Errc::missing_field, fmt::format("no {} counter", name));
}

Result<std::vector<ListeningSocket>> parse_ss_listening(std::string_view text) {
  if (text::trim(text).empty()) {
    return fail(Errc::empty, "empty ss output");
  }
  std::vector<ListeningSocket> sockets;
  bool header_seen = false;
  std::size_t bad_lines = 0;
  for (const auto line : text::lines(text)) {
    const auto parts = text::fields(line);
    if (parts.empty()) {
      continue;
    }
    if (parts[0] == "State" || parts[0] == "Netid" || parts[0] == "Recv-Q") {
      header_seen = true;
      continue;
    }
    // The local address is the first "address:port" field; the peer ("0.0.0.0:*") follows it.
    bool parsed = false;
    for (const auto field : parts) {
      const auto colon = field.rfind(':');
      if (colon == std::string_view::npos || colon == 0) {
        continue;
      }
      const auto port = text::to_u64(field.substr(colon + 1));
      if (!port || *port == 0 || *port > 65535) {
        continue;
      }
      std::string_view address = field.substr(0, colon);
      if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
        address = address.substr(1, address.size() - 2);
      }
      sockets.push_back({std::string(address), static_cast<std::uint16_t>(*port)});
      parsed = true;
      break;
    }
    if (!parsed) {
      ++bad_lines;
    }
  }
  if (sockets.empty() && (!header_seen || bad_lines > 0)) {
    return fail(Errc::malformed, "no ss line parsed");
  }
  return sockets;
}

Result<std::vector<ListeningSocket>> parse_proc_net_tcp(std::string_view text) {
  if (text::trim(text).empty()) {
    return fail(Errc::empty, "empty /proc/net/tcp");
  }
  std::vector<ListeningSocket> sockets;
  bool header_seen = false;
  std::size_t bad_lines = 0;
  for (const auto line : text::lines(text)) {
    const auto parts = text::fields(line);
    if (parts.empty()) {
      continue;
    }
    if (parts[0] == "sl") {
      header_seen = true;
      continue;
    }
    if (parts.size() < 4 || parts[0].back() != ':') {
      ++bad_lines;
      continue;
    }
    const auto colon = parts[1].find(':');
    if (colon == std::string_view::npos) {
      ++bad_lines;
      continue;
    }
    const auto address = proc_net_address(parts[1].substr(0, colon));
    const auto port = hex_u32(parts[1].substr(colon + 1));
    if (!address || !port || *port > 65535) {
      ++bad_lines;
      continue;
    }
    if (parts[3] == "0A") {
      sockets.push_back({*address, static_cast<std::uint16_t>(*port)});
    }
  }
  if (!header_seen || (sockets.empty() && bad_lines > 0)) {
    return fail(Errc::malformed, "not /proc/net/tcp output");
  }
  return sockets;
}

}  // namespace healer::checks
