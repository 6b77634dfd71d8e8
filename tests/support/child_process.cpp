#include "child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "poll_until.hpp"

extern char** environ;

namespace healer::test {
namespace {

// Closes a descriptor when it goes out of scope.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { reset(); }
  [[nodiscard]] int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::generic_category(), what);
}

ExitStatus decode_wait_status(int status) {
  ExitStatus decoded;
  if (WIFEXITED(status)) {
    decoded.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    decoded.term_signal = WTERMSIG(status);
  }
  return decoded;
}

// Starts argv with the given descriptors as 0, 1 and 2. posix_spawn is safe in a process that
// already runs threads (Asio, the proxies), unlike fork followed by arbitrary code. Signal
// dispositions and the mask are reset: a test process that ignores SIGPIPE must not pass that on.
pid_t spawn_with_fds(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
  if (argv.empty()) {
    throw std::invalid_argument("spawn: empty argv");
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& arg : argv) {
    args.push_back(const_cast<char*>(arg.c_str()));  // NOLINT: posix_spawn's C signature
  }
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_fd, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);

  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  sigset_t all_signals;
  sigfillset(&all_signals);
  posix_spawnattr_setsigmask(&attributes, &empty_mask);
  posix_spawnattr_setsigdefault(&attributes, &all_signals);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  const int error = ::posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    throw_errno(error, "posix_spawn " + argv[0]);
  }
  return pid;
}

FileDescriptor open_or_throw(const std::filesystem::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw_errno(errno, "open " + path.string());
  }
  return FileDescriptor(fd);
}

// Waits for `pid` until `deadline`, then SIGKILLs it; returns how it ended and whether it was
// killed.
std::pair<ExitStatus, bool> reap_by(pid_t pid, std::chrono::steady_clock::time_point deadline) {
  int status = 0;
  for (;;) {
    const pid_t reaped = ::waitpid(pid, &status, WNOHANG);
    if (reaped == pid) {
      return {decode_wait_status(status), false};
    }
    if (reaped < 0 && errno != EINTR) {
      return {ExitStatus{}, false};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return {decode_wait_status(status), true};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

CommandOutput run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + timeout;

  std::array<int, 2> out_pipe{};
  std::array<int, 2> err_pipe{};
  if (::pipe2(out_pipe.data(), O_CLOEXEC) != 0) {
    throw_errno(errno, "pipe2");
  }
  FileDescriptor out_read(out_pipe[0]);
  FileDescriptor out_write(out_pipe[1]);
  if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) {
    throw_errno(errno, "pipe2");
  }
  FileDescriptor err_read(err_pipe[0]);
  FileDescriptor err_write(err_pipe[1]);
  FileDescriptor dev_null = open_or_throw("/dev/null", O_RDONLY);

  const pid_t pid = spawn_with_fds(argv, dev_null.get(), out_write.get(), err_write.get());
  // Only the child may hold the write ends now, so EOF means it (and its heirs) closed them.
  out_write.reset();
  err_write.reset();

  CommandOutput result;
  std::array<pollfd, 2> watched{pollfd{out_read.get(), POLLIN, 0},
                                pollfd{err_read.get(), POLLIN, 0}};
  std::array<std::string*, 2> sinks{&result.out, &result.err};
  std::array<char, 4096> buffer{};
  bool timed_out = false;
  while (watched[0].fd >= 0 || watched[1].fd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    const int ready = ::poll(watched.data(), watched.size(), static_cast<int>(left.count()) + 1);
    if (ready < 0 && errno != EINTR) {
      break;
    }
    for (std::size_t i = 0; i < watched.size(); ++i) {
      if (watched[i].fd < 0 || watched[i].revents == 0) {
        continue;
      }
      const ssize_t n = ::read(watched[i].fd, buffer.data(), buffer.size());
      if (n > 0) {
        sinks[i]->append(buffer.data(), static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        watched[i].fd = -1;  // EOF: poll ignores negative descriptors
      }
    }
  }
  auto [status, killed] = reap_by(pid, timed_out ? std::chrono::steady_clock::now() : deadline);
  result.status = status;
  result.timed_out = timed_out || killed;
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  return result;
}

ChildProcess ChildProcess::spawn(const std::vector<std::string>& argv,
                                 const std::filesystem::path& output) {
  FileDescriptor dev_null = open_or_throw("/dev/null", O_RDONLY);
  FileDescriptor log = open_or_throw(output, O_WRONLY | O_CREAT | O_APPEND);
  return ChildProcess(spawn_with_fds(argv, dev_null.get(), log.get(), log.get()));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_(std::exchange(other.exit_, std::nullopt)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    exit_ = std::exchange(other.exit_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() { kill_and_reap(); }

bool ChildProcess::try_reap() {
  if (pid_ < 0) {
    return true;
  }
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_) {
    exit_ = decode_wait_status(status);
    pid_ = -1;
    return true;
  }
  if (reaped < 0 && errno == ECHILD) {
    pid_ = -1;  // someone else reaped it; nothing left to own
    return true;
  }
  return false;
}

bool ChildProcess::running() { return !try_reap(); }

std::optional<ExitStatus> ChildProcess::wait_for_exit(std::chrono::milliseconds timeout) {
  if (!poll_until([this] { return try_reap(); }, timeout, std::chrono::milliseconds(1))) {
    return std::nullopt;
  }
  return exit_.value_or(ExitStatus{});
}

void ChildProcess::signal(int signal_number) {
  if (!try_reap()) {
    ::kill(pid_, signal_number);
  }
}

void ChildProcess::kill_and_reap() noexcept {
  if (pid_ < 0 || try_reap()) {
    return;
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_ = decode_wait_status(status);
  pid_ = -1;
}

}  // namespace healer::test
