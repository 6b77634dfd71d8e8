// ssh::Session against a real OpenSSH sshd on 127.0.0.1: connect, host keys, authentication,
// exec, concurrency, limits, and every failure a user can hit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "async_poll.hpp"
#include "blackhole_proxy.hpp"
#include "cancellable.hpp"
#include "child_process.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/ssh/session.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

using namespace std::chrono_literals;
using ssh::Errc;
using test::SshdFixture;

// Everything one connect + exec produced, so a test can assert on each step.
struct Outcome {
  Result<void> connected;
  Result<ssh::CommandResult> result = Error{};
  std::string fingerprint;
  std::chrono::milliseconds connect_time{0};
};

ssh::ConnectOptions options_for(const SshdFixture& sshd, std::filesystem::path key = {}) {
  ssh::ConnectOptions options;
  options.user = sshd.user();
  options.identity_file = key.empty() ? sshd.client_key_path().string() : key.string();
  options.known_hosts_file = sshd.known_hosts_path().string();
  return options;
}

ssh::Endpoint endpoint_of(const SshdFixture& sshd) { return {sshd.host(), sshd.port()}; }

// `connect_timeout` bounds the login, `timeout` the command (and the login too unless given).
asio::awaitable<Outcome> connect_and_exec(ssh::Endpoint endpoint, ssh::ConnectOptions options,
                                          std::string command, ssh::ExecOptions exec_options,
                                          std::chrono::milliseconds timeout,
                                          std::chrono::milliseconds connect_timeout) {
  Outcome run;
  const auto started = Clock::now();
  auto session = co_await ssh::Session::async_connect(std::move(endpoint), std::move(options),
                                                      Deadline::after(connect_timeout));
  run.connect_time = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  if (!session) {
    run.connected = session.error();
    co_return run;
  }
  run.fingerprint = session->host_key_fingerprint();
  run.result = co_await session->async_exec(std::move(command), std::move(exec_options),
                                            Deadline::after(timeout));
  co_await session->async_close(Deadline::after(2s));
  co_return run;
}

class SessionTest : public ::testing::Test {
 protected:
  Outcome exec(const SshdFixture& sshd, std::string command, ssh::ExecOptions exec_options = {},
               std::chrono::milliseconds timeout = 10s) {
    return exec_with(endpoint_of(sshd), options_for(sshd), std::move(command),
                     std::move(exec_options), timeout);
  }
  Outcome exec_with(ssh::Endpoint endpoint, ssh::ConnectOptions options, std::string command,
                    ssh::ExecOptions exec_options = {}, std::chrono::milliseconds timeout = 10s) {
    return test::run_async(
        io_, connect_and_exec(std::move(endpoint), std::move(options), std::move(command),
                              std::move(exec_options), timeout, timeout));
  }
  // A short deadline for the command alone: the login before it (30 ms on a quiet machine,
  // seconds on a loaded one) gets a generous one of its own.
  Outcome exec_timed(const SshdFixture& sshd, std::string command,
                     std::chrono::milliseconds command_timeout) {
    return test::run_async(
        io_, connect_and_exec(endpoint_of(sshd), options_for(sshd), std::move(command),
                              ssh::ExecOptions{}, command_timeout, 20s));
  }

  asio::io_context io_;
};

// --- happy path ------------------------------------------------------------------------------

TEST_F(SessionTest, RunsCommandAndReturnsExitStatusAndStreams) {
  SshdFixture sshd;
  sshd.start();
  const auto run = exec(sshd, "echo out; echo err >&2; exit 3");
  ASSERT_TRUE(run.connected) << run.connected.error().message();
  ASSERT_TRUE(run.result) << run.result.error().message();
  EXPECT_EQ(run.result->exit_status, 3);
  EXPECT_EQ(run.result->out, "out\n");
  EXPECT_EQ(run.result->err, "err\n");
  EXPECT_FALSE(run.result->out_truncated);
  EXPECT_EQ(run.result->shell_exit_code(), 3);
  EXPECT_TRUE(run.fingerprint.starts_with("SHA256:")) << run.fingerprint;
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
}

TEST_F(SessionTest, FingerprintMatchesOpenSsh) {
  SshdFixture sshd;
  sshd.start();
  const auto keygen = test::run_command(
      {"ssh-keygen", "-l", "-E", "sha256", "-f", sshd.host_key_path().string() + ".pub"});
  ASSERT_EQ(keygen.exit_code(), 0);
  const auto run = exec(sshd, "true");
  ASSERT_TRUE(run.result);
  EXPECT_NE(keygen.out.find(run.fingerprint), std::string::npos)
      << keygen.out << " vs " << run.fingerprint;
}

TEST_F(SessionTest, ReportsExitSignal) {
  SshdFixture sshd;
  sshd.start();
  const auto run = exec(sshd, "kill -TERM $$");
  ASSERT_TRUE(run.result) << run.result.error().message();
  EXPECT_FALSE(run.result->exit_status.has_value());
  EXPECT_EQ(run.result->exit_signal, "TERM");
  EXPECT_EQ(run.result->shell_exit_code(), 128 + 15);
}

TEST_F(SessionTest, SendsStdinThenEof) {
  SshdFixture sshd;
  sshd.start();
  ssh::ExecOptions options;
  options.stdin_data = "line one\nline two\n";
  const auto run = exec(sshd, "wc -l; cat /dev/null", options);
  ASSERT_TRUE(run.result) << run.result.error().message();
  EXPECT_EQ(run.result->out, "2\n");
}

TEST_F(SessionTest, LargeStdinRoundTrips) {
  SshdFixture sshd;
  sshd.start();
  ssh::ExecOptions options;
  options.stdin_data.assign(8U << 20, 'x');  // well beyond the channel window
  const auto run = exec(sshd, "wc -c", options);
  ASSERT_TRUE(run.result) << run.result.error().message();
  EXPECT_EQ(run.result->out, std::to_string(8U << 20) + "\n");
}

TEST_F(SessionTest, FiftyMegabytesOfOutputAreCappedWithoutDeadlock) {
  SshdFixture sshd;
  sshd.start();
  ssh::ExecOptions options;
  options.max_output = 64 * 1024;
  // Both streams at once: a reader that served only one would stall the other.
  const auto run =
      exec(sshd, "head -c 50000000 /dev/zero & head -c 20000000 /dev/zero >&2; wait", options);
  ASSERT_TRUE(run.result) << run.result.error().message();
  EXPECT_EQ(run.result->exit_status, 0);
  EXPECT_EQ(run.result->out_bytes, 50000000U);
  EXPECT_EQ(run.result->err_bytes, 20000000U);
  EXPECT_EQ(run.result->out.size(), 64U * 1024);
  EXPECT_EQ(run.result->err.size(), 64U * 1024);
  EXPECT_TRUE(run.result->out_truncated);
  EXPECT_TRUE(run.result->err_truncated);
}

TEST_F(SessionTest, FiftyMegabytesOfOutputArriveWhole) {
  SshdFixture sshd;
  sshd.start();
  ssh::ExecOptions options;
  options.max_output = 64U << 20;
  const auto run = exec(sshd, "head -c 50000000 /dev/urandom", options);
  ASSERT_TRUE(run.result) << run.result.error().message();
  EXPECT_EQ(run.result->out.size(), 50000000U);
  EXPECT_FALSE(run.result->out_truncated);
}

// --- many channels on one connection ---------------------------------------------------------

asio::awaitable<std::vector<Result<ssh::CommandResult>>> run_concurrently(
    ssh::Endpoint endpoint, ssh::ConnectOptions options, int count) {
  std::vector<Result<ssh::CommandResult>> results(static_cast<std::size_t>(count), Error{});
  auto session = co_await ssh::Session::async_connect(std::move(endpoint), std::move(options),
                                                      Deadline::after(10s));
  if (!session) {
    results.assign(results.size(), session.error());
    co_return results;
  }
  auto executor = co_await asio::this_coro::executor;
  int pending = count;
  asio::steady_timer all_done(executor, Clock::time_point::max());
  for (int i = 0; i < count; ++i) {
    asio::co_spawn(
        executor,
        session->async_exec("echo " + std::to_string(i), ssh::ExecOptions{}, Deadline::after(20s)),
        [&results, &pending, &all_done, i](std::exception_ptr, Result<ssh::CommandResult> r) {
          results[static_cast<std::size_t>(i)] = std::move(r);
          if (--pending == 0) {
            all_done.cancel();
          }
        });
  }
  while (pending > 0) {
    co_await all_done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  co_await session->async_close(Deadline::after(2s));
  co_return results;
}

TEST_F(SessionTest, FiftyConcurrentChannelsOnOneSession) {
  SshdFixture::Options sshd_options;
  sshd_options.max_sessions = 64;
  SshdFixture sshd(sshd_options);
  sshd.start();
  const auto results =
      test::run_async(io_, run_concurrently(endpoint_of(sshd), options_for(sshd), 50));
  for (std::size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i]) << i << ": " << results[i].error().message();
    EXPECT_EQ(results[i]->out, std::to_string(i) + "\n");
  }
  EXPECT_EQ(sshd.connection_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_TRUE(sshd.wait_for_log("Starting session: ", 50));
}

// Two commands hold both of MaxSessions=2 until a file appears; the third channel is refused
// with a typed error and the session still runs commands afterwards.
asio::awaitable<std::vector<Result<ssh::CommandResult>>> exhaust_max_sessions(
    ssh::Endpoint endpoint, ssh::ConnectOptions options, std::string gate) {
  std::vector<Result<ssh::CommandResult>> results(4, Error{});
  auto session = co_await ssh::Session::async_connect(std::move(endpoint), std::move(options),
                                                      Deadline::after(10s));
  if (!session) {
    results.assign(4, session.error());
    co_return results;
  }
  auto executor = co_await asio::this_coro::executor;
  int pending = 2;
  asio::steady_timer both_done(executor, Clock::time_point::max());
  const std::string hold = "while [ ! -e " + gate + " ]; do sleep 0.02; done; echo held";
  for (int i = 0; i < 2; ++i) {
    asio::co_spawn(
        executor, session->async_exec(hold, ssh::ExecOptions{}, Deadline::after(20s)),
        [&results, &pending, &both_done, i](std::exception_ptr, Result<ssh::CommandResult> r) {
          results[static_cast<std::size_t>(i)] = std::move(r);
          if (--pending == 0) {
            both_done.cancel();
          }
        });
  }
  // Wait until both channels are open on the server before asking for a third.
  while (session->stats().channels_opened < 2) {
    asio::steady_timer tick(executor, 10ms);
    co_await tick.async_wait(asio::use_awaitable);
  }
  results[2] = co_await session->async_exec("echo third", ssh::ExecOptions{}, Deadline::after(5s));
  std::ofstream(gate).put('\n');
  while (pending > 0) {
    co_await both_done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  // sshd frees a session slot only after it processed our close; an open racing that close can
  // be refused once more, so the session proves usable within a few attempts.
  for (int attempt = 0; attempt < 5; ++attempt) {
    results[3] =
        co_await session->async_exec("echo after", ssh::ExecOptions{}, Deadline::after(5s));
    if (results[3] || results[3].error().code != Errc::channel_refused) {
      break;
    }
  }
  co_await session->async_close(Deadline::after(2s));
  co_return results;
}

TEST_F(SessionTest, ChannelRefusedByMaxSessionsIsTypedAndSessionSurvives) {
  SshdFixture::Options sshd_options;
  sshd_options.max_sessions = 2;
  SshdFixture sshd(sshd_options);
  sshd.start();
  const auto gate = (sshd.dir() / "gate").string();
  std::filesystem::permissions(sshd.dir(), std::filesystem::perms::all,
                               std::filesystem::perm_options::add);
  const auto results =
      test::run_async(io_, exhaust_max_sessions(endpoint_of(sshd), options_for(sshd), gate));
  ASSERT_TRUE(results[0]) << results[0].error().message();
  ASSERT_TRUE(results[1]) << results[1].error().message();
  EXPECT_EQ(results[0]->out, "held\n");
  ASSERT_FALSE(results[2]);
  EXPECT_EQ(results[2].error().code, Errc::channel_refused) << results[2].error().message();
  EXPECT_FALSE(ssh::poisons_session(results[2].error()));
  ASSERT_TRUE(results[3]) << results[3].error().message();
  EXPECT_EQ(results[3]->out, "after\n");
  EXPECT_EQ(sshd.connection_count(), 1U);
}

// --- host keys -------------------------------------------------------------------------------

TEST_F(SessionTest, UnknownHostIsRefusedInStrictModeBeforeAuthentication) {
  SshdFixture sshd;
  sshd.start();
  auto options = options_for(sshd);
  options.known_hosts_file = (sshd.dir() / "empty_known_hosts").string();
  const auto run = exec_with(endpoint_of(sshd), options, "true");
  ASSERT_FALSE(run.connected);
  EXPECT_EQ(run.connected.error().code, Errc::host_unknown);
  EXPECT_NE(run.connected.error().detail.find("SHA256:"), std::string::npos);
  EXPECT_EQ(sshd.accepted_auth_count() + sshd.failed_auth_count(), 0U);
  EXPECT_FALSE(std::filesystem::exists(options.known_hosts_file));
}

TEST_F(SessionTest, AcceptNewRecordsTheKeyThenStrictModeAcceptsIt) {
  SshdFixture sshd;
  sshd.start();
  auto options = options_for(sshd);
  options.known_hosts_file = (sshd.dir() / "tofu" / "known_hosts").string();
  options.host_key_policy = ssh::HostKeyPolicy::accept_new;
  const auto first = exec_with(endpoint_of(sshd), options, "echo first");
  ASSERT_TRUE(first.result) << (first.connected ? first.result.error().message()
                                                : first.connected.error().message());
  ASSERT_TRUE(std::filesystem::exists(options.known_hosts_file));
  options.host_key_policy = ssh::HostKeyPolicy::strict;
  const auto second = exec_with(endpoint_of(sshd), options, "echo second");
  ASSERT_TRUE(second.result) << (second.connected ? second.result.error().message()
                                                  : second.connected.error().message());
  EXPECT_EQ(second.result->out, "second\n");
}

TEST_F(SessionTest, AcceptNewPinnedToAFingerprintRecordsOnlyThatKey) {
  SshdFixture sshd;
  sshd.start();
  auto options = options_for(sshd);
  options.known_hosts_file = (sshd.dir() / "pinned_known_hosts").string();
  options.host_key_policy = ssh::HostKeyPolicy::accept_new;
  // The key the person was shown is not the one the server presents now: refused, before any
  // credential is sent, and nothing is recorded.
  options.accept_fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  const auto wrong = exec_with(endpoint_of(sshd), options, "true");
  ASSERT_FALSE(wrong.connected);
  EXPECT_EQ(wrong.connected.error().code, Errc::host_key_changed);
  EXPECT_NE(wrong.connected.error().detail.find("not the key that was accepted"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(options.known_hosts_file));
  EXPECT_EQ(sshd.accepted_auth_count() + sshd.failed_auth_count(), 0U);
  // The real fingerprint, as a strict attempt shows it, is recorded.
  auto strict = options;
  strict.host_key_policy = ssh::HostKeyPolicy::strict;
  const auto shown = exec_with(endpoint_of(sshd), strict, "true");
  ASSERT_FALSE(shown.connected);
  const auto& detail = shown.connected.error().detail;
  const auto at = detail.find("SHA256:");
  ASSERT_NE(at, std::string::npos);
  options.accept_fingerprint = detail.substr(at, detail.find(')', at) - at);
  const auto right = exec_with(endpoint_of(sshd), options, "echo pinned");
  ASSERT_TRUE(right.result) << (right.connected ? right.result.error().message()
                                                : right.connected.error().message());
  EXPECT_EQ(right.result->out, "pinned\n");
  EXPECT_TRUE(std::filesystem::exists(options.known_hosts_file));
}

TEST_F(SessionTest, ChangedHostKeyIsAHardErrorWithNoAuthAttempt) {
  SshdFixture sshd;
  sshd.start();
  sshd.regenerate_host_key();
  for (auto policy : {ssh::HostKeyPolicy::strict, ssh::HostKeyPolicy::accept_new}) {
    auto options = options_for(sshd);
    options.host_key_policy = policy;
    const auto run = exec_with(endpoint_of(sshd), options, "true");
    ASSERT_FALSE(run.connected);
    EXPECT_EQ(run.connected.error().code, Errc::host_key_changed)
        << run.connected.error().message();
  }
  // The connections reached sshd, but no credential was ever offered.
  EXPECT_TRUE(sshd.wait_for_log("Connection from ", 2));
  EXPECT_EQ(sshd.accepted_auth_count(), 0U);
  EXPECT_EQ(sshd.failed_auth_count(), 0U);
  EXPECT_EQ(sshd.count_in_log("publickey"), 0U);
}

// --- authentication ------------------------------------------------------------------------

TEST_F(SessionTest, WrongKeyFailsWithExactlyOneFailedAttempt) {
  SshdFixture sshd;
  sshd.start();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  const auto run = exec_with(endpoint_of(sshd), options_for(sshd, stranger.private_key), "true");
  ASSERT_FALSE(run.connected);
  EXPECT_EQ(run.connected.error().code, Errc::auth_failed) << run.connected.error().message();
  // Wait for sshd to finish with the connection, then count what it saw.
  EXPECT_TRUE(sshd.wait_for_log("Failed publickey", 1));
  EXPECT_TRUE(sshd.wait_for_log("authenticating user", 1)) << sshd.log_text();
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 0U);
}

TEST_F(SessionTest, EncryptedKeyNeedsItsPassphrase) {
  SshdFixture sshd;
  sshd.start();
  const auto key = sshd.add_client_key(SshdFixture::KeyType::ed25519, "correct horse", true);
  auto options = options_for(sshd, key.private_key);

  const auto without = exec_with(endpoint_of(sshd), options, "true");
  ASSERT_FALSE(without.connected);
  EXPECT_EQ(without.connected.error().code, Errc::key_invalid);

  options.passphrase = "wrong";
  const auto wrong = exec_with(endpoint_of(sshd), options, "true");
  ASSERT_FALSE(wrong.connected);
  EXPECT_EQ(wrong.connected.error().code, Errc::key_invalid);
  EXPECT_EQ(wrong.connected.error().message().find("wrong\""), std::string::npos);
  // A key that cannot be loaded never reaches the server.
  EXPECT_EQ(sshd.connection_count(), 0U);

  options.passphrase = "correct horse";
  const auto with = exec_with(endpoint_of(sshd), options, "echo unlocked");
  ASSERT_TRUE(with.result) << (with.connected ? with.result.error().message()
                                              : with.connected.error().message());
  EXPECT_EQ(with.result->out, "unlocked\n");
}

TEST_F(SessionTest, RsaKeySignsWithSha2AgainstOpenSsh9) {
  SshdFixture::Options sshd_options;
  // OpenSSH 9 refuses ssh-rsa (SHA-1) signatures; this pins the server to rsa-sha2 only.
  sshd_options.extra_config = {"PubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256,ssh-ed25519"};
  SshdFixture sshd(sshd_options);
  sshd.start();
  const auto key = sshd.add_client_key(SshdFixture::KeyType::rsa);
  const auto run = exec_with(endpoint_of(sshd), options_for(sshd, key.private_key), "echo rsa");
  ASSERT_TRUE(run.result) << (run.connected ? run.result.error().message()
                                            : run.connected.error().message());
  EXPECT_EQ(run.result->out, "rsa\n");
  EXPECT_EQ(sshd.count_in_log("Accepted publickey"), 1U);
  EXPECT_EQ(sshd.count_in_log("ssh2: RSA SHA256:"), 1U);
}

TEST_F(SessionTest, EcdsaKeyAuthenticates) {
  SshdFixture sshd;
  sshd.start();
  const auto key = sshd.add_client_key(SshdFixture::KeyType::ecdsa);
  const auto run = exec_with(endpoint_of(sshd), options_for(sshd, key.private_key), "echo ec");
  ASSERT_TRUE(run.result) << (run.connected ? run.result.error().message()
                                            : run.connected.error().message());
  EXPECT_EQ(run.result->out, "ec\n");
}

// Starts a real ssh-agent holding `keys` (in that order); returns its socket path.
std::string start_agent(const SshdFixture& sshd, std::vector<test::ChildProcess>& processes,
                        const std::vector<std::filesystem::path>& keys) {
  const auto socket = (sshd.dir() / "agent.sock").string();
  processes.push_back(test::ChildProcess::spawn({"ssh-agent", "-D", "-a", socket}));
  EXPECT_TRUE(test::poll_until([&] { return std::filesystem::exists(socket); }, 5s));
  for (const auto& key : keys) {
    const auto add = test::run_command({"env", "SSH_AUTH_SOCK=" + socket, "ssh-add", key.string()});
    EXPECT_EQ(add.exit_code(), 0) << add.err;
  }
  return socket;
}

TEST_F(SessionTest, AgentAuthentication) {
  SshdFixture sshd;
  sshd.start();
  std::vector<test::ChildProcess> processes;
  auto options = options_for(sshd);
  options.auth = ssh::AuthMethod::agent;
  options.identity_file.clear();
  options.agent_socket = start_agent(sshd, processes, {sshd.client_key_path()});
  const auto run = exec_with(endpoint_of(sshd), options, "echo agent");
  ASSERT_TRUE(run.result) << (run.connected ? run.result.error().message()
                                            : run.connected.error().message());
  EXPECT_EQ(run.result->out, "agent\n");
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
}

TEST_F(SessionTest, AgentOffersOnlyTheConfiguredIdentity) {
  SshdFixture sshd;
  sshd.start();
  const auto first = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  const auto second = sshd.add_client_key(SshdFixture::KeyType::ecdsa, {}, false);
  std::vector<test::ChildProcess> processes;
  auto options = options_for(sshd);
  options.auth = ssh::AuthMethod::agent;
  // The agent lists two unauthorized keys before the right one.
  options.agent_socket =
      start_agent(sshd, processes, {first.private_key, second.private_key, sshd.client_key_path()});
  options.identity_file = sshd.client_key_path().string();
  const auto run = exec_with(endpoint_of(sshd), options, "echo picked");
  ASSERT_TRUE(run.result) << (run.connected ? run.result.error().message()
                                            : run.connected.error().message());
  EXPECT_EQ(run.result->out, "picked\n");
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_EQ(sshd.failed_auth_count(), 0U) << sshd.log_text();

  // A configured identity the agent does not hold: refused without offering any other key.
  options.identity_file = sshd.add_client_key(SshdFixture::KeyType::ed25519).private_key.string();
  const auto missing = exec_with(endpoint_of(sshd), options, "true");
  ASSERT_FALSE(missing.connected);
  EXPECT_EQ(missing.connected.error().code, Errc::auth_failed);
  EXPECT_EQ(sshd.failed_auth_count(), 0U) << sshd.log_text();
}

// --- deadlines and dead peers ----------------------------------------------------------------

TEST_F(SessionTest, TimedOutCommandIsKilledOnTheServer) {
  SshdFixture sshd;
  sshd.start();
  // A marker no other run of this test shares (a killed test can leave its sleep behind).
  const std::string marker = "sleep 31337." + std::to_string(::getpid());
  const auto run = exec_timed(sshd, marker + "; echo never", 1s);
  ASSERT_TRUE(run.connected) << run.connected.error().message();
  ASSERT_FALSE(run.result);
  EXPECT_EQ(run.result.error().code, Errc::timeout);
  EXPECT_TRUE(ssh::poisons_session(run.result.error()));
  EXPECT_TRUE(
      test::poll_until([&] { return sshd.remote_processes_matching("sleep 31337") == 0; }, 5s))
      << sshd.remote_processes_matching("sleep 31337") << " remote sleep still running";
}

// sshd refuses "signal" requests after a root login; the command's processes are found by their
// marker and killed from a second channel instead.
TEST_F(SessionTest, TimedOutCommandOfARootLoginIsKilledToo) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to log in as root";
  }
  SshdFixture::Options sshd_options;
  sshd_options.login_as_root = true;
  SshdFixture sshd(sshd_options);
  sshd.start();
  ASSERT_EQ(sshd.user(), "root");
  const std::string marker = "sleep 31338." + std::to_string(::getpid());
  const auto run = exec_timed(sshd, marker + "; echo never", 1s);
  ASSERT_TRUE(run.connected) << run.connected.error().message();
  ASSERT_FALSE(run.result);
  EXPECT_EQ(run.result.error().code, Errc::timeout);
  EXPECT_TRUE(test::poll_until([&] { return sshd.remote_processes_matching(marker) == 0; }, 5s))
      << sshd.remote_processes_matching(marker) << " remote sleep still running";
  sshd.kill_remote_processes_matching(marker);
}

TEST_F(SessionTest, ClosedPortIsConnectRefused) {
  const auto port = test::closed_port();
  ssh::ConnectOptions options;
  options.identity_file = "/nonexistent";
  options.auth = ssh::AuthMethod::password;
  const auto run = exec_with({"127.0.0.1", port}, options, "true");
  ASSERT_FALSE(run.connected);
  EXPECT_EQ(run.connected.error().code, Errc::connect_refused);
  EXPECT_NE(run.connected.error().detail.find(std::to_string(port)), std::string::npos);
}

TEST_F(SessionTest, SilentServerIsConnectTimeoutAtTheDeadline) {
  test::BlackholeProxy blackhole;
  blackhole.start();
  ssh::ConnectOptions options;
  options.auth = ssh::AuthMethod::password;
  const auto run = exec_with({"127.0.0.1", blackhole.port()}, options, "true", {}, 700ms);
  ASSERT_FALSE(run.connected);
  EXPECT_EQ(run.connected.error().code, Errc::connect_timeout) << run.connected.error().message();
  EXPECT_GE(run.connect_time, 650ms);
  EXPECT_LT(run.connect_time, 3s);
  EXPECT_EQ(blackhole.accepted_count(), 1U);
}

asio::awaitable<Outcome> exec_on_frozen_peer(SshdFixture* sshd, ssh::ConnectOptions options,
                                             std::chrono::milliseconds exec_timeout) {
  Outcome run;
  auto session = co_await ssh::Session::async_connect(endpoint_of(*sshd), std::move(options),
                                                      Deadline::after(10s));
  if (!session) {
    run.connected = session.error();
    co_return run;
  }
  sshd->pause_all();
  const auto started = Clock::now();
  run.result = co_await session->async_exec("echo frozen", ssh::ExecOptions{},
                                            Deadline::after(exec_timeout));
  run.connect_time = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  sshd->resume_all();
  co_return run;
}

TEST_F(SessionTest, StoppedPeerIsDetectedByKeepalive) {
  SshdFixture sshd;
  sshd.start();
  auto options = options_for(sshd);
  options.keepalive_interval = 100ms;
  options.keepalive_max_missed = 3;
  const auto run = test::run_async(io_, exec_on_frozen_peer(&sshd, options, 20s));
  ASSERT_TRUE(run.connected);
  ASSERT_FALSE(run.result);
  // The frozen server never confirmed the channel: the command did not start, so it is safe to
  // retry elsewhere.
  EXPECT_EQ(run.result.error().code, Errc::not_started) << run.result.error().message();
  EXPECT_NE(run.result.error().detail.find("keepalive"), std::string::npos);
  EXPECT_LT(run.connect_time, 5s);  // ~300 ms of silence, far below the 20 s deadline
}

TEST_F(SessionTest, StoppedPeerWithoutKeepaliveHitsTheDeadline) {
  SshdFixture sshd;
  sshd.start();
  auto options = options_for(sshd);
  options.keepalive_interval = 0ms;
  const auto run = test::run_async(io_, exec_on_frozen_peer(&sshd, options, 500ms));
  ASSERT_TRUE(run.connected);
  ASSERT_FALSE(run.result);
  EXPECT_EQ(run.result.error().code, Errc::timeout) << run.result.error().message();
  EXPECT_GE(run.connect_time, 450ms);
  EXPECT_LT(run.connect_time, 3s);
}

// Kills the server once `command` runs on it.
asio::awaitable<void> kill_once_running(SshdFixture* server, std::string command) {
  auto executor = co_await asio::this_coro::executor;
  while (server->remote_processes_matching(command) == 0) {
    asio::steady_timer tick(executor, 10ms);
    co_await tick.async_wait(asio::use_awaitable);
  }
  server->kill();
}

asio::awaitable<Outcome> exec_while_server_dies(SshdFixture* sshd, ssh::ConnectOptions options) {
  Outcome run;
  auto session = co_await ssh::Session::async_connect(endpoint_of(*sshd), std::move(options),
                                                      Deadline::after(10s));
  if (!session) {
    run.connected = session.error();
    co_return run;
  }
  asio::co_spawn(co_await asio::this_coro::executor, kill_once_running(sshd, "sleep 4242"),
                 asio::detached);
  run.result = co_await session->async_exec("sleep 4242", ssh::ExecOptions{}, Deadline::after(20s));
  EXPECT_FALSE(session->alive());
  co_return run;
}

TEST_F(SessionTest, ServerKilledMidCommandIsDisconnected) {
  SshdFixture sshd;
  sshd.start();
  const auto run = test::run_async(io_, exec_while_server_dies(&sshd, options_for(sshd)));
  ASSERT_TRUE(run.connected);
  ASSERT_FALSE(run.result);
  EXPECT_EQ(run.result.error().code, Errc::disconnected) << run.result.error().message();
  EXPECT_TRUE(ssh::poisons_session(run.result.error()));
}

asio::awaitable<Result<ssh::CommandResult>> exec_after_close(ssh::Endpoint endpoint,
                                                             ssh::ConnectOptions options) {
  auto session = co_await ssh::Session::async_connect(std::move(endpoint), std::move(options),
                                                      Deadline::after(10s));
  if (!session) {
    co_return session.error();
  }
  co_await session->async_close(Deadline::after(2s));
  EXPECT_FALSE(session->alive());
  co_return co_await session->async_exec("true", ssh::ExecOptions{}, Deadline::after(2s));
}

TEST_F(SessionTest, ExecAfterCloseFailsCleanly) {
  SshdFixture sshd;
  sshd.start();
  const auto result = test::run_async(io_, exec_after_close(endpoint_of(sshd), options_for(sshd)));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Errc::not_started);
  EXPECT_TRUE(sshd.wait_for_log("Disconnected from", 1) ||
              sshd.wait_for_log("Received disconnect", 1));
}

// --- cancellation, polite close, retryable drops ----------------------------------------------

// A marker no other run of a test shares (a killed test can leave its sleep behind).
std::string unique_sleep(int seconds) {
  return "sleep " + std::to_string(seconds) + "." + std::to_string(::getpid());
}

struct Steps {
  std::vector<bool> checks;  // conditions seen inside the scenario, in order
  std::vector<Result<ssh::CommandResult>> results;
  ssh::SessionStats stats;
  Error error;
};

asio::awaitable<Steps> cancel_a_command(SshdFixture* sshd, std::string marker) {
  Steps seen;
  auto io = co_await asio::this_coro::executor;
  auto session = co_await ssh::Session::async_connect(endpoint_of(*sshd), options_for(*sshd),
                                                      Deadline::after(10s));
  if (!session) {
    seen.error = session.error();
    co_return seen;
  }
  test::Cancellable<Result<ssh::CommandResult>> running(
      io, session->async_exec(marker + "; echo never", {}, Deadline::after(20s)));
  auto started = [sshd, &marker] { return sshd->server_commands_running(marker) == 1; };
  seen.checks.push_back(co_await test::async_poll(started, 15s));
  running.cancel();
  auto done = [&running] { return running.done(); };
  seen.checks.push_back(co_await test::async_poll(done, 10s));
  if (running.done()) {
    seen.results.push_back(std::move(running.value()));
  }
  auto gone = [sshd, &marker] { return sshd->remote_processes_matching(marker) == 0; };
  seen.checks.push_back(co_await test::async_poll(gone, 10s));
  // The session itself is fine: cancelling a command is not a connection failure.
  auto after = co_await session->async_exec("echo after", {}, Deadline::after(10s));
  seen.results.push_back(std::move(after));
  seen.stats = session->stats();
  co_await session->async_close(Deadline::after(2s));
  co_return seen;
}

TEST_F(SessionTest, CancelledCommandIsKilledOnTheServer) {
  SshdFixture sshd;
  sshd.start();
  const auto marker = unique_sleep(31340);
  const auto seen = test::run_async(io_, cancel_a_command(&sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  ASSERT_EQ(seen.checks.size(), 3U) << seen.error.message();
  EXPECT_TRUE(seen.checks[0]);
  EXPECT_TRUE(seen.checks[1]) << "the cancelled exec did not return";
  EXPECT_TRUE(seen.checks[2]) << "the cancelled command is still running on the server";
  ASSERT_EQ(seen.results.size(), 2U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, Errc::cancelled) << seen.results[0].error().message();
  EXPECT_TRUE(ssh::poisons_session(seen.results[0].error()));
  ASSERT_TRUE(seen.results[1]) << seen.results[1].error().message();
  EXPECT_EQ(seen.results[1]->out, "after\n");
  EXPECT_EQ(seen.stats.commands_cancelled, 1U);
  EXPECT_EQ(seen.stats.commands_timed_out, 0U);
}

asio::awaitable<Steps> close_while_running(SshdFixture* sshd, std::string marker) {
  Steps seen;
  auto io = co_await asio::this_coro::executor;
  auto session = co_await ssh::Session::async_connect(endpoint_of(*sshd), options_for(*sshd),
                                                      Deadline::after(10s));
  if (!session) {
    seen.error = session.error();
    co_return seen;
  }
  test::Cancellable<Result<ssh::CommandResult>> running(
      io, session->async_exec(marker + "; echo never", {}, Deadline::after(20s)));
  auto started = [sshd, &marker] { return sshd->server_commands_running(marker) == 1; };
  seen.checks.push_back(co_await test::async_poll(started, 15s));
  const Deadline deadline = Deadline::after(300ms);
  co_await session->async_close(deadline);
  seen.checks.push_back(deadline.expired());  // running commands may finish until the deadline
  // async_close signalled the command and returned once its kill sequence was over.
  seen.checks.push_back(sshd->remote_processes_matching(marker) == 0);
  seen.checks.push_back(!session->alive());
  auto done = [&running] { return running.done(); };
  seen.checks.push_back(co_await test::async_poll(done, 10s));
  if (running.done()) {
    seen.results.push_back(std::move(running.value()));
  }
  co_return seen;
}

// sshd sends no SIGHUP to a command without a terminal: closing the connection alone would leave
// it running. async_close signals it (TERM, then KILL) first.
TEST_F(SessionTest, PoliteCloseSignalsACommandStillRunning) {
  SshdFixture sshd;
  sshd.start();
  const auto marker = unique_sleep(31341);
  const auto seen = test::run_async(io_, close_while_running(&sshd, marker));
  sshd.kill_remote_processes_matching(marker);
  ASSERT_EQ(seen.checks.size(), 5U) << seen.error.message();
  EXPECT_TRUE(seen.checks[0]);
  EXPECT_TRUE(seen.checks[1]) << "async_close returned before its deadline";
  EXPECT_TRUE(seen.checks[2]) << "the command is still running on the server";
  EXPECT_TRUE(seen.checks[3]);
  EXPECT_TRUE(seen.checks[4]) << "the exec did not return";
  ASSERT_EQ(seen.results.size(), 1U);
  ASSERT_FALSE(seen.results[0]);
  EXPECT_EQ(seen.results[0].error().code, Errc::cancelled) << seen.results[0].error().message();
  EXPECT_TRUE(sshd.wait_for_log("Received disconnect from", 1)) << sshd.log_text();
}

asio::awaitable<Steps> cancel_a_connect(test::BlackholeProxy* blackhole) {
  Steps seen;
  auto io = co_await asio::this_coro::executor;
  ssh::ConnectOptions options;
  options.auth = ssh::AuthMethod::password;
  test::Cancellable<ssh::ConnectAttempt> connecting(
      io, ssh::Session::async_attempt({blackhole->host(), blackhole->port()}, options,
                                      Deadline::after(30s)));
  auto accepted = [blackhole] { return blackhole->accepted_count() == 1; };
  seen.checks.push_back(co_await test::async_poll(accepted, 5s));
  // The proxy's thread can accept before this loop has run the connect's completion (the attempt
  // still in its TCP phase): a turn of the loop later it is in the handshake, waiting for a banner.
  asio::steady_timer settle(io, 100ms);
  co_await settle.async_wait(asio::use_awaitable);
  connecting.cancel();
  auto done = [&connecting] { return connecting.done(); };
  seen.checks.push_back(co_await test::async_poll(done, 10s));
  if (connecting.done()) {
    const auto& attempt = connecting.value();
    seen.checks.push_back(attempt.phase == ssh::ConnectPhase::handshake);
    seen.checks.push_back(!attempt.dropped_before_auth());
    if (!attempt.session) {
      seen.error = attempt.session.error();
    }
  }
  co_return seen;
}

TEST_F(SessionTest, CancelledConnectEndsAtOnce) {
  test::BlackholeProxy blackhole;
  blackhole.start();
  const auto seen = test::run_async(io_, cancel_a_connect(&blackhole), 10s);
  ASSERT_EQ(seen.checks.size(), 4U);
  EXPECT_TRUE(seen.checks[0]);
  EXPECT_TRUE(seen.checks[1]) << "the cancelled connect did not return";
  EXPECT_TRUE(seen.checks[2]) << "not in the handshake phase";
  EXPECT_TRUE(seen.checks[3]) << "a cancellation is no drop by the server";
  EXPECT_EQ(seen.error.code, Errc::cancelled) << seen.error.message();
}

// In an optional: run_async needs a default-constructible result, and an attempt has none.
asio::awaitable<std::optional<ssh::ConnectAttempt>> attempt_once(ssh::Endpoint endpoint,
                                                                 ssh::ConnectOptions options) {
  co_return co_await ssh::Session::async_attempt(std::move(endpoint), std::move(options),
                                                 Deadline::after(10s));
}

// MaxStartups 1: while one unauthenticated connection is open, sshd drops every new one at
// once. That drop came before any credential: the attempt says so (safe to retry); a login that
// failed never does.
TEST_F(SessionTest, MaxStartupsDropIsADropBeforeAuthAndAFailedLoginIsNot) {
  SshdFixture::Options sshd_options;
  sshd_options.max_startups = "1";
  SshdFixture sshd(sshd_options);
  sshd.start();
  {
    asio::io_context raw_io;
    asio::ip::tcp::socket holder(raw_io);  // connects and never authenticates
    holder.connect({asio::ip::make_address(sshd.host()), sshd.sshd_port()});
    ASSERT_TRUE(test::poll_until([&] { return sshd.connection_count() == 1; }, 5s));
    const auto dropped =
        test::run_async(io_, attempt_once(endpoint_of(sshd), options_for(sshd))).value();
    ASSERT_FALSE(dropped.session);
    EXPECT_EQ(dropped.session.error().code, Errc::disconnected)
        << dropped.session.error().message();
    EXPECT_EQ(dropped.phase, ssh::ConnectPhase::handshake);
    EXPECT_TRUE(dropped.dropped_before_auth()) << dropped.session.error().message();
    EXPECT_TRUE(sshd.wait_for_log("drop connection #", 1)) << sshd.log_text();
  }
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  // The held connection is gone once sshd logged its end: the next attempt has the slot.
  ASSERT_TRUE(test::poll_until(
      [&] {
        return sshd.count_in_log("Connection closed by") +
                   sshd.count_in_log("Connection reset by") +
                   sshd.count_in_log("kex_exchange_identification") >=
               1;
      },
      5s))
      << sshd.log_text();
  const auto refused =
      test::run_async(io_, attempt_once(endpoint_of(sshd), options_for(sshd, stranger.private_key)))
          .value();
  ASSERT_FALSE(refused.session);
  EXPECT_EQ(refused.session.error().code, Errc::auth_failed) << refused.session.error().message();
  EXPECT_EQ(refused.phase, ssh::ConnectPhase::auth);
  EXPECT_FALSE(refused.dropped_before_auth());
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
}

asio::awaitable<std::vector<std::string>> run_ids(SshdFixture* sshd) {
  std::vector<std::string> ids;
  auto session = co_await ssh::Session::async_connect(endpoint_of(*sshd), options_for(*sshd),
                                                      Deadline::after(10s));
  if (!session) {
    ADD_FAILURE() << session.error().message();
    co_return ids;
  }
  for (int i = 0; i < 2; ++i) {
    auto echoed = co_await session->async_exec("echo \"$HEALER_RUN\"", {}, Deadline::after(10s));
    ids.push_back(echoed ? echoed->out : "error: " + echoed.error().message());
  }
  co_await session->async_close(Deadline::after(2s));
  co_return ids;
}

// The root-login kill marker is 128 random bits, not derived from the pid or a counter: nobody on
// the server can predict it to have a timeout kill their processes, or to hide from it.
TEST_F(SessionTest, RootLoginRunMarkersAreRandom) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to log in as root";
  }
  SshdFixture::Options sshd_options;
  sshd_options.login_as_root = true;
  SshdFixture sshd(sshd_options);
  sshd.start();
  const auto ids = test::run_async(io_, run_ids(&sshd));
  ASSERT_EQ(ids.size(), 2U);
  for (const auto& id : ids) {
    ASSERT_EQ(id.size(), 33U) << id;
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), 32U) << id;
  }
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_EQ(ids[0].find(std::to_string(::getpid())), std::string::npos);
}

}  // namespace
}  // namespace healer

namespace healer {
namespace {

std::size_t open_fd_count() {
  std::size_t count = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++count;
  }
  return count;
}

asio::awaitable<int> connect_exec_close(ssh::Endpoint endpoint, ssh::ConnectOptions options,
                                        int sessions) {
  int ran = 0;
  for (int i = 0; i < sessions; ++i) {
    auto endpoint_copy = endpoint;
    auto options_copy = options;
    auto session = co_await ssh::Session::async_connect(
        std::move(endpoint_copy), std::move(options_copy), Deadline::after(10s));
    if (!session) {
      continue;
    }
    auto result = co_await session->async_exec("true", ssh::ExecOptions{}, Deadline::after(5s));
    ran += result ? 1 : 0;
    co_await session->async_close(Deadline::after(2s));
  }
  co_return ran;
}

// A closed session leaves no socket behind and tells the server goodbye, also after it ran a
// command (libssh keeps sockets given with SSH_OPTIONS_FD open and its disconnect message queued).
TEST_F(SessionTest, ClosedSessionsReleaseTheirSocketAndSayGoodbye) {
  SshdFixture sshd;
  sshd.start();
  // Warm up lazily created descriptors (resolver, loggers) before counting.
  ASSERT_EQ(test::run_async(io_, connect_exec_close(endpoint_of(sshd), options_for(sshd), 1)), 1);
  const std::size_t before = open_fd_count();
  EXPECT_EQ(test::run_async(io_, connect_exec_close(endpoint_of(sshd), options_for(sshd), 5)), 5);
  EXPECT_EQ(open_fd_count(), before);
  EXPECT_TRUE(sshd.wait_for_log("Received disconnect from", 6)) << sshd.log_text();
}

TEST_F(SessionTest, FailedConnectReleasesItsSocket) {
  SshdFixture sshd;
  sshd.start();
  sshd.regenerate_host_key();
  ASSERT_EQ(test::run_async(io_, connect_exec_close(endpoint_of(sshd), options_for(sshd), 1)), 0);
  const std::size_t before = open_fd_count();
  EXPECT_EQ(test::run_async(io_, connect_exec_close(endpoint_of(sshd), options_for(sshd), 5)), 0);
  EXPECT_EQ(open_fd_count(), before);
}

// A numeric address is connected without the resolver; a name still goes through it (and every
// address it gives is tried). Trust on first use records the key under the name the user gave.
TEST_F(SessionTest, AHostNameIsResolvedAndConnected) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir dir;
  auto options = options_for(sshd);
  options.known_hosts_file = (dir.path() / "known_hosts").string();
  options.host_key_policy = ssh::HostKeyPolicy::accept_new;
  const auto run = exec_with({"localhost", sshd.port()}, options, "echo by-name");
  ASSERT_TRUE(run.connected) << run.connected.error().message();
  ASSERT_TRUE(run.result) << run.result.error().message();
  EXPECT_EQ(run.result->out, "by-name\n");
  std::ifstream recorded(options.known_hosts_file);
  std::string line;
  std::getline(recorded, line);
  EXPECT_EQ(line.rfind("[localhost]:" + std::to_string(sshd.port()) + " ", 0), 0U) << line;
}

asio::awaitable<std::vector<Error>> refused_connects(ssh::Endpoint endpoint, int attempts) {
  std::vector<Error> errors;
  for (int i = 0; i < attempts; ++i) {
    ssh::ConnectOptions options;
    options.auth = ssh::AuthMethod::password;
    auto session = co_await ssh::Session::async_connect(endpoint, options, Deadline::after(5s));
    if (!session) {
      errors.push_back(session.error());
    }
  }
  co_return errors;
}

// The TCP connect runs on the socket libssh will get: when it fails, by number or by name, the
// socket is closed, not left to the session.
TEST_F(SessionTest, FailedTcpConnectsLeaveNoDescriptorBehind) {
  const auto port = test::closed_port();
  ASSERT_EQ(test::run_async(io_, refused_connects({"127.0.0.1", port}, 1)).size(), 1U);
  const std::size_t before = open_fd_count();
  for (const char* host : {"127.0.0.1", "localhost"}) {
    const auto errors = test::run_async(io_, refused_connects({host, port}, 5));
    ASSERT_EQ(errors.size(), 5U) << host;
    for (const auto& error : errors) {
      EXPECT_EQ(error.code, Errc::connect_refused) << host << ": " << error.message();
    }
  }
  EXPECT_EQ(open_fd_count(), before);
}

asio::awaitable<std::size_t> descriptors_with_open_sessions(ssh::Endpoint endpoint,
                                                            ssh::ConnectOptions options,
                                                            int sessions) {
  std::vector<ssh::Session> open;
  for (int i = 0; i < sessions; ++i) {
    auto session = co_await ssh::Session::async_connect(endpoint, options, Deadline::after(10s));
    if (!session) {
      ADD_FAILURE() << session.error().message();
      co_return 0;
    }
    EXPECT_TRUE(co_await session->async_exec("true", ssh::ExecOptions{}, Deadline::after(5s)));
    open.push_back(std::move(*session));
  }
  const std::size_t count = open_fd_count();
  for (auto& session : open) {
    co_await session.async_close(Deadline::after(2s));
  }
  co_return count;
}

// A pooled session costs one descriptor: the loop waits on libssh's own socket (10,000 sessions
// must fit a 20,000 descriptor limit).
TEST_F(SessionTest, AnOpenSessionHoldsOneDescriptor) {
  SshdFixture sshd;
  sshd.start();
  ASSERT_EQ(test::run_async(io_, connect_exec_close(endpoint_of(sshd), options_for(sshd), 1)), 1);
  const std::size_t before = open_fd_count();
  EXPECT_EQ(
      test::run_async(io_, descriptors_with_open_sessions(endpoint_of(sshd), options_for(sshd), 4)),
      before + 4);
  EXPECT_EQ(open_fd_count(), before);
}

struct DroppedRun {
  bool failed = false;
  std::size_t after_drop = 0;
  std::vector<int> pipes;  // opened after the drop, before the session is closed
};

asio::awaitable<DroppedRun> drop_then_take_free_numbers(SshdFixture* sshd,
                                                        ssh::ConnectOptions options) {
  DroppedRun run;
  auto session = co_await ssh::Session::async_connect(endpoint_of(*sshd), std::move(options),
                                                      Deadline::after(10s));
  if (!session) {
    ADD_FAILURE() << session.error().message();
    co_return run;
  }
  asio::co_spawn(co_await asio::this_coro::executor, kill_once_running(sshd, "sleep 4343"),
                 asio::detached);
  const auto result =
      co_await session->async_exec("sleep 4343", ssh::ExecOptions{}, Deadline::after(20s));
  run.failed = !result;
  run.after_drop = open_fd_count();
  // The lowest free numbers, the one the dropped socket had among them.
  for (int i = 0; i < 4; ++i) {
    int ends[2] = {-1, -1};
    if (::pipe(ends) == 0) {
      run.pipes.push_back(ends[0]);
      run.pipes.push_back(ends[1]);
    }
  }
  co_await session->async_close(Deadline::after(2s));
  co_return run;
}

// The server drops the connection: libssh closes its socket itself, the number is free at once.
// The session neither leaks the socket nor, when it is closed afterwards, closes whatever file
// took that number.
TEST_F(SessionTest, ADroppedConnectionLeavesAReusedNumberAlone) {
  SshdFixture sshd;
  sshd.start();
  ASSERT_EQ(test::run_async(io_, connect_exec_close(endpoint_of(sshd), options_for(sshd), 1)), 1);
  const std::size_t before = open_fd_count();
  const auto run = test::run_async(io_, drop_then_take_free_numbers(&sshd, options_for(sshd)));
  ASSERT_TRUE(run.failed);
  EXPECT_EQ(run.after_drop, before) << "the dropped socket is already gone";
  ASSERT_EQ(run.pipes.size(), 8u);
  for (std::size_t i = 0; i < run.pipes.size(); i += 2) {
    const char byte = 'x';
    char back = 0;
    EXPECT_EQ(::write(run.pipes[i + 1], &byte, 1), 1) << "fd " << run.pipes[i + 1];
    EXPECT_EQ(::read(run.pipes[i], &back, 1), 1) << "fd " << run.pipes[i];
    EXPECT_EQ(back, 'x');
    ::close(run.pipes[i]);
    ::close(run.pipes[i + 1]);
  }
  EXPECT_EQ(open_fd_count(), before);
}

}  // namespace
}  // namespace healer
