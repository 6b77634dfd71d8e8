#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "temp_dir.hpp"

namespace healer::test {

/// A simulated fleet (healer-fleet-sim) owned by a test or benchmark, the way SshdFixture owns
/// an sshd: its own temp dir with a client key, authorized_keys, known_hosts and the simulator's
/// log; one port on `hosts` addresses from Options::first_address (127.16.0.1, 127.16.0.2...),
/// each with its own host key. The simulator dies with this process (PR_SET_PDEATHSIG) and
/// exits after Options::max_lifetime in any case. Not thread-safe: drive it from one thread.
class FleetSim {
 public:
  /// A canned reply: the simulator answers `command` (exact string) with these.
  struct Response {
    std::string command;
    std::string out;
    std::string err;
    int exit_status = 0;
  };

  struct Options {
    std::size_t hosts = 4;
    std::string first_address = "127.16.0.1";
    std::uint64_t seed = 1;         ///< host models and fault draws
    std::string latency = "0";      ///< ms before each answer: "N" or "MIN-MAX" (drawn per host)
    double refuse_rate = 0;         ///< per connection: reset before the banner
    double stall_rate = 0;          ///< per connection: accepted, never answered
    double auth_fail_rate = 0;      ///< per connection: even the right key is refused
    double drop_rate = 0;           ///< per command: the connection is reset instead of answering
    double hang_rate = 0;           ///< per command: never ends by itself
    std::size_t max_sessions = 10;  ///< channels per connection (sshd's MaxSessions)
    std::vector<std::string> profiles;    ///< per-host overrides, "RANGE:key=value,..."
    std::filesystem::path proc_template;  ///< a /proc-shaped dir; empty: tests/data captures
    std::vector<Response> responses;      ///< canned replies by exact command
    bool known_hosts_per_host = false;    ///< also one known_hosts file per host (see below)
    std::chrono::seconds max_lifetime{600};
    bool verbose = true;  ///< a log line per connection event (the log tail shows on failure)
    std::vector<std::string> extra_args;  ///< more healer-fleet-sim flags
  };

  /// The simulator's counters (see fleet_sim/server.hpp for each one's meaning).
  struct Stats {
    std::uint64_t connections = 0;
    std::uint64_t refused = 0;
    std::uint64_t stalled = 0;
    std::uint64_t key_exchanges = 0;
    std::uint64_t auth_requests = 0;
    std::uint64_t auth_successes = 0;
    std::uint64_t auth_failures = 0;
    std::uint64_t channels_opened = 0;
    std::uint64_t channels_refused = 0;
    std::uint64_t commands = 0;
    std::uint64_t commands_answered = 0;
    std::uint64_t commands_signalled = 0;
    std::uint64_t commands_abandoned = 0;
    std::uint64_t commands_dropped = 0;
    std::uint64_t signals = 0;
    std::uint64_t sessions_open = 0;
    std::uint64_t sessions_peak = 0;
    std::uint64_t channels_open = 0;
    std::map<std::string, std::uint64_t> commands_by_kind;
    nlohmann::json raw;  ///< everything the simulator wrote
  };

  /// A key pair made by add_client_key().
  struct ClientKey {
    std::filesystem::path private_key;
    std::filesystem::path public_key;
  };

  FleetSim();
  /// Prepares dir() and the client key; does not start the simulator.
  explicit FleetSim(Options options);
  /// stop(); prints the log's tail when the current GoogleTest test has failed.
  ~FleetSim();
  FleetSim(const FleetSim&) = delete;
  FleetSim& operator=(const FleetSim&) = delete;
  FleetSim(FleetSim&&) = delete;
  FleetSim& operator=(FleetSim&&) = delete;

  /// Starts healer-fleet-sim and returns once it listens (deadline 30 s). The first start takes
  /// a free port and writes known_hosts; later starts keep both. Throws std::runtime_error with
  /// the log's tail when it exits or does not come up.
  void start();
  /// SIGTERM (the simulator disconnects every session politely), SIGKILL after 3 s. Idempotent.
  void stop();
  /// SIGKILL: every connection drops at once.
  void kill();
  /// stop() then start(): same port, same host keys.
  void restart();
  /// Every host gets a new host key (restarting the simulator if it runs); known_hosts keeps
  /// the old keys, so clients see changed host keys.
  void change_host_keys();
  /// Rewrites known_hosts with the current host keys.
  void trust_current_host_keys();
  /// Another ed25519 client key, added to authorized_keys when `authorized` (effective at the
  /// next start).
  ClientKey add_client_key(bool authorized = false);

  /// Host `index` accepts only the keys given this way (replacing the fleet's authorized_keys
  /// for that host); effective at the next start.
  void authorize_on_host(std::size_t index, const std::filesystem::path& public_key);

  /// The simulator's counters now (asked with SIGUSR1; waits up to 5 s for the answer).
  [[nodiscard]] Stats stats() const;

  [[nodiscard]] bool running() const noexcept { return process_.has_value(); }
  [[nodiscard]] pid_t pid() const noexcept { return process_ ? process_->pid() : -1; }
  [[nodiscard]] std::size_t size() const noexcept { return options_.hosts; }
  /// The address of host `index` ("127.16.0.1" for 0).
  [[nodiscard]] std::string host(std::size_t index) const;
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const std::string& user() const noexcept { return user_; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_.path(); }
  [[nodiscard]] std::filesystem::path log_path() const { return dir() / "sim.log"; }
  [[nodiscard]] std::filesystem::path client_key_path() const { return dir() / "client_ed25519"; }
  [[nodiscard]] std::filesystem::path authorized_keys_path() const {
    return dir() / "authorized_keys";
  }
  /// Per-host authorized_keys files, named by address.
  [[nodiscard]] std::filesystem::path host_authorized_keys_dir() const {
    return dir() / "host_authorized_keys";
  }
  /// One file for the whole fleet (one line per host).
  [[nodiscard]] std::filesystem::path known_hosts_path() const { return dir() / "known_hosts"; }
  /// Host `index`'s own known_hosts file (Options::known_hosts_per_host).
  [[nodiscard]] std::filesystem::path known_hosts_path(std::size_t index) const {
    return dir() / "known_hosts.d" / host(index);
  }
  [[nodiscard]] std::string log_text() const;

 private:
  std::vector<std::string> argv() const;
  void dump_log_tail(std::size_t lines) const;
  void generate_key(const std::filesystem::path& path) const;

  Options options_;
  TempDir dir_;
  std::string user_ = "healer";
  std::optional<ChildProcess> process_;
  std::uint16_t port_ = 0;
  std::uint64_t host_key_seed_ = 1;
  bool known_hosts_written_ = false;
  int extra_keys_ = 0;
  mutable std::uint64_t stats_generation_ = 0;
};

}  // namespace healer::test
