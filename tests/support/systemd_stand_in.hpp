#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

// systemd is not PID 1 in the test sandboxes, so the heal tests simulate units: an sshd started
// with sshd_options() runs in a private mount namespace where /run/systemd/system exists (a
// tmpfs) and a stand-in `systemctl` script is bind-mounted over /usr/bin/systemctl. The
// stand-in records every call with its exact arguments and keeps unit states in files the test
// sets; nothing outside the namespace changes.
namespace healer::test {

/// Writes `text` to `path` (binary, truncating).
void write_file(const std::filesystem::path& path, const std::string& text);
/// The whole file, or "" when it cannot be read.
[[nodiscard]] std::string read_file(const std::filesystem::path& path);

/// The stand-in's script and state, readable and writable by the login user (healer-test).
class SystemdStandIn {
 public:
  SystemdStandIn();

  /// Options for an SshdFixture whose sessions see the stand-in.
  [[nodiscard]] SshdFixture::Options sshd_options() const;

  /// Sets a unit's ActiveState ("failed", "active", ...); the unit is loaded from then on.
  void set_unit(const std::string& unit, const std::string& active_state);
  /// What a restart or start leaves the unit in (default: active).
  void after_start(const std::string& active_state);
  /// Sets a flag file: "fail" (restart/start exit 1), "hang" (they sleep 20 s).
  void set_flag(const std::string& name);

  /// Every call, one line each: `systemctl [arg] [arg]...`.
  [[nodiscard]] std::vector<std::string> calls() const;
  /// The calls that change something (anything but show, is-active and the failed list).
  [[nodiscard]] std::vector<std::string> changes() const;
  [[nodiscard]] std::filesystem::path state() const { return dir_.path() / "state"; }

 private:
  [[nodiscard]] std::filesystem::path script_path() const { return dir_.path() / "systemctl"; }
  TempDir dir_;
};

}  // namespace healer::test
