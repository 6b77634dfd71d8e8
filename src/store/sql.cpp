// The backend-neutral parts of the SQL seam.
#include "sql.hpp"

namespace healer::store::sql {

Result<void> Statement::run() {
  for (;;) {
    auto row = step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      return {};
    }
  }
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    give_back();
    backend_ = std::move(other.backend_);
    cache_ = std::exchange(other.cache_, nullptr);
    sql_ = std::move(other.sql_);
  }
  return *this;
}

Statement::~Statement() { give_back(); }

void Statement::give_back() noexcept {
  if (cache_ != nullptr && backend_) {
    // Reset now: an SQLite statement left mid-result holds its read transaction open.
    backend_->reset();
    cache_->keep(std::move(sql_), std::move(backend_));
  }
  cache_ = nullptr;
}

std::unique_ptr<StatementBackend> StatementCache::take(std::string_view sql) {
  const auto it = idle_.find(sql);
  if (it == idle_.end()) {
    return nullptr;
  }
  auto statement = std::move(it->second);
  idle_.erase(it);
  return statement;
}

void StatementCache::keep(std::string sql, std::unique_ptr<StatementBackend> statement) noexcept {
  if (idle_.size() >= kMaxStatements) {
    return;
  }
  try {
    idle_.try_emplace(std::move(sql), std::move(statement));
  } catch (...) {  // out of memory: the statement is finalised instead
  }
}

Result<Statement> Connection::prepare(std::string_view sql) {
  if (auto cached = cache_->take(sql)) {
    return Statement(std::move(cached), cache_.get(), std::string(sql));
  }
  auto prepared = backend_->prepare(sql);
  if (!prepared) {
    return std::move(prepared).error();
  }
  // Only while the cache has room for it when it comes back: SQL past the bound stays uncached.
  StatementCache* cache = cache_->size() < StatementCache::kMaxStatements ? cache_.get() : nullptr;
  return Statement(std::move(prepared).value(), cache, cache != nullptr ? std::string(sql) : "");
}

Result<Transaction> Transaction::begin(Connection& db) {
  // SQLite: IMMEDIATE takes the write lock now, so a busy database fails here (after the busy
  // timeout) rather than half-way. PostgreSQL locks rows as statements touch them.
  if (auto begun = db.exec(db.dialect() == Dialect::sqlite ? "BEGIN IMMEDIATE" : "BEGIN"); !begun) {
    return std::move(begun).error();
  }
  return Transaction(db);
}

Transaction::~Transaction() {
  if (db_ != nullptr) {
    // A failed ROLLBACK leaves nothing to do: SQLite rolls back itself when it can't continue,
    // PostgreSQL when the connection ends.
    (void)db_->exec("ROLLBACK");
  }
}

Result<void> Transaction::commit() {
  auto committed = db_->exec("COMMIT");
  if (committed) {
    db_ = nullptr;
  }
  return committed;
}

}  // namespace healer::store::sql
