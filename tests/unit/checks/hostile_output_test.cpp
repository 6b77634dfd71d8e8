// Output a server's users control cannot forge a check's status: lines that read like healer's
// framing ("@@healer unavailable ...", the fixed marker older healers used) in mount sources
// (FUSE -o fsname= needs no root), process names, kernel messages, package origins, unit names
// and log paths are data. Only the run's random marker frames (CheckInput::marker).
#include <gtest/gtest.h>

#include <string>

#include "fixture.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/checks/parsers.hpp"

namespace healer::checks {
namespace {

using testing::fixture;
using testing::framed;
using testing::kMarker;

// A line the server prints to look like healer's framing.
const std::string kForgedUnavailable = "@@healer unavailable (forged by a FUSE mount)";

CheckResult judge(Parser parse, const std::string& out, const CheckSettings& settings = {}) {
  CheckInput input;
  input.out = out;
  input.marker = kMarker;
  input.exit_status = 0;
  return parse(input, settings);
}

// Inserts `line` after the first line of `text` (inside a df table, after its header).
std::string after_first_line(const std::string& text, const std::string& line) {
  const auto end = text.find('\n') + 1;
  return text.substr(0, end) + line + "\n" + text.substr(end);
}

TEST(HostileOutput, AFuseMountNamedLikeAMarkerCannotMakeAFullDiskUnknown) {
  const std::string df = framed(fixture("df_gnu_critical"));
  ASSERT_EQ(judge(parse_disk_space, df).status, Status::critical);
  // `fusermount`-style mounts print their fsname raw: the line starts with the forged text.
  for (const std::string& row :
       {kForgedUnavailable + " fuse.x 1000 10 990 1% /home/eve/m",
        std::string("@@healer unavailable"), kForgedUnavailable,
        // The marker alone and the marker of another run are no better.
        std::string("@@healer"),
        std::string("@@healer-ffffffffffffffffffffffffffffffff unavailable x"),
        std::string(kMarker) + "x unavailable (the marker glued to more text)"}) {
    SCOPED_TRACE(row);
    const auto result = judge(parse_disk_space, after_first_line(df, row));
    EXPECT_EQ(result.status, Status::critical) << result.nagios_line();
    EXPECT_NE(result.message.find("/ 96.4% used (!!)"), std::string::npos) << result.message;
    const auto inodes = judge(parse_disk_inodes, after_first_line(df, row));
    EXPECT_NE(inodes.status, Status::unknown) << inodes.nagios_line();
  }
}

TEST(HostileOutput, BusyboxMountTableWithAForgedLineStillTypesTheDisks) {
  const std::string df = framed(fixture("df_busybox"));
  const std::string hostile = df + kForgedUnavailable + " /home/eve/m fuse rw 0 0\n";
  const auto honest = judge(parse_disk_space, df);
  const auto result = judge(parse_disk_space, hostile);
  EXPECT_EQ(result.status, honest.status) << result.nagios_line();
  EXPECT_EQ(result.message, honest.message);
}

TEST(HostileOutput, ForgedMountsCannotHideAReadOnlyRoot) {
  const std::string mounts =
      kForgedUnavailable + " /home/eve/m fuse rw 0 0\n" + fixture("mounts_ro_ext4");
  const auto result = judge(parse_read_only_mounts, mounts);
  EXPECT_EQ(result.status, Status::critical) << result.nagios_line();
}

TEST(HostileOutput, AProcessNameWithANewlineCannotHideZombies) {
  // prctl(PR_SET_NAME) takes any byte but NUL; /proc/<pid>/stat prints it raw.
  const std::string ps =
      framed(fixture("ps_states_zombies_dstate")) + "S 4242 x\n" + kForgedUnavailable + "\n";
  const auto result = judge(parse_processes, ps);
  EXPECT_NE(result.status, Status::unknown) << result.nagios_line();
  EXPECT_EQ(result.status,
            judge(parse_processes, framed(fixture("ps_states_zombies_dstate"))).status);

  const std::string procstat = framed(fixture("proc_pid_stat")) + "4242 (x\n" + kForgedUnavailable +
                               ") S 1 4242 1 0 -1 0 0 0 0 0 0 0 0 0\n";
  const auto fallback = judge(parse_processes, procstat);
  EXPECT_NE(fallback.status, Status::unknown) << fallback.nagios_line();
  EXPECT_NE(fallback.message.find("1 zombie"), std::string::npos) << fallback.message;
}

TEST(HostileOutput, KernelMessagesAndPackageOriginsAreData) {
  const std::string journal = framed(fixture("journal_kernel_errors")) + kForgedUnavailable + "\n";
  const auto kernel = judge(parse_kernel_errors, journal);
  EXPECT_EQ(kernel.status, Status::warning) << kernel.nagios_line();

  const std::string apt =
      framed(fixture("apt_simulate_security")) + kForgedUnavailable + "\n" + "@@healer dnf\n";
  const auto updates = judge(parse_security_updates, apt);
  EXPECT_EQ(updates.status, Status::critical) << updates.nagios_line();
  EXPECT_NE(updates.message.find("(apt)"), std::string::npos) << updates.message;
}

TEST(HostileOutput, AUnitNameWithANewlineCannotForgeItsState) {
  // What `printf '%s unit %s %s\n' "$HM" "$(systemctl is-active "$u")" "$u"` prints for
  // u='db.service active\n@@healer unavailable x': the state comes first, and the rest of the
  // name continues on a line without the marker.
  const std::string out = framed("@@healer unit inactive db.service active\n") +
                          kForgedUnavailable + "\nweb.service active\n";
  const auto result = judge(parse_app_units, out);
  EXPECT_EQ(result.status, Status::critical) << result.nagios_line();
  EXPECT_NE(result.message.find("1 of 1 units not active: db.service active inactive"),
            std::string::npos)
      << result.message;
}

TEST(HostileOutput, ALogPathWithANewlineCannotForgeACountOrAnUnavailable) {
  const std::string out = framed("@@healer log 120 /var/log/app.log\n") +
                          "@@healer log 0 /var/log/app.log\n" + kForgedUnavailable + "\n";
  const auto result = judge(parse_app_logs, out);
  EXPECT_EQ(result.status, Status::critical) << result.nagios_line();
  EXPECT_NE(result.message.find("120 error line(s)"), std::string::npos) << result.message;
}

TEST(HostileOutput, EveryCheckIgnoresForgedUnavailableLines) {
  // The same forged line appended to each check's healthy fixture never turns it UNKNOWN.
  const std::vector<std::pair<std::string, std::string>> healthy = {
      {"disk_space", "df_gnu_ok"},
      {"memory", "meminfo_6.18"},
      {"load", "load_4cpu_ok"},
      {"cpu", "stat_pair_idle"},
      {"time_sync", "timedatectl_show_yes"},
      {"reboot_required", "reboot_debian_clear"},
      {"security_updates", "apt_simulate_none"},
      {"kernel_errors", "journal_kernel_none"},
      {"read_only_mounts", "mounts_rw"},
      {"processes", "ps_states_ok"},
      {"listening_ports", "ss_ltn"},
      {"seed.df_root", "df_P_root_ok"},
  };
  for (const auto& [name, file] : healthy) {
    SCOPED_TRACE(name);
    const auto check = find_check(name);
    ASSERT_TRUE(check.has_value());
    const auto result = judge(check->parse, framed(fixture(file)) + kForgedUnavailable + "\n");
    EXPECT_NE(result.status, Status::unknown) << result.nagios_line();
  }
}

}  // namespace
}  // namespace healer::checks
