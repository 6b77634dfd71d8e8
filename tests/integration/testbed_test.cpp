// Tests of the test bed itself (tests/support): a real sshd driven with the OpenSSH client, the
// delay and blackhole proxies driven with plain sockets.

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "blackhole_proxy.hpp"
#include "child_process.hpp"
#include "delay_proxy.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "process_table.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer::test {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A connected or listening TCP socket on loopback, closed on destruction.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  return address;
}

// Connects to 127.0.0.1:port with a receive timeout, so a test never blocks forever on read.
Socket connect_to(std::uint16_t port, std::chrono::seconds receive_timeout = 5s) {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const timeval timeout{static_cast<time_t>(receive_timeout.count()), 0};
  ::setsockopt(socket.fd(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const int one = 1;
  ::setsockopt(socket.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in address = loopback(port);
  if (::connect(socket.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ADD_FAILURE() << "connect to port " << port
                  << " failed: " << std::system_category().message(errno);
  }
  return socket;
}

bool send_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
    if (sent <= 0) {
      return false;
    }
    data += sent;
    size -= static_cast<std::size_t>(sent);
  }
  return true;
}

// Reads until `size` bytes arrived, EOF, an error or the socket's receive timeout.
std::string receive(int fd, std::size_t size) {
  std::string received;
  std::array<char, 65536> buffer{};
  while (received.size() < size) {
    const ssize_t n = ::recv(fd, buffer.data(), std::min(buffer.size(), size - received.size()), 0);
    if (n <= 0) {
      break;
    }
    received.append(buffer.data(), static_cast<std::size_t>(n));
  }
  return received;
}

// Echoes every connection back until EOF, then half-closes: the far end of a DelayProxy.
class EchoServer {
 public:
  EchoServer() : listener_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address = loopback(0);
    socklen_t length = sizeof(address);
    auto* generic = reinterpret_cast<sockaddr*>(&address);
    if (::bind(listener_.fd(), generic, sizeof(address)) != 0 ||
        ::listen(listener_.fd(), 64) != 0 || ::getsockname(listener_.fd(), generic, &length) != 0) {
      throw std::runtime_error("echo server: cannot listen");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;
  ~EchoServer() {
    stopping_ = true;
    ::shutdown(listener_.fd(), SHUT_RDWR);  // wakes accept()
    thread_.join();
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  void serve() {
    std::vector<std::thread> connections;
    while (!stopping_) {
      const int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        break;
      }
      connections.emplace_back([fd] {
        Socket connection(fd);
        std::array<char, 65536> buffer{};
        for (;;) {
          const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
          if (n <= 0 || !send_all(fd, buffer.data(), static_cast<std::size_t>(n))) {
            break;
          }
        }
        ::shutdown(fd, SHUT_WR);
      });
    }
    for (auto& connection : connections) {
      connection.join();
    }
  }

  Socket listener_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// argv for the OpenSSH client against a port without a fixture (nothing will be verified).
std::vector<std::string> bare_ssh_argv(std::uint16_t port, const std::string& connect_timeout) {
  return {"/usr/bin/ssh",
          "-F",
          "/dev/null",
          "-o",
          "BatchMode=yes",
          "-o",
          "ConnectTimeout=" + connect_timeout,
          "-o",
          "StrictHostKeyChecking=yes",
          "-o",
          "UserKnownHostsFile=/dev/null",
          "-o",
          "GlobalKnownHostsFile=/dev/null",
          "-p",
          std::to_string(port),
          "nobody@127.0.0.1",
          "true"};
}

bool contains(const std::string& text, std::string_view needle) {
  return text.find(needle) != std::string::npos;
}

// A remote command unique to this process and call: `sleep 31337.<pid><n>` is still a valid
// sleep, and no leftover of another test matches it.
std::string sleep_marker() {
  static int calls = 0;
  return fmt::format("sleep 31337.{}{:03}", ::getpid(), ++calls);
}

// Kills the server-side processes matching a marker when the test ends, however it ends. Declare
// it after the client: it must run while the session is alive, because a remote command that
// outlives its session is reparented to init and no longer ends with sshd.
class RemoteCleanup {
 public:
  RemoteCleanup(const SshdFixture& sshd, std::string marker)
      : sshd_(sshd), marker_(std::move(marker)) {}
  RemoteCleanup(const RemoteCleanup&) = delete;
  RemoteCleanup& operator=(const RemoteCleanup&) = delete;
  ~RemoteCleanup() { sshd_.kill_remote_processes_matching(marker_); }

 private:
  const SshdFixture& sshd_;
  std::string marker_;
};

// --- TempDir ----------------------------------------------------------------------------------

TEST(TempDirTest, CreatesAPrivateDirectoryAndRemovesItWithItsContents) {
  std::filesystem::path kept;
  {
    TempDir dir;
    kept = dir.path();
    ASSERT_TRUE(std::filesystem::is_directory(kept));
    EXPECT_EQ(std::filesystem::status(kept).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_all);
    std::filesystem::create_directories(kept / "a" / "b");
    std::ofstream(kept / "a" / "b" / "file") << "x";
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
}

TEST(TempDirTest, MoveTransfersOwnership) {
  TempDir first;
  const std::filesystem::path path = first.path();
  TempDir second(std::move(first));
  EXPECT_TRUE(
      first.path().empty());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_EQ(second.path(), path);
  EXPECT_TRUE(std::filesystem::is_directory(path));
}

// --- SshdFixture ------------------------------------------------------------------------------

TEST(SshdFixtureTest, RunsACommandAndCountsOneLogin) {
  SshdFixture sshd;
  sshd.start();
  EXPECT_GT(sshd.pid(), 0);
  EXPECT_EQ(sshd.port(), sshd.sshd_port());
  EXPECT_EQ(sshd.host(), "127.0.0.1");

  const CommandOutput result = run_command(sshd.ssh_argv("echo hi"));
  ASSERT_EQ(result.exit_code(), 0) << result.err;
  EXPECT_EQ(result.out, "hi\n");

  ASSERT_TRUE(sshd.wait_for_log("Starting session: "));
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_EQ(sshd.connection_count(), 1U);
  EXPECT_EQ(sshd.session_open_count(), 1U);
  EXPECT_EQ(sshd.failed_auth_count(), 0U);
  EXPECT_TRUE(contains(sshd.log_text(), "Accepted publickey for " + sshd.user()));
}

TEST(SshdFixtureTest, KnownHostsNamesTheClientVisiblePort) {
  SshdFixture sshd;
  sshd.start();
  std::ifstream known_hosts(sshd.known_hosts_path());
  std::string host_pattern;
  std::string key_type;
  known_hosts >> host_pattern >> key_type;
  EXPECT_EQ(host_pattern, fmt::format("[127.0.0.1]:{}", sshd.port()));
  EXPECT_EQ(key_type, "ssh-ed25519");
}

TEST(SshdFixtureTest, RemoteCommandsRunWithTheEmptyTestHome) {
  SshdFixture sshd;
  sshd.start();
  const CommandOutput result = run_command(sshd.ssh_argv("echo \"$HOME\"; whoami"));
  ASSERT_EQ(result.exit_code(), 0) << result.err;
  EXPECT_EQ(result.out, sshd.home_dir().string() + "\n" + sshd.user() + "\n");
}

TEST(SshdFixtureTest, KeyMissingFromAuthorizedKeysIsRejected) {
  SshdFixture sshd;
  sshd.start();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);

  const CommandOutput result = run_command(sshd.ssh_argv("true", {}, stranger.private_key));
  EXPECT_EQ(result.exit_code(), 255);
  EXPECT_TRUE(contains(result.err, "Permission denied")) << result.err;

  // The OpenSSH client only queries a key (no signature) until the server accepts it; sshd
  // logs a rejected query as "Failed publickey" too.
  ASSERT_TRUE(sshd.wait_for_log("Failed publickey for "));
  EXPECT_EQ(sshd.failed_auth_count(), 1U);
  EXPECT_EQ(sshd.accepted_auth_count(), 0U);
}

TEST(SshdFixtureTest, ExtraClientKeysOfEveryTypeAuthenticate) {
  SshdFixture sshd;
  sshd.start();
  for (const auto type : {SshdFixture::KeyType::ecdsa, SshdFixture::KeyType::rsa}) {
    const auto key = sshd.add_client_key(type);
    const CommandOutput result = run_command(sshd.ssh_argv("echo ok", {}, key.private_key));
    EXPECT_EQ(result.exit_code(), 0) << result.err;
    EXPECT_EQ(result.out, "ok\n");
  }
  EXPECT_EQ(sshd.accepted_auth_count(), 2U);
}

TEST(SshdFixtureTest, PassphraseProtectsAnExtraKey) {
  SshdFixture sshd;
  const auto key = sshd.add_client_key(SshdFixture::KeyType::ed25519, "correct horse");
  const auto with = [&](const char* passphrase) {
    return run_command(
               {"/usr/bin/ssh-keygen", "-y", "-P", passphrase, "-f", key.private_key.string()})
        .exit_code();
  };
  EXPECT_EQ(with("correct horse"), 0);
  EXPECT_NE(with("wrong"), 0);
}

TEST(SshdFixtureTest, RegeneratedHostKeyFailsVerificationUntilTrusted) {
  SshdFixture sshd;
  sshd.start();
  const auto port = sshd.port();
  sshd.regenerate_host_key();
  EXPECT_EQ(sshd.port(), port);

  const CommandOutput changed = run_command(sshd.ssh_argv("true"));
  EXPECT_EQ(changed.exit_code(), 255);
  EXPECT_TRUE(contains(changed.err, "Host key verification failed")) << changed.err;

  sshd.trust_current_host_key();
  const CommandOutput trusted = run_command(sshd.ssh_argv("true"));
  EXPECT_EQ(trusted.exit_code(), 0) << trusted.err;
}

TEST(SshdFixtureTest, OptionsReachTheEffectiveConfig) {
  SshdFixture::Options options;
  options.max_sessions = 3;
  options.max_startups = "2:50:4";
  options.per_source_max_startups = 5;
  options.max_auth_tries = 2;
  options.extra_config = {"LoginGraceTime 7", "MaxSessions 4", "Match User nobody",
                          "  MaxSessions 1"};
  SshdFixture sshd(options);
  sshd.start();

  // sshd -T prints the configuration sshd actually uses, lower-cased keywords.
  const CommandOutput effective =
      run_command({"/usr/sbin/sshd", "-T", "-f", sshd.config_path().string()});
  ASSERT_EQ(effective.exit_code(), 0) << effective.err;
  const std::string& config = effective.out;
  EXPECT_TRUE(contains(config, "\nmaxsessions 4\n")) << "extra lines override the options";
  EXPECT_TRUE(contains(config, "\nmaxstartups 2:50:4\n"));
  EXPECT_TRUE(contains(config, "\npersourcemaxstartups 5\n"));
  EXPECT_TRUE(contains(config, "\nmaxauthtries 2\n"));
  EXPECT_TRUE(contains(config, "\nlogingracetime 7\n"));
  EXPECT_TRUE(contains(config, "\nloglevel VERBOSE\n"));
  EXPECT_TRUE(contains(config, "\npasswordauthentication no\n"));
  EXPECT_TRUE(contains(config, "\nsetenv HOME=" + sshd.home_dir().string() + "\n"));
}

TEST(SshdFixtureTest, MaxStartupsDropsTheExtraUnauthenticatedConnection) {
  SshdFixture::Options options;
  options.max_startups = "1";
  SshdFixture sshd(options);
  sshd.start();

  const Socket first = connect_to(sshd.port());
  ASSERT_TRUE(sshd.wait_for_log("Connection from "));
  const Socket second = connect_to(sshd.port());
  EXPECT_TRUE(contains(receive(second.fd(), 4096), "Exceeded MaxStartups"));

  ASSERT_TRUE(sshd.wait_for_log("drop connection #"));
  EXPECT_EQ(sshd.dropped_startup_count(), 1U);
  EXPECT_EQ(sshd.connection_count(), 1U);
}

TEST(SshdFixtureTest, RestartKeepsThePortAndTheHostKey) {
  SshdFixture sshd;
  sshd.start();
  const auto port = sshd.port();
  const auto first_pid = sshd.pid();
  sshd.restart();
  EXPECT_EQ(sshd.port(), port);
  EXPECT_NE(sshd.pid(), first_pid);
  EXPECT_TRUE(process_gone(first_pid));
  EXPECT_EQ(sshd.count_in_log("Server listening on "), 2U);

  const CommandOutput result = run_command(sshd.ssh_argv("echo again"));
  EXPECT_EQ(result.exit_code(), 0) << result.err;
  EXPECT_EQ(result.out, "again\n");
}

TEST(SshdFixtureTest, KillDropsAnEstablishedSessionAndItsCommand) {
  SshdFixture sshd;
  sshd.start();
  const std::string marker = sleep_marker();
  ChildProcess client = ChildProcess::spawn(sshd.ssh_argv(marker));
  const RemoteCleanup cleanup(sshd, marker);
  // One or two processes: dash (the test user's shell) forks for `sh -c CMD` where bash execs.
  ASSERT_TRUE(poll_until([&] { return sshd.remote_processes_matching(marker) >= 1; }, 5s));

  sshd.kill();
  EXPECT_FALSE(sshd.running());
  const auto status = client.wait_for_exit(5s);
  ASSERT_TRUE(status.has_value()) << "the client did not notice the dead server";
  EXPECT_EQ(status->exit_code, 255);
  EXPECT_EQ(sshd.remote_processes_matching(marker), 0U);

  sshd.start();
  EXPECT_EQ(run_command(sshd.ssh_argv("true")).exit_code(), 0);
}

TEST(SshdFixtureTest, PauseStopsTheListenerOnly) {
  SshdFixture sshd;
  sshd.start();
  sshd.pause();
  EXPECT_TRUE(process_stopped(sshd.pid()));
  // The kernel completes the TCP handshake, but the stopped listener never answers.
  const CommandOutput frozen = run_command(sshd.ssh_argv("true", {"-o", "ConnectTimeout=1"}));
  EXPECT_EQ(frozen.exit_code(), 255);
  EXPECT_TRUE(contains(frozen.err, "timed out")) << frozen.err;

  sshd.resume();
  EXPECT_FALSE(process_stopped(sshd.pid()));
  const CommandOutput thawed = run_command(sshd.ssh_argv("true"));
  EXPECT_EQ(thawed.exit_code(), 0) << thawed.err;
}

TEST(SshdFixtureTest, PauseAllFreezesEstablishedConnections) {
  SshdFixture sshd;
  sshd.start();
  const std::string marker = sleep_marker();
  ChildProcess client = ChildProcess::spawn(sshd.ssh_argv(marker));
  const RemoteCleanup cleanup(sshd, marker);
  // One or two processes: dash (the test user's shell) forks for `sh -c CMD` where bash execs.
  ASSERT_TRUE(poll_until([&] { return sshd.remote_processes_matching(marker) >= 1; }, 5s));
  const auto server = sshd.server_processes();
  // The listener, the connection's sshd (no separate unprivileged child for a root login) and
  // the command.
  ASSERT_GE(server.size(), 3U);

  sshd.pause_all();
  for (const pid_t member : server) {
    EXPECT_TRUE(process_stopped(member) || process_gone(member)) << "pid " << member;
  }
  sshd.resume_all();
  for (const pid_t member : server) {
    EXPECT_FALSE(process_stopped(member)) << "pid " << member;
  }

  // stop() ends the remote command with its session, and the client with them.
  sshd.stop();
  EXPECT_EQ(sshd.remote_processes_matching(marker), 0U);
  EXPECT_TRUE(client.wait_for_exit(5s).has_value());
}

TEST(SshdFixtureTest, FindsAndKillsADetachedRemoteProcess) {
  SshdFixture sshd;
  sshd.start();
  const std::string marker = sleep_marker();
  EXPECT_EQ(sshd.remote_processes_matching(marker), 0U);
  const RemoteCleanup cleanup(sshd, marker);

  // Detached: the session ends at once and the sleep is reparented away from sshd.
  const CommandOutput result = run_command(sshd.ssh_argv(marker + " >/dev/null 2>&1 </dev/null &"));
  ASSERT_EQ(result.exit_code(), 0) << result.err;
  // One or two processes: dash (the test user's shell) forks for `sh -c CMD` where bash execs.
  ASSERT_TRUE(poll_until([&] { return sshd.remote_processes_matching(marker) >= 1; }, 5s));

  EXPECT_EQ(sshd.kill_remote_processes_matching(marker), 1U);
  EXPECT_TRUE(poll_until([&] { return sshd.remote_processes_matching(marker) == 0; }, 5s));
}

TEST(SshdFixtureTest, RttOptionPutsADelayProxyInFront) {
  constexpr auto kRtt = 50ms;
  SshdFixture::Options options;
  options.rtt = kRtt;
  SshdFixture sshd(options);
  sshd.start();
  ASSERT_NE(sshd.delay_proxy(), nullptr);
  EXPECT_NE(sshd.port(), sshd.sshd_port());

  const CommandOutput result = run_command(sshd.ssh_argv("true"));
  ASSERT_EQ(result.exit_code(), 0) << result.err;
  // Banner, key exchange, auth query, signature, channel open and exec each wait a round trip
  // at least; a lower bound only, so a slow machine cannot make it flaky.
  EXPECT_GE(result.elapsed, 4 * kRtt);
  EXPECT_EQ(sshd.delay_proxy()->accepted_count(), 1U);
  EXPECT_EQ(sshd.connection_count(), 1U);
}

// --- DelayProxy -------------------------------------------------------------------------------

TEST(DelayProxyTest, RoundTripTakesAtLeastTheRtt) {
  EchoServer echo;
  DelayProxy proxy(DelayProxy::for_rtt(echo.port(), 100ms));
  proxy.start();
  const Socket client = connect_to(proxy.port());

  const auto sent = Clock::now();
  ASSERT_TRUE(send_all(client.fd(), "ping", 4));
  EXPECT_EQ(receive(client.fd(), 4), "ping");
  EXPECT_GE(Clock::now() - sent, 100ms);
  EXPECT_EQ(proxy.accepted_count(), 1U);
}

TEST(DelayProxyTest, DelaysDoNotAddUpAcrossChunks) {
  EchoServer echo;
  DelayProxy proxy(DelayProxy::for_rtt(echo.port(), 100ms));
  proxy.start();
  const Socket client = connect_to(proxy.port());

  // 50 writes back to back: all arrive about one RTT later, not 50 RTTs later.
  constexpr std::size_t kWrites = 50;
  const std::string chunk(1000, 'x');
  const auto sent = Clock::now();
  for (std::size_t i = 0; i < kWrites; ++i) {
    ASSERT_TRUE(send_all(client.fd(), chunk.data(), chunk.size()));
  }
  EXPECT_EQ(receive(client.fd(), kWrites * chunk.size()).size(), kWrites * chunk.size());
  const auto elapsed = Clock::now() - sent;
  EXPECT_GE(elapsed, 100ms);
  EXPECT_LT(elapsed, 2500ms) << "per-chunk delays added up";
}

TEST(DelayProxyTest, RelaysALargeTransferIntactAndForwardsHalfClose) {
  EchoServer echo;
  DelayProxy::Options options = DelayProxy::for_rtt(echo.port(), 10ms);
  options.max_in_flight_bytes = std::size_t{256} * 1024;  // small, so back-pressure is exercised
  DelayProxy proxy(options);
  proxy.start();
  const Socket client = connect_to(proxy.port());

  std::string payload(std::size_t{8} * 1024 * 1024, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  }
  // Write on a thread while reading here: the echo would otherwise stall on full buffers.
  std::thread writer([&] {
    send_all(client.fd(), payload.data(), payload.size());
    ::shutdown(client.fd(), SHUT_WR);
  });
  const std::string echoed = receive(client.fd(), payload.size() + 1);
  writer.join();
  EXPECT_EQ(echoed.size(), payload.size());
  EXPECT_TRUE(echoed == payload) << "the relayed bytes differ";
  // receive() stopped at EOF: the client's half-close reached the server and came back.
  std::array<char, 1> extra{};
  EXPECT_EQ(::recv(client.fd(), extra.data(), extra.size(), 0), 0);
}

TEST(DelayProxyTest, RefusedTargetResetsTheClient) {
  DelayProxy proxy(DelayProxy::for_rtt(closed_port(), 0ms));
  proxy.start();
  const Socket client = connect_to(proxy.port());
  std::array<char, 16> buffer{};
  EXPECT_LE(::recv(client.fd(), buffer.data(), buffer.size(), 0), 0);
  EXPECT_TRUE(poll_until([&] { return proxy.active_count() == 0; }, 5s));
}

TEST(DelayProxyTest, StopClosesRelayedConnections) {
  EchoServer echo;
  DelayProxy proxy(DelayProxy::for_rtt(echo.port(), 0ms));
  proxy.start();
  const Socket client = connect_to(proxy.port());
  ASSERT_TRUE(send_all(client.fd(), "x", 1));
  EXPECT_EQ(receive(client.fd(), 1), "x");
  proxy.stop();
  std::array<char, 16> buffer{};
  EXPECT_LE(::recv(client.fd(), buffer.data(), buffer.size(), 0), 0);
  EXPECT_EQ(proxy.active_count(), 0U);
}

// --- BlackholeProxy and closed ports ----------------------------------------------------------

TEST(BlackholeProxyTest, SshTimesOutWaitingForTheBanner) {
  BlackholeProxy blackhole;
  blackhole.start();
  const CommandOutput result = run_command(bare_ssh_argv(blackhole.port(), "1"));
  EXPECT_EQ(result.exit_code(), 255);
  EXPECT_TRUE(contains(result.err, "timed out")) << result.err;
  EXPECT_GE(result.elapsed, 1000ms);
  EXPECT_EQ(blackhole.accepted_count(), 1U);
}

TEST(ClosedPortTest, SshIsRefused) {
  const CommandOutput result = run_command(bare_ssh_argv(closed_port(), "1"));
  EXPECT_EQ(result.exit_code(), 255);
  EXPECT_TRUE(contains(result.err, "Connection refused")) << result.err;
}

}  // namespace
}  // namespace healer::test
