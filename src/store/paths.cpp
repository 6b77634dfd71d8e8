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

// $XDG_DATA_HOME/healer, else ~/.local/share/healer. The XDG base directory spec: relative paths
// in XDG_DATA_HOME are invalid and ignored.
std::optional<std::filesystem::path> data_directory(const PathEnvironment& env) {
  if (usable(env.xdg_data_home) && std::filesystem::path(*env.xdg_data_home).is_absolute()) {
    return std::filesystem::path(*env.xdg_data_home) / "healer";
  }
  if (usable(env.home)) {
    return std::filesystem::path(*env.home) / ".local" / "share" / "healer";
  }
  return std::nullopt;
}

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
  auto directory = data_directory(env);
  if (!directory) {
    return make_error(Errc::io,
                      "cannot locate the database: set HEALER_DB, XDG_DATA_HOME or HOME, or pass "
                      "--db");
  }
  return *directory / "healer.db";
}

std::filesystem::path default_key_file(const std::filesystem::path& db_path) {
  return db_path.parent_path() / "master.key";
}

bool is_database_url(std::string_view db) noexcept {
  return db.starts_with("postgresql://") || db.starts_with("postgres://");
}

std::string display_location(std::string_view db) {
  if (!is_database_url(db)) {
    return std::string(db);
  }
  std::string shown(db);
  // The user info ends at the last '@' before the host's path, query or fragment.
  const std::size_t scheme_end = shown.find("://") + 3;
  const std::size_t authority_end = shown.find_first_of("/?#", scheme_end);
  const std::string_view authority = std::string_view(shown).substr(
      scheme_end,
      authority_end == std::string::npos ? std::string::npos : authority_end - scheme_end);
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    if (const std::size_t colon = authority.substr(0, at).find(':');
        colon != std::string_view::npos) {
      shown.replace(scheme_end + colon + 1, at - colon - 1, "***");
    }
  }
  // A password given as a query parameter: ?password=... or &password=...
  for (std::size_t from = shown.find('?'); from != std::string::npos;
       from = shown.find('&', from + 1)) {
    constexpr std::string_view kKey = "password=";
    if (std::string_view(shown).substr(from + 1).starts_with(kKey)) {
      const std::size_t value = from + 1 + kKey.size();
      const std::size_t end = shown.find_first_of("&#", value);
      shown.replace(value, end == std::string::npos ? std::string::npos : end - value, "***");
    }
  }
  return shown;
}

Result<std::filesystem::path> state_directory(const std::filesystem::path& db,
                                              const PathEnvironment& env) {
  if (!is_database_url(db.native())) {
    return db.parent_path();
  }
  auto directory = data_directory(env);
  if (!directory) {
    return make_error(Errc::io,
                      "cannot locate healer's state directory for a database URL (master key, "
                      "API token): set XDG_DATA_HOME or HOME, or HEALER_MASTER_KEY");
  }
  return *directory;
}

}  // namespace healer::store
