#include "healer/procfs/procfs.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

#include "healer/core/text.hpp"

namespace healer::procfs {
namespace {

using text::excerpt;
using text::fields;
using text::lines;
using text::to_u64;
using text::trim;

// The first line with text, trimmed.
std::string_view first_line(std::string_view s) noexcept {
  for (const auto line : lines(s)) {
    if (!trim(line).empty()) {
      return trim(line);
    }
  }
  return {};
}

std::optional<double> to_double(std::string_view s) noexcept { return text::to_unsigned_double(s); }

Error fail(Errc code, std::string_view what, std::string_view excerpt_of = {}) {
  std::string detail(what);
  if (!excerpt_of.empty()) {
    detail += ": \"" + excerpt(excerpt_of) + "\"";
  }
  return make_error(code, std::move(detail));
}

bool is_digits(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool valid_meminfo_key(std::string_view key) noexcept {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '(' || c == ')';
  });
}

// A "cpu" or "cpuN" line's counters; at least user nice system idle (2.4 kernels).
Result<CpuTicks> cpu_ticks(const std::vector<std::string_view>& f) {
  if (f.size() < 5) {
    return fail(Errc::malformed, "/proc/stat cpu line has fewer than 4 counters", f[0]);
  }
  CpuTicks ticks;
  std::uint64_t* const modes[] = {&ticks.user,   &ticks.nice,      &ticks.system,  &ticks.idle,
                                  &ticks.iowait, &ticks.irq,       &ticks.softirq, &ticks.steal,
                                  &ticks.guest,  &ticks.guest_nice};
  const std::size_t count = std::min(f.size() - 1, std::size(modes));
  for (std::size_t i = 0; i < count; ++i) {
    const auto value = to_u64(f[i + 1]);
    if (!value) {
      return fail(Errc::malformed, "/proc/stat cpu counter is not a number", f[i + 1]);
    }
    *modes[i] = *value;
  }
  return ticks;
}

Result<std::uint64_t> single_counter(const std::vector<std::string_view>& f) {
  if (f.size() < 2) {
    return fail(Errc::malformed, "/proc/stat line without a value", f[0]);
  }
  const auto value = to_u64(f[1]);
  if (!value) {
    return fail(Errc::malformed, "/proc/stat value is not a number", f[1]);
  }
  return *value;
}

}  // namespace

// --- /proc/meminfo ---------------------------------------------------------------------------

Result<std::vector<MeminfoField>> parse_meminfo(std::string_view text) {
  if (trim(text).empty()) {
    return fail(Errc::empty, "/proc/meminfo is empty");
  }
  std::vector<MeminfoField> result;
  bool has_total = false;
  for (const auto line : lines(text)) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    const auto key = trim(line.substr(0, colon));
    const auto f = fields(line.substr(colon + 1));
    if (!valid_meminfo_key(key) || f.empty() || f.size() > 2) {
      continue;
    }
    auto value = to_u64(f[0]);
    if (!value) {
      continue;
    }
    const bool kilobytes = f.size() == 2;
    if (kilobytes) {
      if (f[1] != "kB" || *value > std::numeric_limits<std::uint64_t>::max() / 1024) {
        continue;
      }
      *value *= 1024;
    }
    const bool seen = std::any_of(result.begin(), result.end(),
                                  [key](const MeminfoField& other) { return other.key == key; });
    if (!seen) {
      has_total = has_total || key == "MemTotal";
      result.push_back(MeminfoField{std::string(key), *value, kilobytes});
    }
  }
  if (!has_total) {
    return fail(Errc::missing_field, "/proc/meminfo has no MemTotal");
  }
  return result;
}

std::optional<std::uint64_t> meminfo_value(const std::vector<MeminfoField>& fields,
                                           std::string_view key) noexcept {
  for (const auto& field : fields) {
    if (field.key == key) {
      return field.value;
    }
  }
  return std::nullopt;
}

// --- /proc/loadavg ---------------------------------------------------------------------------

Result<LoadAvg> parse_loadavg(std::string_view text) {
  const auto line = first_line(text);
  const auto f = fields(line);
  if (f.empty()) {
    return fail(Errc::empty, "/proc/loadavg is empty");
  }
  if (f.size() < 3) {
    return fail(Errc::malformed, "/proc/loadavg has fewer than 3 load averages", line);
  }
  const auto l1 = to_double(f[0]);
  const auto l5 = to_double(f[1]);
  const auto l15 = to_double(f[2]);
  if (!l1 || !l5 || !l15) {
    return fail(Errc::malformed, "/proc/loadavg load averages are not numbers", line);
  }
  return LoadAvg{*l1, *l5, *l15};
}

// --- /proc/stat ------------------------------------------------------------------------------

std::uint64_t CpuTicks::total() const noexcept {
  return user + nice + system + idle + iowait + irq + softirq + steal;
}

Result<Stat> parse_stat(std::string_view text) {
  if (trim(text).empty()) {
    return fail(Errc::empty, "/proc/stat is empty");
  }
  Stat stat;
  for (const auto line : lines(text)) {
    const auto f = fields(line);
    if (f.empty()) {
      continue;
    }
    const std::string_view key = f[0];
    if (key == "cpu") {
      auto ticks = cpu_ticks(f);
      if (!ticks) {
        return std::move(ticks).error();
      }
      if (!stat.all) {
        stat.all = *ticks;
      }
    } else if (key.size() > 3 && key.substr(0, 3) == "cpu" && is_digits(key.substr(3))) {
      const auto index = to_u64(key.substr(3));
      if (!index || *index > std::numeric_limits<unsigned>::max()) {
        return fail(Errc::malformed, "/proc/stat cpu index out of range", key);
      }
      auto ticks = cpu_ticks(f);
      if (!ticks) {
        return std::move(ticks).error();
      }
      const auto cpu = static_cast<unsigned>(*index);
      const bool seen = std::any_of(stat.cpus.begin(), stat.cpus.end(),
                                    [cpu](const CpuLine& other) { return other.cpu == cpu; });
      if (!seen) {
        stat.cpus.push_back(CpuLine{cpu, *ticks});
      }
    } else if (key == "ctxt" || key == "btime" || key == "procs_running" ||
               key == "procs_blocked") {
      auto value = single_counter(f);
      if (!value) {
        return std::move(value).error();
      }
      auto& slot = key == "ctxt"            ? stat.context_switches
                   : key == "btime"         ? stat.boot_time
                   : key == "procs_running" ? stat.procs_running
                                            : stat.procs_blocked;
      slot = *value;
    }
  }
  if (!stat.all && stat.cpus.empty()) {
    return fail(Errc::missing_field, "/proc/stat has no cpu line");
  }
  return stat;
}

// --- /proc/vmstat ----------------------------------------------------------------------------

Result<std::vector<VmstatCounter>> parse_vmstat(std::string_view text) {
  if (trim(text).empty()) {
    return fail(Errc::empty, "/proc/vmstat is empty");
  }
  std::vector<VmstatCounter> counters;
  for (const auto line : lines(text)) {
    const auto f = fields(line);
    if (f.size() != 2) {
      continue;
    }
    if (const auto value = to_u64(f[1])) {
      counters.push_back(VmstatCounter{std::string(f[0]), *value});
    }
  }
  if (counters.empty()) {
    return fail(Errc::malformed, "/proc/vmstat has no \"name value\" line", text);
  }
  return counters;
}

std::optional<std::uint64_t> vmstat_value(const std::vector<VmstatCounter>& counters,
                                          std::string_view name) noexcept {
  for (const auto& counter : counters) {
    if (counter.name == name) {
      return counter.value;
    }
  }
  return std::nullopt;
}

// --- /proc/sys/fs/file-nr --------------------------------------------------------------------

Result<FileNr> parse_file_nr(std::string_view text) {
  const auto f = fields(trim(text));
  if (f.empty()) {
    return fail(Errc::empty, "/proc/sys/fs/file-nr is empty");
  }
  if (f.size() != 3) {
    return fail(Errc::malformed, "/proc/sys/fs/file-nr does not have 3 fields", text);
  }
  const auto allocated = to_u64(f[0]);
  const auto unused = to_u64(f[1]);
  const auto maximum = to_u64(f[2]);
  if (!allocated || !unused || !maximum) {
    return fail(Errc::malformed, "/proc/sys/fs/file-nr value is not a number", text);
  }
  return FileNr{*allocated, *unused, *maximum};
}

// --- /proc/mounts ----------------------------------------------------------------------------

bool MountEntry::has_option(std::string_view option) const noexcept {
  std::string_view rest = options;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    if (rest.substr(0, comma) == option) {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(comma + 1);
  }
  return false;
}

Result<std::vector<MountEntry>> parse_mounts(std::string_view text) {
  if (trim(text).empty()) {
    return fail(Errc::empty, "the mount table is empty");
  }
  std::vector<MountEntry> mounts;
  for (const auto line : lines(text)) {
    const auto f = fields(line);
    if (f.size() < 4 || f[1].front() != '/') {
      continue;
    }
    mounts.push_back(
        {decode_mount_path(f[0]), decode_mount_path(f[1]), std::string(f[2]), std::string(f[3])});
  }
  if (mounts.empty()) {
    return fail(Errc::malformed, "no line of the mount table parsed");
  }
  return mounts;
}

std::string decode_mount_path(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '\\' && i + 3 < path.size()) {
      const char a = path[i + 1];
      const char b = path[i + 2];
      const char c = path[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out += static_cast<char>(((a - '0') << 6) | ((b - '0') << 3) | (c - '0'));
        i += 3;
        continue;
      }
    }
    out += path[i];
  }
  return out;
}

}  // namespace healer::procfs
