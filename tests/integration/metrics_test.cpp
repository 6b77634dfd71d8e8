// metrics::async_collect against a real OpenSSH sshd on 127.0.0.1 (the server is this machine):
// the probe's figures match what this machine reports, counters only grow between two
// collections, a prepared proc root shows partial results and that file contents cannot fake a
// section, and a sweep over good and broken servers gives each one a result or a typed error.
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
