// `healer metrics` as a user runs it: a sweep over several real sshds (one down, one refusing our
// key), samples stored in the SQLite inventory and read back with `metrics show`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/store/store.hpp"
#include "ports.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

using test::SshdFixture;

test::CommandOutput healer(const test::TempDir& home, std::vector<std::string> args) {
  std::vector<std::string> argv{"env", "HOME=" + home.path().string(),
                                "HEALER_DB=" + (home.path() / "inventory.db").string(), HEALER_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv, std::chrono::seconds(40));
}

void add(const test::TempDir& home, const std::string& name, const SshdFixture& sshd,
         std::uint16_t port, const std::filesystem::path& key) {
  const auto added =
      healer(home, {"server", "add", name, "--host", sshd.host(), "--port", std::to_string(port),
                    "--user", sshd.user(), "--identity", key.string(), "--known-hosts",
                    sshd.known_hosts_path().string()});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
}

const nlohmann::json* find_server(const nlohmann::json& doc, const std::string& name) {
  for (const auto& entry : doc) {
    if (entry["server"] == name) {
      return &entry;
    }
  }
  return nullptr;
}

std::vector<const nlohmann::json*> named(const nlohmann::json& entry, const std::string& name) {
  std::vector<const nlohmann::json*> found;
  for (const auto& metric : entry["metrics"]) {
    if (metric["name"] == name) {
      found.push_back(&metric);
    }
  }
  return found;
}

TEST(MetricsCli, SweepCollectsTheGoodAndReportsTheBad) {
  SshdFixture good1;
  SshdFixture good2;
  SshdFixture refuses;
  good1.start();
  good2.start();
  refuses.start();
  const auto stranger = refuses.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  test::TempDir home;
  add(home, "good1", good1, good1.port(), good1.client_key_path());
  add(home, "good2", good2, good2.port(), good2.client_key_path());
  add(home, "down", good1, test::closed_port(), good1.client_key_path());
  add(home, "wrongkey", refuses, refuses.port(), stranger.private_key);

  const auto run = healer(home, {"metrics", "collect", "--all", "--json"});
  EXPECT_EQ(run.exit_code(), 1) << run.err;  // not every server was collected
  const auto doc = nlohmann::json::parse(run.out);
  ASSERT_EQ(doc.size(), 4u);
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  for (const std::string name : {"good1", "good2"}) {
    const auto* entry = find_server(doc, name);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ((*entry)["ok"], true) << entry->dump();
    EXPECT_TRUE((*entry)["failed_sections"].empty()) << (*entry)["failed_sections"].dump();
    ASSERT_EQ(named(*entry, "node_load1").size(), 1u);
    const auto total = named(*entry, "node_memory_MemTotal_bytes");
    ASSERT_EQ(total.size(), 1u);
    EXPECT_GT((*total.front())["value"].get<double>(), 0.0);
    // One idle series per online CPU (the sshd runs on this machine).
    std::size_t idle = 0;
    for (const auto* metric : named(*entry, "node_cpu_seconds_total")) {
      idle += (*metric)["labels"]["mode"] == "idle" ? 1U : 0U;
    }
    EXPECT_EQ(static_cast<long>(idle), cpus);
    EXPECT_EQ(named(*entry, "node_uname_info").size(), 1u);
  }
  const auto* down = find_server(doc, "down");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ((*down)["ok"], false);
  EXPECT_NE((*down)["error"]["message"].get<std::string>().find("connection refused"),
            std::string::npos);
  const auto* wrong = find_server(doc, "wrongkey");
  ASSERT_NE(wrong, nullptr);
  EXPECT_EQ((*wrong)["ok"], false);
  // One login per good server, one failed attempt (never a retry loop) for the bad key.
  EXPECT_EQ(good1.accepted_auth_count(), 1u);
  EXPECT_EQ(good2.accepted_auth_count(), 1u);
  EXPECT_EQ(refuses.failed_auth_count(), 1u);

  // The samples are in the store.
  const auto shown = healer(home, {"metrics", "show", "good1", "--name", "node_load1", "--json"});
  ASSERT_EQ(shown.exit_code(), 0) << shown.err;
  const auto samples = nlohmann::json::parse(shown.out);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_GE(samples[0]["value"].get<double>(), 0.0);
  const auto table = healer(home, {"metrics", "show", "good2"});
  EXPECT_NE(table.out.find("node_filefd_allocated"), std::string::npos) << table.out;
  EXPECT_TRUE(healer(home, {"metrics", "show", "down"}).out.empty());
}

TEST(MetricsCli, HumanOutputAndNoStore) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "box", sshd, sshd.port(), sshd.client_key_path());
  const auto run = healer(home, {"metrics", "collect", "box", "--no-store"});
  ASSERT_EQ(run.exit_code(), 0) << run.err;
  EXPECT_NE(run.out.find("box"), std::string::npos);
  EXPECT_NE(run.out.find("mem "), std::string::npos) << run.out;
  EXPECT_NE(run.err.find("1 collected (0 partial), 0 failed"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("\033["), std::string::npos);  // no progress bar when not a terminal
  const auto shown = healer(home, {"metrics", "show", "box", "--json"});
  EXPECT_EQ(nlohmann::json::parse(shown.out).size(), 0u);
}

TEST(MetricsCli, SecondCollectionHasRatesFromTheStoredFirst) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "box", sshd, sshd.port(), sshd.client_key_path());
  const auto first = healer(home, {"metrics", "collect", "box", "--json"});
  ASSERT_EQ(first.exit_code(), 0) << first.err;
  EXPECT_TRUE(nlohmann::json::parse(first.out)[0]["rates"].empty());  // nothing to compare with
  const auto second = healer(home, {"metrics", "collect", "box", "--json"});
  ASSERT_EQ(second.exit_code(), 0) << second.err;
  const auto rates = nlohmann::json::parse(second.out)[0]["rates"];
  const nlohmann::json* busy = nullptr;
  for (const auto& rate : rates) {
    if (rate["name"] == "healer_cpu_busy_percent") {
      busy = &rate;
    }
  }
  ASSERT_NE(busy, nullptr) << rates.dump();
  EXPECT_GE((*busy)["value"].get<double>(), 0.0);
  EXPECT_LE((*busy)["value"].get<double>(), 100.0);
  // The rates are stored with the collection.
  const auto shown =
      healer(home, {"metrics", "show", "box", "--name", "healer_cpu_busy_percent", "--json"});
  EXPECT_EQ(nlohmann::json::parse(shown.out).size(), 1u) << shown.out;
}

TEST(MetricsCli, CollectPrunesSamplesPastTheRetention) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "box", sshd, sshd.port(), sshd.client_key_path());
  const auto db = home.path() / "inventory.db";
  {
    store::StoreOptions options;
    options.db_path = db;
    auto store = store::Store::open(std::move(options));
    ASSERT_TRUE(store) << store.error().message();
    const auto box = store->get_server_by_name("box");
    ASSERT_TRUE(box);
    const std::int64_t day_ms = 86'400'000;
    const auto now = store::now_unix_ms();
    ASSERT_TRUE(store->append_samples({{box->id, now - 3 * day_ms, "node_load1", "", 1.0},
                                       {box->id, now - day_ms / 2, "node_load1", "", 2.0}}));
  }
  const auto run = healer(home, {"metrics", "collect", "box", "--no-progress"});
  ASSERT_EQ(run.exit_code(), 0) << run.err;
  // The default keeps 30 days: nothing old is gone yet.
  auto shown = nlohmann::json::parse(
      healer(home, {"metrics", "show", "box", "--since", "7d", "--name", "node_load1", "--json"})
          .out);
  EXPECT_EQ(shown.size(), 3u);
  const auto pruned = test::run_command(
      {"env", "HOME=" + home.path().string(), "HEALER_DB=" + db.string(),
       "HEALER_SAMPLES_RETENTION_DAYS=1", HEALER_BIN, "metrics", "collect", "box"});
  ASSERT_EQ(pruned.exit_code(), 0) << pruned.err;
  shown = nlohmann::json::parse(
      healer(home, {"metrics", "show", "box", "--since", "7d", "--name", "node_load1", "--json"})
          .out);
  EXPECT_EQ(shown.size(), 3u);  // the 3-day-old one went, the second collection came
  for (const auto& sample : shown) {
    EXPECT_NE(sample["value"], 1.0);
  }
  const auto bad = test::run_command({"env", "HOME=" + home.path().string(),
                                      "HEALER_DB=" + db.string(), "HEALER_SAMPLES_RETENTION_DAYS=0",
                                      HEALER_BIN, "metrics", "collect", "box"});
  EXPECT_EQ(bad.exit_code(), cli::kExitUsage);
  EXPECT_NE(bad.err.find("HEALER_SAMPLES_RETENTION_DAYS='0'"), std::string::npos) << bad.err;
}

TEST(MetricsCli, BadInputIsAUsageError) {
  test::TempDir home;
  const auto since = healer(home, {"metrics", "show", "x", "--since", "5 parsecs"});
  EXPECT_EQ(since.exit_code(), cli::kExitUsage);
  EXPECT_NE(since.err.find("is not a duration"), std::string::npos) << since.err;
  const auto ghost = healer(home, {"metrics", "show", "ghost"});
  EXPECT_EQ(ghost.exit_code(), cli::kExitUsage);
  const auto none = healer(home, {"metrics", "collect"});
  EXPECT_EQ(none.exit_code(), cli::kExitUsage);
  EXPECT_NE(none.err.find("--all"), std::string::npos) << none.err;
  const auto sub = healer(home, {"metrics"});
  EXPECT_EQ(sub.exit_code(), cli::kExitUsage);
}

}  // namespace
}  // namespace healer
