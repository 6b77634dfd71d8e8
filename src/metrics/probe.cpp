#include "healer/metrics/probe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <random>

#include "exclusions.hpp"
#include "healer/metrics/errors.hpp"
#include "text.hpp"

namespace healer::metrics {
namespace {

// Section name, the command after the helper's name and version ($P is the proc root).
struct SectionCommand {
  std::string_view name;
  std::string_view command;
};

constexpr SectionCommand kCommands[] = {
    {"clk_tck", "hm_clk_tck"},
    {"stat", "cat \"$P/stat\""},
    {"loadavg", "cat \"$P/loadavg\""},
    {"meminfo", "cat \"$P/meminfo\""},
    {"vmstat", "cat \"$P/vmstat\""},
    {"filefd", "cat \"$P/sys/fs/file-nr\""},
    {"diskstats", "cat \"$P/diskstats\""},
    {"netdev", "cat \"$P/net/dev\""},
    {"filesystems", "hm_filesystems"},
    {"uname", "hm_uname"},
    {"time", "date +%s"},
};

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::string fs_type_patterns() {
  std::string out;
  for (const auto type : exclusions::kPseudoFsTypes) {
    out += out.empty() ? "" : "|";
    out += type;
  }
  for (const auto type : exclusions::kNetworkFsTypes) {
    out += "|";
    out += type;
  }
  return out;
}

std::string mount_patterns() {
  std::string out;
  for (const auto& prefix : exclusions::kMountPrefixes) {
    out += out.empty() ? "" : "|";
    if (prefix.itself) {
      out += fmt::format("{0}|{0}/*", prefix.path);
    } else {
      out += fmt::format("{}/?*", prefix.path);
    }
  }
  return out;
}

bool valid_name(std::string_view name) noexcept {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// "<marker> begin <name> <version>" -> name and version.
bool parse_begin(std::string_view line, std::string_view marker, std::string_view& name,
                 int& version) {
  const std::string prefix = std::string(marker) + " begin ";
  if (line.substr(0, prefix.size()) != prefix) {
    return false;
  }
  line.remove_prefix(prefix.size());
  const auto space = line.find(' ');
  if (space == std::string_view::npos) {
    return false;
  }
  const auto number = text::to_u64(line.substr(space + 1));
  if (!valid_name(line.substr(0, space)) || !number || *number > 1000) {
    return false;
  }
  name = line.substr(0, space);
  version = static_cast<int>(*number);
  return true;
}

// "<marker> end <name> <exit code>" for the section `name` -> exit code.
bool parse_end(std::string_view line, std::string_view marker, std::string_view name,
               int& exit_code) {
  const std::string prefix = std::string(marker) + " end " + std::string(name) + " ";
  if (line.substr(0, prefix.size()) != prefix) {
    return false;
  }
  const auto number = text::to_u64(line.substr(prefix.size()));
  if (!number || *number > 255) {
    return false;
  }
  exit_code = static_cast<int>(*number);
  return true;
}

const ProbeSection* find_section(const std::vector<ProbeSection>& sections, std::string_view name) {
  const auto it = std::find_if(sections.begin(), sections.end(),
                               [&](const ProbeSection& s) { return s.name == name; });
  return it == sections.end() ? nullptr : &*it;
}

template <class T>
void store(Sample& sample, std::string_view section, Result<T> parsed, std::optional<T>& into) {
  if (parsed) {
    into = std::move(parsed).value();
  } else {
    sample.failures.push_back(SectionFailure{std::string(section), std::move(parsed).error()});
  }
}

void add(std::vector<Metric>& out, std::string name, Labels labels, double value) {
  out.push_back(Metric{std::move(name), std::move(labels), value});
}

double as_double(std::uint64_t value) { return static_cast<double>(value); }

}  // namespace

std::string make_marker() {
  std::random_device random;
  std::string marker = "@@healer-metrics-";
  for (int i = 0; i < 4; ++i) {
    marker += fmt::format("{:08x}", static_cast<std::uint32_t>(random()));
  }
  return marker;
}

std::string probe_script(std::string_view marker, const ProbeOptions& options) {
  std::string script = fmt::format(
      R"(M={marker}
P={proc}
hm_section() {{
  hm_name=$1; hm_version=$2; shift 2
  printf '%s begin %s %s\n' "$M" "$hm_name" "$hm_version"
  printf '%s begin %s %s\n' "$M" "$hm_name" "$hm_version" >&2
  ( "$@" )
  hm_rc=$?
  printf '\n%s end %s %s\n' "$M" "$hm_name" "$hm_rc"
}}
# busybox has no getconf; USER_HZ is 100 on every Linux port in use.
hm_clk_tck() {{
  getconf CLK_TCK 2>/dev/null || echo 100
}}
hm_uname() {{
  uname -s && uname -r && uname -v && uname -m && uname -n
}}
hm_filesystems() {{
  while read -r hm_dev hm_mnt hm_fs hm_rest; do
    case $hm_fs in {types}) continue ;; esac
    case $hm_mnt in {mounts}) continue ;; esac
    case $hm_mnt in *\\*) hm_path=$(printf '%b' "$hm_mnt") ;; *) hm_path=$hm_mnt ;; esac
    if hm_figures=$(stat -f -c '%S %b %f %a %c %d' "$hm_path" 2>/dev/null); then
      printf '%s %s %s %s\n' "$hm_dev" "$hm_mnt" "$hm_fs" "$hm_figures"
    else
      printf '%s %s %s -\n' "$hm_dev" "$hm_mnt" "$hm_fs"
    fi
  done < "$P/mounts"
}}
)",
      fmt::arg("marker", shell_quote(marker)), fmt::arg("proc", shell_quote(options.proc_root)),
      fmt::arg("types", fs_type_patterns()), fmt::arg("mounts", mount_patterns()));
  for (const auto& section : kCommands) {
    script += fmt::format("hm_section {} {} {}\n", section.name, kSectionVersion, section.command);
  }
  script += "exit 0\n";
  return script;
}

std::vector<ProbeSection> split_sections(std::string_view out, std::string_view err,
                                         std::string_view marker) {
  std::vector<ProbeSection> sections;
  if (marker.empty()) {
    return sections;
  }
  ProbeSection* open = nullptr;
  std::size_t body_start = 0;
  std::size_t pos = 0;
  while (pos < out.size()) {
    const auto newline = out.find('\n', pos);
    const bool complete_line = newline != std::string_view::npos;
    const std::size_t line_end = complete_line ? newline : out.size();
    const std::string_view line = out.substr(pos, line_end - pos);
    std::string_view name;
    int version = 0;
    int exit_code = 0;
    if (complete_line && parse_begin(line, marker, name, version)) {
      if (open != nullptr) {
        open->body = std::string(out.substr(body_start, pos - body_start));
      }
      sections.push_back(ProbeSection{std::string(name), version, {}, {}, std::nullopt});
      open = &sections.back();
      body_start = line_end + 1;
    } else if (open != nullptr && complete_line && parse_end(line, marker, open->name, exit_code)) {
      // The probe prints one '\n' before the end line so that it starts a line even after a
      // file without a final newline: that '\n' is not part of the body.
      std::size_t body_end = pos;
      if (body_end > body_start) {
        --body_end;
      }
      open->body = std::string(out.substr(body_start, body_end - body_start));
      open->exit_code = exit_code;
      open = nullptr;
    }
    pos = complete_line ? newline + 1 : out.size();
  }
  if (open != nullptr) {
    open->body = std::string(out.substr(std::min(body_start, out.size())));
  }

  // stderr: each begin line starts the error text of that section.
  std::size_t index = 0;  // sections are in the same order on both streams
  ProbeSection* err_open = nullptr;
  pos = 0;
  while (pos < err.size()) {
    const auto newline = err.find('\n', pos);
    const std::size_t line_end = newline == std::string_view::npos ? err.size() : newline;
    const std::string_view line = err.substr(pos, line_end - pos);
    std::string_view name;
    int version = 0;
    if (parse_begin(line, marker, name, version)) {
      err_open = nullptr;
      for (; index < sections.size(); ++index) {
        if (sections[index].name == name) {
          err_open = &sections[index++];
          break;
        }
      }
    } else if (err_open != nullptr) {
      err_open->err += line;
      err_open->err += '\n';
    }
    pos = newline == std::string_view::npos ? err.size() : newline + 1;
  }
  return sections;
}

Sample parse_sections(const std::vector<ProbeSection>& sections) {
  Sample sample;
  // The body of each section that can be parsed; a failure is recorded otherwise.
  auto body_of = [&](std::string_view name) -> std::optional<std::string_view> {
    const ProbeSection* section = find_section(sections, name);
    const std::string section_name(name);
    if (section == nullptr) {
      sample.failures.push_back(
          {section_name, make_error(Errc::section_missing, section_name + ": not in the output")});
      return std::nullopt;
    }
    if (!section->exit_code) {
      sample.failures.push_back(
          {section_name, make_error(Errc::section_incomplete,
                                    section_name + ": no end line (output cut or probe killed)")});
      return std::nullopt;
    }
    if (section->version != kSectionVersion) {
      sample.failures.push_back(
          {section_name, make_error(Errc::malformed, fmt::format("{}: version {} not supported",
                                                                 section_name, section->version))});
      return std::nullopt;
    }
    if (*section->exit_code != 0) {
      std::string detail = fmt::format("{}: exit {}", section_name, *section->exit_code);
      const auto why = text::excerpt(section->err, 200);
      if (!why.empty()) {
        detail += ": " + why;
      }
      sample.failures.push_back({section_name, make_error(Errc::section_failed, detail)});
      return std::nullopt;
    }
    return std::string_view(section->body);
  };

  if (const auto body = body_of("clk_tck")) {
    std::optional<double> user_hz;
    store(sample, "clk_tck", parse_clk_tck(*body), user_hz);
    sample.user_hz = user_hz.value_or(100.0);
  }
  if (const auto body = body_of("stat")) {
    store(sample, "stat", parse_proc_stat(*body, sample.user_hz), sample.stat);
  }
  if (const auto body = body_of("loadavg")) {
    store(sample, "loadavg", parse_loadavg(*body), sample.load);
  }
  if (const auto body = body_of("meminfo")) {
    store(sample, "meminfo", parse_meminfo(*body), sample.memory);
  }
  if (const auto body = body_of("vmstat")) {
    store(sample, "vmstat", parse_vmstat(*body), sample.vmstat);
  }
  if (const auto body = body_of("filefd")) {
    store(sample, "filefd", parse_file_nr(*body), sample.file_nr);
  }
  if (const auto body = body_of("diskstats")) {
    store(sample, "diskstats", parse_diskstats(*body), sample.disks);
  }
  if (const auto body = body_of("netdev")) {
    store(sample, "netdev", parse_net_dev(*body), sample.network);
  }
  if (const auto body = body_of("filesystems")) {
    store(sample, "filesystems", parse_filesystems(*body), sample.filesystems);
  }
  if (const auto body = body_of("uname")) {
    store(sample, "uname", parse_uname(*body), sample.uname);
  }
  if (const auto body = body_of("time")) {
    store(sample, "time", parse_time(*body), sample.server_time);
  }
  return sample;
}

Result<Sample> parse_probe_output(std::string_view out, std::string_view err,
                                  std::string_view marker) {
  const auto sections = split_sections(out, err, marker);
  const bool any_complete =
      std::any_of(sections.begin(), sections.end(),
                  [](const ProbeSection& s) { return s.exit_code.has_value(); });
  if (!any_complete) {
    std::string detail = "no complete section in the probe's output";
    const auto why = text::excerpt(err.empty() ? out : err, 200);
    if (!why.empty()) {
      detail += ": " + why;
    }
    return make_error(Errc::probe_failed, std::move(detail));
  }
  return parse_sections(sections);
}

std::vector<Metric> to_metrics(const Sample& sample) {
  std::vector<Metric> out;
  if (sample.stat) {
    const ProcStat& stat = *sample.stat;
    for (const auto& line : stat.cpus) {
      const std::string cpu = std::to_string(line.cpu);
      const CpuTimes& t = line.times;
      const std::array<std::pair<const char*, double>, 8> modes = {{{"user", t.user},
                                                                    {"nice", t.nice},
                                                                    {"system", t.system},
                                                                    {"idle", t.idle},
                                                                    {"iowait", t.iowait},
                                                                    {"irq", t.irq},
                                                                    {"softirq", t.softirq},
                                                                    {"steal", t.steal}}};
      for (const auto& [mode, seconds] : modes) {
        add(out, "node_cpu_seconds_total", {{"cpu", cpu}, {"mode", mode}}, seconds);
      }
      add(out, "node_cpu_guest_seconds_total", {{"cpu", cpu}, {"mode", "user"}}, t.guest);
      add(out, "node_cpu_guest_seconds_total", {{"cpu", cpu}, {"mode", "nice"}}, t.guest_nice);
    }
    if (stat.context_switches) {
      add(out, "node_context_switches_total", {}, as_double(*stat.context_switches));
    }
    if (stat.boot_time) {
      add(out, "node_boot_time_seconds", {}, as_double(*stat.boot_time));
    }
    if (stat.procs_running) {
      add(out, "node_procs_running", {}, as_double(*stat.procs_running));
    }
    if (stat.procs_blocked) {
      add(out, "node_procs_blocked", {}, as_double(*stat.procs_blocked));
    }
  }
  if (sample.load) {
    add(out, "node_load1", {}, sample.load->load1);
    add(out, "node_load5", {}, sample.load->load5);
    add(out, "node_load15", {}, sample.load->load15);
  }
  if (sample.memory) {
    for (const auto& field : *sample.memory) {
      add(out, "node_memory_" + field.name, {}, field.value);
    }
  }
  if (sample.vmstat && sample.vmstat->oom_kill) {
    add(out, "node_vmstat_oom_kill", {}, as_double(*sample.vmstat->oom_kill));
  }
  if (sample.file_nr) {
    add(out, "node_filefd_allocated", {}, as_double(sample.file_nr->allocated));
    add(out, "node_filefd_maximum", {}, as_double(sample.file_nr->maximum));
  }
  if (sample.disks) {
    for (const auto& disk : *sample.disks) {
      const Labels labels = {{"device", disk.device}};
      add(out, "node_disk_reads_completed_total", labels, as_double(disk.reads_completed));
      add(out, "node_disk_writes_completed_total", labels, as_double(disk.writes_completed));
      add(out, "node_disk_read_bytes_total", labels, as_double(disk.read_bytes));
      add(out, "node_disk_written_bytes_total", labels, as_double(disk.written_bytes));
      if (disk.io_time_seconds) {
        add(out, "node_disk_io_time_seconds_total", labels, *disk.io_time_seconds);
      }
    }
  }
  if (sample.network) {
    for (const auto& dev : *sample.network) {
      const Labels labels = {{"device", dev.device}};
      add(out, "node_network_receive_bytes_total", labels, as_double(dev.receive_bytes));
      add(out, "node_network_receive_packets_total", labels, as_double(dev.receive_packets));
      add(out, "node_network_receive_errs_total", labels, as_double(dev.receive_errs));
      add(out, "node_network_receive_drop_total", labels, as_double(dev.receive_drop));
      add(out, "node_network_transmit_bytes_total", labels, as_double(dev.transmit_bytes));
      add(out, "node_network_transmit_packets_total", labels, as_double(dev.transmit_packets));
      add(out, "node_network_transmit_errs_total", labels, as_double(dev.transmit_errs));
      add(out, "node_network_transmit_drop_total", labels, as_double(dev.transmit_drop));
    }
  }
  if (sample.filesystems) {
    for (const auto& fs : *sample.filesystems) {
      const Labels labels = {
          {"device", fs.device}, {"fstype", fs.fstype}, {"mountpoint", fs.mountpoint}};
      add(out, "node_filesystem_size_bytes", labels, as_double(fs.size_bytes));
      add(out, "node_filesystem_avail_bytes", labels, as_double(fs.avail_bytes));
      add(out, "node_filesystem_free_bytes", labels, as_double(fs.free_bytes));
      add(out, "node_filesystem_files", labels, as_double(fs.files));
      add(out, "node_filesystem_files_free", labels, as_double(fs.files_free));
    }
  }
  if (sample.uname) {
    add(out, "node_uname_info",
        {{"machine", sample.uname->machine},
         {"nodename", sample.uname->nodename},
         {"release", sample.uname->release},
         {"sysname", sample.uname->sysname},
         {"version", sample.uname->version}},
        1.0);
  }
  if (sample.server_time) {
    add(out, "node_time_seconds", {}, *sample.server_time);
  }
  for (const auto& failure : sample.failures) {
    add(out, "healer_probe_section_failed", {{"section", failure.section}}, 1.0);
  }
  return out;
}

}  // namespace healer::metrics
