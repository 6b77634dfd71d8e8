#include "healer/core/config_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "healer/core/config_document.hpp"
#include "healer/core/config_loader.hpp"

namespace healer::config {
namespace {

namespace fs = std::filesystem;

// A config file larger than this is a mistake (--config /dev/zero), not a config.
constexpr std::size_t kMaxFileBytes = 1 << 20;

Error file_error(Errc code, std::string detail) {
  return Error{make_error_code(code), std::move(detail)};
}

// Closes a descriptor on every path out of read().
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

Result<std::string> read_regular_file(const fs::path& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return file_error(Errc::file_unreadable, path.string() + ": " + std::strerror(errno));
  }
  FdCloser closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return file_error(Errc::file_unreadable, path.string() + ": " + std::strerror(errno));
  }
  if (S_ISDIR(info.st_mode)) {
    return file_error(Errc::file_unreadable, path.string() + ": is a directory");
  }
  if (!S_ISREG(info.st_mode)) {
    return file_error(Errc::file_unreadable,
                      path.string() + ": not a regular file (a FIFO, socket or device)");
  }
  if (static_cast<std::uintmax_t>(info.st_size) > kMaxFileBytes) {
    return file_error(Errc::file_unreadable, path.string() + ": larger than 1 MiB");
  }
  std::string text;
  char buffer[16384];
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return file_error(Errc::file_unreadable, path.string() + ": " + std::strerror(errno));
    }
    if (got == 0) {
      break;
    }
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > kMaxFileBytes) {  // it grew while we read
      return file_error(Errc::file_unreadable, path.string() + ": larger than 1 MiB");
    }
  }
  return text;
}

// Edit distance of two short names, for "did you mean" hints.
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0U : 1U)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

Result<ConfigFile> ConfigFile::read(const fs::path& path) {
  auto text = read_regular_file(path);
  if (!text) {
    return std::move(text).error();
  }
  return parse(std::move(*text), path);
}

Result<ConfigFile> ConfigFile::parse(std::string text, fs::path origin) {
  auto document = std::make_shared<Document>();
  try {
    document->root = toml::parse(text, origin.string());
  } catch (const toml::parse_error& e) {
    return file_error(Errc::parse_error, origin.string() + " line " +
                                             std::to_string(e.source().begin.line) + " column " +
                                             std::to_string(e.source().begin.column) + ": " +
                                             std::string(e.description()));
  }
  return ConfigFile(std::move(document), std::move(origin));
}

Result<void> ConfigFile::check_tables(std::span<const std::string_view> known) const {
  for (const auto& [key, node] : document_->root) {
    const std::string_view name = key.str();
    if (std::find(known.begin(), known.end(), name) != known.end()) {
      continue;
    }
    std::string hint;
    std::size_t best = 3;  // hints further away than 2 edits are noise
    for (const auto candidate : known) {
      if (const auto d = distance(name, candidate); d < best) {
        best = d;
        hint = " (did you mean [" + std::string(candidate) + "]?)";
      }
    }
    std::string list;
    for (const auto candidate : known) {
      list += (list.empty() ? "" : ", ") + std::string(candidate);
    }
    return file_error(Errc::unknown_key, std::string(name) + " " + place(key.source().begin.line) +
                                             ": unknown setting or table" + hint +
                                             "; the file holds " + list);
  }
  return {};
}

std::string ConfigFile::place(std::size_t line) const {
  return "(" + path_.string() + " line " + std::to_string(line) + ")";
}

}  // namespace healer::config
