// `healer diagnose` as a user runs it: an inventory of several real sshds (one down, one that
// refuses our key) diagnosed in one sweep; Nagios exit codes; runs recorded in the SQLite file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
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

namespace fs = std::filesystem;
using test::SshdFixture;

test::CommandOutput healer(const test::TempDir& home, std::vector<std::string> args) {
  std::vector<std::string> argv{"env", "HOME=" + home.path().string(),
                                "HEALER_DB=" + (home.path() / "inventory.db").string(), HEALER_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv, std::chrono::seconds(40));
}

void add(const test::TempDir& home, const std::string& name, const SshdFixture& sshd,
         std::uint16_t port, const fs::path& key, const std::string& tag) {
  const auto added =
      healer(home, {"server", "add", name, "--host", sshd.host(), "--port", std::to_string(port),
                    "--user", sshd.user(), "--identity", key.string(), "--known-hosts",
                    sshd.known_hosts_path().string(), "--tag", tag});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
}

const nlohmann::json& server_doc(const nlohmann::json& doc, const std::string& name) {
  for (const auto& server : doc["servers"]) {
    if (server["server"] == name) {
      return server;
    }
  }
  throw std::runtime_error("no server " + name + " in the output");
}

// Deterministic checks: memory and uptime with thresholds no healthy machine trips.
const std::vector<std::string> kCalmChecks{"--check",     "memory",      "--check",
                                           "uptime",      "--threshold", "memory=0:0",
                                           "--threshold", "uptime=0:0"};

TEST(DiagnoseCli, OneSweepGoodDownAndWrongKey) {
  SshdFixture good1;
  SshdFixture good2;
  SshdFixture refuses;
  good1.start();
  good2.start();
  refuses.start();
  const auto stranger = refuses.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  test::TempDir home;
  add(home, "good1", good1, good1.port(), good1.client_key_path(), "fleet");
  add(home, "good2", good2, good2.port(), good2.client_key_path(), "fleet");
  add(home, "down", good1, test::closed_port(), good1.client_key_path(), "fleet");
  add(home, "wrongkey", refuses, refuses.port(), stranger.private_key, "fleet");

  std::vector<std::string> args{"diagnose", "--tag", "fleet", "--json"};
  args.insert(args.end(), kCalmChecks.begin(), kCalmChecks.end());
  const auto run = healer(home, args);
  ASSERT_EQ(run.exit_code(), 3) << run.err;  // UNKNOWN: two servers could not be looked at
  const auto doc = nlohmann::json::parse(run.out);
  ASSERT_EQ(doc["servers"].size(), 4u);
  for (const std::string name : {"good1", "good2"}) {
    const auto& server = server_doc(doc, name);
    EXPECT_EQ(server["status"], "OK") << server.dump();
    EXPECT_EQ(server["reachable"], true);
    ASSERT_EQ(server["checks"].size(), 2u);
    EXPECT_EQ(server["checks"][0]["name"], "memory");
    EXPECT_EQ(server["checks"][0]["status"], "OK");
  }
  const auto& down = server_doc(doc, "down");
  EXPECT_EQ(down["reachable"], false);
  EXPECT_EQ(down["status"], "UNKNOWN");
  EXPECT_NE(down["error"]["message"].get<std::string>().find("connection refused"),
            std::string::npos)
      << down.dump();
  const auto& wrong = server_doc(doc, "wrongkey");
  EXPECT_EQ(wrong["reachable"], false);
  EXPECT_NE(wrong["error"]["message"].get<std::string>().find("auth"), std::string::npos)
      << wrong.dump();
  // One failed authentication, never a retry loop; the good servers took one login each.
  EXPECT_EQ(refuses.failed_auth_count(), 1u);
  EXPECT_EQ(good1.accepted_auth_count(), 1u);
  EXPECT_EQ(good2.accepted_auth_count(), 1u);

  // Every run is in the store, with its checks.
  store::StoreOptions options;
  options.db_path = home.path() / "inventory.db";
  auto store = store::Store::open(std::move(options));
  ASSERT_TRUE(store) << store.error().message();
  for (const std::string name : {"good1", "down"}) {
    auto record = store->get_server_by_name(name);
    ASSERT_TRUE(record);
    auto runs = store->recent_runs(record->id);
    ASSERT_TRUE(runs);
    ASSERT_EQ(runs->size(), 1u) << name;
    EXPECT_EQ(runs->front().checks.size(), 2u);
    EXPECT_EQ(runs->front().status,
              name == "good1" ? store::CheckStatus::ok : store::CheckStatus::unknown);
  }
}

TEST(DiagnoseCli, ExitCodesFollowNagios) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "box", sshd, sshd.port(), sshd.client_key_path(), "t");
  const auto ok = healer(
      home, {"diagnose", "box", "--no-store", "--check", "memory", "--threshold", "memory=0:0"});
  EXPECT_EQ(ok.exit_code(), 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("memory"), std::string::npos);
  EXPECT_EQ(ok.out.find("\033["), std::string::npos);  // no colour when piped
  // Available memory is always <= 100%: a lower-is-worse critical level of 100 trips.
  const auto warning = healer(
      home, {"diagnose", "box", "--no-store", "--check", "memory", "--threshold", "memory=100:"});
  EXPECT_EQ(warning.exit_code(), 1) << warning.out;
  const auto critical = healer(
      home, {"diagnose", "box", "--no-store", "--check", "memory", "--threshold", "memory=:100"});
  EXPECT_EQ(critical.exit_code(), 2) << critical.out;
  EXPECT_NE(critical.out.find("CRITICAL"), std::string::npos);
}

TEST(DiagnoseCli, ConfigFileThresholdsPerTagAndServer) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "calm", sshd, sshd.port(), sshd.client_key_path(), "relaxed");
  add(home, "picky", sshd, sshd.port(), sshd.client_key_path(), "strict");
  add(home, "pickiest", sshd, sshd.port(), sshd.client_key_path(), "strict");
  const auto config = home.path() / "healer.toml";
  std::ofstream(config) << "[checks]\nthresholds = { memory = [0, 0] }\n"
                        << "[checks.tags.strict]\nthresholds = { memory = [100, 0] }\n"
                        << "[checks.servers.pickiest]\nthresholds = { memory = { crit = 100 } }\n";
  const auto run = healer(home, {"diagnose", "--all", "--json", "--no-store", "--check", "memory",
                                 "--config", config.string()});
  ASSERT_EQ(run.exit_code(), 2) << run.err;
  const auto doc = nlohmann::json::parse(run.out);
  EXPECT_EQ(server_doc(doc, "calm")["status"], "OK");
  EXPECT_EQ(server_doc(doc, "picky")["status"], "WARNING");
  EXPECT_EQ(server_doc(doc, "pickiest")["status"], "CRITICAL");

  std::ofstream(config) << "[checks.servers.calm]\nthresholds = { memroy = [1, 2] }\n";
  const auto bad = healer(home, {"diagnose", "--all", "--config", config.string()});
  EXPECT_EQ(bad.exit_code(), cli::kExitUsage);
  EXPECT_NE(bad.err.find("checks.servers.calm.thresholds.memroy: no check reads this threshold"),
            std::string::npos)
      << bad.err;
}

TEST(DiagnoseCli, ApplicationChecksItsPortsAndRecordsTheApp) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "box", sshd, sshd.port(), sshd.client_key_path(), "t");
  // The sshd's own port listens; the closed one does not.
  const auto closed = test::closed_port();
  ASSERT_EQ(healer(home, {"app", "add", "shop", "--server", "box", "--port",
                          std::to_string(sshd.sshd_port()), "--log", "/etc/hostname"})
                .exit_code(),
            0);
  ASSERT_EQ(healer(home, {"app", "add", "broken", "--server", "box", "--port",
                          std::to_string(closed), "--unit", "shop.service", "--health-url",
                          "http://127.0.0.1:" + std::to_string(closed) + "/health"})
                .exit_code(),
            0);
  const auto listed = nlohmann::json::parse(healer(home, {"app", "list", "--json"}).out);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0]["name"], "broken");
  EXPECT_EQ(listed[0]["server"], "box");
  EXPECT_EQ(listed[0]["systemd_units"], (nlohmann::json{"shop.service"}));

  const auto good =
      healer(home, {"diagnose", "--app", "shop", "--check", "listening_ports", "--json"});
  EXPECT_EQ(good.exit_code(), 0) << good.out << good.err;
  const auto good_doc = nlohmann::json::parse(good.out);
  const auto& good_checks = good_doc["servers"][0]["checks"];
  ASSERT_EQ(good_checks.size(), 2u);  // listening_ports, then the application's log check
  EXPECT_EQ(good_checks[1]["name"], "app.logs");
  EXPECT_EQ(good_checks[1]["status"], "OK") << good_checks[1].dump();
  const auto bad = healer(home, {"diagnose", "--app", "broken", "--check", "listening_ports"});
  EXPECT_EQ(bad.exit_code(), 2) << bad.out << bad.err;
  EXPECT_NE(bad.out.find(std::to_string(closed)), std::string::npos) << bad.out;
  // The unit (no systemd here: UNKNOWN; with systemd: not active) and the health URL (nothing
  // listens: CRITICAL, or UNKNOWN without curl and wget) are checked too.
  EXPECT_NE(bad.out.find("app.units"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("app.health"), std::string::npos) << bad.out;

  // The runs are recorded against the server with the application's id.
  store::StoreOptions options;
  options.db_path = home.path() / "inventory.db";
  auto store = store::Store::open(std::move(options));
  ASSERT_TRUE(store);
  const auto app = store->get_application_by_name("broken");
  ASSERT_TRUE(app);
  const auto runs = store->recent_runs(app->server_id);
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ(runs->front().app_id, app->id);

  EXPECT_EQ(healer(home, {"diagnose", "--app", "nope"}).exit_code(), cli::kExitUsage);
  EXPECT_EQ(healer(home, {"app", "add", "x", "--server", "ghost"}).exit_code(), cli::kExitUsage);
  EXPECT_EQ(healer(home, {"app", "add", "shop", "--server", "box"}).exit_code(), cli::kExitUsage);
  EXPECT_EQ(healer(home, {"app", "remove", "shop"}).exit_code(), 0);
  EXPECT_EQ(healer(home, {"app", "remove", "shop"}).exit_code(), cli::kExitUsage);
}

// security_updates (apt, seconds) is kept in the store for 6 h: the next process reuses it.
TEST(DiagnoseCli, SlowCheckOutputIsReusedByTheNextRun) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "box", sshd, sshd.port(), sshd.client_key_path(), "t");
  auto cached_flag = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"diagnose", "box", "--check", "security_updates", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto run = healer(home, args);
    const auto check = nlohmann::json::parse(run.out)["servers"][0]["checks"][0];
    return std::pair{check["status"].get<std::string>(), check["cached"].get<bool>()};
  };
  const auto [status, first_cached] = cached_flag({});
  EXPECT_FALSE(first_cached);
  if (status == "UNKNOWN") {
    GTEST_SKIP() << "security_updates cannot look on this machine (no apt/dnf/yum, or locked): "
                    "UNKNOWN results are never cached";
  }
  const auto [again_status, again_cached] = cached_flag({});
  EXPECT_TRUE(again_cached);
  EXPECT_EQ(again_status, status);
  EXPECT_FALSE(cached_flag({"--fresh"}).second);
  EXPECT_EQ(sshd.accepted_auth_count(), 2u);  // the all-cached run opened no connection
}

TEST(DiagnoseCli, SeedChecksShareOneConnection) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  add(home, "box", sshd, sshd.port(), sshd.client_key_path(), "t");
  const auto run = healer(home, {"diagnose", "box", "--seed", "--json"});
  ASSERT_LE(run.exit_code(), 3) << run.err;
  const auto doc = nlohmann::json::parse(run.out);
  ASSERT_EQ(doc["servers"][0]["checks"].size(), 7u);
  EXPECT_EQ(doc["servers"][0]["reachable"], true);
  EXPECT_EQ(sshd.accepted_auth_count(), 1u);
  EXPECT_EQ(sshd.connection_count(), 1u);
}

TEST(DiagnoseCli, BadInputIsAUsageError) {
  test::TempDir home;
  const auto nothing = healer(home, {"diagnose"});
  EXPECT_EQ(nothing.exit_code(), cli::kExitUsage);
  EXPECT_NE(nothing.err.find("--all"), std::string::npos) << nothing.err;
  const auto ghost = healer(home, {"diagnose", "ghost"});
  EXPECT_EQ(ghost.exit_code(), cli::kExitUsage);
  EXPECT_NE(ghost.err.find("no server named 'ghost'"), std::string::npos) << ghost.err;
  const auto check = healer(home, {"diagnose", "--all", "--check", "nope"});
  EXPECT_EQ(check.exit_code(), cli::kExitUsage);
  EXPECT_NE(check.err.find("no check named 'nope'"), std::string::npos);
  const auto threshold = healer(home, {"diagnose", "--all", "--threshold", "disk_space=abc:1"});
  EXPECT_EQ(threshold.exit_code(), cli::kExitUsage);
  EXPECT_NE(threshold.err.find("not a number"), std::string::npos) << threshold.err;
  const auto key = healer(home, {"diagnose", "--all", "--threshold", "nosuch=1:2"});
  EXPECT_EQ(key.exit_code(), cli::kExitUsage);
  EXPECT_NE(key.err.find("no check reads the threshold 'nosuch'"), std::string::npos);
  const auto empty = healer(home, {"diagnose", "--all"});
  EXPECT_EQ(empty.exit_code(), cli::kExitUsage);
  EXPECT_NE(empty.err.find("holds no server yet"), std::string::npos) << empty.err;
}

}  // namespace
}  // namespace healer
