#pragma once

// The SQLite backend of the store's SQL seam (sql.hpp). Private to src/store.

#include <sqlite3.h>

#include <string_view>

#include "healer/core/result.hpp"
#include "sql.hpp"

namespace healer::store::sql {

/// Classifies a SQLite result code (busy, io, corrupt, ...) into a store Error. `what` says which
/// operation failed; the SQLite message is appended (it never contains bound values).
[[nodiscard]] Error error_from(int rc, sqlite3* db, std::string_view what);

}  // namespace healer::store::sql
