// `healer serve` as it runs for real: a child process with its own database and config, test-bed
// sshds, the CLI through its control socket, its HTTP API, /metrics checked by promtool, a
// webhook receiver, signals.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "daemon_fixture.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"
#include "webhook_receiver.hpp"

namespace healer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::DaemonFixture;
using test::SshdFixture;
using test::WebhookReceiver;

test::CommandOutput healer(const DaemonFixture& daemon, std::vector<std::string> args,
                           std::vector<std::string> extra_env = {}) {
  std::vector<std::string> argv{"env"};
  const auto env = daemon.cli_env();
  argv.insert(argv.end(), env.begin(), env.end());
  argv.insert(argv.end(), extra_env.begin(), extra_env.end());
  argv.push_back(HEALER_BIN);
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv, std::chrono::seconds(60));
}

void add_server(const DaemonFixture& daemon, const std::string& name, const SshdFixture& sshd,
                std::uint16_t port = 0) {
  const auto added = healer(
      daemon, {"server", "add", name, "--host", sshd.host(), "--port",
               std::to_string(port == 0 ? sshd.port() : port), "--user", sshd.user(), "--identity",
               sshd.client_key_path().string(), "--known-hosts", sshd.known_hosts_path().string()});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
}

json get_json(const DaemonFixture& daemon, const std::string& path, bool token = false) {
  const auto response = daemon.get(path, token);
  EXPECT_EQ(response.status, 200) << path << ": " << response.body;
  return json::parse(response.body, nullptr, false);
}

const json* find_server(const json& list, const std::string& name) {
  for (const auto& item : list["items"]) {
    if (item["name"] == name) {
      return &item;
    }
  }
  return nullptr;
}

// Figures (durations, times, live memory and load) change between two runs; everything else of
// an output must not. Whether a session was reused is the point of the daemon: left out.
std::string without_figures(std::string text) {
  text = std::regex_replace(text, std::regex(R"re(\n *"session_reused": (true|false),?)re"), "");
  text = std::regex_replace(text, std::regex("[0-9]+(\\.[0-9]+)?(e[+-]?[0-9]+)?"), "N");
  text = std::regex_replace(text, std::regex(" +"), " ");  // columns sized to the figures
  return text;
}

constexpr const char* kQuickChecks = "checks = [\"memory\", \"uptime\"]\n";

TEST(Daemon, SchedulesEveryServerOncePerIntervalWithoutStacking) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  for (int i = 0; i < 20; ++i) {
    add_server(daemon, fmt::format("s{:02}", i), sshd);
  }
  // The daemon's slots start between its launch and its first ready answer, which a loaded
  // machine may keep seconds apart: the slots that came up are counted against both.
  const auto launched = std::chrono::steady_clock::now();
  daemon.start();
  const auto started = std::chrono::steady_clock::now();
  // Every server collected at least 4 times.
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto list = get_json(daemon, "/api/v1/servers");
        for (const auto& item : list["items"]) {
          if (item["schedule"]["metrics"]["runs"].get<int>() < 4) {
            return false;
          }
        }
        return list["items"].size() == 20;
      },
      std::chrono::seconds(40), std::chrono::milliseconds(200)))
      << daemon.log_text();
  // The list's figures are from some moment between these two (an answer takes a while too).
  const auto asked = std::chrono::steady_clock::now();
  const auto list = get_json(daemon, "/api/v1/servers");
  const auto answered = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(asked - started).count();
  const double seconds_since_launch = std::chrono::duration<double>(answered - launched).count();
  for (const auto& item : list["items"]) {
    const auto& work = item["schedule"]["metrics"];
    const auto runs = work["runs"].get<double>();
    const auto skipped = work["skipped"].get<double>();
    // One slot per interval: started plus skipped runs never exceed the slots that came up, and
    // a run still going when its next slot comes is skipped, never stacked (no second run).
    EXPECT_LE(runs + skipped, seconds_since_launch + 1) << item["name"];
    EXPECT_GE(runs + skipped, seconds - 3) << item["name"];
    EXPECT_FALSE(work["running"].get<bool>() && work["runs"] == 0) << item["name"];
    EXPECT_FALSE(item["metrics"].is_null()) << item["name"];
  }
  const auto scheduler = get_json(daemon, "/api/v1/scheduler");
  EXPECT_EQ(scheduler["runs"]["diagnose"], 0);  // diagnose_interval = 0: off
  // The pool reused connections: far fewer handshakes than collections.
  const auto pool = get_json(daemon, "/api/v1/pool");
  EXPECT_LT(pool["totals"]["handshakes_started"].get<int>(),
            pool["totals"]["acquisitions"].get<int>() / 2)
      << pool.dump();
  const auto stopped = daemon.stop();
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->exit_code, 0);
}

TEST(Daemon, AStoppedServerTurnsUnknownIsNotifiedOnceAndRecovers) {
  SshdFixture sshd;
  sshd.start();
  WebhookReceiver webhook;
  test::TempDir home;
  DaemonFixture daemon(
      HEALER_BIN, home,
      fmt::format("[pool]\nbackoff_initial_ms = 100\nbackoff_max_ms = 300\n"
                  "[schedule]\nmetrics_interval = 0\ndiagnose_interval = \"1s\"\n{}"
                  "[checks]\nthresholds = {{ memory = [0, 0], uptime = [0, 0] }}\n"
                  "[notify]\nwebhook = \"http://127.0.0.1:{}/hook\"\nconsecutive = 1\n",
                  kQuickChecks, webhook.port()));
  add_server(daemon, "web", sshd);
  daemon.start();
  auto status = [&] {
    const auto server = get_json(daemon, "/api/v1/servers/web");
    return server["status"].is_string() ? server["status"].get<std::string>() : std::string();
  };
  ASSERT_TRUE(test::poll_until([&] { return status() == "OK"; }, std::chrono::seconds(15)))
      << daemon.log_text();
  EXPECT_TRUE(webhook.received().empty());  // a first OK is no news
  sshd.stop();
  ASSERT_TRUE(test::poll_until([&] { return status() == "UNKNOWN"; }, std::chrono::seconds(15)))
      << daemon.log_text();
  ASSERT_TRUE(
      test::poll_until([&] { return webhook.received().size() == 1; }, std::chrono::seconds(10)));
  // More UNKNOWN runs are no new transition: still exactly one notification.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto events = webhook.received();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0]["server"], "web");
  EXPECT_EQ(events[0]["from"], "OK");
  EXPECT_EQ(events[0]["to"], "UNKNOWN");
  sshd.start();
  ASSERT_TRUE(test::poll_until([&] { return status() == "OK"; }, std::chrono::seconds(20)))
      << daemon.log_text();
  ASSERT_TRUE(
      test::poll_until([&] { return webhook.received().size() == 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(webhook.received()[1]["to"], "OK");
  const auto transitions = get_json(daemon, "/api/v1/servers/web/transitions");
  ASSERT_EQ(transitions["items"].size(), 3U) << transitions.dump();
  EXPECT_EQ(transitions["items"][0]["to"], "OK");
  EXPECT_EQ(transitions["items"][1]["to"], "UNKNOWN");
  EXPECT_EQ(transitions["items"][2]["from"], nullptr);
}

std::int64_t count(sqlite3* db, const char* sql) {
  sqlite3_stmt* statement = nullptr;
  sqlite3_prepare_v2(db, sql, -1, &statement, nullptr);
  std::int64_t value = -1;
  if (sqlite3_step(statement) == SQLITE_ROW) {
    value = sqlite3_column_int64(statement, 0);
  }
  sqlite3_finalize(statement);
  return value;
}

void expect_integrity_ok(sqlite3* db) {
  sqlite3_stmt* check = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &check, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(check), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(check, 0)), "ok");
  sqlite3_finalize(check);
}

TEST(Daemon, SigtermMidSweepStopsInTimeWithAnIntactDatabase) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       std::string("[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = "
                                   "\"1s\"\n") +
                           kQuickChecks);
  for (int i = 0; i < 10; ++i) {
    add_server(daemon, fmt::format("s{}", i), sshd);
  }
  daemon.start();
  ASSERT_TRUE(test::poll_until(
      [&] { return get_json(daemon, "/api/v1/scheduler")["runs"]["diagnose"].get<int>() >= 10; },
      std::chrono::seconds(20)));
  const auto stopping = std::chrono::steady_clock::now();
  const auto stopped = daemon.stop(SIGTERM, std::chrono::seconds(12));
  ASSERT_TRUE(stopped.has_value()) << "still running 12 s after SIGTERM";
  EXPECT_EQ(stopped->exit_code, 0) << daemon.log_text();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, std::chrono::seconds(11));
  EXPECT_FALSE(fs::exists(daemon.socket()));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(daemon.db().c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  expect_integrity_ok(db);
  // No half-written run: every run has its two checks.
  EXPECT_GT(count(db, "SELECT COUNT(*) FROM diagnosis_runs"), 0);
  EXPECT_EQ(count(db,
                  "SELECT COUNT(*) FROM diagnosis_runs r WHERE (SELECT COUNT(*) FROM "
                  "check_results c WHERE c.run_id = r.id) != 2"),
            0);
  sqlite3_close(db);
  // A second start resumes from the same database.
  daemon.start();
  EXPECT_EQ(get_json(daemon, "/api/v1/servers")["items"].size(), 10U);
  EXPECT_FALSE(get_json(daemon, "/api/v1/servers/s0")["status"].is_null());
}

TEST(Daemon, TheCliThroughTheSocketGivesWhatALocalRunGives) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  // No backoff: a daemon that saw `down` fail moments ago would otherwise answer "backing off"
  // where a fresh process tries again (the one intended difference between the two).
  DaemonFixture daemon(HEALER_BIN, home,
                       "[pool]\nbackoff_initial_ms = 1\nbackoff_max_ms = 1\n"
                       "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n");
  add_server(daemon, "web", sshd);
  add_server(daemon, "down", sshd, test::closed_port());
  daemon.start();
  const std::vector<std::vector<std::string>> cases{
      {"exec", "web", "--", "printf 'a\\001b\\n'; echo err >&2; exit 3"},
      {"exec", "web", "down", "--", "echo same"},
      {"exec", "--json", "web", "--", "echo hi"},
      {"diagnose", "web", "--check", "memory", "--check", "uptime", "--threshold", "memory=0:0",
       "--threshold", "uptime=0:0", "--no-store"},
      {"diagnose", "web", "down", "--check", "memory", "--json", "--no-store"},
      {"diagnose", "ghost"},
      {"metrics", "collect", "web", "down", "--no-store"},
      {"server", "test", "web", "down"},
      {"exec", "--host", sshd.host(), "--port", std::to_string(sshd.port()), "--user", sshd.user(),
       "--identity", sshd.client_key_path().string(), "--known-hosts",
       sshd.known_hosts_path().string(), "--", "echo adhoc"},
  };
  const auto auths_before = sshd.accepted_auth_count();
  for (const auto& args : cases) {
    const auto via_daemon = healer(daemon, args);
    auto local_args = args;
    local_args.insert(local_args.begin() + (args[0] == "metrics" || args[0] == "server" ? 2 : 1),
                      "--no-daemon");
    const auto local = healer(daemon, local_args);
    const std::string what = args[0] + " " + args[1];
    EXPECT_EQ(via_daemon.exit_code(), local.exit_code()) << what << "\n" << via_daemon.err;
    EXPECT_EQ(without_figures(via_daemon.out), without_figures(local.out)) << what;
    EXPECT_EQ(without_figures(via_daemon.err), without_figures(local.err)) << what;
  }
  // The daemon's warm pool served its half with one login for `web`, one for the --host target
  // and one for `server test` (which always opens a fresh connection), while the local runs
  // logged in once each (8 of them reach the sshd).
  EXPECT_EQ(sshd.accepted_auth_count() - auths_before, 8U + 3U);
  EXPECT_NE(daemon.log_text().find("connected"), std::string::npos);
}

TEST(Daemon, InventoryChangesTakeEffectWithoutARestart) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  daemon.start();
  EXPECT_TRUE(get_json(daemon, "/api/v1/servers")["items"].empty());
  add_server(daemon, "late", sshd);
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto list = get_json(daemon, "/api/v1/servers");
        const auto* late = find_server(list, "late");
        return late != nullptr && !(*late)["metrics"].is_null();
      },
      std::chrono::seconds(10)))
      << daemon.log_text();
  ASSERT_EQ(healer(daemon, {"server", "remove", "late"}).exit_code(), 0);
  ASSERT_TRUE(test::poll_until([&] { return get_json(daemon, "/api/v1/servers")["items"].empty(); },
                               std::chrono::seconds(10)));
  // Its connection drains: sshd sees the session end.
  EXPECT_TRUE(test::poll_until(
      [&] { return get_json(daemon, "/api/v1/pool")["totals"]["sessions_ready"] == 0; },
      std::chrono::seconds(10)));
}

TEST(Daemon, TheApiNeedsTheTokenToChangeAnythingAndNeverShowsASecret) {
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n");
  daemon.start();
  const std::string body =
      R"({"name": "db1", "host": "127.0.0.1", "port": 1, "user": "ops", "auth": "password",
          "password": "s3cret-Pa55", "tags": ["prod"]})";
  EXPECT_EQ(daemon.post("/api/v1/servers", body, false).status, 401);
  auto wrong = daemon.post("/api/v1/servers", body, false);
  EXPECT_NE(wrong.body.find("\"unauthorized\""), std::string::npos);
  const auto created = daemon.post("/api/v1/servers", body);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(daemon.post("/api/v1/servers", body).status, 409);
  for (const auto& path : {"/api/v1/servers", "/api/v1/servers/db1", "/metrics"}) {
    const auto response = daemon.get(path);
    EXPECT_EQ(response.status, 200) << path;
    EXPECT_EQ(response.body.find("s3cret-Pa55"), std::string::npos) << path;
  }
  EXPECT_EQ(json::parse(daemon.get("/api/v1/servers/db1").body)["has_secret"], true);
  EXPECT_EQ(daemon.post("/api/v1/servers", "{not json").status, 400);
  EXPECT_EQ(daemon.post("/api/v1/servers", R"({"name": "x"})").status, 400);
  EXPECT_EQ(
      daemon.post("/api/v1/servers", R"({"name": "-x", "host": "h", "auth": "agent"})").status,
      400);
  EXPECT_EQ(daemon.get("/api/v1/nothing").status, 404);
  EXPECT_EQ(daemon.get("/api/v1/servers/ghost").status, 404);
  EXPECT_EQ(daemon.get("/api/v1/servers?limit=0").status, 400);
  EXPECT_EQ(daemon.del("/api/v1/servers/db1", false).status, 401);
  EXPECT_EQ(daemon.del("/api/v1/servers/db1").status, 204);
  EXPECT_EQ(daemon.del("/api/v1/servers/db1").status, 404);
  // The database and the log never hold the password in clear either.
  EXPECT_EQ(daemon.log_text().find("s3cret-Pa55"), std::string::npos);
}

// A query parameter's value, every byte but letters and digits as %XX.
std::string percent_encoded(const std::string& text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", byte);
    }
  }
  return out;
}

// Whether every member of `part` is in `whole` with the same value (objects member by member,
// arrays element by element); `why` says where they differ.
bool subset_of(const json& part, const json& whole, const std::string& at, std::string& why) {
  if (part.is_object()) {
    if (!whole.is_object()) {
      why = at + " is not an object in the full item";
      return false;
    }
    for (const auto& [key, value] : part.items()) {
      if (!whole.contains(key)) {
        why = at + "." + key + " is not in the full item";
        return false;
      }
      if (!subset_of(value, whole[key], at + "." + key, why)) {
        return false;
      }
    }
    return true;
  }
  if (part.is_array()) {
    if (!whole.is_array() || whole.size() != part.size()) {
      why = at + " differs in length";
      return false;
    }
    for (std::size_t i = 0; i < part.size(); ++i) {
      if (!subset_of(part[i], whole[i], fmt::format("{}[{}]", at, i), why)) {
        return false;
      }
    }
    return true;
  }
  if (part != whole) {
    why = at + ": " + part.dump() + " vs " + whole.dump();
    return false;
  }
  return true;
}

// The list's summary view (what the dashboard's fleet page loads): a strict subset of the full
// item under the same names, smaller, paged the same way, names escaped; an unknown view is a
// clear 400.
TEST(Daemon, TheListsSummaryViewIsASubsetOfTheFullItemsAndAnUnknownViewIsRefused) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  // Disk thresholds every machine crosses: a failing check with a message.
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n"
                       "[checks]\nthresholds = { disk_space = [1, 2] }\n");
  const std::string hostile = "q\"uote\\<script>x</script>";
  add_server(daemon, "web", sshd);
  add_server(daemon, hostile, sshd);
  add_server(daemon, "gone", sshd, test::closed_port());
  daemon.start();
  for (const auto& name : {std::string("web"), std::string("gone")}) {
    const auto diagnosed =
        daemon.post("/api/v1/servers/" + name + "/diagnose", R"({"checks": ["disk_space"]})");
    ASSERT_EQ(diagnosed.status, 200) << diagnosed.body;
  }
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto list = get_json(daemon, "/api/v1/servers");
        const auto* web = find_server(list, "web");
        const auto* other = find_server(list, hostile);
        return web != nullptr && other != nullptr && !(*web)["metrics"].is_null() &&
               !(*other)["metrics"].is_null();
      },
      std::chrono::seconds(10)))
      << daemon.log_text();

  // Between two equal full lists (collections every second move the schedule), the summary
  // holds nothing the full item does not.
  std::string why;
  json full;
  json summary;
  std::string summary_body;
  ASSERT_TRUE(test::poll_until(
      [&] {
        full = get_json(daemon, "/api/v1/servers");
        summary_body = daemon.get("/api/v1/servers?view=summary").body;
        summary = json::parse(summary_body, nullptr, false);
        return full == get_json(daemon, "/api/v1/servers");
      },
      std::chrono::seconds(10)));
  ASSERT_TRUE(summary.is_object()) << summary_body;
  ASSERT_EQ(summary["items"].size(), 3U) << summary_body;
  EXPECT_TRUE(summary["next_cursor"].is_null());
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(subset_of(summary["items"][i], full["items"][i], "items", why)) << why;
    // What the fleet page shows of it is there.
    for (const auto* field : {"name", "host", "port", "user", "tags", "status", "last_run",
                              "metrics", "owner", "schedule"}) {
      EXPECT_TRUE(summary["items"][i].contains(field)) << field;
    }
    EXPECT_FALSE(summary["items"][i].contains("identity_file"));
  }
  const auto* web = find_server(summary, "web");
  ASSERT_NE(web, nullptr);
  ASSERT_EQ((*web)["last_run"]["failing"].size(), 1U) << web->dump();
  EXPECT_EQ((*web)["last_run"]["failing"][0]["name"], "disk_space");
  EXPECT_FALSE((*web)["last_run"]["failing"][0]["message"].get<std::string>().empty());
  EXPECT_TRUE((*web)["metrics"]["load1"].is_number());
  EXPECT_TRUE((*web)["schedule"]["metrics"]["next_due"].is_number());
  const auto* gone = find_server(summary, "gone");
  ASSERT_NE(gone, nullptr);
  // Refused: the connection's own error, or the pool's backoff after it (collections every
  // second can make the diagnosis find the server backing off).
  const auto category = (*gone)["last_run"]["error"]["category"];
  EXPECT_TRUE(category == "ssh" || category == "pool") << gone->dump();
  EXPECT_NE((*gone)["last_run"]["error"]["message"].get<std::string>().find("connection refused"),
            std::string::npos)
      << gone->dump();
  // The hostile name arrives as the same text, its quote and backslash escaped in the JSON.
  EXPECT_NE(find_server(summary, hostile), nullptr);
  EXPECT_EQ(summary_body.find(hostile), std::string::npos);
  EXPECT_NE(summary_body.find(R"(q\"uote\\<script>)"), std::string::npos) << summary_body;
  EXPECT_LT(summary_body.size(), full.dump().size());

  // Pages walk the same way as the full list's.
  std::vector<std::string> names;
  std::string cursor;
  for (int page = 0; page < 5; ++page) {
    const auto doc = get_json(daemon, "/api/v1/servers?view=summary&limit=1" + cursor);
    ASSERT_EQ(doc["items"].size(), 1U) << doc.dump();
    names.push_back(doc["items"][0]["name"].get<std::string>());
    if (doc["next_cursor"].is_null()) {
      break;
    }
    cursor = "&cursor=" + percent_encoded(doc["next_cursor"].get<std::string>());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"gone", hostile, "web"}));

  // An unknown view, an empty one, a bad limit beside a good view: 400 with the reason.
  for (const auto* path :
       {"/api/v1/servers?view=compact", "/api/v1/servers?view=", "/api/v1/servers?view=SUMMARY",
        "/api/v1/servers?view=summary&limit=0"}) {
    const auto refused = daemon.get(path);
    EXPECT_EQ(refused.status, 400) << path;
    const auto error = json::parse(refused.body, nullptr, false);
    EXPECT_EQ(error["error"]["code"], "invalid_input") << path << ": " << refused.body;
  }
  EXPECT_NE(daemon.get("/api/v1/servers?view=compact").body.find("view is full or summary"),
            std::string::npos);
  // view=full is the default, spelled out.
  EXPECT_EQ(get_json(daemon, "/api/v1/servers?view=full")["items"].size(), 3U);
}

TEST(Daemon, DiagnoseNowReturnsARecordedRunAndResponsesMatchTheOpenApiDocument) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  add_server(daemon, "web", sshd);
  daemon.start();
  const auto diagnosed =
      daemon.post("/api/v1/servers/web/diagnose", R"({"checks": ["memory", "uptime"]})");
  ASSERT_EQ(diagnosed.status, 200) << diagnosed.body;
  const auto outcome = json::parse(diagnosed.body);
  const auto run_id = outcome["servers"][0]["run_id"];
  ASSERT_TRUE(run_id.is_number_integer()) << diagnosed.body;
  const auto run = get_json(daemon, "/api/v1/runs/" + std::to_string(run_id.get<int>()));
  EXPECT_EQ(run["checks"].size(), 2U);
  ASSERT_TRUE(test::poll_until(
      [&] { return !get_json(daemon, "/api/v1/servers/web")["metrics"].is_null(); },
      std::chrono::seconds(10)));
  // Every response shape against the OpenAPI document, with Debian's python3-jsonschema.
  const auto openapi = daemon.get("/api/v1/openapi.json");
  ASSERT_EQ(openapi.status, 200);
  const std::vector<std::pair<std::string, std::string>> checked{
      {"ServerList", daemon.get("/api/v1/servers").body},
      {"ServerList", daemon.get("/api/v1/servers?view=summary").body},
      {"ServerBrief",
       json::parse(daemon.get("/api/v1/servers?view=summary").body)["items"][0].dump()},
      {"ServerSummary", daemon.get("/api/v1/servers/web").body},
      {"RunList", daemon.get("/api/v1/servers/web/runs").body},
      {"Run", daemon.get("/api/v1/runs/" + std::to_string(run_id.get<int>())).body},
      {"TransitionList", daemon.get("/api/v1/servers/web/transitions").body},
      {"Series", daemon.get("/api/v1/servers/web/metrics?name=node_load1&since=1h&step=1").body},
      {"SeriesNames", daemon.get("/api/v1/servers/web/metrics").body},
      {"PoolStats", daemon.get("/api/v1/servers/web/pool").body},
      {"PoolOverview", daemon.get("/api/v1/pool").body},
      {"Scheduler", daemon.get("/api/v1/scheduler").body},
      {"DiagnoseOutcome", diagnosed.body},
      {"Error", daemon.get("/api/v1/servers/ghost").body},
  };
  std::vector<std::string> argv{"/usr/bin/python3", HEALER_VALIDATE_OPENAPI,
                                (home.path() / "openapi.json").string()};
  std::ofstream(home.path() / "openapi.json") << openapi.body;
  for (std::size_t i = 0; i < checked.size(); ++i) {
    const auto file = home.path() / fmt::format("response{}.json", i);
    std::ofstream(file) << checked[i].second;
    argv.push_back(checked[i].first + "=" + file.string());
  }
  const auto validated = test::run_command(argv, std::chrono::seconds(30));
  EXPECT_EQ(validated.exit_code(), 0) << validated.out << validated.err;
}

TEST(Daemon, MetricsPassPromtoolAndShowEachServersSeries) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  add_server(daemon, "web", sshd);
  add_server(daemon, "a \"quoted\"\\name", sshd);
  daemon.start();
  ASSERT_TRUE(test::poll_until(
      [&] {
        return daemon.get("/metrics").body.find("node_load1{server=\"web\"}") != std::string::npos;
      },
      std::chrono::seconds(10)));
  const auto metrics = daemon.get("/metrics");
  EXPECT_EQ(metrics.content_type.rfind("text/plain", 0), 0U);
  std::ofstream(home.path() / "metrics.txt") << metrics.body;
  const auto checked = test::run_command(
      {"sh", "-c", "promtool check metrics < " + (home.path() / "metrics.txt").string()});
  // promtool lints too (e.g. counters without _total); only errors fail a scrape.
  EXPECT_EQ(checked.err.find("error"), std::string::npos) << checked.err;
  EXPECT_NE(metrics.body.find("healer_pool_hit_ratio{server=\"web\"}"), std::string::npos);
  // The pool's limits, circuit/backoff state and cancellation/retry counters, per server.
  for (const char* family :
       {"healer_pool_channel_capacity", "healer_pool_channel_limit", "healer_pool_circuit_open",
        "healer_pool_circuit_retry_seconds", "healer_pool_backing_off",
        "healer_pool_backoff_retry_seconds", "healer_pool_handshakes_cancelled_total",
        "healer_pool_handshake_retries_total", "healer_pool_acquires_cancelled_total",
        "healer_pool_commands_cancelled_total"}) {
    EXPECT_NE(metrics.body.find(std::string(family) + "{server=\"web\"}"), std::string::npos)
        << family;
  }
  EXPECT_NE(metrics.body.find("server=\"a \\\"quoted\\\"\\\\name\""), std::string::npos);
  // Spare channels over the fleet: a collection every second soon runs on a spare opened after
  // the previous one; the server's own figures are in its pool document.
  const auto sample = [](const std::string& body, const std::string& series) {
    const auto at = body.find("\n" + series + " ");
    return at == std::string::npos ? -1.0 : std::stod(body.substr(at + series.size() + 2));
  };
  EXPECT_GE(sample(metrics.body, "healer_pool_spare_channels{state=\"ready\"}"), 0.0);
  ASSERT_TRUE(test::poll_until(
      [&] {
        return sample(daemon.get("/metrics").body,
                      "healer_pool_spare_channel_events_total{event=\"leased\"}") > 0;
      },
      std::chrono::seconds(10)));
  const auto final_metrics = daemon.get("/metrics").body;
  EXPECT_GT(sample(final_metrics, "healer_pool_spare_channel_events_total{event=\"opened\"}"), 0.0);
  EXPECT_EQ(sample(final_metrics, "healer_pool_spare_channel_events_total{event=\"refused\"}"),
            0.0);
  json pool;
  EXPECT_TRUE(test::poll_until(
      [&] {
        pool = json::parse(daemon.get("/api/v1/servers/web/pool").body);
        return pool.value("leases_on_spare", 0) > 0;
      },
      std::chrono::seconds(10)))
      << pool.dump();
  const auto probe = daemon.get("/probe?target=web");
  EXPECT_EQ(probe.status, 200);
  EXPECT_NE(probe.body.find("node_load1{server=\"web\"}"), std::string::npos);
  EXPECT_EQ(probe.body.find("healer_pool_"), std::string::npos);
  EXPECT_EQ(daemon.get("/probe?target=ghost").status, 404);
}

// FNV-1a (64-bit) of a server's name modulo the shard count: the shard docs/scaling.md promises.
std::size_t documented_shard(const std::string& name, std::size_t shards) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (const char c : name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return static_cast<std::size_t>(hash % shards);
}

TEST(Daemon, MetricsSplitIntoFleetSeriesAndShardsOfTheServers) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  const std::vector<std::string> names{"web", "mail", "cache"};
  for (const auto& name : names) {
    add_server(daemon, name, sshd);
  }
  daemon.start();
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto body = daemon.get("/metrics").body;
        return std::all_of(names.begin(), names.end(), [&](const std::string& name) {
          return body.find("node_load1{server=\"" + name + "\"}") != std::string::npos;
        });
      },
      std::chrono::seconds(15)));
  // healer's own fleet-wide series, no server's.
  const auto fleet = daemon.get("/metrics?servers=none");
  ASSERT_EQ(fleet.status, 200) << fleet.body;
  EXPECT_NE(fleet.body.find("healer_scheduler_runs_total{kind=\"metrics\"}"), std::string::npos);
  EXPECT_NE(fleet.body.find("healer_pool_handshake_duration_seconds_count"), std::string::npos);
  EXPECT_EQ(fleet.body.find("server=\""), std::string::npos);
  // Two shards: every server's series on exactly the documented one, nothing fleet-wide.
  std::vector<std::string> pages;
  for (int shard = 0; shard < 2; ++shard) {
    const auto page = daemon.get(fmt::format("/metrics?shard={}&shards=2", shard));
    ASSERT_EQ(page.status, 200) << page.body;
    EXPECT_EQ(page.body.find("healer_scheduler_runs_total"), std::string::npos);
    EXPECT_EQ(page.body.find("healer_pool_handshake_duration_seconds"), std::string::npos);
    pages.push_back(page.body);
  }
  for (const auto& name : names) {
    const auto on = documented_shard(name, 2);
    for (const auto* family : {"node_load1", "healer_pool_hit_ratio", "healer_server_up"}) {
      const std::string line = std::string(family) + "{server=\"" + name + "\"}";
      EXPECT_NE(pages[on].find(line), std::string::npos) << line << " on shard " << on;
      EXPECT_EQ(pages[1 - on].find(line), std::string::npos) << line << " twice";
    }
  }
  for (const std::string* body :
       std::initializer_list<const std::string*>{&pages[0], &fleet.body}) {
    std::ofstream(home.path() / "page.txt") << *body;
    const auto checked = test::run_command(
        {"sh", "-c", "promtool check metrics < " + (home.path() / "page.txt").string()});
    EXPECT_EQ(checked.err.find("error"), std::string::npos) << checked.err;
  }
  // Parameters that do not make a shard are refused, not served as the whole fleet.
  for (const char* bad :
       {"/metrics?shard=2&shards=2", "/metrics?shards=0&shard=0", "/metrics?shard=0",
        "/metrics?servers=all", "/metrics?servers=none&shard=0&shards=2"}) {
    EXPECT_EQ(daemon.get(bad).status, 400) << bad;
  }
}

// The sum of a server's node_cpu_seconds_total samples in an exposition (0 if it has none): it
// grows with every collection, so a larger sum means the server's lines were rendered again.
double cpu_seconds_of(const std::string& exposition, const std::string& server) {
  const std::string prefix = "node_cpu_seconds_total{server=\"" + server + "\"";
  double sum = 0;
  std::size_t at = 0;
  while ((at = exposition.find(prefix, at)) != std::string::npos) {
    const auto end = exposition.find('\n', at);
    const auto space = exposition.rfind(' ', end);
    sum += std::stod(exposition.substr(space + 1, end - space - 1));
    at = end;
  }
  return sum;
}

// /metrics and the server list keep each server's rendered text between requests: a new
// collection must show in both (nothing stale), a server's own GET must match its list item, and
// a removed server's lines and item must go.
TEST(Daemon, ListAndMetricsShowEachNewCollectionAndForgetARemovedServer) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  add_server(daemon, "web", sshd);
  add_server(daemon, "db", sshd);
  daemon.start();
  double first_cpu = 0;
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto body = daemon.get("/metrics").body;
        first_cpu = cpu_seconds_of(body, "web");
        return first_cpu > 0 && cpu_seconds_of(body, "db") > 0;
      },
      std::chrono::seconds(10)))
      << daemon.log_text();
  const auto first = get_json(daemon, "/api/v1/servers");
  ASSERT_NE(find_server(first, "web"), nullptr);
  ASSERT_FALSE((*find_server(first, "web"))["metrics"].is_null());
  const auto first_collected =
      (*find_server(first, "web"))["metrics"]["collected_at"].get<std::int64_t>();
  const auto first_runs = (*find_server(first, "web"))["schedule"]["metrics"]["runs"].get<int>();

  // The next collections: new lines on /metrics, a new list item.
  EXPECT_TRUE(test::poll_until(
      [&] { return cpu_seconds_of(daemon.get("/metrics").body, "web") > first_cpu; },
      std::chrono::seconds(10)));
  ASSERT_TRUE(test::poll_until(
      [&] {
        const auto list = get_json(daemon, "/api/v1/servers");
        const auto* web = find_server(list, "web");
        return web != nullptr &&
               (*web)["metrics"]["collected_at"].get<std::int64_t>() > first_collected &&
               (*web)["schedule"]["metrics"]["runs"].get<int>() > first_runs;
      },
      std::chrono::seconds(10)));
  // One server's document is its list item (rendered by the same function), whichever is asked
  // first.
  EXPECT_TRUE(test::poll_until(
      [&] {
        const auto list = get_json(daemon, "/api/v1/servers");
        const auto one = get_json(daemon, "/api/v1/servers/web");
        const auto again = get_json(daemon, "/api/v1/servers");
        return list == again && *find_server(list, "web") == one;
      },
      std::chrono::seconds(10)));

  ASSERT_EQ(healer(daemon, {"server", "remove", "db"}).exit_code(), 0);
  ASSERT_TRUE(test::poll_until(
      [&] { return daemon.get("/metrics").body.find("server=\"db\"") == std::string::npos; },
      std::chrono::seconds(10)));
  const auto metrics = daemon.get("/metrics").body;
  EXPECT_GT(cpu_seconds_of(metrics, "web"), 0);
  const auto list = get_json(daemon, "/api/v1/servers");
  EXPECT_EQ(find_server(list, "db"), nullptr);
  EXPECT_NE(find_server(list, "web"), nullptr);
  EXPECT_EQ(daemon.get("/api/v1/servers/db").status, 404);
}

TEST(Daemon, SeedIntegrationDiagnosesThroughApiAndCliShareOneConnection) {
  // The seed's test: 10 diagnoses at once through the API and 20 CLI one-shots through the
  // socket on one server with stock sshd limits, while scheduled metrics run: no errors, and
  // the server sees at most two logins.
  SshdFixture sshd;  // stock MaxStartups 10:30:100, MaxSessions 10
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  add_server(daemon, "web", sshd);
  daemon.start();
  const auto auths_before = sshd.accepted_auth_count();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::vector<std::string> problems;
  auto note = [&](std::string problem) {
    std::lock_guard lock(mutex);
    problems.push_back(std::move(problem));
    ++failures;
  };
  for (int i = 0; i < 10; ++i) {
    threads.emplace_back([&] {
      const auto response = daemon.post("/api/v1/servers/web/diagnose", R"({"seed": true})");
      const auto doc = json::parse(response.body, nullptr, false);
      if (response.status != 200 || doc.is_discarded() || !doc["servers"][0]["error"].is_null()) {
        note("API: " + response.body);
        return;
      }
      for (const auto& check : doc["servers"][0]["checks"]) {
        if (!check["error"].is_null()) {
          note("API check: " + check.dump());
        }
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&] {
      const auto run = healer(daemon, {"diagnose", "web", "--seed", "--json", "--no-store"});
      const auto doc = json::parse(run.out, nullptr, false);
      if (doc.is_discarded() || !doc["servers"][0]["error"].is_null()) {
        note("CLI: " + run.out + run.err);
        return;
      }
      for (const auto& check : doc["servers"][0]["checks"]) {
        if (!check["error"].is_null()) {
          note("CLI check: " + check.dump());
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0) << (problems.empty() ? "" : problems.front()) << "\n"
                                << daemon.log_text().substr(0, 3000);
  EXPECT_LE(sshd.accepted_auth_count() - auths_before, 2U);
  // (Channel refusals from sshd's close/open race are retried by the pool, never an error.)
  EXPECT_EQ(sshd.dropped_startup_count(), 0U);
}

// kill -9 leaves the control socket's file behind and a run maybe half done: the CLI falls back to
// a local run, a restart takes the socket over and resumes scheduling, a second daemon for the
// same database is refused while one runs, and the database stays whole.
TEST(Daemon, AfterSigkillTheCliRunsLocallyAndARestartResumes) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       std::string("[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = "
                                   "\"1s\"\n") +
                           kQuickChecks);
  for (int i = 0; i < 5; ++i) {
    add_server(daemon, fmt::format("s{}", i), sshd);
  }
  daemon.start();
  ASSERT_TRUE(test::poll_until(
      [&] { return get_json(daemon, "/api/v1/scheduler")["runs"]["diagnose"].get<int>() >= 5; },
      std::chrono::seconds(20)));
  const auto killed = daemon.stop(SIGKILL, std::chrono::seconds(5));
  ASSERT_TRUE(killed.has_value());
  EXPECT_TRUE(fs::exists(daemon.socket()));  // nobody removed it

  // Nobody answers on the stale socket: the CLI runs locally, same output as --no-daemon.
  const auto local = healer(daemon, {"exec", "s0", "--", "echo alive"});
  EXPECT_EQ(local.exit_code(), 0) << local.err;
  EXPECT_EQ(local.out, "----------------\ns0\n----------------\nalive\n");

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(daemon.db().c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  expect_integrity_ok(db);
  // A run is written in one transaction: none without its two checks, even cut by kill -9.
  EXPECT_EQ(count(db,
                  "SELECT COUNT(*) FROM diagnosis_runs r WHERE (SELECT COUNT(*) FROM "
                  "check_results c WHERE c.run_id = r.id) != 2"),
            0);
  const auto runs_before = count(db, "SELECT COUNT(*) FROM diagnosis_runs");
  sqlite3_close(db);

  daemon.start();
  // A second daemon for the same database is refused while this one runs.
  const auto second = test::run_command(
      {"env", "HOME=" + home.path().string(), "HEALER_DB=" + daemon.db().string(), HEALER_BIN,
       "serve", "--listen", fmt::format("127.0.0.1:{}", test::closed_port())},
      std::chrono::seconds(20));
  EXPECT_NE(second.exit_code(), 0);
  EXPECT_NE(second.err.find("another healer serve is running"), std::string::npos) << second.err;
  EXPECT_TRUE(daemon.running());
  // Scheduling resumes: more runs land in the same database.
  ASSERT_TRUE(test::poll_until(
      [&] {
        sqlite3* again = nullptr;
        if (sqlite3_open_v2(daemon.db().c_str(), &again, SQLITE_OPEN_READONLY, nullptr) !=
            SQLITE_OK) {
          sqlite3_close(again);
          return false;
        }
        const auto runs = count(again, "SELECT COUNT(*) FROM diagnosis_runs");
        sqlite3_close(again);
        return runs >= runs_before + 5;
      },
      std::chrono::seconds(20), std::chrono::milliseconds(200)))
      << daemon.log_text();
  const auto via_daemon = healer(daemon, {"exec", "s0", "--", "echo alive"});
  EXPECT_EQ(via_daemon.exit_code(), 0) << via_daemon.err;
  EXPECT_EQ(via_daemon.out, local.out);
  const auto stopped = daemon.stop();
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->exit_code, 0) << daemon.log_text();
}

TEST(Daemon, CheckConfigAndPrintToken) {
  test::TempDir home;
  std::ofstream(home.path() / "bad.toml") << "[shedule]\nmetrics_interval = 1\n";
  const auto bad =
      test::run_command({"env", "HOME=" + home.path().string(), HEALER_BIN, "serve",
                         "--check-config", "--config", (home.path() / "bad.toml").string()});
  EXPECT_EQ(bad.exit_code(), 2);
  EXPECT_NE(bad.err.find("shedule"), std::string::npos) << bad.err;
  std::ofstream(home.path() / "good.toml") << "[schedule]\nmetrics_interval = \"1m\"\n";
  const auto good =
      test::run_command({"env", "HOME=" + home.path().string(), HEALER_BIN, "serve",
                         "--check-config", "--config", (home.path() / "good.toml").string()});
  EXPECT_EQ(good.exit_code(), 0) << good.err;
  const auto env = "HEALER_DB=" + (home.path() / "x.db").string();
  const auto first = test::run_command({"env", env, HEALER_BIN, "serve", "--print-token"});
  const auto second = test::run_command({"env", env, HEALER_BIN, "serve", "--print-token"});
  ASSERT_EQ(first.exit_code(), 0) << first.err;
  EXPECT_EQ(first.out, second.out);
  EXPECT_GE(first.out.size(), 64U);
  EXPECT_EQ(fs::status(home.path() / "api.token").permissions() & fs::perms::group_all,
            fs::perms::none);
  const auto beyond = test::run_command(
      {"env", env, HEALER_BIN, "serve", "--listen", "0.0.0.0:1", "--check-config"});
  EXPECT_EQ(beyond.exit_code(), 2);
  EXPECT_NE(beyond.err.find("TLS"), std::string::npos);
}

}  // namespace
}  // namespace healer
