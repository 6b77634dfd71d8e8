#include "sshd_fixture.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "child_process.hpp"
#include "packet_link.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "process_table.hpp"

namespace healer::test {
namespace {

using std::chrono::milliseconds;

constexpr const char* kSshdPath = "/usr/sbin/sshd";
constexpr const char* kSshKeygenPath = "/usr/bin/ssh-keygen";
constexpr const char* kSshPath = "/usr/bin/ssh";
// sshd refuses to start as root without its privilege separation directory; Debian's service
// unit creates it, a container without the service has none.
constexpr const char* kPrivsepDir = "/run/sshd";
constexpr const char* kTestUser = "healer-test";  // created by scripts/install-deps.sh
constexpr const char* kChpasswdPath = "/usr/sbin/chpasswd";
constexpr const char* kUsermodPath = "/usr/sbin/usermod";
// Serialises the test processes that set healer-test's (system-wide) password; root only.
constexpr const char* kPasswordLockPath = "/run/healer-test-password.lock";
constexpr milliseconds kStartTimeout{20000};  // a give-up: seconds on a loaded machine
constexpr milliseconds kStopGrace{3000};
constexpr int kPortAttempts = 5;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::filesystem::path& path, std::string_view text,
                std::ios::openmode mode = std::ios::trunc) {
  std::ofstream out(path, std::ios::binary | std::ios::out | mode);
  out << text;
  out.close();
  if (!out) {
    throw std::runtime_error("cannot write " + path.string());
  }
}

std::size_t count_lines_containing(std::string_view text,
                                   std::initializer_list<std::string_view> needles) {
  std::size_t count = 0;
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    if (std::any_of(needles.begin(), needles.end(), [line](std::string_view needle) {
          return line.find(needle) != std::string_view::npos;
        })) {
      ++count;
    }
    if (end == std::string_view::npos) {
      break;
    }
    text.remove_prefix(end + 1);
  }
  return count;
}

// The last `count` lines of `text`.
std::string tail_lines(std::string_view text, std::size_t count) {
  while (!text.empty() && text.back() == '\n') {
    text.remove_suffix(1);
  }
  std::size_t start = text.size();
  for (std::size_t seen = 0; seen < count && start > 0; ++seen) {
    const auto newline = text.rfind('\n', start - 1);
    start = newline == std::string_view::npos ? 0 : newline;
  }
  if (start > 0) {
    ++start;  // skip the newline that ends the previous line
  }
  return std::string(text.substr(start));
}

std::string without_carriage_returns(std::string text) {
  text.erase(std::remove(text.begin(), text.end(), '\r'), text.end());
  return text;
}

const char* key_type_name(SshdFixture::KeyType type) {
  switch (type) {
    case SshdFixture::KeyType::ed25519:
      return "ed25519";
    case SshdFixture::KeyType::ecdsa:
      return "ecdsa";
    case SshdFixture::KeyType::rsa:
      return "rsa";
  }
  return "ed25519";
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) {
    return fmt::format("exit status {}", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {}", WTERMSIG(status));
  }
  return "unknown status";
}

// 24 letters and digits from the system's random source: ~142 bits.
std::string random_password() {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device source;
  std::uniform_int_distribution<std::size_t> pick(0, kAlphabet.size() - 1);
  std::string password(24, ' ');
  for (char& letter : password) {
    letter = kAlphabet[pick(source)];
  }
  return password;
}

// Runs `args` (args[0] an absolute path) with `input` on stdin and stdout+stderr captured;
// returns the exit status (-1 when killed by a signal) and the output. `input` must fit the pipe
// buffer (64 KiB), which a "user:password" line does. Only execv and dup2 run in the child.
std::pair<int, std::string> run_with_input(const std::vector<std::string>& args,
                                           std::string_view input) {
  std::vector<std::string> arg_storage = args;
  std::vector<char*> argv;
  for (auto& arg : arg_storage) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  int input_pipe[2] = {-1, -1};
  int output_pipe[2] = {-1, -1};
  if (::pipe2(input_pipe, O_CLOEXEC) != 0) {
    throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  if (::pipe2(output_pipe, O_CLOEXEC) != 0) {
    const int error = errno;
    ::close(input_pipe[0]);
    ::close(input_pipe[1]);
    throw std::system_error(error, std::generic_category(), "pipe2");
  }
  // Written before the fork, so a child that dies early cannot SIGPIPE us; fits the pipe buffer.
  if (::write(input_pipe[1], input.data(), input.size()) != static_cast<ssize_t>(input.size())) {
    const int error = errno;
    for (const int fd : {input_pipe[0], input_pipe[1], output_pipe[0], output_pipe[1]}) {
      ::close(fd);
    }
    throw std::system_error(error, std::generic_category(), "write to pipe");
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(input_pipe[0], STDIN_FILENO);
    ::dup2(output_pipe[1], STDOUT_FILENO);
    ::dup2(output_pipe[1], STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const int fork_error = errno;
  ::close(input_pipe[0]);
  ::close(input_pipe[1]);  // the child sees EOF after the line
  ::close(output_pipe[1]);
  std::string output;
  if (child > 0) {
    char buffer[4096];
    ssize_t got = 0;
    while ((got = ::read(output_pipe[0], buffer, sizeof buffer)) > 0 ||
           (got < 0 && errno == EINTR)) {
      if (got > 0) {
        output.append(buffer, static_cast<std::size_t>(got));
      }
    }
  }
  ::close(output_pipe[0]);
  if (child < 0) {
    throw std::system_error(fork_error, std::generic_category(), "fork");
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// The password field of `user` in /etc/shadow (root only); empty when not found.
std::string shadow_password_field(std::string_view user) {
  std::ifstream shadow("/etc/shadow");
  for (std::string line; std::getline(shadow, line);) {
    if (line.size() > user.size() && line.starts_with(user) && line[user.size()] == ':') {
      const auto start = user.size() + 1;
      return line.substr(start, line.find(':', start) - start);
    }
  }
  return {};
}

// A test process killed while it held a password from set_random_password() left that password
// behind; the next fixture puts "*" back, unless another process holds the lock and uses it.
void clear_stale_password() {
  if (shadow_password_field(kTestUser) == "*") {
    return;
  }
  const int fd = ::open(kPasswordLockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return;
  }
  // Re-read under the lock: the owner may have restored it meanwhile.
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    const std::string field = shadow_password_field(kTestUser);
    if (!field.empty() && field != "*") {
      std::cerr << "SshdFixture: " << kTestUser
                << " still had a test password (a test was killed?); restoring '*'\n";
      const CommandOutput result = run_command({kUsermodPath, "-p", "*", kTestUser});
      if (result.exit_code() != 0) {
        std::cerr << "SshdFixture: usermod -p '*' " << kTestUser << " failed: " << result.err;
      }
    }
  }
  ::close(fd);  // releases the flock
}

}  // namespace

SshdFixture::SshdFixture() : SshdFixture(Options{}) {}

SshdFixture::SshdFixture(Options options) : options_(std::move(options)), dir_("healer-sshd-") {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> strings(16384);
  if (::getpwuid_r(::geteuid(), &entry, strings.data(), strings.size(), &found) != 0 ||
      found == nullptr) {
    throw std::runtime_error("no passwd entry for the current user");
  }
  user_ = entry.pw_name;
  if (options_.packet_link) {
    if (options_.rtt.count() > 0) {
      throw std::logic_error("SshdFixture: a packet link sets the RTT; Options::rtt must be 0");
    }
    host_ = options_.packet_link->server_address();
  }
  if (::geteuid() == 0 && !options_.login_as_root) {
    // Log in as an unprivileged user when running as root: OpenSSH turns privilege separation
    // off after a root login and then refuses "signal" channel requests (timeouts could not
    // kill remote commands), and its /bin/sh login skips root's rc files.
    if (::getpwnam_r(kTestUser, &entry, strings.data(), strings.size(), &found) != 0 ||
        found == nullptr) {
      throw std::runtime_error(std::string("the unprivileged test user ") + kTestUser +
                               " does not exist: run scripts/install-deps.sh as root");
    }
    user_ = kTestUser;
    clear_stale_password();
    // The login user must reach authorized_keys and its HOME inside our 0700 temp dir.
    std::filesystem::permissions(dir(), std::filesystem::perms::owner_all |
                                            std::filesystem::perms::group_exec |
                                            std::filesystem::perms::others_exec);
  }
  std::filesystem::create_directory(home_dir());
  std::filesystem::permissions(home_dir(), std::filesystem::perms::all);
  generate_key(KeyType::ed25519, host_key_path(), {});
  generate_key(KeyType::ed25519, client_key_path(), {});
  write_file(authorized_keys_path(), "");
  authorize(client_key_path().string() + ".pub");
}

SshdFixture::~SshdFixture() {
  try {
    clear_password();
  } catch (const std::exception& error) {
    std::cerr << "SshdFixture teardown: " << error.what() << '\n';
  }
  try {
    stop();
    if (::testing::Test::HasFailure()) {
      dump_log_tail(60);
    }
  } catch (const std::exception& error) {
    std::cerr << "SshdFixture teardown: " << error.what() << '\n';
  }
}

void SshdFixture::generate_key(KeyType type, const std::filesystem::path& path,
                               std::string_view passphrase) const {
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + ".pub");
  std::vector<std::string> argv{kSshKeygenPath, "-q", "-t", key_type_name(type)};
  if (type == KeyType::rsa) {
    argv.insert(argv.end(), {"-b", "2048"});  // the 3072-bit default costs ~1 s here
  } else if (type == KeyType::ecdsa) {
    argv.insert(argv.end(), {"-b", "256"});
  }
  argv.insert(argv.end(),
              {"-N", std::string(passphrase), "-C", "healer-test", "-f", path.string()});
  const CommandOutput result = run_command(argv, milliseconds(20000));
  if (result.exit_code() != 0) {
    throw std::runtime_error(fmt::format("ssh-keygen -t {} failed: {}", key_type_name(type),
                                         result.err.empty() ? result.out : result.err));
  }
}

void SshdFixture::authorize(const std::filesystem::path& public_key) const {
  std::string line = read_file(public_key);
  if (line.empty()) {
    throw std::runtime_error("empty public key " + public_key.string());
  }
  if (line.back() != '\n') {
    line += '\n';
  }
  write_file(authorized_keys_path(), line, std::ios::app);
}

SshdFixture::ClientKey SshdFixture::add_client_key(KeyType type, std::string_view passphrase,
                                                   bool authorized) {
  ++extra_keys_;
  ClientKey key;
  key.private_key = dir() / fmt::format("client_{}_{}", key_type_name(type), extra_keys_);
  key.public_key = key.private_key.string() + ".pub";
  generate_key(type, key.private_key, passphrase);
  if (authorized) {
    authorize(key.public_key);
  }
  return key;
}

std::string SshdFixture::set_random_password() {
  if (::geteuid() != 0 || user_ != kTestUser) {
    throw std::runtime_error(
        fmt::format("set_random_password needs root and the {} login user", kTestUser));
  }
  if (password_lock_fd_ < 0) {
    const int fd = ::open(kPasswordLockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      throw std::system_error(errno, std::generic_category(), kPasswordLockPath);
    }
    // Blocks while another test process owns the password; its fixture clears it within seconds.
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        const int error = errno;
        ::close(fd);
        throw std::system_error(error, std::generic_category(), "flock");
      }
    }
    password_lock_fd_ = fd;
  }
  std::string password = random_password();
  // chpasswd reads "user:password" from stdin, so the password never shows in a command line.
  const std::string input = fmt::format("{}:{}\n", kTestUser, password);
  const auto [status, output] = run_with_input({kChpasswdPath}, input);
  if (status != 0) {
    clear_password();
    throw std::runtime_error(fmt::format("chpasswd failed ({}): {}", status, output));
  }
  return password;
}

void SshdFixture::clear_password() {
  if (password_lock_fd_ < 0) {
    return;
  }
  const CommandOutput result = run_command({kUsermodPath, "-p", "*", kTestUser});
  ::close(password_lock_fd_);  // releases the flock
  password_lock_fd_ = -1;
  if (result.exit_code() != 0) {
    throw std::runtime_error(
        fmt::format("usermod -p '*' {} failed, the test password is still "
                    "set (run it by hand): {}",
                    kTestUser, result.err));
  }
}

void SshdFixture::write_config(std::uint16_t port) const {
  // sshd keeps the first value it reads for most keywords, so the caller's lines come first and
  // override the defaults below; a Match block must come last because it runs to the file's end.
  std::string overrides;
  std::string match_blocks;
  bool in_match = false;
  for (const auto& line : options_.extra_config) {
    const auto first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line.compare(first, 5, "Match") == 0) {
      in_match = true;
    }
    (in_match ? match_blocks : overrides) += line + "\n";
  }

  std::string config = "# Written by healer's SshdFixture: a throwaway sshd for tests.\n";
  config += overrides;
  config += fmt::format(
      "ListenAddress {host}\n"
      "Port {port}\n"
      "HostKey {host_key}\n"
      "PidFile none\n"
      "AuthorizedKeysFile {authorized_keys}\n"
      "StrictModes no\n"
      "UsePAM no\n"
      "PubkeyAuthentication yes\n"
      "PasswordAuthentication {password}\n"
      "KbdInteractiveAuthentication no\n"
      "PermitRootLogin {root_login}\n"
      "UseDNS no\n"
      "LogLevel {log_level}\n"
      "MaxSessions {max_sessions}\n"
      "MaxStartups {max_startups}\n",
      fmt::arg("host", listen_address()), fmt::arg("port", port),
      fmt::arg("host_key", host_key_path().string()),
      fmt::arg("authorized_keys", authorized_keys_path().string()),
      fmt::arg("password", options_.password_authentication ? "yes" : "no"),
      fmt::arg("root_login", options_.password_authentication ? "yes" : "prohibit-password"),
      fmt::arg("log_level", options_.log_level), fmt::arg("max_sessions", options_.max_sessions),
      fmt::arg("max_startups", options_.max_startups));
  if (options_.per_source_max_startups) {
    config += fmt::format("PerSourceMaxStartups {}\n", *options_.per_source_max_startups);
  }
  if (options_.max_auth_tries) {
    config += fmt::format("MaxAuthTries {}\n", *options_.max_auth_tries);
  }
  // Fast logins. sshd runs every command as `<login shell> -c <command>`; Debian's bash, when
  // started by sshd, sources /etc/bash.bashrc (returns at once when non-interactive) and
  // $HOME/.bashrc. On the dev machine /root/.bashrc runs `pyenv init`: `bash -c true` as sshd
  // starts it costs 95 ms with HOME=/root and 2.5 ms with an empty HOME; through ssh, 102 ms
  // against 10 ms per command on one multiplexed connection. SetEnv is applied after sshd sets
  // HOME from the passwd entry, so it wins (checked: commands see HOME=<dir>/home, no pyenv). A
  // dedicated test user would need useradd and root; this keeps the current user and changes
  // nothing outside dir(). PermitUserRC no: sshd would otherwise look for ~/.ssh/rc (in the
  // passwd home) before every command.
  config += fmt::format(
      "SetEnv HOME={home}\n"
      "PermitUserRC no\n"
      "PrintMotd no\n"
      "PrintLastLog no\n"
      "X11Forwarding no\n",
      fmt::arg("home", home_dir().string()));
  config += match_blocks;
  write_file(config_path(), config);
}

void SshdFixture::write_known_hosts() const {
  // "<type> <base64> <comment>" -> "<type> <base64>", keyed by the port clients connect to, the
  // way ssh writes it: "[127.0.0.1]:2222", or plain "127.0.0.1" for port 22.
  std::istringstream public_key(read_file(host_key_path().string() + ".pub"));
  std::string type;
  std::string blob;
  if (!(public_key >> type >> blob)) {
    throw std::runtime_error("cannot read the host public key");
  }
  const std::uint16_t visible = port();
  const std::string host_pattern = visible == 22 ? host_ : fmt::format("[{}]:{}", host_, visible);
  write_file(known_hosts_path(), fmt::format("{} {} {}\n", host_pattern, type, blob));
}

void SshdFixture::trust_current_host_key() { write_known_hosts(); }

std::uint16_t SshdFixture::port() const noexcept { return proxy_ ? proxy_->port() : sshd_port_; }

bool SshdFixture::reap_listener() {
  if (pid_ <= 0) {
    return true;
  }
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_ || (reaped < 0 && errno == ECHILD)) {
    pid_ = -1;
    return true;
  }
  return false;
}

SshdFixture::StartOutcome SshdFixture::spawn_and_wait(std::uint16_t port) {
  write_config(port);
  std::error_code size_error;
  const auto log_size = std::filesystem::file_size(log_path(), size_error);
  const std::size_t log_offset = size_error ? 0 : static_cast<std::size_t>(log_size);

  // Everything the child needs is prepared here: between fork and exec in a process that runs
  // threads only async-signal-safe calls are allowed.
  const std::string config = config_path().string();
  std::vector<std::string> args{kSshdPath, "-D", "-e", "-f", config};
  if (!options_.mount_namespace_setup.empty()) {
    // unshare and sh exec in place: the pid stays sshd's (for pid(), signals, PDEATHSIG).
    args.insert(args.begin(),
                {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                 "set -e\n" + options_.mount_namespace_setup + "\nexec \"$@\"", "sh"});
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  const int log_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    const int error = errno;
    ::close(log_fd);
    ::close(null_fd);
    throw std::system_error(error, std::generic_category(), "open sshd log");
  }
  // The packet link's namespace, entered by the child before exec.
  int netns_fd = -1;
  if (options_.packet_link) {
    netns_fd = ::open(options_.packet_link->netns_path().c_str(), O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) {
      const int error = errno;
      ::close(log_fd);
      ::close(null_fd);
      throw std::system_error(error, std::generic_category(),
                              "open " + options_.packet_link->netns_path());
    }
  }
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  const pid_t parent = ::getpid();

  const pid_t child = ::fork();
  if (child == 0) {
    // Dies with us: a test that crashes or is killed by a timeout must not leave sshd behind.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    if (netns_fd >= 0 && !enter_netns(netns_fd)) {
      ::_exit(126);
    }
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    // Ignored signals survive exec; a test that ignores SIGPIPE must not hand that to sshd.
    for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
      ::sigaction(signal_number, &default_action, nullptr);
    }
    ::sigprocmask(SIG_SETMASK, &empty_mask, nullptr);  // NOLINT(concurrency-mt-unsafe): 1 thread
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const int fork_error = errno;
  ::close(log_fd);
  ::close(null_fd);
  if (netns_fd >= 0) {
    ::close(netns_fd);
  }
  if (child < 0) {
    throw std::system_error(fork_error, std::generic_category(), "fork");
  }
  pid_ = child;
  // The listening socket is in sshd's network namespace: read that namespace's table.
  const std::string tcp_table = fmt::format("/proc/{}/net/tcp", child);

  // Both conditions, though "Server listening" is logged after listen(): checking the socket
  // table costs nothing, and a probe connection would add lines to the log the tests count.
  const std::string listening_line =
      fmt::format("Server listening on {} port {}.", listen_address(), port);
  int status = 0;
  bool exited = false;
  const bool up = poll_until(
      [&] {
        const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
        if (reaped == pid_) {
          exited = true;
          return true;
        }
        const std::string text = read_file(log_path());
        return text.size() > log_offset &&
               text.find(listening_line, log_offset) != std::string::npos &&
               is_listening(port, tcp_table.c_str());
      },
      kStartTimeout);
  if (up && !exited) {
    return StartOutcome::listening;
  }
  const std::string new_log = without_carriage_returns(read_file(log_path()).substr(log_offset));
  if (exited) {
    pid_ = -1;
    if (new_log.find("Address already in use") != std::string::npos) {
      return StartOutcome::address_in_use;
    }
    throw std::runtime_error(fmt::format("sshd exited during start-up ({}); log:\n{}",
                                         describe_wait_status(status), tail_lines(new_log, 20)));
  }
  kill();
  throw std::runtime_error(fmt::format("sshd did not listen on {}:{} within {} ms; log:\n{}", host_,
                                       port, kStartTimeout.count(), tail_lines(new_log, 20)));
}

void SshdFixture::start() {
  if (running()) {
    throw std::logic_error("sshd is already running");
  }
  if (::geteuid() == 0) {
    std::filesystem::create_directories(kPrivsepDir);
  }
  const bool port_fixed = sshd_port_ != 0;
  for (int attempt = 1;; ++attempt) {
    const std::uint16_t port = port_fixed ? sshd_port_ : closed_port();
    if (spawn_and_wait(port) == StartOutcome::listening) {
      sshd_port_ = port;
      break;
    }
    if (port_fixed || attempt == kPortAttempts) {
      throw std::runtime_error(fmt::format("sshd: port {} is in use", port));
    }
  }
  if (options_.rtt.count() > 0 && !proxy_) {
    proxy_ = std::make_unique<DelayProxy>(DelayProxy::for_rtt(sshd_port_, options_.rtt));
    proxy_->start();
  }
  if (!known_hosts_written_) {
    write_known_hosts();
    known_hosts_written_ = true;
  }
}

std::vector<pid_t> SshdFixture::freeze_tree() {
  // Stop the listener first so it forks no more, then stop each newly found descendant until a
  // scan finds nobody new and everyone is stopped (a fork racing a SIGSTOP is restarted by the
  // kernel after the stop, so the tree is complete once it is all stopped).
  std::vector<pid_t> tree{pid_};
  std::set<pid_t> seen{pid_};
  ::kill(pid_, SIGSTOP);
  poll_until(
      [&] {
        bool grew = false;
        for (const pid_t descendant : descendants_of(pid_)) {
          if (seen.insert(descendant).second) {
            ::kill(descendant, SIGSTOP);
            tree.push_back(descendant);
            grew = true;
          }
        }
        return !grew && std::all_of(tree.begin(), tree.end(), [](pid_t member) {
          return process_stopped(member) || process_gone(member);
        });
      },
      milliseconds(2000), milliseconds(1));
  return tree;
}

void SshdFixture::stop() {
  if (pid_ <= 0) {
    return;
  }
  const std::vector<pid_t> tree = freeze_tree();
  // Stopped processes keep SIGTERM pending until SIGCONT, so the whole tree ends together.
  for (const pid_t member : tree) {
    ::kill(member, SIGTERM);
  }
  for (const pid_t member : tree) {
    ::kill(member, SIGCONT);
  }
  paused_.clear();
  const auto all_gone = [&] {
    reap_listener();
    return pid_ < 0 && std::all_of(tree.begin() + 1, tree.end(), process_gone);
  };
  if (!poll_until(all_gone, kStopGrace)) {
    for (const pid_t member : tree) {
      if (!process_gone(member)) {
        ::kill(member, SIGKILL);
      }
    }
    poll_until(all_gone, kStopGrace);
  }
  if (pid_ > 0) {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

void SshdFixture::kill() {
  if (pid_ <= 0) {
    return;
  }
  const std::vector<pid_t> tree = freeze_tree();
  for (const pid_t member : tree) {
    ::kill(member, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  paused_.clear();
  poll_until([&] { return std::all_of(tree.begin() + 1, tree.end(), process_gone); }, kStopGrace);
}

void SshdFixture::restart() {
  stop();
  start();
}

void SshdFixture::pause() {
  if (pid_ <= 0) {
    throw std::logic_error("sshd is not running");
  }
  ::kill(pid_, SIGSTOP);
  poll_until([this] { return process_stopped(pid_); }, milliseconds(2000), milliseconds(1));
}

void SshdFixture::resume() {
  if (pid_ <= 0) {
    throw std::logic_error("sshd is not running");
  }
  ::kill(pid_, SIGCONT);
  poll_until([this] { return !process_stopped(pid_); }, milliseconds(2000), milliseconds(1));
}

void SshdFixture::pause_all() {
  if (pid_ <= 0) {
    throw std::logic_error("sshd is not running");
  }
  paused_ = freeze_tree();
}

void SshdFixture::resume_all() {
  if (pid_ <= 0) {
    throw std::logic_error("sshd is not running");
  }
  std::set<pid_t> members(paused_.begin(), paused_.end());
  members.insert(pid_);
  for (const pid_t descendant : descendants_of(pid_)) {
    members.insert(descendant);
  }
  for (const pid_t member : members) {
    ::kill(member, SIGCONT);
  }
  paused_.clear();
  poll_until([&] { return std::none_of(members.begin(), members.end(), process_stopped); },
             milliseconds(2000), milliseconds(1));
}

void SshdFixture::regenerate_host_key() {
  generate_key(KeyType::ed25519, host_key_path(), {});
  if (running()) {
    restart();
  }
}

std::vector<std::string> SshdFixture::ssh_argv(std::string_view remote_command,
                                               const std::vector<std::string>& extra_options,
                                               const std::filesystem::path& identity) const {
  // ssh keeps the first value given for an option, so the caller's options go first.
  std::vector<std::string> argv{kSshPath, "-F", "/dev/null"};
  argv.insert(argv.end(), extra_options.begin(), extra_options.end());
  const std::vector<std::string> defaults{
      "-o",
      "BatchMode=yes",
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "IdentityAgent=none",
      "-o",
      "UserKnownHostsFile=" + known_hosts_path().string(),
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "ConnectTimeout=5",
      "-i",
      (identity.empty() ? client_key_path() : identity).string(),
      "-p",
      std::to_string(port()),
      user_ + "@" + host_,
      std::string(remote_command)};
  argv.insert(argv.end(), defaults.begin(), defaults.end());
  return argv;
}

std::string SshdFixture::log_text() const {
  return without_carriage_returns(read_file(log_path()));
}

std::size_t SshdFixture::count_in_log(std::string_view needle) const {
  return count_lines_containing(log_text(), {needle});
}

std::size_t SshdFixture::accepted_auth_count() const {
  return count_lines_containing(log_text(), {"Accepted publickey for ", "Accepted password for "});
}

std::size_t SshdFixture::failed_auth_count() const {
  return count_lines_containing(log_text(), {"Failed publickey for ", "Failed password for "});
}

std::size_t SshdFixture::failed_password_count() const {
  return count_in_log("Failed password for ");
}

std::size_t SshdFixture::connection_count() const {
  // sshd's own line is "Connection from <address> port <n> on <address> port <n> ...". A fatal
  // error names the connection as "Connection from user <name> <address> port <n>" inside its own
  // line (e.g. "...: send reply: Connection from user u 127.0.0.1 port 5: Broken pipe", when a
  // keepalive reply finds the client gone): that is no new connection.
  std::size_t count = 0;
  const std::string log = log_text();
  std::string_view text = log;
  constexpr std::string_view kPrefix = "Connection from ";
  while (!text.empty()) {
    const auto end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    if (line.starts_with(kPrefix) && !line.substr(kPrefix.size()).starts_with("user ")) {
      ++count;
    }
    if (end == std::string_view::npos) {
      break;
    }
    text.remove_prefix(end + 1);
  }
  return count;
}

std::size_t SshdFixture::session_open_count() const { return count_in_log("Starting session: "); }

std::size_t SshdFixture::refused_session_count() const { return count_in_log("no more sessions"); }

std::size_t SshdFixture::dropped_startup_count() const { return count_in_log("drop connection #"); }

bool SshdFixture::wait_for_log(std::string_view needle, std::size_t count,
                               std::chrono::milliseconds timeout) const {
  return poll_until([&] { return count_in_log(needle) >= count; }, timeout);
}

std::vector<pid_t> SshdFixture::server_processes() const {
  if (pid_ <= 0) {
    return {};
  }
  std::vector<pid_t> members{pid_};
  const auto descendants = descendants_of(pid_);
  members.insert(members.end(), descendants.begin(), descendants.end());
  return members;
}

std::vector<pid_t> SshdFixture::matching_remote_processes(std::string_view marker) const {
  const pid_t self = ::getpid();
  std::vector<pid_t> found;
  for (const auto& entry : list_processes()) {
    if (entry.pid == self || entry.state == 'Z' ||
        process_cmdline(entry.pid).find(marker) == std::string::npos) {
      continue;
    }
    // Walk up: reaching sshd means server side; reaching this process first means a client the
    // test started; reaching init means a remote command that outlived its session.
    bool client_side = false;
    pid_t ancestor = entry.parent;
    for (int depth = 0; depth < 64 && ancestor > 1 && ancestor != pid_; ++depth) {
      if (ancestor == self) {
        client_side = true;
        break;
      }
      const auto parent = read_process(ancestor);
      if (!parent) {
        break;
      }
      ancestor = parent->parent;
    }
    if (!client_side) {
      found.push_back(entry.pid);
    }
  }
  return found;
}

std::size_t SshdFixture::remote_processes_matching(std::string_view marker) const {
  return matching_remote_processes(marker).size();
}

std::size_t SshdFixture::server_commands_running(std::string_view command) const {
  std::size_t running = 0;
  for (const pid_t member : server_processes()) {
    const auto entry = read_process(member);
    if (entry && entry->state != 'Z' && process_cmdline(member).starts_with(command)) {
      ++running;
    }
  }
  return running;
}

std::size_t SshdFixture::kill_remote_processes_matching(std::string_view marker,
                                                        int signal_number) const {
  const auto victims = matching_remote_processes(marker);
  for (const pid_t victim : victims) {
    ::kill(victim, signal_number);
  }
  return victims.size();
}

void SshdFixture::dump_log_tail(std::size_t lines) const {
  std::cerr << "---- sshd log tail (" << log_path().string() << ") ----\n"
            << tail_lines(log_text(), lines) << "\n---- end of sshd log ----\n";
}

}  // namespace healer::test
