#pragma once

#include <filesystem>
#include <optional>
#include <string>

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

/// The default key file of a database: `master.key` next to it.
[[nodiscard]] std::filesystem::path default_key_file(const std::filesystem::path& db_path);

}  // namespace healer::store
