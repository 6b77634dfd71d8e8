// The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven over the
// WebDriver HTTP protocol) against a real `healer serve` with test-bed sshds: every page loads
// with no console error and no failed request, the fleet page lists the servers worst first, a
// stopped sshd turns its server red and back, "Diagnose now" shows a fresh run, the pool page
// shows the live connection and its counters moving, and hostile names stay text.
// Screenshots of every page go to $HEALER_SCREENSHOTS (default: screenshots/ in the build dir).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "browser.hpp"
#include "child_process.hpp"
#include "daemon_fixture.hpp"
#include "fleet_sim.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "sshd_fixture.hpp"
#include "systemd_stand_in.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using test::Browser;
using test::DaemonFixture;
using test::SshdFixture;

// Runs a script's tag in the page name; never executed if the page keeps names as text.
constexpr const char* kHostileName = "<img src=x onerror=\"window.__injected=1\"><b>x</b>";
constexpr const char* kQuick =
    "checks = [\"memory\", \"uptime\"]\n"
    "[pool]\nbackoff_initial_ms = 100\nbackoff_max_ms = 300\n";

fs::path screenshot_dir() {
  const char* dir = std::getenv("HEALER_SCREENSHOTS");
  return dir != nullptr && *dir != '\0' ? fs::path(dir)
                                        : fs::path(HEALER_BUILD_DIR) / "screenshots";
}

test::CommandOutput healer(const DaemonFixture& daemon, std::vector<std::string> args) {
  std::vector<std::string> argv{"env"};
  const auto env = daemon.cli_env();
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(HEALER_BIN);
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv, 60s);
}

void add_server(const DaemonFixture& daemon, const std::string& name, const SshdFixture& sshd,
                std::vector<std::string> extra = {}, std::uint16_t port = 0) {
  std::vector<std::string> args{"server",
                                "add",
                                name,
                                "--host",
                                sshd.host(),
                                "--port",
                                std::to_string(port == 0 ? sshd.port() : port),
                                "--user",
                                sshd.user(),
                                "--identity",
                                sshd.client_key_path().string(),
                                "--known-hosts",
                                sshd.known_hosts_path().string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto added = healer(daemon, args);
  ASSERT_EQ(added.exit_code(), 0) << added.err;
}

// Console errors and failed loads since the last call, as text (empty: none).
std::string problems(Browser& browser) {
  std::string text;
  for (const auto& entry : browser.logs()) {
    if (entry.level == "SEVERE") {
      text += entry.source + ": " + entry.message + "\n";
    }
  }
  return text;
}

// Every console message since the last call (for failure messages).
std::string console(Browser& browser) {
  std::string text;
  for (const auto& entry : browser.logs()) {
    text += entry.level + " " + entry.source + ": " + entry.message + "\n";
  }
  return text;
}

// The fleet page's rows as [name, status] in display order (the windowed rows in the DOM).
constexpr const char* kRows = R"js(
  return [...document.querySelectorAll('.grid .body .row')]
    .sort((a, b) => Number(a.getAttribute('aria-rowindex')) - Number(b.getAttribute('aria-rowindex')))
    .map((row) => [row.querySelector('a.name').textContent, row.querySelector('.badge').textContent]);
)js";

constexpr const char* kRowStatus = R"js(
  const row = [...document.querySelectorAll('.grid .body .row')]
    .find((r) => r.querySelector('a.name').textContent === arguments[0]);
  return row ? row.querySelector('.badge').textContent : '';
)js";

// One browser for the suite (Chromium takes seconds to start on a busy machine); each test
// loads its own daemon's origin, so storage and history do not carry over.
class DashboardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (Browser::available()) {
      shared_ = std::make_unique<Browser>();
    }
  }
  static void TearDownTestSuite() { shared_.reset(); }

  void SetUp() override {
    if (!shared_) {
      GTEST_SKIP() << "chromium and chromium-driver are not installed (scripts/install-deps.sh)";
    }
    shared_->resize(1280, 900);
    shared_->navigate("about:blank");
    (void)shared_->logs();  // what earlier tests left
  }

  static std::unique_ptr<Browser> shared_;
};
std::unique_ptr<Browser> DashboardTest::shared_;

TEST_F(DashboardTest, TheFleetPageListsServersWorstFirstAsTextAndWorksByKeyboardAndOnAPhone) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       fmt::format("[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = "
                                   "\"1s\"\n{}",
                                   kQuick));
  add_server(daemon, "web1", sshd, {"--tag", "prod"});
  add_server(daemon, "web2", sshd, {"--tag", "<script>tag</script>"});
  add_server(daemon, kHostileName, sshd);
  add_server(daemon, "gone", sshd, {}, test::closed_port());  // nothing listens: DOWN
  daemon.start();
  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/?refresh=1");
  ASSERT_TRUE(browser.wait_for(R"js(
    const rows = [...document.querySelectorAll('.grid .body .row .badge')].map((b) => b.textContent);
    return rows.length === 4 && !rows.includes('PENDING');
  )js",
                               15s))
      << browser.execute(kRows).dump() << daemon.log_text();
  const auto rows = browser.execute(kRows);
  ASSERT_EQ(rows.size(), 4U) << rows.dump();
  // Worst first: the unreachable one, shown red as DOWN (the API says UNKNOWN with the reason).
  EXPECT_EQ(rows[0][0], "gone");
  EXPECT_EQ(rows[0][1], "DOWN");
  std::set<std::string> names;
  for (const auto& row : rows) {
    names.insert(row[0].get<std::string>());
  }
  EXPECT_TRUE(names.contains(kHostileName)) << rows.dump();
  EXPECT_EQ(browser.execute(R"js(
    return document.querySelector('.count.s-down .n').textContent + '/' +
           document.querySelector('.count.s-ok .n').textContent;
  )js"),
            "1/3");
  EXPECT_EQ(
      browser.execute(
          "return getComputedStyle(document.querySelector('.count.s-down')).backgroundColor;"),
      "rgb(200, 30, 30)");
  // The hostile name and tag are text: no element was made of them, nothing ran.
  EXPECT_EQ(
      browser.execute("return document.querySelectorAll('main img, main b, main script').length;"),
      0);
  EXPECT_TRUE(browser.execute("return window.__injected === undefined;").get<bool>());
  EXPECT_TRUE(browser
                  .execute("return document.body.textContent.includes(arguments[0]);",
                           json::array({kHostileName}))
                  .get<bool>());
  EXPECT_TRUE(browser
                  .execute("return [...document.querySelectorAll('select option')]"
                           ".some((o) => o.textContent === '<script>tag</script>');")
                  .get<bool>());
  // The browser's own timing of the first render with data.
  EXPECT_TRUE(
      browser.execute("return performance.getEntriesByName('healer:fleet-ready').length === 1;")
          .get<bool>());
  // The reachable ones show their load once collected (for the screenshot).
  EXPECT_TRUE(
      browser.wait_for("return [...document.querySelectorAll('.grid .body .row .c-load')]"
                       ".filter((c) => /[0-9]/.test(c.textContent)).length === 3;",
                       10s));
  browser.screenshot(screenshot_dir() / "fleet.png");

  // Filter by text and by tag.
  browser.type("input[type=search]", "web");
  ASSERT_TRUE(
      browser.wait_for("return document.querySelectorAll('.grid .body .row').length === 2;", 5s));
  browser.execute(R"js(
    const search = document.querySelector('input[type=search]');
    search.value = ''; search.dispatchEvent(new Event('input'));
    const tag = document.querySelector('select');
    tag.value = 'prod'; tag.dispatchEvent(new Event('change'));
  )js");
  ASSERT_TRUE(browser.wait_for(R"js(
    const rows = document.querySelectorAll('.grid .body .row a.name');
    return rows.length === 1 && rows[0].textContent === 'web1';
  )js",
                               5s));
  browser.execute(R"js(
    const tag = document.querySelector('select');
    tag.value = ''; tag.dispatchEvent(new Event('change'));
  )js");
  ASSERT_TRUE(
      browser.wait_for("return document.querySelectorAll('.grid .body .row').length === 4;", 5s));

  // Keyboard: "/" to the filter, arrows down the rows, Enter opens the server.
  browser.execute("document.activeElement.blur(); document.body.focus();");
  browser.press({"/"});
  EXPECT_EQ(browser.execute("return document.activeElement.type;"), "search");
  browser.press({"\uE015", "\uE015"});  // ArrowDown twice: first row, then the second
  const auto second = browser.execute("return document.activeElement.textContent;");
  EXPECT_EQ(second, browser.execute(kRows)[1][0]);
  browser.press({"\uE007"});  // Enter
  ASSERT_TRUE(browser.wait_for("return location.hash.startsWith('#/server/');", 5s));
  ASSERT_TRUE(browser.wait_for(
      "return document.querySelector('h1.server-name').textContent === arguments[0];", 5s,
      json::array({second})));
  browser.execute("history.back();");
  ASSERT_TRUE(
      browser.wait_for("return document.querySelectorAll('.grid .body .row').length === 4;", 5s));

  // A phone-width screen: nothing wider than the screen, every row still there.
  browser.resize(390, 844);
  ASSERT_TRUE(
      browser.wait_for("return document.documentElement.scrollWidth <= window.innerWidth && "
                       "document.querySelectorAll('.grid .body .row').length === 4;",
                       5s))
      << browser.execute("return [document.documentElement.scrollWidth, window.innerWidth];");
  browser.screenshot(screenshot_dir() / "fleet-phone.png");
  EXPECT_EQ(problems(browser), "");
}

// A fleet of several pages of the list: the page asks for the summary view, the first page is
// on screen before the rest has arrived (one render per page while loading), and the whole fleet
// is there in the end, still windowed.
TEST_F(DashboardTest, AFleetOfSeveralPagesShowsItsFirstPageBeforeTheRestArrives) {
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n");
  // 1,500 servers nothing polls (all PENDING): two pages of the list.
  constexpr int kServers = 1500;
  const auto port = test::closed_port();
  {
    std::ofstream config(home.path() / "ssh_config");
    for (int i = 0; i < kServers; ++i) {
      config << fmt::format(
          "Host srv-{:04}\n  HostName 127.0.0.1\n  Port {}\n  User ops\n  IdentityFile {}\n", i,
          port, (home.path() / "id_unused").string());
    }
  }
  const auto imported = healer(daemon, {"server", "import", (home.path() / "ssh_config").string()});
  ASSERT_EQ(imported.exit_code(), 0) << imported.err;
  daemon.start();
  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/");
  ASSERT_TRUE(browser.wait_for(
      "return performance.getEntriesByName('healer:fleet-complete').length === 1;", 20s))
      << console(browser);
  const auto figures = browser.execute(R"js(
    const mark = (name) => performance.getEntriesByName(name)[0].startTime;
    return {
      ready: mark('healer:fleet-ready'), complete: mark('healer:fleet-complete'),
      renders: performance.getEntriesByName('healer:fleet-render').length,
      lists: performance.getEntriesByType('resource').map((e) => e.name)
        .filter((name) => name.includes('/api/v1/servers')),
      total: document.querySelector('.total').textContent,
      pending: document.querySelector('.count.s-pending .n').textContent,
      rows: document.querySelectorAll('.grid .body .row').length,
    };
  )js");
  EXPECT_LT(figures["ready"].get<double>(), figures["complete"].get<double>()) << figures.dump();
  EXPECT_GE(figures["renders"].get<int>(), 2) << figures.dump();
  ASSERT_EQ(figures["lists"].size(), 2U) << figures.dump();
  for (const auto& url : figures["lists"]) {
    EXPECT_NE(url.get<std::string>().find("view=summary"), std::string::npos) << url;
  }
  EXPECT_EQ(figures["total"], "1500 servers");
  EXPECT_EQ(figures["pending"], "1500");
  EXPECT_LT(figures["rows"].get<int>(), 100);
  EXPECT_EQ(problems(browser), "");
}

TEST_F(DashboardTest, AStoppedSshdTurnsItsServerRedWithinAnIntervalAndBackWhenRestarted) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(
      HEALER_BIN, home,
      fmt::format("[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = \"1s\"\n{}", kQuick));
  add_server(daemon, "web", sshd);
  daemon.start();
  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/?refresh=1");
  auto status_is = [&](const char* status) {
    return test::poll_until(
        [&] { return browser.execute(kRowStatus, json::array({"web"})) == status; }, 10s, 100ms);
  };
  ASSERT_TRUE(status_is("OK")) << browser.execute(kRows).dump() << daemon.log_text();
  sshd.stop();
  // One diagnosis interval (1 s) and one refresh (1 s), with room for a slow machine.
  ASSERT_TRUE(status_is("DOWN")) << browser.execute(kRows).dump();
  EXPECT_EQ(browser.execute(R"js(
    const row = document.querySelector('.grid .body .row');
    return [row.className, getComputedStyle(row.querySelector('.badge')).backgroundColor];
  )js"),
            json::array({"row r-down", "rgb(200, 30, 30)"}));
  // The reason is on the row, in words.
  EXPECT_EQ(browser.execute("return document.querySelector('.grid .body .row .c-problems .main')"
                            ".textContent;"),
            "unreachable");
  browser.screenshot(screenshot_dir() / "fleet-down.png");
  sshd.start();
  ASSERT_TRUE(status_is("OK")) << browser.execute(kRows).dump() << daemon.log_text();
  EXPECT_EQ(browser.execute("return document.querySelector('.count.s-ok .n').textContent;"), "1");
  // The server page's timeline tells the story: OK, UNKNOWN while it was down, OK again.
  browser.execute("location.hash = '#/server/web';");
  ASSERT_TRUE(
      browser.wait_for("return document.querySelectorAll('.timeline .segment').length === 3 && "
                       "[...document.querySelectorAll('.transitions li')].length === 3;",
                       10s))
      << browser.execute("return document.querySelector('.transitions').textContent;");
  EXPECT_EQ(browser.execute("return [...document.querySelectorAll('.timeline .segment')]"
                            ".map((s) => s.className);"),
            json::array({"segment s-ok", "segment s-unknown", "segment s-ok"}));
  browser.resize(1280, 1500);
  browser.screenshot(screenshot_dir() / "server.png");
  EXPECT_EQ(problems(browser), "");
}

// With the default cadence a collection comes between diagnoses: one that cannot reach the
// server after the last (OK) diagnosis turns it DOWN before the next diagnosis does.
TEST_F(DashboardTest, ACollectionThatFailsAfterTheLastDiagnosisTurnsTheServerDown) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(
      HEALER_BIN, home,
      fmt::format("[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n{}", kQuick));
  add_server(daemon, "web", sshd);
  daemon.start();
  ASSERT_EQ(daemon.post("/api/v1/servers/web/diagnose", "{}").status, 200);
  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/?refresh=1");
  auto status_is = [&](const char* status) {
    return test::poll_until(
        [&] { return browser.execute(kRowStatus, json::array({"web"})) == status; }, 10s, 100ms);
  };
  // The diagnosis's own status (whatever this machine's load makes it), not DOWN.
  auto reachable = [&] {
    return test::poll_until(
        [&] {
          const auto status = browser.execute(kRowStatus, json::array({"web"}));
          return status != "" && status != "PENDING" && status != "DOWN";
        },
        10s, 100ms);
  };
  ASSERT_TRUE(reachable()) << browser.execute(kRows).dump();
  sshd.stop();
  ASSERT_TRUE(status_is("DOWN")) << browser.execute(kRows).dump()
                                 << daemon.get("/api/v1/servers").body;
  sshd.start();
  EXPECT_TRUE(reachable()) << browser.execute(kRows).dump();
  EXPECT_EQ(problems(browser), "");
}

TEST_F(DashboardTest, DiagnoseNowAsksForTheTokenOnceAndShowsTheFreshRunInPlace) {
  // Every check runs: a simulated host answers them at once (a real apt-get -s takes ~15 s).
  test::FleetSim::Options options;
  options.hosts = 1;
  test::FleetSim sim(options);
  sim.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  const auto added = healer(
      daemon, {"server", "add", "web", "--host", sim.host(0), "--port", std::to_string(sim.port()),
               "--user", sim.user(), "--identity", sim.client_key_path().string(), "--known-hosts",
               sim.known_hosts_path().string()});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
  daemon.start();
  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/?refresh=1#/server/web");
  ASSERT_TRUE(browser.wait_for(
      "return document.querySelector('.checks caption').textContent === 'No diagnosis yet.';",
      10s));
  // First click: the token is asked for, once.
  browser.click("button.primary");
  ASSERT_TRUE(browser.wait_for("return document.getElementById('token-dialog').open;", 5s));
  browser.type("#token-input", daemon.token());
  browser.click("#token-form button[type=submit]");
  ASSERT_TRUE(browser.wait_for(
      "return document.querySelector('.result').textContent.startsWith('Fresh run #');", 20s))
      << browser.execute("return document.querySelector('.result').textContent;");
  auto run_of = [&] {
    const auto text =
        browser.execute("return document.querySelector('.result').textContent;").get<std::string>();
    return std::stoll(text.substr(std::string("Fresh run #").size()));
  };
  const auto first = run_of();
  const auto summary = json::parse(daemon.get("/api/v1/servers/web").body);
  EXPECT_EQ(summary["last_run"]["run_id"], first);
  // The checks of that run, in place, marked fresh.
  const auto stored = json::parse(daemon.get(fmt::format("/api/v1/runs/{}", first)).body);
  EXPECT_EQ(browser.execute("return document.querySelectorAll('.checks tbody tr').length;"),
            stored["checks"].size());
  EXPECT_TRUE(browser
                  .execute("return document.querySelector('.checks caption').textContent"
                           ".startsWith('Run #' + arguments[0]) && "
                           "document.querySelector('.checks caption').classList.contains('fresh');",
                           json::array({first}))
                  .get<bool>());
  // Second click: no question; a newer run.
  browser.click("button.primary");
  EXPECT_FALSE(browser.execute("return document.getElementById('token-dialog').open;").get<bool>());
  ASSERT_TRUE(browser.wait_for(
      "return document.querySelector('.result').textContent.startsWith('Fresh run #') && "
      "!document.querySelector('.result').textContent.startsWith('Fresh run #' + arguments[0] + "
      "':');",
      20s, json::array({first})));
  EXPECT_GT(run_of(), first);
  // The token lives in this tab's sessionStorage only: not in the address, not on the page.
  EXPECT_EQ(browser.execute("return sessionStorage.getItem('healer.token');"), daemon.token());
  EXPECT_TRUE(browser
                  .execute("return !location.href.includes(arguments[0]) && "
                           "!document.documentElement.outerHTML.includes(arguments[0]);",
                           json::array({daemon.token()}))
                  .get<bool>());
  // The charts come from Chart.js and draw the collected series.
  ASSERT_TRUE(browser.wait_for(R"js(
    return !!window.Chart && Object.values(Chart.instances).length === 5 &&
      Object.values(Chart.instances).some((c) => c.data.datasets.some((d) => d.data.length > 0));
  )js",
                               15s))
      << console(browser);
  browser.resize(1280, 2100);  // the whole page, charts included
  browser.screenshot(screenshot_dir() / "server-diagnosed.png");
  browser.resize(1280, 900);
  EXPECT_EQ(problems(browser), "");

  // A wrong token: said in words, forgotten, asked for again next time.
  browser.execute("sessionStorage.setItem('healer.token', 'not-the-token');");
  browser.click("button.primary");
  ASSERT_TRUE(browser.wait_for(
      "return document.querySelector('.result').textContent.includes('refused the token');", 10s));
  EXPECT_TRUE(
      browser.execute("return sessionStorage.getItem('healer.token') === null;").get<bool>());
  const auto refused = problems(browser);  // the 401 is the one failed load
  EXPECT_NE(refused.find("401"), std::string::npos) << refused;
}

TEST_F(DashboardTest, ThePoolPageShowsTheLiveConnectionAndItsCountersMoving) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(
      HEALER_BIN, home,
      fmt::format("[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n{}", kQuick));
  add_server(daemon, "web", sshd);
  daemon.start();
  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/?refresh=1#/pool");
  constexpr const char* kCell = R"js(
    const row = [...document.querySelectorAll('table.pool tbody tr')]
      .find((r) => r.querySelector('th a').textContent === arguments[0]);
    return row ? row.querySelector('.f-' + arguments[1]).textContent : '';
  )js";
  auto cell = [&](const char* field) {
    return browser.execute(kCell, json::array({"web", field})).get<std::string>();
  };
  // The live connection: one open, reused by every collection.
  ASSERT_TRUE(test::poll_until([&] { return cell("connections").starts_with("1 / "); }, 10s, 100ms))
      << cell("connections");
  EXPECT_EQ(cell("state"), "connected");
  const auto leases = std::stoll(cell("acquisitions"));
  const auto commands = std::stoll(cell("commands"));
  ASSERT_TRUE(
      test::poll_until([&] { return std::stoll(cell("acquisitions")) > leases; }, 10s, 100ms));
  ASSERT_TRUE(
      test::poll_until([&] { return std::stoll(cell("commands")) > commands; }, 10s, 100ms));
  EXPECT_EQ(browser.execute("return document.querySelector('.k-connections .value').textContent;"),
            "1");
  // The hour's history (one sample every 5 s, the first a second after start) is charted.
  ASSERT_TRUE(browser.wait_for(R"js(
    return !!window.Chart && Object.values(Chart.instances).length === 5 && Object.values(
      Chart.instances).some((c) => c.data.datasets.some((d) => d.data.length >= 1));
  )js",
                               10s))
      << console(browser);
  browser.resize(1280, 1350);
  browser.screenshot(screenshot_dir() / "pool.png");
  EXPECT_EQ(problems(browser), "");

  // The API additions the pages use match the OpenAPI document.
  const auto openapi = daemon.get("/api/v1/openapi.json");
  ASSERT_EQ(openapi.status, 200);
  const std::vector<std::pair<std::string, std::string>> checked{
      {"Sparklines", daemon.get("/api/v1/trends?figure=load1").body},
      {"PoolHistory", daemon.get("/api/v1/pool/history").body},
      {"PoolHistory", daemon.get("/api/v1/pool/history?server=web").body},
      {"PoolOverview", daemon.get("/api/v1/pool").body},
      {"Error", daemon.get("/api/v1/trends?figure=nope").body},
      {"Error", daemon.get("/api/v1/pool/history?server=ghost").body},
  };
  std::ofstream(home.path() / "openapi.json") << openapi.body;
  std::vector<std::string> argv{"/usr/bin/python3", HEALER_VALIDATE_OPENAPI,
                                (home.path() / "openapi.json").string()};
  for (std::size_t i = 0; i < checked.size(); ++i) {
    const auto file = home.path() / fmt::format("response{}.json", i);
    std::ofstream(file) << checked[i].second;
    argv.push_back(checked[i].first + "=" + file.string());
  }
  const auto validated = test::run_command(argv, 30s);
  EXPECT_EQ(validated.exit_code(), 0) << validated.out << validated.err;
  // Every collection so far is in the sparklines (the answer takes the latest one in too).
  json sparks;
  ASSERT_TRUE(test::poll_until(
      [&] {
        sparks = json::parse(daemon.get("/api/v1/trends?figure=memory").body);
        return sparks["servers"].size() == 1U;
      },
      10s, 100ms))
      << sparks.dump();
  EXPECT_EQ(sparks["servers"][0]["server"], "web");
  EXPECT_EQ(sparks["servers"][0]["values"].size(), 48U);
  EXPECT_EQ(daemon.get("/api/v1/trends?figure=nope").status, 400);
  EXPECT_EQ(daemon.get("/api/v1/pool/history?server=ghost").status, 404);
}

TEST_F(DashboardTest, EveryPageLoadsItsFilesFromTheDaemonWithinTheBudgetAndAStrictPolicy) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n");
  add_server(daemon, "web", sshd);
  daemon.start();
  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/");
  ASSERT_TRUE(
      browser.wait_for("return document.querySelectorAll('.grid .body .row').length === 1;", 10s));
  browser.execute("location.hash = '#/server/web';");
  ASSERT_TRUE(browser.wait_for("return !!window.Chart;", 10s));
  browser.execute("location.hash = '#/pool';");
  ASSERT_TRUE(browser.wait_for(
      "return document.querySelectorAll('table.pool tbody tr').length === 1;", 10s));
  // Every file the pages loaded (one document: the routes are in-page), none from elsewhere.
  const auto files = browser.execute(R"js(
    return [location.pathname, ...performance.getEntriesByType('resource').map((e) => e.name)]
      .map((name) => new URL(name, location.href))
      .filter((url) => !url.pathname.startsWith('/api/'))
      .map((url) => url.origin === location.origin ? url.pathname : url.href);
  )js");
  std::set<std::string> unique;
  std::size_t total = 0;
  for (const auto& file : files) {
    const auto path = file.get<std::string>();
    ASSERT_TRUE(path.starts_with("/")) << "loaded from elsewhere: " << path;
    if (!unique.insert(path).second) {
      continue;
    }
    const auto response = daemon.get(path);
    ASSERT_EQ(response.status, 200) << path;
    total += response.body.size();
  }
  EXPECT_TRUE(unique.contains("/chart.min.js")) << files.dump();
  EXPECT_LE(total, 300U * 1024U) << files.dump();
  std::cout << "dashboard assets: " << unique.size() << " files, " << total << " bytes\n";
  EXPECT_EQ(problems(browser), "");
  // The page's headers keep the browser strict: no inline script, nothing from elsewhere.
  httplib::Client client("127.0.0.1", daemon.port());
  const auto page = client.Get("/");
  ASSERT_TRUE(page);
  const auto policy = page->get_header_value("Content-Security-Policy");
  EXPECT_NE(policy.find("script-src 'self'"), std::string::npos) << policy;
  EXPECT_NE(policy.find("default-src 'none'"), std::string::npos) << policy;
  EXPECT_EQ(page->get_header_value("X-Content-Type-Options"), "nosniff");
  // Only the dashboard's own files: nothing else of the file system.
  EXPECT_NE(daemon.get("/../../etc/passwd").status, 200);
  EXPECT_EQ(daemon.get("/nope.js").status, 404);
}

// The heal page: a plan from the latest diagnosis shows exactly the command, the approve button
// applies it through the API with the token, and the audit log shows it. What the server said
// (here a unit's Result, shown as "seen now") stays text.
TEST_F(DashboardTest, TheHealPagePlansAppliesOnApprovalAndKeepsServerOutputAsText) {
  test::SystemdStandIn systemd;  // systemd is not PID 1 here: see systemd_stand_in.hpp
  SshdFixture sshd(systemd.sshd_options());
  sshd.start();
  test::TempDir home;
  DaemonFixture daemon(HEALER_BIN, home,
                       "[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n"
                       "[heal]\nprivilege = \"none\"\ngrace = \"0s\"\n"
                       "[[heal.rules]]\nname = \"nginx_down\"\ncheck = \"failed_units\"\n"
                       "action = \"restart_unit\"\nparams = { unit = \"nginx.service\" }\n");
  add_server(daemon, "web", sshd);
  daemon.start();
  systemd.set_unit("nginx.service", "failed");
  test::write_file(systemd.state() / "results" / "nginx.service", kHostileName);
  const auto diagnosed =
      daemon.post("/api/v1/servers/web/diagnose", R"({"checks": ["failed_units"]})");
  ASSERT_EQ(diagnosed.status, 200) << diagnosed.body;

  Browser& browser = *shared_;
  browser.navigate(daemon.base_url() + "/?refresh=1#/heal/web");
  ASSERT_TRUE(
      browser.wait_for("return document.querySelector('.heal-history caption').textContent === "
                       "'No heals recorded yet.';",
                       10s))
      << console(browser);
  EXPECT_EQ(browser.execute("return document.getElementById('heal-target').value;"), "web");
  browser.click("#heal-plan");
  ASSERT_TRUE(browser.wait_for("return document.getElementById('token-dialog').open;", 5s));
  browser.type("#token-input", daemon.token());
  browser.click("#token-form button[type=submit]");
  ASSERT_TRUE(browser.wait_for(
      "return document.getElementById('heal-plan-result').textContent.includes('1 ready step');",
      20s))
      << browser.execute("return document.getElementById('heal-plan-result').textContent;");
  const auto hash = browser.execute("return document.querySelector('.heal-hash').textContent;")
                        .get<std::string>();
  const auto stored = daemon.get("/api/v1/heal/plans/" + hash);
  ASSERT_EQ(stored.status, 200) << hash;
  const auto plan = json::parse(stored.body);
  EXPECT_EQ(browser.execute("return document.querySelector('.heal-command').textContent;"),
            plan["servers"][0]["steps"][0]["command"]);
  // The server's text is on the page as text, not markup.
  EXPECT_TRUE(browser
                  .execute("return document.getElementById('heal-plan-view').textContent"
                           ".includes(arguments[0]) && "
                           "!document.querySelector('#heal-plan-view img, #heal-plan-view b');",
                           json::array({kHostileName}))
                  .get<bool>())
      << browser.execute("return document.getElementById('heal-plan-view').innerHTML;");
  EXPECT_TRUE(systemd.changes().empty());

  browser.click("#heal-approve");
  ASSERT_TRUE(browser.wait_for(
      "return document.getElementById('heal-apply-result').textContent.startsWith('Plan "
      "applied');",
      20s))
      << browser.execute("return document.getElementById('heal-apply-result').textContent;");
  EXPECT_EQ(browser.execute("return document.querySelector('.heal-step-result').textContent;"),
            "succeeded");
  EXPECT_EQ(systemd.changes(),
            std::vector<std::string>{"systemctl [restart] [--] [nginx.service]"});
  ASSERT_TRUE(
      browser.wait_for("const rows = document.querySelectorAll('.heal-history tbody tr');"
                       "return rows.length === 1 && rows[0].textContent.includes('verified') && "
                       "rows[0].textContent.includes('api');",
                       10s))
      << browser.execute("return document.querySelector('.heal-history').textContent;");
  EXPECT_TRUE(browser.execute("return window.__injected === undefined;").get<bool>());
  browser.resize(1280, 1200);
  browser.screenshot(screenshot_dir() / "heal.png");
  browser.resize(1280, 900);
  EXPECT_EQ(problems(browser), "");
}

}  // namespace
}  // namespace healer
