// healer_procfs: one parser per /proc file for checks and metrics. Direct tests of its records,
// and a table over every captured meminfo / loadavg / stat / file-nr / vmstat / mounts fixture
// (tests/data/proc and tests/data/metrics, busybox included) plus the inputs on which the two
// modules' former parsers disagreed: both modules must now accept or refuse each one alike and
// read the same numbers from it.
#include "healer/procfs/procfs.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "healer/checks/records.hpp"
#include "healer/metrics/parsers.hpp"

namespace healer::procfs {
namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// Fixtures of both modules whose name starts with `prefix`.
std::vector<std::filesystem::path> fixtures(std::string_view prefix) {
  std::vector<std::filesystem::path> found;
  for (const char* dir : {"proc", "metrics"}) {
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::path(HEALER_TEST_DATA) / dir)) {
      if (entry.path().filename().string().starts_with(prefix)) {
        found.push_back(entry.path());
      }
    }
  }
  EXPECT_FALSE(found.empty()) << prefix;
  return found;
}

TEST(Procfs, MeminfoKeepsKeysUnitsAndFirstValues) {
  const auto fields = parse_meminfo(
      "MemTotal:       16318508 kB\nActive(anon):     100 kB\nHugePages_Total:       4\n"
      "MemTotal: 1 kB\nWeird: 5 MB\nBad key: 1 kB\nHuge: 99999999999999999999 kB\n");
  ASSERT_TRUE(fields) << fields.error().message();
  ASSERT_EQ(fields->size(), 3U);
  EXPECT_EQ((*fields)[0].key, "MemTotal");
  EXPECT_EQ((*fields)[0].value, 16318508ULL * 1024);
  EXPECT_TRUE((*fields)[0].kilobytes);
  EXPECT_EQ((*fields)[1].key, "Active(anon)");
  EXPECT_EQ((*fields)[2].value, 4U);
  EXPECT_FALSE((*fields)[2].kilobytes);
  EXPECT_EQ(meminfo_value(*fields, "HugePages_Total"), 4U);
  EXPECT_FALSE(meminfo_value(*fields, "MemFree"));
  EXPECT_EQ(parse_meminfo("").error().code, Errc::empty);
  EXPECT_EQ(parse_meminfo("MemFree: 1 kB\n").error().code, Errc::missing_field);
}

TEST(Procfs, StatInTicks) {
  const auto stat = parse_stat(
      "cpu  10 1 5 100 2 0 1 3 4 0\ncpu0 5 0 2 50 1 0 0 1\ncpu0 9 9 9 9\nctxt 77\nbtime 1700\n"
      "intr 1 2 3\n");
  ASSERT_TRUE(stat) << stat.error().message();
  ASSERT_TRUE(stat->all);
  EXPECT_EQ(stat->all->total(), 10U + 1 + 5 + 100 + 2 + 0 + 1 + 3);  // guest not twice
  EXPECT_EQ(stat->all->guest, 4U);
  ASSERT_EQ(stat->cpus.size(), 1U);  // the first cpu0 wins
  EXPECT_EQ(stat->cpus[0].ticks.user, 5U);
  EXPECT_EQ(stat->context_switches, 77U);
  EXPECT_EQ(stat->boot_time, 1700U);
  EXPECT_EQ(parse_stat("cpu 1 2 3\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_stat("cpu 1 2 x 4\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_stat("ctxt 5\n").error().code, Errc::missing_field);
  EXPECT_EQ(parse_stat("").error().code, Errc::empty);
}

TEST(Procfs, LoadavgFileNrVmstatAndMounts) {
  const auto load = parse_loadavg("0.52 1.50 2.00 3/612 4242\n");
  ASSERT_TRUE(load);
  EXPECT_DOUBLE_EQ(load->load5, 1.5);
  EXPECT_EQ(parse_loadavg("0.5 -1 2\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_loadavg("nan 1 2\n").error().code, Errc::malformed);

  const auto file_nr = parse_file_nr("4128\t0\t9223372036854775807\n");
  ASSERT_TRUE(file_nr);
  EXPECT_EQ(file_nr->maximum, 9223372036854775807ULL);

  const auto counters = parse_vmstat("nr_free_pages 12\noom_kill 3\nbogus\n");
  ASSERT_TRUE(counters);
  EXPECT_EQ(vmstat_value(*counters, "oom_kill"), 3U);
  EXPECT_FALSE(vmstat_value(*counters, "pgfault"));
  EXPECT_EQ(parse_vmstat("oom_kill x\n").error().code, Errc::malformed);

  const auto mounts = parse_mounts(
      "/dev/sda1 / ext4 rw,relatime 0 0\n/dev/sdb1 /srv/a\\040b xfs ro 0 0\nnone x y z 0 0\n");
  ASSERT_TRUE(mounts);
  ASSERT_EQ(mounts->size(), 2U);
  EXPECT_EQ((*mounts)[1].mount_point, "/srv/a b");
  EXPECT_TRUE((*mounts)[1].has_option("ro"));
  EXPECT_FALSE((*mounts)[0].has_option("r"));
  EXPECT_EQ(decode_mount_path("/x\\777y\\134"), "/x\\777y\\") << "\\777 is not a byte";
}

// --- both modules read each shared file alike -----------------------------------------------

void expect_meminfo_alike(const std::string& text) {
  const auto checked = checks::parse_meminfo(text);
  const auto collected = metrics::parse_meminfo(text);
  if (!collected) {
    EXPECT_FALSE(checked) << "metrics refuses, checks accepts";
    return;
  }
  double total = -1;
  for (const auto& field : *collected) {
    if (field.name == "MemTotal_bytes") {
      total = field.value;
    }
  }
  if (checked) {
    EXPECT_EQ(static_cast<double>(checked->total), total);
  }
}

void expect_stat_alike(const std::string& text) {
  const auto checked = checks::parse_proc_stat(text);
  const auto collected = metrics::parse_proc_stat(text, 100.0);
  ASSERT_EQ(checked.has_value(), collected.has_value() && collected->all.has_value())
      << (checked ? std::string("checks accepts") : checked.error().message()) << " / "
      << (collected ? std::string("metrics accepts") : collected.error().message());
  if (checked) {
    EXPECT_DOUBLE_EQ(static_cast<double>(checked->idle) / 100.0, collected->all->idle);
    EXPECT_DOUBLE_EQ(static_cast<double>(checked->total()) / 100.0, collected->all->total());
  }
}

void expect_loadavg_alike(const std::string& text) {
  const auto checked = checks::parse_loadavg(text);
  const auto collected = metrics::parse_loadavg(text);
  ASSERT_EQ(checked.has_value(), collected.has_value());
  if (checked) {
    EXPECT_EQ(checked->load15, collected->load15);
  }
}

void expect_file_nr_alike(const std::string& text) {
  const auto checked = checks::parse_file_nr(text);
  const auto collected = metrics::parse_file_nr(text);
  if (checked) {
    ASSERT_TRUE(collected);
    EXPECT_EQ(checked->allocated, collected->allocated);
    EXPECT_EQ(checked->max, collected->maximum);
  } else if (collected) {
    // The checks refuse what they cannot judge (maximum 0, more unused than allocated); the
    // syntax is the same parser's.
    EXPECT_TRUE(collected->maximum == 0 || !parse_file_nr(text) ||
                parse_file_nr(text)->unused > collected->allocated)
        << text;
  }
}

void expect_vmstat_alike(const std::string& text) {
  const auto checked = checks::parse_counter(text, "oom_kill");
  const auto collected = metrics::parse_vmstat(text);
  if (checked) {
    ASSERT_TRUE(collected);
    EXPECT_EQ(collected->oom_kill, *checked);
  } else if (collected) {
    EXPECT_FALSE(collected->oom_kill) << text;
  }
}

TEST(ProcfsAgreement, EveryCapturedFileReadsAlikeInChecksAndMetrics) {
  for (const auto& path : fixtures("meminfo")) {
    SCOPED_TRACE(path.string());
    expect_meminfo_alike(read_file(path));
  }
  for (const auto& path : fixtures("loadavg")) {
    SCOPED_TRACE(path.string());
    expect_loadavg_alike(read_file(path));
  }
  for (const auto& path : fixtures("stat_")) {
    // The checks' stat fixtures hold two framed samples; each sample is a /proc/stat text.
    SCOPED_TRACE(path.string());
    const std::string text = read_file(path);
    std::string sample;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with("@@healer")) {
        if (!sample.empty()) {
          expect_stat_alike(sample);
        }
        sample.clear();
      } else {
        sample += line + "\n";
      }
    }
    if (!sample.empty()) {
      expect_stat_alike(sample);
    }
  }
  for (const auto& path : fixtures("file-nr")) {
    SCOPED_TRACE(path.string());
    expect_file_nr_alike(read_file(path));
  }
  for (const auto& path : fixtures("vmstat")) {
    SCOPED_TRACE(path.string());
    expect_vmstat_alike(read_file(path));
  }
}

TEST(ProcfsAgreement, InputsTheFormerTwoParsersJudgedDifferently) {
  // loadavg: the checks read the first line, the metrics every field of the text.
  expect_loadavg_alike("0.5 1.0\n2.0\n");
  // file-nr: the checks read the first line, the metrics every field.
  expect_file_nr_alike("1 0 5\n7\n");
  // stat: the checks ignored a broken ctxt line, the metrics refused it.
  expect_stat_alike("cpu 1 2 3 4\nctxt x\n");
  // mounts: the checks decoded \777 into a byte that does not exist; the kernel never writes it.
  const auto mounts = checks::parse_mounts("/dev/sda1 /mnt/\\777 ext4 rw 0 0\n");
  ASSERT_TRUE(mounts);
  EXPECT_EQ(mounts->front().mount_point, metrics::decode_mount_path("/mnt/\\777"));
}

}  // namespace
}  // namespace healer::procfs
