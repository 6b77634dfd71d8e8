#pragma once

// Versioned schema migrations. A shipped migration never changes: fixes are new migrations.

#include <span>
#include <string_view>

#include "healer/core/result.hpp"
#include "sqlite.hpp"

namespace healer::store::migrations {

/// One numbered schema step.
struct Migration {
  int version;            ///< 1, 2, ... contiguous
  std::string_view name;  ///< recorded in schema_migrations
  std::string_view sql;   ///< runs inside the migration's transaction
};

/// Every migration, by version.
[[nodiscard]] std::span<const Migration> all() noexcept;

/// The version the code expects (the last migration's).
[[nodiscard]] int latest_version() noexcept;

/// The database's version: the highest row in schema_migrations (0 for a new database).
[[nodiscard]] Result<int> current_version(sql::Connection& db);

/// Applies every migration above the current version up to `target` (default: latest), each in
/// its own BEGIN IMMEDIATE transaction together with its schema_migrations row. A database newer
/// than the code is Errc::schema_too_new. Returns the version reached.
[[nodiscard]] Result<int> migrate(sql::Connection& db, int target = latest_version());

}  // namespace healer::store::migrations
