// The config file read and parsed once: every section, unknown tables refused, durations,
// listen addresses, and files that could block (FIFOs) or never end refused.
#include "healer/service/settings.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "healer/core/config_loader.hpp"

namespace healer::service {
namespace {

namespace fs = std::filesystem;

Result<Settings> from_text(const std::string& text, std::map<std::string, std::string> env = {}) {
  auto file = config::ConfigFile::parse(text, "/etc/healer.toml");
  if (!file) {
    return std::move(file).error();
  }
  return load_settings(config::Environment::from_map(std::move(env)), &*file, {});
}

TEST(Settings, EverySectionFromOneFile) {
  auto settings = from_text(R"(
[pool]
max_connections = 4
[checks]
thresholds = { disk_space = [70, 80] }
[store]
runs_retention_days = 7
[schedule]
metrics_interval = "1m"
diagnose_interval = 600
[schedule.tags.prod]
metrics_interval = "30s"
[schedule.servers.web1]
diagnose_interval = "0"
[notify]
command = ["/usr/local/bin/page", "--team", "ops"]
webhook = "http://127.0.0.1:9000/hook"
consecutive = 3
max_per_hour = 10
[serve]
listen = "[::1]:8080"
shutdown_timeout = "5s"
node_id = "healer-a.example:1"
lease_ttl = "12s"
)");
  ASSERT_TRUE(settings) << settings.error().message();
  EXPECT_EQ(settings->pool.max_connections, 4U);
  EXPECT_EQ(settings->checks.all.thresholds.at("disk_space").warn, 70);
  EXPECT_EQ(settings->retention.runs, std::chrono::days(7));
  EXPECT_EQ(settings->schedule.defaults.metrics, std::chrono::seconds(60));
  EXPECT_EQ(settings->schedule.defaults.diagnose, std::chrono::seconds(600));
  const auto web1 = settings->schedule.intervals_for("web1", {"prod"});
  EXPECT_EQ(web1.metrics, std::chrono::seconds(30));
  EXPECT_EQ(web1.diagnose, std::chrono::seconds(0));
  const auto other = settings->schedule.intervals_for("db1", {});
  EXPECT_EQ(other.metrics, std::chrono::seconds(60));
  EXPECT_EQ(settings->notify.command.size(), 3U);
  EXPECT_EQ(settings->notify.consecutive, 3);
  EXPECT_EQ(settings->serve.listen_address, "::1");
  EXPECT_EQ(settings->serve.listen_port, 8080);
  EXPECT_EQ(settings->serve.shutdown_timeout, std::chrono::seconds(5));
  EXPECT_EQ(settings->serve.node_id, "healer-a.example:1");
  EXPECT_EQ(settings->serve.lease_ttl, std::chrono::seconds(12));
}

TEST(Settings, DefaultsWithoutAFile) {
  auto settings = load_settings(config::Environment::from_map({}), nullptr, {});
  ASSERT_TRUE(settings);
  EXPECT_EQ(settings->schedule.defaults.metrics, std::chrono::minutes(5));  // the seed's cadence
  EXPECT_EQ(settings->schedule.defaults.diagnose, std::chrono::minutes(15));
  EXPECT_EQ(settings->serve.listen_address, "127.0.0.1");
  EXPECT_EQ(settings->serve.listen_port, 7464);
  EXPECT_EQ(settings->serve.node_id, "");
  EXPECT_EQ(settings->serve.lease_ttl, std::chrono::seconds(30));
  EXPECT_FALSE(settings->notify.enabled());
}

TEST(Settings, AnUnknownTableIsAnErrorNamingItsLine) {
  auto settings = from_text("[pool]\nmax_connections = 4\n\n[shedule]\nmetrics_interval = 60\n");
  ASSERT_FALSE(settings);
  EXPECT_NE(settings.error().detail.find("shedule"), std::string::npos);
  EXPECT_NE(settings.error().detail.find("line 4"), std::string::npos);
  EXPECT_NE(settings.error().detail.find("did you mean [schedule]"), std::string::npos)
      << settings.error().detail;
}

TEST(Settings, BadValuesAreNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {"[schedule]\nmetrics_interval = \"5x\"\n", "schedule.metrics_interval"},
      {"[schedule]\nmetrics_interval = -5\n", "schedule.metrics_interval"},
      {"[schedule]\nevery = 5\n", "schedule.every"},
      {"[notify]\ncommand = \"page me\"\n", "notify.command"},
      {"[notify]\ncommand = [\"page\"]\n", "absolute path"},
      {"[notify]\nwebhook = \"ftp://x\"\n", "notify.webhook"},
      {"[notify]\nconsecutive = 0\n", "notify.consecutive"},
      {"[serve]\nlisten = \"localhost:80\"\n", "serve.listen"},
      {"[serve]\ntls_cert = \"/c.pem\"\n", "go together"},
      {"[serve]\nlease_ttl = \"1s\"\n", "serve.lease_ttl must be 2 s"},
      {"[serve]\nnode_id = \"a b\"\n", "serve.node_id must be"},
      {"[serve]\nnode_id = \"\"\n", "serve.node_id must be"},
      {"schedule = 5\n", "schedule"},
  };
  for (const auto& [text, expected] : cases) {
    auto settings = from_text(text);
    ASSERT_FALSE(settings) << text;
    EXPECT_NE(settings.error().detail.find(expected), std::string::npos)
        << text << " -> " << settings.error().detail;
  }
}

TEST(Settings, RemoteWrite) {
  auto settings = from_text(R"([remote_write]
url = "http://127.0.0.1:9090/api/v1/write"
timeout = "3s"
flush_interval = 2
max_batch_samples = 500
queue_max_samples = 10000
bearer_token_file = "/etc/healer/rw.token"
)");
  ASSERT_TRUE(settings) << settings.error().detail;
  const auto& remote = settings->remote_write;
  EXPECT_TRUE(remote.enabled());
  EXPECT_EQ(remote.url, "http://127.0.0.1:9090/api/v1/write");
  EXPECT_EQ(remote.timeout, std::chrono::seconds(3));
  EXPECT_EQ(remote.flush_interval, std::chrono::seconds(2));
  EXPECT_EQ(remote.max_batch_samples, 500U);
  EXPECT_EQ(remote.queue_max_samples, 10000U);
  EXPECT_EQ(remote.bearer_token_file, "/etc/healer/rw.token");
  auto defaults = from_text("");
  ASSERT_TRUE(defaults);
  EXPECT_FALSE(defaults->remote_write.enabled());
}

TEST(Settings, BadRemoteWriteValuesAreNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {"[remote_write]\nurl = \"ftp://x/api/v1/write\"\n", "remote_write.url"},
      {"[remote_write]\nurl = \"http:///api/v1/write\"\n", "remote_write.url"},
      {"[remote_write]\nurl = \"http://u:secret@x/api/v1/write\"\n", "must not hold credentials"},
      {"[remote_write]\nurl = \"127.0.0.1:9090\"\n", "remote_write.url"},
      {"[remote_write]\nurl = 5\n", "remote_write.url"},
      {"[remote_write]\ntimeout = \"5s\"\n", "remote_write.url is required"},
      {"[remote_write]\nurl = \"http://x\"\ntimeout = 0\n", "remote_write.timeout"},
      {"[remote_write]\nurl = \"http://x\"\nflush_interval = \"1x\"\n",
       "remote_write.flush_interval"},
      {"[remote_write]\nurl = \"http://x\"\nmax_batch_samples = 0\n",
       "remote_write.max_batch_samples"},
      {"[remote_write]\nurl = \"http://x\"\nqueue_max_samples = 10\n", "must not exceed"},
      {"[remote_write]\nurl = \"http://x\"\nbearer_token_file = \"rel\"\n",
       "remote_write.bearer_token_file"},
      {"[remote_write]\nurl = \"http://x\"\n\nqueue_size = 5\n",
       "remote_write.queue_size (line 4): unknown key"},
      {"remote_write = 5\n", "remote_write"},
  };
  for (const auto& [text, expected] : cases) {
    auto settings = from_text(text);
    ASSERT_FALSE(settings) << text;
    EXPECT_NE(settings.error().detail.find(expected), std::string::npos)
        << text << " -> " << settings.error().detail;
  }
}

TEST(Settings, ListenAddresses) {
  EXPECT_EQ(*parse_listen("127.0.0.1:7464"),
            (std::pair<std::string, std::uint16_t>{"127.0.0.1", 7464}));
  EXPECT_EQ(parse_listen("[::1]:1")->first, "::1");
  EXPECT_EQ(parse_listen("0.0.0.0:65535")->second, 65535);
  for (const char* bad : {"127.0.0.1", ":80", "127.0.0.1:080", "127.0.0.1:0x50", "127.0.0.1:65536",
                          "::1:80", "[::1:80", "example.com:80", "127.0.0.1:"}) {
    EXPECT_FALSE(parse_listen(bad)) << bad;
  }
}

TEST(Settings, Durations) {
  EXPECT_EQ(parse_duration("90s"), std::chrono::seconds(90));
  EXPECT_EQ(parse_duration("15m"), std::chrono::seconds(900));
  EXPECT_EQ(parse_duration("2h"), std::chrono::seconds(7200));
  EXPECT_EQ(parse_duration("7d"), std::chrono::seconds(7 * 86400));
  EXPECT_EQ(parse_duration("300"), std::chrono::seconds(300));
  for (const char* bad : {"", "s", "5x", "-5s", "1.5m", "99999999999999d"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(Settings, AFifoOrAHugeFileIsRefusedNotWaitedOn) {
  const fs::path dir = fs::temp_directory_path() / ("healer-settings-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const auto fifo = dir / "config.toml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto read = config::ConfigFile::read(fifo);  // would block forever if it opened for reading
  ASSERT_FALSE(read);
  EXPECT_NE(read.error().detail.find("not a regular file"), std::string::npos)
      << read.error().detail;
  fs::remove(fifo);
  {
    std::ofstream big(fifo);
    big << std::string((1 << 20) + 1, '#');
  }
  read = config::ConfigFile::read(fifo);
  ASSERT_FALSE(read);
  EXPECT_NE(read.error().detail.find("larger than 1 MiB"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace healer::service
