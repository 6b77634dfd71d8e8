#include "token.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "healer/service/errors.hpp"

namespace healer::daemon {

Result<std::string> load_or_create_token(const std::filesystem::path& path) {
  const auto failed = [&](const std::string& why) {
    return service::make_error(service::Errc::unavailable,
                               "API token file " + path.string() + ": " + why);
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    unsigned char random[32];
    randombytes_buf(random, sizeof random);
    char hex[sizeof random * 2 + 1];
    sodium_bin2hex(hex, sizeof hex, random, sizeof random);
    const int out =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
      return failed(std::strerror(errno));
    }
    const std::string text = std::string(hex) + "\n";
    const bool written =
        ::write(out, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(out);
    sodium_memzero(random, sizeof random);
    if (!written) {
      return failed("cannot write it");
    }
    return std::string(hex);
  }
  if (fd < 0) {
    return failed(std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return failed("not a regular file");
  }
  if ((info.st_mode & 077) != 0) {
    ::close(fd);
    return failed("readable or writable by group or others (chmod 600 it)");
  }
  char buffer[256];
  const ssize_t got = ::read(fd, buffer, sizeof buffer);
  ::close(fd);
  if (got <= 0) {
    return failed("empty or unreadable");
  }
  std::string token(buffer, static_cast<std::size_t>(got));
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.size() < 32 || token.find_first_of(" \t\r\n") != std::string::npos) {
    return failed("holds no token of at least 32 characters");
  }
  return token;
}

bool token_matches(std::string_view presented, std::string_view token) {
  if (presented.size() != token.size() || token.empty()) {
    return false;
  }
  return sodium_memcmp(presented.data(), token.data(), token.size()) == 0;
}

}  // namespace healer::daemon
