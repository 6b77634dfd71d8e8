#pragma once

#include <filesystem>
#include <string_view>

namespace healer::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it when destroyed.
/// Move-only; a moved-from TempDir owns nothing.
class TempDir {
 public:
  /// Creates `<TMPDIR>/<prefix>XXXXXX` with mode 0700; throws std::system_error on failure.
  explicit TempDir(std::string_view prefix = "healer-test-");
  ~TempDir();

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;

  /// The absolute path of the directory (empty after a move).
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void remove() noexcept;

  std::filesystem::path path_;
};

}  // namespace healer::test
