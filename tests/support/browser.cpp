#include "browser.hpp"

#include <httplib.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "poll_until.hpp"
#include "ports.hpp"
#include "process_table.hpp"

namespace healer::test {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kDriver = "/usr/bin/chromedriver";
// The real binary: /usr/bin/chromium is a shell wrapper that adds the distribution's flags.
constexpr const char* kChromiumBinaries[] = {"/usr/lib/chromium/chromium", "/usr/bin/chromium"};
constexpr const char* kElementKey = "element-6066-11e4-a52e-4f735466cecf";

std::string chromium_binary() {
  for (const char* path : kChromiumBinaries) {
    if (::access(path, X_OK) == 0) {
      return path;
    }
  }
  return "";
}

}  // namespace

std::string base64_decode(const std::string& text) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned buffer = 0;
  int bits = 0;
  for (const char c : text) {
    const auto index = kAlphabet.find(c);
    if (index == std::string::npos) {
      continue;  // padding, line breaks
    }
    buffer = (buffer << 6U) | static_cast<unsigned>(index);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> static_cast<unsigned>(bits)) & 0xFFU));
    }
  }
  return out;
}

bool Browser::available() { return ::access(kDriver, X_OK) == 0 && !chromium_binary().empty(); }

Browser::Browser(Options options) : dir_("healer-browser-") {
  if (!available()) {
    throw std::runtime_error("chromium and chromium-driver are not installed");
  }
  for (int attempt = 0; attempt < 5 && session_.empty(); ++attempt) {
    port_ = closed_port();
    driver_ = ChildProcess::spawn({kDriver, "--port=" + std::to_string(port_),
                                   "--log-path=" + (dir_.path() / "chromedriver.log").string()},
                                  dir_.path() / "chromedriver.out");
    const bool listening = poll_until([&] { return !driver_->running() || is_listening(port_); },
                                      std::chrono::seconds(10), std::chrono::milliseconds(20));
    if (!listening || !driver_->running()) {
      continue;  // the port was taken meanwhile: another one
    }
    const json args = json::array({
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-domain-reliability",
        "--no-pings",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--password-store=basic",
        "--lang=en-US",
        "--hide-scrollbars",
        "--mute-audio",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        // No name is ever resolved (Chromium's own services would ask the system's DNS server):
        // the tests load pages from 127.0.0.1 by address only.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--user-data-dir=" + (dir_.path() / "profile").string(),
        "--window-size=" + std::to_string(options.width) + "," + std::to_string(options.height),
    });
    const json capabilities = {
        {"capabilities",
         {{"alwaysMatch",
           {{"browserName", "chrome"},
            {"pageLoadStrategy", "normal"},
            {"goog:chromeOptions", {{"binary", chromium_binary()}, {"args", args}}},
            {"goog:loggingPrefs", {{"browser", "ALL"}}}}}}}};
    const auto created = call("POST", "/session", capabilities);
    session_ = created.at("value").at("sessionId").get<std::string>();
  }
  if (session_.empty()) {
    throw std::runtime_error("chromedriver did not start; log:\n" + driver_log());
  }
  call("POST", "/session/" + session_ + "/timeouts",
       {{"script", 30000}, {"pageLoad", 30000}, {"implicit", 0}});
}

Browser::~Browser() {
  std::vector<pid_t> browsers;
  if (driver_) {
    browsers = descendants_of(driver_->pid());
  }
  if (!session_.empty()) {
    try {
      call("DELETE", "/session/" + session_);
    } catch (const std::exception&) {
      // the driver is gone already; its browser is ended below
    }
  }
  if (driver_) {
    driver_->signal(SIGTERM);
    if (!driver_->wait_for_exit(std::chrono::seconds(5))) {
      driver_->signal(SIGKILL);
    }
  }
  // Browser processes that outlived their driver: ours, ended by PID.
  for (const auto pid : browsers) {
    if (!process_gone(pid) &&
        process_cmdline(pid).find(dir_.path().string()) != std::string::npos) {
      ::kill(pid, SIGKILL);
    }
  }
}

json Browser::call(const std::string& method, const std::string& path, const json& body) {
  httplib::Client client("127.0.0.1", port_);
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(std::chrono::seconds(60));
  const std::string payload = body.is_null() ? "{}" : body.dump();
  auto result = method == "GET"      ? client.Get(path)
                : method == "DELETE" ? client.Delete(path)
                                     : client.Post(path, payload, "application/json");
  if (!result) {
    throw std::runtime_error("chromedriver: no answer to " + method + " " + path);
  }
  auto document = json::parse(result->body, nullptr, false);
  if (result->status != 200) {
    std::string message = result->body.substr(0, 2000);
    if (document.is_object() && document.contains("value") && document["value"].is_object()) {
      message = document["value"].value("error", std::string()) + ": " +
                document["value"].value("message", std::string()).substr(0, 2000);
    }
    throw std::runtime_error("chromedriver: " + method + " " + path + ": " + message);
  }
  return document;
}

void Browser::navigate(const std::string& url) {
  call("POST", "/session/" + session_ + "/url", {{"url", url}});
}

json Browser::execute(const std::string& script, const json& args) {
  return call("POST", "/session/" + session_ + "/execute/sync",
              {{"script", script}, {"args", args}})
      .at("value");
}

bool Browser::wait_for(const std::string& script, std::chrono::milliseconds timeout,
                       const json& args) {
  return poll_until(
      [&] {
        const auto value = execute(script, args);
        return value.is_boolean() && value.get<bool>();
      },
      timeout, std::chrono::milliseconds(50));
}

std::string Browser::element(const std::string& css) {
  const auto found = call("POST", "/session/" + session_ + "/element",
                          {{"using", "css selector"}, {"value", css}});
  const auto& value = found.at("value");
  if (!value.is_object() || !value.contains(kElementKey)) {
    throw std::runtime_error("chromedriver: no element " + css + ": " + found.dump());
  }
  return value.at(kElementKey).get<std::string>();
}

void Browser::click(const std::string& css) {
  call("POST", "/session/" + session_ + "/element/" + element(css) + "/click", json::object());
}

void Browser::type(const std::string& css, const std::string& text) {
  call("POST", "/session/" + session_ + "/element/" + element(css) + "/value", {{"text", text}});
}

void Browser::press(const std::vector<std::string>& keys) {
  json actions = json::array();
  for (const auto& key : keys) {
    actions.push_back({{"type", "keyDown"}, {"value", key}});
    actions.push_back({{"type", "keyUp"}, {"value", key}});
  }
  call("POST", "/session/" + session_ + "/actions",
       {{"actions", json::array({{{"type", "key"}, {"id", "keyboard"}, {"actions", actions}}})}});
}

void Browser::resize(int width, int height) {
  call("POST", "/session/" + session_ + "/window/rect", {{"width", width}, {"height", height}});
}

void Browser::screenshot(const fs::path& png) {
  const auto shot = call("GET", "/session/" + session_ + "/screenshot");
  fs::create_directories(png.parent_path());
  std::ofstream file(png, std::ios::binary);
  file << base64_decode(shot.at("value").get<std::string>());
}

std::vector<Browser::LogEntry> Browser::logs() {
  const auto got = call("POST", "/session/" + session_ + "/se/log", {{"type", "browser"}});
  std::vector<LogEntry> entries;
  for (const auto& entry : got.at("value")) {
    entries.push_back(LogEntry{entry.value("level", std::string()),
                               entry.value("source", std::string()),
                               entry.value("message", std::string())});
  }
  return entries;
}

std::string Browser::driver_log() const {
  std::ifstream file(dir_.path() / "chromedriver.log");
  std::stringstream text;
  text << file.rdbuf();
  auto log = text.str();
  return log.size() > 8000 ? log.substr(log.size() - 8000) : log;
}

}  // namespace healer::test
