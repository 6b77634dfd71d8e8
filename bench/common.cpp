#include "common.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "child_process.hpp"
#include "packet_link.hpp"
#include "poll_until.hpp"
#include "process_table.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace healer::bench {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Figures

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

Summary summarize(std::vector<double> samples) {
  Summary summary;
  summary.count = samples.size();
  if (samples.empty()) {
    return summary;
  }
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  summary.median = n % 2 == 1 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2.0;
  const auto rank = static_cast<std::size_t>(std::ceil(0.9 * static_cast<double>(n)));
  summary.p90 = samples[std::max<std::size_t>(rank, 1) - 1];
  return summary;
}

double median_of(const std::vector<double>& samples) { return summarize(samples).median; }

void progress(std::string_view what) {
  static const auto start = Clock::now();
  std::cerr << fmt::format("[{:6.1f} s] {}\n", ms_since(start) / 1000.0, what);
}

std::string format_ms(double ms) {
  if (ms >= 1000) {
    return fmt::format("{:.2f} s", ms / 1000.0);
  }
  return ms < 10 ? fmt::format("{:.2f} ms", ms) : fmt::format("{:.1f} ms", ms);
}

std::string trimmed_tail(const std::string& text, std::size_t max_chars) {
  std::string tail = text.size() > max_chars ? text.substr(text.size() - max_chars) : text;
  std::replace(tail.begin(), tail.end(), '\n', ' ');
  std::replace(tail.begin(), tail.end(), '|', '/');  // keep Markdown tables intact
  while (!tail.empty() && tail.back() == ' ') {
    tail.pop_back();
  }
  return tail;
}
// ---------------------------------------------------------------------------------------------
// /proc

/// A small /proc file with plain POSIX reads: no iostream exceptions when a process exits
/// while it is read.
std::optional<std::string> read_small_file(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::nullopt;
  }
  std::string text;
  std::array<char, 4096> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      ::close(fd);
      return n == 0 ? std::optional<std::string>(std::move(text)) : std::nullopt;
    }
    text.append(buffer.data(), static_cast<std::size_t>(n));
  }
}

std::string read_text(const std::filesystem::path& file) {
  return read_small_file(file).value_or("");
}

/// A "Name:   1234 kB" field of /proc/<pid>/status, in KiB.
std::optional<long> status_kib(const std::filesystem::path& file, std::string_view field) {
  const auto text = read_small_file(file);
  if (!text) {
    return std::nullopt;
  }
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.starts_with(field) && line.size() > field.size() && line[field.size()] == ':') {
      std::istringstream value(line.substr(field.size() + 1));
      long kib = 0;
      if (value >> kib) {
        return kib;
      }
    }
  }
  return std::nullopt;
}

MachineCpu machine_cpu() {
  std::istringstream in(read_text("/proc/stat"));
  std::string label;
  in >> label;
  std::array<double, 8> ticks{};  // user nice system idle iowait irq softirq steal
  for (auto& value : ticks) {
    in >> value;
  }
  const double ms_per_tick = 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  MachineCpu cpu;
  cpu.user = (ticks[0] + ticks[1]) * ms_per_tick;
  cpu.system = ticks[2] * ms_per_tick;
  cpu.softirq = (ticks[5] + ticks[6]) * ms_per_tick;
  cpu.steal = ticks[7] * ms_per_tick;
  return cpu;
}

/// CPU time every CPU of the machine spent busy (not idle, not iowait) since boot, in ms.
double machine_busy_ms() { return machine_cpu().busy(); }

/// CPU time (user + system) of this process, or of its waited-for children, in ms.
double rusage_cpu_ms(int who) {
  rusage usage{};
  ::getrusage(who, &usage);
  const auto ms = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1000.0 + static_cast<double>(t.tv_usec) / 1000.0;
  };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

void TreeRssSampler::stop() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
}

void TreeRssSampler::loop() {
  static const long page_kib = ::sysconf(_SC_PAGESIZE) / 1024;
  while (!stop_) {
    long kib = 0;
    std::size_t processes = 0;
    add_tree(root_, page_kib, kib, processes, 0);
    peak_kib_ = std::max(peak_kib_.load(), kib);
    peak_processes_ = std::max(peak_processes_.load(), processes);
    std::this_thread::sleep_for(interval_);
  }
}

void TreeRssSampler::add_tree(pid_t pid, long page_kib, long& kib, std::size_t& processes,
                              int depth) {
  const auto proc = std::filesystem::path("/proc") / std::to_string(pid);
  const auto statm = read_small_file(proc / "statm");
  if (!statm || depth > 8) {
    return;
  }
  std::istringstream fields(*statm);
  long size = 0;
  long resident = 0;
  fields >> size >> resident;
  kib += resident * page_kib;
  ++processes;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(proc / "task", ec)) {
    std::istringstream children(read_text(task.path() / "children"));
    long child = 0;
    while (children >> child) {
      add_tree(static_cast<pid_t>(child), page_kib, kib, processes, depth + 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Processes: posix_spawn and waitpid directly, so a timing covers exactly start to exit.

pid_t spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& log,
                    const std::vector<std::string>& extra_env) {
  std::vector<std::string> args = argv;
  std::vector<char*> c_args;
  c_args.reserve(args.size() + 1);
  for (auto& arg : args) {
    c_args.push_back(arg.data());
  }
  c_args.push_back(nullptr);

  // The environment, with `extra_env` ("NAME=value") replacing variables of the same name.
  std::vector<std::string> env = extra_env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    const auto equals = variable.find('=');
    const auto name = variable.substr(0, equals == std::string_view::npos ? 0 : equals + 1);
    const bool replaced =
        !name.empty() && std::any_of(extra_env.begin(), extra_env.end(),
                                     [&](const std::string& e) { return e.starts_with(name); });
    if (!replaced) {
      env.emplace_back(variable);
    }
  }
  std::vector<char*> c_env;
  c_env.reserve(env.size() + 1);
  for (auto& entry : env) {
    c_env.push_back(entry.data());
  }
  c_env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t all_signals;
  sigfillset(&all_signals);
  sigset_t no_signals;
  sigemptyset(&no_signals);
  posix_spawnattr_setsigdefault(&attributes, &all_signals);
  posix_spawnattr_setsigmask(&attributes, &no_signals);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int error =
      ::posix_spawnp(&pid, c_args[0], &actions, &attributes, c_args.data(), c_env.data());
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    throw std::system_error(error, std::generic_category(), "posix_spawn " + argv.front());
  }
  return pid;
}

int wait_process(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return -1;
    }
  }
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

ProcessUsage wait_process_usage(pid_t pid) {
  ProcessUsage usage;
  int status = 0;
  rusage resources{};
  while (::wait4(pid, &status, 0, &resources) < 0) {
    if (errno != EINTR) {
      return usage;
    }
  }
  if (WIFEXITED(status)) {
    usage.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    usage.exit_code = 128 + WTERMSIG(status);
  }
  usage.max_rss_kib = static_cast<double>(resources.ru_maxrss);  // KiB on Linux
  const auto ms = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1000.0 + static_cast<double>(t.tv_usec) / 1000.0;
  };
  usage.cpu_ms = ms(resources.ru_utime) + ms(resources.ru_stime);
  return usage;
}

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

nlohmann::json run_json_command(const std::vector<std::string>& argv, std::string_view who) {
  const auto output = test::run_command(argv, std::chrono::seconds(900));
  try {
    auto report = nlohmann::json::parse(output.out);
    if (!report.contains("error") && output.exit_code() != 0) {
      report["error"] =
          fmt::format("exit code {}: {}", output.exit_code(), trimmed_tail(output.err));
    }
    return report;
  } catch (const nlohmann::json::exception&) {
    return {{"error", fmt::format("{}: {}", who, trimmed_tail(output.out + output.err))}};
  }
}

// ---------------------------------------------------------------------------------------------
// The sshd log

LogWindow::LogWindow(const test::SshdFixture& sshd)
    : sshd_(sshd), start_(sshd.log_text().size()), bench_cpu_ms_(rusage_cpu_ms(RUSAGE_SELF)) {}

LogCounts LogWindow::counts() const {
  const std::string text = sshd_.log_text();
  LogCounts counts;
  counts.bench_cpu_ms = rusage_cpu_ms(RUSAGE_SELF) - bench_cpu_ms_;
  std::istringstream lines(text.size() > start_ ? text.substr(start_) : std::string());
  std::string line;
  while (std::getline(lines, line)) {
    const auto has = [&line](std::string_view needle) {
      return line.find(needle) != std::string::npos;
    };
    counts.accepted += has("Accepted publickey for ") ? 1U : 0U;
    counts.connections += has("Connection from ") ? 1U : 0U;
    counts.dropped += has("drop connection #") ? 1U : 0U;
    counts.refused += has("no more sessions") ? 1U : 0U;
    counts.sessions += has("Starting session: ") ? 1U : 0U;
    if (has("error:") || has("fatal:")) {
      ++counts.errors;
      if (counts.first_error.empty()) {
        counts.first_error = line;
      }
    }
  }
  return counts;
}

void settle(const test::SshdFixture& sshd, std::chrono::milliseconds limit) {
  const auto give_up = Clock::now() + limit;
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

std::vector<std::string> read_lines(const std::filesystem::path& file) {
  std::vector<std::string> lines;
  std::istringstream in(read_text(file));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) {
      lines.push_back(line);
    }
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// OpenSSH

std::vector<std::string> OpenSsh::new_connection_argv(std::string_view command) const {
  return sshd_.ssh_argv(command, {"-o", "ControlMaster=no", "-o", "ControlPath=none"});
}

std::vector<std::string> OpenSsh::master_argv(const std::string& control) const {
  auto argv = sshd_.ssh_argv("", {"-M", "-N", "-f", "-S", control, "-o", "ControlPersist=yes"});
  argv.pop_back();  // no remote command
  return argv;
}

std::vector<std::string> OpenSsh::mux_argv(const std::string& control,
                                           std::string_view command) const {
  return sshd_.ssh_argv(command, {"-S", control, "-o", "ControlMaster=no"});
}

std::vector<pid_t> OpenSsh::master_pids() const {
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

void OpenSsh::stop_all_masters() {
  const auto pids = master_pids();
  if (pids.empty()) {
    return;
  }
  for (const auto& entry : std::filesystem::directory_iterator(control_dir_)) {
    if (entry.is_socket()) {
      auto argv = sshd_.ssh_argv("", {"-S", entry.path().string(), "-O", "exit"});
      argv.pop_back();
      time_process(argv, log_);
    }
  }
  await_exit_or_terminate(pids);
}

void await_exit_or_terminate(const std::vector<pid_t>& pids) {
  const auto all_gone = [&pids] {
    return scan_proc([&pids] {
      return std::all_of(pids.begin(), pids.end(),
                         [](pid_t pid) { return test::process_gone(pid); });
    });
  };
  if (!test::poll_until(all_gone, 5s)) {
    for (const pid_t pid : pids) {
      if (!scan_proc([pid] { return test::process_gone(pid); })) {
        ::kill(pid, SIGTERM);
      }
    }
    test::poll_until(all_gone, 5s);
  }
}

// ---------------------------------------------------------------------------------------------
// The link between the clients and the test-bed sshd

LinkModel parse_link_model(std::string_view text) {
  if (text == "proxy") {
    return LinkModel::proxy;
  }
  if (text == "packet") {
    return LinkModel::packet;
  }
  throw std::invalid_argument("link model: proxy or packet, not '" + std::string(text) + "'");
}

std::string default_link_model() {
  const char* from_env = std::getenv("HEALER_BENCH_LINK");
  return from_env != nullptr && *from_env != '\0' ? std::string(from_env) : "proxy";
}

std::string_view link_model_name(LinkModel model) {
  return model == LinkModel::packet ? "packet" : "proxy";
}

std::string link_model_description(LinkModel model) {
  if (model == LinkModel::packet) {
    return "RTT added by the packet-level link (tests/support/netdelay: sshd in a network "
           "namespace behind a veth pair, every packet held RTT/2 each way by NFQUEUE; TCP end to "
           "end, so the TCP handshake costs a round trip and the server's Nagle acts).";
  }
  return "RTT added by the test bed's DelayProxy (TCP accepted by a thread of the bench on "
         "127.0.0.1, bytes delayed RTT/2 each way; the TCP handshake costs no round trip).";
}

void add_link(test::SshdFixture::Options& options, LinkModel model, std::chrono::milliseconds rtt) {
  if (rtt.count() <= 0) {
    return;
  }
  if (model == LinkModel::proxy) {
    options.rtt = rtt;
    return;
  }
  if (const auto why = test::PacketLink::unavailable_reason()) {
    throw std::runtime_error("--link packet: " + *why);
  }
  options.packet_link = std::make_shared<test::PacketLink>(rtt);
}

// ---------------------------------------------------------------------------------------------
// The fleet

std::string fleet_address(std::size_t index) {
  return fmt::format("127.0.{}.{}", 1 + index / kHostsPerOctet, 1 + index % kHostsPerOctet);
}

Fleet::Fleet(const test::SshdFixture& sshd, std::size_t size, std::chrono::milliseconds rtt,
             const std::filesystem::path& dir)
    : dir_(dir) {
  if (const test::PacketLink* link = sshd.packet_link()) {
    port_ = sshd.sshd_port();
    for (std::size_t i = 0; i < size; ++i) {
      addresses_.push_back(link->host_address(i));
    }
    write_files(sshd);
    return;
  }
  for (int attempt = 1;; ++attempt) {
    try {
      start_proxies(sshd, size, rtt);
      break;
    } catch (const std::system_error& error) {
      // Another process holds the port on one of the addresses: start over on another port.
      stop();
      if (attempt == 5) {
        throw;
      }
      progress(fmt::format("  fleet proxies: {}; retrying on another port", error.what()));
    }
  }
  write_files(sshd);
}

std::filesystem::path Fleet::hosts_file(std::size_t count) const {
  const auto path = dir_ / fmt::format("hosts_{}", count);
  if (!std::filesystem::exists(path)) {
    std::ofstream out(path);
    for (std::size_t i = 0; i < count; ++i) {
      out << address(i) << '\n';
    }
  }
  return path;
}

void Fleet::start_proxies(const test::SshdFixture& sshd, std::size_t size,
                          std::chrono::milliseconds rtt) {
  port_ = 0;
  for (std::size_t i = 0; i < size; ++i) {
    test::DelayProxy::Options options;
    options.target_port = sshd.sshd_port();
    options.one_way_delay = std::chrono::duration_cast<std::chrono::microseconds>(rtt) / 2;
    options.listen_host = fleet_address(i);
    options.listen_port = port_;
    auto proxy = std::make_unique<test::DelayProxy>(options);
    proxy->start();
    port_ = proxy->port();
    proxies_.push_back(std::move(proxy));
    addresses_.push_back(options.listen_host);
  }
}

void Fleet::stop() {
  for (auto& proxy : proxies_) {
    proxy->stop();
  }
  proxies_.clear();
  addresses_.clear();
}

void Fleet::write_files(const test::SshdFixture& sshd) const {
  std::istringstream public_key(read_text(sshd.host_key_path().string() + ".pub"));
  std::string type;
  std::string blob;
  if (!(public_key >> type >> blob)) {
    throw std::runtime_error("cannot read the host public key");
  }
  std::ofstream known(known_hosts());
  for (const auto& address : addresses_) {
    known << fmt::format("[{}]:{} {} {}\n", address, port_, type, blob);
  }
  std::ofstream config(ssh_config());
  config << fmt::format(
      "Host *\n"
      "  Port {}\n"
      "  User {}\n"
      "  IdentityFile {}\n"
      "  IdentitiesOnly yes\n"
      "  IdentityAgent none\n"
      "  UserKnownHostsFile {}\n"
      "  GlobalKnownHostsFile /dev/null\n"
      "  StrictHostKeyChecking yes\n"
      "  BatchMode yes\n"
      "  ConnectTimeout 120\n"
      "  ControlMaster no\n"
      "  ControlPath none\n"
      "  LogLevel ERROR\n",
      port_, sshd.user(), sshd.client_key_path().string(), known_hosts().string());
}

// ---------------------------------------------------------------------------------------------
// Text

std::size_t count_occurrences(const std::string& text, std::string_view needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    if (!item.empty()) {
      items.push_back(item);
    }
  }
  return items;
}

std::vector<int> split_ints(const std::string& text) {
  std::vector<int> values;
  for (const auto& item : split_list(text)) {
    values.push_back(std::stoi(item));
  }
  return values;
}

void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace healer::bench
