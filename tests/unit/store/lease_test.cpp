// The lease statements (store/leases.cpp) on a real PostgreSQL server, several stores (each its
// own connection, as separate `healer serve` nodes have) on one database: concurrent claimers
// never take the same server, the fleet is split evenly, an expired lease is taken over, a
// released one is claimable at once, and a removed server's lease goes with it. Plus the same
// statements on SQLite, where one node simply holds everything.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "healer/store/store.hpp"
#include "poll_until.hpp"
#include "postgres_fixture.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

using healer::test::PostgresFixture;
using namespace std::chrono_literals;

ServerRecord server_named(const std::string& name) {
  ServerRecord server;
  server.name = name;
  server.host = "192.0.2.10";
  server.port = 22;
  server.user = "ops";
  server.auth_method = AuthMethod::agent;
  server.host_key_policy = HostKeyPolicy::accept_new;
  return server;
}

std::set<std::int64_t> held_by(const LeaseSync& sync, const std::string& node) {
  std::set<std::int64_t> out;
  for (const auto& lease : sync.leases) {
    if (lease.node == node) {
      out.insert(lease.server_id);
    }
  }
  return out;
}

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const auto reason = PostgresFixture::unavailable_reason(); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
    url_ = PostgresFixture::shared().fresh_database_url();
  }

  Store open() {
    StoreOptions options;
    options.db_path = url_;
    options.master_key = test::key_of(1);
    auto store = Store::open(std::move(options));
    if (!store) {
      throw std::runtime_error(store.error().message());
    }
    return std::move(*store);
  }

  std::vector<std::int64_t> add_servers(Store& store, int count, const std::string& prefix = "s") {
    std::vector<std::int64_t> ids;
    for (int i = 0; i < count; ++i) {
      auto id = store.add_server(server_named(prefix + std::to_string(i)));
      EXPECT_TRUE(id) << id.error().message();
      ids.push_back(id ? *id : 0);
    }
    return ids;
  }

  std::string url_;
};

TEST_F(LeaseTest, ConcurrentClaimersNeverTakeTheSameServerAndSplitTheFleetEvenly) {
  auto setup = open();
  add_servers(setup, 20);
  const std::vector<std::string> nodes{"node-a", "node-b", "node-c"};
  std::vector<Store> stores;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    stores.push_back(open());
  }
  // Every node syncs in a loop at the same time as the others (long leases: nothing expires, so
  // a server can only change hands by its holder giving it back first).
  std::atomic<int> failures{0};
  std::atomic<int> claims_from_live_holder{0};
  // Per server: claims minus releases over every node's syncs. A claim that silently overwrote
  // another node's would leave 2 here for that server.
  std::mutex mutex;
  std::map<std::int64_t, int> balance;
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 15; ++round) {
        auto sync = stores[i].sync_leases(nodes[i], 60s);
        if (!sync) {
          ++failures;
          ADD_FAILURE() << nodes[i] << ": " << sync.error().message();
          continue;
        }
        std::lock_guard lock(mutex);
        for (const auto& claim : sync->claimed) {
          ++balance[claim.server_id];
          if (!claim.previous_node.empty()) {
            ++claims_from_live_holder;
          }
        }
        for (const auto& release : sync->released) {
          --balance[release.server_id];
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(claims_from_live_holder, 0);
  // Settle: a few more rounds in turn, then every node's view is the same and disjoint.
  std::map<std::string, std::set<std::int64_t>> held;
  std::optional<LeaseSync> last;
  for (int round = 0; round < 3; ++round) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      auto sync = stores[i].sync_leases(nodes[i], 60s);
      ASSERT_TRUE(sync) << sync.error().message();
      for (const auto& claim : sync->claimed) {
        ++balance[claim.server_id];
      }
      for (const auto& release : sync->released) {
        --balance[release.server_id];
      }
      EXPECT_EQ(sync->nodes, 3U);
      EXPECT_EQ(sync->servers, 20U);
      EXPECT_EQ(sync->share, 7U);
      last = std::move(*sync);
    }
  }
  std::set<std::int64_t> all;
  std::size_t total = 0;
  for (const auto& node : nodes) {
    held[node] = held_by(*last, node);
    total += held[node].size();
    all.insert(held[node].begin(), held[node].end());
    EXPECT_GE(held[node].size(), 6U) << node;
    EXPECT_LE(held[node].size(), 7U) << node;
  }
  EXPECT_EQ(total, 20U);
  EXPECT_EQ(all.size(), 20U);
  EXPECT_EQ(balance.size(), 20U);
  for (const auto& [server, count] : balance) {
    EXPECT_EQ(count, 1) << "server " << server << " claimed without being given back";
  }
}

TEST_F(LeaseTest, AnExpiredLeaseIsTakenOverAndItsFormerHolderLearnsIt) {
  auto a = open();
  auto b = open();
  add_servers(a, 6);
  auto first = a.sync_leases("node-a", 300ms);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->claimed.size(), 6U);
  EXPECT_EQ(held_by(*first, "node-a").size(), 6U);
  // node-b starts while node-a's leases are live: nothing is free, it gets nothing yet.
  auto early = b.sync_leases("node-b", 60s);
  ASSERT_TRUE(early) << early.error().message();
  EXPECT_TRUE(early->claimed.empty());
  EXPECT_EQ(early->nodes, 2U);
  // node-a stops renewing (it died): once its leases expire node-b takes every server over.
  std::optional<LeaseSync> takeover;
  ASSERT_TRUE(healer::test::poll_until(
      [&] {
        auto sync = b.sync_leases("node-b", 60s);
        if (sync && !sync->claimed.empty()) {
          takeover = std::move(*sync);
          return true;
        }
        return false;
      },
      10s, 50ms));
  EXPECT_EQ(takeover->nodes, 1U);  // node-a's heartbeat expired with its leases
  EXPECT_EQ(takeover->claimed.size(), 6U);
  for (const auto& claim : takeover->claimed) {
    EXPECT_EQ(claim.previous_node, "node-a");
  }
  EXPECT_EQ(held_by(*takeover, "node-b").size(), 6U);
  // node-a comes back: its renewal does not touch node-b's leases; it holds nothing.
  auto back = a.sync_leases("node-a", 60s);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_TRUE(held_by(*back, "node-a").empty());
  EXPECT_TRUE(back->claimed.empty());
  EXPECT_EQ(held_by(*back, "node-b").size(), 6U);
  // Then the fleet is rebalanced: node-b gives back its surplus, node-a claims it.
  auto surplus = b.sync_leases("node-b", 60s);
  ASSERT_TRUE(surplus) << surplus.error().message();
  EXPECT_EQ(surplus->released.size(), 3U);
  auto share = a.sync_leases("node-a", 60s);
  ASSERT_TRUE(share) << share.error().message();
  EXPECT_EQ(share->claimed.size(), 3U);
  EXPECT_EQ(held_by(*share, "node-a").size(), 3U);
  EXPECT_EQ(held_by(*share, "node-b").size(), 3U);
}

TEST_F(LeaseTest, ReleasedLeasesAreClaimableAtOnceAndRemovedServersLeave) {
  auto a = open();
  auto b = open();
  const auto ids = add_servers(a, 4);
  ASSERT_TRUE(a.sync_leases("node-a", 60s));
  ASSERT_TRUE(b.sync_leases("node-b", 60s));
  ASSERT_TRUE(a.sync_leases("node-a", 60s));  // gives back its surplus
  auto balanced = b.sync_leases("node-b", 60s);
  ASSERT_TRUE(balanced) << balanced.error().message();
  ASSERT_EQ(held_by(*balanced, "node-b").size(), 2U);
  // node-a drains: its leases and heartbeat go at once, long before they would expire.
  auto released = a.release_leases("node-a");
  ASSERT_TRUE(released) << released.error().message();
  EXPECT_EQ(*released, 2U);
  auto after = b.sync_leases("node-b", 60s);
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->nodes, 1U);
  EXPECT_EQ(after->claimed.size(), 2U);
  for (const auto& claim : after->claimed) {
    EXPECT_EQ(claim.previous_node, "");
  }
  EXPECT_EQ(held_by(*after, "node-b").size(), 4U);
  // A removed server's lease goes with it; a new server is claimed by the next sync.
  ASSERT_TRUE(a.remove_server(ids[0]));
  add_servers(a, 1, "new");
  auto next = b.sync_leases("node-b", 60s);
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(next->servers, 4U);
  EXPECT_EQ(next->claimed.size(), 1U);
  const auto held = held_by(*next, "node-b");
  EXPECT_EQ(held.size(), 4U);
  EXPECT_FALSE(held.contains(ids[0]));
  // Nonsense is refused.
  EXPECT_FALSE(b.sync_leases("", 60s));
  EXPECT_FALSE(b.sync_leases("node-b", 0ms));
}

TEST(LeaseSqliteTest, OneNodeOnAFileHoldsEveryServer) {
  healer::test::TempDir dir;
  auto store = Store::open(test::options_in(dir.path()));
  ASSERT_TRUE(store) << store.error().message();
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = store->add_server(server_named("s" + std::to_string(i)));
    ASSERT_TRUE(id) << id.error().message();
    ids.push_back(*id);
  }
  auto sync = store->sync_leases("only", 30s);
  ASSERT_TRUE(sync) << sync.error().message();
  EXPECT_EQ(sync->claimed.size(), 3U);
  EXPECT_EQ(held_by(*sync, "only").size(), 3U);
  auto again = store->sync_leases("only", 30s);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_TRUE(again->claimed.empty());
  EXPECT_EQ(held_by(*again, "only").size(), 3U);
  ASSERT_TRUE(store->release_leases("only"));
  // What other nodes recorded lately: the newest run of each server started since a time.
  EXPECT_TRUE(store->latest_runs_since(0)->empty());
  for (const std::int64_t at : {1000, 2000}) {
    DiagnosisRun run;
    run.server_id = ids[0];
    run.started_at = at;
    run.finished_at = at + 10;
    run.status = CheckStatus::ok;
    ASSERT_TRUE(store->record_run(run));
  }
  DiagnosisRun old;
  old.server_id = ids[1];
  old.started_at = 500;
  old.finished_at = 510;
  ASSERT_TRUE(store->record_run(old));
  auto runs = store->latest_runs_since(1500);
  ASSERT_TRUE(runs) << runs.error().message();
  ASSERT_EQ(runs->size(), 1U);
  EXPECT_EQ(runs->front().server_id, ids[0]);
  EXPECT_EQ(runs->front().started_at, 2000);
  EXPECT_EQ(store->latest_runs_since(0)->size(), 2U);
}

}  // namespace
}  // namespace healer::store
