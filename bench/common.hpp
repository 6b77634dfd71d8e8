#pragma once

// Helpers the benchmarks share (healer-pool-bench, healer-cli-bench): figures, /proc readers,
// process spawning and timing, the sshd log window, OpenSSH ControlMaster handling, and the
// fleet of DelayProxies on 127.0.x.y in front of one test-bed sshd.

#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <ios>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "delay_proxy.hpp"
#include "healer/core/deadline.hpp"
#include "sshd_fixture.hpp"

namespace healer::bench {

// ---------------------------------------------------------------------------------------------
// Figures

/// Milliseconds from `start` until now.
double ms_since(Clock::time_point start);

/// Median and 90th percentile (nearest rank) of a sample.
struct Summary {
  double median = 0;
  double p90 = 0;
  std::size_t count = 0;
};

/// Median and p90 of `samples` (all zero when empty).
Summary summarize(std::vector<double> samples);
double median_of(const std::vector<double>& samples);

/// "[ 12.3 s] what" on stderr, seconds since the first call.
void progress(std::string_view what);
/// "1.23 ms", "12.3 ms", "1.23 s".
std::string format_ms(double ms);
/// The last `max_chars` of `text` on one line, with '|' replaced (safe in a Markdown table).
std::string trimmed_tail(const std::string& text, std::size_t max_chars = 300);

std::size_t count_occurrences(const std::string& text, std::string_view needle);
/// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> split_list(const std::string& text);
std::vector<int> split_ints(const std::string& text);
/// Raises the soft RLIMIT_NOFILE to the hard limit (a fleet needs thousands of descriptors).
void raise_fd_limit();

// ---------------------------------------------------------------------------------------------
// /proc

/// A small /proc file with plain POSIX reads: no iostream exceptions when a process exits
/// while it is read.
std::optional<std::string> read_small_file(const std::filesystem::path& file);
/// The file's text, empty when it cannot be read.
std::string read_text(const std::filesystem::path& file);
/// The non-empty lines of a file.
std::vector<std::string> read_lines(const std::filesystem::path& file);
/// A "Name:   1234 kB" field of /proc/<pid>/status, in KiB.
std::optional<long> status_kib(const std::filesystem::path& file, std::string_view field);

/// What every CPU of the machine did since boot, in ms (/proc/stat's first line).
struct MachineCpu {
  double user = 0;  ///< user + nice
  double system = 0;
  double softirq = 0;  ///< irq + softirq: loopback TCP is processed here
  double steal = 0;    ///< taken by the hypervisor for other guests

  [[nodiscard]] double busy() const { return user + system + softirq + steal; }
  MachineCpu operator-(const MachineCpu& other) const {
    MachineCpu delta;
    delta.user = user - other.user;
    delta.system = system - other.system;
    delta.softirq = softirq - other.softirq;
    delta.steal = steal - other.steal;
    return delta;
  }
};

MachineCpu machine_cpu();
/// CPU time every CPU of the machine spent busy (not idle, not iowait) since boot, in ms.
double machine_busy_ms();
/// CPU time (user + system) of this process, or of its waited-for children, in ms.
double rusage_cpu_ms(int who);

/// Samples the summed VmRSS of a process and all its descendants every `interval`, on a thread
/// of its own, and keeps the peak: the client memory of tools that run a process per connection
/// (pdsh, parallel-ssh). Shared pages count once per process, as in VmRSS.
class TreeRssSampler {
 public:
  TreeRssSampler(pid_t root, std::chrono::milliseconds interval)
      : root_(root), interval_(interval), thread_([this] { loop(); }) {}
  TreeRssSampler(const TreeRssSampler&) = delete;
  TreeRssSampler& operator=(const TreeRssSampler&) = delete;
  TreeRssSampler(TreeRssSampler&&) = delete;
  TreeRssSampler& operator=(TreeRssSampler&&) = delete;
  ~TreeRssSampler() { stop(); }

  void stop();
  [[nodiscard]] long peak_kib() const { return peak_kib_.load(); }
  [[nodiscard]] std::size_t peak_processes() const { return peak_processes_.load(); }

 private:
  void loop();
  static void add_tree(pid_t pid, long page_kib, long& kib, std::size_t& processes, int depth);

  pid_t root_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
  std::atomic<long> peak_kib_{0};
  std::atomic<std::size_t> peak_processes_{0};
  std::thread thread_;  // last: starts once everything above is initialised
};

/// Runs a /proc scan of the test bed again when it threw (a process exiting mid-read).
template <class Scan>
auto scan_proc(Scan scan) -> decltype(scan()) {
  for (int attempt = 1;; ++attempt) {
    try {
      return scan();
    } catch (const std::ios_base::failure&) {
      if (attempt == 5) {
        throw;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Processes: posix_spawn and waitpid directly, so a timing covers exactly start to exit.

/// Starts `argv` (looked up in PATH) with stdin from /dev/null, stdout and stderr appended to
/// `log`, default signal dispositions, and `extra_env` ("NAME=value") replacing variables of the
/// same name. Throws std::system_error when it cannot.
pid_t spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& log,
                    const std::vector<std::string>& extra_env = {});
/// Waits for `pid` and returns its exit code (128 + signal when a signal ended it).
int wait_process(pid_t pid);
/// Waits up to 5 s for every process of `pids` (ours, asked to exit) to be gone, then sends
/// SIGTERM to those still there and waits up to 5 s more.
void await_exit_or_terminate(const std::vector<pid_t>& pids);

/// How a waited-for process ended, with its own resource usage (wait4).
struct ProcessUsage {
  int exit_code = -1;      ///< 128 + signal when a signal ended it
  double max_rss_kib = 0;  ///< ru_maxrss: the process's peak RSS (not its children's)
  double cpu_ms = 0;       ///< user + system CPU of the process and its waited-for children
};
/// Waits for `pid` with wait4.
ProcessUsage wait_process_usage(pid_t pid);

/// Runs `argv` to completion: wall milliseconds, or nullopt when it exited non-zero.
std::optional<double> time_process(const std::vector<std::string>& argv,
                                   const std::filesystem::path& log);

/// Starts every command at once and waits for all: wall time until the last one exited.
struct BatchOutcome {
  double wall_ms = 0;
  int failures = 0;
};
BatchOutcome run_parallel(const std::vector<std::vector<std::string>>& commands,
                          const std::filesystem::path& log);

/// Runs `argv` (test::run_command, 900 s at most) and parses its stdout as one JSON object; on
/// failure an object with "error" (a non-zero exit, or output that is not JSON).
nlohmann::json run_json_command(const std::vector<std::string>& argv, std::string_view who);

// ---------------------------------------------------------------------------------------------
// The sshd log

/// sshd log lines of one case.
struct LogCounts {
  std::size_t accepted = 0;     ///< "Accepted publickey for": completed handshakes
  std::size_t connections = 0;  ///< "Connection from": TCP connections that reached sshd
  std::size_t dropped = 0;      ///< "drop connection #": MaxStartups
  std::size_t refused = 0;      ///< "no more sessions": MaxSessions refusals
  std::size_t sessions = 0;     ///< "Starting session:": channels that ran a command
  std::size_t errors = 0;       ///< lines with "error:" or "fatal:"
  std::string first_error;
  /// CPU time of this process: the DelayProxies (and healer itself in the diagnosis).
  double bench_cpu_ms = 0;
};

/// Counts the lines of `sshd`'s log written since a starting point, and the CPU this process
/// used since then. (sshd's own CPU cannot be read reliably from its listener's reaped-children
/// times: per-connection processes outlive their parents; see docs/performance.md.)
class LogWindow {
 public:
  explicit LogWindow(const test::SshdFixture& sshd);
  [[nodiscard]] LogCounts counts() const;

 private:
  const test::SshdFixture& sshd_;
  std::size_t start_;
  double bench_cpu_ms_;
};

/// Waits until sshd's process count stops falling (only its listener left, or no change for
/// 200 ms; `limit` at most), so the previous client's teardown does not eat CPU during the next
/// measurement.
void settle(const test::SshdFixture& sshd,
            std::chrono::milliseconds limit = std::chrono::seconds(5));

// ---------------------------------------------------------------------------------------------
// OpenSSH through the fixture's argv (no user config, no agent, strict host key checking),
// ControlMaster sockets in a private directory.

class OpenSsh {
 public:
  OpenSsh(const test::SshdFixture& sshd, std::filesystem::path control_dir)
      : sshd_(sshd), control_dir_(std::move(control_dir)), log_(control_dir_ / "ssh.log") {}
  OpenSsh(const OpenSsh&) = delete;
  OpenSsh& operator=(const OpenSsh&) = delete;
  OpenSsh(OpenSsh&&) = delete;
  OpenSsh& operator=(OpenSsh&&) = delete;
  ~OpenSsh() { stop_all_masters(); }

  [[nodiscard]] std::string control_path(const std::string& name) const {
    return (control_dir_ / name).string();
  }
  /// `ssh host command` on a new connection, never through a master.
  [[nodiscard]] std::vector<std::string> new_connection_argv(std::string_view command) const;
  /// A master that goes to the background (-f) once authenticated and stays (ControlPersist).
  [[nodiscard]] std::vector<std::string> master_argv(const std::string& control) const;
  [[nodiscard]] std::vector<std::string> mux_argv(const std::string& control,
                                                  std::string_view command) const;

  std::optional<double> start_master(const std::string& control) {
    return time_process(master_argv(control), log_);
  }

  /// pids of the masters running now: processes whose command line names our control dir.
  [[nodiscard]] std::vector<pid_t> master_pids() const;
  /// `ssh -O exit` to every master, then SIGTERM by pid to any that is left.
  void stop_all_masters();

  [[nodiscard]] const std::filesystem::path& log() const { return log_; }
  [[nodiscard]] std::string log_tail() const { return trimmed_tail(read_text(log_)); }

 private:
  const test::SshdFixture& sshd_;
  std::filesystem::path control_dir_;
  std::filesystem::path log_;
};

// ---------------------------------------------------------------------------------------------
// The link between the clients and the test-bed sshd

/// How a bench adds its round-trip time. proxy: the test bed's DelayProxy (a thread of the bench
/// accepts TCP on 127.0.0.1 and delays the bytes: no round trip for the TCP handshake, no ACK
/// clocking, no Nagle at the server). packet: the packet-level link (tests/support/netdelay: sshd
/// in a network namespace, every packet held RTT/2 each way by NFQUEUE; TCP end to end). Root only.
enum class LinkModel { proxy, packet };

/// "proxy" or "packet"; throws std::invalid_argument otherwise.
LinkModel parse_link_model(std::string_view text);
/// Every bench's --link default: $HEALER_BENCH_LINK, else "proxy".
std::string default_link_model();
std::string_view link_model_name(LinkModel model);
/// One sentence for a report: which link model the RTT figures were taken on.
std::string link_model_description(LinkModel model);

/// Adds `rtt` between the clients and the sshd of `options` on `model` (nothing for 0 ms):
/// options.rtt, or options.packet_link with a new link (throws std::runtime_error with the
/// reason when the packet-level link cannot run here, e.g. not root).
void add_link(test::SshdFixture::Options& options, LinkModel model, std::chrono::milliseconds rtt);

// ---------------------------------------------------------------------------------------------
// The fleet

/// Fleet addresses: 127.0.X.Y with Y in 1..250, X from 1 (127.0.0.1 is the sshd itself).
constexpr std::size_t kHostsPerOctet = 250;

/// The fleet's `index`th address (0-based): 127.0.1.1, 127.0.1.2, ..., 127.0.2.1, ...
std::string fleet_address(std::size_t index);

/// N addresses that all reach one sshd, and the client files that go with them (known_hosts with
/// one line per address, host lists, an ssh_config for pdsh and parallel-ssh). On the proxy link:
/// N DelayProxies, one per 127.0.x.y address (fleet_address()), all on the same port, in front of
/// the sshd on 127.0.0.1. When the sshd runs behind a packet-level link (its Options::packet_link),
/// no proxies: the first N of the link's host addresses (10.B.128.1, ...), the sshd's own port,
/// and the RTT is the link's (`rtt` is ignored).
class Fleet {
 public:
  Fleet(const test::SshdFixture& sshd, std::size_t size, std::chrono::milliseconds rtt,
        const std::filesystem::path& dir);
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;
  Fleet(Fleet&&) = delete;
  Fleet& operator=(Fleet&&) = delete;
  ~Fleet() { stop(); }

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::size_t size() const { return addresses_.size(); }
  /// The `index`th address (0-based, < size()).
  [[nodiscard]] const std::string& address(std::size_t index) const { return addresses_.at(index); }
  [[nodiscard]] std::filesystem::path known_hosts() const { return dir_ / "known_hosts"; }
  [[nodiscard]] std::filesystem::path ssh_config() const { return dir_ / "ssh_config"; }
  /// The first `count` addresses, one per line.
  [[nodiscard]] std::filesystem::path hosts_file(std::size_t count) const;

 private:
  void start_proxies(const test::SshdFixture& sshd, std::size_t size,
                     std::chrono::milliseconds rtt);
  void stop();
  void write_files(const test::SshdFixture& sshd) const;

  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<test::DelayProxy>> proxies_;  // empty on a packet-level link
};

}  // namespace healer::bench
