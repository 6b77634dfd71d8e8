// ssh::Session authentication against a real OpenSSH sshd on 127.0.0.1: private keys given as
// text (AuthMethod::key_data) and passwords, including that no secret reaches an error message
// or a log line.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "child_process.hpp"
#include "healer/core/log.hpp"
#include "healer/ssh/session.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"

namespace healer {
namespace {

using namespace std::chrono_literals;
using ssh::Errc;
using test::SshdFixture;

// What one connect + exec produced.
struct Outcome {
  Result<void> connected;
  Result<ssh::CommandResult> result = Error{};

  // The error of whichever step failed, for assertion messages.
  [[nodiscard]] std::string failure() const {
    if (!connected) {
      return connected.error().message();
    }
    return result ? std::string("no error") : result.error().message();
  }
};

asio::awaitable<Outcome> connect_and_exec(ssh::Endpoint endpoint, ssh::ConnectOptions options,
                                          std::string command) {
  Outcome run;
  auto session = co_await ssh::Session::async_connect(std::move(endpoint), std::move(options),
                                                      Deadline::after(10s));
  if (!session) {
    run.connected = session.error();
    co_return run;
  }
  run.result = co_await session->async_exec(std::move(command), {}, Deadline::after(10s));
  co_await session->async_close(Deadline::after(2s));
  co_return run;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Fragments of `secret` long enough to identify it: each line of 8+ characters, minus the
// "-----BEGIN/END ... KEY-----" armour lines, which are public knowledge.
std::vector<std::string> telltales(std::string_view secret) {
  std::vector<std::string> fragments;
  std::istringstream lines{std::string(secret)};
  for (std::string line; std::getline(lines, line);) {
    if (line.size() >= 8 && !line.starts_with("-----")) {
      fragments.push_back(line.substr(0, 16));
    }
  }
  if (fragments.empty() && !secret.empty()) {
    fragments.emplace_back(secret);
  }
  return fragments;
}

// Captures everything the "ssh" logger writes (all levels) while alive.
class SshLogCapture {
 public:
  SshLogCapture()
      : logger_(log::get("ssh")),
        sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)),
        level_(logger_->level()) {
    logger_->sinks().push_back(sink_);
    logger_->set_level(spdlog::level::trace);
  }
  ~SshLogCapture() {
    logger_->set_level(level_);
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  SshLogCapture(const SshLogCapture&) = delete;
  SshLogCapture& operator=(const SshLogCapture&) = delete;

  [[nodiscard]] std::string text() const {
    logger_->flush();
    return text_.str();
  }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  spdlog::level::level_enum level_;
};

class AuthTest : public ::testing::Test {
 protected:
  static ssh::ConnectOptions key_data_options(const SshdFixture& sshd, std::string key_text) {
    ssh::ConnectOptions options;
    options.user = sshd.user();
    options.auth = ssh::AuthMethod::key_data;
    options.private_key = std::move(key_text);
    options.known_hosts_file = sshd.known_hosts_path().string();
    return options;
  }
  static ssh::ConnectOptions password_options(const SshdFixture& sshd, std::string password) {
    ssh::ConnectOptions options;
    options.user = sshd.user();
    options.auth = ssh::AuthMethod::password;
    options.password = std::move(password);
    options.known_hosts_file = sshd.known_hosts_path().string();
    return options;
  }
  Outcome exec_with(const SshdFixture& sshd, ssh::ConnectOptions options, std::string command) {
    return test::run_async(
        io_, connect_and_exec({sshd.host(), sshd.port()}, std::move(options), std::move(command)));
  }

  asio::io_context io_;
};

// --- private keys given as text -------------------------------------------------------------

TEST_F(AuthTest, Ed25519KeyFromMemoryAuthenticates) {
  SshdFixture sshd;
  sshd.start();
  const std::string key_text = read_text(sshd.client_key_path());
  ASSERT_NE(key_text.find("BEGIN OPENSSH PRIVATE KEY"), std::string::npos);
  const auto run = exec_with(sshd, key_data_options(sshd, key_text), "echo from memory");
  ASSERT_TRUE(run.result) << run.failure();
  EXPECT_EQ(run.result->out, "from memory\n");
  EXPECT_EQ(sshd.count_in_log("Accepted publickey for "), 1U);
  EXPECT_EQ(sshd.count_in_log("ssh2: ED25519 SHA256:"), 1U);
}

TEST_F(AuthTest, RsaKeyFromMemorySignsWithSha2InBothFormats) {
  SshdFixture::Options sshd_options;
  // OpenSSH 9 refuses ssh-rsa (SHA-1) signatures; this pins the server to rsa-sha2 only.
  sshd_options.extra_config = {"PubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256"};
  SshdFixture sshd(sshd_options);
  sshd.start();
  const auto key = sshd.add_client_key(SshdFixture::KeyType::rsa);
  const std::string openssh_text = read_text(key.private_key);
  ASSERT_NE(openssh_text.find("BEGIN OPENSSH PRIVATE KEY"), std::string::npos);

  const auto openssh_run = exec_with(sshd, key_data_options(sshd, openssh_text), "echo rsa");
  ASSERT_TRUE(openssh_run.result) << openssh_run.failure();
  EXPECT_EQ(openssh_run.result->out, "rsa\n");

  // The same key in the traditional PEM format ("BEGIN RSA PRIVATE KEY"), as other tools store it.
  const auto convert = test::run_command(
      {"ssh-keygen", "-q", "-p", "-m", "PEM", "-P", "", "-N", "", "-f", key.private_key.string()});
  ASSERT_EQ(convert.exit_code(), 0) << convert.err;
  const std::string pem_text = read_text(key.private_key);
  ASSERT_NE(pem_text.find("BEGIN RSA PRIVATE KEY"), std::string::npos) << "not converted";
  const auto pem_run = exec_with(sshd, key_data_options(sshd, pem_text), "echo pem");
  ASSERT_TRUE(pem_run.result) << pem_run.failure();
  EXPECT_EQ(pem_run.result->out, "pem\n");

  EXPECT_EQ(sshd.count_in_log("Accepted publickey for "), 2U);
  EXPECT_EQ(sshd.count_in_log("ssh2: RSA SHA256:"), 2U);
}

TEST_F(AuthTest, EncryptedKeyFromMemoryNeedsItsPassphrase) {
  SshdFixture sshd;
  sshd.start();
  const auto key = sshd.add_client_key(SshdFixture::KeyType::ed25519, "correct horse", true);
  const std::string key_text = read_text(key.private_key);
  SshLogCapture log;

  auto options = key_data_options(sshd, key_text);
  const auto without = exec_with(sshd, options, "true");
  ASSERT_FALSE(without.connected);
  EXPECT_EQ(without.connected.error().code, Errc::key_invalid) << without.failure();
  EXPECT_NE(without.failure().find("give its passphrase"), std::string::npos) << without.failure();

  options.passphrase = "battery staple";
  const auto wrong = exec_with(sshd, options, "true");
  ASSERT_FALSE(wrong.connected);
  EXPECT_EQ(wrong.connected.error().code, Errc::key_invalid) << wrong.failure();
  EXPECT_NE(wrong.failure().find("wrong passphrase"), std::string::npos) << wrong.failure();
  EXPECT_EQ(wrong.failure().find("battery staple"), std::string::npos) << wrong.failure();

  // A key that cannot be loaded never reaches the server.
  EXPECT_EQ(sshd.connection_count(), 0U);

  options.passphrase = "correct horse";
  const auto right = exec_with(sshd, options, "echo unlocked");
  ASSERT_TRUE(right.result) << right.failure();
  EXPECT_EQ(right.result->out, "unlocked\n");

  const std::string logged = log.text();
  for (const auto& fragment : telltales(key_text)) {
    EXPECT_EQ(without.failure().find(fragment), std::string::npos) << fragment;
    EXPECT_EQ(wrong.failure().find(fragment), std::string::npos) << fragment;
    EXPECT_EQ(logged.find(fragment), std::string::npos) << fragment;
  }
  EXPECT_EQ(logged.find("correct horse"), std::string::npos);
  EXPECT_EQ(logged.find("battery staple"), std::string::npos);
}

TEST_F(AuthTest, GarbageKeyFromMemoryIsKeyInvalidWithoutConnecting) {
  SshdFixture sshd;
  sshd.start();
  const std::string real = read_text(sshd.client_key_path());
  const std::string public_half = read_text(sshd.client_key_path().string() + ".pub");
  struct Case {
    std::string name;
    std::string text;
  };
  const std::vector<Case> cases{
      {"empty", ""},
      {"prose", "this is not a key, just a secret-looking sentence 7Hq2xZ"},
      {"public key", public_half},
      {"armoured garbage",
       "-----BEGIN OPENSSH PRIVATE KEY-----\nZ2FyYmFnZSBnYXJiYWdlIGdhcmJhZ2UgZ2FyYmFnZQ==\n"
       "-----END OPENSSH PRIVATE KEY-----\n"},
      {"truncated", real.substr(0, real.size() / 2) + "\n-----END OPENSSH PRIVATE KEY-----\n"},
      {"damaged",
       [&real] {
         std::string text = real;
         const auto body = text.find('\n') + 40;
         for (std::size_t i = body; i < body + 40 && i < text.size(); ++i) {
           text[i] = text[i] == 'A' ? 'B' : 'A';
         }
         return text;
       }()},
  };
  SshLogCapture log;
  for (const auto& each : cases) {
    SCOPED_TRACE(each.name);
    const auto run = exec_with(sshd, key_data_options(sshd, each.text), "true");
    ASSERT_FALSE(run.connected);
    EXPECT_EQ(run.connected.error().code, Errc::key_invalid) << run.failure();
    EXPECT_NE(run.failure().find("in-memory private key"), std::string::npos) << run.failure();
    for (const auto& fragment : telltales(each.text)) {
      EXPECT_EQ(run.failure().find(fragment), std::string::npos) << fragment;
    }
  }
  const std::string logged = log.text();
  for (const auto& fragment : telltales(real)) {
    EXPECT_EQ(logged.find(fragment), std::string::npos) << fragment;
  }
  // Rejected before the TCP connection: the server never saw an attempt.
  EXPECT_EQ(sshd.connection_count(), 0U);
  EXPECT_EQ(sshd.failed_auth_count(), 0U);
}

TEST_F(AuthTest, UnauthorizedKeyFromMemoryFailsWithExactlyOneFailedAttempt) {
  SshdFixture sshd;
  sshd.start();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  const auto run = exec_with(sshd, key_data_options(sshd, read_text(stranger.private_key)), "true");
  ASSERT_FALSE(run.connected);
  EXPECT_EQ(run.connected.error().code, Errc::auth_failed) << run.failure();
  EXPECT_TRUE(sshd.wait_for_log("authenticating user", 1)) << sshd.log_text();
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 0U);
}

// --- passwords --------------------------------------------------------------------------------
// The login user healer-test gets a random password for the test's duration (root only); the
// fixture puts "*" back when it ends.

SshdFixture::Options with_passwords() {
  SshdFixture::Options options;
  options.password_authentication = true;
  return options;
}

TEST_F(AuthTest, RightPasswordAuthenticates) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give the test user healer-test a temporary password";
  }
  SshdFixture sshd(with_passwords());
  sshd.start();
  const std::string password = sshd.set_random_password();
  SshLogCapture log;
  const auto run = exec_with(sshd, password_options(sshd, password), "echo by password");
  ASSERT_TRUE(run.result) << run.failure();
  EXPECT_EQ(run.result->out, "by password\n");
  EXPECT_EQ(sshd.count_in_log("Accepted password for " + sshd.user()), 1U);
  EXPECT_EQ(sshd.failed_auth_count(), 0U);
  EXPECT_EQ(log.text().find(password), std::string::npos);
}

TEST_F(AuthTest, WrongPasswordFailsWithExactlyOneFailedAttempt) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give the test user healer-test a temporary password";
  }
  SshdFixture sshd(with_passwords());
  sshd.start();
  const std::string password = sshd.set_random_password();
  const std::string wrong = "not-" + password.substr(0, 12);
  SshLogCapture log;
  const auto run = exec_with(sshd, password_options(sshd, wrong), "true");
  ASSERT_FALSE(run.connected);
  EXPECT_EQ(run.connected.error().code, Errc::auth_failed) << run.failure();
  EXPECT_NE(run.failure().find("rejected the password"), std::string::npos) << run.failure();
  // Wait for sshd to finish with the connection, then count what it saw.
  EXPECT_TRUE(sshd.wait_for_log("authenticating user", 1)) << sshd.log_text();
  EXPECT_EQ(sshd.failed_password_count(), 1U);
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 0U);
  for (const std::string& secret : {wrong, password}) {
    EXPECT_EQ(run.failure().find(secret), std::string::npos);
    EXPECT_EQ(log.text().find(secret), std::string::npos);
    EXPECT_EQ(sshd.log_text().find(secret), std::string::npos);
  }
}

TEST_F(AuthTest, ClearedPasswordNoLongerAuthenticates) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give the test user healer-test a temporary password";
  }
  SshdFixture sshd(with_passwords());
  sshd.start();
  const std::string password = sshd.set_random_password();
  sshd.clear_password();
  const auto shadow = test::run_command({"getent", "shadow", sshd.user()});
  ASSERT_EQ(shadow.exit_code(), 0) << shadow.err;
  EXPECT_TRUE(shadow.out.starts_with(sshd.user() + ":*:")) << "password field not restored";
  const auto run = exec_with(sshd, password_options(sshd, password), "true");
  ASSERT_FALSE(run.connected);
  EXPECT_EQ(run.connected.error().code, Errc::auth_failed) << run.failure();
  // Key logins still work: "*" is no password, not a locked account.
  ssh::ConnectOptions key_options;
  key_options.user = sshd.user();
  key_options.identity_file = sshd.client_key_path().string();
  key_options.known_hosts_file = sshd.known_hosts_path().string();
  const auto by_key = exec_with(sshd, key_options, "echo key");
  ASSERT_TRUE(by_key.result) << by_key.failure();
}

// A test process killed while it held a password leaves it in /etc/shadow; the next fixture
// restores "*", but never while another fixture holds the password.
TEST_F(AuthTest, PasswordLeftByAKilledTestIsClearedByTheNextFixture) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give the test user healer-test a temporary password";
  }
  const auto password_field = [] {
    const auto shadow = test::run_command({"getent", "shadow", "healer-test"});
    const auto start = shadow.out.find(':') + 1;
    return shadow.out.substr(start, shadow.out.find(':', start) - start);
  };
  {
    SshdFixture holder;
    static_cast<void>(holder.set_random_password());
    SshdFixture bystander;  // must not clear a password in use
    EXPECT_NE(password_field(), "*");
  }
  ASSERT_EQ(password_field(), "*");

  // The child sets a password and dies without running destructors, as a killed test would.
  const pid_t child = ::fork();
  if (child == 0) {
    try {
      auto* doomed = new SshdFixture();  // leaked on purpose: no destructor may run
      static_cast<void>(doomed->set_random_password());
      std::filesystem::remove_all(doomed->dir());
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_NE(password_field(), "*") << "the child did not set a password";
  SshdFixture next;
  EXPECT_EQ(password_field(), "*");
}

}  // namespace
}  // namespace healer
