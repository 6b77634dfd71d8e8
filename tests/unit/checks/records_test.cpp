#include "healer/checks/records.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "fixture.hpp"
#include "healer/checks/errors.hpp"

namespace healer::checks {
namespace {

using testing::fixture;

TEST(ParseMeminfo, ModernKernelUsesMemAvailable) {
  const auto info = parse_meminfo(fixture("meminfo_6.18"));
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->total, 24684084ULL * 1024);
  EXPECT_EQ(info->available, 24159236ULL * 1024);
  EXPECT_FALSE(info->available_estimated);
  EXPECT_EQ(info->swap_total, 0U);
}

TEST(ParseMeminfo, Pre314KernelFallsBackToFreeBuffersCached) {
  const auto info = parse_meminfo(fixture("meminfo_2.6.32"));
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_TRUE(info->available_estimated);
  EXPECT_EQ(info->available, (412772ULL + 306504 + 5371732) * 1024);
  EXPECT_EQ(info->swap_free, 4081400ULL * 1024);
}

TEST(ParseMeminfo, BadInputIsAnError) {
  EXPECT_EQ(parse_meminfo("").error().code, make_error_code(Errc::empty));
  EXPECT_EQ(parse_meminfo(fixture("meminfo_truncated")).error().code,
            make_error_code(Errc::missing_field));
  EXPECT_FALSE(parse_meminfo(fixture("garbage")));
  EXPECT_FALSE(parse_meminfo("MemTotal: 0 kB\nMemFree: 0 kB\nMemAvailable: 0 kB\n"));
  EXPECT_FALSE(parse_meminfo("MemTotal: 99999999999999999999999 kB\nMemFree: 1 kB\n"));
}

TEST(ParseLoadavg, ReadsThreeAverages) {
  const auto load = parse_loadavg(fixture("loadavg_ok"));
  ASSERT_TRUE(load);
  EXPECT_DOUBLE_EQ(load->load1, 0.52);
  EXPECT_DOUBLE_EQ(load->load5, 0.48);
  EXPECT_DOUBLE_EQ(load->load15, 0.41);
  EXPECT_FALSE(parse_loadavg("0.5 0.4"));
  EXPECT_FALSE(parse_loadavg("a b c"));
  EXPECT_FALSE(parse_loadavg("-1 0 0"));
}

TEST(ParseProcStat, TwoSamplesGiveUsage) {
  const auto text = fixture("stat_pair_iowait");
  const auto split = text.find("@@healer sample", 1);
  const auto before = parse_proc_stat(std::string_view(text).substr(0, split));
  const auto after = parse_proc_stat(std::string_view(text).substr(split));
  ASSERT_TRUE(before);
  ASSERT_TRUE(after);
  const auto usage = cpu_usage(*before, *after);
  ASSERT_TRUE(usage);
  EXPECT_EQ(usage->ticks, 200U);
  EXPECT_DOUBLE_EQ(usage->busy, 15.0);
  EXPECT_DOUBLE_EQ(usage->iowait, 35.0);
  EXPECT_DOUBLE_EQ(usage->steal, 0.0);
}

TEST(ParseProcStat, BadSamplesAreErrors) {
  EXPECT_FALSE(parse_proc_stat("cpu0 1 2 3 4\n"));
  EXPECT_FALSE(parse_proc_stat("cpu 1 2 x 4\n"));
  EXPECT_FALSE(parse_proc_stat("cpu 1 2\n"));
  const CpuTimes later{100, 0, 50, 1000, 10, 0, 0, 0};
  const CpuTimes earlier{10, 0, 5, 100, 1, 0, 0, 0};
  EXPECT_FALSE(cpu_usage(later, earlier));
  EXPECT_FALSE(cpu_usage(later, later));
  // iowait going backwards alone is tolerated (NO_HZ kernels).
  CpuTimes iowait_back = later;
  iowait_back.idle += 100;
  iowait_back.iowait -= 5;
  const auto usage = cpu_usage(later, iowait_back);
  ASSERT_TRUE(usage);
  EXPECT_DOUBLE_EQ(usage->iowait, 0.0);
}

TEST(ParseDf, TypedOutputKeepsMountPointsWithSpaces) {
  const auto table = parse_df(fixture("df_gnu_ok"));
  ASSERT_TRUE(table) << table.error().message();
  EXPECT_TRUE(table->has_type);
  ASSERT_EQ(table->rows.size(), 11U);
  EXPECT_EQ(table->rows[2].filesystem, "/dev/nvme0n1p2");
  EXPECT_EQ(table->rows[2].fstype, "ext4");
  EXPECT_EQ(table->rows[2].mount_point, "/");
  EXPECT_EQ(table->rows[2].used, 201466840U);
  EXPECT_EQ(table->rows[10].mount_point, "/srv/data with space");
  EXPECT_NEAR(*table->rows[2].used_percent(), 44.26, 0.01);
}

TEST(ParseDf, BusyboxAndInodeOutputs) {
  const auto busybox = parse_df(fixture("df_busybox"));
  ASSERT_TRUE(busybox);
  EXPECT_FALSE(busybox->has_type);
  EXPECT_EQ(busybox->rows.size(), 5U);  // the mount table after the marker is not df output
  EXPECT_EQ(busybox->rows[3].filesystem, "nas:/volume1/backup");

  const auto inodes = parse_df(fixture("df_gnu_inodes"));
  ASSERT_TRUE(inodes);
  ASSERT_EQ(inodes->rows.size(), 5U);
  EXPECT_EQ(inodes->rows[3].fstype, "btrfs");
  EXPECT_FALSE(inodes->rows[3].used_percent());  // "-": no inode accounting
}

TEST(ParseDf, BadOutputIsAnError) {
  EXPECT_EQ(parse_df("").error().code, make_error_code(Errc::empty));
  EXPECT_FALSE(parse_df(fixture("garbage")));
  EXPECT_FALSE(
      parse_df("Filesystem Type 1024-blocks Used Available Capacity Mounted on\n"
               "/dev/sda1 ext4 12 x 3 4% /\n"));
  // Header only: valid, no rows (every filesystem filtered by -l / -x).
  const auto header_only = parse_df("Filesystem 1024-blocks Used Available Capacity Mounted on\n");
  ASSERT_TRUE(header_only);
  EXPECT_TRUE(header_only->rows.empty());
}

TEST(ParseMounts, DecodesEscapesAndOptions) {
  const auto mounts = parse_mounts(fixture("mounts_rw"));
  ASSERT_TRUE(mounts);
  ASSERT_EQ(mounts->size(), 12U);
  EXPECT_EQ((*mounts)[11].mount_point, "/srv/data with space");
  EXPECT_TRUE((*mounts)[7].has_option("ro"));
  EXPECT_FALSE((*mounts)[4].has_option("ro"));
  EXPECT_TRUE((*mounts)[4].has_option("errors=remount-ro"));
  EXPECT_FALSE((*mounts)[4].has_option("remount-ro"));
  EXPECT_FALSE(parse_mounts(fixture("garbage")));
}

TEST(ClassifyFstype, PseudoNetworkLocal) {
  struct Case {
    std::string_view fstype;
    FsClass expected;
  };
  const Case cases[] = {
      {"ext4", FsClass::local},         {"xfs", FsClass::local},
      {"btrfs", FsClass::local},        {"vfat", FsClass::local},
      {"zfs", FsClass::local},          {"fuseblk", FsClass::local},
      {"tmpfs", FsClass::pseudo},       {"devtmpfs", FsClass::pseudo},
      {"proc", FsClass::pseudo},        {"sysfs", FsClass::pseudo},
      {"overlay", FsClass::pseudo},     {"squashfs", FsClass::pseudo},
      {"fuse.lxcfs", FsClass::pseudo},  {"nfs", FsClass::network},
      {"nfs4", FsClass::network},       {"cifs", FsClass::network},
      {"fuse.sshfs", FsClass::network}, {"9p", FsClass::network},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(classify_fstype(c.fstype), c.expected) << c.fstype;
  }
  EXPECT_EQ(classify_device("tmpfs"), FsClass::pseudo);
  EXPECT_EQ(classify_device("nas:/volume1"), FsClass::network);
  EXPECT_EQ(classify_device("//fs01/share"), FsClass::network);
  EXPECT_EQ(classify_device("/dev/root"), FsClass::local);
}

TEST(ParsePs, StatesPidsAndCommands) {
  const auto processes = parse_ps_states(fixture("ps_states_zombies_dstate"));
  ASSERT_TRUE(processes);
  ASSERT_EQ(processes->size(), 21U);
  EXPECT_EQ((*processes)[7].state, 'Z');
  EXPECT_EQ((*processes)[7].pid, 11203);
  EXPECT_EQ((*processes)[16].state, 'D');  // "D+"
  EXPECT_EQ((*processes)[20].command, "Web Content");
  const auto bare = parse_ps_states("STAT\nSs\nZ\nD<\n");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->size(), 3U);
  EXPECT_FALSE((*bare)[0].pid);
  EXPECT_FALSE(parse_ps_states(fixture("garbage")));
  EXPECT_FALSE(parse_ps_states("hello world\n"));
}

TEST(ParsePs, BusyboxStatFlags) {
  // Captured from busybox 1.35 `ps -e -o stat= -o pid= -o comm=`: "SW", "IW<", "SWN".
  const std::string text = fixture("ps_states_busybox");
  const auto processes = parse_ps_states(text);
  ASSERT_TRUE(processes) << processes.error().message();
  EXPECT_EQ(processes->size(),
            static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')));
}

TEST(ParseProcPidStats, CommMayHoldSpacesAndParentheses) {
  const auto processes = parse_proc_pid_stats(fixture("proc_pid_stat"));
  ASSERT_TRUE(processes);
  ASSERT_EQ(processes->size(), 5U);
  EXPECT_EQ((*processes)[2].command, "tmux: server");
  EXPECT_EQ((*processes)[3].command, "odd) name");
  EXPECT_EQ((*processes)[3].state, 'Z');
  EXPECT_EQ((*processes)[4].state, 'D');
  EXPECT_FALSE(parse_proc_pid_stats(fixture("garbage")));
}

TEST(ParseFileNr, ThreeCounts) {
  const auto file_nr = parse_file_nr(fixture("file-nr_ok"));
  ASSERT_TRUE(file_nr);
  EXPECT_EQ(file_nr->allocated, 22020U);
  EXPECT_EQ(file_nr->max, 2466170U);
  EXPECT_FALSE(parse_file_nr(fixture("file-nr_garbage")));
  EXPECT_FALSE(parse_file_nr("1 0 0\n"));
  EXPECT_FALSE(parse_file_nr("1 5 10\n"));
}

TEST(ParseUptimeAndCounters, Basics) {
  EXPECT_DOUBLE_EQ(*parse_proc_uptime(fixture("uptime_ok")), 5294.78);
  EXPECT_FALSE(parse_proc_uptime("abc"));
  EXPECT_EQ(*parse_counter("nr_free_pages 12\noom_kill 3\n", "oom_kill"), 3U);
  EXPECT_EQ(parse_counter("nr_free_pages 12\n", "oom_kill").error().code,
            make_error_code(Errc::missing_field));
  EXPECT_FALSE(parse_counter("oom_kill x\n", "oom_kill"));
}

TEST(ParseSs, ModernAndOldOutputs) {
  const std::string modern = fixture("ss_ltn");
  const auto sockets = parse_ss_listening(modern.substr(modern.find('\n') + 1));
  ASSERT_TRUE(sockets) << sockets.error().message();
  ASSERT_EQ(sockets->size(), 7U);
  EXPECT_EQ((*sockets)[0].address, "127.0.0.53%lo");
  EXPECT_EQ((*sockets)[0].port, 53);
  EXPECT_EQ((*sockets)[5].address, "::");
  EXPECT_EQ((*sockets)[6].address, "*");
  EXPECT_EQ((*sockets)[6].port, 9100);

  const std::string old = fixture("ss_ltn_old");
  const auto old_sockets = parse_ss_listening(old.substr(old.find('\n') + 1));
  ASSERT_TRUE(old_sockets);
  ASSERT_EQ(old_sockets->size(), 3U);
  EXPECT_EQ((*old_sockets)[0].address, "::");
  EXPECT_EQ((*old_sockets)[2].port, 25);

  // Header only: nothing listens. No header and nothing parsed: not ss output.
  EXPECT_TRUE(parse_ss_listening("State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"));
  EXPECT_FALSE(parse_ss_listening(fixture("garbage")));
}

TEST(ParseProcNetTcp, ListeningSocketsOfBothFamilies) {
  const std::string text = fixture("proc_net_tcp");
  const auto sockets = parse_proc_net_tcp(text.substr(text.find('\n') + 1));
  ASSERT_TRUE(sockets) << sockets.error().message();
  ASSERT_EQ(sockets->size(), 4U);
  EXPECT_EQ((*sockets)[0].address, "0.0.0.0");
  EXPECT_EQ((*sockets)[0].port, 22);
  EXPECT_EQ((*sockets)[1].address, "127.0.0.1");
  EXPECT_EQ((*sockets)[1].port, 5432);
  EXPECT_EQ((*sockets)[3].address, "::");
  EXPECT_FALSE(parse_proc_net_tcp(fixture("garbage")));
}

}  // namespace
}  // namespace healer::checks
