// `healer server ...` as a user runs it: a real SQLite inventory in a temp dir and a real sshd.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "healer/cli/exit_codes.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

namespace fs = std::filesystem;
using test::SshdFixture;

// Runs healer with HOME and HEALER_DB inside `home` (plus `env`, "KEY=VALUE" strings).
test::CommandOutput healer(const test::TempDir& home, std::vector<std::string> args,
                           std::vector<std::string> env = {}) {
  std::vector<std::string> argv{"env", "HOME=" + home.path().string(),
                                "HEALER_DB=" + (home.path() / "inventory.db").string()};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.emplace_back(HEALER_BIN);
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv, std::chrono::seconds(20));
}

std::vector<std::string> add_args(const SshdFixture& sshd, const std::string& name,
                                  const fs::path& key, const fs::path& known_hosts) {
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
          key.string(),
          "--known-hosts",
          known_hosts.string()};
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(ServerCli, AddListShowRemove) {
  test::TempDir home;
  auto added = healer(home, {"server", "add", "web1", "--host", "192.0.2.10", "--port", "2222",
                             "--user", "ops", "--identity", "/keys/id", "--tag", "prod", "--tag",
                             "web", "--label", "role=frontend"});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
  EXPECT_EQ(added.out, "added server web1 (ops@192.0.2.10:2222)\n");
  ASSERT_EQ(healer(home, {"server", "add", "db1", "--host", "192.0.2.11", "--user", "ops",
                          "--identity", "/keys/id", "-t", "prod"})
                .exit_code(),
            0);

  const auto listed = healer(home, {"server", "list", "--json"});
  ASSERT_EQ(listed.exit_code(), 0) << listed.err;
  const auto list = nlohmann::json::parse(listed.out);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "db1");  // by name
  EXPECT_EQ(list[1]["port"], 2222);
  EXPECT_EQ(list[1]["tags"], (nlohmann::json{"prod", "web"}));

  const auto tagged = healer(home, {"server", "list", "--tag", "web"});
  EXPECT_NE(tagged.out.find("web1"), std::string::npos);
  EXPECT_EQ(tagged.out.find("db1"), std::string::npos);

  const auto shown = healer(home, {"server", "show", "web1", "--json"});
  ASSERT_EQ(shown.exit_code(), 0) << shown.err;
  const auto doc = nlohmann::json::parse(shown.out);
  EXPECT_EQ(doc["labels"]["role"], "frontend");
  EXPECT_EQ(doc["auth"], "key");
  EXPECT_EQ(doc["host_key_policy"], "strict");
  EXPECT_EQ(doc["has_secret"], false);

  const auto duplicate = healer(
      home, {"server", "add", "web1", "--host", "h", "--user", "u", "--identity", "/keys/id"});
  EXPECT_EQ(duplicate.exit_code(), cli::kExitUsage);
  EXPECT_NE(duplicate.err.find("already exists (use --replace"), std::string::npos)
      << duplicate.err;
  const auto replaced = healer(home, {"server", "add", "web1", "--host", "192.0.2.99", "--user",
                                      "u", "--identity", "/keys/id", "--replace"});
  EXPECT_EQ(replaced.exit_code(), 0) << replaced.err;
  EXPECT_NE(healer(home, {"server", "show", "web1"}).out.find("192.0.2.99"), std::string::npos);

  ASSERT_EQ(healer(home, {"server", "remove", "web1"}).exit_code(), 0);
  const auto again = healer(home, {"server", "remove", "web1"});
  EXPECT_EQ(again.exit_code(), cli::kExitUsage);
  EXPECT_EQ(again.err, "healer: no server named 'web1'\n");
  const auto remaining = nlohmann::json::parse(healer(home, {"server", "list", "--json"}).out);
  ASSERT_EQ(remaining.size(), 1u);
  EXPECT_EQ(remaining[0]["name"], "db1");
}

TEST(ServerCli, PasswordIsStoredEncryptedAndNeverPrinted) {
  test::TempDir home;
  const std::string password = "Pw-9f3kQ-never-in-plaintext";
  const auto added = healer(
      home, {"server", "add", "db1", "--host", "192.0.2.5", "--user", "ops", "--auth", "password"},
      {"HEALER_PASSWORD=" + password});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
  const auto shown = healer(home, {"server", "show", "db1", "--json"});
  EXPECT_EQ(nlohmann::json::parse(shown.out)["has_secret"], true);
  const auto listed = healer(home, {"server", "list", "--json"});
  for (const auto& output : {added.out, added.err, shown.out, shown.err, listed.out}) {
    EXPECT_EQ(output.find(password), std::string::npos) << output;
  }
  // The database, its WAL and the key file never hold the password in plaintext.
  int scanned = 0;
  for (const auto& entry : fs::directory_iterator(home.path())) {
    if (entry.is_regular_file()) {
      ++scanned;
      EXPECT_EQ(slurp(entry.path()).find(password), std::string::npos) << entry.path();
    }
  }
  EXPECT_GE(scanned, 2);  // inventory.db and master.key at least
  // A password is required, never taken from a flag (it would show in ps).
  const auto missing =
      healer(home, {"server", "add", "db2", "--host", "h", "--user", "u", "--auth", "password"});
  EXPECT_EQ(missing.exit_code(), cli::kExitUsage);
  EXPECT_NE(missing.err.find("HEALER_PASSWORD"), std::string::npos);
}

TEST(ServerCli, WrongMasterKeyIsAClearError) {
  test::TempDir home;
  ASSERT_EQ(
      healer(home, {"server", "add", "db1", "--host", "h", "--user", "u", "--auth", "password"},
             {"HEALER_PASSWORD=x"})
          .exit_code(),
      0);
  const auto wrong =
      healer(home, {"server", "list"}, {"HEALER_MASTER_KEY=" + std::string(64, 'a')});
  EXPECT_EQ(wrong.exit_code(), cli::kExitStore);
  EXPECT_NE(wrong.err.find("master key"), std::string::npos) << wrong.err;
}

TEST(ServerCli, TestConnectsVerifiesAndMeasures) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  ASSERT_EQ(healer(home, add_args(sshd, "local", sshd.client_key_path(), sshd.known_hosts_path()))
                .exit_code(),
            0);
  const auto tested = healer(home, {"server", "test", "local", "--json"});
  ASSERT_EQ(tested.exit_code(), 0) << tested.err;
  const auto doc = nlohmann::json::parse(tested.out);
  EXPECT_EQ(doc["ok"], true);
  EXPECT_TRUE(doc["host_key_fingerprint"].get<std::string>().starts_with("SHA256:"));
  EXPECT_GT(doc["connect_ms"].get<double>(), 0.0);
  EXPECT_GT(doc["round_trip_ms"].get<double>(), 0.0);
  EXPECT_EQ(sshd.accepted_auth_count(), 1u);

  const auto plain = healer(home, {"server", "test", "local"});
  EXPECT_EQ(plain.exit_code(), 0) << plain.err;
  EXPECT_TRUE(plain.out.starts_with("OK local (")) << plain.out;
}

TEST(ServerCli, StoredKeyLivesOnlyEncryptedInTheDatabase) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  const auto key_text = slurp(sshd.client_key_path());
  auto args = add_args(sshd, "vault", sshd.client_key_path(), sshd.known_hosts_path());
  args.insert(args.end(), {"--auth", "stored-key"});
  const auto added = healer(home, args);
  ASSERT_EQ(added.exit_code(), 0) << added.err;
  // The key file may go away: the server works from the database's encrypted copy.
  const auto tested = healer(home, {"server", "test", "vault"});
  EXPECT_EQ(tested.exit_code(), 0) << tested.err;
  EXPECT_EQ(sshd.accepted_auth_count(), 1u);
  // The base64 body of the key is nowhere in the inventory's files.
  const auto body_line = key_text.substr(key_text.find('\n') + 1, 40);
  ASSERT_EQ(body_line.size(), 40u);
  for (const auto& entry : fs::directory_iterator(home.path())) {
    if (entry.is_regular_file()) {
      EXPECT_EQ(slurp(entry.path()).find(body_line), std::string::npos) << entry.path();
    }
  }
  const auto shown = healer(home, {"server", "show", "vault", "--json"});
  EXPECT_EQ(nlohmann::json::parse(shown.out)["auth"], "stored-key");
  EXPECT_EQ(shown.out.find(body_line), std::string::npos);
}

TEST(ServerCli, StoredPasswordAuthenticatesAndAWrongOneFailsOnce) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give the test user healer-test a temporary password";
  }
  SshdFixture::Options options;
  options.password_authentication = true;
  SshdFixture sshd(options);
  sshd.start();
  const std::string password = sshd.set_random_password();
  test::TempDir home;
  const std::vector<std::string> base{"server",
                                      "add",
                                      "pw",
                                      "--host",
                                      sshd.host(),
                                      "--port",
                                      std::to_string(sshd.port()),
                                      "--user",
                                      sshd.user(),
                                      "--known-hosts",
                                      sshd.known_hosts_path().string(),
                                      "--auth",
                                      "password"};
  auto added = healer(home, base, {"HEALER_PASSWORD=" + password});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
  const auto tested = healer(home, {"server", "test", "pw"});
  EXPECT_EQ(tested.exit_code(), 0) << tested.err;
  EXPECT_EQ(sshd.count_in_log("Accepted password for " + sshd.user()), 1u);

  auto replace = base;
  replace.emplace_back("--replace");
  ASSERT_EQ(healer(home, replace, {"HEALER_PASSWORD=wrong-" + password}).exit_code(), 0);
  const auto refused = healer(home, {"server", "test", "pw"});
  EXPECT_EQ(refused.exit_code(), cli::kExitAuthFailed) << refused.err;
  EXPECT_EQ(sshd.failed_password_count(), 1u);
  EXPECT_EQ(refused.err.find(password), std::string::npos);
}

TEST(ServerCli, TestWithAWrongKeyFailsOnce) {
  SshdFixture sshd;
  sshd.start();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  test::TempDir home;
  ASSERT_EQ(healer(home, add_args(sshd, "local", stranger.private_key, sshd.known_hosts_path()))
                .exit_code(),
            0);
  const auto tested = healer(home, {"server", "test", "local"});
  EXPECT_EQ(tested.exit_code(), cli::kExitAuthFailed) << tested.err;
  EXPECT_TRUE(tested.err.starts_with("FAILED local (")) << tested.err;
  EXPECT_EQ(sshd.failed_auth_count(), 1u);
  EXPECT_EQ(sshd.accepted_auth_count(), 0u);
}

TEST(ServerCli, UnknownHostNeedsConsentThenIsRecorded) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  const auto known_hosts = home.path() / "known_hosts";
  ASSERT_EQ(healer(home, add_args(sshd, "local", sshd.client_key_path(), known_hosts)).exit_code(),
            0);
  // stdin is not a terminal here: strict mode refuses, nothing is recorded, no auth is tried.
  const auto refused = healer(home, {"server", "test", "local"});
  EXPECT_EQ(refused.exit_code(), cli::kExitHostUnknown) << refused.err;
  EXPECT_NE(refused.err.find("SHA256:"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(known_hosts) && fs::file_size(known_hosts) > 0);
  EXPECT_EQ(sshd.accepted_auth_count() + sshd.failed_auth_count(), 0u);

  const auto accepted = healer(home, {"server", "test", "local", "--accept-new-host-key"});
  ASSERT_EQ(accepted.exit_code(), 0) << accepted.err;
  ASSERT_TRUE(fs::exists(known_hosts));
  EXPECT_NE(slurp(known_hosts).find("ssh-ed25519"), std::string::npos);
  // Now known: strict mode passes.
  EXPECT_EQ(healer(home, {"server", "test", "local"}).exit_code(), 0);
  // A changed key is refused even with --accept-new-host-key.
  sshd.regenerate_host_key();
  const auto changed = healer(home, {"server", "test", "local", "--accept-new-host-key"});
  EXPECT_EQ(changed.exit_code(), cli::kExitHostKeyChanged) << changed.err;
}

// On a terminal, `server test` shows the unknown key and asks; only that key is recorded.
TEST(ServerCli, UnknownHostAskedOnATerminal) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  const auto known_hosts = home.path() / "known_hosts";
  ASSERT_EQ(healer(home, add_args(sshd, "local", sshd.client_key_path(), known_hosts)).exit_code(),
            0);
  // script(1) gives healer a pseudo-terminal; the answer arrives once the question is up.
  auto on_terminal = [&](const std::string& answer) {
    const std::string command = "HOME=" + home.path().string() +
                                " HEALER_DB=" + (home.path() / "inventory.db").string() + " " +
                                HEALER_BIN + " server test local";
    return test::run_command(
        {"sh", "-c", "(sleep 1; echo " + answer + ") | script -qec '" + command + "' /dev/null"},
        std::chrono::seconds(20));
  };
  const auto declined = on_terminal("n");
  EXPECT_EQ(declined.exit_code(), cli::kExitHostUnknown) << declined.out;
  EXPECT_NE(declined.out.find("Trust the key SHA256:"), std::string::npos) << declined.out;
  EXPECT_FALSE(fs::exists(known_hosts));
  EXPECT_EQ(sshd.accepted_auth_count(), 0u);

  const auto accepted = on_terminal("y");
  EXPECT_EQ(accepted.exit_code(), 0) << accepted.out;
  EXPECT_NE(accepted.out.find("OK local ("), std::string::npos) << accepted.out;
  ASSERT_TRUE(fs::exists(known_hosts));
  EXPECT_NE(slurp(known_hosts).find("ssh-ed25519"), std::string::npos);
  EXPECT_EQ(sshd.accepted_auth_count(), 1u);
}

TEST(ServerCli, ImportsAnOpensshConfigAndTheResultWorks) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  fs::create_directories(home.path() / ".ssh" / "conf.d");
  std::ofstream(home.path() / ".ssh" / "conf.d" / "lab.conf")
      << "Host lab-box\n  HostName " << sshd.host() << "\n  Port " << sshd.port() << "\n";
  std::ofstream(home.path() / ".ssh" / "config")
      << "Include conf.d/*.conf\n"
      << "Host behind\n  HostName 10.1.2.3\n  ProxyJump bastion\n"
      << "Host *\n  User " << sshd.user() << "\n  IdentityFile " << sshd.client_key_path().string()
      << "\n  UserKnownHostsFile " << sshd.known_hosts_path().string()
      << "\n  ServerAliveInterval 15\n";

  const auto dry = healer(home, {"server", "import", "--dry-run"});
  ASSERT_EQ(dry.exit_code(), 0) << dry.err;
  EXPECT_NE(dry.out.find("2 host(s) to import"), std::string::npos) << dry.out;
  EXPECT_EQ(nlohmann::json::parse(healer(home, {"server", "list", "--json"}).out).size(), 0u);

  const auto imported = healer(home, {"server", "import", "--tag", "lab"});
  ASSERT_EQ(imported.exit_code(), 0) << imported.err;
  EXPECT_NE(imported.out.find("imported lab-box"), std::string::npos) << imported.out;
  EXPECT_NE(imported.out.find("options not used by healer: ProxyJump, ServerAliveInterval"),
            std::string::npos)
      << imported.out;
  EXPECT_NE(imported.out.find("ProxyJump is not supported"), std::string::npos);

  const auto box = nlohmann::json::parse(healer(home, {"server", "show", "lab-box", "--json"}).out);
  EXPECT_EQ(box["port"], sshd.port());
  EXPECT_EQ(box["tags"], (nlohmann::json{"lab"}));
  const auto tested = healer(home, {"server", "test", "lab-box"});
  EXPECT_EQ(tested.exit_code(), 0) << tested.err;

  const auto again = healer(home, {"server", "import"});
  EXPECT_EQ(again.exit_code(), 1);
  EXPECT_NE(again.err.find("lab-box skipped: a server named 'lab-box' already exists"),
            std::string::npos);
  EXPECT_EQ(healer(home, {"server", "import", "--replace"}).exit_code(), 0);
}

TEST(ServerCli, BadInputIsAUsageError) {
  test::TempDir home;
  EXPECT_EQ(healer(home, {"server", "add", "x"}).exit_code(), cli::kExitUsage);  // no --host
  const auto label = healer(home, {"server", "add", "x", "--host", "h", "--label", "novalue"});
  EXPECT_EQ(label.exit_code(), cli::kExitUsage);
  EXPECT_NE(label.err.find("not KEY=VALUE"), std::string::npos);
  const auto port = healer(home, {"server", "add", "x", "--host", "h", "--port", "0"});
  EXPECT_EQ(port.exit_code(), cli::kExitUsage);
  const auto unknown = healer(home, {"server", "test", "ghost"});
  EXPECT_EQ(unknown.exit_code(), cli::kExitUsage);
  EXPECT_TRUE(unknown.err.starts_with("healer: no server named 'ghost' in ")) << unknown.err;
  const auto no_file = healer(home, {"server", "import", "/nonexistent/config"});
  EXPECT_EQ(no_file.exit_code(), cli::kExitUsage);
  EXPECT_NE(no_file.err.find("cannot read the OpenSSH config /nonexistent/config"),
            std::string::npos);
  const auto stored = healer(home, {"server", "add", "x", "--host", "h", "--auth", "stored-key"});
  EXPECT_EQ(stored.exit_code(), cli::kExitUsage);
  EXPECT_NE(stored.err.find("needs --identity FILE"), std::string::npos);
}

}  // namespace
}  // namespace healer
