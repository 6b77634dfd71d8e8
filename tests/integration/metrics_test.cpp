// metrics::async_collect against a real OpenSSH sshd on 127.0.0.1 (the server is this machine):
// the probe's figures match what this machine reports, counters only grow between two
// collections, a prepared proc root shows partial results and that file contents cannot fake a
// section, and a sweep over good and broken servers gives each one a result or a typed error.
// The probe itself (one awk process): the same series as the legacy probe of ~25 processes
// (tests/data/metrics/probe_legacy.sh), under busybox awk and stat too, at most 3 processes per
// collection, and files that know the run's marker still cannot forge or break a section.
#include <gtest/gtest.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/collector.hpp"
#include "healer/metrics/errors.hpp"
#include "healer/metrics/rates.hpp"
#include "healer/pool/errors.hpp"
#include "healer/pool/pool.hpp"
#include "healer/ssh/errors.hpp"
#include "pool_helpers.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"

namespace healer {
namespace {

using namespace std::chrono_literals;
using test::SshdFixture;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream file(path, std::ios::binary);
  file << text;
}

std::map<std::string, double> by_series(const std::vector<metrics::Metric>& all) {
  std::map<std::string, double> out;
  for (const auto& metric : all) {
    out[metrics::series_key(metric)] = metric.value;
  }
  return out;
}

std::string failures_of(const metrics::Sample& sample) {
  std::string text;
  for (const auto& failure : sample.failures) {
    text += failure.section + ": " + failure.error.message() + "\n";
  }
  return text;
}

struct Sweep {
  std::vector<metrics::CollectResult> results;
  std::vector<std::string> reported;  // server ids in on_result order
};

asio::awaitable<Sweep> collect(pool::Registry* registry, std::vector<std::string> ids,
                               metrics::CollectOptions options) {
  exec::Executor executor(*registry);
  Sweep sweep;
  options.on_result = [&sweep](const metrics::CollectResult& result) {
    sweep.reported.push_back(result.server_id);
  };
  sweep.results = co_await metrics::async_collect(executor, std::move(ids), std::move(options));
  co_await registry->async_shutdown(Deadline::after(5s));
  co_return sweep;
}

asio::awaitable<Result<ssh::CommandResult>> run(pool::Registry* registry, std::string command) {
  exec::Executor executor(*registry);
  exec::RunOptions options;
  options.deadline = Deadline::after(10s);
  co_return co_await executor.async_run("srv", std::move(command), options);
}

asio::awaitable<Result<ssh::CommandResult>> run_with_stdin(pool::Registry* registry,
                                                           std::string command,
                                                           std::string stdin_data) {
  exec::Executor executor(*registry);
  exec::RunOptions options;
  options.deadline = Deadline::after(10s);
  options.stdin_data = std::move(stdin_data);
  co_return co_await executor.async_run("srv", std::move(command), options);
}

void replace_all(std::string& text, const std::string& placeholder, const std::string& value) {
  for (auto at = text.find(placeholder); at != std::string::npos;
       at = text.find(placeholder, at + value.size())) {
    text.replace(at, placeholder.size(), value);
  }
}

// The probe as it was before the one-awk probe, for `marker` and `proc_root`: a sh script for
// kLegacyCommand.
constexpr std::string_view kLegacyCommand = "LC_ALL=C sh -s";

std::string legacy_probe_script(const std::string& marker, const std::string& proc_root = "/proc") {
  std::string script = read_file(std::string(HEALER_TEST_DATA) + "/metrics/probe_legacy.sh");
  EXPECT_FALSE(script.empty());
  replace_all(script, "@MARKER@", marker);
  replace_all(script, "@PROC@", proc_root);
  return script;
}

// Runs `script` with `command` (default: the probe's own) on the server and parses it.
Result<metrics::Sample> probe_with(asio::io_context& io, pool::Registry& registry,
                                   const std::string& marker, std::string script,
                                   std::string command = std::string(metrics::kProbeCommand)) {
  const auto ran =
      test::run_async(io, run_with_stdin(&registry, std::move(command), std::move(script)));
  if (!ran) {
    return ran.error();
  }
  EXPECT_EQ(ran->exit_status, 0) << ran->err;
  return metrics::parse_probe_output(ran->out, ran->err, marker);
}

std::set<std::string> series_of(const metrics::Sample& sample) {
  std::set<std::string> out;
  for (const auto& metric : metrics::to_metrics(sample)) {
    out.insert(metrics::series_key(metric));
  }
  return out;
}

// The figures that do not move between two collections a moment apart.
std::map<std::string, double> stable_figures(const metrics::Sample& sample) {
  const auto all = by_series(metrics::to_metrics(sample));
  std::map<std::string, double> out;
  for (const auto& [series, value] : all) {
    if (series.rfind("node_uname_info", 0) == 0 || series == "node_memory_MemTotal_bytes" ||
        series == "node_filefd_maximum" || series == "node_boot_time_seconds" ||
        series.rfind("node_filesystem_size_bytes", 0) == 0 ||
        series.rfind("node_filesystem_files{", 0) == 0) {
      out[series] = value;
    }
  }
  out["user_hz"] = sample.user_hz;
  return out;
}

// Expects `sample` to have the series of the legacy probe run just before and just after it
// (an interface or mount that came or went between them may be in one of the two).
void expect_same_series(const metrics::Sample& sample, const metrics::Sample& before,
                        const metrics::Sample& after) {
  const auto got = series_of(sample);
  const auto a = series_of(before);
  const auto b = series_of(after);
  for (const auto& series : a) {
    if (b.count(series) != 0) {
      EXPECT_EQ(got.count(series), 1U) << "missing " << series;
    }
  }
  for (const auto& series : got) {
    EXPECT_TRUE(a.count(series) != 0 || b.count(series) != 0) << "extra " << series;
  }
  EXPECT_GT(got.size(), 50U);
  EXPECT_EQ(stable_figures(sample), stable_figures(before));
}

class MetricsTest : public ::testing::Test {
 protected:
  asio::io_context io_;
};

TEST_F(MetricsTest, LiveSampleMatchesThisMachineAndCountersGrow) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "srv"));

  const auto online = test::run_async(io_, run(&registry, "getconf _NPROCESSORS_ONLN"));
  ASSERT_TRUE(online) << online.error().message();
  const auto first = test::run_async(io_, collect(&registry, {"srv"}, {}));
  pool::Registry registry2(io_.get_executor(), PoolConfig{});
  registry2.add_server(test::pool_server(sshd, "srv"));
  const auto second = test::run_async(io_, collect(&registry2, {"srv"}, {}));

  ASSERT_EQ(first.results.size(), 1U);
  ASSERT_EQ(first.reported, std::vector<std::string>{"srv"});
  const auto& a = first.results[0].sample;
  const auto& b = second.results[0].sample;
  ASSERT_TRUE(a) << a.error().message();
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_TRUE(a->failures.empty()) << failures_of(*a);

  // CPUs: one cpuN line per online CPU of the server.
  ASSERT_TRUE(a->stat);
  EXPECT_EQ(std::to_string(a->stat->cpus.size()) + "\n", online->out);
  EXPECT_GT(a->user_hz, 0.0);
  // Memory, load, fds, time, uname as this machine sees them.
  const auto m = by_series(metrics::to_metrics(*a));
  EXPECT_GT(m.at("node_memory_MemTotal_bytes"), 0.0);
  EXPECT_GT(m.at("node_memory_MemTotal_bytes"), m.at("node_memory_MemFree_bytes"));
  EXPECT_GE(m.at("node_load1"), 0.0);
  EXPECT_GT(m.at("node_filefd_maximum"), 0.0);
  EXPECT_GT(m.at("node_filefd_allocated"), 0.0);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(m.at("node_time_seconds"), now, 30.0);
  EXPECT_LT(m.at("node_boot_time_seconds"), now);
  ASSERT_TRUE(a->uname);
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(a->uname->nodename, host);
  EXPECT_EQ(a->uname->sysname, "Linux");
  ASSERT_TRUE(a->network);
  EXPECT_EQ(m.count(R"(node_network_receive_bytes_total{device="lo"})"), 1U);
  ASSERT_TRUE(a->filesystems);
  bool root_seen = false;
  for (const auto& fs : *a->filesystems) {
    EXPECT_FALSE(metrics::is_excluded_filesystem(fs.fstype, fs.mountpoint)) << fs.mountpoint;
    root_seen = root_seen || (fs.mountpoint == "/" && fs.size_bytes > 0);
  }
  const bool root_is_pseudo = metrics::is_excluded_filesystem(
      [] {
        std::istringstream mounts(read_file("/proc/mounts"));
        std::string dev, mnt, type, rest;
        std::string root_type;
        while (mounts >> dev >> mnt >> type && std::getline(mounts, rest)) {
          if (mnt == "/") {
            root_type = type;
          }
        }
        return root_type;
      }(),
      "/");
  EXPECT_TRUE(root_seen || root_is_pseudo);

  // Two collections: every counter is monotonic, and the rates between them are sane.
  const auto mb = by_series(metrics::to_metrics(*b));
  std::size_t counters = 0;
  for (const auto& [series, value] : m) {
    if (series.find("_total") == std::string::npos || mb.count(series) == 0) {
      continue;
    }
    ++counters;
    EXPECT_GE(mb.at(series), value) << series;
  }
  EXPECT_GT(counters, 10U);
  EXPECT_DOUBLE_EQ(mb.at("node_boot_time_seconds"), m.at("node_boot_time_seconds"));
  const auto rates =
      metrics::compute_rates(*a, first.results[0].collected_at, *b, second.results[0].collected_at);
  ASSERT_TRUE(rates) << rates.error().message();
  EXPECT_GT(rates->interval_seconds, 0.0);
  if (rates->cpu) {
    EXPECT_GE(rates->cpu->busy, 0.0);
    EXPECT_LE(rates->cpu->busy, 100.0 + 1e-9);
  }
  for (const auto& net : rates->network) {
    EXPECT_GE(net.receive_bytes_per_second, 0.0) << net.device;
  }
}

TEST_F(MetricsTest, UnreadableFileGivesPartialResultAndFakedMarkersAreIgnored) {
  SshdFixture sshd;
  sshd.start();
  // A proc root the login user can read: real files, no diskstats, and a meminfo that carries
  // lines shaped like the probe's framing (another marker; and this run's cannot be known).
  const auto root = sshd.dir() / "fakeproc";
  std::filesystem::create_directories(root / "net");
  std::filesystem::create_directories(root / "sys" / "fs");
  for (const char* name : {"stat", "loadavg", "vmstat"}) {
    write_file(root / name, read_file(std::filesystem::path("/proc") / name));
  }
  write_file(root / "net" / "dev", read_file("/proc/net/dev"));
  write_file(root / "sys" / "fs" / "file-nr", read_file("/proc/sys/fs/file-nr"));
  write_file(root / "meminfo",
             "MemTotal: 1000 kB\n"
             "@@healer-metrics-00000000000000000000000000000000 end meminfo 0\n"
             "@@healer-metrics-00000000000000000000000000000000 begin stat 1\n"
             "cpu0 999999999 0 0 0\n"
             "MemFree: 250 kB\n");
  // Mounts: a path with a space (escaped as in /proc/mounts; stat -f works on any directory),
  // a network and a pseudo filesystem that must not be stat()ed, and a mount point that is gone.
  std::filesystem::create_directories(root / "with space");
  const std::string base = root.string();
  write_file(root / "mounts", "/dev/fake1 " + base + "/with\\040space ext4 rw 0 0\n" +
                                  "server:/export " + base + "/nfs nfs4 rw 0 0\n" + "proc " + base +
                                  " proc rw 0 0\n" + "/dev/fake2 " + base + "/gone ext4 rw 0 0\n");
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    std::filesystem::permissions(
        entry.path(), std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                          std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                          std::filesystem::perms::others_exec);
  }
  std::filesystem::permissions(root, std::filesystem::perms::all);

  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "srv"));
  metrics::CollectOptions options;
  options.probe.proc_root = root.string();
  const auto sweep = test::run_async(io_, collect(&registry, {"srv"}, options));
  ASSERT_EQ(sweep.results.size(), 1U);
  const auto& sample = sweep.results[0].sample;
  ASSERT_TRUE(sample) << sample.error().message();
  ASSERT_EQ(sample->failures.size(), 1U) << failures_of(*sample);
  EXPECT_EQ(sample->failures[0].section, "diskstats");
  EXPECT_EQ(sample->failures[0].error.code, metrics::Errc::section_failed);
  EXPECT_NE(sample->failures[0].error.detail.find("diskstats"), std::string::npos);
  EXPECT_FALSE(sample->disks);
  // The real stat, not the fake cpu0 line inside meminfo.
  ASSERT_TRUE(sample->stat);
  ASSERT_FALSE(sample->stat->cpus.empty());
  EXPECT_LT(sample->stat->cpus[0].times.user, 999999999.0 / sample->user_hz);
  ASSERT_TRUE(sample->memory);
  const auto m = by_series(metrics::to_metrics(*sample));
  EXPECT_DOUBLE_EQ(m.at("node_memory_MemTotal_bytes"), 1024000.0);
  EXPECT_DOUBLE_EQ(m.at("node_memory_MemFree_bytes"), 256000.0);
  EXPECT_DOUBLE_EQ(m.at(R"(healer_probe_section_failed{section="diskstats"})"), 1.0);
  EXPECT_TRUE(sample->load);
  EXPECT_TRUE(sample->network);
  ASSERT_TRUE(sample->filesystems);
  ASSERT_EQ(sample->filesystems->size(), 1U);
  const auto& fs = sample->filesystems->front();
  EXPECT_EQ(fs.device, "/dev/fake1");
  EXPECT_EQ(fs.mountpoint, base + "/with space");
  EXPECT_EQ(fs.fstype, "ext4");
  EXPECT_GT(fs.size_bytes, 0U);
  EXPECT_GE(fs.size_bytes, fs.free_bytes);
  EXPECT_GE(fs.free_bytes, fs.avail_bytes);
}

TEST_F(MetricsTest, NewProbeGivesTheSeriesOfTheLegacyProbe) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "srv"));

  const std::string marker = metrics::make_marker();
  const std::string legacy(kLegacyCommand);
  const auto before = probe_with(io_, registry, marker, legacy_probe_script(marker), legacy);
  const auto now = probe_with(io_, registry, marker, metrics::probe_script(marker));
  const auto after = probe_with(io_, registry, marker, legacy_probe_script(marker), legacy);
  ASSERT_TRUE(before) << before.error().message();
  ASSERT_TRUE(now) << now.error().message();
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_TRUE(before->failures.empty()) << failures_of(*before);
  EXPECT_TRUE(now->failures.empty()) << failures_of(*now);
  expect_same_series(*now, *before, *after);
  ASSERT_TRUE(now->stat);
  ASSERT_TRUE(before->stat);
  EXPECT_EQ(now->stat->cpus.size(), before->stat->cpus.size());
  ASSERT_TRUE(now->server_time);
  EXPECT_GE(*now->server_time, *before->server_time);
  EXPECT_LE(*now->server_time, *after->server_time);
}

TEST_F(MetricsTest, UnderBusyboxTheProbeGivesTheSameSeries) {
  const std::filesystem::path busybox = "/usr/bin/busybox";
  if (!std::filesystem::exists(busybox)) {
    GTEST_SKIP() << "busybox is not installed (scripts/install-deps.sh installs it)";
  }
  SshdFixture sshd;
  sshd.start();
  // sh, awk, stat and uname from busybox first in PATH: what a busybox host runs.
  const auto bin = sshd.dir() / "busybox-bin";
  std::filesystem::create_directories(bin);
  for (const char* applet : {"sh", "awk", "stat", "uname", "cat", "date"}) {
    std::filesystem::create_symlink(busybox, bin / applet);
  }
  std::filesystem::permissions(
      bin, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
               std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
               std::filesystem::perms::others_exec);
  const std::string path = "PATH=" + bin.string() + ":$PATH ";
  const std::string legacy = path + std::string(kLegacyCommand);
  const std::string command = path + std::string(metrics::kProbeCommand);
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "srv"));

  const auto which = test::run_async(
      io_, run(&registry,
               "PATH=" + bin.string() + ":$PATH; for c in sh awk stat; do command -v $c; done"));
  ASSERT_TRUE(which) << which.error().message();
  EXPECT_EQ(which->out, (bin / "sh").string() + "\n" + (bin / "awk").string() + "\n" +
                            (bin / "stat").string() + "\n");
  const std::string marker = metrics::make_marker();
  const auto before = probe_with(io_, registry, marker, legacy_probe_script(marker), legacy);
  const auto now = probe_with(io_, registry, marker, metrics::probe_script(marker), command);
  const auto after = probe_with(io_, registry, marker, legacy_probe_script(marker), legacy);
  ASSERT_TRUE(before) << before.error().message();
  ASSERT_TRUE(now) << now.error().message();
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_TRUE(now->failures.empty()) << failures_of(*now);
  expect_same_series(*now, *before, *after);
}

TEST_F(MetricsTest, ACollectionStartsAtMostThreeProcesses) {
  if (!std::filesystem::exists("/usr/bin/strace")) {
    GTEST_SKIP() << "strace is not installed (scripts/install-deps.sh installs it)";
  }
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "srv"));
  const auto traces = sshd.dir() / "traces";
  std::filesystem::create_directories(traces);
  std::filesystem::permissions(traces, std::filesystem::perms::all);

  // Every process of the probe (what the login shell execs, and what that starts) under strace:
  // distinct pids.
  const auto processes = [&](const std::string& name, const std::string& program,
                             std::string script) -> std::size_t {
    const auto trace = traces / name;
    const std::string marker = metrics::make_marker();
    const auto ran =
        test::run_async(io_, run_with_stdin(&registry,
                                            "LC_ALL=C strace -f -qq -e trace=process -o " +
                                                trace.string() + " " + program,
                                            std::move(script)));
    EXPECT_TRUE(ran) << ran.error().message();
    std::set<std::string> pids;
    std::istringstream lines(read_file(trace));
    std::string pid;
    std::string rest;
    while (lines >> pid && std::getline(lines, rest)) {
      pids.insert(pid);
    }
    return pids.size();
  };
  const std::string marker = metrics::make_marker();
  const std::size_t legacy = processes("legacy", "sh -s", legacy_probe_script(marker));
  if (legacy == 0) {
    GTEST_SKIP() << "strace cannot trace here: " << read_file(traces / "legacy");
  }
  const std::size_t now = processes("now", "awk -f /dev/stdin", metrics::probe_script(marker));
  EXPECT_GE(legacy, 20U);
  EXPECT_GE(now, 2U);  // awk; sh -c that becomes stat
  EXPECT_LE(now, 3U) << "legacy probe: " << legacy << " processes";
}

TEST_F(MetricsTest, HostileFileContentsCannotForgeOrBreakASection) {
  SshdFixture sshd;
  sshd.start();
  // Files that know this run's marker (the worst case: the marker never leaves the client and
  // the probe's environment) and try to end their section and begin another, a mount whose
  // device is the marker, mount points with the marker, spaces, a newline, a quote and a
  // backslash in their names (escaped as /proc/mounts escapes them), and no final newline.
  const std::string m = metrics::make_marker();
  const auto root = sshd.dir() / "hostileproc";
  std::filesystem::create_directories(root / "net");
  std::filesystem::create_directories(root / "sys" / "fs");
  for (const char* name : {"stat", "loadavg", "vmstat", "diskstats"}) {
    write_file(root / name, read_file(std::filesystem::path("/proc") / name));
  }
  write_file(root / "sys" / "fs" / "file-nr", read_file("/proc/sys/fs/file-nr"));
  write_file(root / "meminfo", "MemTotal: 1000 kB\n" + m + " end meminfo 0\n" + m +
                                   " begin stat 1\ncpu0 999999999 0 0 0\n\n" + m +
                                   " end stat 0\nMemFree: 250 kB");
  write_file(root / "net" / "dev", read_file("/proc/net/dev") + m + " end netdev 0\n" + m +
                                       " begin time 1\n12345\n\n" + m + " end time 0\n");
  const std::string base = root.string();
  const std::vector<std::string> names = {"with space", "new\nline", "it's", "back\\slash",
                                          m + " end filesystems 0"};
  for (const auto& name : names) {
    std::filesystem::create_directories(root / name);
  }
  write_file(root / "mounts", "/dev/fake1 " + base + "/with\\040space ext4 rw 0 0\n" +
                                  "/dev/fake2 " + base + "/new\\012line ext4 rw 0 0\n" +
                                  "/dev/fake3 " + base + "/it's ext4 rw 0 0\n" + "/dev/fake4 " +
                                  base + "/back\\134slash ext4 rw 0 0\n" + m + " " + base +
                                  "/gone ext4 rw 0 0\n" + "/dev/fake5 " + base + "/" + m +
                                  "\\040end\\040filesystems\\0400 ext4 rw 0 0\n" + "short line\n" +
                                  m + " end filesystems 0");
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    std::filesystem::permissions(
        entry.path(), std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                          std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                          std::filesystem::perms::others_exec);
  }
  std::filesystem::permissions(root, std::filesystem::perms::all);

  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "srv"));
  const auto ran =
      test::run_async(io_, run_with_stdin(&registry, std::string(metrics::kProbeCommand),
                                          metrics::probe_script(m, metrics::ProbeOptions{base})));
  ASSERT_TRUE(ran) << ran.error().message();
  EXPECT_EQ(ran->exit_status, 0) << ran->err;
  const auto sections = metrics::split_sections(ran->out, ran->err, m);
  ASSERT_EQ(sections.size(), std::size(metrics::kSectionNames)) << ran->out;
  for (std::size_t i = 0; i < sections.size(); ++i) {
    EXPECT_EQ(sections[i].name, metrics::kSectionNames[i]);
    EXPECT_EQ(sections[i].exit_code, 0) << sections[i].name << ": " << sections[i].err;
  }
  const auto sample = metrics::parse_sections(sections);
  EXPECT_TRUE(sample.failures.empty()) << failures_of(sample);
  // Not the fake cpu0 line, not the fake time, and every line of meminfo in its section.
  ASSERT_TRUE(sample.stat);
  EXPECT_LT(sample.stat->cpus[0].times.user, 999999999.0 / sample.user_hz);
  ASSERT_TRUE(sample.server_time);
  EXPECT_GT(*sample.server_time, 1.6e9);
  const auto series = by_series(metrics::to_metrics(sample));
  EXPECT_DOUBLE_EQ(series.at("node_memory_MemTotal_bytes"), 1024000.0);
  EXPECT_DOUBLE_EQ(series.at("node_memory_MemFree_bytes"), 256000.0);
  EXPECT_EQ(series.count(R"(node_network_receive_bytes_total{device="lo"})"), 1U);
  // Every mount point that exists has its figures, under its decoded name.
  ASSERT_TRUE(sample.filesystems);
  std::map<std::string, metrics::Filesystem> filesystems;
  for (const auto& fs : *sample.filesystems) {
    filesystems[fs.mountpoint] = fs;
  }
  for (const auto& name : names) {
    const auto found = filesystems.find(base + "/" + name);
    ASSERT_NE(found, filesystems.end()) << name;
    EXPECT_GT(found->second.size_bytes, 0U) << name;
    EXPECT_EQ(found->second.fstype, "ext4") << name;
  }
  EXPECT_EQ(filesystems.count(base + "/gone"), 0U);
  EXPECT_EQ(filesystems.size(), names.size());
}

TEST_F(MetricsTest, SweepReportsEachServerDownAndWrongKeyTyped) {
  SshdFixture sshd;
  sshd.start();
  SshdFixture down;
  down.start();
  down.stop();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);

  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "good-1"));
  registry.add_server(test::pool_server(sshd, "good-2"));
  registry.add_server(test::pool_server(sshd, "good-3"));
  registry.add_server(test::pool_server(down, "down"));
  registry.add_server(test::pool_server(sshd, "wrong-key", stranger.private_key));
  metrics::CollectOptions options;
  options.concurrency = 2;
  options.timeout = 10s;
  const std::vector<std::string> ids = {"good-1", "down",    "wrong-key",
                                        "good-2", "unknown", "good-3"};
  const auto started = Clock::now();
  const auto sweep = test::run_async(io_, collect(&registry, ids, options));
  EXPECT_LT(Clock::now() - started, 10s);

  ASSERT_EQ(sweep.results.size(), ids.size());
  EXPECT_EQ(std::multiset<std::string>(sweep.reported.begin(), sweep.reported.end()),
            std::multiset<std::string>(ids.begin(), ids.end()));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(sweep.results[i].server_id, ids[i]);
  }
  for (const std::size_t good : {0U, 3U, 5U}) {
    const auto& sample = sweep.results[good].sample;
    ASSERT_TRUE(sample) << ids[good] << ": " << sample.error().message();
    EXPECT_TRUE(sample->failures.empty()) << failures_of(*sample);
    EXPECT_TRUE(sample->stat);
  }
  ASSERT_FALSE(sweep.results[1].sample);
  EXPECT_EQ(sweep.results[1].sample.error().code, ssh::Errc::connect_refused)
      << sweep.results[1].sample.error().message();
  ASSERT_FALSE(sweep.results[2].sample);
  EXPECT_EQ(sweep.results[2].sample.error().code, ssh::Errc::auth_failed)
      << sweep.results[2].sample.error().message();
  ASSERT_FALSE(sweep.results[4].sample);
  EXPECT_EQ(sweep.results[4].sample.error().code, pool::Errc::unknown_server);
}

TEST_F(MetricsTest, SweepDeadlinePassedFailsFastAndEmptySweepIsEmpty) {
  SshdFixture sshd;
  sshd.start();
  pool::Registry registry(io_.get_executor(), PoolConfig{});
  registry.add_server(test::pool_server(sshd, "srv"));
  metrics::CollectOptions options;
  options.deadline = Deadline(Clock::now() - 1s);
  const auto late = test::run_async(io_, collect(&registry, {"srv", "srv"}, options));
  ASSERT_EQ(late.results.size(), 2U);
  for (const auto& result : late.results) {
    ASSERT_FALSE(result.sample);
    EXPECT_EQ(result.sample.error().code, ssh::Errc::timeout);
  }
  EXPECT_EQ(sshd.session_open_count(), 0U);
  pool::Registry registry2(io_.get_executor(), PoolConfig{});
  const auto none = test::run_async(io_, collect(&registry2, {}, {}));
  EXPECT_TRUE(none.results.empty());
  EXPECT_TRUE(none.reported.empty());
}

}  // namespace
}  // namespace healer
