// Parsers of the probe's block device, network and filesystem sections.
#include <algorithm>
#include <limits>
#include <string>

#include "exclusions.hpp"
#include "healer/metrics/errors.hpp"
#include "healer/metrics/parsers.hpp"
#include "text.hpp"

namespace healer::metrics {
namespace {

// /proc/diskstats counts 512-byte sectors whatever the device's logical sector size.
constexpr std::uint64_t kSectorBytes = 512;

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  return a * b;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_lower(char c) noexcept { return c >= 'a' && c <= 'z'; }

// Consumes a run of characters matching `pred`; false when the run is empty.
template <class Pred>
bool eat(std::string_view& s, Pred pred) noexcept {
  std::size_t n = 0;
  while (n < s.size() && pred(s[n])) {
    ++n;
  }
  s.remove_prefix(n);
  return n > 0;
}

bool eat_prefix(std::string_view& s, std::string_view prefix) noexcept {
  if (s.substr(0, prefix.size()) != prefix) {
    return false;
  }
  s.remove_prefix(prefix.size());
  return true;
}

}  // namespace

bool is_excluded_filesystem(std::string_view fstype, std::string_view mountpoint) noexcept {
  for (const auto type : exclusions::kPseudoFsTypes) {
    if (fstype == type) {
      return true;
    }
  }
  for (const auto type : exclusions::kNetworkFsTypes) {
    if (fstype == type) {
      return true;
    }
  }
  for (const auto& prefix : exclusions::kMountPrefixes) {
    if (prefix.itself && mountpoint == prefix.path) {
      return true;
    }
    if (mountpoint.size() > prefix.path.size() + 1 &&
        mountpoint.substr(0, prefix.path.size()) == prefix.path &&
        mountpoint[prefix.path.size()] == '/') {
      return true;
    }
    if (prefix.itself && mountpoint.size() == prefix.path.size() + 1 &&
        mountpoint.substr(0, prefix.path.size()) == prefix.path && mountpoint.back() == '/') {
      return true;
    }
  }
  return false;
}

bool is_excluded_disk(std::string_view device) noexcept {
  // ^(z?ram|loop|fd|(h|s|v|xv)d[a-z]+|nvme\d+n\d+p)\d+$
  for (const std::string_view prefix : {"ram", "zram", "loop", "fd"}) {
    std::string_view rest = device;
    if (eat_prefix(rest, prefix) && eat(rest, is_digit) && rest.empty()) {
      return true;
    }
  }
  for (const std::string_view prefix : {"hd", "sd", "vd", "xvd"}) {
    std::string_view rest = device;
    if (eat_prefix(rest, prefix) && eat(rest, is_lower) && eat(rest, is_digit) && rest.empty()) {
      return true;
    }
  }
  std::string_view rest = device;
  return eat_prefix(rest, "nvme") && eat(rest, is_digit) && eat_prefix(rest, "n") &&
         eat(rest, is_digit) && eat_prefix(rest, "p") && eat(rest, is_digit) && rest.empty();
}

Result<std::vector<Filesystem>> parse_filesystems(std::string_view text) {
  std::vector<Filesystem> filesystems;
  for (const auto line : text::lines(text)) {
    const auto f = text::fields(line);
    if (f.empty()) {
      continue;
    }
    if (f.size() == 4 && f[3] == "-") {
      continue;  // stat -f failed on this mount point (permission, gone since /proc/mounts)
    }
    if (f.size() != 9) {
      return text::error(Errc::malformed, "filesystems line does not have 9 fields", line);
    }
    std::uint64_t numbers[6] = {};
    for (std::size_t i = 0; i < 6; ++i) {
      const auto value = text::to_u64(f[i + 3]);
      if (!value) {
        return text::error(Errc::malformed, "filesystems figure is not a number", line);
      }
      numbers[i] = *value;
    }
    Filesystem fs;
    fs.device = decode_mount_path(f[0]);
    fs.mountpoint = decode_mount_path(f[1]);
    fs.fstype = std::string(f[2]);
    if (is_excluded_filesystem(fs.fstype, fs.mountpoint)) {
      continue;
    }
    const std::uint64_t block = numbers[0];
    fs.size_bytes = saturating_mul(numbers[1], block);
    fs.free_bytes = saturating_mul(numbers[2], block);
    fs.avail_bytes = saturating_mul(numbers[3], block);
    fs.files = numbers[4];
    fs.files_free = numbers[5];
    // A mount point mounted over again: the last mount is the one visible, as in node_exporter.
    const auto same =
        std::find_if(filesystems.begin(), filesystems.end(),
                     [&](const Filesystem& other) { return other.mountpoint == fs.mountpoint; });
    if (same != filesystems.end()) {
      *same = std::move(fs);
    } else {
      filesystems.push_back(std::move(fs));
    }
  }
  return filesystems;
}

Result<std::vector<DiskStats>> parse_diskstats(std::string_view text) {
  if (text::trim(text).empty()) {
    return text::error(Errc::empty, "/proc/diskstats is empty");
  }
  std::vector<DiskStats> disks;
  for (const auto line : text::lines(text)) {
    const auto f = text::fields(line);
    if (f.empty()) {
      continue;
    }
    if (f.size() != 7 && f.size() < 14) {
      return text::error(Errc::malformed, "/proc/diskstats line has an unknown field count", line);
    }
    std::vector<std::uint64_t> counters;
    for (std::size_t i = 3; i < f.size(); ++i) {
      const auto value = text::to_u64(f[i]);
      if (!value) {
        return text::error(Errc::malformed, "/proc/diskstats counter is not a number", line);
      }
      counters.push_back(*value);
    }
    if (!text::to_u64(f[0]) || !text::to_u64(f[1])) {
      return text::error(Errc::malformed, "/proc/diskstats major/minor is not a number", line);
    }
    DiskStats disk;
    disk.device = std::string(f[2]);
    if (is_excluded_disk(disk.device)) {
      continue;
    }
    if (f.size() == 7) {
      // 2.6 partition form: reads, sectors read, writes, sectors written.
      disk.reads_completed = counters[0];
      disk.read_bytes = saturating_mul(counters[1], kSectorBytes);
      disk.writes_completed = counters[2];
      disk.written_bytes = saturating_mul(counters[3], kSectorBytes);
    } else {
      disk.reads_completed = counters[0];
      disk.read_bytes = saturating_mul(counters[2], kSectorBytes);
      disk.writes_completed = counters[4];
      disk.written_bytes = saturating_mul(counters[6], kSectorBytes);
      disk.io_time_seconds = static_cast<double>(counters[9]) / 1000.0;
    }
    disks.push_back(std::move(disk));
  }
  return disks;
}

Result<std::vector<NetDev>> parse_net_dev(std::string_view text) {
  if (text::trim(text).empty()) {
    return text::error(Errc::empty, "/proc/net/dev is empty");
  }
  std::vector<NetDev> devices;
  for (const auto line : text::lines(text)) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;  // the two header lines
    }
    const auto name = text::trim(line.substr(0, colon));
    const auto f = text::fields(line.substr(colon + 1));
    if (name.empty() || f.size() < 16) {
      return text::error(Errc::malformed, "/proc/net/dev line does not have 16 counters", line);
    }
    std::uint64_t counters[16] = {};
    for (std::size_t i = 0; i < 16; ++i) {
      const auto value = text::to_u64(f[i]);
      if (!value) {
        return text::error(Errc::malformed, "/proc/net/dev counter is not a number", line);
      }
      counters[i] = *value;
    }
    NetDev dev;
    dev.device = std::string(name);
    dev.receive_bytes = counters[0];
    dev.receive_packets = counters[1];
    dev.receive_errs = counters[2];
    dev.receive_drop = counters[3];
    dev.transmit_bytes = counters[8];
    dev.transmit_packets = counters[9];
    dev.transmit_errs = counters[10];
    dev.transmit_drop = counters[11];
    devices.push_back(std::move(dev));
  }
  return devices;
}

}  // namespace healer::metrics
