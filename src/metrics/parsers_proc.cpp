// Parsers of the probe's /proc files about CPU, memory and the kernel.
#include <algorithm>
#include <limits>
#include <string>

#include "healer/metrics/errors.hpp"
#include "healer/metrics/parsers.hpp"
#include "healer/procfs/procfs.hpp"
#include "text.hpp"

namespace healer::metrics {
namespace {

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

CpuTimes seconds_of(const procfs::CpuTicks& ticks, double user_hz) {
  const auto s = [user_hz](std::uint64_t count) { return static_cast<double>(count) / user_hz; };
  return CpuTimes{s(ticks.user),   s(ticks.nice),      s(ticks.system),  s(ticks.idle),
                  s(ticks.iowait), s(ticks.irq),       s(ticks.softirq), s(ticks.steal),
                  s(ticks.guest),  s(ticks.guest_nice)};
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
  const auto parsed = procfs::parse_stat(text);
  if (!parsed) {
    return from_procfs(parsed.error());
  }
  ProcStat stat;
  if (parsed->all) {
    stat.all = seconds_of(*parsed->all, user_hz);
  }
  for (const auto& line : parsed->cpus) {
    stat.cpus.push_back(CpuLine{line.cpu, seconds_of(line.ticks, user_hz)});
  }
  stat.context_switches = parsed->context_switches;
  stat.boot_time = parsed->boot_time;
  stat.procs_running = parsed->procs_running;
  stat.procs_blocked = parsed->procs_blocked;
  return stat;
}

Result<LoadAvg> parse_loadavg(std::string_view text) {
  auto load = procfs::parse_loadavg(text);
  if (!load) {
    return from_procfs(load.error());
  }
  return *load;
}

Result<std::vector<MeminfoField>> parse_meminfo(std::string_view text) {
  const auto parsed = procfs::parse_meminfo(text);
  if (!parsed) {
    return from_procfs(parsed.error());
  }
  std::vector<MeminfoField> fields;
  fields.reserve(parsed->size());
  for (const auto& field : *parsed) {
    MeminfoField named{meminfo_name(field.key), static_cast<double>(field.value)};
    if (field.kilobytes) {
      named.name += "_bytes";
    }
    // "Active(anon)" and "Active_anon" would give one name; the first keeps it.
    const bool seen = std::any_of(fields.begin(), fields.end(), [&](const MeminfoField& other) {
      return other.name == named.name;
    });
    if (!seen) {
      fields.push_back(std::move(named));
    }
  }
  return fields;
}

Result<VmStat> parse_vmstat(std::string_view text) {
  const auto counters = procfs::parse_vmstat(text);
  if (!counters) {
    return from_procfs(counters.error());
  }
  VmStat vmstat;
  vmstat.oom_kill = procfs::vmstat_value(*counters, "oom_kill");
  return vmstat;
}

Result<FileNr> parse_file_nr(std::string_view text) {
  const auto file_nr = procfs::parse_file_nr(text);
  if (!file_nr) {
    return from_procfs(file_nr.error());
  }
  return FileNr{file_nr->allocated, file_nr->maximum};
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
