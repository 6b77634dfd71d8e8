#include "temp_dir.hpp"

#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace healer::test {

TempDir::TempDir(std::string_view prefix) {
  const char* env_tmp = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): no setenv here
  std::filesystem::path base = (env_tmp != nullptr && *env_tmp != '\0') ? env_tmp : "/tmp";
  std::string pattern = (base / std::string(prefix)).string() + "XXXXXX";
  // mkdtemp edits the template in place, so it needs a writable, NUL-terminated buffer.
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  }
  path_ = std::filesystem::absolute(std::filesystem::path(buffer.data()));
}

TempDir::~TempDir() { remove(); }

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    remove();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

void TempDir::remove() noexcept {
  if (path_.empty()) {
    return;
  }
  // Best effort: a destructor must not throw, and a leftover temp dir is only litter.
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
  path_.clear();
}

}  // namespace healer::test
