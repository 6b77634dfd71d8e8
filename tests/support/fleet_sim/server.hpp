#pragma once

#include <libssh/libssh.h>
#include <libssh/server.h>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "behaviour.hpp"
#include "commands.hpp"
#include "host_keys.hpp"
#include "host_model.hpp"

// The simulated fleet's SSH server: one listening socket (0.0.0.0 bound to the loopback device,
// so it accepts on every 127.x.y.z and nothing else), one thread, non-blocking libssh driven by
// Asio. The address a client dialed (getsockname) selects the host: its host key, its
// behaviour, its /proc. See README.md in this directory for the flags and what is simulated.
namespace healer::fleet_sim {

struct BindFree {
  void operator()(ssh_bind bind) const noexcept { ssh_bind_free(bind); }
};
using BindHandle = std::unique_ptr<std::remove_pointer_t<ssh_bind>, BindFree>;

/// Everything the server is told at start.
struct ServerOptions {
  ServerOptions() = default;

  std::size_t hosts = 1;
  std::uint32_t first_address = 0x7f100001;  ///< 127.16.0.1, host byte order
  std::uint16_t port = 0;                    ///< 0: the kernel picks one
  std::string user;                          ///< the only login name accepted; empty: any
  std::vector<KeyHandle> authorized_keys;    ///< public keys every host accepts
  /// Per-host authorized_keys files named by address ("127.16.0.3"); a host with a file accepts
  /// only the keys in it.
  std::filesystem::path host_authorized_keys_dir;
  std::uint64_t host_key_seed = 1;
  std::uint64_t seed = 1;
  Behaviour defaults;
  std::vector<Profile> profiles;
  std::filesystem::path known_hosts_file;  ///< written at start (one line per host); empty: none
  std::filesystem::path known_hosts_dir;   ///< one file per host named by address; empty: none
  std::filesystem::path stats_file;        ///< written by write_stats(); empty: none
  std::chrono::seconds login_grace{60};    ///< unauthenticated connections are closed after it
  std::size_t max_input = std::size_t{1} << 20;  ///< stdin bytes kept per channel
  /// Reply bytes handed to libssh at a time; the next chunk waits until libssh's socket buffer
  /// is written. libssh's buffers keep their largest size (rounded up to a power of two) for the
  /// session's life: 3968 (a packet within 4 KiB) saves ~8 KiB per idle session after a probe,
  /// at the cost of a loop turn per chunk (a warm sweep's wall time doubled in
  /// healer-fleet-bench); the default writes a probe's reply at once.
  std::size_t write_chunk = 32768;
  bool verbose = false;      ///< a log line per connection event on stderr
  int libssh_verbosity = 0;  ///< libssh's own log on stderr (SSH_LOG_*), for debugging
};

/// Counters the tests assert on (stats_json() names them the same).
struct Stats {
  std::uint64_t connections = 0;    ///< TCP connections accepted for a fleet address
  std::uint64_t rejected = 0;       ///< accepted for an address outside the fleet, closed
  std::uint64_t refused = 0;        ///< reset before the banner (refuse rate)
  std::uint64_t stalled = 0;        ///< never answered (stall rate)
  std::uint64_t key_exchanges = 0;  ///< completed key exchanges
  std::uint64_t auth_requests = 0;  ///< publickey requests (queries and signed)
  std::uint64_t auth_successes = 0;
  std::uint64_t auth_failures = 0;  ///< requests denied (wrong key or user, injected)
  std::uint64_t auth_failures_injected = 0;
  std::uint64_t channels_opened = 0;
  std::uint64_t channels_refused = 0;    ///< over max_sessions (or before authentication)
  std::uint64_t commands = 0;            ///< exec requests accepted
  std::uint64_t commands_answered = 0;   ///< ended with an exit status
  std::uint64_t commands_signalled = 0;  ///< ended by a "signal" request (exit-signal sent)
  std::uint64_t commands_abandoned = 0;  ///< the client closed the channel before the end
  std::uint64_t commands_dropped = 0;    ///< the connection was reset instead (drop rate)
  std::uint64_t commands_hung = 0;       ///< never answered by themselves (hang rate)
  std::uint64_t signals = 0;             ///< "signal" requests received
  std::uint64_t disconnects = 0;         ///< sessions ended (any way)
  std::uint64_t login_timeouts = 0;      ///< closed after login_grace without authentication
  std::uint64_t sessions_open = 0;       ///< SSH sessions now (stalled ones not included)
  std::uint64_t sessions_peak = 0;
  std::uint64_t stalled_open = 0;
  std::uint64_t channels_open = 0;
  std::map<std::string, std::uint64_t> commands_by_kind;  ///< probe, check, shell, unknown...
};

class Connection;
class StalledConnection;

/// The server. Lives on one io_context; not thread-safe.
class Server {
 public:
  /// Derives the host keys and parses the templates; does not listen yet. Throws on bad options.
  Server(asio::io_context& io, ServerOptions options, ProcTemplates templates,
         CommandBook commands);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  /// Binds and listens, then writes the known_hosts files. Throws std::system_error.
  void start();
  /// Stops accepting and closes every session (a disconnect message, then the socket).
  void stop();
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string address(std::size_t host) const;
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }
  [[nodiscard]] nlohmann::json stats_json() const;
  /// Writes stats_json() (plus a generation number) to ServerOptions::stats_file atomically.
  void write_stats();

  // --- for connections ---------------------------------------------------------------------
  Stats& counters() noexcept { return stats_; }
  [[nodiscard]] const ServerOptions& options() const noexcept { return options_; }
  [[nodiscard]] const BehaviourTable& behaviour() const noexcept { return behaviour_; }
  [[nodiscard]] const CommandBook& commands() const noexcept { return commands_; }
  [[nodiscard]] HostModel model(std::size_t host) const;
  [[nodiscard]] bool authorized(std::size_t host, ssh_key key);
  /// The next per-host counter value for connections / commands (fault draws).
  std::uint64_t next_connection(std::size_t host) { return host_counters_[host].connections++; }
  std::uint64_t next_command(std::size_t host) { return host_counters_[host].commands++; }
  void forget(std::uint64_t id);
  void log(std::string_view line) const;

 private:
  struct HostCounters {
    std::uint32_t connections = 0;
    std::uint32_t commands = 0;
  };

  void open_listener();
  void write_known_hosts() const;
  void wait_for_clients();
  void accept_ready();
  void accept_one(int fd);

  asio::io_context& io_;
  ServerOptions options_;
  ProcTemplates templates_;
  CommandBook commands_;
  BehaviourTable behaviour_;
  double epoch_ = 0;  // host boot times are drawn back from this (start, rounded to the hour)
  std::vector<KeyHandle> host_keys_;         // by host index
  std::vector<HostCounters> host_counters_;  // by host index
  // per-host authorized keys, loaded on first use: host -> keys (empty vector: none on disk)
  std::unordered_map<std::size_t, std::vector<KeyHandle>> host_authorized_;
  BindHandle bind_;
  std::unique_ptr<asio::posix::stream_descriptor> listener_;
  std::uint16_t port_ = 0;
  bool stopping_ = false;
  std::uint64_t next_id_ = 1;
  std::uint64_t stats_generation_ = 0;
  // live connections by id (sessions and stalled ones)
  std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> connections_;
  std::unordered_map<std::uint64_t, std::shared_ptr<StalledConnection>> stalled_;
  Stats stats_;

  friend class StalledConnection;
};

}  // namespace healer::fleet_sim
