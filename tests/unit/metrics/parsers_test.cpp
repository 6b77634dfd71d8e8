// The pure parsers against captured /proc files of several kernels (tests/data/metrics).
#include "healer/metrics/parsers.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "healer/metrics/errors.hpp"

namespace healer::metrics {
namespace {

using testing::fixture;

// --- /proc/stat -------------------------------------------------------------------------------

TEST(ProcStat, Kernel419TwoCpusWithGuestColumns) {
  const auto stat = parse_proc_stat(fixture("stat_4.19_2cpu_guest"), 100.0);
  ASSERT_TRUE(stat) << stat.error().message();
  ASSERT_EQ(stat->cpus.size(), 2U);
  const CpuTimes& cpu0 = stat->cpus[0].times;
  EXPECT_EQ(stat->cpus[0].cpu, 0U);
  EXPECT_DOUBLE_EQ(cpu0.user, 6.0);
  EXPECT_DOUBLE_EQ(cpu0.nice, 1.0);
  EXPECT_DOUBLE_EQ(cpu0.system, 1.5);
  EXPECT_DOUBLE_EQ(cpu0.idle, 200.0);
  EXPECT_DOUBLE_EQ(cpu0.iowait, 0.2);
  EXPECT_DOUBLE_EQ(cpu0.irq, 0.03);
  EXPECT_DOUBLE_EQ(cpu0.softirq, 0.04);
  EXPECT_DOUBLE_EQ(cpu0.steal, 0.04);
  EXPECT_DOUBLE_EQ(cpu0.guest, 1.0);
  EXPECT_DOUBLE_EQ(cpu0.guest_nice, 0.1);
  // guest is inside user: the total does not count it twice.
  EXPECT_NEAR(cpu0.total(), 208.81, 1e-9);
  EXPECT_EQ(stat->cpus[1].cpu, 1U);
  EXPECT_DOUBLE_EQ(stat->cpus[1].times.guest_nice, 0.2);
  ASSERT_TRUE(stat->all);
  EXPECT_DOUBLE_EQ(stat->all->user, 10.0);
  EXPECT_EQ(stat->context_switches, 987654321U);
  EXPECT_EQ(stat->boot_time, 1700000000U);
  EXPECT_EQ(stat->procs_running, 3U);
  EXPECT_EQ(stat->procs_blocked, 1U);
}

TEST(ProcStat, Kernel68FourCpusAndOfflineCpu) {
  const auto all = parse_proc_stat(fixture("stat_6.8_4cpu"), 100.0);
  ASSERT_TRUE(all) << all.error().message();
  ASSERT_EQ(all->cpus.size(), 4U);
  EXPECT_DOUBLE_EQ(all->cpus[3].times.idle, 9248.31);
  const auto offline = parse_proc_stat(fixture("stat_6.8_4cpu_offline"), 100.0);
  ASSERT_TRUE(offline) << offline.error().message();
  ASSERT_EQ(offline->cpus.size(), 3U);
  EXPECT_EQ(offline->cpus[0].cpu, 0U);
  EXPECT_EQ(offline->cpus[1].cpu, 1U);
  EXPECT_EQ(offline->cpus[2].cpu, 3U);  // cpu2 is offline
}

TEST(ProcStat, Kernel269ShortColumnsAndOtherUserHz) {
  const auto stat = parse_proc_stat(fixture("stat_2.6.9_short"), 1000.0);
  ASSERT_TRUE(stat) << stat.error().message();
  ASSERT_EQ(stat->cpus.size(), 2U);
  EXPECT_DOUBLE_EQ(stat->cpus[0].times.user, 1.132);
  EXPECT_DOUBLE_EQ(stat->cpus[0].times.softirq, 0.438);
  EXPECT_DOUBLE_EQ(stat->cpus[0].times.steal, 0.0);
  EXPECT_DOUBLE_EQ(stat->cpus[0].times.guest, 0.0);
  EXPECT_EQ(stat->boot_time, 1062191376U);
}

TEST(ProcStat, Errors) {
  EXPECT_EQ(parse_proc_stat("", 100.0).error().code, Errc::empty);
  EXPECT_EQ(parse_proc_stat(fixture("stat_garbage_counter"), 100.0).error().code, Errc::malformed);
  EXPECT_EQ(parse_proc_stat("ctxt 5\nbtime 6\n", 100.0).error().code, Errc::missing_field);
  EXPECT_EQ(parse_proc_stat("cpu0 1 2 3\n", 100.0).error().code, Errc::malformed);
  EXPECT_EQ(parse_proc_stat("cpu0 1 2 3 4\n", 0.0).error().code, Errc::malformed);
  EXPECT_EQ(parse_proc_stat("cpu99999999999 1 2 3 4\n", 100.0).error().code, Errc::malformed);
}

TEST(ClkTck, Values) {
  EXPECT_DOUBLE_EQ(*parse_clk_tck("100\n"), 100.0);
  EXPECT_DOUBLE_EQ(*parse_clk_tck("1024"), 1024.0);
  EXPECT_EQ(parse_clk_tck("").error().code, Errc::empty);
  EXPECT_EQ(parse_clk_tck("0\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_clk_tck("undefined\n").error().code, Errc::malformed);
}

// --- loadavg, meminfo, vmstat, file-nr ----------------------------------------------------------

TEST(LoadAvg, Values) {
  const auto load = parse_loadavg(fixture("loadavg_ok"));
  ASSERT_TRUE(load) << load.error().message();
  EXPECT_DOUBLE_EQ(load->load1, 0.52);
  EXPECT_DOUBLE_EQ(load->load5, 1.25);
  EXPECT_DOUBLE_EQ(load->load15, 2.5);
  EXPECT_EQ(parse_loadavg("").error().code, Errc::empty);
  EXPECT_EQ(parse_loadavg("0.5 1.0\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_loadavg("0.5 -1 2\n").error().code, Errc::malformed);
}

double meminfo_value(const std::vector<MeminfoField>& fields, const std::string& name) {
  for (const auto& field : fields) {
    if (field.name == name) {
      return field.value;
    }
  }
  ADD_FAILURE() << "no meminfo field " << name;
  return -1.0;
}

bool has_field(const std::vector<MeminfoField>& fields, const std::string& name) {
  for (const auto& field : fields) {
    if (field.name == name) {
      return true;
    }
  }
  return false;
}

TEST(Meminfo, Kernel310WithoutMemAvailable) {
  const auto mem = parse_meminfo(fixture("meminfo_3.10"));
  ASSERT_TRUE(mem) << mem.error().message();
  EXPECT_EQ(mem->size(), 42U);
  EXPECT_EQ((*mem)[0].name, "MemTotal_bytes");
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "MemTotal_bytes"), 1883804.0 * 1024);
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "Active_anon_bytes"), 505356.0 * 1024);
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "Inactive_file_bytes"), 242592.0 * 1024);
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "VmallocTotal_bytes"), 34359738367.0 * 1024);
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "HugePages_Total"), 0.0);
  EXPECT_FALSE(has_field(*mem, "MemAvailable_bytes"));  // absent before 3.14, not zero
  EXPECT_FALSE(has_field(*mem, "HugePages_Total_bytes"));
}

TEST(Meminfo, Kernel61) {
  const auto mem = parse_meminfo(fixture("meminfo_6.1"));
  ASSERT_TRUE(mem) << mem.error().message();
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "MemAvailable_bytes"), 6123456.0 * 1024);
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "SwapTotal_bytes"), 0.0);
  EXPECT_DOUBLE_EQ(meminfo_value(*mem, "Hugepagesize_bytes"), 2048.0 * 1024);
}

TEST(Meminfo, Errors) {
  EXPECT_EQ(parse_meminfo("").error().code, Errc::empty);
  EXPECT_EQ(parse_meminfo(fixture("meminfo_no_total")).error().code, Errc::missing_field);
  // Junk lines are skipped, the rest parses.
  const auto mem = parse_meminfo("garbage\nMemTotal: 4 kB\nWeird: 5 MB\nBad key: 1 kB\n");
  ASSERT_TRUE(mem);
  ASSERT_EQ(mem->size(), 1U);
  EXPECT_DOUBLE_EQ((*mem)[0].value, 4096.0);
}

TEST(VmStat, OomKillSinceKernel413) {
  const auto new_kernel = parse_vmstat(fixture("vmstat_4.19"));
  ASSERT_TRUE(new_kernel);
  EXPECT_EQ(new_kernel->oom_kill, 3U);
  const auto old_kernel = parse_vmstat(fixture("vmstat_3.10"));
  ASSERT_TRUE(old_kernel);
  EXPECT_FALSE(old_kernel->oom_kill);
  EXPECT_EQ(parse_vmstat("").error().code, Errc::empty);
  EXPECT_EQ(parse_vmstat("no numbers here\n").error().code, Errc::malformed);
}

TEST(FileNr, Values) {
  const auto modern = parse_file_nr(fixture("file-nr_6.x"));
  ASSERT_TRUE(modern);
  EXPECT_EQ(modern->allocated, 1824U);
  EXPECT_EQ(modern->maximum, 9223372036854775807U);
  const auto old = parse_file_nr(fixture("file-nr_3.10"));
  ASSERT_TRUE(old);
  EXPECT_EQ(old->allocated, 2880U);
  EXPECT_EQ(old->maximum, 185535U);
  EXPECT_EQ(parse_file_nr("").error().code, Errc::empty);
  EXPECT_EQ(parse_file_nr("1 2\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_file_nr("1 x 3\n").error().code, Errc::malformed);
}

// --- diskstats ----------------------------------------------------------------------------------

struct DiskCase {
  const char* fixture;
  std::vector<DiskStats> expected;
};

class Diskstats : public ::testing::TestWithParam<DiskCase> {};

TEST_P(Diskstats, ParsesKeptDevices) {
  const auto disks = parse_diskstats(fixture(GetParam().fixture));
  ASSERT_TRUE(disks) << disks.error().message();
  const auto& expected = GetParam().expected;
  ASSERT_EQ(disks->size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].device);
    EXPECT_EQ((*disks)[i].device, expected[i].device);
    EXPECT_EQ((*disks)[i].reads_completed, expected[i].reads_completed);
    EXPECT_EQ((*disks)[i].writes_completed, expected[i].writes_completed);
    EXPECT_EQ((*disks)[i].read_bytes, expected[i].read_bytes);
    EXPECT_EQ((*disks)[i].written_bytes, expected[i].written_bytes);
    ASSERT_EQ((*disks)[i].io_time_seconds.has_value(), expected[i].io_time_seconds.has_value());
    if (expected[i].io_time_seconds) {
      EXPECT_DOUBLE_EQ(*(*disks)[i].io_time_seconds, *expected[i].io_time_seconds);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, Diskstats,
    ::testing::Values(
        // 2.6.32: ram/loop and sd partitions dropped; the short partition form (no io_time).
        DiskCase{"diskstats_2.6.32",
                 {{"sda", 48213, 91234, 2357148ULL * 512, 2170816ULL * 512, 612.345},
                  {"mmcblk0p1", 1234, 5678, 2468ULL * 512, 91011ULL * 512, std::nullopt},
                  {"dm-0", 60123, 271357, 2344562ULL * 512, 2170856ULL * 512, 612.4}}},
        // 4.19: nvme partitions dropped.
        DiskCase{"diskstats_4.19",
                 {{"sda", 120345, 234567, 9876543ULL * 512, 12345678ULL * 512, 345.678},
                  {"nvme0n1", 500000, 800000, 64000000ULL * 512, 128000000ULL * 512, 654.321},
                  {"dm-0", 600000, 1000000, 70000000ULL * 512, 140000000ULL * 512, 700.0}}},
        // 5.15: discard and flush columns; zram and vd partitions dropped.
        DiskCase{"diskstats_5.15_flush",
                 {{"nvme0n1", 817263, 1428834, 58143232ULL * 512, 93422296ULL * 512, 1030.788},
                  {"vda", 1000, 3000, 20000ULL * 512, 60000ULL * 512, 1.8},
                  {"mmcblk0", 5000, 2000, 40000ULL * 512, 16000ULL * 512, 0.12}}}));

TEST(DiskstatsErrors, Shapes) {
  EXPECT_EQ(parse_diskstats("").error().code, Errc::empty);
  EXPECT_EQ(parse_diskstats(fixture("diskstats_bad_fields")).error().code, Errc::malformed);
  EXPECT_EQ(parse_diskstats("8 0 sda 1 2 3 x 5 6 7 8 9 10 11\n").error().code, Errc::malformed);
  // Sector counts near 2^64 saturate instead of wrapping.
  const auto huge = parse_diskstats("8 0 sda 1 0 18446744073709551615 0 1 0 2 0 0 0 0\n");
  ASSERT_TRUE(huge);
  EXPECT_EQ((*huge)[0].read_bytes, UINT64_MAX);
  EXPECT_EQ((*huge)[0].written_bytes, 1024U);
}

TEST(DiskExclusion, NodeExporterDefaults) {
  for (const char* excluded : {"ram0", "zram1", "loop12", "fd0", "sda1", "hdb2", "vda3", "xvdf1",
                               "sdab12", "nvme0n1p1", "nvme12n3p45"}) {
    EXPECT_TRUE(is_excluded_disk(excluded)) << excluded;
  }
  for (const char* kept : {"sda", "vdb", "xvdf", "nvme0n1", "dm-0", "md127", "mmcblk0", "loop",
                           "nvme0n1p", "sr0", "ram"}) {
    EXPECT_FALSE(is_excluded_disk(kept)) << kept;
  }
}

// --- net/dev ------------------------------------------------------------------------------------

TEST(NetDev, Kernel6) {
  const auto devs = parse_net_dev(fixture("net_dev_6.x"));
  ASSERT_TRUE(devs) << devs.error().message();
  ASSERT_EQ(devs->size(), 3U);
  EXPECT_EQ((*devs)[0].device, "lo");
  EXPECT_EQ((*devs)[0].receive_bytes, 5097743271U);
  const NetDev& eth0 = (*devs)[1];
  EXPECT_EQ(eth0.device, "eth0");
  EXPECT_EQ(eth0.receive_bytes, 34344381U);
  EXPECT_EQ(eth0.receive_packets, 1001U);
  EXPECT_EQ(eth0.receive_errs, 2U);
  EXPECT_EQ(eth0.receive_drop, 3U);
  EXPECT_EQ(eth0.transmit_bytes, 61203U);
  EXPECT_EQ(eth0.transmit_packets, 695U);
  EXPECT_EQ(eth0.transmit_errs, 4U);
  EXPECT_EQ(eth0.transmit_drop, 5U);
  EXPECT_EQ((*devs)[2].device, "docker0");
}

TEST(NetDev, Kernel26CounterGluedToName) {
  const auto devs = parse_net_dev(fixture("net_dev_2.6_glued"));
  ASSERT_TRUE(devs) << devs.error().message();
  ASSERT_EQ(devs->size(), 2U);
  EXPECT_EQ((*devs)[1].device, "eth0");
  EXPECT_EQ((*devs)[1].receive_bytes, 4294967295123U);
  EXPECT_EQ((*devs)[1].receive_packets, 987654321U);
  EXPECT_EQ((*devs)[1].receive_drop, 17U);
  EXPECT_EQ((*devs)[1].transmit_bytes, 1234567890123U);
  EXPECT_EQ((*devs)[1].transmit_packets, 876543210U);
}

TEST(NetDev, Errors) {
  EXPECT_EQ(parse_net_dev("").error().code, Errc::empty);
  EXPECT_EQ(parse_net_dev("eth0: 1 2 3\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_net_dev(": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n").error().code,
            Errc::malformed);
  const auto header_only = parse_net_dev("Inter-|   Receive\n face |bytes\n");
  ASSERT_TRUE(header_only);
  EXPECT_TRUE(header_only->empty());
}

// --- filesystems --------------------------------------------------------------------------------

TEST(Filesystems, GnuStatWithExclusionsAndEscapes) {
  const auto fss = parse_filesystems(fixture("filesystems_gnu"));
  ASSERT_TRUE(fss) << fss.error().message();
  ASSERT_EQ(fss->size(), 4U);  // nfs4 and docker's overlay dropped, "-" (stat failed) skipped
  const Filesystem& root = (*fss)[0];
  EXPECT_EQ(root.device, "/dev/nvme0n1p2");
  EXPECT_EQ(root.mountpoint, "/");
  EXPECT_EQ(root.fstype, "ext4");
  EXPECT_EQ(root.size_bytes, 60000000ULL * 4096);
  EXPECT_EQ(root.free_bytes, 30000000ULL * 4096);
  EXPECT_EQ(root.avail_bytes, 27000000ULL * 4096);
  EXPECT_EQ(root.files, 15000000U);
  EXPECT_EQ(root.files_free, 14000000U);
  EXPECT_EQ((*fss)[1].mountpoint, "/boot/efi");
  EXPECT_EQ((*fss)[1].size_bytes, 1048576ULL * 512);
  EXPECT_EQ((*fss)[2].fstype, "tmpfs");  // node_exporter keeps tmpfs
  EXPECT_EQ((*fss)[3].mountpoint, "/mnt/backup disk");
  EXPECT_EQ((*fss)[3].size_bytes, 100U * 4096);
}

TEST(Filesystems, Busybox) {
  const auto fss = parse_filesystems(fixture("filesystems_busybox"));
  ASSERT_TRUE(fss) << fss.error().message();
  ASSERT_EQ(fss->size(), 2U);
  EXPECT_EQ((*fss)[0].device, "/dev/root");
  EXPECT_EQ((*fss)[0].size_bytes, 7574244ULL * 1024);
  EXPECT_EQ((*fss)[0].avail_bytes, 4600000ULL * 1024);
  EXPECT_EQ((*fss)[1].mountpoint, "/tmp");
}

TEST(Filesystems, EdgeCases) {
  const auto none = parse_filesystems("");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(parse_filesystems("/dev/sda1 / ext4 4096 1 2\n").error().code, Errc::malformed);
  EXPECT_EQ(parse_filesystems("/dev/sda1 / ext4 4096 1 2 3 4 x\n").error().code, Errc::malformed);
  // Mounted over: the last mount is the visible one.
  const auto over = parse_filesystems("a /m ext4 1 10 1 1 1 1\nb /m xfs 1 20 1 1 1 1\n");
  ASSERT_TRUE(over);
  ASSERT_EQ(over->size(), 1U);
  EXPECT_EQ((*over)[0].device, "b");
  EXPECT_EQ((*over)[0].size_bytes, 20U);
}

TEST(FilesystemExclusion, NodeExporterDefaultsPlusNetwork) {
  EXPECT_TRUE(is_excluded_filesystem("proc", "/proc"));
  EXPECT_TRUE(is_excluded_filesystem("ext4", "/dev"));
  EXPECT_TRUE(is_excluded_filesystem("ext4", "/dev/shm"));
  EXPECT_TRUE(is_excluded_filesystem("ext4", "/sys/"));
  EXPECT_TRUE(is_excluded_filesystem("ext4", "/var/lib/docker/volumes"));
  EXPECT_TRUE(is_excluded_filesystem("tmpfs", "/run/credentials/getty.service"));
  EXPECT_TRUE(is_excluded_filesystem("nfs4", "/home"));
  EXPECT_TRUE(is_excluded_filesystem("fuse.sshfs", "/mnt/remote"));
  EXPECT_TRUE(is_excluded_filesystem("squashfs", "/snap/core/1"));
  EXPECT_FALSE(is_excluded_filesystem("ext4", "/"));
  EXPECT_FALSE(is_excluded_filesystem("ext4", "/var/lib/docker"));
  EXPECT_FALSE(is_excluded_filesystem("tmpfs", "/run"));
  EXPECT_FALSE(is_excluded_filesystem("ext4", "/device"));
  EXPECT_FALSE(is_excluded_filesystem("ext4", "/system"));
}

TEST(MountPath, DecodesOctalEscapes) {
  EXPECT_EQ(decode_mount_path("/mnt/a\\040b\\011c\\134d"), "/mnt/a b\tc\\d");
  EXPECT_EQ(decode_mount_path("/plain"), "/plain");
  EXPECT_EQ(decode_mount_path("/bad\\09"), "/bad\\09");
  EXPECT_EQ(decode_mount_path("/end\\04"), "/end\\04");
  EXPECT_EQ(decode_mount_path("\\"), "\\");
}

// --- uname, time --------------------------------------------------------------------------------

TEST(Uname, GnuAndBusybox) {
  const auto gnu = parse_uname(fixture("uname_gnu"));
  ASSERT_TRUE(gnu) << gnu.error().message();
  EXPECT_EQ(gnu->sysname, "Linux");
  EXPECT_EQ(gnu->release, "6.1.0-18-amd64");
  EXPECT_EQ(gnu->version, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)");
  EXPECT_EQ(gnu->machine, "x86_64");
  EXPECT_EQ(gnu->nodename, "web-01");
  const auto busybox = parse_uname(fixture("uname_busybox"));
  ASSERT_TRUE(busybox) << busybox.error().message();
  EXPECT_EQ(busybox->release, "4.14.98-v7+");
  EXPECT_EQ(busybox->machine, "armv7l");
  EXPECT_EQ(parse_uname("").error().code, Errc::empty);
  EXPECT_EQ(parse_uname("Linux\n6.1\n").error().code, Errc::malformed);
}

TEST(Time, EpochSeconds) {
  EXPECT_DOUBLE_EQ(*parse_time("1700003600\n"), 1700003600.0);
  EXPECT_EQ(parse_time("").error().code, Errc::empty);
  EXPECT_EQ(parse_time("Thu Nov 26\n").error().code, Errc::malformed);
}

}  // namespace
}  // namespace healer::metrics
