// The SQL seam's statement cache: a statement goes back to its connection when destroyed (reset,
// bindings cleared, its read lock released), the same SQL is not prepared again, the cache is
// bounded, and on PostgreSQL the server-prepared statements survive nothing but their connection
// (a reconnect prepares them again). Real SQLite files and a real PostgreSQL server.
#include <gtest/gtest.h>

#include <string>

#include "database.hpp"
#include "postgres_fixture.hpp"
#include "sql.hpp"
#include "temp_dir.hpp"

namespace healer::store::sql {
namespace {

using healer::test::PostgresFixture;

// A new SQLite file, opened (Connection::open never creates one).
Result<Connection> open_new(const std::filesystem::path& path,
                            std::chrono::milliseconds busy_timeout = std::chrono::seconds(5)) {
  if (auto created = prepare_database_file(path); !created) {
    return std::move(created).error();
  }
  return Connection::open(path, OpenMode::read_write, busy_timeout);
}

std::int64_t count(Connection& db, const std::string& query_sql) {
  auto query = db.prepare(query_sql);
  EXPECT_TRUE(query) << query.error().message();
  auto row = query->step();
  EXPECT_TRUE(row && *row) << query_sql;
  return query->int64(0);
}

Result<void> insert(Connection& db, std::optional<std::int64_t> value) {
  auto statement = db.prepare("INSERT INTO t (v) VALUES (?1)");
  if (!statement) {
    return std::move(statement).error();
  }
  if (value) {
    statement->bind(1, *value);
  }
  return statement->run();
}

// The same statement on either backend: reused, with its bindings cleared.
void expect_reuse(Connection& db) {
  ASSERT_TRUE(db.exec("CREATE TABLE t (v BIGINT)"));
  const auto before = db.cached_statements();
  ASSERT_TRUE(insert(db, 7));
  EXPECT_EQ(db.cached_statements(), before + 1);
  {
    auto held = db.prepare("INSERT INTO t (v) VALUES (?1)");
    ASSERT_TRUE(held);
    EXPECT_EQ(db.cached_statements(), before) << "the cached statement is lent, not copied";
    // A second one of the same SQL while the first is out: prepared anew, both work.
    ASSERT_TRUE(insert(db, 8));
    held->bind(1, 9);
    ASSERT_TRUE(held->run());
  }
  EXPECT_EQ(db.cached_statements(), before + 1) << "one idle statement per SQL text";
  // Reused without binding: the earlier value is gone, the parameter is NULL.
  ASSERT_TRUE(insert(db, std::nullopt));
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM t WHERE v IS NULL"), 1);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM t WHERE v IS NOT NULL"), 3);
}

TEST(StatementCacheTest, SqliteReusesAStatementWithItsBindingsCleared) {
  test::TempDir dir;
  auto db = open_new(dir.path() / "cache.db");
  ASSERT_TRUE(db) << db.error().message();
  expect_reuse(*db);
}

TEST(StatementCacheTest, SqliteStatementLeftMidResultReleasesItsReadLock) {
  test::TempDir dir;
  const auto path = dir.path() / "locks.db";
  auto reader = open_new(path, std::chrono::milliseconds(0));
  ASSERT_TRUE(reader) << reader.error().message();
  // The rollback journal (not WAL): a reader's open statement blocks another connection's commit.
  ASSERT_TRUE(reader->exec("CREATE TABLE t (v BIGINT); INSERT INTO t VALUES (1), (2)"));
  {
    auto rows = reader->prepare("SELECT v FROM t");
    ASSERT_TRUE(rows);
    auto row = rows->step();
    ASSERT_TRUE(row && *row);
  }  // one row read of two: back in the cache, reset
  EXPECT_EQ(reader->cached_statements(), 1U);
  auto writer = Connection::open(path, OpenMode::read_write, std::chrono::milliseconds(0));
  ASSERT_TRUE(writer) << writer.error().message();
  const auto written = insert(*writer, 3);
  EXPECT_TRUE(written) << written.error().message();
}

TEST(StatementCacheTest, TheCacheIsBounded) {
  test::TempDir dir;
  auto db = open_new(dir.path() / "bound.db");
  ASSERT_TRUE(db) << db.error().message();
  for (std::size_t i = 0; i < StatementCache::kMaxStatements + 50; ++i) {
    auto statement = db->prepare("SELECT " + std::to_string(i));
    ASSERT_TRUE(statement);
    auto row = statement->step();
    ASSERT_TRUE(row && *row);
    EXPECT_EQ(statement->int64(0), static_cast<std::int64_t>(i));
  }
  EXPECT_EQ(db->cached_statements(), StatementCache::kMaxStatements);
  // Past the bound a statement still runs, prepared and finalised each time.
  EXPECT_EQ(count(*db, "SELECT 100000"), 100000);
  EXPECT_EQ(db->cached_statements(), StatementCache::kMaxStatements);
}

class PostgresStatementCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const auto reason = PostgresFixture::unavailable_reason(); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
  }
  static Connection open() {
    auto db = Connection::open_postgres(PostgresFixture::shared().fresh_database_url(),
                                        std::chrono::seconds(5), std::chrono::seconds(10));
    EXPECT_TRUE(db) << db.error().message();
    return std::move(db).value();
  }
};

TEST_F(PostgresStatementCacheTest, ReusesAStatementPreparedOnceOnTheServer) {
  auto db = open();
  expect_reuse(db);
  // Prepared on the server once for all four runs of the INSERT.
  EXPECT_EQ(count(db,
                  "SELECT COUNT(*) FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO "
                  "t %'"),
            1);
}

TEST_F(PostgresStatementCacheTest, AReconnectPreparesTheStatementsAgain) {
  auto db = open();
  ASSERT_TRUE(db.exec("CREATE TABLE t (v BIGINT)"));
  ASSERT_TRUE(insert(db, 1));
  // The server ends the session: its prepared statements go with it.
  PostgresFixture::shared().query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'healer' "
      "AND pid <> pg_backend_pid()");
  // The first call may find the connection gone; the next one reconnects and prepares again.
  if (!insert(db, 2)) {
    const auto again = insert(db, 2);
    ASSERT_TRUE(again) << again.error().message();
  }
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM t WHERE v = 2"), 1);
}

}  // namespace
}  // namespace healer::store::sql
