// The store as the CLI and the daemon use it: the default location from the environment, the key
// file created on first run, two processes' connections on one database, and no secret in any
// file of the data directory. Real SQLite files in a temp dir.
#include "healer/store/store.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "healer/store/paths.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

constexpr std::string_view kPassword = "Integration-Walrus-5512";
constexpr std::string_view kPemMarker = "-----BEGIN OPENSSH PRIVATE KEY-----";

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int file_mode(const std::filesystem::path& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? static_cast<int>(info.st_mode & 07777) : -1;
}

// Sets (nullopt: unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str()); old != nullptr) {
      old_ = old;
    }
    apply(value);
  }
  ~ScopedEnv() { apply(old_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void apply(const std::optional<std::string>& value) {
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  std::string name_;
  std::optional<std::string> old_;
};

ServerRecord password_server(std::string name) {
  ServerRecord server;
  server.name = std::move(name);
  server.host = "198.51.100.7";
  server.user = "root";
  server.auth_method = AuthMethod::password;
  server.secret = std::string(kPassword);
  server.tags = {"prod"};
  return server;
}

ServerRecord stored_key_server(std::string name) {
  ServerRecord server = password_server(std::move(name));
  server.auth_method = AuthMethod::stored_key;
  server.secret = std::string(kPemMarker) + "\nQUJDREVGR0hJSktMTU5PUA-IntegrationBody\n" +
                  "-----END OPENSSH PRIVATE KEY-----\n";
  return server;
}

TEST(StoreIntegrationTest, FirstRunUnderXdgDataHomeCreatesPrivateFilesAndAPortableKey) {
  healer::test::TempDir dir;
  ScopedEnv xdg("XDG_DATA_HOME", (dir.path() / "xdg").string());
  ScopedEnv no_db("HEALER_DB", std::nullopt);
  ScopedEnv no_key("HEALER_MASTER_KEY", std::nullopt);

  auto path = default_db_path();
  ASSERT_TRUE(path) << path.error().message();
  EXPECT_EQ(*path, dir.path() / "xdg" / "healer" / "healer.db");
  StoreOptions options;
  options.db_path = *path;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    ASSERT_TRUE(store->add_server(password_server("db1")));
  }
  const auto data_dir = dir.path() / "xdg" / "healer";
  EXPECT_EQ(file_mode(dir.path() / "xdg"), 0700);
  EXPECT_EQ(file_mode(data_dir), 0700);
  EXPECT_EQ(file_mode(data_dir / "healer.db"), 0600);
  EXPECT_EQ(file_mode(data_dir / "master.key"), 0600);

  // The key file's text works as HEALER_MASTER_KEY (e.g. on another machine, or from a vault).
  const std::string key_text = file_bytes(data_dir / "master.key");
  std::filesystem::remove(data_dir / "master.key");
  {
    ScopedEnv key("HEALER_MASTER_KEY", key_text);
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    auto server = store->get_server_by_name("db1", SecretAccess::decrypt);
    ASSERT_TRUE(server) << server.error().message();
    EXPECT_EQ(*server->secret, kPassword);
  }
  auto without_key = Store::open(options);
  ASSERT_FALSE(without_key);
  EXPECT_EQ(without_key.error().code, make_error_code(Errc::master_key_missing));
}

TEST(StoreIntegrationTest, HealerDbOverridesTheDataDirectory) {
  healer::test::TempDir dir;
  ScopedEnv db("HEALER_DB", (dir.path() / "elsewhere" / "inventory.db").string());
  ScopedEnv xdg("XDG_DATA_HOME", (dir.path() / "xdg").string());
  ScopedEnv no_key("HEALER_MASTER_KEY", std::nullopt);
  auto path = default_db_path();
  ASSERT_TRUE(path);
  StoreOptions options;
  options.db_path = *path;
  auto store = Store::open(options);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(file_mode(dir.path() / "elsewhere" / "inventory.db"), 0600);
  EXPECT_EQ(file_mode(dir.path() / "elsewhere" / "master.key"), 0600);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "xdg"));
}

// The CLI and the daemon each hold a connection: WAL lets them write concurrently (one writer at
// a time, the other waits up to busy_timeout).
TEST(StoreIntegrationTest, TwoStoresOnOneDatabaseWriteConcurrently) {
  healer::test::TempDir dir;
  ScopedEnv no_key("HEALER_MASTER_KEY", std::nullopt);
  StoreOptions options;
  options.db_path = dir.path() / "healer.db";
  auto daemon = Store::open(options);
  ASSERT_TRUE(daemon) << daemon.error().message();
  auto cli = Store::open(options);  // same key file
  ASSERT_TRUE(cli) << cli.error().message();
  const std::int64_t server = *cli->add_server(password_server("shared"));

  constexpr int kBatches = 200;
  std::vector<std::thread> writers;
  for (Store* store : {&*daemon, &*cli}) {
    writers.emplace_back([store, server] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<MetricSample> batch;
        for (int i = 0; i < 5; ++i) {
          batch.push_back({server, b * 5 + i, "node_load1", "", 1.0});
        }
        store->append_samples_async(std::move(batch));
        DiagnosisRun run;
        run.server_id = server;
        run.started_at = b;
        run.finished_at = b + 1;
        run.status = CheckStatus::ok;
        run.checks = {{"load", CheckStatus::ok, "fine", "", 1}};
        store->record_run_async(std::move(run));
      }
    });
  }
  for (auto& writer : writers) {
    writer.join();
  }
  daemon->flush();
  cli->flush();
  EXPECT_EQ(daemon->stats().async_writes_failed, 0U);
  EXPECT_EQ(cli->stats().async_writes_failed, 0U);
  EXPECT_EQ(daemon->samples_since(server, 0)->size(), 2U * kBatches * 5);
  EXPECT_EQ(cli->recent_runs(server, 10'000)->size(), 2U * kBatches);
  // Each sees the other's inventory changes.
  ASSERT_TRUE(daemon->add_server(password_server("added-by-daemon")));
  EXPECT_TRUE(cli->get_server_by_name("added-by-daemon"));
}

TEST(StoreIntegrationTest, NoFileOfTheDataDirectoryHoldsASecretOrTheKey) {
  healer::test::TempDir dir;
  ScopedEnv no_key("HEALER_MASTER_KEY", std::nullopt);
  StoreOptions options;
  options.db_path = dir.path() / "healer.db";
  const auto scan = [&dir](const char* when) {
    const std::string key_hex = file_bytes(dir.path() / "master.key").substr(0, 64);
    ASSERT_EQ(key_hex.size(), 64U);
    int scanned = 0;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path())) {
      if (!entry.is_regular_file() || entry.path().filename() == "master.key") {
        continue;
      }
      ++scanned;
      const std::string bytes = file_bytes(entry.path());
      EXPECT_EQ(bytes.find(kPassword), std::string::npos) << entry.path() << " " << when;
      EXPECT_EQ(bytes.find(kPemMarker), std::string::npos) << entry.path() << " " << when;
      EXPECT_EQ(bytes.find("IntegrationBody"), std::string::npos) << entry.path() << " " << when;
      EXPECT_EQ(bytes.find(key_hex), std::string::npos) << entry.path() << " " << when;
    }
    EXPECT_GE(scanned, 1);
  };
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message();
    for (int i = 0; i < 50; ++i) {
      auto server = i % 2 == 0 ? password_server("pw-" + std::to_string(i))
                               : stored_key_server("key-" + std::to_string(i));
      ASSERT_TRUE(store->add_server(server));
    }
    // Errors about servers with secrets never carry the secret.
    auto duplicate = store->add_server(password_server("pw-0"));
    ASSERT_FALSE(duplicate);
    EXPECT_EQ(duplicate.error().message().find(kPassword), std::string::npos);
    ASSERT_TRUE(store->remove_server_by_name("pw-0"));
    scan("while open");
  }
  scan("after close");
}

}  // namespace
}  // namespace healer::store
