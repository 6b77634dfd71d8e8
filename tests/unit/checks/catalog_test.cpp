#include "healer/checks/catalog.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "fixture.hpp"

namespace healer::checks {
namespace {

using testing::fixture;

std::vector<CheckDefinition> all_checks() {
  auto checks = default_checks();
  auto seed = seed_checks();
  checks.insert(checks.end(), seed.begin(), seed.end());
  return checks;
}

// For every check: output that gives OK, and the settings/timestamps it needs.
struct Healthy {
  std::string out;
  std::function<void(CheckSettings&, CheckInput&)> adjust = nullptr;
};

const std::map<std::string, Healthy, std::less<>>& healthy_outputs() {
  static const std::map<std::string, Healthy, std::less<>> outputs = {
      {"disk_space", {fixture("df_gnu_ok")}},
      {"disk_inodes",
       {fixture("df_gnu_inodes"),
        [](CheckSettings& s, CheckInput&) {
          s.thresholds["disk_inodes"] = Thresholds{.warn = 95.0, .crit = 99.0};
        }}},
      {"memory", {fixture("meminfo_6.18")}},
      {"swap", {fixture("meminfo_2.6.32")}},
      {"load", {fixture("load_4cpu_ok")}},
      {"cpu", {fixture("stat_pair_idle")}},
      {"oom_kills", {fixture("vmstat_oom_kill_0")}},
      {"failed_units", {""}},
      {"time_sync", {fixture("timedatectl_show_yes")}},
      {"clock_skew",
       {"1700000000.25\n", [](CheckSettings&, CheckInput& in) { in.sent_at = 1700000000.0; }}},
      {"reboot_required", {fixture("reboot_debian_clear")}},
      {"security_updates", {fixture("apt_simulate_none")}},
      {"kernel_errors", {fixture("journal_kernel_none")}},
      {"read_only_mounts", {fixture("mounts_rw")}},
      {"processes", {fixture("ps_states_ok")}},
      {"file_descriptors", {fixture("file-nr_ok")}},
      {"uptime", {fixture("uptime_ok")}},
      {"listening_ports",
       {fixture("ss_ltn"),
        [](CheckSettings& s, CheckInput&) {
          s.expected_ports = {22, 80};
        }}},
      {"seed.uptime", {fixture("seed_uptime_days")}},
      {"seed.df_root", {fixture("df_P_root_ok")}},
      {"seed.free", {fixture("seed_free_procps4")}},
      {"seed.loadavg", {fixture("loadavg_ok")}},
      {"seed.system_state", {"running\n"}},
      {"seed.processes", {fixture("seed_ps_wc")}},
      {"seed.meminfo", {fixture("seed_head5_meminfo")}},
  };
  return outputs;
}

CheckResult run(const CheckDefinition& check, std::string_view out, std::string_view err,
                std::optional<int> exit_status, bool truncated = false) {
  CheckSettings settings;
  CheckInput input;
  const std::string framed_out = testing::framed(out);
  input.out = framed_out;
  input.marker = testing::kMarker;
  input.err = err;
  input.exit_status = exit_status;
  input.out_truncated = truncated;
  const auto& healthy = healthy_outputs().at(check.name);
  if (healthy.adjust) {
    healthy.adjust(settings, input);
  }
  return check.parse(input, settings);
}

TEST(Catalog, DefaultAndSeedChecksAreWellFormed) {
  const std::vector<std::string> expected_names = {"disk_space",
                                                   "disk_inodes",
                                                   "memory",
                                                   "swap",
                                                   "load",
                                                   "cpu",
                                                   "oom_kills",
                                                   "failed_units",
                                                   "time_sync",
                                                   "clock_skew",
                                                   "reboot_required",
                                                   "security_updates",
                                                   "kernel_errors",
                                                   "read_only_mounts",
                                                   "processes",
                                                   "file_descriptors",
                                                   "uptime",
                                                   "listening_ports"};
  std::vector<std::string> names;
  for (const auto& check : default_checks()) {
    names.push_back(check.name);
  }
  EXPECT_EQ(names, expected_names);
  EXPECT_EQ(seed_checks().size(), 7U);

  std::set<std::string> unique;
  for (const auto& check : all_checks()) {
    SCOPED_TRACE(check.name);
    EXPECT_TRUE(unique.insert(check.name).second);
    EXPECT_TRUE(check.command.starts_with("LC_ALL=C")) << check.command;
    EXPECT_NE(check.parse, nullptr);
    EXPECT_FALSE(check.summary.empty());
    EXPECT_GT(check.timeout.count(), 0);
    EXPECT_EQ(healthy_outputs().count(check.name), 1U) << "no healthy output in the table";
    std::set<std::string_view> keys;
    for (const auto& levels : check.thresholds) {
      EXPECT_TRUE(keys.insert(levels.key).second) << levels.key;
    }
  }
  ASSERT_TRUE(find_check("cpu"));
  EXPECT_EQ(find_check("cpu")->name, "cpu");
  EXPECT_TRUE(find_check("seed.free"));
  EXPECT_FALSE(find_check("nope"));
  EXPECT_EQ(find_check("security_updates")->cache_for, std::chrono::hours(6));
}

TEST(Catalog, HangProneToolsRunUnderTheRemoteTimeout) {
  // Every invocation of these tools must be prefixed with $T, set by the timeout probe.
  const std::vector<std::string_view> invocations = {"df -P",
                                                     "systemctl --failed",
                                                     "timedatectl show",
                                                     "timedatectl status",
                                                     "chronyc -n",
                                                     "ntpstat;",
                                                     "needs-restarting -r",
                                                     "apt-get -s",
                                                     "dnf -q",
                                                     "yum -q",
                                                     "journalctl -k",
                                                     "dmesg -l"};
  std::size_t found = 0;
  for (const auto& check : default_checks()) {
    for (const auto invocation : invocations) {
      for (auto at = check.command.find(invocation); at != std::string::npos;
           at = check.command.find(invocation, at + 1)) {
        ++found;
        EXPECT_TRUE(at >= 3 && check.command.compare(at - 3, 3, "$T ") == 0)
            << check.name << ": " << invocation;
        EXPECT_NE(check.command.find("command -v timeout"), std::string::npos) << check.name;
      }
    }
  }
  EXPECT_EQ(found, 15U);
}

TEST(Catalog, SeedCommandsAreTheSeedsOwn) {
  const std::vector<std::string> seed = {"uptime",
                                         "df -P /",
                                         "free -b",
                                         "cat /proc/loadavg",
                                         "systemctl is-system-running || true",
                                         "ps -e | wc -l",
                                         "head -5 /proc/meminfo"};
  const auto checks = seed_checks();
  ASSERT_EQ(checks.size(), seed.size());
  for (std::size_t i = 0; i < seed.size(); ++i) {
    EXPECT_EQ(checks[i].command, "LC_ALL=C; export LC_ALL; " + seed[i]);
    EXPECT_TRUE(checks[i].name.starts_with("seed."));
  }
}

class EveryCheck : public ::testing::TestWithParam<CheckDefinition> {};

TEST_P(EveryCheck, HealthyOutputIsOkAndCarriesTheCheckName) {
  const auto& check = GetParam();
  const auto result = run(check, healthy_outputs().at(check.name).out, "", 0);
  EXPECT_EQ(result.status, Status::ok) << result.nagios_line();
  EXPECT_EQ(result.name, check.name);
  EXPECT_FALSE(result.message.empty());
  for (const auto& perf : result.perfdata) {
    EXPECT_FALSE(perf.label.empty());
  }
}

TEST_P(EveryCheck, StderrNoiseWithExit0ChangesNothing) {
  const auto& check = GetParam();
  const std::string& out = healthy_outputs().at(check.name).out;
  const auto quiet = run(check, out, "", 0);
  const auto noisy =
      run(check, out,
          "perl: warning: Setting locale failed.\nbash: warning: setlocale: LC_ALL: cannot change "
          "locale (en_US.UTF-8)\nWARNING: something unrelated | CRITICAL 100%\n",
          0);
  EXPECT_EQ(noisy.status, quiet.status);
  EXPECT_EQ(noisy.message, quiet.message);
  EXPECT_EQ(noisy.nagios_line(), quiet.nagios_line());
}

TEST_P(EveryCheck, CommandThatCannotRunIsUnknownWithAReason) {
  const auto& check = GetParam();
  struct Case {
    std::string out;
    std::string err;
    std::optional<int> exit_status;
    std::string reason;
  };
  const Case cases[] = {
      {"", "sh: 1: df: not found\n", 127, "command not found (exit 127: sh: 1: df: not found)"},
      {"", "sh: 1: /usr/bin/chronyc: Permission denied\n", 126, "cannot be executed"},
      {"", "", 124, "timed out on the server"},
      {"", "", std::nullopt, "killed by a signal"},
      {"@@healer unavailable no journalctl or dmesg\n", "", 0, "no journalctl or dmesg"},
  };
  for (const auto& c : cases) {
    const auto result = run(check, c.out, c.err, c.exit_status);
    EXPECT_EQ(result.status, Status::unknown) << c.reason << ": " << result.nagios_line();
    EXPECT_NE(result.message.find(c.reason), std::string::npos) << result.message;
  }
  const auto truncated = run(check, healthy_outputs().at(check.name).out, "", 0, true);
  EXPECT_EQ(truncated.status, Status::unknown);
  EXPECT_NE(truncated.message.find("truncated"), std::string::npos);
}

TEST_P(EveryCheck, GarbageOrEmptyOutputIsUnknownNeverAnAlarm) {
  const auto& check = GetParam();
  const auto garbage = run(check, fixture("garbage"), "", 0);
  EXPECT_EQ(garbage.status, Status::unknown) << garbage.nagios_line();
  const auto empty = run(check, "", "", 0);
  // An empty `systemctl --failed` is the normal "nothing failed".
  EXPECT_EQ(empty.status, check.name == "failed_units" ? Status::ok : Status::unknown)
      << empty.nagios_line();
}

TEST_P(EveryCheck, NeverThrowsOnAnyFixtureOrTruncationOfIt) {
  const auto& check = GetParam();
  for (const auto& entry : std::filesystem::directory_iterator(HEALER_TEST_DATA "/proc")) {
    const std::string text = fixture(entry.path().filename().string());
    for (const std::size_t cut :
         {text.size(), text.size() / 2, text.size() / 3, std::size_t{17}, std::size_t{1}}) {
      const std::string_view out = std::string_view(text).substr(0, std::min(cut, text.size()));
      for (const int exit_status : {0, 1}) {
        CheckResult result;
        EXPECT_NO_THROW(result = run(check, out, "noise\n", exit_status))
            << entry.path().filename() << " cut at " << cut;
        EXPECT_EQ(result.name, check.name);
        EXPECT_EQ(result.message.find('\n'), std::string::npos);
        EXPECT_EQ(result.message.find('|'), std::string::npos);
        EXPECT_FALSE(result.message.empty());
      }
    }
  }
}

std::string check_test_name(const ::testing::TestParamInfo<CheckDefinition>& param) {
  std::string name = param.param.name;
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(Catalog, EveryCheck, ::testing::ValuesIn(all_checks()), check_test_name);

}  // namespace
}  // namespace healer::checks
