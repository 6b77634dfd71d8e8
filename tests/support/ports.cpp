#include "ports.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace healer::test {

std::uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "socket");
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  // sockaddr_in -> sockaddr is the BSD socket API's own calling convention.
  auto* generic = reinterpret_cast<sockaddr*>(&address);
  if (::bind(fd, generic, sizeof(address)) != 0 || ::getsockname(fd, generic, &length) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::system_error(error, std::generic_category(), "bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

bool is_listening(std::uint16_t port) { return is_listening(port, "/proc/net/tcp"); }

bool is_listening(std::uint16_t port, const char* tcp_table) {
  // Rows look like "0: 0100007F:1F90 00000000:0000 0A ...": local address as hex IP (host byte
  // order) and hex port, then the remote address, then the state; 0A is TCP_LISTEN.
  std::ifstream table(tcp_table);
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream row(line);
    std::string slot;
    std::string local_address;
    std::string remote_address;
    std::string state;
    if (!(row >> slot >> local_address >> remote_address >> state)) {
      continue;
    }
    const auto colon = local_address.find(':');
    if (colon == std::string::npos || state != "0A") {
      continue;
    }
    const unsigned long local_port = std::stoul(local_address.substr(colon + 1), nullptr, 16);
    const unsigned long ip = std::stoul(local_address.substr(0, colon), nullptr, 16);
    // 127.0.0.1 as the kernel prints it on little-endian hosts, or 0.0.0.0 (any address).
    const bool loopback_or_any = ip == 0x0100007FUL || ip == 0;
    if (local_port == port && loopback_or_any) {
      return true;
    }
  }
  return false;
}

}  // namespace healer::test
