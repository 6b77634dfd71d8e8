// How the store treats the files around it, with real files and real modes: a symbolic link at
// the database path (or its -wal/-shm) is refused and never chmod'ed through; a read-only file or
// directory says so; the read-only mode reads an existing database without creating, migrating
// or writing anything.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "database.hpp"
#include "healer/store/errors.hpp"
#include "healer/store/store.hpp"
#include "migrations.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

using test::file_mode;
using test::options_in;
using test::ScopedEnv;

constexpr std::string_view kPassword = "Walrus-Otter-3317-password";

ServerRecord password_server(std::string name) {
  ServerRecord server;
  server.name = std::move(name);
  server.host = "192.0.2.20";
  server.port = 22;
  server.user = "ops";
  server.auth_method = AuthMethod::password;
  server.secret = std::string(kPassword);
  return server;
}

// Root ignores file modes, so a read-only directory is only read-only for another user: when the
// tests run as root, this scope runs as `nobody` (effective ids, restored at its end) and hands
// it `dir` first. Everything the scope creates belongs to that user.
class Unprivileged {
 public:
  explicit Unprivileged(const std::filesystem::path& dir) {
    if (::geteuid() != 0) {
      return;
    }
    constexpr uid_t kNobody = 65534;
    constexpr gid_t kNogroup = 65534;
    // The temp dir's parent is root's 0700 directory: let nobody through it.
    EXPECT_EQ(::chmod(dir.parent_path().c_str(), 0711), 0);
    EXPECT_EQ(::chown(dir.c_str(), kNobody, kNogroup), 0);
    EXPECT_EQ(::setegid(kNogroup), 0);
    EXPECT_EQ(::seteuid(kNobody), 0);
    active_ = true;
  }
  ~Unprivileged() {
    if (active_) {
      EXPECT_EQ(::seteuid(0), 0);
      EXPECT_EQ(::setegid(0), 0);
    }
  }
  Unprivileged(const Unprivileged&) = delete;
  Unprivileged& operator=(const Unprivileged&) = delete;

 private:
  bool active_ = false;
};

std::set<std::string> names_in(const std::filesystem::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

StoreOptions read_only(StoreOptions options) {
  options.read_only = true;
  return options;
}

// --- symbolic links ---

TEST(StoreAccessTest, ASymlinkedDatabasePathIsRefusedAndItsTargetUntouched) {
  healer::test::TempDir dir;
  auto options = options_in(dir.path());
  const auto target = dir.path() / "elsewhere.db";
  {
    auto real = options;
    real.db_path = target;
    ASSERT_TRUE(Store::open(real));
  }
  ASSERT_EQ(::chmod(target.c_str(), 0644), 0);
  std::filesystem::create_symlink(target, options.db_path);
  for (const bool ro : {false, true}) {
    SCOPED_TRACE(ro ? "read-only" : "read-write");
    options.read_only = ro;
    auto store = Store::open(options);
    ASSERT_FALSE(store);
    EXPECT_EQ(store.error().code, make_error_code(Errc::io));
    EXPECT_NE(store.error().message().find("symbolic link"), std::string::npos)
        << store.error().message();
    EXPECT_EQ(file_mode(target), 0644) << "never chmod'ed through the link";
  }
}

TEST(StoreAccessTest, ASymlinkedWalOrShmFileIsRefused) {
  for (const char* suffix : {"-wal", "-shm"}) {
    SCOPED_TRACE(suffix);
    healer::test::TempDir dir;
    const auto options = options_in(dir.path());
    ASSERT_TRUE(Store::open(options));
    const auto target = dir.path() / "victim";
    std::ofstream(target) << "not yours";
    ASSERT_EQ(::chmod(target.c_str(), 0644), 0);
    std::filesystem::create_symlink(target, options.db_path.string() + suffix);
    auto store = Store::open(options);
    ASSERT_FALSE(store);
    EXPECT_NE(store.error().message().find("symbolic link"), std::string::npos)
        << store.error().message();
    EXPECT_EQ(file_mode(target), 0644);
    EXPECT_EQ(test::file_bytes(target), "not yours");
  }
}

// --- read-only files and directories ---

TEST(StoreAccessTest, AReadOnlyDatabaseSaysReadOnlyNotCreating) {
  healer::test::TempDir dir;
  const auto data = dir.path() / "data";
  std::filesystem::create_directory(data);
  Unprivileged as_user(data);
  const auto options = options_in(data);
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    ASSERT_TRUE(store->add_server(password_server("pw")));
  }
  ASSERT_EQ(::chmod(options.db_path.c_str(), 0444), 0);
  auto store = Store::open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::read_only));
  const std::string message = store.error().message();
  EXPECT_NE(message.find("read-only"), std::string::npos) << message;
  EXPECT_EQ(message.find("creating"), std::string::npos) << message;
  EXPECT_EQ(file_mode(options.db_path), 0444);

  auto reader = Store::open(read_only(options));
  ASSERT_TRUE(reader) << reader.error().message();
  auto servers = reader->list_servers();
  ASSERT_TRUE(servers) << servers.error().message();
  ASSERT_EQ(servers->size(), 1U);
  EXPECT_EQ(file_mode(options.db_path), 0444);
}

TEST(StoreAccessTest, AReadOnlyDirectoryStillAllowsReadOnlyUse) {
  healer::test::TempDir dir;
  const auto data = dir.path() / "data";
  std::filesystem::create_directory(data);
  Unprivileged as_user(data);
  const auto options = options_in(data);
  std::int64_t id = 0;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    id = *store->add_server(password_server("pw"));
  }
  const auto before = names_in(data);
  EXPECT_EQ(before, (std::set<std::string>{"healer.db"})) << "closed cleanly: WAL checkpointed";
  ASSERT_EQ(::chmod(data.c_str(), 0500), 0);

  auto writer = Store::open(options);
  ASSERT_FALSE(writer);
  EXPECT_EQ(writer.error().code, make_error_code(Errc::read_only)) << writer.error().message();
  EXPECT_NE(writer.error().message().find("read-only"), std::string::npos)
      << writer.error().message();

  {
    auto store = Store::open(read_only(options));
    ASSERT_TRUE(store) << store.error().message();
    EXPECT_TRUE(store->read_only());
    auto servers = store->list_servers();
    ASSERT_TRUE(servers) << servers.error().message();
    ASSERT_EQ(servers->size(), 1U);
    EXPECT_EQ(servers->front().name, "pw");
    auto secret = store->get_server(id, SecretAccess::decrypt);
    ASSERT_TRUE(secret) << secret.error().message();
    EXPECT_EQ(*secret->secret, kPassword);
    auto added = store->add_server(password_server("new"));
    ASSERT_FALSE(added);
    EXPECT_EQ(added.error().code, make_error_code(Errc::read_only));
    EXPECT_NE(added.error().message().find("read-only"), std::string::npos);
    EXPECT_FALSE(store->remove_server(id));
    EXPECT_FALSE(store->record_run(DiagnosisRun{}));
  }
  EXPECT_EQ(names_in(data), before) << "nothing created in the directory";
  EXPECT_EQ(file_mode(options.db_path), 0600);
  ASSERT_EQ(::chmod(data.c_str(), 0700), 0);
}

TEST(StoreAccessTest, ReadOnlyOpenOfAMissingDatabaseCreatesNothing) {
  healer::test::TempDir dir;
  const ScopedEnv no_key("HEALER_MASTER_KEY", std::nullopt);
  StoreOptions options;
  options.db_path = dir.path() / "new" / "healer.db";
  options.read_only = true;
  auto store = Store::open(options);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::not_found));
  EXPECT_NE(store.error().message().find("creates nothing"), std::string::npos)
      << store.error().message();
  EXPECT_TRUE(names_in(dir.path()).empty()) << "no directory, database or key file";
}

TEST(StoreAccessTest, ReadOnlyOpenNeverCreatesAMissingKeyFile) {
  healer::test::TempDir dir;
  const ScopedEnv no_key("HEALER_MASTER_KEY", std::nullopt);
  StoreOptions options;
  options.db_path = dir.path() / "healer.db";
  ASSERT_TRUE(Store::open(options));  // creates master.key next to the database
  ASSERT_TRUE(Store::open(read_only(options)));
  std::filesystem::remove(dir.path() / "master.key");
  auto store = Store::open(read_only(options));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::master_key_missing));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "master.key"));
}

TEST(StoreAccessTest, ReadOnlyOpenDoesNotMigrate) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  {
    ASSERT_TRUE(prepare_database_file(options.db_path));
    auto db = sql::Connection::open(options.db_path);
    ASSERT_TRUE(db);
    ASSERT_EQ(*migrations::migrate(*db, 3), 3);
  }
  auto store = Store::open(read_only(options));
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, make_error_code(Errc::schema_too_old));
  EXPECT_NE(store.error().message().find("schema version 3"), std::string::npos)
      << store.error().message();
  auto db = sql::Connection::open(options.db_path);
  ASSERT_TRUE(db);
  EXPECT_EQ(*migrations::current_version(*db), 3);
}

TEST(StoreAccessTest, AsyncWritesToAReadOnlyStoreFailAndAreCounted) {
  healer::test::TempDir dir;
  const auto options = options_in(dir.path());
  ASSERT_TRUE(Store::open(options));
  auto store = Store::open(read_only(options));
  ASSERT_TRUE(store) << store.error().message();
  std::optional<Error> failure;
  store->append_samples_async({MetricSample{}}, [&](Result<std::size_t> result) {
    if (!result) {
      failure = result.error();
    }
  });
  store->flush();
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->code, make_error_code(Errc::read_only));
  EXPECT_EQ(store->stats().async_writes_failed, 1U);
}

}  // namespace
}  // namespace healer::store
