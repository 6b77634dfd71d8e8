#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "temp_dir.hpp"

namespace healer::test {

/// A real `healer serve` for tests: its own home, database (in `home`), config file and a free
/// HTTP port on 127.0.0.1; started as a child process and stopped by PID (SIGTERM, then SIGKILL
/// in the destructor if it is still there).
class DaemonFixture {
 public:
  /// `healer` is the binary; `config` the TOML text of its config file; `env` extra variables.
  DaemonFixture(std::filesystem::path healer, const TempDir& home, std::string config = "",
                std::vector<std::string> env = {});
  DaemonFixture(const DaemonFixture&) = delete;
  DaemonFixture& operator=(const DaemonFixture&) = delete;
  ~DaemonFixture();

  /// Starts it and waits until /readyz answers 200 (throws with the log's tail otherwise).
  void start(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  /// Sends `signal` and waits for the exit; nullopt when it did not exit in time.
  std::optional<ExitStatus> stop(int signal = SIGTERM,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(15));
  [[nodiscard]] bool running();
  [[nodiscard]] pid_t pid() const;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string base_url() const;
  [[nodiscard]] std::string token() const;
  [[nodiscard]] std::filesystem::path db() const { return home_ / "inventory.db"; }
  [[nodiscard]] std::filesystem::path socket() const { return home_ / "inventory.db.sock"; }
  [[nodiscard]] std::filesystem::path log_path() const { return home_ / "daemon.log"; }
  [[nodiscard]] std::string log_text() const;
  /// The environment a CLI run against the same database uses ("HOME=...", "HEALER_DB=...").
  [[nodiscard]] std::vector<std::string> cli_env() const;

  /// GET/POST/DELETE on the daemon; status and body. `token`: send the bearer token.
  struct Response {
    int status = 0;
    std::string body;
    std::string content_type;
  };
  [[nodiscard]] Response get(const std::string& path, bool with_token = false) const;
  [[nodiscard]] Response post(const std::string& path, const std::string& body,
                              bool with_token = true) const;
  [[nodiscard]] Response del(const std::string& path, bool with_token = true) const;

 private:
  std::filesystem::path healer_;
  std::filesystem::path home_;
  std::string config_;
  std::vector<std::string> env_;
  std::uint16_t port_ = 0;
  std::optional<ChildProcess> process_;
};

}  // namespace healer::test
