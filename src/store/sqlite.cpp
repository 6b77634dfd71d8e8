#include "sqlite.hpp"

#include <memory>
#include <string>

#include "healer/store/errors.hpp"

namespace healer::store::sql {

Error error_from(int rc, sqlite3* db, std::string_view what) {
  Errc code = Errc::sqlite;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      code = Errc::busy;
      break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      code = Errc::io;
      break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      code = Errc::corrupt;
      break;
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        code = Errc::duplicate_name;
      } else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        code = Errc::not_found;
      } else {
        code = Errc::invalid_record;
      }
      break;
    default:
      break;
  }
  std::string detail(what);
  detail += ": ";
  // sqlite3_errmsg describes the last call on this connection; with no connection (open failed
  // before one existed) only the code's generic text is available.
  detail += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return make_error(code, std::move(detail));
}

namespace {

// `path` as a file: URI (RFC 3986 percent-encoding of everything but unreserved bytes and '/').
std::string file_uri(const std::filesystem::path& path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string uri = "file:";
  for (const char c : path.string()) {
    const auto byte = static_cast<unsigned char>(c);
    const bool plain = (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z') ||
                       (byte >= '0' && byte <= '9') || c == '-' || c == '.' || c == '_' ||
                       c == '~' || c == '/';
    if (plain) {
      uri += c;
    } else {
      uri += '%';
      uri += kHex[byte >> 4];
      uri += kHex[byte & 0x0f];
    }
  }
  return uri;
}

}  // namespace

namespace {

struct ConnectionClose {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StatementFinalize {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};

class SqliteStatement final : public StatementBackend {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  void bind_int64(int index, std::int64_t value) override {
    note(sqlite3_bind_int64(stmt_.get(), index, value));
  }
  void bind_real(int index, double value) override {
    note(sqlite3_bind_double(stmt_.get(), index, value));
  }
  void bind_text(int index, std::string_view text) override {
    note(sqlite3_bind_text64(stmt_.get(), index, text.data(), text.size(), SQLITE_TRANSIENT,
                             SQLITE_UTF8));
  }
  void bind_blob(int index, std::span<const unsigned char> blob) override {
    note(sqlite3_bind_blob64(stmt_.get(), index, blob.data(), blob.size(), SQLITE_TRANSIENT));
  }
  void bind_null(int index) override { note(sqlite3_bind_null(stmt_.get(), index)); }

  Result<bool> step() override {
    if (bind_error_ != SQLITE_OK) {
      return error_from(bind_error_, db_, "binding a parameter");
    }
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return error_from(rc, db_, "running SQL");
  }

  void reset() noexcept override {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
    bind_error_ = SQLITE_OK;
  }

  bool is_null(int column) const noexcept override {
    return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
  }
  std::int64_t int64(int column) const noexcept override {
    return sqlite3_column_int64(stmt_.get(), column);
  }
  double real(int column) const noexcept override {
    return sqlite3_column_double(stmt_.get(), column);
  }
  std::string text(int column) const override {
    const auto* chars = sqlite3_column_text(stmt_.get(), column);
    if (chars == nullptr) {
      return {};
    }
    const int size = sqlite3_column_bytes(stmt_.get(), column);
    return std::string(reinterpret_cast<const char*>(chars), static_cast<std::size_t>(size));
  }
  std::span<const unsigned char> blob(int column) const override {
    const void* bytes = sqlite3_column_blob(stmt_.get(), column);
    const int size = sqlite3_column_bytes(stmt_.get(), column);
    if (bytes == nullptr || size <= 0) {
      return {};
    }
    return {static_cast<const unsigned char*>(bytes), static_cast<std::size_t>(size)};
  }

 private:
  // A bind error is reported by the next step() (binding only fails on misuse or OOM).
  void note(int rc) noexcept {
    if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) {
      bind_error_ = rc;
    }
  }

  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StatementFinalize> stmt_;
  int bind_error_ = SQLITE_OK;
};

class SqliteConnection final : public ConnectionBackend {
 public:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}

  Dialect dialect() const noexcept override { return Dialect::sqlite; }

  Result<void> exec(std::string_view sql) override {
    const std::string text(sql);
    const int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      return error_from(rc, db_.get(), "executing SQL");
    }
    return {};
  }

  Result<std::unique_ptr<StatementBackend>> prepare(std::string_view sql) override {
    sqlite3_stmt* stmt = nullptr;
    const int rc =
        sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return error_from(rc, db_.get(), "preparing SQL");
    }
    return std::unique_ptr<StatementBackend>(std::make_unique<SqliteStatement>(db_.get(), stmt));
  }

  std::int64_t changes() const noexcept override { return sqlite3_changes64(db_.get()); }

 private:
  std::unique_ptr<sqlite3, ConnectionClose> db_;
};

}  // namespace

Result<Connection> Connection::open(const std::filesystem::path& path, OpenMode mode,
                                    std::chrono::milliseconds busy_timeout) {
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_NOFOLLOW;
  std::string name = path.string();
  switch (mode) {
    case OpenMode::read_write:
      flags |= SQLITE_OPEN_READWRITE;
      break;
    case OpenMode::read_only:
      flags |= SQLITE_OPEN_READONLY;
      break;
    case OpenMode::immutable:
      flags |= SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
      name = file_uri(path) + "?immutable=1";
      break;
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(name.c_str(), &raw, flags, nullptr);
  // sqlite3_open_v2 allocates a handle even when it fails: the backend owns it either way.
  auto backend = std::make_unique<SqliteConnection>(raw);
  if (rc != SQLITE_OK) {
    return error_from(rc, raw, "opening " + path.string());
  }
  sqlite3_busy_timeout(raw, static_cast<int>(busy_timeout.count()));
  return Connection(std::move(backend));
}

}  // namespace healer::store::sql
