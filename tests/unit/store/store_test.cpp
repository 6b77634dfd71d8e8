// The store end to end on real SQLite files in a temp dir: inventory CRUD, encrypted secrets and
// master-key failures, file modes, history, samples, retention, and the async write path.
#include "healer/store/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "database.hpp"
#include "healer/store/errors.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

using test::file_bytes;
using test::file_mode;
using test::key_of;
using test::options_in;
using test::ScopedEnv;

constexpr std::string_view kPassword = "Zebra-Quokka-7741-password";
constexpr std::string_view kPemMarker = "-----BEGIN OPENSSH PRIVATE KEY-----";
const std::string kPem = std::string(kPemMarker) +
                         "\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB-UniqueBody\n"
                         "-----END OPENSSH PRIVATE KEY-----\n";

ServerRecord key_file_server(std::string name) {
  ServerRecord server;
  server.name = std::move(name);
  server.host = "192.0.2.10";
  server.port = 2222;
  server.user = "ops";
  server.auth_method = AuthMethod::key_file;
  server.identity_file = "/home/ops/.ssh/id_ed25519";
  server.host_key_policy = HostKeyPolicy::accept_new;
  server.known_hosts_file = "/home/ops/.ssh/known_hosts";
  server.tags = {"web", "prod"};
  server.labels = {{"dc", "fra1"}, {"team", "payments"}};
  return server;
}

ServerRecord password_server(std::string name) {
  ServerRecord server = key_file_server(std::move(name));
  server.auth_method = AuthMethod::password;
  server.identity_file.clear();
  server.secret = std::string(kPassword);
  return server;
}

// Runs on both backends: a SQLite file and a fresh schema on a real PostgreSQL server.
class StoreTest : public ::testing::TestWithParam<test::Backend> {
 protected:
  void SetUp() override {
    if (const auto reason = test::backend_unavailable(GetParam()); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
    options_ = test::backend_options(GetParam(), dir_.path());
    auto opened = Store::open(options_);
    ASSERT_TRUE(opened) << opened.error().message();
    store_.emplace(std::move(opened).value());
  }

  std::int64_t add(const ServerRecord& server) {
    auto id = store_->add_server(server);
    EXPECT_TRUE(id) << id.error().message();
    return id ? *id : 0;
  }

  healer::test::TempDir dir_;
  StoreOptions options_;
  std::optional<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(test::Backend::sqlite, test::Backend::postgres),
                         test::backend_name);

// --- servers ---

TEST_P(StoreTest, ServerRoundTripWithTagsAndLabels) {
  const std::int64_t id = add(key_file_server("web1"));
  ASSERT_GT(id, 0);
  auto read = store_->get_server(id);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->id, id);
  EXPECT_EQ(read->name, "web1");
  EXPECT_EQ(read->host, "192.0.2.10");
  EXPECT_EQ(read->port, 2222);
  EXPECT_EQ(read->user, "ops");
  EXPECT_EQ(read->auth_method, AuthMethod::key_file);
  EXPECT_EQ(read->identity_file, "/home/ops/.ssh/id_ed25519");
  EXPECT_EQ(read->host_key_policy, HostKeyPolicy::accept_new);
  EXPECT_EQ(read->known_hosts_file, "/home/ops/.ssh/known_hosts");
  EXPECT_EQ(read->tags, (std::vector<std::string>{"prod", "web"}));  // sorted
  EXPECT_EQ(read->labels,
            (std::map<std::string, std::string>{{"dc", "fra1"}, {"team", "payments"}}));
  EXPECT_FALSE(read->secret);
  EXPECT_FALSE(read->has_secret);
  EXPECT_GT(read->created_at, 0);

  auto by_name = store_->get_server_by_name("web1");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->id, id);
}

TEST_P(StoreTest, UpdateReplacesFieldsTagsAndLabels) {
  const std::int64_t id = add(key_file_server("web1"));
  auto server = *store_->get_server(id);
  server.name = "web1-renamed";
  server.host = "192.0.2.11";
  server.port = 22;
  server.auth_method = AuthMethod::agent;
  server.host_key_policy = HostKeyPolicy::strict;
  server.tags = {"db"};
  server.labels = {{"dc", "ams3"}};
  ASSERT_TRUE(store_->update_server(server));
  auto read = *store_->get_server(id);
  EXPECT_EQ(read.name, "web1-renamed");
  EXPECT_EQ(read.host, "192.0.2.11");
  EXPECT_EQ(read.port, 22);
  EXPECT_EQ(read.auth_method, AuthMethod::agent);
  EXPECT_EQ(read.host_key_policy, HostKeyPolicy::strict);
  EXPECT_EQ(read.tags, std::vector<std::string>{"db"});
  EXPECT_EQ(read.labels, (std::map<std::string, std::string>{{"dc", "ams3"}}));
}

TEST_P(StoreTest, DuplicateNameIsAClearError) {
  add(key_file_server("web1"));
  auto again = store_->add_server(password_server("web1"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, make_error_code(Errc::duplicate_name));
  EXPECT_NE(again.error().message().find("a server named 'web1' already exists"), std::string::npos)
      << again.error().message();
  EXPECT_EQ(again.error().message().find(kPassword), std::string::npos);

  const std::int64_t other = add(key_file_server("web2"));
  auto renamed = *store_->get_server(other);
  renamed.name = "web1";
  auto update = store_->update_server(renamed);
  ASSERT_FALSE(update);
  EXPECT_EQ(update.error().code, make_error_code(Errc::duplicate_name));
  EXPECT_EQ(store_->list_servers()->size(), 2U);
}

TEST_P(StoreTest, ListFiltersByTag) {
  add(key_file_server("b-web"));
  auto db = key_file_server("a-db");
  db.tags = {"db", "prod"};
  add(db);
  auto all = store_->list_servers();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2U);
  EXPECT_EQ((*all)[0].name, "a-db");  // by name
  auto web = store_->list_servers("web");
  ASSERT_TRUE(web);
  ASSERT_EQ(web->size(), 1U);
  EXPECT_EQ(web->front().name, "b-web");
  EXPECT_EQ(store_->list_servers("prod")->size(), 2U);
  EXPECT_TRUE(store_->list_servers("nope")->empty());
}

TEST_P(StoreTest, MissingAndRemovedServersAreNotFound) {
  auto missing = store_->get_server(42);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, make_error_code(Errc::not_found));
  EXPECT_EQ(store_->get_server_by_name("ghost").error().code, make_error_code(Errc::not_found));

  const std::int64_t id = add(key_file_server("web1"));
  add(key_file_server("web2"));
  ASSERT_TRUE(store_->remove_server(id));
  EXPECT_EQ(store_->remove_server(id).error().code, make_error_code(Errc::not_found));
  ASSERT_TRUE(store_->remove_server_by_name("web2"));
  EXPECT_EQ(store_->remove_server_by_name("web2").error().code, make_error_code(Errc::not_found));
  EXPECT_TRUE(store_->list_servers()->empty());
  auto update = store_->update_server(key_file_server("web1"));  // id 0: not stored
  EXPECT_EQ(update.error().code, make_error_code(Errc::not_found));
}

TEST_P(StoreTest, InvalidServersAreRejected) {
  auto no_secret = password_server("p");
  no_secret.secret.reset();
  EXPECT_EQ(store_->add_server(no_secret).error().code, make_error_code(Errc::invalid_record));
  auto port_zero = key_file_server("z");
  port_zero.port = 0;
  EXPECT_EQ(store_->add_server(port_zero).error().code, make_error_code(Errc::invalid_record));
  auto agent_with_secret = key_file_server("a");
  agent_with_secret.auth_method = AuthMethod::agent;
  agent_with_secret.secret = "x";
  EXPECT_EQ(store_->add_server(agent_with_secret).error().code,
            make_error_code(Errc::invalid_record));
  auto no_identity = key_file_server("k");
  no_identity.identity_file.clear();
  EXPECT_EQ(store_->add_server(no_identity).error().code, make_error_code(Errc::invalid_record));
  auto unnamed = key_file_server("");
  EXPECT_EQ(store_->add_server(unnamed).error().code, make_error_code(Errc::invalid_record));
  EXPECT_TRUE(store_->list_servers()->empty());
}

// --- secrets ---

TEST_P(StoreTest, SecretsRoundTripOnlyWhenAskedFor) {
  const std::int64_t password_id = add(password_server("pw"));
  auto pem = key_file_server("pem");
  pem.auth_method = AuthMethod::stored_key;
  pem.identity_file.clear();
  pem.secret = kPem;
  const std::int64_t pem_id = add(pem);

  auto plain = store_->get_server(password_id);
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->secret);
  EXPECT_TRUE(plain->has_secret);

  auto decrypted = store_->get_server(password_id, SecretAccess::decrypt);
  ASSERT_TRUE(decrypted) << decrypted.error().message();
  ASSERT_TRUE(decrypted->secret);
  EXPECT_EQ(*decrypted->secret, kPassword);

  auto key = store_->get_server_by_name("pem", SecretAccess::decrypt);
  ASSERT_TRUE(key);
  EXPECT_EQ(key->id, pem_id);
  EXPECT_EQ(*key->secret, kPem);

  auto listed_servers = store_->list_servers();
  ASSERT_TRUE(listed_servers);
  for (const auto& listed : *listed_servers) {
    EXPECT_FALSE(listed.secret) << "list never decrypts";
    EXPECT_TRUE(listed.has_secret);
  }
}

TEST_P(StoreTest, UpdateKeepsReplacesOrDropsTheSecret) {
  const std::int64_t id = add(password_server("pw"));
  auto server = *store_->get_server(id);  // secret: nullopt = keep
  server.port = 2200;
  ASSERT_TRUE(store_->update_server(server));
  EXPECT_EQ(*store_->get_server(id, SecretAccess::decrypt)->secret, kPassword);

  server.secret = "rotated-Password-99";
  ASSERT_TRUE(store_->update_server(server));
  EXPECT_EQ(*store_->get_server(id, SecretAccess::decrypt)->secret, "rotated-Password-99");

  server.secret.reset();
  server.auth_method = AuthMethod::key_file;
  server.identity_file = "/k";
  ASSERT_TRUE(store_->update_server(server));
  auto after = *store_->get_server(id, SecretAccess::decrypt);
  EXPECT_FALSE(after.has_secret);
  EXPECT_FALSE(after.secret);

  // Back to password without giving one: nothing stored to keep.
  server.auth_method = AuthMethod::password;
  auto refused = store_->update_server(server);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::invalid_record));
  EXPECT_EQ(store_->get_server(id)->auth_method, AuthMethod::key_file) << "rolled back";
}

TEST(StoreSecretsTest, WrongMasterKeyFailsAtOpen) {
  healer::test::TempDir dir;
  {
    auto store = Store::open(options_in(dir.path(), 1));
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->add_server(password_server("pw")));
  }
  auto wrong = Store::open(options_in(dir.path(), 2));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, make_error_code(Errc::wrong_master_key));
  EXPECT_NE(wrong.error().message().find(
                "the master key does not match the one this database was created with"),
            std::string::npos)
      << wrong.error().message();

  auto right = Store::open(options_in(dir.path(), 1));
  ASSERT_TRUE(right) << right.error().message();
  EXPECT_EQ(*right->get_server_by_name("pw", SecretAccess::decrypt)->secret, kPassword);
}

TEST(StoreSecretsTest, KeyFileIsCreatedOnFirstRunAndRequiredAfterwards) {
  ScopedEnv no_env_key("HEALER_MASTER_KEY", std::nullopt);
  healer::test::TempDir dir;
  StoreOptions options;
  options.db_path = dir.path() / "healer.db";
  const auto key_file = dir.path() / "master.key";
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    ASSERT_TRUE(store->add_server(password_server("pw")));
  }
  EXPECT_EQ(file_mode(key_file), 0600);
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    EXPECT_EQ(*store->get_server_by_name("pw", SecretAccess::decrypt)->secret, kPassword);
  }

  std::filesystem::remove(key_file);
  auto missing = Store::open(options);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, make_error_code(Errc::master_key_missing));
  EXPECT_NE(missing.error().message().find(key_file.string()), std::string::npos)
      << missing.error().message();
  EXPECT_NE(missing.error().message().find("HEALER_MASTER_KEY"), std::string::npos);
  EXPECT_EQ(file_mode(key_file), -1) << "a new key is never made for an existing database";
}

TEST(StoreSecretsTest, KeyFileReadableByOthersIsRefusedAtOpen) {
  ScopedEnv no_env_key("HEALER_MASTER_KEY", std::nullopt);
  healer::test::TempDir dir;
  StoreOptions options;
  options.db_path = dir.path() / "healer.db";
  ASSERT_TRUE(Store::open(options));
  ASSERT_EQ(::chmod((dir.path() / "master.key").c_str(), 0644), 0);
  auto refused = Store::open(options);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::master_key_insecure));
}

TEST(StoreSecretsTest, EnvironmentKeyOfWrongLengthIsAClearError) {
  ScopedEnv bad_key("HEALER_MASTER_KEY", std::string("deadbeef"));
  healer::test::TempDir dir;
  StoreOptions options;
  options.db_path = dir.path() / "healer.db";
  auto store = Store::open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::master_key_invalid));
  EXPECT_NE(store.error().message().find("HEALER_MASTER_KEY"), std::string::npos);
  EXPECT_NE(store.error().message().find("got 8 characters"), std::string::npos)
      << store.error().message();
  EXPECT_EQ(store.error().message().find("deadbeef"), std::string::npos);
}

TEST(StoreSecretsTest, EnvironmentKeyIsUsedAndChecked) {
  healer::test::TempDir dir;
  StoreOptions options;
  options.db_path = dir.path() / "healer.db";
  {
    ScopedEnv key("HEALER_MASTER_KEY", std::string(64, 'a'));
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    ASSERT_TRUE(store->add_server(password_server("pw")));
  }
  EXPECT_EQ(file_mode(dir.path() / "master.key"), -1) << "no key file when the env has the key";
  {
    ScopedEnv other("HEALER_MASTER_KEY", std::string(64, 'b'));
    auto store = Store::open(options);
    ASSERT_FALSE(store);
    EXPECT_EQ(store.error().code, make_error_code(Errc::wrong_master_key));
    EXPECT_NE(store.error().message().find("HEALER_MASTER_KEY"), std::string::npos);
  }
  options.master_key = key_of(0xaa);  // the same bytes as the hex "aaaa..."
  auto store = Store::open(options);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(*store->get_server_by_name("pw", SecretAccess::decrypt)->secret, kPassword);
}

TEST(StoreSecretsTest, TamperedOrMovedSecretIsAnErrorNeverGarbage) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  std::int64_t first = 0;
  std::int64_t second = 0;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store);
    first = *store->add_server(password_server("one"));
    auto other = password_server("two");
    other.secret = "another-password";
    second = *store->add_server(other);
  }
  {
    // Copy server one's ciphertext onto server two: it is bound to server one's id.
    auto db = sql::Connection::open(options.db_path);
    ASSERT_TRUE(db);
    auto copy = db->prepare(
        "UPDATE servers SET secret = (SELECT secret FROM servers WHERE id = ?1) WHERE id = ?2");
    ASSERT_TRUE(copy);
    copy->bind(1, first).bind(2, second);
    ASSERT_TRUE(copy->run());
  }
  auto store = Store::open(options);
  ASSERT_TRUE(store);
  auto moved = store->get_server(second, SecretAccess::decrypt);
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, make_error_code(Errc::secret_corrupt));
  EXPECT_NE(moved.error().message().find("'two'"), std::string::npos) << moved.error().message();
  EXPECT_EQ(moved.error().message().find(kPassword), std::string::npos);
  // Without decryption the record is still readable.
  EXPECT_TRUE(store->get_server(second));
  EXPECT_EQ(*store->get_server(first, SecretAccess::decrypt)->secret, kPassword);
}

// Edits the database as a DBA (or an attacker with write access to the file) would: the sqlite3
// C API, no healer code.
void edit_with_sqlite3(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* raw = nullptr;
  const int opened = sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  ASSERT_EQ(opened, SQLITE_OK) << sqlite3_errstr(opened);
  char* message = nullptr;
  const int rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &message);
  EXPECT_EQ(rc, SQLITE_OK) << (message != nullptr ? message : "") << " in " << sql;
  EXPECT_EQ(sqlite3_changes(raw), 1) << sql;
  sqlite3_free(message);
  sqlite3_close(raw);
}

TEST(StoreSecretsTest, ARowPointedAtAnotherHostCannotReplayItsPassword) {
  // Each edit sends the password somewhere else or lowers the guard on who receives it.
  const std::vector<std::string> edits = {
      "UPDATE servers SET host = '203.0.113.66' WHERE name = 'pw'",
      "UPDATE servers SET port = 2223 WHERE name = 'pw'",
      "UPDATE servers SET user = 'root' WHERE name = 'pw'",
      "UPDATE servers SET host_key_policy = 'strict' WHERE name = 'pw'",  // was accept_new
      "UPDATE servers SET known_hosts_file = '/tmp/eve_known_hosts' WHERE name = 'pw'",
  };
  for (const auto& edit : edits) {
    SCOPED_TRACE(edit);
    healer::test::TempDir dir;
    const auto options = options_in(dir.path());
    std::int64_t id = 0;
    {
      auto store = Store::open(options);
      ASSERT_TRUE(store) << store.error().message();
      id = *store->add_server(password_server("pw"));
    }
    edit_with_sqlite3(options.db_path, edit);
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    auto read = store->get_server(id, SecretAccess::decrypt);
    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().code, make_error_code(Errc::secret_corrupt));
    const std::string message = read.error().message();
    EXPECT_NE(message.find("server 'pw'"), std::string::npos) << message;
    EXPECT_NE(message.find("changed outside healer"), std::string::npos) << message;
    EXPECT_EQ(message.find(kPassword), std::string::npos) << message;
    EXPECT_TRUE(store->get_server(id)) << "the record itself stays readable";
  }
}

TEST(StoreSecretsTest, FieldsThatDoNotDecideWhereTheSecretGoesMayBeEdited) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  std::int64_t id = 0;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store);
    id = *store->add_server(password_server("pw"));
  }
  edit_with_sqlite3(options.db_path, "UPDATE servers SET name = 'renamed' WHERE name = 'pw'");
  auto store = Store::open(options);
  ASSERT_TRUE(store);
  auto read = store->get_server(id, SecretAccess::decrypt);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(*read->secret, kPassword);
}

TEST(StoreSecretsTest, UpdateServerResealsTheKeptSecretForTheNewAddress) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  auto store = Store::open(options);
  ASSERT_TRUE(store);
  const std::int64_t id = *store->add_server(password_server("pw"));
  auto server = *store->get_server(id);  // secret: nullopt = keep
  server.host = "198.51.100.7";
  server.port = 2200;
  server.user = "deploy";
  server.host_key_policy = HostKeyPolicy::strict;
  server.known_hosts_file = "/etc/ssh/ssh_known_hosts";
  ASSERT_TRUE(store->update_server(server));
  auto read = store->get_server(id, SecretAccess::decrypt);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(*read->secret, kPassword);
  EXPECT_EQ(read->host, "198.51.100.7");

  // And back through the sqlite3 shell to the old host: no longer decrypts.
  store.value().flush();
  edit_with_sqlite3(options.db_path, "UPDATE servers SET host = '192.0.2.10' WHERE name = 'pw'");
  EXPECT_FALSE(store->get_server(id, SecretAccess::decrypt));
}

TEST(StoreSecretsTest, AnUnreadableKeptSecretCannotFollowANewAddress) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  std::int64_t id = 0;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store);
    id = *store->add_server(password_server("pw"));
  }
  edit_with_sqlite3(options.db_path, "UPDATE servers SET user = 'eve' WHERE name = 'pw'");
  auto store = Store::open(options);
  ASSERT_TRUE(store);
  auto server = *store->get_server(id);
  server.host = "198.51.100.8";
  auto refused = store->update_server(server);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::secret_corrupt));
  EXPECT_NE(refused.error().message().find("give the secret again"), std::string::npos)
      << refused.error().message();
  EXPECT_EQ(store->get_server(id)->host, "192.0.2.10") << "rolled back";
  // Giving the secret again with the change works.
  server.secret = "new-Password-1";
  ASSERT_TRUE(store->update_server(server));
  EXPECT_EQ(*store->get_server(id, SecretAccess::decrypt)->secret, "new-Password-1");
}

// --- files on disk ---

TEST(StoreFilesTest, DatabaseFilesAndDirectoryArePrivate) {
  healer::test::TempDir dir;
  StoreOptions options = options_in(dir.path());
  options.db_path = dir.path() / "data" / "healer" / "healer.db";
  auto store = Store::open(options);
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_TRUE(store->add_server(password_server("pw")));
  EXPECT_EQ(file_mode(options.db_path), 0600);
  EXPECT_EQ(file_mode(options.db_path.string() + "-wal"), 0600);
  EXPECT_EQ(file_mode(options.db_path.string() + "-shm"), 0600);
  EXPECT_EQ(file_mode(dir.path() / "data"), 0700);
  EXPECT_EQ(file_mode(dir.path() / "data" / "healer"), 0700);
}

TEST(StoreFilesTest, AnExistingWorldReadableDatabaseIsTightened) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  ASSERT_TRUE(Store::open(options));
  ASSERT_EQ(::chmod(options.db_path.c_str(), 0644), 0);
  auto store = Store::open(options);
  ASSERT_TRUE(store);
  EXPECT_EQ(file_mode(options.db_path), 0600);
}

TEST(StoreFilesTest, AFileThatIsNotADatabaseIsCorruptNotOverwritten) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  const std::string junk(8192, 'x');
  {
    std::ofstream out(options.db_path, std::ios::binary);
    out << junk;
  }
  auto store = Store::open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::corrupt)) << store.error().message();
  EXPECT_NE(store.error().message().find(options.db_path.string()), std::string::npos);
  EXPECT_EQ(file_bytes(options.db_path), junk);
}

TEST(StoreFilesTest, SecretsNeverReachTheFilesInPlaintext) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  const std::vector<std::filesystem::path> files = {
      options.db_path, options.db_path.string() + "-wal", options.db_path.string() + "-shm"};
  const auto scan = [&files](const char* when) {
    for (const auto& file : files) {
      const std::string bytes = file_bytes(file);
      EXPECT_EQ(bytes.find(kPassword), std::string::npos) << file << " " << when;
      EXPECT_EQ(bytes.find(kPemMarker), std::string::npos) << file << " " << when;
      EXPECT_EQ(bytes.find("UniqueBody"), std::string::npos) << file << " " << when;
    }
  };
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store);
    const std::int64_t id = *store->add_server(password_server("pw"));
    auto pem = key_file_server("pem");
    pem.auth_method = AuthMethod::stored_key;
    pem.identity_file.clear();
    pem.secret = kPem;
    ASSERT_TRUE(store->add_server(pem));
    auto update = *store->get_server(id);
    update.secret = std::string(kPassword) + "-v2";
    ASSERT_TRUE(store->update_server(update));
    // The records are readable (so they were written), and the WAL holds them right now.
    ASSERT_EQ(*store->get_server(id, SecretAccess::decrypt)->secret,
              std::string(kPassword) + "-v2");
    ASSERT_FALSE(file_bytes(files[1]).empty()) << "the WAL has content to scan";
    EXPECT_NE(file_bytes(files[1]).find("192.0.2.10"), std::string::npos)
        << "the scan sees what was written";
    scan("while open");
  }
  scan("after close (checkpointed)");
  EXPECT_NE(file_bytes(options.db_path).find("192.0.2.10"), std::string::npos);
}

// --- applications ---

TEST_P(StoreTest, ApplicationsCrud) {
  const std::int64_t server = add(key_file_server("web1"));
  ApplicationRecord app;
  app.name = "shop";
  app.server_id = server;
  app.systemd_units = {"nginx.service", "php-fpm.service"};
  app.ports = {80, 443};
  app.health_url = "https://shop.example/health";
  app.log_paths = {"/var/log/nginx/error.log"};
  auto id = store_->add_application(app);
  ASSERT_TRUE(id) << id.error().message();

  auto read = store_->get_application(*id);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->name, "shop");
  EXPECT_EQ(read->server_id, server);
  EXPECT_EQ(read->systemd_units, app.systemd_units);
  EXPECT_EQ(read->ports, app.ports);
  EXPECT_EQ(read->health_url, app.health_url);
  EXPECT_EQ(read->log_paths, app.log_paths);
  EXPECT_EQ(store_->get_application_by_name("shop")->id, *id);

  auto duplicate = store_->add_application(app);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, make_error_code(Errc::duplicate_name));

  auto orphan = app;
  orphan.name = "orphan";
  orphan.server_id = 999;
  auto no_server = store_->add_application(orphan);
  ASSERT_FALSE(no_server);
  EXPECT_EQ(no_server.error().code, make_error_code(Errc::not_found));
  EXPECT_NE(no_server.error().message().find("server #999"), std::string::npos);

  read->ports = {8080};
  read->log_paths.clear();
  ASSERT_TRUE(store_->update_application(*read));
  EXPECT_EQ(store_->get_application(*id)->ports, std::vector<std::uint16_t>{8080});
  EXPECT_TRUE(store_->get_application(*id)->log_paths.empty());

  EXPECT_EQ(store_->list_applications(server)->size(), 1U);
  EXPECT_TRUE(store_->list_applications(server + 1)->empty());
  ASSERT_TRUE(store_->remove_application(*id));
  EXPECT_EQ(store_->get_application(*id).error().code, make_error_code(Errc::not_found));

  // Removing a server removes its applications.
  ASSERT_TRUE(store_->add_application(app));
  ASSERT_TRUE(store_->remove_server(server));
  EXPECT_TRUE(store_->list_applications()->empty());
}

// --- diagnosis history ---

DiagnosisRun make_run(std::int64_t server_id, std::int64_t started_at) {
  DiagnosisRun run;
  run.server_id = server_id;
  run.started_at = started_at;
  run.finished_at = started_at + 420;
  run.status = CheckStatus::critical;
  run.checks = {
      {"disk", CheckStatus::warning, "/ at 91%", "root=91%;90;95", 12},
      {"systemd", CheckStatus::critical, "nginx.service failed", "", 30},
      {"load", CheckStatus::ok, "load 0.1", "load1=0.1", 5},
  };
  return run;
}

TEST_P(StoreTest, DiagnosisRunRoundTrip) {
  const std::int64_t server = add(key_file_server("web1"));
  ApplicationRecord app;
  app.name = "shop";
  app.server_id = server;
  const std::int64_t app_id = *store_->add_application(app);

  auto run = make_run(server, 1'700'000'000'000);
  run.app_id = app_id;
  auto id = store_->record_run(run);
  ASSERT_TRUE(id) << id.error().message();
  auto read = store_->get_run(*id);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->id, *id);
  EXPECT_EQ(read->server_id, server);
  EXPECT_EQ(read->app_id, app_id);
  EXPECT_EQ(read->started_at, run.started_at);
  EXPECT_EQ(read->finished_at, run.finished_at);
  EXPECT_EQ(read->status, CheckStatus::critical);
  ASSERT_EQ(read->checks.size(), 3U);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(read->checks[i].name, run.checks[i].name);
    EXPECT_EQ(read->checks[i].status, run.checks[i].status);
    EXPECT_EQ(read->checks[i].message, run.checks[i].message);
    EXPECT_EQ(read->checks[i].perfdata, run.checks[i].perfdata);
    EXPECT_EQ(read->checks[i].duration_ms, run.checks[i].duration_ms);
  }
}

TEST_P(StoreTest, RecentRunsNewestFirstWithLimit) {
  const std::int64_t server = add(key_file_server("web1"));
  const std::int64_t other = add(key_file_server("web2"));
  for (std::int64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->record_run(make_run(server, 1000 * i)));
  }
  ASSERT_TRUE(store_->record_run(make_run(other, 99'999)));
  auto recent = store_->recent_runs(server, 3);
  ASSERT_TRUE(recent);
  ASSERT_EQ(recent->size(), 3U);
  EXPECT_EQ((*recent)[0].started_at, 4000);
  EXPECT_EQ((*recent)[2].started_at, 2000);
  EXPECT_EQ((*recent)[0].checks.size(), 3U);
  EXPECT_EQ(store_->recent_runs(server)->size(), 5U);
}

TEST_P(StoreTest, InvalidRunsAreRejected) {
  const std::int64_t server = add(key_file_server("web1"));
  const std::int64_t other = add(key_file_server("web2"));
  ApplicationRecord app;
  app.name = "shop";
  app.server_id = other;
  const std::int64_t app_id = *store_->add_application(app);

  auto unknown_server = store_->record_run(make_run(999, 0));
  ASSERT_FALSE(unknown_server);
  EXPECT_EQ(unknown_server.error().code, make_error_code(Errc::not_found));

  auto wrong_app = make_run(server, 0);
  wrong_app.app_id = app_id;
  EXPECT_EQ(store_->record_run(wrong_app).error().code, make_error_code(Errc::invalid_record));

  auto backwards = make_run(server, 1000);
  backwards.finished_at = 10;
  EXPECT_EQ(store_->record_run(backwards).error().code, make_error_code(Errc::invalid_record));
  EXPECT_TRUE(store_->recent_runs(server)->empty());
}

// --- metric samples and retention ---

std::vector<MetricSample> samples_for(std::int64_t server, std::int64_t from, int count) {
  std::vector<MetricSample> samples;
  for (int i = 0; i < count; ++i) {
    samples.push_back(
        {server, from + i, i % 2 == 0 ? "node_load1" : "node_memory_free", "host=web1", 0.25 * i});
  }
  return samples;
}

TEST_P(StoreTest, SamplesBatchInsertAndQuerySince) {
  const std::int64_t server = add(key_file_server("web1"));
  const std::int64_t other = add(key_file_server("web2"));
  auto appended = store_->append_samples(samples_for(server, 10'000, 100));
  ASSERT_TRUE(appended) << appended.error().message();
  EXPECT_EQ(*appended, 100U);
  ASSERT_TRUE(store_->append_samples(samples_for(other, 10'000, 10)));

  auto since = store_->samples_since(server, 10'090);
  ASSERT_TRUE(since);
  ASSERT_EQ(since->size(), 10U);
  EXPECT_EQ(since->front().collected_at, 10'090);
  EXPECT_EQ(since->front().labels, "host=web1");
  EXPECT_DOUBLE_EQ(since->back().value, 0.25 * 99);
  EXPECT_EQ(store_->samples_since(server, 10'090, "node_load1")->size(), 5U);
  EXPECT_EQ(store_->samples_since(server, 0)->size(), 100U);
}

TEST_P(StoreTest, ABatchIsAllOrNothing) {
  const std::int64_t server = add(key_file_server("web1"));
  auto batch = samples_for(server, 0, 10);
  batch[5].server_id = 999;
  auto failed = store_->append_samples(batch);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, make_error_code(Errc::not_found));
  EXPECT_TRUE(store_->samples_since(server, 0)->empty());

  batch = samples_for(server, 0, 10);
  batch[3].value = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(store_->append_samples(batch).error().code, make_error_code(Errc::invalid_record));
  EXPECT_TRUE(store_->samples_since(server, 0)->empty());
}

TEST_P(StoreTest, PruneDeletesWhatIsOlderThanTheRetention) {
  constexpr std::int64_t kDay = 24LL * 60 * 60 * 1000;
  const std::int64_t now = 1'700'000'000'000;
  const std::int64_t server = add(key_file_server("web1"));
  ASSERT_TRUE(store_->append_samples(samples_for(server, now - 40 * kDay, 7)));  // old
  ASSERT_TRUE(store_->append_samples(samples_for(server, now - 10 * kDay, 3)));  // kept
  const std::int64_t old_run = *store_->record_run(make_run(server, now - 100 * kDay));
  const std::int64_t new_run = *store_->record_run(make_run(server, now - 5 * kDay));

  Retention retention;
  retention.samples = std::chrono::days(30);
  retention.runs = std::chrono::days(90);
  auto pruned = store_->prune(retention, now);
  ASSERT_TRUE(pruned) << pruned.error().message();
  EXPECT_EQ(pruned->samples_deleted, 7);
  EXPECT_EQ(pruned->runs_deleted, 1);
  EXPECT_EQ(store_->samples_since(server, 0)->size(), 3U);
  EXPECT_EQ(store_->get_run(old_run).error().code, make_error_code(Errc::not_found));
  EXPECT_EQ(store_->get_run(new_run)->checks.size(), 3U);

  auto again = store_->prune(retention, now);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->samples_deleted, 0);
  EXPECT_EQ(again->runs_deleted, 0);

  retention.samples = std::chrono::days(-1);
  EXPECT_EQ(store_->prune(retention, now).error().code, make_error_code(Errc::invalid_record));
}

TEST_P(StoreTest, PruneWorksInChunksBeyondOneChunk) {
  const std::int64_t server = add(key_file_server("web1"));
  ASSERT_TRUE(store_->append_samples(samples_for(server, 0, 12'345)));
  auto pruned = store_->prune(Retention{}, 1'000'000'000'000);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(pruned->samples_deleted, 12'345);
  EXPECT_TRUE(store_->samples_since(server, 0)->empty());
}

// --- the async write path ---

TEST_P(StoreTest, ConcurrentAsyncWritesFromManyThreadsAllLand) {
  const std::int64_t server = add(key_file_server("web1"));
  static constexpr int kThreads = 8;
  static constexpr int kBatchesPerThread = 50;
  static constexpr int kSamplesPerBatch = 10;
  std::atomic<int> callbacks{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int b = 0; b < kBatchesPerThread; ++b) {
        store_->append_samples_async(
            samples_for(server, (t * kBatchesPerThread + b) * kSamplesPerBatch, kSamplesPerBatch),
            [&callbacks](Result<std::size_t> appended) {
              if (appended && *appended == kSamplesPerBatch) {
                callbacks.fetch_add(1);
              }
            });
        store_->record_run_async(make_run(server, t * 1000 + b));
      }
    });
  }
  for (auto& writer : writers) {
    writer.join();
  }
  store_->flush();
  EXPECT_EQ(store_->samples_since(server, 0)->size(),
            static_cast<std::size_t>(kThreads * kBatchesPerThread * kSamplesPerBatch));
  EXPECT_EQ(store_->recent_runs(server, 100'000)->size(),
            static_cast<std::size_t>(kThreads * kBatchesPerThread));
  EXPECT_EQ(callbacks.load(), kThreads * kBatchesPerThread);
  const auto stats = store_->stats();
  EXPECT_EQ(stats.async_writes_ok, static_cast<std::uint64_t>(2 * kThreads * kBatchesPerThread));
  EXPECT_EQ(stats.async_writes_failed, 0U);
  EXPECT_EQ(stats.queued_jobs, 0U);
}

TEST_P(StoreTest, AFailedAsyncWriteIsReportedAndCounted) {
  std::promise<Result<std::size_t>> outcome;
  store_->append_samples_async(samples_for(999, 0, 3),
                               [&outcome](Result<std::size_t> r) { outcome.set_value(r); });
  auto result = outcome.get_future().get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, make_error_code(Errc::not_found));
  store_->record_run_async(make_run(999, 0));  // no callback: logged and counted
  store_->flush();
  EXPECT_EQ(store_->stats().async_writes_failed, 2U);
}

TEST_P(StoreTest, CallbacksMayUseTheBlockingApi) {
  const std::int64_t server = add(key_file_server("web1"));
  std::promise<std::size_t> seen;
  store_->record_run_async(make_run(server, 1), [&](Result<std::int64_t> id) {
    // Runs on the store thread: the blocking call runs inline instead of deadlocking.
    auto runs = store_->recent_runs(server);
    seen.set_value(id && runs ? runs->size() : 0);
  });
  EXPECT_EQ(seen.get_future().get(), 1U);
}

TEST(StoreAsyncTest, ClosingTheStoreFinishesQueuedWrites) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  std::int64_t server = 0;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store);
    server = *store->add_server(key_file_server("web1"));
    for (int i = 0; i < 200; ++i) {
      store->append_samples_async(samples_for(server, i * 5, 5));
    }
  }
  auto store = Store::open(options);
  ASSERT_TRUE(store);
  EXPECT_EQ(store->samples_since(server, 0)->size(), 1000U);
}

TEST(StoreAsyncTest, AMovedFromStoreSaysClosed) {
  healer::test::TempDir dir;
  auto store = Store::open(options_in(dir.path()));
  ASSERT_TRUE(store);
  Store moved = std::move(store).value();
  Store& old = *store;  // NOLINT(bugprone-use-after-move): testing the moved-from state
  EXPECT_EQ(old.list_servers().error().code, make_error_code(Errc::closed));
  EXPECT_TRUE(moved.list_servers());
}

class CheckCacheTest : public StoreTest {};
INSTANTIATE_TEST_SUITE_P(Backends, CheckCacheTest,
                         ::testing::Values(test::Backend::sqlite, test::Backend::postgres),
                         test::backend_name);

CachedCheckOutput cached(std::int64_t server, std::string name, std::int64_t expires_at) {
  CachedCheckOutput output;
  output.server_id = server;
  output.check_name = std::move(name);
  output.command = "LC_ALL=C apt-get -s dist-upgrade";
  output.out = "Inst libc6 [2.36-9] (2.36-9+deb12u4 Debian-Security:12/stable-security)\n";
  output.err = "W: noise";
  output.marker = "@@healer-0123456789abcdef0123456789abcdef";
  output.exit_status = 0;
  output.sent_at = 1.5;
  output.expires_at = expires_at;
  return output;
}

TEST_P(CheckCacheTest, RoundTripReplaceExpiryAndCascade) {
  const std::int64_t id = add(key_file_server("web1"));
  const std::int64_t now = 1'800'000'000'000;
  ASSERT_TRUE(store_->put_cached_check_outputs(
      {cached(id, "security_updates", now + 1000), cached(id, "old", now + 10)}, now));
  auto read = store_->cached_check_outputs(id, now);
  ASSERT_TRUE(read) << read.error().message();
  ASSERT_EQ(read->size(), 2u);
  const auto& first = (*read)[1];  // by check name: "old", "security_updates"
  EXPECT_EQ(first.check_name, "security_updates");
  EXPECT_EQ(first.out, cached(id, "", 0).out);
  EXPECT_EQ(first.err, "W: noise");
  EXPECT_EQ(first.marker, cached(id, "", 0).marker);  // the run's framing marker comes back
  EXPECT_EQ(first.exit_status, 0);
  EXPECT_EQ(first.sent_at, 1.5);
  EXPECT_FALSE(first.received_at.has_value());
  EXPECT_EQ(first.expires_at, now + 1000);

  // Expired entries are not returned, and are dropped on the next write.
  read = store_->cached_check_outputs(id, now + 100);
  ASSERT_TRUE(read);
  ASSERT_EQ(read->size(), 1u);
  auto replaced = cached(id, "security_updates", now + 5000);
  replaced.exit_status.reset();
  ASSERT_TRUE(store_->put_cached_check_outputs({replaced}, now + 100));
  read = store_->cached_check_outputs(id, now);
  ASSERT_TRUE(read);
  ASSERT_EQ(read->size(), 1u);  // "old" deleted, the other replaced
  EXPECT_FALSE(read->front().exit_status.has_value());
  EXPECT_EQ(read->front().expires_at, now + 5000);

  ASSERT_TRUE(store_->remove_server(id));
  read = store_->cached_check_outputs(id, now);
  ASSERT_TRUE(read);
  EXPECT_TRUE(read->empty());
}

TEST_P(CheckCacheTest, BadRowsAreRefused) {
  auto missing = store_->put_cached_check_outputs({cached(0, "x", 1)});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::invalid_record);
  auto unknown = store_->put_cached_check_outputs({cached(424242, "x", 1)});
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(store_->put_cached_check_outputs({}));
}

}  // namespace
}  // namespace healer::store
