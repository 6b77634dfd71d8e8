#pragma once

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "temp_dir.hpp"

namespace healer::test {

/// A real headless Chromium driven over the W3C WebDriver HTTP protocol: Debian's chromedriver
/// started on a free 127.0.0.1 port, one browser session with a fresh profile in a temp dir.
/// Everything the browser logs to its console (errors, failed loads) is kept for logs().
/// The destructor ends the session, chromedriver and any browser process left under it, by PID.
class Browser {
 public:
  struct Options {
    int width = 1280;
    int height = 900;
  };
  Browser() : Browser(Options{}) {}
  explicit Browser(Options options);
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;
  ~Browser();

  /// True when chromium and chromedriver are installed (tests skip otherwise).
  [[nodiscard]] static bool available();

  /// Loads `url` and waits for the document to be loaded.
  void navigate(const std::string& url);
  /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
  nlohmann::json execute(const std::string& script,
                         const nlohmann::json& args = nlohmann::json::array());
  /// Re-evaluates `script` (returns true/false) until it is true or `timeout` passed.
  bool wait_for(const std::string& script, std::chrono::milliseconds timeout,
                const nlohmann::json& args = nlohmann::json::array());
  /// Clicks the first element matching the CSS selector (throws when there is none).
  void click(const std::string& css);
  /// Types into the first element matching the CSS selector (WebDriver "send keys").
  void type(const std::string& css, const std::string& text);
  /// Key presses to the focused element (WebDriver actions), e.g. "\uE015" = ArrowDown.
  void press(const std::vector<std::string>& keys);
  /// Resizes the window (the viewport a page lays out for).
  void resize(int width, int height);
  /// Saves a PNG of the viewport.
  void screenshot(const std::filesystem::path& png);

  /// One console message of the page (level SEVERE, WARNING, INFO...; source "network" for
  /// failed loads, "javascript" for uncaught errors, "console-api" for console.*).
  struct LogEntry {
    std::string level;
    std::string source;
    std::string message;
  };
  /// The console messages since the previous call.
  std::vector<LogEntry> logs();

  [[nodiscard]] std::string driver_log() const;

 private:
  nlohmann::json call(const std::string& method, const std::string& path,
                      const nlohmann::json& body = nullptr);
  std::string element(const std::string& css);

  TempDir dir_;
  std::uint16_t port_ = 0;
  std::optional<ChildProcess> driver_;
  std::string session_;
};

/// The base64 text decoded (WebDriver screenshots).
std::string base64_decode(const std::string& text);

}  // namespace healer::test
