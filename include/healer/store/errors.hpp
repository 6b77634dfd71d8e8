#pragma once

#include <system_error>

#include "healer/core/error.hpp"

namespace healer::store {

/// Why a store operation failed. Details name servers, files and SQL phases, never secrets.
enum class Errc {
  not_found = 1,        ///< no server / application / run with that id or name
  duplicate_name,       ///< a server or application with that name already exists
  invalid_record,       ///< a record failed validation (empty name, port 0, missing secret...)
  wrong_master_key,     ///< the master key does not match the one the database was created with
  master_key_missing,   ///< the database holds encrypted secrets but no master key was found
  master_key_invalid,   ///< HEALER_MASTER_KEY or the key file is malformed (wrong length...)
  master_key_insecure,  ///< the key file is readable or writable by group or others
  secret_corrupt,       ///< a stored secret failed to decrypt (tampered or damaged)
  schema_too_new,       ///< the database was migrated by a newer healer
  migration_failed,     ///< a schema migration step failed (rolled back)
  busy,                 ///< the database stayed locked by another process past busy_timeout
  io,                   ///< the database or key file could not be created, opened, read, written
  corrupt,              ///< the file is not a healer database or is damaged
  sqlite,               ///< any other SQLite failure
  closed,               ///< the store is closed (moved from or shutting down)
  read_only,  ///< a write to a store opened read-only, or a read-write open of a read-only file
  schema_too_old,  ///< a read-only open of a database that needs migrating (open it read-write)
  invalid_url,     ///< a postgresql:// database URL that does not parse
  unavailable,     ///< the database server cannot be reached, refused us, or stopped answering
};

/// The error category of store::Errc ("store").
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// Short stable name ("wrong_master_key"), for JSON and logs.
[[nodiscard]] const char* errc_name(Errc e) noexcept;

}  // namespace healer::store

template <>
struct std::is_error_code_enum<healer::store::Errc> : std::true_type {};
