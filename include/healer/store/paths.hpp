#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "healer/core/result.hpp"

namespace healer::store {

/// The environment variables that locate the database (a value, so path logic is testable).
struct PathEnvironment {
  std::optional<std::string> healer_db;      ///< $HEALER_DB
  std::optional<std::string> xdg_data_home;  ///< $XDG_DATA_HOME
  std::optional<std::string> home;           ///< $HOME (else the passwd entry)

  /// Reads the current process environment.
  [[nodiscard]] static PathEnvironment current();
};

/// $HEALER_DB, else $XDG_DATA_HOME/healer/healer.db, else ~/.local/share/healer/healer.db. A
/// relative XDG_DATA_HOME is ignored (XDG spec). Pure: creates nothing (Store::open creates the
/// directory with mode 0700). The `--db` flag, when given, takes precedence over this.
[[nodiscard]] Result<std::filesystem::path> default_db_path(
    const PathEnvironment& env = PathEnvironment::current());

/// The default key file of a database file: `master.key` next to it (for a database URL see
/// state_directory()).
[[nodiscard]] std::filesystem::path default_key_file(const std::filesystem::path& db_path);

/// True when `db` names a PostgreSQL database (`postgresql://...` or `postgres://...`) rather
/// than a SQLite file.
[[nodiscard]] bool is_database_url(std::string_view db) noexcept;

/// `db` fit for messages and logs: a URL's password (in the user info or a `password=`
/// parameter) replaced by `***`; a file path unchanged.
[[nodiscard]] std::string display_location(std::string_view db);

/// Where healer keeps the local files that go with database `db` (master.key, api.token, the
/// control socket): a database file's directory; for a database URL, $XDG_DATA_HOME/healer, else
/// ~/.local/share/healer (the default database's directory, whatever $HEALER_DB says). Pure.
[[nodiscard]] Result<std::filesystem::path> state_directory(
    const std::filesystem::path& db, const PathEnvironment& env = PathEnvironment::current());

}  // namespace healer::store
