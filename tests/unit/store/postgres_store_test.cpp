// What only the PostgreSQL backend has: a URL instead of a file (bad, unreachable, wrong
// password: clear errors that never show the password), the master key in the state directory,
// ciphertext in the server's column, the schema built from an empty database, and a server that
// stops or freezes under an open store (an error, never a hang; the next call reconnects).
#include <gtest/gtest.h>
#include <sys/types.h>

#include <csignal>
#include <string>

#include "healer/store/errors.hpp"
#include "healer/store/store.hpp"
#include "migrations.hpp"
#include "ports.hpp"
#include "postgres_fixture.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

using healer::test::PostgresFixture;
using test::key_of;

constexpr std::string_view kPassword = "Zebra-Quokka-7741-password";

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const auto reason = PostgresFixture::unavailable_reason(); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
  }

  static PostgresFixture& server() { return PostgresFixture::shared(); }

  static StoreOptions options_for(std::string url) {
    StoreOptions options;
    options.db_path = std::move(url);
    options.master_key = key_of(1);
    return options;
  }

  // Runs `sql` in the schema of the last fresh database.
  static std::string raw(const std::string& sql) {
    return server().query("SET search_path = " + server().schema() + "; " + sql);
  }
};

ServerRecord password_server(std::string name) {
  ServerRecord server;
  server.name = std::move(name);
  server.host = "192.0.2.10";
  server.port = 22;
  server.user = "ops";
  server.auth_method = AuthMethod::password;
  server.host_key_policy = HostKeyPolicy::accept_new;
  server.secret = std::string(kPassword);
  return server;
}

void expect_no_password(const Error& error, const std::string& password) {
  EXPECT_EQ(error.message().find(password), std::string::npos) << error.message();
}

TEST_F(PostgresStoreTest, AnEmptyDatabaseIsMigratedToTheLatestSchema) {
  const auto url = server().fresh_database_url();
  {
    auto store = Store::open(options_for(url));
    ASSERT_TRUE(store) << store.error().message();
    EXPECT_EQ(store->schema_version(), migrations::latest_version());
  }
  EXPECT_EQ(raw("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(migrations::latest_version()));
  for (const char* table :
       {"meta", "servers", "server_tags", "server_labels", "applications", "diagnosis_runs",
        "check_results", "metric_samples", "check_output_cache", "status_transitions", "heal_audit",
        "heal_plans"}) {
    EXPECT_EQ(raw("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = "
                  "current_schema() AND table_name = '" +
                  std::string(table) + "'"),
              "1")
        << table;
  }
  // Opening again migrates nothing; another key is refused.
  auto again = Store::open(options_for(url));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(raw("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(migrations::latest_version()));
  auto wrong = options_for(url);
  wrong.master_key = key_of(2);
  auto refused = Store::open(wrong);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::wrong_master_key));
}

TEST_F(PostgresStoreTest, ANewerSchemaIsRefusedAndReadOnlyOpensWriteNothing) {
  const auto url = server().fresh_database_url();
  ASSERT_TRUE(Store::open(options_for(url)));
  auto read_only = options_for(url);
  read_only.read_only = true;
  {
    auto store = Store::open(read_only);
    ASSERT_TRUE(store) << store.error().message();
    EXPECT_TRUE(store->read_only());
    EXPECT_TRUE(store->list_servers());
    auto refused = store->add_server(password_server("pw"));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, make_error_code(Errc::read_only));
  }
  raw("INSERT INTO schema_migrations VALUES (999, 'from the future', 0)");
  auto newer = Store::open(options_for(url));
  ASSERT_FALSE(newer);
  EXPECT_EQ(newer.error().code, make_error_code(Errc::schema_too_new)) << newer.error().message();
  EXPECT_NE(newer.error().message().find("999"), std::string::npos) << newer.error().message();
}

TEST_F(PostgresStoreTest, SecretsAreCiphertextInTheServersColumn) {
  const auto url = server().fresh_database_url();
  auto store = Store::open(options_for(url));
  ASSERT_TRUE(store) << store.error().message();
  auto id = store->add_server(password_server("pw"));
  ASSERT_TRUE(id) << id.error().message();
  // What psql shows: the column's bytes, and every row as text.
  const std::string column = raw("SELECT encode(secret, 'escape') FROM servers");
  const std::string hex = raw("SELECT encode(secret, 'hex') FROM servers");
  const std::string row = raw("SELECT s::text FROM servers s");
  ASSERT_GT(hex.size(), 2 * kPassword.size()) << "the secret was written";
  EXPECT_EQ(column.find(kPassword), std::string::npos);
  EXPECT_EQ(row.find(kPassword), std::string::npos);
  EXPECT_EQ(row.find(std::string("Zebra")), std::string::npos);
  // ...and only the store, with the key, reads it back.
  auto read = store->get_server(*id, SecretAccess::decrypt);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->secret, std::string(kPassword));
  // A row pointed at another host by hand does not give its password away.
  raw("UPDATE servers SET host = '203.0.113.9'");
  auto moved = store->get_server(*id, SecretAccess::decrypt);
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, make_error_code(Errc::secret_corrupt));
}

TEST_F(PostgresStoreTest, TextAPostgresColumnCannotHoldIsKeptAsReplacementCharacters) {
  // SQLite keeps any bytes; a remote host's output may hold NUL or invalid UTF-8.
  auto store = Store::open(options_for(server().fresh_database_url()));
  ASSERT_TRUE(store) << store.error().message();
  ServerRecord host = password_server("web");
  const auto id = store->add_server(host);
  ASSERT_TRUE(id);
  DiagnosisRun run;
  run.server_id = *id;
  run.started_at = 1;
  run.finished_at = 2;
  run.status = CheckStatus::warning;
  run.checks.push_back({"disk", CheckStatus::warning, std::string("a\0b\xff", 4), "", 1});
  auto recorded = store->record_run(run);
  ASSERT_TRUE(recorded) << recorded.error().message();
  auto read = store->get_run(*recorded);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->checks.at(0).message,
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD");
}

TEST_F(PostgresStoreTest, TheMasterKeyFileLivesInTheStateDirectoryForAUrl) {
  healer::test::TempDir state;
  const test::ScopedEnv xdg("XDG_DATA_HOME", state.path().string());
  const test::ScopedEnv no_env_key("HEALER_MASTER_KEY", std::nullopt);
  const auto url = server().fresh_database_url();
  StoreOptions options;
  options.db_path = url;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    ASSERT_TRUE(store->add_server(password_server("pw")));
  }
  const auto key_file = state.path() / "healer" / "master.key";
  EXPECT_EQ(test::file_mode(key_file), 0600);
  EXPECT_EQ(test::file_mode(state.path() / "healer"), 0700);
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    auto read = store->get_server_by_name("pw", SecretAccess::decrypt);
    ASSERT_TRUE(read) << read.error().message();
    EXPECT_EQ(read->secret, std::string(kPassword));
  }
  // Another node with another key is refused, and a missing key file is not created for a
  // database that already has secrets.
  std::filesystem::remove(key_file);
  auto missing = Store::open(options);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, make_error_code(Errc::master_key_missing));
}

TEST_F(PostgresStoreTest, AMalformedUrlIsInvalidUrlWithoutItsPassword) {
  const std::string password = "Hidden-" + server().password();
  auto store = Store::open(options_for("postgresql://healer:" + password +
                                       "@127.0.0.1:5432/healer?no_such_parameter=1"));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::invalid_url)) << store.error().message();
  EXPECT_NE(store.error().message().find("no_such_parameter"), std::string::npos)
      << store.error().message();
  expect_no_password(store.error(), password);

  // libpq quotes a bad percent-encoding back, password and all: healer hides it.
  const std::string badly_encoded = "Hidden%zz" + server().password();
  auto quoted =
      Store::open(options_for("postgresql://healer:" + badly_encoded + "@127.0.0.1:5432/healer"));
  ASSERT_FALSE(quoted);
  EXPECT_EQ(quoted.error().code, make_error_code(Errc::invalid_url)) << quoted.error().message();
  EXPECT_NE(quoted.error().message().find("percent"), std::string::npos)
      << quoted.error().message();
  expect_no_password(quoted.error(), badly_encoded);
  expect_no_password(quoted.error(), server().password());
}

TEST_F(PostgresStoreTest, AnUnreachableServerIsUnavailable) {
  const std::string password = "Hidden-" + server().password();
  auto store = Store::open(options_for("postgresql://healer:" + password + "@127.0.0.1:" +
                                       std::to_string(healer::test::closed_port()) + "/healer"));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::unavailable)) << store.error().message();
  EXPECT_NE(store.error().message().find("127.0.0.1"), std::string::npos)
      << store.error().message();
  EXPECT_NE(store.error().message().find("healer:***@"), std::string::npos)
      << store.error().message();
  expect_no_password(store.error(), password);
}

TEST_F(PostgresStoreTest, AWrongPasswordOrDatabaseIsUnavailableWithoutThePassword) {
  const std::string wrong = "Wrong-" + server().password();
  auto store = Store::open(options_for("postgresql://healer:" + wrong + "@127.0.0.1:" +
                                       std::to_string(server().port()) + "/healer"));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::unavailable)) << store.error().message();
  EXPECT_NE(store.error().message().find("password authentication failed"), std::string::npos)
      << store.error().message();
  expect_no_password(store.error(), wrong);

  auto no_database = Store::open(options_for(server().url("no_such_database")));
  ASSERT_FALSE(no_database);
  EXPECT_EQ(no_database.error().code, make_error_code(Errc::unavailable));
  EXPECT_NE(no_database.error().message().find("no_such_database"), std::string::npos)
      << no_database.error().message();
  expect_no_password(no_database.error(), server().password());
}

// A server of its own: this test stops it.
TEST_F(PostgresStoreTest, AServerStoppedUnderAnOpenStoreIsAnErrorThenItReconnects) {
  PostgresFixture own;
  auto store = Store::open(options_for(own.fresh_database_url()));
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_TRUE(store->add_server(password_server("before")));

  own.stop();
  auto listed = store->list_servers();
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().code, make_error_code(Errc::unavailable)) << listed.error().message();
  expect_no_password(listed.error(), own.password());
  auto added = store->add_server(password_server("while-down"));
  ASSERT_FALSE(added);
  EXPECT_EQ(added.error().code, make_error_code(Errc::unavailable)) << added.error().message();
  // The async path counts the failure instead of blocking the caller.
  DiagnosisRun run;
  run.server_id = 1;
  run.started_at = 1;
  run.finished_at = 1;
  store->record_run_async(run);
  store->flush();
  EXPECT_EQ(store->stats().async_writes_failed, 1u);

  own.restart();
  auto after = store->list_servers();
  ASSERT_TRUE(after) << after.error().message();
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ(after->front().name, "before");
  EXPECT_TRUE(store->add_server(password_server("after")));
}

TEST_F(PostgresStoreTest, AServerThatStopsAnsweringTimesOutThenItReconnects) {
  auto options = options_for(server().fresh_database_url() + "&application_name=healer-frozen");
  options.reply_timeout = std::chrono::milliseconds(300);
  auto store = Store::open(options);
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_TRUE(store->add_server(password_server("before")));
  // Freeze the backend process serving the store's connection (SIGSTOP): the socket stays open
  // and no answer ever comes.
  const std::string backend =
      server().query("SELECT pid FROM pg_stat_activity WHERE application_name = 'healer-frozen'");
  ASSERT_FALSE(backend.empty());
  const pid_t pid = std::stoi(backend);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  auto frozen = store->list_servers();
  ::kill(pid, SIGCONT);
  ASSERT_FALSE(frozen);
  EXPECT_EQ(frozen.error().code, make_error_code(Errc::unavailable)) << frozen.error().message();
  EXPECT_NE(frozen.error().message().find("did not answer"), std::string::npos)
      << frozen.error().message();
  auto after = store->list_servers();
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->size(), 1u);
}

}  // namespace
}  // namespace healer::store
