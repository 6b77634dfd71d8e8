#include "agent_filter.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>

#include "healer/ssh/errors.hpp"

namespace healer::ssh::detail {
namespace {

// ssh-agent protocol (draft-miller-ssh-agent) message numbers.
constexpr std::uint8_t kAgentFailure = 5;
constexpr std::uint8_t kRequestIdentities = 11;
constexpr std::uint8_t kIdentitiesAnswer = 12;
constexpr std::uint8_t kSignRequest = 13;
constexpr std::uint32_t kMaxMessage = 256 * 1024;

bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool read_exact(int fd, char* out, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, out + done, size - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::uint32_t load_u32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
         std::uint32_t{u[3]};
}

void store_u32(std::string& out, std::uint32_t value) {
  out.push_back(static_cast<char>((value >> 24) & 0xff));
  out.push_back(static_cast<char>((value >> 16) & 0xff));
  out.push_back(static_cast<char>((value >> 8) & 0xff));
  out.push_back(static_cast<char>(value & 0xff));
}

// One framed message (type byte + payload, without the length prefix).
std::optional<std::string> read_message(int fd) {
  std::array<char, 4> length{};
  if (!read_exact(fd, length.data(), length.size())) {
    return std::nullopt;
  }
  const std::uint32_t size = load_u32(length.data());
  if (size == 0 || size > kMaxMessage) {
    return std::nullopt;
  }
  std::string body(size, '\0');
  if (!read_exact(fd, body.data(), body.size())) {
    return std::nullopt;
  }
  return body;
}

std::string frame(const std::string& body) {
  std::string out;
  store_u32(out, static_cast<std::uint32_t>(body.size()));
  out += body;
  return out;
}

// Reads an SSH string at `pos`; advances pos. nullopt when malformed.
std::optional<std::string_view> read_string(std::string_view body, std::size_t& pos) {
  if (body.size() - pos < 4) {
    return std::nullopt;
  }
  const std::uint32_t size = load_u32(body.data() + pos);
  pos += 4;
  if (body.size() - pos < size) {
    return std::nullopt;
  }
  const auto value = body.substr(pos, size);
  pos += size;
  return value;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const auto n = (std::uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                   (std::uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                   std::uint32_t{static_cast<unsigned char>(bytes[i + 2])};
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i < bytes.size()) {
    std::uint32_t n = std::uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    const bool two = i + 1 < bytes.size();
    if (two) {
      n |= std::uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8;
    }
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += two ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

AgentFilter::~AgentFilter() { stop(); }

Result<int> AgentFilter::start(const std::string& agent_socket, std::string allowed_key_base64) {
  allowed_key_base64_ = std::move(allowed_key_base64);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (agent_socket.empty() || agent_socket.size() >= sizeof(address.sun_path)) {
    return make_error(Errc::auth_failed,
                      "no usable ssh-agent socket (set SSH_AUTH_SOCK or the agent socket path)");
  }
  std::memcpy(address.sun_path, agent_socket.c_str(), agent_socket.size() + 1);
  agent_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (agent_fd_ < 0 ||
      ::connect(agent_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    stop();
    return make_error(Errc::auth_failed, fmt::format("cannot reach ssh-agent at {}: {}",
                                                     agent_socket, std::strerror(error)));
  }
  std::array<int, 2> pair{-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair.data()) != 0) {
    stop();
    return make_error(Errc::protocol, "socketpair() failed");
  }
  relay_fd_ = pair[0];
  thread_ = std::thread([this] { serve(); });
  return pair[1];
}

void AgentFilter::stop() {
  if (relay_fd_ >= 0) {
    ::shutdown(relay_fd_, SHUT_RDWR);  // wakes the thread's blocking read
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  for (int* fd : {&relay_fd_, &agent_fd_}) {
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  }
}

void AgentFilter::serve() {
  for (;;) {
    auto request = read_message(relay_fd_);
    if (!request) {
      return;
    }
    const auto type = static_cast<std::uint8_t>((*request)[0]);
    if (type == kSignRequest) {
      std::size_t pos = 1;
      const auto blob = read_string(*request, pos);
      if (!blob || base64_encode(*blob) != allowed_key_base64_) {
        if (!write_all(relay_fd_, frame(std::string(1, static_cast<char>(kAgentFailure))))) {
          return;
        }
        continue;
      }
    }
    if (!write_all(agent_fd_, frame(*request))) {
      return;
    }
    auto reply = read_message(agent_fd_);
    if (!reply) {
      return;
    }
    if (type == kRequestIdentities && static_cast<std::uint8_t>((*reply)[0]) == kIdentitiesAnswer &&
        reply->size() >= 5) {
      const std::uint32_t count = load_u32(reply->data() + 1);
      std::size_t pos = 5;
      std::string kept;
      std::uint32_t kept_count = 0;
      for (std::uint32_t i = 0; i < count; ++i) {
        const std::size_t start = pos;
        const auto blob = read_string(*reply, pos);
        const auto comment = blob ? read_string(*reply, pos) : std::nullopt;
        if (!blob || !comment) {
          break;
        }
        if (base64_encode(*blob) == allowed_key_base64_) {
          kept.append(*reply, start, pos - start);
          ++kept_count;
        }
      }
      std::string filtered(1, static_cast<char>(kIdentitiesAnswer));
      store_u32(filtered, kept_count);
      filtered += kept;
      reply = std::move(filtered);
    }
    if (!write_all(relay_fd_, frame(*reply))) {
      return;
    }
  }
}

}  // namespace healer::ssh::detail
