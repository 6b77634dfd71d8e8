#pragma once

// Helpers shared by the store tests: keys, file bytes and modes, scoped environment variables,
// and the two backends (a SQLite file, a schema on a real PostgreSQL server).

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "healer/store/master_key.hpp"
#include "healer/store/store.hpp"
#include "postgres_fixture.hpp"

namespace healer::store::test {

/// A deterministic key: 32 bytes of `byte` (hex form).
inline MasterKey key_of(unsigned char byte) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (int i = 0; i < 32; ++i) {
    hex += kHex[byte >> 4];
    hex += kHex[byte & 0x0f];
  }
  auto key = MasterKey::parse(hex, "test");
  if (!key) {
    throw std::logic_error("test key does not parse");
  }
  return *key;
}

/// Options for a database in `dir` with an explicit key (no environment, no key file).
inline StoreOptions options_in(const std::filesystem::path& dir, unsigned char key_byte = 1) {
  StoreOptions options;
  options.db_path = dir / "healer.db";
  options.master_key = key_of(key_byte);
  return options;
}

/// Which engine a parameterised store test runs on.
enum class Backend { sqlite, postgres };

/// "SQLite" / "PostgreSQL", for test names.
inline std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::sqlite ? "SQLite" : "PostgreSQL";
}

/// Options for a fresh database on `backend` with an explicit key: a file in `dir`, or a fresh
/// schema on the process's shared PostgreSQL server (started on first use).
inline StoreOptions backend_options(Backend backend, const std::filesystem::path& dir,
                                    unsigned char key_byte = 1) {
  if (backend == Backend::sqlite) {
    return options_in(dir, key_byte);
  }
  StoreOptions options;
  options.db_path = healer::test::PostgresFixture::shared().fresh_database_url();
  options.master_key = key_of(key_byte);
  return options;
}

/// Why `backend` cannot run here ("" when it can): the tests GTEST_SKIP with it.
inline std::string backend_unavailable(Backend backend) {
  return backend == Backend::postgres ? healer::test::PostgresFixture::unavailable_reason()
                                      : std::string();
}

/// The whole file as bytes ("" when missing).
inline std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Permission bits of a file, or -1 when it does not exist.
inline int file_mode(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return -1;
  }
  return static_cast<int>(info.st_mode & 07777);
}

/// Sets (or unsets, with nullopt) an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str()); old != nullptr) {
      old_ = old;
    }
    apply(value);
  }
  ~ScopedEnv() { apply(old_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void apply(const std::optional<std::string>& value) {
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace healer::store::test
