#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace healer::test {

/// How a child process ended.
struct ExitStatus {
  int exit_code = -1;   ///< exit status, -1 when a signal ended the process
  int term_signal = 0;  ///< the signal that ended it, 0 when it exited
};

/// What a finished command produced.
struct CommandOutput {
  ExitStatus status;
  bool timed_out = false;  ///< run_command killed it because the timeout passed
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};

  [[nodiscard]] int exit_code() const noexcept { return status.exit_code; }
};

/// Runs `argv` (argv[0] looked up in PATH) with stdin from /dev/null and default signal
/// dispositions, collecting stdout and stderr; SIGKILLs it once `timeout` has passed. Blocks the
/// calling thread. Throws std::system_error only when the process cannot be started.
CommandOutput run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// A process running in the background (stdin /dev/null, stdout and stderr appended to a file).
/// Owns the pid: the destructor SIGKILLs and reaps it if it is still running. Move-only.
class ChildProcess {
 public:
  /// Starts `argv`; throws std::system_error when it cannot.
  static ChildProcess spawn(const std::vector<std::string>& argv,
                            const std::filesystem::path& output = "/dev/null");

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// True while the process has not exited (reaps it if it has).
  [[nodiscard]] bool running();
  /// Waits up to `timeout` for the process to exit; nullopt if it is still running then.
  std::optional<ExitStatus> wait_for_exit(std::chrono::milliseconds timeout);
  /// Sends `signal_number` if the process is still running.
  void signal(int signal_number = SIGKILL);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  bool try_reap();
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;                  // -1 once reaped or moved from
  std::optional<ExitStatus> exit_;  // set once reaped
};

}  // namespace healer::test
