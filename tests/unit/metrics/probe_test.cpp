// The probe's framing: sections split at the per-run marker, partial results, fakes ignored,
// and the sample turned into node_exporter metrics.
#include "healer/metrics/probe.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

#include "fixture.hpp"
#include "healer/metrics/errors.hpp"

namespace healer::metrics {
namespace {

using testing::fixture;
using testing::kFixtureMarker;

std::map<std::string, double> by_series(const std::vector<Metric>& metrics) {
  std::map<std::string, double> out;
  for (const auto& metric : metrics) {
    EXPECT_TRUE(out.emplace(series_key(metric), metric.value).second)
        << "duplicate series " << series_key(metric);
  }
  return out;
}

const SectionFailure* failure_of(const Sample& sample, const std::string& section) {
  for (const auto& failure : sample.failures) {
    if (failure.section == section) {
      return &failure;
    }
  }
  return nullptr;
}

TEST(Marker, FreshAndWellFormed) {
  const auto a = make_marker();
  const auto b = make_marker();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), std::string("@@healer-metrics-").size() + 32);
  EXPECT_EQ(a.rfind("@@healer-metrics-", 0), 0U);
}

TEST(Script, CarriesMarkerEverySectionAndQuotedRoot) {
  const auto script = probe_script("@@healer-metrics-abc", ProbeOptions{"/tmp/it's \"x\"\\y"});
  EXPECT_NE(script.find(R"(M = "@@healer-metrics-abc"; P = "/tmp/it's \"x\"\\y";)"),
            std::string::npos)
      << script;
  for (const auto name : kSectionNames) {
    EXPECT_NE(script.find("(\"" + std::string(name) + "\""), std::string::npos) << name;
  }
  EXPECT_NE(script.find(" nfs4 "), std::string::npos);
  EXPECT_NE(script.find("/var/lib/docker"), std::string::npos);
  // The program travels on stdin: the command that runs it carries no marker.
  EXPECT_EQ(kProbeCommand, "LC_ALL=C awk -f /dev/stdin");
}

TEST(Script, ValuesCannotBringBackAPlaceholder) {
  const auto script = probe_script("@PROC@", ProbeOptions{"@MARKER@"});
  EXPECT_NE(script.find(R"(M = "@PROC@"; P = "@MARKER@";)"), std::string::npos);
}

TEST(Script, CommandLineQuotesTheProgramForSh) {
  const auto line = probe_command_line("@@healer-metrics-abc", ProbeOptions{"/tmp/it's"});
  EXPECT_EQ(line.rfind("LC_ALL=C awk '", 0), 0U);
  EXPECT_NE(line.find(R"(P = "/tmp/it'\''s")"), std::string::npos);
  EXPECT_EQ(line.back(), '\'');
}

TEST(Split, BodiesExitCodesAndTrailingNewlines) {
  const std::string m = "@@M";
  const std::string out = "junk before\n" + m + " begin a 1\nline1\nline2\n\n" + m + " end a 0\n" +
                          m + " begin b 2\nno newline\n" + m + " end b 3\n" + m + " begin c 1\n\n" +
                          m + " end c 0\n" + m + " begin d 1\npartial";
  const std::string err = m + " begin a 1\n" + m + " begin b 2\noops\n" + m + " begin c 1\n";
  const auto sections = split_sections(out, err, m);
  ASSERT_EQ(sections.size(), 4U);
  EXPECT_EQ(sections[0].name, "a");
  EXPECT_EQ(sections[0].body, "line1\nline2\n");
  EXPECT_EQ(sections[0].exit_code, 0);
  EXPECT_EQ(sections[1].name, "b");
  EXPECT_EQ(sections[1].version, 2);
  EXPECT_EQ(sections[1].body, "no newline");
  EXPECT_EQ(sections[1].exit_code, 3);
  EXPECT_EQ(sections[1].err, "oops\n");
  EXPECT_EQ(sections[2].body, "");
  EXPECT_EQ(sections[3].name, "d");
  EXPECT_FALSE(sections[3].exit_code);
  EXPECT_EQ(sections[3].body, "partial");
  EXPECT_TRUE(split_sections(out, err, "").empty());
}

TEST(ProbeOutput, FullSample) {
  const auto sample = parse_probe_output(fixture("probe_full.out"), "", kFixtureMarker);
  ASSERT_TRUE(sample) << sample.error().message();
  EXPECT_TRUE(sample->failures.empty()) << sample->failures[0].error.message();
  const auto metrics = by_series(to_metrics(*sample));
  EXPECT_DOUBLE_EQ(metrics.at(R"(node_cpu_seconds_total{cpu="0",mode="user"})"), 6.0);
  EXPECT_DOUBLE_EQ(metrics.at(R"(node_cpu_seconds_total{cpu="1",mode="idle"})"), 200.0);
  EXPECT_DOUBLE_EQ(metrics.at(R"(node_cpu_guest_seconds_total{cpu="0",mode="user"})"), 1.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_load5"), 1.25);
  EXPECT_DOUBLE_EQ(metrics.at("node_memory_MemTotal_bytes"), 1024000.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_memory_MemAvailable_bytes"), 614400.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_memory_HugePages_Total"), 2.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_vmstat_oom_kill"), 3.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_filefd_allocated"), 2880.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_filefd_maximum"), 185535.0);
  EXPECT_DOUBLE_EQ(metrics.at(R"(node_disk_read_bytes_total{device="sda"})"), 9876543.0 * 512);
  EXPECT_DOUBLE_EQ(metrics.at(R"(node_disk_io_time_seconds_total{device="nvme0n1"})"), 654.321);
  EXPECT_EQ(metrics.count(R"(node_disk_read_bytes_total{device="sda1"})"), 0U);
  EXPECT_DOUBLE_EQ(metrics.at(R"(node_network_receive_drop_total{device="eth0"})"), 3.0);
  EXPECT_DOUBLE_EQ(metrics.at(R"(node_network_transmit_bytes_total{device="lo"})"), 5097743271.0);
  EXPECT_DOUBLE_EQ(
      metrics.at(R"(node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"})"),
      400.0 * 4096);
  EXPECT_DOUBLE_EQ(
      metrics.at(R"(node_filesystem_files_free{device="/dev/sda1",fstype="ext4",mountpoint="/"})"),
      90.0);
  EXPECT_DOUBLE_EQ(
      metrics.at(
          R"x(node_uname_info{machine="x86_64",nodename="web-01",release="6.1.0-18-amd64",sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"})x"),
      1.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_boot_time_seconds"), 1700000000.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_context_switches_total"), 987654321.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_procs_running"), 3.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_procs_blocked"), 1.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_time_seconds"), 1700003600.0);
  EXPECT_EQ(metrics.count(R"(healer_probe_section_failed{section="diskstats"})"), 0U);
}

TEST(ProbeOutput, UnreadableDiskstatsLeavesTheRest) {
  const auto sample = parse_probe_output(fixture("probe_partial.out"), fixture("probe_partial.err"),
                                         kFixtureMarker);
  ASSERT_TRUE(sample) << sample.error().message();
  ASSERT_EQ(sample->failures.size(), 1U);
  const SectionFailure* failure = failure_of(*sample, "diskstats");
  ASSERT_NE(failure, nullptr);
  EXPECT_EQ(failure->error.code, Errc::section_failed);
  EXPECT_NE(failure->error.detail.find("exit 1"), std::string::npos);
  EXPECT_NE(failure->error.detail.find("Permission denied"), std::string::npos);
  EXPECT_FALSE(sample->disks);
  EXPECT_TRUE(sample->stat);
  EXPECT_TRUE(sample->network);
  EXPECT_TRUE(sample->uname);
  const auto metrics = by_series(to_metrics(*sample));
  EXPECT_DOUBLE_EQ(metrics.at(R"(healer_probe_section_failed{section="diskstats"})"), 1.0);
  EXPECT_DOUBLE_EQ(metrics.at("node_load1"), 0.52);
}

TEST(ProbeOutput, FakedMarkersInAFileCreateNoSection) {
  const auto out = fixture("probe_fake_marker.out");
  const auto sections = split_sections(out, "", kFixtureMarker);
  ASSERT_EQ(sections.size(), 11U);
  const auto stats = std::count_if(sections.begin(), sections.end(),
                                   [](const ProbeSection& s) { return s.name == "stat"; });
  EXPECT_EQ(stats, 1);
  const auto sample = parse_probe_output(out, "", kFixtureMarker);
  ASSERT_TRUE(sample) << sample.error().message();
  EXPECT_TRUE(sample->failures.empty());
  ASSERT_TRUE(sample->stat);
  EXPECT_DOUBLE_EQ(sample->stat->cpus[0].times.user, 6.0);  // not the fake 999999
  ASSERT_TRUE(sample->memory);
  EXPECT_EQ(sample->memory->size(), 4U);
}

TEST(ProbeOutput, TruncatedOutputMarksTheRestIncompleteOrMissing) {
  const auto sample = parse_probe_output(fixture("probe_truncated.out"), "", kFixtureMarker);
  ASSERT_TRUE(sample) << sample.error().message();
  ASSERT_TRUE(sample->disks);
  ASSERT_EQ(sample->failures.size(), 4U);
  EXPECT_EQ(failure_of(*sample, "netdev")->error.code, Errc::section_incomplete);
  EXPECT_EQ(failure_of(*sample, "filesystems")->error.code, Errc::section_missing);
  EXPECT_EQ(failure_of(*sample, "uname")->error.code, Errc::section_missing);
  EXPECT_EQ(failure_of(*sample, "time")->error.code, Errc::section_missing);
}

TEST(ProbeOutput, WrongMarkerOrNoShellIsProbeFailed) {
  const auto wrong = parse_probe_output(fixture("probe_full.out"), "",
                                        "@@healer-metrics-ffffffffffffffffffffffffffffffff");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::probe_failed);
  const auto no_shell = parse_probe_output("", "bash: sh: command not found\n", kFixtureMarker);
  ASSERT_FALSE(no_shell);
  EXPECT_EQ(no_shell.error().code, Errc::probe_failed);
  EXPECT_NE(no_shell.error().detail.find("command not found"), std::string::npos);
}

TEST(ProbeOutput, UnsupportedVersionAndMissingClkTck) {
  const std::string m(kFixtureMarker);
  const std::string out = m + " begin clk_tck 1\n\n" + m + " end clk_tck 127\n" + m +
                          " begin stat 2\ncpu0 1 2 3 4\n\n" + m + " end stat 0\n" + m +
                          " begin loadavg 1\n1 2 3 4/5 6\n\n" + m + " end loadavg 0\n";
  const auto sample = parse_probe_output(out, "", m);
  ASSERT_TRUE(sample);
  EXPECT_DOUBLE_EQ(sample->user_hz, 100.0);
  EXPECT_EQ(failure_of(*sample, "clk_tck")->error.code, Errc::section_failed);
  EXPECT_EQ(failure_of(*sample, "stat")->error.code, Errc::malformed);
  EXPECT_FALSE(sample->stat);
  ASSERT_TRUE(sample->load);
  EXPECT_DOUBLE_EQ(sample->load->load15, 3.0);
}

}  // namespace
}  // namespace healer::metrics
