#include "healer/store/paths.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "healer/store/errors.hpp"

namespace healer::store {
namespace {

std::optional<std::string> env(const char* name) {
  if (const char* value = std::getenv(name); value != nullptr) {
    return std::string(value);
  }
  return std::nullopt;
}

// The passwd entry's home directory, for processes started without HOME.
std::optional<std::string> passwd_home() {
  long suggested = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(suggested > 0 ? static_cast<std::size_t>(suggested) : 16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(::geteuid(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr || found->pw_dir == nullptr) {
    return std::nullopt;
  }
  return std::string(found->pw_dir);
}

bool usable(const std::optional<std::string>& value) { return value && !value->empty(); }

}  // namespace

PathEnvironment PathEnvironment::current() {
  PathEnvironment environment;
  environment.healer_db = env("HEALER_DB");
  environment.xdg_data_home = env("XDG_DATA_HOME");
  environment.home = env("HOME");
  if (!usable(environment.home)) {
    environment.home = passwd_home();
  }
  return environment;
}

Result<std::filesystem::path> default_db_path(const PathEnvironment& env) {
  if (usable(env.healer_db)) {
    return std::filesystem::path(*env.healer_db);
  }
  // The XDG base directory spec: relative paths in XDG_DATA_HOME are invalid and ignored.
  if (usable(env.xdg_data_home) && std::filesystem::path(*env.xdg_data_home).is_absolute()) {
    return std::filesystem::path(*env.xdg_data_home) / "healer" / "healer.db";
  }
  if (usable(env.home)) {
    return std::filesystem::path(*env.home) / ".local" / "share" / "healer" / "healer.db";
  }
  return make_error(
      Errc::io, "cannot locate the database: set HEALER_DB, XDG_DATA_HOME or HOME, or pass --db");
}

std::filesystem::path default_key_file(const std::filesystem::path& db_path) {
  return db_path.parent_path() / "master.key";
}

}  // namespace healer::store
