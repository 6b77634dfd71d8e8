// Schema migrations: a new database, a database left at schema version 1 by an older healer (built
// here with migration 1 only and raw SQL rows), and a database newer than the code.
#include "migrations.hpp"

#include <gtest/gtest.h>

#include <string>

#include "database.hpp"
#include "healer/store/errors.hpp"
#include "healer/store/store.hpp"
#include "secret_box.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

using test::options_in;

// Opens a raw connection (the test plays an older healer or a DBA with the sqlite3 shell).
sql::Connection raw_open(const std::filesystem::path& path) {
  if (!prepare_database_file(path)) {
    throw std::runtime_error("prepare_database_file failed");
  }
  auto db = sql::Connection::open(path);
  if (!db) {
    throw std::runtime_error(db.error().message());
  }
  if (!db->exec("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL")) {
    throw std::runtime_error("pragmas failed");
  }
  return std::move(db).value();
}

std::int64_t count(sql::Connection& db, const std::string& sql) {
  auto query = db.prepare(sql);
  if (!query) {
    throw std::runtime_error(query.error().message());
  }
  auto row = query->step();
  if (!row || !*row) {
    throw std::runtime_error("no row for: " + sql);
  }
  return query->int64(0);
}

bool table_exists(sql::Connection& db, const std::string& table) {
  return count(db, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = '" + table +
                       "'") == 1;
}

TEST(MigrationsTest, VersionsAreContiguousFromOne) {
  const auto list = migrations::all();
  ASSERT_FALSE(list.empty());
  for (std::size_t i = 0; i < list.size(); ++i) {
    EXPECT_EQ(list[i].version, static_cast<int>(i) + 1);
    EXPECT_FALSE(list[i].name.empty());
  }
  EXPECT_EQ(migrations::latest_version(), list.back().version);
  EXPECT_GE(migrations::latest_version(), 2);
}

TEST(MigrationsTest, NewDatabaseIsMigratedToTheLatestVersion) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    EXPECT_EQ(store->schema_version(), migrations::latest_version());
  }
  auto db = raw_open(options.db_path);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM schema_migrations"), migrations::latest_version());
  for (const char* table : {"meta", "servers", "server_tags", "server_labels", "applications",
                            "diagnosis_runs", "check_results", "metric_samples"}) {
    EXPECT_TRUE(table_exists(db, table)) << table;
  }
  auto journal = db.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(journal);
  ASSERT_TRUE(journal->step());
  EXPECT_EQ(journal->text(0), "wal");
}

TEST(MigrationsTest, MigratesADatabaseAtVersionOneKeepingItsRows) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  {
    auto db = raw_open(options.db_path);
    auto version = migrations::migrate(db, 1);
    ASSERT_TRUE(version) << version.error().message();
    ASSERT_EQ(*version, 1);
    EXPECT_FALSE(table_exists(db, "applications"));
    EXPECT_FALSE(table_exists(db, "server_labels"));
    ASSERT_TRUE(db.exec(R"sql(
      INSERT INTO servers (id, name, host, port, user, auth_method, identity_file,
                           host_key_policy, known_hosts_file, created_at, updated_at)
        VALUES (7, 'web1', '10.0.0.7', 2222, 'ops', 'key_file', '/keys/id_ed25519',
                'accept_new', '/kh', 1000, 1000);
      INSERT INTO server_tags (server_id, tag) VALUES (7, 'prod'), (7, 'web');
      INSERT INTO diagnosis_runs (id, server_id, started_at, finished_at, status)
        VALUES (3, 7, 5000, 5250, 'WARNING');
      INSERT INTO check_results (run_id, position, name, status, message, perfdata, duration_ms)
        VALUES (3, 0, 'disk', 'WARNING', '/ at 91%', 'root=91%;90;95', 12);
      INSERT INTO metric_samples (server_id, collected_at, name, labels, value)
        VALUES (7, 6000, 'node_load1', '', 0.5);
    )sql"));
  }

  auto store = Store::open(options);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schema_version(), migrations::latest_version());

  auto server = store->get_server_by_name("web1");
  ASSERT_TRUE(server) << server.error().message();
  EXPECT_EQ(server->id, 7);
  EXPECT_EQ(server->host, "10.0.0.7");
  EXPECT_EQ(server->port, 2222);
  EXPECT_EQ(server->host_key_policy, HostKeyPolicy::accept_new);
  EXPECT_EQ(server->tags, (std::vector<std::string>{"prod", "web"}));
  EXPECT_TRUE(server->labels.empty());

  // Migration 2's additions work on the old rows.
  server->labels = {{"team", "payments"}};
  ASSERT_TRUE(store->update_server(*server));
  EXPECT_EQ(store->get_server(7)->labels.at("team"), "payments");
  ApplicationRecord app;
  app.name = "shop";
  app.server_id = 7;
  app.systemd_units = {"nginx.service"};
  auto app_id = store->add_application(app);
  ASSERT_TRUE(app_id) << app_id.error().message();

  auto run = store->get_run(3);
  ASSERT_TRUE(run) << run.error().message();
  EXPECT_FALSE(run->app_id);
  EXPECT_EQ(run->status, CheckStatus::warning);
  ASSERT_EQ(run->checks.size(), 1U);
  EXPECT_EQ(run->checks[0].perfdata, "root=91%;90;95");

  auto samples = store->samples_since(7, 0);
  ASSERT_TRUE(samples);
  ASSERT_EQ(samples->size(), 1U);
  EXPECT_DOUBLE_EQ(samples->front().value, 0.5);
}

TEST(MigrationsTest, CachedOutputsFramedByTheOldFixedMarkerAreDropped) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  {
    auto db = raw_open(options.db_path);
    ASSERT_EQ(*migrations::migrate(db, 3), 3);
    ASSERT_TRUE(db.exec(R"sql(
      INSERT INTO servers (id, name, host, port, user, auth_method, identity_file,
                           host_key_policy, known_hosts_file, created_at, updated_at)
        VALUES (7, 'web1', '10.0.0.7', 22, 'ops', 'agent', '', 'strict', '', 1000, 1000);
      INSERT INTO check_output_cache (server_id, check_name, command, stdout, stderr, exit_status,
                                      out_truncated, sent_at, received_at, expires_at)
        VALUES (7, 'security_updates', 'apt', '@@healer apt', '', 0, 0, NULL, NULL,
                9999999999999);
    )sql"));
  }
  auto store = Store::open(options);
  ASSERT_TRUE(store) << store.error().message();
  auto cached = store->cached_check_outputs(7, 0);
  ASSERT_TRUE(cached) << cached.error().message();
  EXPECT_TRUE(cached->empty());
  CachedCheckOutput output;
  output.server_id = 7;
  output.check_name = "security_updates";
  output.marker = "@@healer-00";
  output.expires_at = 9999999999999;
  ASSERT_TRUE(store->put_cached_check_outputs({output}, 0));
  cached = store->cached_check_outputs(7, 0);
  ASSERT_TRUE(cached);
  ASSERT_EQ(cached->size(), 1U);
  EXPECT_EQ(cached->front().marker, "@@healer-00");
}

// A database as healer left it before migration 5: secrets sealed with "server:<id>" only.
void make_old_scheme_database(const StoreOptions& options, const MasterKey& key) {
  auto db = raw_open(options.db_path);
  ASSERT_EQ(*migrations::migrate(db, 4), 4);
  auto check = db.prepare("INSERT INTO meta (key, value) VALUES ('key_check', ?1)");
  ASSERT_TRUE(check);
  check->bind_blob(1, crypto::make_key_check(key));
  ASSERT_TRUE(check->run());
  ASSERT_TRUE(db.exec(R"sql(
    INSERT INTO servers (id, name, host, port, user, auth_method, identity_file, host_key_policy,
                         known_hosts_file, created_at, updated_at)
      VALUES (7, 'pw', '10.0.0.7', 2222, 'ops', 'password', '', 'strict', '/kh', 1000, 1000),
             (8, 'pem', '10.0.0.8', 22, 'ops', 'stored_key', '', 'accept_new', '', 1000, 1000),
             (9, 'damaged', '10.0.0.9', 22, 'ops', 'password', '', 'strict', '', 1000, 1000),
             (10, 'keyfile', '10.0.0.10', 22, 'ops', 'key_file', '/k', 'strict', '', 1000, 1000);
  )sql"));
  auto secret = db.prepare("UPDATE servers SET secret = ?2 WHERE id = ?1");
  ASSERT_TRUE(secret);
  const std::pair<std::int64_t, std::string_view> secrets[] = {
      {7, "old-scheme-Password-7"}, {8, "-----BEGIN OPENSSH PRIVATE KEY-----\nold\n"}};
  for (const auto& [id, plaintext] : secrets) {
    secret->reset();
    secret->bind(1, id).bind_blob(2, crypto::seal(key, plaintext, "server:" + std::to_string(id)));
    ASSERT_TRUE(secret->run());
  }
  auto damaged = crypto::seal(key, "never-readable", "server:9");
  damaged.back() ^= 0x01;
  secret->reset();
  secret->bind(1, std::int64_t{9}).bind_blob(2, damaged);
  ASSERT_TRUE(secret->run());
}

TEST(MigrationsTest, SecretsOfTheOldSchemeAreResealedBoundToTheirServer) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  make_old_scheme_database(options, *options.master_key);

  auto store = Store::open(options);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schema_version(), migrations::latest_version());
  auto pw = store->get_server(7, SecretAccess::decrypt);
  ASSERT_TRUE(pw) << pw.error().message();
  EXPECT_EQ(*pw->secret, "old-scheme-Password-7");
  auto pem = store->get_server(8, SecretAccess::decrypt);
  ASSERT_TRUE(pem) << pem.error().message();
  EXPECT_EQ(*pem->secret, "-----BEGIN OPENSSH PRIVATE KEY-----\nold\n");
  // A secret that did not decrypt before the migration does not stop it, and still fails alone.
  auto damaged = store->get_server(9, SecretAccess::decrypt);
  ASSERT_FALSE(damaged);
  EXPECT_EQ(damaged.error().code, make_error_code(Errc::secret_corrupt));
  EXPECT_FALSE(store->get_server(10, SecretAccess::decrypt)->secret);
  store = Result<Store>(make_error(Errc::closed, "closed by the test"));

  // The stored bytes are bound to the row now: the old "server:7" context no longer opens them,
  // and pointing the row at another host makes them fail.
  {
    auto db = raw_open(options.db_path);
    auto blob = db.prepare("SELECT secret FROM servers WHERE id = 7");
    ASSERT_TRUE(blob);
    ASSERT_TRUE(*blob->step());
    const auto bytes = blob->blob(0);
    EXPECT_FALSE(crypto::open(*options.master_key, bytes, "server:7"));
    ASSERT_TRUE(db.exec("UPDATE servers SET host = '203.0.113.66' WHERE id = 7"));
  }
  auto reopened = Store::open(options);
  ASSERT_TRUE(reopened) << reopened.error().message();
  auto moved = reopened->get_server(7, SecretAccess::decrypt);
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, make_error_code(Errc::secret_corrupt));
}

TEST(MigrationsTest, ResealingNeedsTheMasterKey) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  make_old_scheme_database(options, *options.master_key);
  auto db = raw_open(options.db_path);
  auto failed = migrations::migrate(db);  // no key in the environment
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, make_error_code(Errc::migration_failed));
  EXPECT_NE(failed.error().message().find("migration 5"), std::string::npos)
      << failed.error().message();
  EXPECT_NE(failed.error().message().find("master key"), std::string::npos)
      << failed.error().message();
  EXPECT_EQ(*migrations::current_version(db), 4) << "rolled back";
}

TEST(MigrationsTest, MigrateIsIdempotent) {
  healer::test::TempDir dir;
  auto db = raw_open(dir.path() / "healer.db");
  ASSERT_EQ(*migrations::migrate(db), migrations::latest_version());
  auto again = migrations::migrate(db);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, migrations::latest_version());
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM schema_migrations"), migrations::latest_version());
}

TEST(MigrationsTest, ADatabaseFromANewerHealerIsRefused) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  {
    auto db = raw_open(options.db_path);
    ASSERT_TRUE(migrations::migrate(db));
    ASSERT_TRUE(db.exec(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)"));
  }
  auto store = Store::open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::schema_too_new));
  EXPECT_NE(store.error().message().find("99"), std::string::npos) << store.error().message();
}

TEST(MigrationsTest, AFailingStepRollsBackAndSaysWhichStep) {
  healer::test::TempDir dir;
  auto db = raw_open(dir.path() / "healer.db");
  ASSERT_TRUE(migrations::migrate(db, 1));
  // A table in migration 2's way makes that step fail.
  ASSERT_TRUE(db.exec("CREATE TABLE applications (x INTEGER)"));
  auto failed = migrations::migrate(db);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, make_error_code(Errc::migration_failed));
  EXPECT_NE(failed.error().message().find("migration 2"), std::string::npos)
      << failed.error().message();
  EXPECT_EQ(*migrations::current_version(db), 1);
  EXPECT_FALSE(table_exists(db, "server_labels")) << "the failed step was rolled back";
}

}  // namespace
}  // namespace healer::store
