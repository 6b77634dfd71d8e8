// `healer heal` as a user runs it, against a real sshd and a real SQLite file.
//
// systemd is not PID 1 in these sandboxes, so units are simulated: each test's sshd runs in a
// private mount namespace (SshdFixture::Options::mount_namespace_setup) where /run/systemd/system
// exists (a tmpfs) and a stand-in `systemctl` script is bind-mounted over /usr/bin/systemctl. The
// stand-in records every call with its exact arguments and keeps unit states in files the test
// sets; nothing outside the namespace changes. Everything else (the shell, find, sudo, the
// audit log) is real.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "healer/cli/exit_codes.hpp"
#include "poll_until.hpp"
#include "sshd_fixture.hpp"
#include "systemd_stand_in.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::read_file;
using test::SshdFixture;
using test::SystemdStandIn;
using test::write_file;

// The test bed: a stand-in systemd, an sshd that sees it, an inventory with one server "box"
// and a config file.
class HealCli : public ::testing::Test {
 protected:
  void SetUp() override {
    configure("");
    sshd_.emplace(sshd_options());
    sshd_->start();
    const auto added = healer({"server", "add", "box", "--host", sshd_->host(), "--port",
                               std::to_string(sshd_->port()), "--user", sshd_->user(), "--identity",
                               sshd_->client_key_path().string(), "--known-hosts",
                               sshd_->known_hosts_path().string(), "--tag", "web"});
    ASSERT_EQ(added.exit_code(), 0) << added.err;
  }

  /// Writes the config file: a [heal] table with `heal` appended (privilege "none" unless
  /// `heal` sets it: the stand-in needs no root), and the failed_units rule.
  void configure(const std::string& heal, bool with_rule = true) {
    std::string text = "[heal]\ngrace = \"0s\"\n";
    if (heal.find("privilege") == std::string::npos) {
      text += "privilege = \"none\"\n";
    }
    text += heal;
    if (with_rule) {
      text +=
          "\n[[heal.rules]]\nname = \"nginx_down\"\ncheck = \"failed_units\"\n"
          "action = \"restart_unit\"\nparams = { unit = \"nginx.service\" }\ntags = [\"web\"]\n";
    }
    write_file(home_.path() / "healer.toml", text);
  }

  test::CommandOutput healer(std::vector<std::string> args) {
    std::vector<std::string> argv{"env", "HOME=" + home_.path().string(),
                                  "HEALER_DB=" + (home_.path() / "inventory.db").string(),
                                  "HEALER_CONFIG=" + (home_.path() / "healer.toml").string(),
                                  HEALER_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv, std::chrono::seconds(30));
  }

  json healer_json(std::vector<std::string> args, int expected_exit) {
    args.emplace_back("--json");
    const auto run = healer(args);
    EXPECT_EQ(run.exit_code(), expected_exit) << "signal " << run.status.term_signal << "\n"
                                              << run.out << run.err;
    auto doc = json::parse(run.out, nullptr, false);
    EXPECT_FALSE(doc.is_discarded()) << run.out << run.err;
    return doc;
  }

  void diagnose() {
    const auto run = healer({"diagnose", "box", "--check", "failed_units"});
    ASSERT_NE(run.exit_code(), 3) << run.out << run.err;  // UNKNOWN: the stand-in is not seen
  }

  /// heal plan for box; returns the plan document.
  json plan(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"heal", "plan", "box"};
    args.insert(args.end(), extra.begin(), extra.end());
    return healer_json(args, 0);
  }

  json history() { return healer_json({"heal", "history"}, 0); }

  /// How the test's sshd starts: in the stand-in systemd's mount namespace.
  virtual SshdFixture::Options sshd_options() { return systemd_.sshd_options(); }

  SystemdStandIn systemd_;
  std::optional<SshdFixture> sshd_;
  test::TempDir home_;
};

TEST_F(HealCli, PlanShowsExactlyWhatApplyRunsAndTheAuditLogRecordsIt) {
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto doc = plan();
  ASSERT_EQ(doc["servers"].size(), 1u) << doc.dump(2);
  const auto& server = doc["servers"][0];
  EXPECT_EQ(server["checks"]["failed_units"], "CRITICAL") << doc.dump(2);
  ASSERT_EQ(server["steps"].size(), 1u) << doc.dump(2);
  const auto& step = server["steps"][0];
  EXPECT_EQ(step["action"], "restart_unit");
  EXPECT_EQ(step["ready"], true) << step.dump(2);
  EXPECT_EQ(step["facts"]["ActiveState"], "failed");
  EXPECT_EQ(step["trigger"]["rule"], "nginx_down");
  const json expected_argv =
      json::array({json::array({"systemctl", "restart", "--", "nginx.service"})});
  EXPECT_EQ(step["argv"], expected_argv);
  const std::string hash = doc["hash"];
  ASSERT_EQ(hash.size(), 64u);
  // Planning looked (systemctl show) and changed nothing.
  EXPECT_TRUE(systemd_.changes().empty());

  // The default is a dry run: the state is re-checked, nothing runs.
  const auto dry = healer_json({"heal", "apply", hash}, 0);
  EXPECT_EQ(dry["status"], "dry_run") << dry.dump(2);
  EXPECT_EQ(dry["steps"][0]["result"], "would_run");
  EXPECT_TRUE(systemd_.changes().empty());

  const auto applied = healer_json({"heal", "apply", hash, "--yes"}, 0);
  EXPECT_EQ(applied["status"], "applied") << applied.dump(2);
  ASSERT_EQ(applied["steps"].size(), 1u);
  EXPECT_EQ(applied["steps"][0]["result"], "succeeded") << applied.dump(2);
  EXPECT_EQ(applied["steps"][0]["exit_code"], 0);
  EXPECT_EQ(applied["steps"][0]["verification"]["result"], "verified") << applied.dump(2);
  // Exactly the plan's argv ran, once.
  EXPECT_EQ(systemd_.changes(),
            std::vector<std::string>{"systemctl [restart] [--] [nginx.service]"});

  const auto log = history();
  ASSERT_EQ(log["items"].size(), 1u) << log.dump(2);
  const auto& record = log["items"][0];
  EXPECT_EQ(record["kind"], "heal");
  EXPECT_EQ(record["server"], "box");
  EXPECT_EQ(record["action"], "restart_unit");
  EXPECT_EQ(record["params"]["unit"], "nginx.service");
  EXPECT_EQ(record["plan_hash"], hash);
  EXPECT_EQ(record["result"], "succeeded");
  EXPECT_EQ(record["exit_code"], 0);
  EXPECT_EQ(record["verification"], "verified");
  EXPECT_EQ(record["actor"].get<std::string>().rfind("cli:", 0), 0u);
  EXPECT_EQ(record["before"]["facts"]["state"]["ActiveState"], "failed") << record.dump(2);
  EXPECT_EQ(record["after"]["facts"]["state"]["ActiveState"], "active") << record.dump(2);
  EXPECT_EQ(record["after"]["checks"]["failed_units"], "OK") << record.dump(2);

  // The same plan again: the unit is active now, so it is stale and nothing runs.
  const auto again = healer({"heal", "apply", hash, "--yes"});
  EXPECT_EQ(again.exit_code(), cli::kExitHealStale) << again.out << again.err;
  EXPECT_EQ(systemd_.changes().size(), 1u);
}

TEST_F(HealCli, AStalePlanIsRefusedAndNothingRuns) {
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto doc = plan();
  ASSERT_EQ(doc["ready_steps"], 1) << doc.dump(2);
  const std::string hash = doc["hash"];
  // The unit recovered by itself between plan and apply.
  systemd_.set_unit("nginx.service", "active");
  const auto refused = healer_json({"heal", "apply", hash, "--yes"}, cli::kExitHealStale);
  EXPECT_EQ(refused["status"], "stale") << refused.dump(2);
  const auto changes = refused["changes"].dump();
  EXPECT_NE(changes.find("failed_units was CRITICAL, now OK"), std::string::npos) << changes;
  EXPECT_TRUE(systemd_.changes().empty());
  const auto log = history();
  ASSERT_EQ(log["items"].size(), 1u) << log.dump(2);
  EXPECT_EQ(log["items"][0]["kind"], "refused");
  EXPECT_EQ(log["items"][0]["result"], "stale");

  // An edited plan file is refused before anything looks at the server.
  auto file = plan();
  file["servers"][0]["steps"][0]["argv"][0][3] = "ssh.service";
  write_file(home_.path() / "edited.json", file.dump());
  const auto logins = sshd_->accepted_auth_count();
  const auto edited = healer({"heal", "apply", (home_.path() / "edited.json").string(), "--yes"});
  EXPECT_EQ(edited.exit_code(), cli::kExitUsage) << edited.out << edited.err;
  EXPECT_NE(edited.err.find("hash"), std::string::npos) << edited.err;
  EXPECT_EQ(sshd_->accepted_auth_count(), logins);
}

TEST_F(HealCli, ABadParameterIsRejectedBeforeAnythingRuns) {
  for (const std::string unit :
       {"x.service; reboot", "$(reboot).service", "`reboot`.service", "-H.service",
        "nginx.service\nreboot", "../../x.service", "nginx"}) {
    const auto run =
        healer({"heal", "plan", "box", "--action", "restart_unit", "--param", "unit=" + unit});
    EXPECT_EQ(run.exit_code(), cli::kExitUsage) << unit << ": " << run.out << run.err;
    EXPECT_NE(run.err.find("unit"), std::string::npos) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
  const auto unknown = healer({"heal", "plan", "box", "--action", "rm_rf"});
  EXPECT_EQ(unknown.exit_code(), cli::kExitUsage) << unknown.err;
  const auto directory =
      healer({"heal", "plan", "box", "--action", "delete_old_files", "--param", "directory=/etc"});
  EXPECT_EQ(directory.exit_code(), cli::kExitUsage) << directory.err;
  EXPECT_NE(directory.err.find("cleanup_dirs"), std::string::npos) << directory.err;
  // Nothing reached the server: not even a login.
  EXPECT_EQ(sshd_->accepted_auth_count(), 0u);
  EXPECT_TRUE(systemd_.calls().empty());
}

TEST_F(HealCli, QuotingHoldsForHostileUnitNamesAndPaths) {
  // The oddest unit names the validator lets through reach systemctl as one argument each.
  const std::string odd_unit = "getty@tty:1-x_y.service";
  systemd_.set_unit(odd_unit, "failed");
  auto doc = plan({"--action", "restart_unit", "--param", "unit=" + odd_unit});
  ASSERT_EQ(doc["ready_steps"], 1) << doc.dump(2);
  auto applied = healer_json({"heal", "apply", doc["hash"], "--yes"}, 0);
  EXPECT_EQ(applied["steps"][0]["verification"]["result"], "verified") << applied.dump(2);
  EXPECT_EQ(systemd_.changes(),
            std::vector<std::string>{"systemctl [restart] [--] [" + odd_unit + "]"});

  // A cleanup directory whose name is shell syntax: find gets it as one argument, nothing in it
  // is expanded, and only the old regular files under it go.
  test::TempDir area;
  fs::permissions(area.path(), fs::perms::all);
  const fs::path marker = area.path() / "pwned";
  const std::string hostile_name = "it's a $(touch " + marker.string() + ") `touch " +
                                   marker.string() + "`; touch " + marker.string() + " && \"x\" *";
  const fs::path hostile = area.path() / hostile_name;
  fs::create_directories(hostile / "sub");
  for (const auto& dir : {hostile, hostile / "sub"}) {
    fs::permissions(dir, fs::perms::all);
  }
  write_file(hostile / "old.log", "old");
  write_file(hostile / "sub" / "old2.log", "old");
  write_file(hostile / "new.log", "new");
  write_file(area.path() / "outside-old.log", "old");
  for (const auto& file :
       {hostile / "old.log", hostile / "sub" / "old2.log", area.path() / "outside-old.log"}) {
    const auto old = fs::file_time_type::clock::now() - std::chrono::hours(24 * 30);
    fs::last_write_time(file, old);
  }
  // TOML basic string: escape backslashes and quotes.
  std::string toml_path;
  for (const char c : hostile.string()) {
    if (c == '\\' || c == '"') {
      toml_path += '\\';
    }
    toml_path += c;
  }
  configure("cleanup_dirs = [\"" + toml_path + "\"]\n", false);
  doc = plan({"--action", "delete_old_files", "--param", "directory=" + hostile.string(), "--param",
              "days=7"});
  ASSERT_EQ(doc["ready_steps"], 1) << doc.dump(2);
  const auto& step = doc["servers"][0]["steps"][0];
  EXPECT_EQ(step["facts"]["old_files_present"], "yes") << step.dump(2);
  EXPECT_EQ(step["argv"][0][1], hostile.string());
  applied = healer_json({"heal", "apply", doc["hash"], "--yes"}, 0);
  EXPECT_EQ(applied["steps"][0]["result"], "succeeded") << applied.dump(2);
  EXPECT_EQ(applied["steps"][0]["verification"]["result"], "verified") << applied.dump(2);
  EXPECT_FALSE(fs::exists(hostile / "old.log"));
  EXPECT_FALSE(fs::exists(hostile / "sub" / "old2.log"));
  EXPECT_TRUE(fs::exists(hostile / "sub"));  // directories stay
  EXPECT_TRUE(fs::exists(hostile / "new.log"));
  EXPECT_TRUE(fs::exists(area.path() / "outside-old.log"));
  EXPECT_FALSE(fs::exists(marker));
}

TEST_F(HealCli, SudoWithoutARuleIsPrivilegeMissingNeverAPrompt) {
  // The login user (healer-test) has no sudoers rule and no password: `sudo -n` refuses.
  configure("privilege = \"sudo\"\n");
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto doc = plan();
  ASSERT_EQ(doc["servers"][0]["steps"].size(), 1u) << doc.dump(2);
  const auto& step = doc["servers"][0]["steps"][0];
  EXPECT_EQ(step["ready"], false);
  EXPECT_EQ(step["argv"][0][0], "sudo");
  EXPECT_EQ(step["argv"][0][1], "-n");
  EXPECT_EQ(step["blocked"].get<std::string>().rfind("privilege_missing", 0), 0u) << step.dump(2);
  EXPECT_EQ(step["facts"]["privilege"], "missing");

  const auto applied =
      healer_json({"heal", "apply", doc["hash"], "--yes"}, cli::kExitPrivilegeMissing);
  EXPECT_EQ(applied["steps"][0]["result"], "privilege_missing") << applied.dump(2);
  EXPECT_TRUE(systemd_.changes().empty());
  const auto log = history();
  ASSERT_EQ(log["items"].size(), 1u) << log.dump(2);
  EXPECT_EQ(log["items"][0]["kind"], "refused");
  EXPECT_EQ(log["items"][0]["result"], "privilege_missing");

  // The privilege check happens on the server, so a plan made while sudo was allowed still
  // fails cleanly: here the plan is built with "none", then applied with sudo configured.
  configure("");
  const auto allowed = plan();
  ASSERT_EQ(allowed["ready_steps"], 1) << allowed.dump(2);
  configure("privilege = \"sudo\"\n");
  const auto stale = healer({"heal", "apply", allowed["hash"], "--yes"});
  EXPECT_EQ(stale.exit_code(), cli::kExitHealStale) << stale.out << stale.err;
  EXPECT_TRUE(systemd_.changes().empty());

  const auto sudoers = healer({"heal", "sudoers", "--user", "healer-test"});
  ASSERT_EQ(sudoers.exit_code(), 0) << sudoers.err;
  EXPECT_NE(sudoers.out.find("healer-test ALL=(root) NOPASSWD: /usr/bin/systemctl ^restart -- "),
            std::string::npos)
      << sudoers.out;
}

TEST_F(HealCli, AVerificationFailureOpensTheBreaker) {
  systemd_.set_unit("nginx.service", "failed");
  systemd_.after_start("failed");  // it starts, then dies again
  diagnose();
  const auto doc = plan();
  ASSERT_EQ(doc["ready_steps"], 1) << doc.dump(2);
  const auto applied = healer_json({"heal", "apply", doc["hash"], "--yes"}, 1);
  const auto& step = applied["steps"][0];
  EXPECT_EQ(step["result"], "succeeded") << applied.dump(2);
  EXPECT_EQ(step["verification"]["result"], "failed") << applied.dump(2);
  EXPECT_NE(step["verification"]["detail"].get<std::string>().find("ActiveState is failed"),
            std::string::npos)
      << step.dump(2);
  EXPECT_EQ(step["breaker_opened"], true);
  const auto log = history();
  ASSERT_EQ(log["items"].size(), 2u) << log.dump(2);
  EXPECT_EQ(log["items"][0]["kind"], "breaker_open");
  EXPECT_EQ(log["items"][0]["action"], "restart_unit");
  EXPECT_EQ(log["items"][1]["verification"], "failed");
  EXPECT_EQ(systemd_.changes().size(), 1u);  // tried once, never again blindly

  // A failing command is a failed heal too, with its output kept.
  systemd_.set_flag("fail");
  const auto again = plan();
  const auto failed = healer_json({"heal", "apply", again["hash"], "--yes"}, 1);
  EXPECT_EQ(failed["steps"][0]["result"], "failed") << failed.dump(2);
  EXPECT_EQ(failed["steps"][0]["exit_code"], 1);
  EXPECT_NE(failed["steps"][0]["output"].get<std::string>().find("Job for nginx.service failed"),
            std::string::npos);

  const auto reset = healer({"heal", "reset", "box", "restart_unit"});
  EXPECT_EQ(reset.exit_code(), 0) << reset.err;
  EXPECT_NE(reset.out.find("breaker closed"), std::string::npos) << reset.out;
}

TEST_F(HealCli, SigtermDuringAnActionLeavesAnInterruptedAuditRow) {
  systemd_.set_unit("nginx.service", "failed");
  systemd_.set_flag("hang");
  diagnose();
  const auto doc = plan();
  ASSERT_EQ(doc["ready_steps"], 1) << doc.dump(2);
  const std::string hash = doc["hash"];
  auto child =
      test::ChildProcess::spawn({"env", "HOME=" + home_.path().string(),
                                 "HEALER_DB=" + (home_.path() / "inventory.db").string(),
                                 "HEALER_CONFIG=" + (home_.path() / "healer.toml").string(),
                                 HEALER_BIN, "heal", "apply", hash, "--yes"});
  ASSERT_TRUE(test::poll_until([&] { return fs::exists(systemd_.state() / "hanging"); },
                               std::chrono::seconds(10)));
  child.signal(SIGTERM);
  const auto status = child.wait_for_exit(std::chrono::seconds(10));
  ASSERT_TRUE(status);
  EXPECT_EQ(status->exit_code, 128 + SIGTERM);
  const auto events = healer({"heal", "history", "--jsonl"});
  ASSERT_EQ(events.exit_code(), 0) << events.err;
  EXPECT_NE(events.out.find("\"event\":\"started\""), std::string::npos) << events.out;
  EXPECT_NE(events.out.find("\"result\":\"interrupted\""), std::string::npos) << events.out;
}

// The test bed's login user with a real sudoers rule: the restart_unit line `healer heal
// sudoers` generates (checked by visudo), bind-mounted over /etc/sudoers in the sshd's mount
// namespace only. Nothing outside the namespace changes.
class HealCliSudoers : public HealCli {
 protected:
  SshdFixture::Options sshd_options() override {
    const auto generated = healer({"heal", "sudoers", "--user", "healer-test"});
    EXPECT_EQ(generated.exit_code(), 0) << generated.err;
    std::string rule;
    std::istringstream in(generated.out);
    for (std::string line; std::getline(in, line);) {
      if (line.find("/usr/bin/systemctl ^restart -- ") != std::string::npos) {
        rule = line;
      }
    }
    EXPECT_FALSE(rule.empty()) << generated.out;
    sudoers_ = sudoers_dir_.path() / "sudoers";
    write_file(sudoers_, "Defaults !lecture\nroot ALL=(ALL:ALL) ALL\n" + rule + "\n");
    fs::permissions(sudoers_, fs::perms::owner_read | fs::perms::group_read);
    auto options = systemd_.sshd_options();
    options.mount_namespace_setup += "\nmount --bind " + sudoers_.string() + " /etc/sudoers";
    return options;
  }

  test::TempDir sudoers_dir_;
  fs::path sudoers_;
};

TEST_F(HealCliSudoers, ARealSudoersRuleLetsTheAllowedCommandThroughAndNothingElse) {
  if (::geteuid() != 0 || sshd_->user() != "healer-test") {
    GTEST_SKIP() << "needs root (a root-owned sudoers file) and the healer-test login user";
  }
  // The generated rule is valid sudoers syntax.
  const auto checked = test::run_command({"/usr/sbin/visudo", "-c", "-f", sudoers_.string()});
  ASSERT_EQ(checked.exit_code(), 0) << checked.out << checked.err << read_file(sudoers_);

  configure("privilege = \"sudo\"\n");
  systemd_.set_unit("nginx.service", "failed");
  diagnose();
  const auto doc = plan();
  ASSERT_EQ(doc["ready_steps"], 1) << doc.dump(2);
  const auto& step = doc["servers"][0]["steps"][0];
  EXPECT_EQ(step["argv"][0],
            json({"sudo", "-n", "--", "systemctl", "restart", "--", "nginx.service"}));
  EXPECT_EQ(step["facts"]["privilege"], "ok") << step.dump(2);
  const auto applied = healer_json({"heal", "apply", doc["hash"], "--yes"}, 0);
  EXPECT_EQ(applied["steps"][0]["result"], "succeeded") << applied.dump(2);
  EXPECT_EQ(applied["steps"][0]["verification"]["result"], "verified") << applied.dump(2);
  EXPECT_EQ(systemd_.changes(),
            std::vector<std::string>{"systemctl [restart] [--] [nginx.service]"});

  // A command the rule does not cover: privilege_missing in the plan, at once, no prompt.
  const auto other = plan({"--no-rules", "--action", "vacuum_journal", "--param", "size=100M"});
  ASSERT_EQ(other["servers"][0]["steps"].size(), 1u) << other.dump(2);
  const auto& blocked = other["servers"][0]["steps"][0];
  EXPECT_EQ(blocked["ready"], false);
  EXPECT_EQ(blocked["blocked"].get<std::string>().rfind("privilege_missing", 0), 0u)
      << blocked.dump(2);
  const auto refused =
      healer_json({"heal", "apply", other["hash"], "--yes"}, cli::kExitPrivilegeMissing);
  EXPECT_EQ(refused["steps"][0]["result"], "privilege_missing") << refused.dump(2);
  EXPECT_EQ(systemd_.changes().size(), 1u);
}

}  // namespace
}  // namespace healer
