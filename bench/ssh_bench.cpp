// healer-ssh-bench: healer's SSH client side by side with the OpenSSH client and Python asyncssh,
// against the same throwaway sshd, in one run, at several added round-trip times. Prints a
// Markdown table of medians (and p90s); bench/README.md says what each row measures.
//
// The sshd is the test bed's SshdFixture (a real /usr/sbin/sshd on 127.0.0.1); RTT is added by
// its DelayProxy, which runs on a thread of this process. Clients take turns, never overlap.

#include <fcntl.h>
#include <fmt/format.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "common.hpp"
#include "healer/core/deadline.hpp"
#include "healer/ssh/session.hpp"
#include "poll_until.hpp"
#include "process_table.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"
#include "temp_dir.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace healer::bench {
namespace {

using namespace std::chrono_literals;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// Bound of any single step (one connect, one command): a hang fails the figure, not the run.
constexpr auto kStepTimeout = 60s;
constexpr int kMaxSessions = 64;  // sshd's MaxSessions: channels per connection

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
  int runs = 10;
  int rss_runs = 3;  // (d) opens `sessions` connections per client per run: see the README
  std::vector<int> rtts_ms{0, 50};
  int sessions = 200;
  int concurrency = 50;
  std::vector<std::string> clients{"healer", "openssh", "asyncssh"};
  std::vector<std::string> measurements{"connect",    "new_true",   "warm",
                                        "warm_spare", "concurrent", "rss"};
  std::string python = "/usr/bin/python3";
  std::string peer_script = HEALER_BENCH_PEERS_DIR "/asyncssh_peer.py";
  std::string markdown_out;
  LinkModel link = LinkModel::proxy;

  [[nodiscard]] bool wants_client(std::string_view name) const {
    return std::find(clients.begin(), clients.end(), name) != clients.end();
  }
  [[nodiscard]] bool wants(std::string_view measurement) const {
    return std::find(measurements.begin(), measurements.end(), measurement) != measurements.end();
  }
};

/// Where and as whom every client connects.
struct Target {
  std::string host;
  std::uint16_t port = 0;
  std::string user;
  std::string key;
  std::string known_hosts;
};

// ---------------------------------------------------------------------------------------------
// Figures

double to_ms(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; }

/// CPU time of the calling thread: healer's io_context runs here, the DelayProxy elsewhere.
double thread_cpu_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1000.0 + static_cast<double>(now.tv_nsec) / 1e6;
}

/// One client's samples for one measurement (ms, or KiB for memory), or why there are none.
struct Figure {
  std::vector<double> samples;
  std::string failure;  ///< empty when the samples are valid
  /// healer only: CPU time of the client thread per operation (connect, or command), in ms.
  std::optional<double> client_cpu_ms;
  /// healer only: channel opens refused by MaxSessions and retried (see async_run_true).
  std::size_t refused_channels = 0;

  [[nodiscard]] bool valid() const { return failure.empty() && !samples.empty(); }
  [[nodiscard]] Summary summary() const { return summarize(samples); }
};

Figure failed_figure(std::string why) {
  Figure figure;
  figure.failure = std::move(why);
  return figure;
}

/// One line of the result table: a measurement at one RTT, for every client.
struct Row {
  int order = 0;  ///< position of the measurement in the table
  std::string measurement;
  int rtt_ms = 0;
  bool memory = false;  ///< KiB instead of ms
  Figure healer;
  Figure openssh;
  Figure asyncssh;
  std::optional<double> target;  ///< the goal for healer's median, in the row's unit
  std::string target_text;
};

// ---------------------------------------------------------------------------------------------
// Processes: posix_spawn and waitpid directly, so a timing covers exactly start to exit.

/// Runs `argv` to completion: wall milliseconds, or nullopt when it exited non-zero.
std::optional<double> time_process(const std::vector<std::string>& argv,
                                   const std::filesystem::path& log) {
  const auto started = Clock::now();
  const pid_t pid = spawn_process(argv, log);
  const int code = wait_process(pid);
  const double elapsed = ms_since(started);
  if (code != 0) {
    return std::nullopt;
  }
  return elapsed;
}

/// Starts every command at once and waits for all: wall time until the last one exited.
struct BatchOutcome {
  double wall_ms = 0;
  int failures = 0;
};

BatchOutcome run_parallel(const std::vector<std::vector<std::string>>& commands,
                          const std::filesystem::path& log) {
  BatchOutcome outcome;
  std::vector<pid_t> pids;
  pids.reserve(commands.size());
  const auto started = Clock::now();
  for (const auto& argv : commands) {
    pids.push_back(spawn_process(argv, log));
  }
  for (const pid_t pid : pids) {
    if (wait_process(pid) != 0) {
      ++outcome.failures;
    }
  }
  outcome.wall_ms = ms_since(started);
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// healer

ssh::ConnectOptions connect_options(const Target& target) {
  ssh::ConnectOptions options;
  options.user = target.user;
  options.auth = ssh::AuthMethod::key_file;
  options.identity_file = target.key;
  options.known_hosts_file = target.known_hosts;
  options.host_key_policy = ssh::HostKeyPolicy::strict;
  return options;
}

/// `true` on `session`; an empty string on success, else why it failed. With `refusals` set, a
/// channel refused by the server is retried after 1 ms and counted, as a pool would: sshd frees a
/// closed channel's MaxSessions slot only in a later pass of its main loop, so channels opened
/// right after others closed can be refused although fewer than MaxSessions are open.
asio::awaitable<std::string> async_run_true(std::shared_ptr<ssh::Session> session,
                                            ssh::CommandTiming* timing, std::size_t* refusals) {
  const auto deadline = Deadline::after(kStepTimeout);
  for (;;) {
    auto result = co_await session->async_exec(std::string("true"), ssh::ExecOptions{}, deadline);
    if (!result && refusals != nullptr && result.error().code == ssh::Errc::channel_refused &&
        !deadline.expired()) {
      ++*refusals;
      asio::steady_timer pause(co_await asio::this_coro::executor, 1ms);
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    if (!result) {
      co_return result.error().message();
    }
    if (result->exit_status != 0) {
      co_return fmt::format("`true` ended with shell code {}", result->shell_exit_code());
    }
    if (timing != nullptr) {
      *timing = result->timing;
    }
    co_return std::string();
  }
}

asio::awaitable<Result<std::shared_ptr<ssh::Session>>> async_open(Target target) {
  ssh::Endpoint endpoint(target.host, target.port);
  auto options = connect_options(target);
  auto session = co_await ssh::Session::async_connect(std::move(endpoint), std::move(options),
                                                      Deadline::after(kStepTimeout));
  if (!session) {
    co_return std::move(session).error();
  }
  co_return std::make_shared<ssh::Session>(std::move(*session));
}

/// (a) connect + host key + auth, or (a') the same plus `true`; one untimed warm-up first.
asio::awaitable<Figure> async_measure_connect(Target target, int runs, bool with_true) {
  Figure figure;
  double cpu_ms = 0;
  for (int run = 0; run <= runs; ++run) {
    const double cpu_before = thread_cpu_ms();
    const auto started = Clock::now();
    auto session = co_await async_open(target);
    if (!session) {
      co_return failed_figure(session.error().message());
    }
    if (with_true) {
      auto failure = co_await async_run_true(*session, nullptr, nullptr);
      if (!failure.empty()) {
        co_return failed_figure(std::move(failure));
      }
    }
    const double elapsed = ms_since(started);
    if (run > 0) {
      figure.samples.push_back(elapsed);
      cpu_ms += thread_cpu_ms() - cpu_before;
    }
    co_await (*session)->async_close(Deadline::after(5s));
  }
  if (runs > 0) {
    figure.client_cpu_ms = cpu_ms / runs;
  }
  co_return figure;
}

/// (b) warm `true`, with healer's own split: channel open round trip, exec until closed.
struct WarmFigures {
  Figure total;
  Figure open;
  Figure run;
};

/// `on_spare`: a spare channel is opened before each run, untimed (what the pool keeps ready
/// between commands, PoolConfig::spare_channels), so the command needs only its exec round trip.
asio::awaitable<WarmFigures> async_measure_warm(Target target, int runs, bool on_spare = false) {
  WarmFigures figures;
  auto session = co_await async_open(target);
  if (!session) {
    figures.total = failed_figure(session.error().message());
    co_return figures;
  }
  double cpu_ms = 0;
  for (int run = 0; run <= runs; ++run) {
    if (on_spare) {
      (*session)->open_spare_channel();
      const auto ready_by = Deadline::after(kStepTimeout);
      while ((*session)->ready_spare_channels() == 0 && !ready_by.expired()) {
        asio::steady_timer pause(co_await asio::this_coro::executor, 1ms);
        co_await pause.async_wait(kNoThrow);
      }
    }
    ssh::CommandTiming timing;
    const double cpu_before = thread_cpu_ms();
    const auto started = Clock::now();
    auto failure = co_await async_run_true(*session, &timing, nullptr);
    const double elapsed = ms_since(started);
    if (!failure.empty()) {
      figures.total = failed_figure(std::move(failure));
      break;
    }
    if (run > 0) {
      cpu_ms += thread_cpu_ms() - cpu_before;
      figures.total.samples.push_back(elapsed);
      figures.open.samples.push_back(to_ms(timing.open));
      figures.run.samples.push_back(to_ms(timing.run));
    }
  }
  figures.total.client_cpu_ms = cpu_ms / runs;
  co_await (*session)->async_close(Deadline::after(5s));
  co_return figures;
}

// The commands of one concurrent batch; lives until the last of them finished.
struct Batch {
  explicit Batch(const asio::any_io_executor& executor)
      : all_done(executor, Clock::time_point::max()) {}

  std::size_t pending = 0;
  std::size_t refused = 0;
  std::string first_failure;
  asio::steady_timer all_done;
};

asio::awaitable<void> async_batch_member(std::shared_ptr<ssh::Session> session,
                                         std::shared_ptr<Batch> batch) {
  auto failure = co_await async_run_true(std::move(session), nullptr, &batch->refused);
  if (!failure.empty() && batch->first_failure.empty()) {
    batch->first_failure = std::move(failure);
  }
  if (--batch->pending == 0) {
    batch->all_done.cancel();
  }
}

/// `width` concurrent `true` on one session: wall ms until all finished, or why one failed.
asio::awaitable<Result<double>> async_true_batch(std::shared_ptr<ssh::Session> session, int width,
                                                 std::size_t* refused) {
  auto executor = co_await asio::this_coro::executor;
  auto batch = std::make_shared<Batch>(executor);
  batch->pending = static_cast<std::size_t>(width);
  const auto started = Clock::now();
  for (int i = 0; i < width; ++i) {
    asio::co_spawn(executor, async_batch_member(session, batch), asio::detached);
  }
  while (batch->pending > 0) {
    co_await batch->all_done.async_wait(kNoThrow);
  }
  const double elapsed = ms_since(started);
  *refused += batch->refused;
  if (!batch->first_failure.empty()) {
    Error failure;
    failure.code = std::make_error_code(std::errc::io_error);
    failure.detail = batch->first_failure;
    co_return failure;
  }
  co_return elapsed;
}

/// (c) `width` concurrent `true` on one session; one untimed warm-up batch first.
asio::awaitable<Figure> async_measure_concurrent(Target target, int runs, int width) {
  Figure figure;
  auto session = co_await async_open(target);
  if (!session) {
    co_return failed_figure(session.error().message());
  }
  double cpu_ms = 0;
  for (int run = 0; run <= runs; ++run) {
    const double cpu_before = thread_cpu_ms();
    std::size_t refused = 0;
    auto wall = co_await async_true_batch(*session, width, &refused);
    if (!wall) {
      figure = failed_figure(wall.error().message());
      break;
    }
    if (run > 0) {
      figure.samples.push_back(*wall);
      figure.refused_channels += refused;
      cpu_ms += thread_cpu_ms() - cpu_before;
    }
  }
  figure.client_cpu_ms = cpu_ms / (runs * width);
  co_await (*session)->async_close(Deadline::after(5s));
  co_return figure;
}

// Sessions being opened by a few workers, at most `workers` connects in flight.
struct OpenSessions {
  explicit OpenSessions(const asio::any_io_executor& executor)
      : all_done(executor, Clock::time_point::max()) {}

  std::vector<std::shared_ptr<ssh::Session>> sessions;  // in the order they connected
  std::size_t to_open = 0;
  std::size_t started = 0;
  std::size_t workers = 0;
  std::string first_failure;
  asio::steady_timer all_done;
};

asio::awaitable<void> async_open_worker(Target target, std::shared_ptr<OpenSessions> state) {
  while (state->started < state->to_open && state->first_failure.empty()) {
    ++state->started;
    auto session = co_await async_open(target);
    if (!session) {
      state->first_failure = session.error().message();
      break;
    }
    state->sessions.push_back(std::move(*session));
  }
  if (--state->workers == 0) {
    state->all_done.cancel();
  }
}

asio::awaitable<std::shared_ptr<OpenSessions>> async_open_many(Target target, int count,
                                                               int width) {
  auto executor = co_await asio::this_coro::executor;
  auto state = std::make_shared<OpenSessions>(executor);
  state->to_open = static_cast<std::size_t>(count);
  state->workers = static_cast<std::size_t>(std::max(1, std::min(width, count)));
  const std::size_t workers = state->workers;
  for (std::size_t i = 0; i < workers; ++i) {
    asio::co_spawn(executor, async_open_worker(target, state), asio::detached);
  }
  while (state->workers > 0) {
    co_await state->all_done.async_wait(kNoThrow);
  }
  co_return state;
}

// Returns the number closed (run_async needs a value).
asio::awaitable<std::size_t> async_close_all(std::shared_ptr<OpenSessions> state) {
  for (auto& session : state->sessions) {
    co_await session->async_close(Deadline::after(5s));
  }
  co_return state->sessions.size();
}

/// The `rss-child` mode: a fresh process, so the heap holds nothing from earlier measurements.
/// Opens one session and closes it (libssh, OpenSSL and Asio initialised), reads VmRSS, opens
/// `sessions` sessions and lets them go idle, reads VmRSS again. Prints one JSON object.
int rss_child_main(const Target& target, int sessions, int width) {
  asio::io_context io;
  nlohmann::json report;
  try {
    auto warm_up = test::run_async(io, async_measure_connect(target, 0, false));
    if (!warm_up.failure.empty()) {
      throw std::runtime_error(warm_up.failure);
    }
    io.restart();
    io.poll();
    const auto before = status_kib("/proc/self/status", "VmRSS");
    auto state =
        test::run_async(io, async_open_many(target, sessions, width), std::chrono::seconds(300));
    if (!state->first_failure.empty()) {
      throw std::runtime_error(state->first_failure);
    }
    io.restart();
    io.run_for(200ms);  // idle: nothing in flight, keepalive timers armed
    const auto after = status_kib("/proc/self/status", "VmRSS");
    report["rss_before_kib"] = before.value_or(0);
    report["rss_after_kib"] = after.value_or(0);
    report["sessions"] = state->sessions.size();
    [[maybe_unused]] const auto closed =
        test::run_async(io, async_close_all(state), std::chrono::seconds(300));
  } catch (const std::exception& error) {
    report["error"] = error.what();
  }
  std::cout << report.dump() << std::endl;
  return report.contains("error") ? 1 : 0;
}

/// Runs the rss-child mode once per run and returns KiB per session.
Figure measure_healer_rss(const Target& target, const Settings& settings) {
  Figure figure;
  const auto self = std::filesystem::read_symlink("/proc/self/exe").string();
  for (int run = 0; run < settings.rss_runs; ++run) {
    const std::vector<std::string> argv{self,
                                        "rss-child",
                                        "--port",
                                        std::to_string(target.port),
                                        "--user",
                                        target.user,
                                        "--key",
                                        target.key,
                                        "--known-hosts",
                                        target.known_hosts,
                                        "--sessions",
                                        std::to_string(settings.sessions),
                                        "--concurrency",
                                        std::to_string(settings.concurrency)};
    const auto output = test::run_command(argv, std::chrono::seconds(300));
    try {
      const auto report = nlohmann::json::parse(output.out);
      if (report.contains("error")) {
        return failed_figure(report["error"].get<std::string>());
      }
      const double opened = report["sessions"].get<double>();
      const double grown =
          report["rss_after_kib"].get<double>() - report["rss_before_kib"].get<double>();
      figure.samples.push_back(grown / opened);
    } catch (const nlohmann::json::exception&) {
      return failed_figure("rss-child: " + trimmed_tail(output.out + output.err));
    }
  }
  return figure;
}

// ---------------------------------------------------------------------------------------------
// OpenSSH: `ssh` processes through the fixture's argv (no user config, no agent, strict host key
// checking), ControlMaster sockets in a private directory.

class OpenSsh {
 public:
  OpenSsh(const test::SshdFixture& sshd, std::filesystem::path control_dir)
      : sshd_(sshd), control_dir_(std::move(control_dir)), log_(control_dir_ / "ssh.log") {}
  OpenSsh(const OpenSsh&) = delete;
  OpenSsh& operator=(const OpenSsh&) = delete;
  OpenSsh(OpenSsh&&) = delete;
  OpenSsh& operator=(OpenSsh&&) = delete;
  /// Stops every master still running (ssh -O exit, then SIGTERM by pid).
  ~OpenSsh() { stop_all_masters(); }

  /// Restricts key exchange to `algorithms` (empty: OpenSSH's default, sntrup761x25519 first).
  void set_kex(std::string algorithms) { kex_ = std::move(algorithms); }

  [[nodiscard]] std::string control_path(const std::string& name) const {
    return (control_dir_ / name).string();
  }

  /// `ssh host true` on a new connection, never through a master.
  [[nodiscard]] std::vector<std::string> new_connection_argv(std::string_view command) const {
    return argv_for(command, {"-o", "ControlMaster=no", "-o", "ControlPath=none"});
  }
  /// A master that goes to the background (-f) once authenticated and stays (ControlPersist).
  [[nodiscard]] std::vector<std::string> master_argv(const std::string& control) const {
    auto argv = argv_for("", {"-M", "-N", "-f", "-S", control, "-o", "ControlPersist=yes"});
    argv.pop_back();  // no remote command
    return argv;
  }
  /// A multiplexing client of the master at `control`.
  [[nodiscard]] std::vector<std::string> mux_argv(const std::string& control,
                                                  std::string_view command) const {
    return argv_for(command, {"-S", control, "-o", "ControlMaster=no"});
  }
  [[nodiscard]] std::vector<std::string> exit_argv(const std::string& control) const {
    auto argv = argv_for("", {"-S", control, "-O", "exit"});
    argv.pop_back();
    return argv;
  }

  /// Starts a master: ms until the foreground `ssh -f` exited (connected, authenticated,
  /// control socket listening), or nullopt when it failed.
  std::optional<double> start_master(const std::string& control) {
    return time_process(master_argv(control), log_);
  }

  /// Starts masters with at most `width` starting at once (a new one as soon as one is up);
  /// returns how many failed.
  int start_masters(const std::vector<std::string>& controls, int width) {
    int failures = 0;
    std::vector<pid_t> starting;
    std::size_t next = 0;
    while (next < controls.size() || !starting.empty()) {
      while (next < controls.size() && starting.size() < static_cast<std::size_t>(width)) {
        starting.push_back(spawn_process(master_argv(controls[next++]), log_));
      }
      // Only our own pids: waitpid(-1) could reap the fixture's sshd.
      bool reaped = false;
      for (auto it = starting.begin(); it != starting.end();) {
        int status = 0;
        if (::waitpid(*it, &status, WNOHANG) == *it) {
          if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ++failures;
          }
          it = starting.erase(it);
          reaped = true;
        } else {
          ++it;
        }
      }
      if (!reaped) {
        std::this_thread::sleep_for(1ms);
      }
    }
    return failures;
  }

  /// pids of the masters running now: processes whose command line names our control dir.
  [[nodiscard]] std::vector<pid_t> master_pids() const {
    return scan_proc([this] {
      std::vector<pid_t> pids;
      const std::string marker = control_dir_.string() + "/";
      for (const auto& entry : test::list_processes()) {
        if (entry.pid != ::getpid() && entry.state != 'Z' &&
            test::process_cmdline(entry.pid).find(marker) != std::string::npos) {
          pids.push_back(entry.pid);
        }
      }
      return pids;
    });
  }

  /// `ssh -O exit` to every master (in parallel batches), then SIGTERM by pid to any that is
  /// left; returns once they are gone (10 s at most).
  void stop_all_masters() {
    auto pids = master_pids();
    if (pids.empty()) {
      return;
    }
    std::vector<std::vector<std::string>> commands;
    for (const auto& entry : std::filesystem::directory_iterator(control_dir_)) {
      if (entry.is_socket()) {
        commands.push_back(exit_argv(entry.path().string()));
      }
      if (commands.size() == 50) {
        run_parallel(commands, log_);
        commands.clear();
      }
    }
    run_parallel(commands, log_);
    await_exit_or_terminate(pids);
  }

  [[nodiscard]] const std::filesystem::path& log() const { return log_; }

  [[nodiscard]] std::string log_tail() const { return trimmed_tail(read_text(log_)); }

 private:
  [[nodiscard]] std::vector<std::string> argv_for(std::string_view command,
                                                  std::vector<std::string> options) const {
    if (!kex_.empty()) {
      options.push_back("-o");
      options.push_back("KexAlgorithms=" + kex_);
    }
    return sshd_.ssh_argv(command, options);
  }

  const test::SshdFixture& sshd_;
  std::filesystem::path control_dir_;
  std::filesystem::path log_;
  std::string kex_;
};

/// (a) master setup and (a') `ssh host true` on a new connection.
Figure measure_openssh_connect(OpenSsh& openssh, int runs, bool with_true) {
  Figure figure;
  for (int run = 0; run <= runs; ++run) {
    std::optional<double> elapsed;
    if (with_true) {
      elapsed = time_process(openssh.new_connection_argv("true"), openssh.log());
    } else {
      elapsed = openssh.start_master(openssh.control_path(fmt::format("a{}", run)));
      openssh.stop_all_masters();
    }
    if (!elapsed) {
      return failed_figure("ssh failed: " + openssh.log_tail());
    }
    if (run > 0) {
      figure.samples.push_back(*elapsed);
    }
  }
  return figure;
}

/// (b) warm `true` through a running master, and (c) `width` of them at once.
Figure measure_openssh_mux(OpenSsh& openssh, int runs, int width) {
  const auto control = openssh.control_path("mux");
  if (!openssh.start_master(control)) {
    return failed_figure("master failed: " + openssh.log_tail());
  }
  Figure figure;
  const std::vector<std::vector<std::string>> commands(static_cast<std::size_t>(width),
                                                       openssh.mux_argv(control, "true"));
  for (int run = 0; run <= runs; ++run) {
    std::optional<double> elapsed;
    if (width == 1) {
      elapsed = time_process(commands.front(), openssh.log());
    } else {
      const auto batch = run_parallel(commands, openssh.log());
      if (batch.failures == 0) {
        elapsed = batch.wall_ms;
      }
    }
    if (!elapsed) {
      figure = failed_figure("mux client failed: " + openssh.log_tail());
      break;
    }
    if (run > 0) {
      figure.samples.push_back(*elapsed);
    }
  }
  openssh.stop_all_masters();
  return figure;
}

/// (d) `sessions` masters (a process each): sum of their VmRSS (and Pss) / sessions.
struct OpenSshMemory {
  Figure rss;
  Figure pss;
};

OpenSshMemory measure_openssh_rss(OpenSsh& openssh, const Settings& settings) {
  OpenSshMemory memory;
  for (int run = 0; run < settings.rss_runs; ++run) {
    std::vector<std::string> controls;
    for (int i = 0; i < settings.sessions; ++i) {
      controls.push_back(openssh.control_path(fmt::format("r{}", i)));
    }
    const auto started = Clock::now();
    const int failures = openssh.start_masters(controls, settings.concurrency);
    const auto pids = openssh.master_pids();
    progress(fmt::format("    run {}: {} masters up in {:.1f} s", run + 1, pids.size(),
                         ms_since(started) / 1000.0));
    if (failures > 0 || pids.size() != controls.size()) {
      openssh.stop_all_masters();
      memory.rss = failed_figure(fmt::format("{} of {} masters failed, {} running: {}", failures,
                                             controls.size(), pids.size(), openssh.log_tail()));
      return memory;
    }
    double rss_sum = 0;
    double pss_sum = 0;
    for (const pid_t pid : pids) {
      const auto proc = std::filesystem::path("/proc") / std::to_string(pid);
      rss_sum += static_cast<double>(status_kib(proc / "status", "VmRSS").value_or(0));
      pss_sum += static_cast<double>(status_kib(proc / "smaps_rollup", "Pss").value_or(0));
    }
    const auto count = static_cast<double>(pids.size());
    memory.rss.samples.push_back(rss_sum / count);
    memory.pss.samples.push_back(pss_sum / count);
    openssh.stop_all_masters();
  }
  return memory;
}

// ---------------------------------------------------------------------------------------------
// asyncssh: bench/peers/asyncssh_peer.py under Debian's python3, one JSON object per invocation.

nlohmann::json run_asyncssh(const Settings& settings, const Target& target, std::string_view mode,
                            int runs) {
  const std::vector<std::string> argv{settings.python, settings.peer_script,
                                      "--host",        target.host,
                                      "--port",        std::to_string(target.port),
                                      "--user",        target.user,
                                      "--key",         target.key,
                                      "--known-hosts", target.known_hosts,
                                      "--mode",        std::string(mode),
                                      "--runs",        std::to_string(runs),
                                      "--concurrency", std::to_string(settings.concurrency),
                                      "--sessions",    std::to_string(settings.sessions)};
  const auto output = test::run_command(argv, std::chrono::seconds(300));
  try {
    auto report = nlohmann::json::parse(output.out);
    if (!report.contains("error") && output.exit_code() != 0) {
      report["error"] = fmt::format("exit code {}", output.exit_code());
    }
    return report;
  } catch (const nlohmann::json::exception&) {
    return {{"error", "asyncssh peer: " + trimmed_tail(output.out + output.err)}};
  }
}

Figure asyncssh_samples(const Settings& settings, const Target& target, std::string_view mode,
                        std::string* version) {
  const auto report = run_asyncssh(settings, target, mode, settings.runs);
  if (report.contains("error")) {
    return failed_figure(report["error"].get<std::string>());
  }
  if (version != nullptr && report.contains("asyncssh_version")) {
    *version = report["asyncssh_version"].get<std::string>();
  }
  Figure figure;
  figure.samples = report["samples_ms"].get<std::vector<double>>();
  return figure;
}

Figure asyncssh_rss(const Settings& settings, const Target& target) {
  Figure figure;
  for (int run = 0; run < settings.rss_runs; ++run) {
    const auto report = run_asyncssh(settings, target, "rss", 0);
    if (report.contains("error")) {
      return failed_figure(report["error"].get<std::string>());
    }
    const double grown =
        report["rss_after_kib"].get<double>() - report["rss_before_kib"].get<double>();
    figure.samples.push_back(grown / report["sessions"].get<double>());
  }
  return figure;
}

// ---------------------------------------------------------------------------------------------
// One RTT setting

/// Figures that explain the table rather than belong in it.
struct Notes {
  std::vector<std::string> lines;
};

/// Waits until sshd's process count stops falling (only its listener left, or no change for
/// 200 ms; 5 s at most), so the previous client's teardown does not eat CPU during the next
/// measurement. Not "listener only": healer leaves its closed connections open (see the docs).
void settle(const test::SshdFixture& sshd) {
  const auto give_up = Clock::now() + 5s;
  const auto count_processes = [&sshd] {
    return scan_proc([&sshd] { return sshd.server_processes().size(); });
  };
  std::size_t last_count = count_processes();
  auto last_change = Clock::now();
  while (last_count > 1 && Clock::now() < give_up && Clock::now() - last_change < 200ms) {
    std::this_thread::sleep_for(10ms);
    const std::size_t count = count_processes();
    if (count != last_count) {
      last_count = count;
      last_change = Clock::now();
    }
  }
}

std::string format_bare_ms(double ms) {
  return ms < 10 ? fmt::format("{:.2f}", ms) : fmt::format("{:.1f}", ms);
}

std::string kex_note(int rtt_ms, std::string_view what, const Figure& figure) {
  if (!figure.valid()) {
    return fmt::format("RTT {} ms: OpenSSH {} with curve25519-sha256: {}", rtt_ms, what,
                       figure.failure);
  }
  std::string text = fmt::format(
      "RTT {} ms: OpenSSH {} with KexAlgorithms=curve25519-sha256 (healer's and asyncssh's kex) "
      "= {} ms (p90 {})",
      rtt_ms, what, format_bare_ms(figure.summary().median), format_bare_ms(figure.summary().p90));
  if (rtt_ms > 0) {
    text += fmt::format(" = {:.2f} RTT", figure.summary().median / static_cast<double>(rtt_ms));
  }
  return text;
}

void note_client_cpu(Notes& notes, int rtt_ms, const Row& row, std::string_view per) {
  if (row.healer.valid() && row.healer.client_cpu_ms) {
    notes.lines.push_back(fmt::format("RTT {} ms: {}: healer client CPU {} ms per {}", rtt_ms,
                                      row.measurement, format_bare_ms(*row.healer.client_cpu_ms),
                                      per));
  }
  if (row.healer.refused_channels > 0) {
    notes.lines.push_back(fmt::format(
        "RTT {} ms: {}: healer retried {} channel opens refused by sshd (MaxSessions {}) over {} "
        "timed batches",
        rtt_ms, row.measurement, row.healer.refused_channels, kMaxSessions,
        row.healer.samples.size()));
  }
}

void run_rtt(const Settings& settings, int rtt_ms, std::vector<Row>& rows, Notes& notes,
             std::string& asyncssh_version) {
  test::SshdFixture::Options sshd_options;
  sshd_options.max_sessions = kMaxSessions;
  // MaxStartups only limits connections that have not authenticated yet; (d) opens up to
  // --concurrency at once. Authenticated connections have no sshd-side limit.
  sshd_options.max_startups = "300:30:1000";
  sshd_options.log_level = "INFO";  // fewer log writes per connection than VERBOSE
  add_link(sshd_options, settings.link, std::chrono::milliseconds(rtt_ms));
  test::SshdFixture sshd(sshd_options);
  sshd.start();
  progress(fmt::format("RTT {} ms: sshd on port {} (client port {})", rtt_ms, sshd.sshd_port(),
                       sshd.port()));

  Target target;
  target.host = sshd.host();
  target.port = sshd.port();
  target.user = sshd.user();
  target.key = sshd.client_key_path().string();
  target.known_hosts = sshd.known_hosts_path().string();

  test::TempDir control_dir("hb-");  // short: a unix socket path has 108 bytes at most
  OpenSsh openssh(sshd, control_dir.path());
  asio::io_context io;
  const double rtt = static_cast<double>(rtt_ms);
  const auto row_limit = std::chrono::seconds(600);

  const auto make_row = [&](int order, std::string measurement, bool memory) {
    Row row;
    row.order = order;
    row.measurement = std::move(measurement);
    row.rtt_ms = rtt_ms;
    row.memory = memory;
    const std::string skipped = "not measured";
    row.healer = failed_figure(skipped);
    row.openssh = failed_figure(skipped);
    row.asyncssh = failed_figure(skipped);
    return row;
  };

  if (settings.wants("connect")) {
    auto row = make_row(1, "(a) connect + host key + auth", false);
    if (rtt_ms > 0) {
      row.target = 4.5 * rtt + 10.0;
      row.target_text = fmt::format("<= 4.5 RTT + 10 ms ({:.0f} ms)", *row.target);
    }
    if (settings.wants_client("healer")) {
      settle(sshd);
      progress("(a) healer async_connect");
      row.healer =
          test::run_async(io, async_measure_connect(target, settings.runs, false), row_limit);
    }
    if (settings.wants_client("openssh")) {
      settle(sshd);
      progress("(a) OpenSSH ControlMaster setup");
      row.openssh = measure_openssh_connect(openssh, settings.runs, false);
      settle(sshd);
      progress("(a) OpenSSH ControlMaster setup, KexAlgorithms=curve25519-sha256");
      openssh.set_kex("curve25519-sha256");
      const auto same_kex = measure_openssh_connect(openssh, settings.runs, false);
      openssh.set_kex("");
      notes.lines.push_back(kex_note(rtt_ms, "(a) ControlMaster setup", same_kex));
    }
    if (settings.wants_client("asyncssh")) {
      settle(sshd);
      progress("(a) asyncssh connect()");
      row.asyncssh = asyncssh_samples(settings, target, "connect", &asyncssh_version);
    }
    note_client_cpu(notes, rtt_ms, row, "connect (timed part)");
    rows.push_back(std::move(row));
  }

  if (settings.wants("new_true")) {
    auto row = make_row(2, "(a') new connection + `true`", false);
    if (settings.wants_client("healer")) {
      settle(sshd);
      progress("(a') healer connect + exec");
      row.healer =
          test::run_async(io, async_measure_connect(target, settings.runs, true), row_limit);
    }
    if (settings.wants_client("openssh")) {
      settle(sshd);
      progress("(a') OpenSSH `ssh host true`");
      row.openssh = measure_openssh_connect(openssh, settings.runs, true);
      settle(sshd);
      progress("(a') OpenSSH `ssh host true`, KexAlgorithms=curve25519-sha256");
      openssh.set_kex("curve25519-sha256");
      const auto same_kex = measure_openssh_connect(openssh, settings.runs, true);
      openssh.set_kex("");
      notes.lines.push_back(kex_note(rtt_ms, "(a') `ssh host true`", same_kex));
    }
    if (settings.wants_client("asyncssh")) {
      settle(sshd);
      progress("(a') asyncssh connect() + run");
      row.asyncssh = asyncssh_samples(settings, target, "connect_run", &asyncssh_version);
    }
    note_client_cpu(notes, rtt_ms, row, "connect + `true`");
    rows.push_back(std::move(row));
  }

  if (settings.wants("warm")) {
    auto row = make_row(3, "(b) warm `true`", false);
    row.target = rtt_ms > 0 ? 2.2 * rtt : 2.5;
    row.target_text = rtt_ms > 0 ? fmt::format("<= 2.2 RTT ({:.0f} ms)", *row.target) : "<= 2.5 ms";
    if (settings.wants_client("healer")) {
      settle(sshd);
      progress("(b) healer warm exec");
      auto warm = test::run_async(io, async_measure_warm(target, settings.runs), row_limit);
      if (warm.open.valid()) {
        notes.lines.push_back(fmt::format(
            "RTT {} ms: healer warm `true` = channel open {} ms (p90 {}) + exec until channel "
            "closed {} ms (p90 {}), medians",
            rtt_ms, format_bare_ms(warm.open.summary().median),
            format_bare_ms(warm.open.summary().p90), format_bare_ms(warm.run.summary().median),
            format_bare_ms(warm.run.summary().p90)));
      }
      row.healer = std::move(warm.total);
    }
    if (settings.wants_client("healer") && settings.wants("warm_spare")) {
      // The same with a spare channel ready (what the pool keeps between commands): healer only;
      // the peers have no such thing and are in the (b) row.
      auto spare_row = make_row(3, "(b') warm `true` on a spare channel (healer only)", false);
      spare_row.target = rtt_ms > 0 ? 1.2 * rtt + 5 : 2.5;
      spare_row.target_text = rtt_ms > 0
                                  ? fmt::format("<= 1.2 RTT + 5 ms ({:.0f} ms)", *spare_row.target)
                                  : "<= 2.5 ms";
      settle(sshd);
      progress("(b') healer warm exec on a spare channel");
      auto warm = test::run_async(io, async_measure_warm(target, settings.runs, true), row_limit);
      if (warm.open.valid()) {
        notes.lines.push_back(fmt::format(
            "RTT {} ms: healer warm `true` on a spare = taking the spare {} ms (p90 {}) + exec "
            "until channel closed {} ms (p90 {}), medians",
            rtt_ms, format_bare_ms(warm.open.summary().median),
            format_bare_ms(warm.open.summary().p90), format_bare_ms(warm.run.summary().median),
            format_bare_ms(warm.run.summary().p90)));
      }
      spare_row.healer = std::move(warm.total);
      rows.push_back(std::move(spare_row));
    }
    if (settings.wants_client("openssh")) {
      settle(sshd);
      progress("(b) OpenSSH mux client");
      row.openssh = measure_openssh_mux(openssh, settings.runs, 1);
    }
    if (settings.wants_client("asyncssh")) {
      settle(sshd);
      progress("(b) asyncssh conn.run");
      row.asyncssh = asyncssh_samples(settings, target, "warm", &asyncssh_version);
    }
    note_client_cpu(notes, rtt_ms, row, "command");
    rows.push_back(std::move(row));
  }

  if (settings.wants("concurrent")) {
    auto row = make_row(
        4, fmt::format("(c) {} concurrent `true`, one connection", settings.concurrency), false);
    if (rtt_ms > 0) {
      row.target = 4.0 * rtt;
      row.target_text = fmt::format("<= 4 RTT ({:.0f} ms)", *row.target);
    }
    if (settings.wants_client("healer")) {
      settle(sshd);
      progress("(c) healer concurrent exec");
      row.healer = test::run_async(
          io, async_measure_concurrent(target, settings.runs, settings.concurrency), row_limit);
    }
    if (settings.wants_client("openssh")) {
      settle(sshd);
      progress("(c) OpenSSH parallel mux clients");
      row.openssh = measure_openssh_mux(openssh, settings.runs, settings.concurrency);
    }
    if (settings.wants_client("asyncssh")) {
      settle(sshd);
      progress("(c) asyncssh gather");
      row.asyncssh = asyncssh_samples(settings, target, "concurrent", &asyncssh_version);
    }
    note_client_cpu(notes, rtt_ms, row, "command");
    rows.push_back(std::move(row));
  }

  if (settings.wants("rss")) {
    auto row = make_row(
        5, fmt::format("(d) client RSS per idle session, {} open", settings.sessions), true);
    row.target = 40.0;
    row.target_text = "<= 40 KiB";
    if (settings.wants_client("healer")) {
      settle(sshd);
      progress(fmt::format("(d) healer: {} sessions in one process", settings.sessions));
      row.healer = measure_healer_rss(target, settings);
    }
    if (settings.wants_client("openssh")) {
      settle(sshd);
      progress(fmt::format("(d) OpenSSH: {} ControlMaster processes", settings.sessions));
      auto memory = measure_openssh_rss(openssh, settings);
      if (memory.pss.valid()) {
        notes.lines.push_back(fmt::format(
            "RTT {} ms: OpenSSH master PSS (shared library pages split among the {} processes) "
            "= {:.0f} KiB per session (median), against VmRSS {:.0f} KiB",
            rtt_ms, settings.sessions, memory.pss.summary().median, memory.rss.summary().median));
      }
      row.openssh = std::move(memory.rss);
    }
    if (settings.wants_client("asyncssh")) {
      settle(sshd);
      progress(fmt::format("(d) asyncssh: {} connections in one process", settings.sessions));
      row.asyncssh = asyncssh_rss(settings, target);
    }
    rows.push_back(std::move(row));
  }

  if (rtt_ms == 0) {
    // What sshd spends per command before a client sees anything: fork and exec of the login
    // shell running `-c true`, measured locally (sshd adds its own fork, setuid and session setup).
    const passwd* entry = ::getpwuid(::geteuid());
    const std::string shell =
        entry != nullptr && entry->pw_shell != nullptr ? entry->pw_shell : "/bin/sh";
    Figure spawn;
    for (int run = 0; run <= settings.runs; ++run) {
      const auto elapsed = time_process({shell, "-c", "true"}, "/dev/null");
      if (elapsed && run > 0) {
        spawn.samples.push_back(*elapsed);
      }
    }
    if (spawn.valid()) {
      notes.lines.push_back(
          fmt::format("server-side floor per command: local spawn of `{} -c true` = {} ms "
                      "(median of {})",
                      shell, format_bare_ms(spawn.summary().median), spawn.samples.size()));
    }
  }
  openssh.stop_all_masters();
  progress(fmt::format("RTT {} ms done", rtt_ms));
}

// ---------------------------------------------------------------------------------------------
// The table

std::string cell(const Figure& figure, const Row& row) {
  if (!figure.valid()) {
    return figure.failure == "not measured" ? "—" : "FAILED: " + figure.failure;
  }
  const auto summary = figure.summary();
  if (row.memory) {
    return fmt::format("{:.1f} KiB (p90 {:.1f})", summary.median, summary.p90);
  }
  std::string text =
      fmt::format("{} ms (p90 {})", format_bare_ms(summary.median), format_bare_ms(summary.p90));
  if (row.rtt_ms > 0) {
    text += fmt::format(" = {:.2f} RTT", summary.median / static_cast<double>(row.rtt_ms));
  }
  return text;
}

std::string ratio(const Figure& healer, const Figure& peer) {
  if (!healer.valid() || !peer.valid() || peer.summary().median <= 0) {
    return "—";
  }
  return fmt::format("{:.2f}", healer.summary().median / peer.summary().median);
}

std::string verdict(const Row& row) {
  if (!row.target || !row.healer.valid()) {
    return "—";
  }
  const double median = row.healer.summary().median;
  if (median <= *row.target) {
    return fmt::format("yes ({:.0f}% of target)", 100.0 * median / *row.target);
  }
  return fmt::format("**no** (+{:.0f}%)", 100.0 * (median - *row.target) / *row.target);
}

std::string render_table(const std::vector<Row>& rows) {
  std::string table =
      "| measurement | RTT | healer | OpenSSH | asyncssh | target (healer) | met? | "
      "healer/OpenSSH | healer/asyncssh |\n"
      "|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& row : rows) {
    table +=
        fmt::format("| {} | {} ms | {} | {} | {} | {} | {} | {} | {} |\n", row.measurement,
                    row.rtt_ms, cell(row.healer, row), cell(row.openssh, row),
                    cell(row.asyncssh, row), row.target_text.empty() ? "—" : row.target_text,
                    verdict(row), ratio(row.healer, row.openssh), ratio(row.healer, row.asyncssh));
  }
  return table;
}

int bench_main(int argc, char** argv) {
  Settings settings;
  Target child_target;
  child_target.host = "127.0.0.1";
  std::string rtts = "0,50";
  std::string clients = "healer,openssh,asyncssh";
  std::string measurements = "connect,new_true,warm,warm_spare,concurrent,rss";
  std::string link = default_link_model();

  CLI::App app{"healer-ssh-bench: healer vs OpenSSH vs asyncssh against one local sshd"};
  app.add_option("--runs", settings.runs, "timed runs per figure (after one warm-up)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--rss-runs", settings.rss_runs, "runs of (d), each with fresh client processes")
      ->check(CLI::Range(1, 1000));
  app.add_option("--rtts", rtts, "added round-trip times in ms, comma-separated");
  app.add_option("--sessions", settings.sessions, "idle sessions opened for (d)")
      ->check(CLI::Range(1, 2000));
  app.add_option("--concurrency", settings.concurrency,
                 "commands at once for (c); connects in flight for (d)")
      ->check(CLI::Range(1, 60));
  app.add_option("--clients", clients, "subset of healer,openssh,asyncssh");
  app.add_option(
      "--measurements", measurements,
      "subset of connect,new_true,warm,warm_spare,concurrent,rss (warm_spare: with warm)");
  app.add_option("--python", settings.python, "interpreter with asyncssh");
  app.add_option("--peer-script", settings.peer_script, "asyncssh_peer.py");
  app.add_option("--markdown-out", settings.markdown_out, "also write the table to this file");
  app.add_option("--link", link,
                 "how RTT is added: proxy (DelayProxy) or packet (packet-level link, root); "
                 "default $HEALER_BENCH_LINK, else proxy");

  // Internal: healer's side of (d), run in a fresh process per run.
  auto* child = app.add_subcommand("rss-child", "internal: healer RSS probe for (d)");
  child->group("");
  child->add_option("--host", child_target.host);
  child->add_option("--port", child_target.port)->required();
  child->add_option("--user", child_target.user)->required();
  child->add_option("--key", child_target.key)->required();
  child->add_option("--known-hosts", child_target.known_hosts)->required();
  child->add_option("--sessions", settings.sessions);
  child->add_option("--concurrency", settings.concurrency);
  CLI11_PARSE(app, argc, argv);

  raise_fd_limit();
  if (child->parsed()) {
    return rss_child_main(child_target, settings.sessions, settings.concurrency);
  }
  settings.clients = split_list(clients);
  settings.measurements = split_list(measurements);
  settings.link = parse_link_model(link);
  settings.rtts_ms.clear();
  for (const auto& item : split_list(rtts)) {
    settings.rtts_ms.push_back(std::stoi(item));
  }

  const std::string load_at_start = trimmed_tail(read_text("/proc/loadavg"));
  std::vector<Row> rows;
  Notes notes;
  std::string asyncssh_version = "?";
  for (const int rtt : settings.rtts_ms) {
    run_rtt(settings, rtt, rows, notes, asyncssh_version);
  }
  // Group the rows by measurement, RTTs next to each other.
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.order < b.order; });

  const auto ssh_version = test::run_command({"ssh", "-V"});
  std::string output = render_table(rows);
  output += fmt::format(
      "\nEvery figure: median (p90) of {} timed runs after one warm-up; (d): {} runs, each a "
      "fresh client process/set of processes. Link model: {}. {}\n",
      settings.runs, settings.rss_runs, link_model_name(settings.link),
      link_model_description(settings.link));
  output +=
      fmt::format("Clients: healer (libssh {}), {}, asyncssh {} ({}).\n", HEALER_LIBSSH_VERSION,
                  trimmed_tail(ssh_version.err), asyncssh_version, settings.python);
  output += fmt::format("Machine: {} CPUs; /proc/loadavg at start: {}; at end: {}.\n",
                        std::thread::hardware_concurrency(), load_at_start,
                        trimmed_tail(read_text("/proc/loadavg")));
  for (const auto& line : notes.lines) {
    output += "- " + line + "\n";
  }
  std::cout << output << std::flush;
  if (!settings.markdown_out.empty()) {
    std::ofstream(settings.markdown_out) << output;
  }
  return 0;
}

}  // namespace
}  // namespace healer::bench

int main(int argc, char** argv) {
  try {
    return healer::bench::bench_main(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "healer-ssh-bench: " << error.what() << "\n";
    return 2;
  }
}
