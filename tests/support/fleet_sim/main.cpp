// healer-fleet-sim: thousands of simulated SSH servers in one process, for tests and benchmarks.
// Flags and behaviour: README.md in this directory.
#include <arpa/inet.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>

#include "behaviour.hpp"
#include "commands.hpp"
#include "host_keys.hpp"
#include "host_model.hpp"
#include "server.hpp"

namespace {

using healer::fleet_sim::Behaviour;
using healer::fleet_sim::Server;
using healer::fleet_sim::ServerOptions;

// Soft limit up to the hard one; as root, both up to what a fleet can use.
rlim_t raise_fd_limit(rlim_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return 0;
  }
  if (limit.rlim_max < wanted) {
    rlimit raised{wanted, wanted};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      return wanted;
    }
  }
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

std::uint32_t parse_address(const std::string& text) {
  in_addr address{};
  if (::inet_pton(AF_INET, text.c_str(), &address) != 1) {
    throw CLI::ValidationError("--first-address", "not an IPv4 address: " + text);
  }
  return ntohl(address.s_addr);
}

struct Flags {
  std::size_t hosts = 1;
  std::string first_address = "127.16.0.1";
  std::uint16_t port = 0;
  std::string user;
  std::vector<std::string> authorized_keys;
  std::string host_authorized_keys;
  std::uint64_t host_key_seed = 1;
  std::uint64_t seed = 1;
  std::string latency = "0";
  double refuse = 0, stall = 0, auth_fail = 0, drop = 0, hang = 0;
  std::size_t max_sessions = 10;
  std::vector<std::string> profiles;
  std::string proc_template;
  std::string data_dir = HEALER_FLEET_SIM_DATA_DIR;
  std::string responses;
  std::string known_hosts;
  std::string known_hosts_dir;
  std::string stats_file;
  int max_lifetime = 3600;
  int login_grace = 60;
  int parent_pid = 0;
  bool verbose = false;
  int libssh_verbosity = 0;
  std::size_t write_chunk = 32768;
};

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"healer-fleet-sim: a fleet of simulated SSH servers on 127.x.y.z, one port"};
  app.add_option("--hosts", flags.hosts, "hosts, one per address")->check(CLI::Range(1, 1 << 22));
  app.add_option("--first-address", flags.first_address, "address of host 0 (127.x.y.z)");
  app.add_option("--port", flags.port, "TCP port on every address (0: any free one)");
  app.add_option("--user", flags.user, "the only login name accepted (default: any)");
  app.add_option("--authorized-keys", flags.authorized_keys,
                 "authorized_keys file whose keys every host accepts (repeatable)");
  app.add_option("--host-authorized-keys", flags.host_authorized_keys,
                 "directory of per-host authorized_keys files named by address");
  app.add_option("--host-key-seed", flags.host_key_seed,
                 "seed of the host keys (another seed: every host reinstalled)");
  app.add_option("--seed", flags.seed, "seed of host models and fault draws");
  app.add_option("--latency", flags.latency, "ms before each answer: N or MIN-MAX per host");
  app.add_option("--refuse-rate", flags.refuse, "connections reset before the banner")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--stall-rate", flags.stall, "connections accepted and never answered")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--auth-fail-rate", flags.auth_fail, "connections whose authentication fails")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--drop-rate", flags.drop, "commands answered with a connection reset")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--hang-rate", flags.hang, "commands that never end by themselves")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--max-sessions", flags.max_sessions, "channels per connection (MaxSessions)");
  app.add_option("--profile", flags.profiles,
                 "per-host overrides RANGE:key=value,... (repeatable; keys: latency, refuse, "
                 "stall, auth_fail, drop, hang, max_sessions)");
  app.add_option("--proc-template", flags.proc_template,
                 "a /proc-shaped directory for the hosts' layout (default: tests/data captures)");
  app.add_option("--data-dir", flags.data_dir, "tests/data (the default templates)");
  app.add_option("--responses", flags.responses,
                 "JSON array of {command, out, err, exit_status}: canned replies");
  app.add_option("--known-hosts", flags.known_hosts, "known_hosts file to write");
  app.add_option("--known-hosts-dir", flags.known_hosts_dir,
                 "directory to write one known_hosts file per host into");
  app.add_option("--stats-file", flags.stats_file, "JSON counters, written on SIGUSR1 and exit");
  app.add_option("--max-lifetime", flags.max_lifetime, "exit after this many seconds (0: never)");
  app.add_option("--login-grace", flags.login_grace, "seconds to authenticate");
  app.add_option("--parent-pid", flags.parent_pid,
                 "exit when this process is gone (default: the parent at start)");
  app.add_flag("--verbose", flags.verbose, "a log line per connection event on stderr");
  app.add_option("--write-chunk", flags.write_chunk,
                 "reply bytes per write; smaller: less memory per idle session, more loop turns")
      ->check(CLI::Range(256, 1 << 20));
  app.add_option("--libssh-verbosity", flags.libssh_verbosity,
                 "libssh's own log on stderr (0 none ... 4 functions), for debugging")
      ->check(CLI::Range(0, 4));
  CLI11_PARSE(app, argc, argv);

  // Bounded: the simulator never outlives whoever started it.
  const pid_t parent = flags.parent_pid > 0 ? flags.parent_pid : ::getppid();
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent && flags.parent_pid == 0) {
    return 0;  // the parent died before prctl
  }
  ::signal(SIGPIPE, SIG_IGN);
  const rlim_t fds = raise_fd_limit(static_cast<rlim_t>(flags.hosts) * 2 + 65536);

  try {
    ServerOptions options;
    options.hosts = flags.hosts;
    options.first_address = parse_address(flags.first_address);
    options.port = flags.port;
    options.user = flags.user;
    for (const auto& file : flags.authorized_keys) {
      for (auto& key : healer::fleet_sim::read_authorized_keys(file)) {
        options.authorized_keys.push_back(std::move(key));
      }
    }
    options.host_authorized_keys_dir = flags.host_authorized_keys;
    options.host_key_seed = flags.host_key_seed;
    options.seed = flags.seed;
    Behaviour defaults;
    healer::fleet_sim::parse_latency(flags.latency, defaults.latency_min, defaults.latency_max);
    defaults.refuse = flags.refuse;
    defaults.stall = flags.stall;
    defaults.auth_fail = flags.auth_fail;
    defaults.drop = flags.drop;
    defaults.hang = flags.hang;
    defaults.max_sessions = flags.max_sessions;
    options.defaults = defaults;
    for (const auto& profile : flags.profiles) {
      options.profiles.push_back(healer::fleet_sim::parse_profile(profile));
    }
    options.known_hosts_file = flags.known_hosts;
    options.known_hosts_dir = flags.known_hosts_dir;
    options.stats_file = flags.stats_file;
    options.login_grace = std::chrono::seconds(flags.login_grace);
    options.verbose = flags.verbose;
    options.libssh_verbosity = flags.libssh_verbosity;
    options.write_chunk = flags.write_chunk;
    auto templates = flags.proc_template.empty()
                         ? healer::fleet_sim::ProcTemplates::load_test_data(flags.data_dir)
                         : healer::fleet_sim::ProcTemplates::load_proc_dir(flags.proc_template);
    std::vector<healer::fleet_sim::CannedReply> canned;
    if (!flags.responses.empty()) {
      canned = healer::fleet_sim::read_canned_replies(flags.responses);
    }
    healer::fleet_sim::CommandBook commands(std::move(canned));
    for (const auto& name : commands.unsimulated_checks()) {
      std::cerr << "healer-fleet-sim: warning: check " << name
                << " is not simulated (it gets exit 127)\n";
    }

    asio::io_context io(1);
    Server server(io, std::move(options), std::move(templates), std::move(commands));
    server.start();

    std::function<void(const char*)> shut_down = [&](const char* why) {
      std::cerr << "healer-fleet-sim: exiting (" << why << ")\n";
      server.stop();
      server.write_stats();
      io.stop();
    };
    asio::signal_set signals(io, SIGTERM, SIGINT, SIGUSR1);
    std::function<void(std::error_code, int)> on_signal = [&](std::error_code ec, int number) {
      if (ec) {
        return;
      }
      if (number == SIGUSR1) {
        server.write_stats();
        signals.async_wait(on_signal);
        return;
      }
      shut_down(number == SIGTERM ? "SIGTERM" : "SIGINT");
    };
    signals.async_wait(on_signal);
    asio::steady_timer lifetime(io);
    if (flags.max_lifetime > 0) {
      lifetime.expires_after(std::chrono::seconds(flags.max_lifetime));
      lifetime.async_wait([&](std::error_code ec) {
        if (!ec) {
          shut_down("max lifetime");
        }
      });
    }
    // PR_SET_PDEATHSIG follows the parent *thread*; this catches the parent process too.
    asio::steady_timer parent_check(io);
    std::function<void(std::error_code)> check_parent = [&](std::error_code ec) {
      if (ec) {
        return;
      }
      if (::kill(parent, 0) != 0 && errno == ESRCH) {
        shut_down("parent gone");
        return;
      }
      if (flags.parent_pid == 0 && ::getppid() != parent) {
        shut_down("parent gone");
        return;
      }
      parent_check.expires_after(std::chrono::seconds(1));
      parent_check.async_wait(check_parent);
    };
    parent_check.expires_after(std::chrono::seconds(1));
    parent_check.async_wait(check_parent);

    std::cout << "healer-fleet-sim: listening on port " << server.port() << ": " << flags.hosts
              << " hosts " << server.address(0) << " - " << server.address(flags.hosts - 1)
              << ", pid " << ::getpid() << ", fd limit " << fds << std::endl;
    io.run();
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "healer-fleet-sim: " << error.what() << '\n';
    return 2;
  }
}
