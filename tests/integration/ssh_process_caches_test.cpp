// What an SSH client process parses once instead of once per connection, against a real sshd.
// The known_hosts index (src/ssh/known_hosts.hpp): a fleet-sized file is read once and only the
// host's own lines are parsed; hashed and wildcard entries, [host]:port names and changes on disk
// behave as with libssh's own reader; a line libssh cannot parse no longer hides a changed key.
// The identity cache (src/ssh/identity_cache.hpp): a key is parsed once; a replaced file or
// another passphrase is never answered with the old key.
#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "child_process.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/ssh/session.hpp"
#include "identity_cache.hpp"
#include "known_hosts.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"

namespace healer {
namespace {

using namespace std::chrono_literals;
using ssh::Errc;
using ssh::detail::IdentityCache;
using ssh::detail::KnownHostsIndex;
using test::SshdFixture;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

// The key part ("ssh-ed25519 AAAA...") of the fixture's known_hosts line for its sshd.
std::string recorded_key(const SshdFixture& sshd) {
  const std::string text = read_text(sshd.known_hosts_path());
  const auto space = text.find(' ');
  const auto end = text.find('\n');
  return text.substr(space + 1, end == std::string::npos ? end : end - space - 1);
}

std::string name_of(const SshdFixture& sshd) {
  return "[" + sshd.host() + "]:" + std::to_string(sshd.port());
}

class SshCachesTest : public ::testing::Test {
 protected:
  void SetUp() override { sshd_.start(); }

  Result<void> connect(ssh::HostKeyPolicy policy = ssh::HostKeyPolicy::strict) {
    ssh::ConnectOptions options;
    options.user = sshd_.user();
    options.identity_file = sshd_.client_key_path().string();
    options.known_hosts_file = sshd_.known_hosts_path().string();
    options.host_key_policy = policy;
    return connect_with(options);
  }

  Result<void> connect_with(const ssh::ConnectOptions& options) {
    return test::run_async(io_, [&]() -> asio::awaitable<Result<void>> {
      auto session = co_await ssh::Session::async_connect({sshd_.host(), sshd_.port()}, options,
                                                          Deadline::after(10s));
      if (!session) {
        co_return session.error();
      }
      co_await session->async_close(Deadline::after(2s));
      co_return Result<void>{};
    }());
  }

  SshdFixture sshd_;
  asio::io_context io_;
};

TEST_F(SshCachesTest, KnownHostsAFleetSizedFileIsReadOnceAndOnlyTheHostsLinesAreParsed) {
  // 3,000 other hosts with the same key type, then this one in the middle, then 3,000 more.
  const std::string key = recorded_key(sshd_);
  std::string text;
  for (int i = 0; i < 3000; ++i) {
    text +=
        "[10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250) + "]:22 " + key + "\n";
  }
  text += name_of(sshd_) + " " + key + "\n";
  for (int i = 0; i < 3000; ++i) {
    text += "host-" + std::to_string(i) + ".example," + "10.2.0." + std::to_string(i % 250) + " " +
            key + "\n";
  }
  write_text(sshd_.known_hosts_path(), text);

  const auto before = KnownHostsIndex::instance().stats();
  for (int i = 0; i < 5; ++i) {
    const auto connected = connect();
    ASSERT_TRUE(connected) << connected.error().message();
  }
  const auto after = KnownHostsIndex::instance().stats();
  EXPECT_EQ(after.file_reads - before.file_reads, 1U);
  // One parse of the host's line on the first lookup; later lookups are answered from memory.
  EXPECT_EQ(after.lines_parsed - before.lines_parsed, 1U);
  EXPECT_GE(after.lookups - before.lookups, 10U);  // algorithms + check per connect
}

// Ordering the host key algorithms reuses a look at the files up to a second old; the check after
// the key exchange, which decides, looks at the user's file every time (the global file too when
// the user's does not vouch for the host). Before, each connect looked at both files twice.
TEST_F(SshCachesTest, KnownHostsTheCheckLooksAtTheFileOnEveryConnectTheOrderingReusesALook) {
  ASSERT_TRUE(connect());  // loads both files
  const auto started = Clock::now();
  const auto before = KnownHostsIndex::instance().stats();
  constexpr int kConnects = 5;
  for (int i = 0; i < kConnects; ++i) {
    const auto connected = connect();
    ASSERT_TRUE(connected) << connected.error().message();
  }
  const auto after = KnownHostsIndex::instance().stats();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started);
  const auto checks = after.file_checks - before.file_checks;
  EXPECT_GE(checks, static_cast<std::size_t>(kConnects));  // the check's, one per connect
  // Plus at most both files once per second of the run for the ordering (before: 3 per connect).
  EXPECT_LE(checks, static_cast<std::size_t>(kConnects) +
                        2 * (static_cast<std::size_t>(seconds.count()) + 1));
  EXPECT_EQ(after.file_reads, before.file_reads);
}

TEST_F(SshCachesTest, KnownHostsHashedEntriesAreMatched) {
  // ssh-keygen -H hashes every name in place, as HashKnownHosts=yes would have written it.
  const auto hashed =
      test::run_command({"ssh-keygen", "-H", "-f", sshd_.known_hosts_path().string()});
  ASSERT_EQ(hashed.exit_code(), 0) << hashed.err;
  ASSERT_EQ(read_text(sshd_.known_hosts_path()).rfind("|1|", 0), 0U);
  const auto connected = connect();
  EXPECT_TRUE(connected) << connected.error().message();
}

TEST_F(SshCachesTest, KnownHostsWildcardEntriesAreMatched) {
  write_text(sshd_.known_hosts_path(),
             "[127.0.0.*]:" + std::to_string(sshd_.port()) + " " + recorded_key(sshd_) + "\n");
  const auto connected = connect();
  EXPECT_TRUE(connected) << connected.error().message();
}

TEST_F(SshCachesTest, KnownHostsAnotherPortsEntryDoesNotVouchForThisOne) {
  write_text(sshd_.known_hosts_path(),
             "[" + sshd_.host() + "]:" + std::to_string(sshd_.port() + 1) + " " +
                 recorded_key(sshd_) + "\n" + sshd_.host() + " " + recorded_key(sshd_) + "\n");
  const auto connected = connect();
  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.error().code, Errc::host_unknown) << connected.error().message();
}

TEST_F(SshCachesTest, KnownHostsAChangeOnDiskIsSeenByTheNextConnect) {
  ASSERT_TRUE(connect());
  // Same length, same name, another key: only the file's times and contents differ.
  sshd_.regenerate_host_key();
  const auto changed = connect();
  ASSERT_FALSE(changed);
  EXPECT_EQ(changed.error().code, Errc::host_key_changed) << changed.error().message();
  sshd_.trust_current_host_key();
  const auto trusted = connect();
  EXPECT_TRUE(trusted) << trusted.error().message();
}

TEST_F(SshCachesTest, KnownHostsAnUnparsableLineDoesNotHideAChangedKey) {
  // libssh's reader fails the whole file on a line it cannot parse and calls the host unknown,
  // so trust on first use would record the new key. The index skips the line.
  const std::string old_key = recorded_key(sshd_);
  sshd_.regenerate_host_key();
  write_text(sshd_.known_hosts_path(), name_of(sshd_) + " ssh-unknown-type AAAAB3Nz\n" +
                                           name_of(sshd_) + " " + old_key + "\n");
  const std::string before = read_text(sshd_.known_hosts_path());
  const auto connected = connect(ssh::HostKeyPolicy::accept_new);
  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.error().code, Errc::host_key_changed) << connected.error().message();
  EXPECT_EQ(read_text(sshd_.known_hosts_path()), before);
  EXPECT_EQ(sshd_.accepted_auth_count(), 0U);
}

TEST_F(SshCachesTest, KnownHostsAcceptNewAppendsOneLineThatTheNextConnectTrusts) {
  write_text(sshd_.known_hosts_path(), "# fleet\nother.example " + recorded_key(sshd_) + "\n");
  const auto unknown = connect();
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::host_unknown);
  ASSERT_TRUE(connect(ssh::HostKeyPolicy::accept_new));
  const std::string text = read_text(sshd_.known_hosts_path());
  EXPECT_NE(text.find("\n" + name_of(sshd_) + " ssh-ed25519 "), std::string::npos) << text;
  const auto strict = connect();
  EXPECT_TRUE(strict) << strict.error().message();
  // Recorded once, not once per connect.
  ASSERT_TRUE(connect(ssh::HostKeyPolicy::accept_new));
  EXPECT_EQ(read_text(sshd_.known_hosts_path()), text);
}

TEST_F(SshCachesTest, AKeyFileIsParsedOncePerProcess) {
  // A key of its own, so no other test in this process has parsed it yet.
  const auto key = sshd_.add_client_key(SshdFixture::KeyType::ed25519);
  ssh::ConnectOptions options;
  options.user = sshd_.user();
  options.identity_file = key.private_key.string();
  options.known_hosts_file = sshd_.known_hosts_path().string();
  const auto before = IdentityCache::instance().stats();
  for (int i = 0; i < 3; ++i) {
    const auto connected = connect_with(options);
    ASSERT_TRUE(connected) << connected.error().message();
  }
  const auto after = IdentityCache::instance().stats();
  EXPECT_EQ(after.parsed - before.parsed, 1U);
  EXPECT_EQ(after.reused - before.reused, 2U);
}

TEST_F(SshCachesTest, AReplacedKeyFileIsParsedAgain) {
  const auto key = sshd_.add_client_key(SshdFixture::KeyType::ed25519);
  const auto stranger = sshd_.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  ssh::ConnectOptions options;
  options.user = sshd_.user();
  options.identity_file = (sshd_.dir() / "rotated_key").string();
  options.known_hosts_file = sshd_.known_hosts_path().string();
  std::filesystem::copy_file(key.private_key, options.identity_file);
  ASSERT_TRUE(connect_with(options));
  // Rotated to a key the server does not know: the old, authorised key must not be used.
  std::filesystem::remove(options.identity_file);
  std::filesystem::copy_file(stranger.private_key, options.identity_file);
  const auto rotated = connect_with(options);
  ASSERT_FALSE(rotated);
  EXPECT_EQ(rotated.error().code, Errc::auth_failed) << rotated.error().message();
}

TEST_F(SshCachesTest, AnotherPassphraseNeverGetsTheParsedKey) {
  const auto key = sshd_.add_client_key(SshdFixture::KeyType::ed25519, "correct horse", true);
  ssh::ConnectOptions options;
  options.user = sshd_.user();
  options.identity_file = key.private_key.string();
  options.known_hosts_file = sshd_.known_hosts_path().string();
  options.passphrase = "correct horse";
  ASSERT_TRUE(connect_with(options));
  options.passphrase = "wrong";
  const auto wrong = connect_with(options);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::key_invalid) << wrong.error().message();
  options.passphrase.clear();
  const auto without = connect_with(options);
  ASSERT_FALSE(without);
  EXPECT_EQ(without.error().code, Errc::key_invalid) << without.error().message();
}

TEST_F(SshCachesTest, AnInMemoryKeyIsParsedOnceAndAnotherTextIsNotConfused) {
  const auto key = sshd_.add_client_key(SshdFixture::KeyType::ed25519);
  const auto stranger = sshd_.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  ssh::ConnectOptions options;
  options.user = sshd_.user();
  options.auth = ssh::AuthMethod::key_data;
  options.known_hosts_file = sshd_.known_hosts_path().string();
  const auto before = IdentityCache::instance().stats();
  for (int i = 0; i < 2; ++i) {
    options.private_key = read_text(key.private_key);
    const auto connected = connect_with(options);
    ASSERT_TRUE(connected) << connected.error().message();
  }
  const auto after = IdentityCache::instance().stats();
  EXPECT_EQ(after.parsed - before.parsed, 1U);
  options.private_key = read_text(stranger.private_key);
  const auto other = connect_with(options);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, Errc::auth_failed) << other.error().message();
}

}  // namespace
}  // namespace healer
