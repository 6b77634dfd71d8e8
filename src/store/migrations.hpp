#pragma once

// Versioned schema migrations. A shipped migration never changes: fixes are new migrations.

#include <span>
#include <string_view>

#include "healer/core/result.hpp"
#include "healer/store/master_key.hpp"
#include "sql.hpp"

namespace healer::store::migrations {

/// What a migration step that is code, not SQL, may need.
struct Environment {
  /// The database's master key (already checked against its key check); null when the caller has
  /// none (then a step that needs it fails if there is anything to convert).
  const MasterKey* key = nullptr;
};

/// A migration step written in C++ (re-sealing secrets); runs after the step's SQL, inside the
/// same transaction.
using Step = Result<void> (*)(sql::Connection& db, const Environment& environment);

/// One numbered schema step.
struct Migration {
  int version;            ///< 1, 2, ... contiguous
  std::string_view name;  ///< recorded in schema_migrations
  std::string_view sql;   ///< runs inside the migration's transaction (may be empty)
  Step step = nullptr;    ///< runs after `sql`, in the same transaction
  /// The same step's DDL for PostgreSQL (its types, triggers and constraints spelt its way); the
  /// schema is the same table for table, column for column.
  std::string_view postgres_sql = {};

  /// The DDL for `dialect`.
  [[nodiscard]] std::string_view sql_for(sql::Dialect dialect) const noexcept {
    return dialect == sql::Dialect::postgres ? postgres_sql : sql;
  }
};

/// Every migration, by version.
[[nodiscard]] std::span<const Migration> all() noexcept;

/// The version the code expects (the last migration's).
[[nodiscard]] int latest_version() noexcept;

/// The database's version: the highest row in schema_migrations (0 for a new database). Creates
/// schema_migrations when missing.
[[nodiscard]] Result<int> current_version(sql::Connection& db);

/// The same without writing anything (for read-only opens): 0 when schema_migrations is missing.
[[nodiscard]] Result<int> read_version(sql::Connection& db);

/// Applies every migration above the current version up to `target` (default: latest), each in
/// its own transaction (SQLite: BEGIN IMMEDIATE) together with its schema_migrations row. A
/// database newer than the code is Errc::schema_too_new. Returns the version reached.
[[nodiscard]] Result<int> migrate(sql::Connection& db, int target = latest_version(),
                                  const Environment& environment = {});

}  // namespace healer::store::migrations
