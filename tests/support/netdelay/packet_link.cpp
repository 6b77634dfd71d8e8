#include "packet_link.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "poll_until.hpp"

#ifndef HEALER_NETDELAY_PATH
#define HEALER_NETDELAY_PATH ""
#endif

namespace healer::test {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kReadyTimeout{10000};
constexpr milliseconds kStopGrace{5000};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// "ready pid=1 netns=/proc/1/ns/net ..." -> {"pid": "1", "netns": ...}.
std::map<std::string, std::string> parse_ready(const std::string& line) {
  std::map<std::string, std::string> fields;
  std::istringstream words(line);
  std::string word;
  words >> word;
  if (word != "ready") {
    return fields;
  }
  while (words >> word) {
    const auto equals = word.find('=');
    if (equals != std::string::npos) {
      fields[word.substr(0, equals)] = word.substr(equals + 1);
    }
  }
  return fields;
}

}  // namespace

bool enter_netns(int netns_fd) noexcept { return ::setns(netns_fd, CLONE_NEWNET) == 0; }

std::optional<std::string> PacketLink::unavailable_reason() {
  static const std::optional<std::string> reason = []() -> std::optional<std::string> {
    if (::geteuid() != 0) {
      return "the packet-level link needs root (network namespace, veth, iptables)";
    }
    if (std::string_view(HEALER_NETDELAY_PATH).empty()) {
      return "healer-netdelay was not built (libnetfilter-queue-dev missing: "
             "scripts/install-deps.sh)";
    }
    try {
      PacketLink trial(milliseconds(0));
      trial.stop();
      return std::nullopt;
    } catch (const std::exception& error) {
      return std::string("the packet-level link cannot start here: ") + error.what();
    }
  }();
  return reason;
}

PacketLink::PacketLink(milliseconds rtt) : rtt_(rtt) {
  const std::string program = HEALER_NETDELAY_PATH;
  if (program.empty()) {
    throw std::runtime_error("healer-netdelay was not built");
  }
  const std::string rtt_text = std::to_string(rtt.count());
  std::vector<std::string> args{program, "--rtt-ms", rtt_text, "--watch-stdin"};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);

  std::array<int, 2> in_pipe{-1, -1};
  std::array<int, 2> out_pipe{-1, -1};
  if (::pipe2(in_pipe.data(), O_CLOEXEC) != 0 || ::pipe2(out_pipe.data(), O_CLOEXEC) != 0) {
    throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  const int log_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    ::dup2(in_pipe[0], STDIN_FILENO);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    if (log_fd >= 0) {
      ::dup2(log_fd, STDERR_FILENO);
    }
    for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
      ::sigaction(signal_number, &default_action, nullptr);
    }
    ::sigprocmask(SIG_SETMASK, &empty_mask, nullptr);  // NOLINT(concurrency-mt-unsafe)
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const int fork_error = errno;
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  if (log_fd >= 0) {
    ::close(log_fd);
  }
  if (child < 0) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    throw std::system_error(fork_error, std::generic_category(), "fork");
  }
  pid_ = child;
  stdin_fd_ = in_pipe[1];

  // The ready line, or end of file when it failed.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  bool ended = false;
  while (line.find('\n') == std::string::npos && !ended) {
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      break;
    }
    pollfd fd{out_pipe[0], POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(left.count())) <= 0) {
      continue;
    }
    std::array<char, 512> chunk{};
    const ssize_t got = ::read(out_pipe[0], chunk.data(), chunk.size());
    if (got <= 0) {
      ended = true;
    } else {
      line.append(chunk.data(), static_cast<std::size_t>(got));
    }
  }
  ::close(out_pipe[0]);
  const auto fields = parse_ready(line.substr(0, line.find('\n')));
  if (fields.count("netns") == 0 || fields.count("server") == 0 || fields.count("hosts") == 0) {
    stop();
    std::string log = read_file(log_path());
    while (!log.empty() && log.back() == '\n') {
      log.pop_back();
    }
    throw std::runtime_error(log.empty() ? "healer-netdelay did not come up" : log);
  }
  netns_path_ = fields.at("netns");
  client_ = fields.at("client");
  server_ = fields.at("server");
  root_if_ = fields.at("root_if");
  ns_if_ = fields.at("ns_if");
  // "10.B.128.0/17" -> "10.B."
  const std::string& hosts = fields.at("hosts");
  hosts_prefix_ = hosts.substr(0, hosts.find('.', hosts.find('.') + 1) + 1);
}

PacketLink::~PacketLink() { stop(); }

bool PacketLink::running() {
  if (pid_ <= 0) {
    return false;
  }
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_ || (reaped < 0 && errno == ECHILD)) {
    pid_ = -1;
    return false;
  }
  return true;
}

void PacketLink::stop() {
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);
    stdin_fd_ = -1;
  }
  if (!running()) {
    return;
  }
  ::kill(pid_, SIGTERM);
  if (!poll_until([this] { return !running(); }, kStopGrace, milliseconds(2))) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

std::string PacketLink::host_address(std::size_t index) const {
  if (index >= kHostAddresses) {
    throw std::out_of_range("PacketLink::host_address: index past the /17");
  }
  // 10.B.128.1 ...: skip .0 and .255 of each /24 so no address is a network or broadcast one.
  const std::size_t per_octet = 254;
  return hosts_prefix_ + std::to_string(128 + index / per_octet) + "." +
         std::to_string(1 + index % per_octet);
}

}  // namespace healer::test
