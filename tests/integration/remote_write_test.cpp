// Prometheus remote write from `healer serve`, with real parts: a real Prometheus from Debian
// (--web.enable-remote-write-receiver, temp storage, a free port) receives the node series of a
// test-bed sshd's server and answers queries for them; stopped and restarted on the same port
// and storage, it still gets every sample collected while it was away; a receiver answering 400
// has its batches dropped and counted; an unreachable one is retried while the API answers.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "blackhole_proxy.hpp"
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
using test::DaemonFixture;
using test::SshdFixture;

void add_server(const DaemonFixture& daemon, const std::string& name, const SshdFixture& sshd) {
  std::vector<std::string> argv{"env"};
  const auto env = daemon.cli_env();
  argv.insert(argv.end(), env.begin(), env.end());
  for (const auto& word : {std::string(HEALER_BIN), std::string("server"), std::string("add"), name,
                           std::string("--host"), sshd.host(), std::string("--port"),
                           std::to_string(sshd.port()), std::string("--user"), sshd.user(),
                           std::string("--identity"), sshd.client_key_path().string(),
                           std::string("--known-hosts"), sshd.known_hosts_path().string()}) {
    argv.push_back(word);
  }
  const auto added = test::run_command(argv, std::chrono::seconds(30));
  ASSERT_EQ(added.exit_code(), 0) << added.err;
}

// One sample's value in healer's /metrics text (`name` with its labels as rendered, e.g.
// `healer_remote_write_samples_total{result="sent"}`), or nullopt when absent.
std::optional<double> metric(const DaemonFixture& daemon, const std::string& series) {
  const auto body = daemon.get("/metrics").body;
  const auto at = body.find("\n" + series + " ");
  if (at == std::string::npos) {
    return std::nullopt;
  }
  return std::stod(body.substr(at + series.size() + 2));
}

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

double counter(const DaemonFixture& daemon, const std::string& series) {
  return metric(daemon, series).value_or(-1);
}

std::string daemon_config(const std::string& url, const std::string& extra = "") {
  return fmt::format(
      "[schedule]\nmetrics_interval = \"1s\"\ndiagnose_interval = 0\n"
      "[remote_write]\nurl = \"{}\"\ntimeout = \"1s\"\nflush_interval = \"1s\"\n{}",
      url, extra);
}

// A real Prometheus accepting remote write on `port`, storing in `storage`.
class Prometheus {
 public:
  Prometheus(const fs::path& home, std::uint16_t port) : home_(home), port_(port) {
    std::ofstream(home_ / "prometheus.yml") << "global:\n  scrape_interval: 15s\n";
  }

  void start() {
    process_.emplace(test::ChildProcess::spawn(
        {"prometheus", "--config.file=" + (home_ / "prometheus.yml").string(),
         "--storage.tsdb.path=" + (home_ / "tsdb").string(),
         "--web.listen-address=127.0.0.1:" + std::to_string(port_),
         "--web.enable-remote-write-receiver", "--log.level=warn"},
        home_ / "prometheus.log"));
    ASSERT_TRUE(test::poll_until(
        [&] {
          httplib::Client client("127.0.0.1", port_);
          client.set_connection_timeout(std::chrono::seconds(1));
          auto response = client.Get("/-/ready");
          return response && response->status == 200;
        },
        std::chrono::seconds(20), std::chrono::milliseconds(100)))
        << "Prometheus did not get ready";
  }

  void stop() {
    process_->signal(SIGTERM);
    ASSERT_TRUE(process_->wait_for_exit(std::chrono::seconds(10)).has_value());
    process_.reset();
  }

  [[nodiscard]] std::string write_url() const {
    return fmt::format("http://127.0.0.1:{}/api/v1/write", port_);
  }

  // The result of a query, or null while there is none.
  [[nodiscard]] json query(const std::string& promql) const {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(std::chrono::seconds(5));
    auto response =
        client.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!response || response->status != 200) {
      return nullptr;
    }
    auto doc = json::parse(response->body, nullptr, false);
    if (doc.is_discarded() || doc["data"]["result"].empty()) {
      return nullptr;
    }
    return doc["data"]["result"][0];
  }

 private:
  fs::path home_;
  std::uint16_t port_;
  std::optional<test::ChildProcess> process_;
};

// A receiver on 127.0.0.1 answering every POST with `status`, keeping the requests' headers.
struct StubReceiver {
  explicit StubReceiver(int answer) : status(answer) {
    server.Post("/api/v1/write", [this](const httplib::Request& request, httplib::Response& out) {
      std::lock_guard lock(mutex);
      headers.push_back(request.headers);
      bodies.push_back(request.body);
      out.status = status;
      out.set_content("out of bounds\x1b[31m", "text/plain");
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~StubReceiver() {
    server.stop();
    thread.join();
  }
  std::size_t posts() {
    std::lock_guard lock(mutex);
    return headers.size();
  }
  int status;
  httplib::Server server;
  int port = 0;
  std::thread thread;
  std::mutex mutex;
  std::vector<httplib::Headers> headers;
  std::vector<std::string> bodies;
};

TEST(RemoteWrite, ANodeMetricOfATestBedServerReachesARealPrometheus) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  Prometheus prometheus(home.path(), test::closed_port());
  prometheus.start();
  DaemonFixture daemon(HEALER_BIN, home, daemon_config(prometheus.write_url()));
  add_server(daemon, "web", sshd);
  daemon.start();

  ASSERT_TRUE(
      test::poll_until([&] { return !prometheus.query("node_load1{server=\"web\"}").is_null(); },
                       std::chrono::seconds(15), std::chrono::milliseconds(200)))
      << "Prometheus never received node_load1 of web\n"
      << daemon.log_text();
  // The same names /metrics shows, labels and all.
  const auto filesystem =
      prometheus.query("node_filesystem_size_bytes{server=\"web\",mountpoint=\"/\"}");
  EXPECT_FALSE(filesystem.is_null());
  EXPECT_GT(counter(daemon, "healer_remote_write_samples_total{result=\"sent\"}"), 0);
  EXPECT_EQ(counter(daemon, "healer_remote_write_samples_total{result=\"failed\"}"), 0);
  EXPECT_EQ(counter(daemon, "healer_remote_write_samples_total{result=\"dropped\"}"), 0);
  EXPECT_GT(counter(daemon, "healer_remote_write_last_success_timestamp_seconds"), 1.7e9);
  std::ofstream(home.path() / "metrics.txt") << daemon.get("/metrics").body;
  const auto checked = test::run_command(
      {"sh", "-c", "promtool check metrics < " + (home.path() / "metrics.txt").string()});
  EXPECT_EQ(checked.err.find("error"), std::string::npos) << checked.err;

  // SIGTERM: the final flush sends what is queued; nothing is dropped.
  const auto stopped = daemon.stop();
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->exit_code, 0);
  EXPECT_EQ(daemon.log_text().find("not sent before the shutdown deadline"), std::string::npos)
      << daemon.log_text();
}

TEST(RemoteWrite, SamplesCollectedWhileTheReceiverIsDownArriveAfterItRestarts) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  Prometheus prometheus(home.path(), test::closed_port());
  prometheus.start();
  DaemonFixture daemon(HEALER_BIN, home, daemon_config(prometheus.write_url()));
  add_server(daemon, "web", sshd);
  daemon.start();
  const std::string runs = "healer_scheduler_runs_total{kind=\"metrics\"}";
  const std::string retries = "healer_remote_write_retries_total";
  ASSERT_TRUE(
      test::poll_until([&] { return !prometheus.query("node_load1{server=\"web\"}").is_null(); },
                       std::chrono::seconds(15), std::chrono::milliseconds(200)));

  prometheus.stop();
  const double runs_at_stop = counter(daemon, runs);
  // Down for several collections; healer keeps collecting and retrying.
  ASSERT_TRUE(test::poll_until(
      [&] { return counter(daemon, runs) >= runs_at_stop + 4 && counter(daemon, retries) >= 2; },
      std::chrono::seconds(15), std::chrono::milliseconds(100)));
  EXPECT_GT(counter(daemon, "healer_remote_write_queue_samples"), 0);
  prometheus.start();

  // The backlog drains...
  ASSERT_TRUE(test::poll_until(
      [&] {
        return counter(daemon, "healer_remote_write_queue_samples") == 0 &&
               counter(daemon, "healer_remote_write_last_success_timestamp_seconds") > 0;
      },
      std::chrono::seconds(15), std::chrono::milliseconds(100)))
      << daemon.log_text();
  const double runs_done = counter(daemon, runs);
  // ...and Prometheus holds one sample per collection, without a gap where it was down.
  json samples;
  ASSERT_TRUE(test::poll_until(
      [&] {
        samples = prometheus.query("node_load1{server=\"web\"}[5m]");
        return !samples.is_null() && static_cast<double>(samples["values"].size()) >= runs_done - 1;
      },
      std::chrono::seconds(10), std::chrono::milliseconds(200)))
      << "Prometheus holds " << (samples.is_null() ? 0 : samples["values"].size()) << " samples of "
      << runs_done << " collections";
  double previous = 0;
  for (const auto& point : samples["values"]) {
    const double at = point[0].get<double>();
    if (previous > 0) {
      EXPECT_LT(at - previous, 2.5) << "a gap after " << fmt::format("{:.3f}", previous);
    }
    previous = at;
  }
  EXPECT_EQ(counter(daemon, "healer_remote_write_samples_total{result=\"dropped\"}"), 0);
  EXPECT_EQ(counter(daemon, "healer_remote_write_samples_total{result=\"failed\"}"), 0);
  // One warning for the whole outage, one line when it ended.
  const auto log = daemon.log_text();
  EXPECT_EQ(occurrences(log, "retrying with backoff"), 1U) << log;
  EXPECT_NE(log.find("accepts batches again"), std::string::npos);
}

TEST(RemoteWrite, ARefusingReceiverHasItsBatchesDroppedAndCountedWhileCollectionGoesOn) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  StubReceiver receiver(400);
  std::ofstream(home.path() / "rw.token") << "s3cret-token\n";
  DaemonFixture daemon(HEALER_BIN, home,
                       daemon_config(fmt::format("http://127.0.0.1:{}/api/v1/write", receiver.port),
                                     fmt::format("bearer_token_file = \"{}\"\n",
                                                 (home.path() / "rw.token").string())));
  add_server(daemon, "web", sshd);
  daemon.start();
  ASSERT_TRUE(test::poll_until([&] { return receiver.posts() >= 3; }, std::chrono::seconds(15),
                               std::chrono::milliseconds(100)));
  const std::string runs = "healer_scheduler_runs_total{kind=\"metrics\"}";
  const double runs_then = counter(daemon, runs);
  ASSERT_TRUE(test::poll_until([&] { return counter(daemon, runs) >= runs_then + 2; },
                               std::chrono::seconds(10), std::chrono::milliseconds(100)));
  EXPECT_GT(counter(daemon, "healer_remote_write_samples_total{result=\"failed\"}"), 0);
  EXPECT_EQ(counter(daemon, "healer_remote_write_samples_total{result=\"sent\"}"), 0);
  EXPECT_EQ(counter(daemon, "healer_remote_write_retries_total"), 0);  // a 400 is not retried
  EXPECT_FALSE(metric(daemon, "healer_remote_write_last_success_timestamp_seconds").has_value());
  {
    std::lock_guard lock(receiver.mutex);
    const auto& headers = receiver.headers.front();
    const auto header = [&](const std::string& name) {
      const auto it = headers.find(name);
      return it == headers.end() ? std::string() : it->second;
    };
    EXPECT_EQ(header("Content-Encoding"), "snappy");
    EXPECT_EQ(header("Content-Type"), "application/x-protobuf");
    EXPECT_EQ(header("X-Prometheus-Remote-Write-Version"), "0.1.0");
    EXPECT_EQ(header("Authorization"), "Bearer s3cret-token");
    EXPECT_FALSE(receiver.bodies.front().empty());
  }
  // Logged once for the status, its body made printable; the token never in the log.
  const auto log = daemon.log_text();
  EXPECT_EQ(occurrences(log, "HTTP 400"), 1U) << log;
  EXPECT_EQ(log.find('\x1b'), std::string::npos);
  EXPECT_EQ(log.find("s3cret"), std::string::npos);
}

TEST(RemoteWrite, AnUnreachableReceiverIsRetriedWithBackoffWhileTheApiAnswers) {
  SshdFixture sshd;
  sshd.start();
  test::TempDir home;
  // Accepts and never answers: every POST waits out its 1 s timeout.
  test::BlackholeProxy blackhole;
  blackhole.start();
  DaemonFixture daemon(
      HEALER_BIN, home,
      daemon_config(fmt::format("http://127.0.0.1:{}/api/v1/write", blackhole.port()),
                    "max_batch_samples = 50\nqueue_max_samples = 100\n"));
  add_server(daemon, "web", sshd);
  daemon.start();
  ASSERT_TRUE(
      test::poll_until([&] { return counter(daemon, "healer_remote_write_retries_total") >= 2; },
                       std::chrono::seconds(15), std::chrono::milliseconds(100)));
  // The API is served while the sender waits on the receiver.
  for (int i = 0; i < 5; ++i) {
    httplib::Client client("127.0.0.1", daemon.port());
    client.set_read_timeout(std::chrono::milliseconds(500));
    auto response = client.Get("/healthz");
    ASSERT_TRUE(response) << httplib::to_string(response.error());
    EXPECT_EQ(response->status, 200);
  }
  EXPECT_GE(blackhole.accepted_count(), 2U);
  // The queue holds at most its bound (plus the batch being retried); the rest is dropped.
  ASSERT_TRUE(test::poll_until(
      [&] { return counter(daemon, "healer_remote_write_samples_total{result=\"dropped\"}") > 0; },
      std::chrono::seconds(10), std::chrono::milliseconds(100)));
  EXPECT_LE(counter(daemon, "healer_remote_write_queue_samples"), 150);
  EXPECT_EQ(counter(daemon, "healer_remote_write_samples_total{result=\"sent\"}"), 0);
  // SIGTERM within the shutdown deadline although the receiver never answers.
  const auto stopped = daemon.stop(SIGTERM, std::chrono::seconds(12));
  ASSERT_TRUE(stopped.has_value());
  EXPECT_EQ(stopped->exit_code, 0);
}

TEST(RemoteWrite, CheckConfigValidatesTheTable) {
  test::TempDir home;
  const auto check = [&](const std::string& text) {
    std::ofstream(home.path() / "c.toml") << text;
    return test::run_command({"env", "HOME=" + home.path().string(), HEALER_BIN, "serve",
                              "--check-config", "--config", (home.path() / "c.toml").string()});
  };
  const auto good = check("[remote_write]\nurl = \"http://127.0.0.1:9/api/v1/write\"\n");
  EXPECT_EQ(good.exit_code(), 0) << good.err;
  const auto unknown = check("[remote_write]\nurl = \"http://127.0.0.1:9/w\"\nbatch = 5\n");
  EXPECT_EQ(unknown.exit_code(), 2);
  EXPECT_NE(unknown.err.find("remote_write.batch (line 3): unknown key"), std::string::npos)
      << unknown.err;
  const auto no_token = check(
      "[remote_write]\nurl = \"http://127.0.0.1:9/w\"\nbearer_token_file = \"/nonexistent/t\"\n");
  EXPECT_EQ(no_token.exit_code(), 2);
  EXPECT_NE(no_token.err.find("bearer_token_file"), std::string::npos) << no_token.err;
}

}  // namespace
}  // namespace healer
