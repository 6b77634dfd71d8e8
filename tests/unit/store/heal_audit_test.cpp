// The heal audit log and plans against a real SQLite file and a real PostgreSQL server.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <optional>
#include <string>

#include "healer/store/errors.hpp"
#include "healer/store/store.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

HealEvent event(std::string heal_id, HealEventKind kind, std::string server, std::int64_t at) {
  HealEvent e;
  e.heal_id = std::move(heal_id);
  e.kind = kind;
  e.at = at;
  e.actor = "cli:ops";
  e.plan_hash = "abc";
  e.server = std::move(server);
  e.server_id = 3;
  e.action = "restart_unit";
  e.params = R"({"unit":"nginx.service"})";
  e.command = "sudo -n -- systemctl restart -- nginx.service";
  e.result = kind == HealEventKind::finished ? "succeeded" : "";
  if (kind == HealEventKind::finished) {
    e.exit_code = 0;
  }
  return e;
}

class HealAuditTest : public ::testing::TestWithParam<test::Backend> {
 protected:
  void SetUp() override {
    if (const auto reason = test::backend_unavailable(GetParam()); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
    auto opened = Store::open(test::backend_options(GetParam(), dir_.path()));
    ASSERT_TRUE(opened) << opened.error().message();
    store_.emplace(std::move(opened).value());
  }

  // What a person with sqlite3 and the file (or psql as the database's superuser) can do;
  // healer offers no such method at all. True when the statement went through.
  bool raw_exec(const std::string& sql) {
    if (GetParam() == test::Backend::postgres) {
      auto& server = healer::test::PostgresFixture::shared();
      try {
        server.query("SET search_path = " + server.schema() + "; " + sql);
        return true;
      } catch (const std::runtime_error&) {
        return false;
      }
    }
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((dir_.path() / "healer.db").c_str(), &db), SQLITE_OK);
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    sqlite3_close(db);
    return rc == SQLITE_OK;
  }

  healer::test::TempDir dir_;
  std::optional<Store> store_;
};

INSTANTIATE_TEST_SUITE_P(Backends, HealAuditTest,
                         ::testing::Values(test::Backend::sqlite, test::Backend::postgres),
                         test::backend_name);

TEST_P(HealAuditTest, EventsComeBackNewestFirstWithEveryField) {
  ASSERT_TRUE(store_->append_heal_event(event("h1", HealEventKind::started, "web1", 100)));
  ASSERT_TRUE(store_->append_heal_event(event("h1", HealEventKind::finished, "web1", 200)));
  ASSERT_TRUE(store_->append_heal_event(event("h2", HealEventKind::started, "web2", 300)));
  auto all = store_->heal_events({});
  ASSERT_TRUE(all) << all.error().message();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ(all->at(0).heal_id, "h2");
  EXPECT_EQ(all->at(1).kind, HealEventKind::finished);
  EXPECT_EQ(all->at(1).exit_code, 0);
  EXPECT_EQ(all->at(1).params, R"({"unit":"nginx.service"})");
  EXPECT_EQ(all->at(2).server_id, 3);
  EXPECT_GT(all->at(0).id, all->at(1).id);

  HealEventQuery query;
  query.server = "web1";
  query.kinds = {HealEventKind::finished};
  auto filtered = store_->heal_events(query);
  ASSERT_TRUE(filtered);
  ASSERT_EQ(filtered->size(), 1u);
  EXPECT_EQ(filtered->front().result, "succeeded");

  query = {};
  query.heal_ids = {"h1"};
  query.limit = 1;
  auto page = store_->heal_events(query);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 1u);
  query.before_id = page->front().id;
  auto next = store_->heal_events(query);
  ASSERT_TRUE(next);
  ASSERT_EQ(next->size(), 1u);
  EXPECT_EQ(next->front().kind, HealEventKind::started);
}

TEST_P(HealAuditTest, TheDatabaseRefusesToEditOrDeleteTheLog) {
  ASSERT_TRUE(store_->append_heal_event(event("h1", HealEventKind::finished, "web1", 100)));
  EXPECT_FALSE(raw_exec("UPDATE heal_audit SET result = 'verified'"));
  EXPECT_FALSE(raw_exec("DELETE FROM heal_audit"));
  if (GetParam() == test::Backend::postgres) {
    EXPECT_FALSE(raw_exec("TRUNCATE heal_audit"));  // skips row triggers: refused on its own
  }
  // The triggers are what refuses: a plain table accepts the same statements.
  EXPECT_TRUE(raw_exec("CREATE TABLE scratch (x TEXT)"));
  EXPECT_TRUE(raw_exec("INSERT INTO scratch VALUES ('a')"));
  EXPECT_TRUE(raw_exec("UPDATE scratch SET x = 'b'"));
  EXPECT_TRUE(raw_exec("DELETE FROM scratch"));
  auto all = store_->heal_events({});
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().result, "succeeded");
}

TEST_P(HealAuditTest, IncompleteOrMalformedEventsAreRefused) {
  auto e = event("", HealEventKind::started, "web1", 1);
  auto refused = store_->append_heal_event(e);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::invalid_record));
  e = event("h", HealEventKind::started, "web1", 1);
  e.params = "{not json";
  EXPECT_FALSE(store_->append_heal_event(e));
  auto all = store_->heal_events({});
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
}

TEST_P(HealAuditTest, PlansAreKeptByHashFirstOneWinsAndExpireAfterAWeek) {
  constexpr std::int64_t kDay = 86'400'000;
  ASSERT_TRUE(store_->put_heal_plan("h1", R"({"a":1})", 10 * kDay));
  ASSERT_TRUE(store_->put_heal_plan("h1", R"({"a":2})", 10 * kDay));
  auto body = store_->heal_plan("h1");
  ASSERT_TRUE(body);
  EXPECT_EQ(*body, R"({"a":1})");
  auto missing = store_->heal_plan("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, make_error_code(Errc::not_found));
  EXPECT_FALSE(store_->put_heal_plan("bad", "not json", 10 * kDay));
  ASSERT_TRUE(store_->put_heal_plan("h2", "{}", 18 * kDay));
  EXPECT_FALSE(store_->heal_plan("h1"));
  EXPECT_TRUE(store_->heal_plan("h2"));
}

}  // namespace
}  // namespace healer::store
