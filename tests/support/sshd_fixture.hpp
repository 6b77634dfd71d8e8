#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "delay_proxy.hpp"
#include "temp_dir.hpp"

namespace healer::test {

class PacketLink;

/// A real OpenSSH sshd (/usr/sbin/sshd -D -e) on 127.0.0.1 and a free port, owned by the test:
/// its own temp dir with a generated ed25519 host key, a client key, authorized_keys, known_hosts
/// and sshd_config, and its log (stderr) in dir()/sshd.log. The login user is the user running
/// the test, or the unprivileged `healer-test` (scripts/install-deps.sh) when that is root: sshd
/// refuses "signal" requests after root logins. Not thread-safe: drive it from the test's thread.
/// sshd gets PR_SET_PDEATHSIG(SIGTERM), so it dies with the thread that started it; a crashed test
/// leaves no listener behind.
///
/// Remote commands are cheap: sshd_config sets `SetEnv HOME=<dir>/home`, an empty directory, so
/// the bash that sshd starts for every command (bash reads ~/.bashrc when run by sshd) finds no
/// rc file instead of sourcing the real user's (on the dev machine /root/.bashrc runs pyenv init:
/// ~95 ms per command). Remote commands therefore see HOME=<dir>/home; the working directory is
/// still the user's passwd home.
class SshdFixture {
 public:
  enum class KeyType { ed25519, ecdsa, rsa };

  struct Options {
    int max_sessions = 10;                       ///< MaxSessions: channels per connection
    std::string max_startups = "10:30:100";      ///< MaxStartups: unauthenticated connections
    std::optional<int> per_source_max_startups;  ///< PerSourceMaxStartups; unset: sshd default
    /// LogLevel; VERBOSE is the lowest level that logs the lines the counters below read.
    std::string log_level = "VERBOSE";
    std::optional<int> max_auth_tries;     ///< MaxAuthTries; unset: sshd default (6)
    bool password_authentication = false;  ///< PasswordAuthentication (and PermitRootLogin yes)
    /// Raw sshd_config lines. sshd keeps the first value it reads for a keyword, so these go
    /// before the generated lines and override them; from the first "Match" line on they go last.
    std::vector<std::string> extra_config;
    /// Non-zero: clients connect through a DelayProxy adding this round-trip time; port() is
    /// then the proxy's port and sshd_port() the real one.
    std::chrono::milliseconds rtt{0};
    /// Log in as root even when healer-test exists (tests of root-only behaviour; needs root).
    bool login_as_root = false;
    /// Root only: shell commands run as root in a private mount namespace (unshare --mount)
    /// right before sshd is exec'd in it. sshd and every session see those mounts, the rest of
    /// the machine does not: e.g. a tmpfs on /run/systemd and a stand-in program bind-mounted
    /// over /usr/bin/systemctl (the heal tests; systemd is not PID 1 in the sandboxes).
    std::string mount_namespace_setup;
    /// Non-null: sshd runs inside this packet-level link's network namespace, listening on
    /// 0.0.0.0 there; host() is the link's server address (any of its host_address() reaches the
    /// same sshd). The link sets the RTT: `rtt` must stay 0. Needs root (PacketLink).
    std::shared_ptr<PacketLink> packet_link;
  };

  /// A key pair in dir(), made by add_client_key().
  struct ClientKey {
    std::filesystem::path private_key;
    std::filesystem::path public_key;
  };

  /// Prepares dir(), keys and authorized_keys with default Options; does not start sshd.
  SshdFixture();
  /// Prepares dir(), keys and authorized_keys; does not start sshd. Throws on failure.
  explicit SshdFixture(Options options);
  /// stop(); prints the log's tail to stderr when the current GoogleTest test has failed.
  ~SshdFixture();
  SshdFixture(const SshdFixture&) = delete;
  SshdFixture& operator=(const SshdFixture&) = delete;
  SshdFixture(SshdFixture&&) = delete;
  SshdFixture& operator=(SshdFixture&&) = delete;

  // --- lifecycle --------------------------------------------------------------------------

  /// Writes sshd_config and starts sshd; returns once it logged "Server listening" and its port
  /// is in LISTEN state (deadline 5 s). The first start picks a free port (retrying if another
  /// process takes it first); later starts reuse it. Writes known_hosts on the first start.
  /// Throws std::runtime_error with the log's tail when sshd exits or does not come up.
  void start();
  /// SIGTERM to the listener and every descendant (per-connection sshd, remote commands still
  /// attached), SIGKILL to what is left after 3 s; reaps the listener. Idempotent.
  void stop();
  /// SIGKILL to the listener and every descendant: "the server died mid-command". Open
  /// connections drop at once. start() or restart() brings it back on the same port.
  void kill();
  /// stop() then start(): same port, same host key. A DelayProxy in front stays up.
  void restart();
  /// SIGSTOP to the listener only: new connections complete the TCP handshake in the kernel but
  /// get no SSH banner; established connections keep working.
  void pause();
  /// SIGCONT to the listener.
  void resume();
  /// SIGSTOP to the listener and all its descendants: established connections freeze too.
  void pause_all();
  /// SIGCONT to everything pause_all() stopped (and the current descendants).
  void resume_all();
  /// Replaces the host key with a new one and restarts sshd if it runs. known_hosts keeps the old
  /// key, so clients now see a changed host key.
  void regenerate_host_key();
  /// Rewrites known_hosts with the current host key for port().
  void trust_current_host_key();

  /// Generates another client key (ed25519, ecdsa P-256 or rsa 2048) with an optional passphrase,
  /// appended to authorized_keys when `authorized`. Effective for the next authentication.
  ClientKey add_client_key(KeyType type = KeyType::ed25519, std::string_view passphrase = {},
                           bool authorized = true);

  /// Root only: gives the login user (healer-test) a fresh random password (24 letters and
  /// digits, never printed) and returns it, for password authentication tests (set
  /// Options::password_authentication too). The password is system-wide, so the fixture holds an
  /// exclusive lock (flock on /run/healer-test-password.lock) from here until clear_password():
  /// concurrent test processes wait for each other instead of overwriting each other's password.
  /// Throws std::runtime_error when not root, when the login user is not healer-test, or when
  /// chpasswd fails.
  [[nodiscard]] std::string set_random_password();
  /// Restores healer-test's password field to "*" (no password; key logins still work, as
  /// scripts/install-deps.sh sets it) and releases the lock. The destructor calls it, so a test
  /// never leaves a known password behind (the machine's own sshd may accept passwords).
  /// Idempotent; throws std::runtime_error when usermod fails.
  void clear_password();

  // --- addresses and files ------------------------------------------------------------------

  [[nodiscard]] bool running() const noexcept { return pid_ > 0; }
  /// The listener's pid, -1 when not running.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// The port clients connect to (the proxy's when Options::rtt is set); 0 before start().
  [[nodiscard]] std::uint16_t port() const noexcept;
  /// The port sshd itself listens on; 0 before start().
  [[nodiscard]] std::uint16_t sshd_port() const noexcept { return sshd_port_; }
  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  /// The login user: healer-test when running as root, else the user running the test.
  [[nodiscard]] const std::string& user() const noexcept { return user_; }
  [[nodiscard]] const Options& options() const noexcept { return options_; }
  /// The packet-level link sshd runs behind (Options::packet_link), or null.
  [[nodiscard]] PacketLink* packet_link() const noexcept { return options_.packet_link.get(); }
  /// The DelayProxy in front of sshd, null when Options::rtt is zero or before start().
  [[nodiscard]] DelayProxy* delay_proxy() const noexcept { return proxy_.get(); }

  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_.path(); }
  [[nodiscard]] std::filesystem::path config_path() const { return dir() / "sshd_config"; }
  [[nodiscard]] std::filesystem::path log_path() const { return dir() / "sshd.log"; }
  [[nodiscard]] std::filesystem::path known_hosts_path() const { return dir() / "known_hosts"; }
  [[nodiscard]] std::filesystem::path authorized_keys_path() const {
    return dir() / "authorized_keys";
  }
  [[nodiscard]] std::filesystem::path host_key_path() const {
    return dir() / "ssh_host_ed25519_key";
  }
  /// The default client key (ed25519, no passphrase, authorized).
  [[nodiscard]] std::filesystem::path client_key_path() const { return dir() / "client_ed25519"; }
  /// The HOME remote commands see: an empty directory (see the class comment).
  [[nodiscard]] std::filesystem::path home_dir() const { return dir() / "home"; }

  /// argv for the OpenSSH client running `remote_command` on this server as user(): no user
  /// config, no agent, strict host key checking against known_hosts_path(), key `identity`
  /// (client_key_path() when empty). `extra_options` go before the destination.
  [[nodiscard]] std::vector<std::string> ssh_argv(
      std::string_view remote_command, const std::vector<std::string>& extra_options = {},
      const std::filesystem::path& identity = {}) const;

  // --- the log --------------------------------------------------------------------------------

  /// The whole sshd log so far, with sshd's "\r\n" line ends turned into "\n".
  [[nodiscard]] std::string log_text() const;
  /// Number of log lines containing `needle`.
  [[nodiscard]] std::size_t count_in_log(std::string_view needle) const;
  /// Successful logins: "Accepted publickey for " and "Accepted password for " lines.
  [[nodiscard]] std::size_t accepted_auth_count() const;
  /// Rejected credentials: "Failed publickey for " (a key not in authorized_keys, whether only
  /// queried or offered with a signature) and "Failed password for " lines.
  [[nodiscard]] std::size_t failed_auth_count() const;
  /// Rejected passwords only: "Failed password for " lines.
  [[nodiscard]] std::size_t failed_password_count() const;
  /// TCP connections that reached a per-connection sshd: lines starting "Connection from <address>"
  /// (connections dropped by MaxStartups are not among them, nor the "Connection from user ..."
  /// that sshd's fatal errors quote).
  [[nodiscard]] std::size_t connection_count() const;
  /// Session channels started (exec, shell, subsystem): "Starting session: " lines.
  [[nodiscard]] std::size_t session_open_count() const;
  /// Session channels refused by MaxSessions: "no more sessions" lines.
  [[nodiscard]] std::size_t refused_session_count() const;
  /// Connections dropped by MaxStartups or PerSourceMaxStartups: "drop connection #" lines.
  [[nodiscard]] std::size_t dropped_startup_count() const;
  /// Polls the log until count_in_log(needle) >= count or `timeout` passes.
  [[nodiscard]] bool wait_for_log(
      std::string_view needle, std::size_t count = 1,
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

  // --- the server's processes (the server is this machine) -----------------------------------

  /// The listener and all its descendants, parents first; empty when not running.
  [[nodiscard]] std::vector<pid_t> server_processes() const;
  /// Processes whose command line contains `marker`, leaving out this test process and the
  /// clients it started (a local `ssh ... 'sleep 31337'` contains the marker too). Counts remote
  /// commands under sshd and those that outlived their session (reparented to init).
  [[nodiscard]] std::size_t remote_processes_matching(std::string_view marker) const;
  /// Descendants of the listener whose command line starts with `command`: the remote commands
  /// themselves, not the shells that run them (`sh -c 'sleep 9; true'` forks, `bash -c 'sleep
  /// 9'` execs: a count that includes shells depends on the login shell and on timing).
  [[nodiscard]] std::size_t server_commands_running(std::string_view command) const;
  /// Sends `signal_number` to every process remote_processes_matching() counts; returns how many.
  /// stop() and kill() end the commands still attached to a session, but a command that outlived
  /// its session (detached with `&`, or left running when its client went away: sshd sends no
  /// SIGHUP without a pty) is no descendant of sshd any more: tests clean those up with this.
  std::size_t kill_remote_processes_matching(std::string_view marker,
                                             int signal_number = SIGKILL) const;

 private:
  enum class StartOutcome { listening, address_in_use };

  void write_config(std::uint16_t port) const;
  /// 0.0.0.0 inside a packet link's namespace (every host address of the link), else host_.
  [[nodiscard]] std::string listen_address() const {
    return options_.packet_link ? "0.0.0.0" : host_;
  }
  void write_known_hosts() const;
  void generate_key(KeyType type, const std::filesystem::path& path,
                    std::string_view passphrase) const;
  void authorize(const std::filesystem::path& public_key) const;
  StartOutcome spawn_and_wait(std::uint16_t port);
  std::vector<pid_t> freeze_tree();
  bool reap_listener();
  void dump_log_tail(std::size_t lines) const;
  [[nodiscard]] std::vector<pid_t> matching_remote_processes(std::string_view marker) const;

  Options options_;
  TempDir dir_;
  std::string host_ = "127.0.0.1";
  std::string user_;
  pid_t pid_ = -1;
  std::uint16_t sshd_port_ = 0;  // chosen by the first start(), kept afterwards
  bool known_hosts_written_ = false;
  int extra_keys_ = 0;                 // names the files of add_client_key()
  std::vector<pid_t> paused_;          // what pause_all() stopped
  std::unique_ptr<DelayProxy> proxy_;  // in front of sshd when options_.rtt > 0
  int password_lock_fd_ = -1;          // flock held while healer-test has our password, else -1
};

}  // namespace healer::test
