#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/error.hpp"
#include "healer/core/result.hpp"
#include "healer/metrics/metric.hpp"
#include "healer/metrics/parsers.hpp"

// The metrics probe: an awk program sent on stdin (`LC_ALL=C awk -f /dev/stdin`; nothing is
// installed on the server). awk reads every /proc file itself (getline, no `cat`), takes uname
// from /proc/sys/kernel and the time from srand(), and runs one `stat -f` for all filesystems
// through `sh -c exec`: a collection starts 2 processes (awk, exec'd by the login shell, and
// stat) on Linux >= 6.1; before 6.1 a third (`uname -m`), and one more per mount point with a
// newline in its name. It prints every section framed by a per-run random marker:
//
//   <marker> begin <section> <version>
//   ...the section's stdout...
//   <marker> end <section> <exit code>        (preceded by one extra '\n')
//
// stderr carries the same begin lines, so each section's error text is its own. A file the probe
// reads cannot fake a section: every line awk prints from the server that starts with the marker
// gets a '!' in front, and the marker is drawn fresh for every run and travels on stdin only
// (never in an argv that `ps` shows).
namespace healer::metrics {

/// The command that runs the probe read from stdin (probe_script()).
inline constexpr std::string_view kProbeCommand = "LC_ALL=C awk -f /dev/stdin";

/// Section names, in the order the probe runs them.
inline constexpr std::string_view kSectionNames[] = {
    "clk_tck",   "stat",   "loadavg",     "meminfo", "vmstat", "filefd",
    "diskstats", "netdev", "filesystems", "uname",   "time"};

/// Version of the sections' format this parser reads (a later probe may bump one section).
inline constexpr int kSectionVersion = 1;

/// Where the probe reads from; tests point it at a directory of prepared files.
struct ProbeOptions {
  std::string proc_root = "/proc";  ///< holds stat, loadavg, meminfo, net/dev, mounts...
};

/// A fresh random marker ("@@healer-metrics-" + 32 hex digits, 128 bits from random_device).
[[nodiscard]] std::string make_marker();

/// The awk program for one run with `marker` (from make_marker()), for kProbeCommand's stdin.
[[nodiscard]] std::string probe_script(std::string_view marker, const ProbeOptions& options = {});

/// The same probe as one shell command line, for tools that cannot send stdin (benchmark peers:
/// pdsh). The marker is then in awk's argv, visible to `ps`: healer itself never uses this.
[[nodiscard]] std::string probe_command_line(std::string_view marker,
                                             const ProbeOptions& options = {});

/// One framed section of a probe's output.
struct ProbeSection {
  std::string name;
  int version = 0;
  std::string body;              ///< the section's stdout
  std::string err;               ///< the section's stderr
  std::optional<int> exit_code;  ///< nullopt: begun but never ended
};

/// Splits the probe's stdout and stderr at lines carrying `marker`; text outside sections (and
/// lines that only look like markers) are part of no section or stay in the body they are in.
[[nodiscard]] std::vector<ProbeSection> split_sections(std::string_view out, std::string_view err,
                                                       std::string_view marker);

/// A section that gave no value, and why.
struct SectionFailure {
  std::string section;
  Error error;
};

/// One collection of one server, parsed. Every part is optional: a section that failed leaves its
/// part empty and adds a SectionFailure; the others still parse.
struct Sample {
  double user_hz = 100.0;  ///< from "clk_tck", else 100
  std::optional<ProcStat> stat;
  std::optional<LoadAvg> load;
  std::optional<std::vector<MeminfoField>> memory;
  std::optional<VmStat> vmstat;
  std::optional<FileNr> file_nr;
  std::optional<std::vector<DiskStats>> disks;
  std::optional<std::vector<NetDev>> network;
  std::optional<std::vector<Filesystem>> filesystems;
  std::optional<Uname> uname;
  std::optional<double> server_time;  ///< server clock, Unix seconds
  std::vector<SectionFailure> failures;
};

/// Parses the sections of split_sections(): each known section by its parser; a missing,
/// failed, incomplete, wrong-version or unparsable section becomes a SectionFailure.
[[nodiscard]] Sample parse_sections(const std::vector<ProbeSection>& sections);

/// The whole probe: split_sections() then parse_sections(). Errc::probe_failed when there is no
/// complete section at all (the shell did not run, or was killed before the first section).
[[nodiscard]] Result<Sample> parse_probe_output(std::string_view out, std::string_view err,
                                                std::string_view marker);

/// The sample as node_exporter-named metrics (counters as totals; rates are in rates.hpp).
[[nodiscard]] std::vector<Metric> to_metrics(const Sample& sample);

}  // namespace healer::metrics
