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

// The probe: an awk program that awk reads from stdin (kProbeCommand). It reads every /proc file
// with getline and runs one `stat -f` for the filesystems through `sh -c exec` (so a collection
// starts 2 processes; see probe.hpp). @MARKER@ and @PROC@ are filled in per run, @SKIP_TYPES@,
// @WHOLE@ and @BELOW@ from the exclusion lists (exclusions.hpp), once. No single quote in it:
// probe_command_line() single-quotes it for sh.
constexpr std::string_view kAwkProgram = R"awk(
function hm_begin(name) {
  printf "%s begin %s %d\n", M, name, V
  printf "%s begin %s %d\n", M, name, V > "/dev/stderr"
}
function hm_end(name, rc) { printf "\n%s end %s %d\n", M, name, rc }
# Every line that comes from the server: one that starts with the marker is disarmed, so even
# a file that knows the marker cannot end a section or begin another.
function hm_line(text) {
  if (index(text, M) == 1) text = "!" text
  print text
}
function hm_file(name, path,   text, got, rc) {
  hm_begin(name)
  rc = 0
  while ((got = (getline text < path)) > 0) hm_line(text)
  if (got < 0) { print "cannot read " path > "/dev/stderr"; rc = 1 }
  close(path)
  hm_end(name, rc)
}
function hm_first(path,   text) {
  if ((getline text < path) <= 0) { unreadable = unreadable " " path; text = "" }
  close(path)
  return text
}
# One line of a command, through sh -c exec (one process, not two).
function hm_run(command,   text) {
  text = ""
  command = "exec " command " 2>/dev/null"
  if ((command | getline text) <= 0) text = ""
  close(command)
  return text
}
function hm_quote(text,   out, k) {
  out = ""
  while ((k = index(text, Q)) > 0) {
    out = out substr(text, 1, k - 1) Q "\\" Q Q
    text = substr(text, k + 1)
  }
  return Q out text Q
}
# /proc/mounts escapes space, tab, newline and backslash as \040 \011 \012 \134.
function hm_decode(text,   out, k, code) {
  out = ""
  while ((k = index(text, "\\")) > 0) {
    out = out substr(text, 1, k - 1)
    code = substr(text, k + 1, 3)
    text = substr(text, k + 1)
    if (code == "040") out = out " "
    else if (code == "011") out = out "\t"
    else if (code == "012") out = out "\n"
    else if (code == "134") out = out "\\"
    else { out = out "\\"; continue }
    text = substr(text, 4)
  }
  return out text
}
function hm_excluded(type, mount,   k) {
  if (type in skip_type) return 1
  for (k = 1; k <= n_whole; k++) {
    if (mount == whole[k] || index(mount, whole[k] "/") == 1) return 1
  }
  for (k = 1; k <= n_below; k++) {
    if (index(mount, below[k] "/") == 1 && length(mount) > length(below[k]) + 1) return 1
  }
  return 0
}
BEGIN {
  M = "@MARKER@"; P = "@PROC@"; V = @VERSION@; Q = "\047"
  if (length(M) < 17) exit 3
  n = split("@SKIP_TYPES@", names, " ")
  for (k = 1; k <= n; k++) skip_type[names[k]] = 1
  n_whole = split("@WHOLE@", whole, " ")
  n_below = split("@BELOW@", below, " ")

  # uname -m without a process on Linux >= 6.1. USER_HZ is 100 on every port but alpha (1024)
  # and ia64 (its HZ: asked from getconf).
  machine = hm_first("/proc/sys/kernel/arch")
  if (machine == "") machine = hm_run("uname -m")
  hz = 100
  if (machine ~ /^alpha/) hz = 1024
  else if (machine == "ia64") hz = hm_run("getconf CLK_TCK")
  hm_begin("clk_tck"); hm_line(hz); hm_end("clk_tck", hz == "" ? 1 : 0)
  hm_file("stat", P "/stat")
  hm_file("loadavg", P "/loadavg")
  hm_file("meminfo", P "/meminfo")
  hm_file("vmstat", P "/vmstat")
  hm_file("filefd", P "/sys/fs/file-nr")
  hm_file("diskstats", P "/diskstats")
  hm_file("netdev", P "/net/dev")

  hm_begin("filesystems")
  mounts = P "/mounts"
  rc = 0; n = 0
  while ((got = (getline text < mounts)) > 0) {
    if (split(text, field, " ") < 3 || hm_excluded(field[3], field[2])) continue
    n++
    device[n] = field[1]; mount[n] = field[2]; type[n] = field[3]
    path[n] = hm_decode(field[2]); figures[n] = "-"
  }
  if (got < 0) { print "cannot read " mounts > "/dev/stderr"; rc = 1 }
  close(mounts)
  # One stat for every path without a newline; its lines are matched back by name, in order
  # (a path stat cannot read has no line).
  args = ""
  for (k = 1; k <= n; k++) if (index(path[k], "\n") == 0) args = args " " hm_quote(path[k])
  if (args != "") {
    command = "exec stat -f -c \"%S %b %f %a %c %d %n\" --" args " 2>/dev/null"
    k = 1
    while ((command | getline text) > 0) {
      if (!match(text, /^[0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+ /)) continue
      name = substr(text, RLENGTH + 1)
      while (k <= n && (path[k] != name || index(path[k], "\n") > 0)) k++
      if (k > n) break
      figures[k++] = substr(text, 1, RLENGTH - 1)
    }
    close(command)
  }
  # A path with a newline would split its line: a stat of its own, figures only.
  for (k = 1; k <= n; k++) {
    if (index(path[k], "\n") == 0) continue
    text = hm_run("stat -f -c \"%S %b %f %a %c %d\" -- " hm_quote(path[k]))
    if (text ~ /^[0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+$/) figures[k] = text
  }
  for (k = 1; k <= n; k++) hm_line(device[k] " " mount[k] " " type[k] " " figures[k])
  hm_end("filesystems", rc)

  hm_begin("uname")
  unreadable = ""
  sysname = hm_first("/proc/sys/kernel/ostype")
  release = hm_first("/proc/sys/kernel/osrelease")
  version = hm_first("/proc/sys/kernel/version")
  nodename = hm_first("/proc/sys/kernel/hostname")
  if (unreadable != "" || machine == "") {
    print "cannot read" unreadable > "/dev/stderr"
    hm_end("uname", 1)
  } else {
    hm_line(sysname); hm_line(release); hm_line(version); hm_line(machine); hm_line(nodename)
    hm_end("uname", 0)
  }

  # srand() returns the previous seed, which srand() set to the time of day.
  hm_begin("time")
  srand()
  hm_line(srand())
  hm_end("time", 0)
  exit 0
}
)awk";

// Single-quoted for sh, with the lists spliced into awk strings split at spaces: none may hold
// a quote, a backslash or a space.
constexpr bool plain(std::string_view text) {
  return text.find_first_of("'\"\\ ") == std::string_view::npos;
}
constexpr bool exclusions_are_plain() {
  for (const auto type : exclusions::kPseudoFsTypes) {
    if (!plain(type)) {
      return false;
    }
  }
  for (const auto type : exclusions::kNetworkFsTypes) {
    if (!plain(type)) {
      return false;
    }
  }
  for (const auto& prefix : exclusions::kMountPrefixes) {
    if (!plain(prefix.path)) {
      return false;
    }
  }
  return true;
}
static_assert(kAwkProgram.find('\'') == std::string_view::npos);
static_assert(exclusions_are_plain());

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

void replace_all(std::string& text, std::string_view placeholder, std::string_view value) {
  for (auto at = text.find(placeholder); at != std::string::npos;
       at = text.find(placeholder, at + value.size())) {
    text.replace(at, placeholder.size(), value);
  }
}

// `text` as the inside of an awk string literal.
std::string awk_string(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// The awk program with the exclusion lists filled in; the same for every run.
std::string awk_program() {
  std::string skip_types;
  for (const auto type : exclusions::kPseudoFsTypes) {
    skip_types += skip_types.empty() ? "" : " ";
    skip_types += type;
  }
  for (const auto type : exclusions::kNetworkFsTypes) {
    skip_types += " ";
    skip_types += type;
  }
  std::string whole;
  std::string below;
  for (const auto& prefix : exclusions::kMountPrefixes) {
    std::string& list = prefix.itself ? whole : below;
    list += list.empty() ? "" : " ";
    list += prefix.path;
  }
  std::string program(kAwkProgram);
  replace_all(program, "@SKIP_TYPES@", skip_types);
  replace_all(program, "@WHOLE@", whole);
  replace_all(program, "@BELOW@", below);
  replace_all(program, "@VERSION@", std::to_string(kSectionVersion));
  return program;
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
  static const std::string program = awk_program();
  // Each placeholder is in BEGIN's first line once, the marker's before the proc root's: replace
  // the later one first, so neither value can bring a placeholder back.
  constexpr std::string_view kMarker = "@MARKER@";
  constexpr std::string_view kProc = "@PROC@";
  std::string script = program;
  script.replace(script.find(kProc), kProc.size(), awk_string(options.proc_root));
  script.replace(script.find(kMarker), kMarker.size(), awk_string(marker));
  return script;
}

std::string probe_command_line(std::string_view marker, const ProbeOptions& options) {
  return "LC_ALL=C awk " + shell_quote(probe_script(marker, options));
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
