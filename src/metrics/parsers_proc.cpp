// Parsers of the probe's /proc files about CPU, memory and the kernel.
#include <algorithm>
#include <limits>
#include <string>

#include "healer/metrics/errors.hpp"
#include "healer/metrics/parsers.hpp"
#include "text.hpp"

namespace healer::metrics {
namespace {

bool is_digits(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A "cpu" or "cpuN" line's counters, in ticks; at least user nice system idle (2.4 kernels).
Result<CpuTimes> parse_cpu_times(const std::vector<std::string_view>& f, double user_hz) {
  if (f.size() < 5) {
    return text::error(Errc::malformed, "/proc/stat cpu line has fewer than 4 counters", f[0]);
  }
  CpuTimes times;
  double* const modes[] = {&times.user,   &times.nice,      &times.system,  &times.idle,
                           &times.iowait, &times.irq,       &times.softirq, &times.steal,
                           &times.guest,  &times.guest_nice};
  const std::size_t count = std::min(f.size() - 1, std::size(modes));
  for (std::size_t i = 0; i < count; ++i) {
    const auto ticks = text::to_u64(f[i + 1]);
    if (!ticks) {
      return text::error(Errc::malformed, "/proc/stat cpu counter is not a number", f[i + 1]);
    }
    *modes[i] = static_cast<double>(*ticks) / user_hz;
  }
  return times;
}

Result<std::uint64_t> single_counter(const std::vector<std::string_view>& f) {
  if (f.size() < 2) {
    return text::error(Errc::malformed, "/proc/stat line without a value", f[0]);
  }
  const auto value = text::to_u64(f[1]);
  if (!value) {
    return text::error(Errc::malformed, "/proc/stat value is not a number", f[1]);
  }
  return *value;
}

bool valid_meminfo_key(std::string_view key) noexcept {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '(' || c == ')';
  });
}

// node_exporter: "Active(anon)" -> "Active_anon".
std::string meminfo_name(std::string_view key) {
  std::string name;
  for (const char c : key) {
    if (c == '(') {
      name += '_';
    } else if (c != ')') {
      name += c;
    }
  }
  return name;
}

}  // namespace

double CpuTimes::total() const noexcept {
  return user + nice + system + idle + iowait + irq + softirq + steal;
}

Result<double> parse_clk_tck(std::string_view text) {
  const auto trimmed = text::trim(text);
  if (trimmed.empty()) {
    return text::error(Errc::empty, "getconf CLK_TCK printed nothing");
  }
  const auto value = text::to_u64(trimmed);
  if (!value || *value == 0 || *value > 1'000'000) {
    return text::error(Errc::malformed, "CLK_TCK is not a positive number", trimmed);
  }
  return static_cast<double>(*value);
}

Result<ProcStat> parse_proc_stat(std::string_view text, double user_hz) {
  if (text::trim(text).empty()) {
    return text::error(Errc::empty, "/proc/stat is empty");
  }
  if (!(user_hz > 0.0)) {
    return text::error(Errc::malformed, "USER_HZ must be positive");
  }
  ProcStat stat;
  for (const auto line : text::lines(text)) {
    const auto f = text::fields(line);
    if (f.empty()) {
      continue;
    }
    const std::string_view key = f[0];
    if (key == "cpu") {
      auto times = parse_cpu_times(f, user_hz);
      if (!times) {
        return std::move(times).error();
      }
      if (!stat.all) {
        stat.all = *times;
      }
    } else if (key.size() > 3 && key.substr(0, 3) == "cpu" && is_digits(key.substr(3))) {
      const auto index = text::to_u64(key.substr(3));
      if (!index || *index > std::numeric_limits<unsigned>::max()) {
        return text::error(Errc::malformed, "/proc/stat cpu index out of range", key);
      }
      auto times = parse_cpu_times(f, user_hz);
      if (!times) {
        return std::move(times).error();
      }
      const auto cpu = static_cast<unsigned>(*index);
      const bool seen = std::any_of(stat.cpus.begin(), stat.cpus.end(),
                                    [cpu](const CpuLine& other) { return other.cpu == cpu; });
      if (!seen) {
        stat.cpus.push_back(CpuLine{cpu, *times});
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
    return text::error(Errc::missing_field, "/proc/stat has no cpu line");
  }
  return stat;
}

Result<LoadAvg> parse_loadavg(std::string_view text) {
  const auto f = text::fields(text::trim(text));
  if (f.empty()) {
    return text::error(Errc::empty, "/proc/loadavg is empty");
  }
  if (f.size() < 3) {
    return text::error(Errc::malformed, "/proc/loadavg has fewer than 3 fields", text);
  }
  const auto l1 = text::to_double(f[0]);
  const auto l5 = text::to_double(f[1]);
  const auto l15 = text::to_double(f[2]);
  if (!l1 || !l5 || !l15) {
    return text::error(Errc::malformed, "/proc/loadavg value is not a number", text);
  }
  return LoadAvg{*l1, *l5, *l15};
}

Result<std::vector<MeminfoField>> parse_meminfo(std::string_view text) {
  if (text::trim(text).empty()) {
    return text::error(Errc::empty, "/proc/meminfo is empty");
  }
  std::vector<MeminfoField> fields;
  bool has_total = false;
  for (const auto line : text::lines(text)) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    const auto key = text::trim(line.substr(0, colon));
    const auto f = text::fields(line.substr(colon + 1));
    if (!valid_meminfo_key(key) || f.empty() || f.size() > 2) {
      continue;
    }
    const auto value = text::to_u64(f[0]);
    if (!value) {
      continue;
    }
    MeminfoField field{meminfo_name(key), static_cast<double>(*value)};
    if (f.size() == 2) {
      if (f[1] != "kB") {
        continue;
      }
      field.value *= 1024.0;
      field.name += "_bytes";
    }
    has_total = has_total || key == "MemTotal";
    const bool seen = std::any_of(fields.begin(), fields.end(), [&](const MeminfoField& other) {
      return other.name == field.name;
    });
    if (!seen) {
      fields.push_back(std::move(field));
    }
  }
  if (!has_total) {
    return text::error(Errc::missing_field, "/proc/meminfo has no MemTotal");
  }
  return fields;
}

Result<VmStat> parse_vmstat(std::string_view text) {
  if (text::trim(text).empty()) {
    return text::error(Errc::empty, "/proc/vmstat is empty");
  }
  VmStat vmstat;
  bool any = false;
  for (const auto line : text::lines(text)) {
    const auto f = text::fields(line);
    if (f.size() != 2) {
      continue;
    }
    const auto value = text::to_u64(f[1]);
    if (!value) {
      continue;
    }
    any = true;
    if (f[0] == "oom_kill") {
      vmstat.oom_kill = *value;
    }
  }
  if (!any) {
    return text::error(Errc::malformed, "/proc/vmstat has no \"name value\" line", text);
  }
  return vmstat;
}

Result<FileNr> parse_file_nr(std::string_view text) {
  const auto f = text::fields(text::trim(text));
  if (f.empty()) {
    return text::error(Errc::empty, "/proc/sys/fs/file-nr is empty");
  }
  if (f.size() != 3) {
    return text::error(Errc::malformed, "/proc/sys/fs/file-nr does not have 3 fields", text);
  }
  const auto allocated = text::to_u64(f[0]);
  const auto maximum = text::to_u64(f[2]);
  if (!allocated || !text::to_u64(f[1]) || !maximum) {
    return text::error(Errc::malformed, "/proc/sys/fs/file-nr value is not a number", text);
  }
  return FileNr{*allocated, *maximum};
}

Result<Uname> parse_uname(std::string_view text) {
  if (text::trim(text).empty()) {
    return text::error(Errc::empty, "uname printed nothing");
  }
  std::vector<std::string_view> values;
  for (const auto line : text::lines(text)) {
    const auto value = text::trim(line);
    if (!value.empty()) {
      values.push_back(value);
    }
  }
  if (values.size() != 5) {
    return text::error(Errc::malformed, "uname section does not have 5 lines", text);
  }
  return Uname{std::string(values[0]), std::string(values[1]), std::string(values[2]),
               std::string(values[3]), std::string(values[4])};
}

Result<double> parse_time(std::string_view text) {
  const auto trimmed = text::trim(text);
  if (trimmed.empty()) {
    return text::error(Errc::empty, "date printed nothing");
  }
  const auto value = text::to_double(trimmed);
  if (!value) {
    return text::error(Errc::malformed, "date +%s is not a number", trimmed);
  }
  return *value;
}

}  // namespace healer::metrics
