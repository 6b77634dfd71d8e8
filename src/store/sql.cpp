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

Result<Statement> Connection::prepare(std::string_view sql) {
  auto prepared = backend_->prepare(sql);
  if (!prepared) {
    return std::move(prepared).error();
  }
  return Statement(std::move(prepared).value());
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
