// healer on a PostgreSQL inventory as a user runs it: `--db postgresql://...` (or HEALER_DB),
// a real PostgreSQL 15 (PostgresFixture), a real sshd, and `healer serve` on the same database.
// Failure paths: an unreachable or malformed URL and a server stopped mid-way are one clear line
// (store exit code, no password), and nothing hangs.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "daemon_fixture.hpp"
#include "healer/cli/exit_codes.hpp"
#include "ports.hpp"
#include "postgres_fixture.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

namespace fs = std::filesystem;
using test::PostgresFixture;
using test::SshdFixture;

class PostgresCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const auto reason = PostgresFixture::unavailable_reason(); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
    postgres_.emplace();
    url_ = postgres_->fresh_database_url();
  }

  // Runs healer with HOME in `home_` and HEALER_DB = `db` (the test's URL by default).
  test::CommandOutput healer(std::vector<std::string> args, std::string db = {}) {
    std::vector<std::string> argv{"env", "HOME=" + home_.path().string(),
                                  "HEALER_DB=" + (db.empty() ? url_ : db), HEALER_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_command(argv, std::chrono::seconds(30));
  }

  std::vector<std::string> add_args(const SshdFixture& sshd, const std::string& name) {
    return {"server",
            "add",
            name,
            "--host",
            sshd.host(),
            "--port",
            std::to_string(sshd.port()),
            "--user",
            sshd.user(),
            "--identity",
            sshd.client_key_path().string(),
            "--known-hosts",
            sshd.known_hosts_path().string()};
  }

  std::string raw(const std::string& sql) {
    return postgres_->query("SET search_path = " + postgres_->schema() + "; " + sql);
  }

  void expect_clean(const test::CommandOutput& run) {
    EXPECT_EQ(run.out.find(postgres_->password()), std::string::npos) << run.out;
    EXPECT_EQ(run.err.find(postgres_->password()), std::string::npos) << run.err;
  }

  test::TempDir home_;
  std::optional<PostgresFixture> postgres_;
  std::string url_;
};

TEST_F(PostgresCli, ServerAddExecAndDiagnoseRunOnAPostgresInventory) {
  SshdFixture sshd;
  sshd.start();
  const auto added = healer(add_args(sshd, "local"));
  ASSERT_EQ(added.exit_code(), 0) << added.err;
  expect_clean(added);
  // The row is in PostgreSQL, no SQLite file appeared, the key went to the state directory.
  EXPECT_EQ(raw("SELECT name || ' ' || port FROM servers"), "local " + std::to_string(sshd.port()));
  const auto state = home_.path() / ".local" / "share" / "healer";
  EXPECT_TRUE(fs::exists(state / "master.key"));
  EXPECT_FALSE(fs::exists(state / "healer.db"));

  // --db takes the URL too (and wins over HEALER_DB).
  const auto listed =
      test::run_command({"env", "HOME=" + home_.path().string(), "HEALER_DB=/nonexistent/healer.db",
                         HEALER_BIN, "server", "list", "--json", "--db", url_},
                        std::chrono::seconds(30));
  ASSERT_EQ(listed.exit_code(), 0) << listed.err;
  EXPECT_EQ(nlohmann::json::parse(listed.out).at(0)["name"], "local");

  const auto executed = healer({"exec", "local", "--", "echo pg-inventory"});
  ASSERT_EQ(executed.exit_code(), 0) << executed.err;
  EXPECT_NE(executed.out.find("pg-inventory"), std::string::npos) << executed.out;

  const auto diagnosed =
      healer({"diagnose", "local", "--check", "uptime", "--threshold", "uptime=0:0", "--json"});
  EXPECT_NE(diagnosed.out.find("uptime"), std::string::npos) << diagnosed.err;
  expect_clean(diagnosed);
  // The run and its check were recorded in PostgreSQL.
  EXPECT_EQ(raw("SELECT COUNT(*) FROM diagnosis_runs"), "1");
  EXPECT_EQ(raw("SELECT name FROM check_results"), "uptime");
}

TEST_F(PostgresCli, UnreachableOrMalformedDatabaseIsOneClearLineWithoutThePassword) {
  const std::string password = postgres_->password();
  const auto closed = healer({"server", "list"},
                             "postgresql://healer:" + password +
                                 "@127.0.0.1:" + std::to_string(test::closed_port()) + "/healer");
  EXPECT_EQ(closed.exit_code(), cli::kExitStore) << closed.err;
  EXPECT_FALSE(closed.timed_out);
  EXPECT_TRUE(
      closed.err.starts_with("healer: database server unavailable: cannot connect to "
                             "postgresql://healer:***@127.0.0.1:"))
      << closed.err;
  expect_clean(closed);

  const auto malformed =
      healer({"server", "list"}, "postgres://healer:" + password + "@127.0.0.1/healer?bogus=1");
  EXPECT_EQ(malformed.exit_code(), cli::kExitStore) << malformed.err;
  EXPECT_TRUE(malformed.err.starts_with("healer: invalid database URL: postgres://healer:***@"))
      << malformed.err;
  expect_clean(malformed);
}

TEST_F(PostgresCli, ADatabaseStoppedMidWayFailsTheNextCommandCleanly) {
  SshdFixture sshd;
  sshd.start();
  ASSERT_EQ(healer(add_args(sshd, "local")).exit_code(), 0);
  postgres_->stop();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"server", "list"}, {"exec", "local", "--", "true"}, {"diagnose", "local"}}) {
    const auto run = healer(args);
    EXPECT_FALSE(run.timed_out) << args[0];
    EXPECT_EQ(run.exit_code(), cli::kExitStore) << args[0] << ": " << run.err;
    EXPECT_NE(run.err.find("database server unavailable"), std::string::npos) << run.err;
    expect_clean(run);
  }
}

TEST_F(PostgresCli, ServeRunsOnThePostgresInventory) {
  SshdFixture sshd;
  sshd.start();
  ASSERT_EQ(healer(add_args(sshd, "local")).exit_code(), 0);
  const auto token_file = home_.path() / "api.token";
  test::DaemonFixture daemon(HEALER_BIN, home_,
                             "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n"
                             "[serve]\ntoken_file = \"" +
                                 token_file.string() + "\"\n",
                             {"HEALER_DB=" + url_});
  daemon.start();
  const auto servers = daemon.get("/api/v1/servers");
  ASSERT_EQ(servers.status, 200) << servers.body;
  EXPECT_NE(servers.body.find("\"local\""), std::string::npos) << servers.body;
  // A server added through the API lands in PostgreSQL.
  const auto created = daemon.post(
      "/api/v1/servers",
      R"({"name": "api1", "host": "127.0.0.1", "port": 1, "user": "ops", "auth": "agent"})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(raw("SELECT COUNT(*) FROM servers WHERE name = 'api1'"), "1");
  // The CLI finds the daemon of this URL through its socket in the state directory.
  const auto via_daemon = healer({"exec", "local", "--", "echo through-daemon"});
  EXPECT_EQ(via_daemon.exit_code(), 0) << via_daemon.err;
  EXPECT_NE(via_daemon.out.find("through-daemon"), std::string::npos);
  const auto log = daemon.log_text();
  EXPECT_NE(log.find("postgresql://healer:***@127.0.0.1"), std::string::npos) << log;
  EXPECT_EQ(log.find(postgres_->password()), std::string::npos);
  ASSERT_TRUE(daemon.stop());
}

}  // namespace
}  // namespace healer
