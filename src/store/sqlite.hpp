#pragma once

// The SQLite wrapper of the store: one owner per C handle, errors as Result. Private to src/store.

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "healer/core/result.hpp"

namespace healer::store::sql {

struct ConnectionClose {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StatementFinalize {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};

/// Classifies a SQLite result code (busy, io, corrupt, ...) into a store Error. `what` says which
/// operation failed; the SQLite message is appended (it never contains bound values).
[[nodiscard]] Error error_from(int rc, sqlite3* db, std::string_view what);

class Statement;

/// How Connection::open opens a file.
enum class OpenMode {
  read_write,  ///< the store's normal mode
  read_only,   ///< SQLITE_OPEN_READONLY: SQLite may still need to create the -shm file of WAL
  /// read-only and `immutable=1`: no -wal/-shm at all, no locks. Only safe when nobody can write
  /// the database meanwhile (its directory is not writable, so no writer can open it in WAL mode).
  immutable,
};

/// One open database connection. Used by one thread at a time (the store's worker).
class Connection {
 public:
  /// Opens an existing file (SQLITE_OPEN_NOMUTEX, extended result codes); never through a
  /// symbolic link (SQLITE_OPEN_NOFOLLOW).
  [[nodiscard]] static Result<Connection> open(const std::filesystem::path& path,
                                               OpenMode mode = OpenMode::read_write);

  /// Runs one or more statements without results (DDL, pragmas, BEGIN/COMMIT).
  [[nodiscard]] Result<void> exec(std::string_view sql);
  /// Prepares one statement.
  [[nodiscard]] Result<Statement> prepare(std::string_view sql);

  [[nodiscard]] std::int64_t last_insert_rowid() const noexcept;
  /// Rows changed by the last INSERT/UPDATE/DELETE (not counting cascades).
  [[nodiscard]] std::int64_t changes() const noexcept;
  [[nodiscard]] sqlite3* handle() const noexcept { return db_.get(); }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  std::unique_ptr<sqlite3, ConnectionClose> db_;
};

/// A prepared statement; bind with 1-based indexes, step until it returns false.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, std::span<const unsigned char> blob);
  Statement& bind_null(int index);
  Statement& bind(int index, std::optional<std::int64_t> value);
  // Any other integer type goes through int64 explicitly (no silent narrowing).
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, std::int64_t> &&
           !std::is_same_v<I, bool>) Statement& bind(int index, I value) {
    return bind(index, static_cast<std::int64_t>(value));
  }

  /// Runs one step: true = a row is available, false = done.
  [[nodiscard]] Result<bool> step();
  /// Steps to completion, expecting no rows.
  [[nodiscard]] Result<void> run();
  /// Resets to run again with new bindings (bindings are cleared).
  void reset() noexcept;

  [[nodiscard]] bool is_null(int column) const noexcept;
  [[nodiscard]] std::int64_t int64(int column) const noexcept;
  [[nodiscard]] double real(int column) const noexcept;
  [[nodiscard]] std::string text(int column) const;
  [[nodiscard]] std::span<const unsigned char> blob(int column) const noexcept;

 private:
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StatementFinalize> stmt_;
  // A bind error is reported by the next step() (binding only fails on misuse or OOM).
  int bind_error_ = SQLITE_OK;
};

/// BEGIN IMMEDIATE ... COMMIT; rolls back when destroyed uncommitted.
class Transaction {
 public:
  [[nodiscard]] static Result<Transaction> begin(Connection& db);
  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  [[nodiscard]] Result<void> commit();

 private:
  explicit Transaction(Connection& db) : db_(&db) {}
  Connection* db_;
};

}  // namespace healer::store::sql
