// A real Prometheus (Debian's package, started by the test on a free port with a temp config and
// data directory) scrapes `healer serve` — /metrics, and /probe?target= through the relabelling
// blackbox_exporter users know — and queries a test-bed server's node metric back.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "child_process.hpp"
#include "daemon_fixture.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

namespace healer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The value of an instant query, or nullopt while Prometheus has none.
std::optional<double> query(std::uint16_t port, const std::string& promql) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(std::chrono::seconds(5));
  auto response =
      client.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
  if (!response || response->status != 200) {
    return std::nullopt;
  }
  const auto doc = json::parse(response->body, nullptr, false);
  if (doc.is_discarded() || doc["data"]["result"].empty()) {
    return std::nullopt;
  }
  const std::string value = doc["data"]["result"][0]["value"][1];
  return std::stod(value);
}

TEST(Prometheus, ScrapesHealerAndQueriesANodeMetricOfATestBedServer) {
  test::SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  test::DaemonFixture daemon(HEALER_BIN, home,
                             "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n");
  const auto added = test::run_command(
      {"env", "HOME=" + home.path().string(), "HEALER_DB=" + daemon.db().string(),
       "HEALER_CONFIG=" + (home.path() / "config.toml").string(), HEALER_BIN, "server", "add",
       "web", "--host", sshd.host(), "--port", std::to_string(sshd.port()), "--user", sshd.user(),
       "--identity", sshd.client_key_path().string(), "--known-hosts",
       sshd.known_hosts_path().string()});
  ASSERT_EQ(added.exit_code(), 0) << added.err;
  daemon.start();

  const auto port = test::closed_port();
  const auto config = home.path() / "prometheus.yml";
  std::ofstream(config) << fmt::format(R"(global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: healer
    static_configs:
      - targets: ["127.0.0.1:{0}"]
  - job_name: healer_fleet
    params:
      shards: ["2"]
    static_configs:
      - targets: ["127.0.0.1:{0}"]
        labels: {{__param_shard: "0"}}
      - targets: ["127.0.0.1:{0}"]
        labels: {{__param_shard: "1"}}
    relabel_configs:
      - source_labels: [__param_shard]
        target_label: shard
  - job_name: healer_probe
    metrics_path: /probe
    static_configs:
      - targets: ["web"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:{0}
)",
                                       daemon.port());
  const auto checked =
      test::run_command({"promtool", "check", "config", config.string()}, std::chrono::seconds(20));
  ASSERT_EQ(checked.exit_code(), 0) << checked.out << checked.err;
  auto prometheus = test::ChildProcess::spawn(
      {"prometheus", "--config.file=" + config.string(),
       "--storage.tsdb.path=" + (home.path() / "tsdb").string(),
       "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"},
      home.path() / "prometheus.log");
  ASSERT_TRUE(test::poll_until(
      [&] { return query(port, "node_load1{job=\"healer\",server=\"web\"}").has_value(); },
      std::chrono::seconds(30), std::chrono::milliseconds(250)))
      << "Prometheus never got node_load1 of web from healer";
  EXPECT_TRUE(test::poll_until(
      [&] { return query(port, "node_load1{job=\"healer_probe\",instance=\"web\"}").has_value(); },
      std::chrono::seconds(20), std::chrono::milliseconds(250)));
  // The sharded job: both shards scraped as targets of their own, web's series from one.
  EXPECT_TRUE(test::poll_until(
      [&] { return query(port, "node_load1{job=\"healer_fleet\",server=\"web\"}").has_value(); },
      std::chrono::seconds(20), std::chrono::milliseconds(250)));
  EXPECT_TRUE(test::poll_until([&] { return query(port, "sum(up{job=\"healer_fleet\"})") == 2.0; },
                               std::chrono::seconds(20), std::chrono::milliseconds(250)));
  // healer's own metrics arrive too: one scrape of healer shows the pool that reached the host.
  const auto hits = query(port, "healer_pool_acquisitions_total{server=\"web\"}");
  ASSERT_TRUE(hits.has_value());
  EXPECT_GE(*hits, 1);
  EXPECT_EQ(query(port, "up{job=\"healer\"}"), 1.0);
  prometheus.signal(SIGTERM);
  EXPECT_TRUE(prometheus.wait_for_exit(std::chrono::seconds(10)).has_value());
}

}  // namespace
}  // namespace healer
