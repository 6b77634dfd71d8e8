#include "daemon_fixture.hpp"

#include <httplib.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "poll_until.hpp"
#include "ports.hpp"

namespace healer::test {

namespace fs = std::filesystem;

DaemonFixture::DaemonFixture(fs::path healer, const TempDir& home, std::string config,
                             std::vector<std::string> env)
    : healer_(std::move(healer)),
      home_(home.path()),
      config_(std::move(config)),
      env_(std::move(env)) {
  // Written at once: CLI runs before start() read the same file.
  std::ofstream file(home_ / "config.toml");
  file << config_;
}

DaemonFixture::~DaemonFixture() {
  if (process_ && process_->running()) {
    process_->signal(SIGTERM);
    if (!process_->wait_for_exit(std::chrono::seconds(15))) {
      process_->signal(SIGKILL);
    }
  }
}

std::vector<std::string> DaemonFixture::cli_env() const {
  std::vector<std::string> env{"HOME=" + home_.string(), "HEALER_DB=" + db().string(),
                               "HEALER_CONFIG=" + (home_ / "config.toml").string()};
  env.insert(env.end(), env_.begin(), env_.end());
  return env;
}

void DaemonFixture::start(std::chrono::milliseconds timeout) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = closed_port();
    std::vector<std::string> argv{"env"};
    const auto env = cli_env();
    argv.insert(argv.end(), env.begin(), env.end());
    argv.insert(argv.end(),
                {healer_.string(), "serve", "--listen", "127.0.0.1:" + std::to_string(port_)});
    process_ = ChildProcess::spawn(argv, log_path());
    const bool ready =
        poll_until([&] { return !process_->running() || get("/readyz").status == 200; }, timeout,
                   std::chrono::milliseconds(20));
    if (ready && process_->running()) {
      return;
    }
    if (process_->running()) {
      break;
    }
    if (log_text().find("in use") == std::string::npos) {
      break;  // not a port race: a real failure
    }
  }
  throw std::runtime_error("healer serve did not become ready; log:\n" + log_text());
}

std::optional<ExitStatus> DaemonFixture::stop(int signal, std::chrono::milliseconds timeout) {
  if (!process_) {
    return std::nullopt;
  }
  process_->signal(signal);
  return process_->wait_for_exit(timeout);
}

bool DaemonFixture::running() { return process_ && process_->running(); }

pid_t DaemonFixture::pid() const { return process_ ? process_->pid() : -1; }

std::string DaemonFixture::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string DaemonFixture::token() const {
  std::ifstream file(home_ / "api.token");
  std::string token;
  std::getline(file, token);
  return token;
}

std::string DaemonFixture::log_text() const {
  std::ifstream file(log_path());
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

namespace {

DaemonFixture::Response to_response(const httplib::Result& result) {
  DaemonFixture::Response response;
  if (result) {
    response.status = result->status;
    response.body = result->body;
    response.content_type = result->get_header_value("Content-Type");
  }
  return response;
}

httplib::Headers headers(const DaemonFixture& daemon, bool with_token) {
  httplib::Headers out;
  if (with_token) {
    out.emplace("Authorization", "Bearer " + daemon.token());
  }
  return out;
}

std::unique_ptr<httplib::Client> client_for(const DaemonFixture& daemon) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", daemon.port());
  client->set_connection_timeout(std::chrono::seconds(5));
  client->set_read_timeout(std::chrono::seconds(60));
  return client;
}

}  // namespace

DaemonFixture::Response DaemonFixture::get(const std::string& path, bool with_token) const {
  return to_response(client_for(*this)->Get(path, headers(*this, with_token)));
}

DaemonFixture::Response DaemonFixture::post(const std::string& path, const std::string& body,
                                            bool with_token) const {
  return to_response(
      client_for(*this)->Post(path, headers(*this, with_token), body, "application/json"));
}

DaemonFixture::Response DaemonFixture::del(const std::string& path, bool with_token) const {
  return to_response(client_for(*this)->Delete(path, headers(*this, with_token)));
}

}  // namespace healer::test
