// The packet-level delayed link (tests/support/netdelay): a real namespace, veth pair, NFQUEUE
// program and sshd inside it. Skipped without root or without NFQUEUE support.

#include "packet_link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "child_process.hpp"
#include "poll_until.hpp"
#include "sshd_fixture.hpp"

namespace healer::test {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

#define SKIP_WITHOUT_PACKET_LINK()                           \
  do {                                                       \
    if (const auto why = PacketLink::unavailable_reason()) { \
      GTEST_SKIP() << *why;                                  \
    }                                                        \
  } while (false)

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool interface_exists(const std::string& name) { return ::if_nametoindex(name.c_str()) != 0; }

// A blocking TCP connect to address:port: the time it took, and the first bytes the server sent
// (sshd's banner) within 5 s; nullopt when the connection failed.
struct Connected {
  milliseconds connect_time{0};
  std::string first_bytes;
};
std::optional<Connected> connect_and_read(const std::string& address, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return std::nullopt;
  }
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &target.sin_addr);
  const auto start = Clock::now();
  // sockaddr_in -> sockaddr is the socket API's own calling convention.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) {
    ::close(fd);
    return std::nullopt;
  }
  Connected out;
  out.connect_time = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  pollfd readable{fd, POLLIN, 0};
  if (::poll(&readable, 1, 5000) == 1) {
    std::array<char, 256> buffer{};
    const ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got > 0) {
      out.first_bytes.assign(buffer.data(), static_cast<std::size_t>(got));
    }
  }
  ::close(fd);
  return out;
}

TEST(PacketLinkTest, TcpHandshakeAndSshCrossTheDelayedLink) {
  SKIP_WITHOUT_PACKET_LINK();
  const auto link = std::make_shared<PacketLink>(60ms);
  SshdFixture::Options options;
  options.packet_link = link;
  SshdFixture sshd(options);
  sshd.start();
  EXPECT_EQ(sshd.host(), link->server_address());

  // connect() returns after SYN -> SYN-ACK: one round trip, which the link delays by 60 ms (on
  // loopback it takes ~0.1 ms). A lower bound only: a busy machine can add, never remove.
  const auto direct = connect_and_read(link->server_address(), sshd.port());
  ASSERT_TRUE(direct.has_value());
  EXPECT_GE(direct->connect_time, 60ms);
  EXPECT_EQ(direct->first_bytes.rfind("SSH-2.0-", 0), 0U) << direct->first_bytes;

  // Any address of the namespace's /17 reaches the same sshd (fleets of "servers").
  const auto fleet_host = connect_and_read(link->host_address(300), sshd.port());
  ASSERT_TRUE(fleet_host.has_value());
  EXPECT_EQ(fleet_host->first_bytes.rfind("SSH-2.0-", 0), 0U) << fleet_host->first_bytes;

  // A whole SSH login and command through it.
  const auto ssh = run_command(sshd.ssh_argv("echo through-the-link"), 20s);
  EXPECT_EQ(ssh.exit_code(), 0) << ssh.err;
  EXPECT_EQ(ssh.out, "through-the-link\n");

  sshd.stop();
  link->stop();
  // The program's counters: packets crossed both ways, none dropped by the kernel.
  const std::string log = read_file(link->log_path());
  EXPECT_NE(log.find("packets to the server"), std::string::npos) << log;
  EXPECT_EQ(log.find(" 0 packets to the server"), std::string::npos) << log;
  EXPECT_EQ(log.find(" 0 to the client"), std::string::npos) << log;
  EXPECT_NE(log.find("kernel drops: 0 queue full"), std::string::npos) << log;
}

TEST(PacketLinkTest, StopRemovesTheVethPairAndItsRoute) {
  SKIP_WITHOUT_PACKET_LINK();
  PacketLink link(10ms);
  const std::string root_if = link.root_interface();
  ASSERT_TRUE(interface_exists(root_if));
  link.stop();
  EXPECT_FALSE(link.running());
  EXPECT_FALSE(interface_exists(root_if));
  // The server address is unreachable now: no route, so connect fails at once.
  EXPECT_FALSE(connect_and_read(link.server_address(), 22).has_value());
}

TEST(PacketLinkTest, KilledLinkIsRemovedWithTheLastProcessInItsNamespace) {
  SKIP_WITHOUT_PACKET_LINK();
  const auto link = std::make_shared<PacketLink>(10ms);
  const std::string root_if = link->root_interface();
  SshdFixture::Options options;
  options.packet_link = link;
  SshdFixture sshd(options);
  sshd.start();
  // SIGKILL: no cleanup code runs. sshd still holds the namespace, so the pair stays...
  ASSERT_EQ(::kill(link->pid(), SIGKILL), 0);
  ASSERT_TRUE(poll_until([&] { return !link->running(); }, 5s));
  EXPECT_TRUE(interface_exists(root_if));
  // ...until sshd, the last process in it, exits: the kernel removes namespace, rules and pair.
  sshd.stop();
  EXPECT_TRUE(poll_until([&] { return !interface_exists(root_if); }, 5s));
}

TEST(PacketLinkTest, LinkStopsWhenItsOwnerDiesWithoutStoppingIt) {
  SKIP_WITHOUT_PACKET_LINK();
  std::array<int, 2> report{-1, -1};
  ASSERT_EQ(::pipe2(report.data(), O_CLOEXEC), 0);
  const pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    // The owner starts a link, says which interface and log directory it has, and dies.
    auto* link = new PacketLink(10ms);  // never deleted: the process dies under it
    const std::string message =
        link->root_interface() + "\n" + link->log_path().parent_path().string() + "\n";
    const auto written = ::write(report[1], message.data(), message.size());
    ::_exit(written == static_cast<ssize_t>(message.size()) ? 0 : 1);
  }
  ::close(report[1]);
  std::string message;
  std::array<char, 512> buffer{};
  for (ssize_t got = 0; (got = ::read(report[0], buffer.data(), buffer.size())) > 0;) {
    message.append(buffer.data(), static_cast<std::size_t>(got));
  }
  ::close(report[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(owner, &status, 0), owner);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << message;
  const auto newline = message.find('\n');
  ASSERT_NE(newline, std::string::npos);
  const std::string root_if = message.substr(0, newline);
  const std::filesystem::path log_dir = message.substr(newline + 1, message.size() - newline - 2);
  // Its stdin closed (and PR_SET_PDEATHSIG): it deletes the pair and exits by itself.
  EXPECT_TRUE(poll_until([&] { return !interface_exists(root_if); }, 5s));
  EXPECT_TRUE(poll_until(
      [&] {
        return read_file(log_dir / "netdelay.log").find("packets to the server") !=
               std::string::npos;
      },
      5s));
  std::filesystem::remove_all(log_dir);
}

TEST(PacketLinkTest, ConcurrentLinksGetTheirOwnAddresses) {
  SKIP_WITHOUT_PACKET_LINK();
  PacketLink first(10ms);
  PacketLink second(20ms);
  EXPECT_NE(first.server_address(), second.server_address());
  EXPECT_NE(first.root_interface(), second.root_interface());
  EXPECT_NE(first.host_address(0), second.host_address(0));
  EXPECT_EQ(second.rtt(), 20ms);
}

TEST(PacketLinkTest, HostAddressesStayInsideTheNamespacesRange) {
  SKIP_WITHOUT_PACKET_LINK();
  PacketLink link(0ms);
  const std::string prefix = link.server_address().substr(0, link.server_address().rfind(".0."));
  EXPECT_EQ(link.host_address(0), prefix + ".128.1");
  EXPECT_EQ(link.host_address(253), prefix + ".128.254");
  EXPECT_EQ(link.host_address(254), prefix + ".129.1");
  EXPECT_THROW((void)link.host_address(PacketLink::kHostAddresses), std::out_of_range);
}

}  // namespace
}  // namespace healer::test
