#pragma once

// The store's SQL seam: one Connection / Statement / Transaction API over two backends, SQLite
// (sqlite.cpp, embedded, the default) and PostgreSQL (postgres.cpp, libpq). Private to src/store.
//
// The SQL of every operation is written once, in the subset both engines run the same way:
// numbered placeholders `?1`, `?2`... (PostgreSQL's backend turns them into `$1`, `$2`...),
// `INSERT ... ON CONFLICT`, `RETURNING id` instead of a last-insert-rowid call, `IS NOT DISTINCT
// FROM`, the column `"user"` quoted. What differs (DDL types, pragmas, the catalog, how a
// transaction takes the write lock) asks dialect(); nothing else does.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "healer/core/result.hpp"

namespace healer::store::sql {

/// Which engine a connection talks to.
enum class Dialect { sqlite, postgres };

/// How Connection::open opens a SQLite file.
enum class OpenMode {
  read_write,  ///< the store's normal mode
  read_only,   ///< SQLITE_OPEN_READONLY: SQLite may still need to create the -shm file of WAL
  /// read-only and `immutable=1`: no -wal/-shm at all, no locks. Only safe when nobody can write
  /// the database meanwhile (its directory is not writable, so no writer can open it in WAL mode).
  immutable,
};

/// A backend's prepared statement (see Statement for the contract).
class StatementBackend {
 public:
  virtual ~StatementBackend() = default;
  virtual void bind_int64(int index, std::int64_t value) = 0;
  virtual void bind_real(int index, double value) = 0;
  virtual void bind_text(int index, std::string_view text) = 0;
  virtual void bind_blob(int index, std::span<const unsigned char> blob) = 0;
  virtual void bind_null(int index) = 0;
  virtual Result<bool> step() = 0;
  virtual void reset() noexcept = 0;
  [[nodiscard]] virtual bool is_null(int column) const noexcept = 0;
  [[nodiscard]] virtual std::int64_t int64(int column) const noexcept = 0;
  [[nodiscard]] virtual double real(int column) const noexcept = 0;
  [[nodiscard]] virtual std::string text(int column) const = 0;
  [[nodiscard]] virtual std::span<const unsigned char> blob(int column) const = 0;
};

/// A backend's connection (see Connection for the contract).
class ConnectionBackend {
 public:
  virtual ~ConnectionBackend() = default;
  [[nodiscard]] virtual Dialect dialect() const noexcept = 0;
  virtual Result<void> exec(std::string_view sql) = 0;
  virtual Result<std::unique_ptr<StatementBackend>> prepare(std::string_view sql) = 0;
  [[nodiscard]] virtual std::int64_t changes() const noexcept = 0;
};

class StatementCache;

/// A prepared statement; bind with 1-based indexes (a parameter left unbound is NULL), step until
/// it returns false. One from Connection::prepare goes back to its connection's cache when
/// destroyed (reset, bindings cleared), so the same SQL is not parsed again on the next call.
class Statement {
 public:
  explicit Statement(std::unique_ptr<StatementBackend> backend, StatementCache* cache = nullptr,
                     std::string sql = {})
      : backend_(std::move(backend)), cache_(cache), sql_(std::move(sql)) {}
  Statement(Statement&& other) noexcept
      : backend_(std::move(other.backend_)),
        cache_(std::exchange(other.cache_, nullptr)),
        sql_(std::move(other.sql_)) {}
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& bind(int index, std::int64_t value) {
    backend_->bind_int64(index, value);
    return *this;
  }
  Statement& bind(int index, double value) {
    backend_->bind_real(index, value);
    return *this;
  }
  Statement& bind(int index, std::string_view text) {
    backend_->bind_text(index, text);
    return *this;
  }
  Statement& bind_blob(int index, std::span<const unsigned char> blob) {
    backend_->bind_blob(index, blob);
    return *this;
  }
  Statement& bind_null(int index) {
    backend_->bind_null(index);
    return *this;
  }
  Statement& bind(int index, std::optional<std::int64_t> value) {
    return value ? bind(index, *value) : bind_null(index);
  }
  // Any other integer type goes through int64 explicitly (no silent narrowing).
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, std::int64_t> &&
           !std::is_same_v<I, bool>) Statement& bind(int index, I value) {
    return bind(index, static_cast<std::int64_t>(value));
  }

  /// Runs one step: true = a row is available, false = done. A bind error shows here.
  [[nodiscard]] Result<bool> step() { return backend_->step(); }
  /// Steps to completion, expecting no rows.
  [[nodiscard]] Result<void> run();
  /// Resets to run again with new bindings (bindings are cleared).
  void reset() noexcept { backend_->reset(); }

  [[nodiscard]] bool is_null(int column) const noexcept { return backend_->is_null(column); }
  /// An integer column (a boolean is 0 or 1).
  [[nodiscard]] std::int64_t int64(int column) const noexcept { return backend_->int64(column); }
  [[nodiscard]] double real(int column) const noexcept { return backend_->real(column); }
  [[nodiscard]] std::string text(int column) const { return backend_->text(column); }
  /// Valid until the next step(), reset() or blob() call.
  [[nodiscard]] std::span<const unsigned char> blob(int column) const {
    return backend_->blob(column);
  }

 private:
  void give_back() noexcept;

  std::unique_ptr<StatementBackend> backend_;
  StatementCache* cache_;  // null: not cached (the cache was full)
  std::string sql_;        // the cache's key
};

/// A connection's prepared statements not in use, by their SQL text. Bounded: SQL built per call
/// (a chunk of N rows, a WHERE of N names) past the bound is prepared and finalised each time.
class StatementCache {
 public:
  static constexpr std::size_t kMaxStatements = 128;

  /// An idle statement of `sql`, or null.
  [[nodiscard]] std::unique_ptr<StatementBackend> take(std::string_view sql);
  /// Keeps `statement` (already reset) unless the cache is full or holds one of `sql` already.
  void keep(std::string sql, std::unique_ptr<StatementBackend> statement) noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return idle_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
      return std::hash<std::string_view>{}(text);
    }
  };
  std::unordered_map<std::string, std::unique_ptr<StatementBackend>, Hash, std::equal_to<>> idle_;
};

/// One open database connection. Used by one thread at a time (the store's worker).
class Connection {
 public:
  /// Opens an existing SQLite file (SQLITE_OPEN_NOMUTEX, extended result codes, a busy timeout);
  /// never through a symbolic link (SQLITE_OPEN_NOFOLLOW).
  [[nodiscard]] static Result<Connection> open(
      const std::filesystem::path& path, OpenMode mode = OpenMode::read_write,
      std::chrono::milliseconds busy_timeout = std::chrono::milliseconds(5000));
  /// Connects to PostgreSQL at `url` (postgresql:// or postgres://). `lock_timeout` bounds how
  /// long a statement waits for a row or table lock (the analogue of SQLite's busy timeout);
  /// `reply_timeout` how long the client waits for any answer before it gives the connection up
  /// (a stopped or unreachable server never hangs a caller). Errors never contain the password.
  [[nodiscard]] static Result<Connection> open_postgres(std::string_view url,
                                                        std::chrono::milliseconds lock_timeout,
                                                        std::chrono::milliseconds reply_timeout);

  explicit Connection(std::unique_ptr<ConnectionBackend> backend)
      : backend_(std::move(backend)), cache_(std::make_unique<StatementCache>()) {}

  [[nodiscard]] Dialect dialect() const noexcept { return backend_->dialect(); }
  /// Runs one or more statements without results and without parameters (DDL, BEGIN/COMMIT).
  [[nodiscard]] Result<void> exec(std::string_view sql) { return backend_->exec(sql); }
  /// Prepares one statement, or takes the cached one of the same SQL (a statement returns to the
  /// cache when destroyed). The statements must not outlive the connection.
  [[nodiscard]] Result<Statement> prepare(std::string_view sql);
  /// Statements kept for reuse now (tests).
  [[nodiscard]] std::size_t cached_statements() const noexcept { return cache_->size(); }
  /// Rows changed by the last INSERT/UPDATE/DELETE (not counting cascades).
  [[nodiscard]] std::int64_t changes() const noexcept { return backend_->changes(); }

 private:
  std::unique_ptr<ConnectionBackend> backend_;
  // After backend_: its statements are finalised before the connection closes. On the heap, so
  // statements keep its address when the Connection moves.
  std::unique_ptr<StatementCache> cache_;
};

/// A write transaction: BEGIN IMMEDIATE (SQLite: takes the write lock now) or BEGIN
/// (PostgreSQL: row locks as statements go) ... COMMIT; rolls back when destroyed uncommitted.
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
