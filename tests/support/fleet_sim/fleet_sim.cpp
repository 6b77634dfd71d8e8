#include "fleet_sim.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>

#include "poll_until.hpp"

namespace healer::test {
namespace {

using std::chrono::milliseconds;

constexpr const char* kSimPath = HEALER_FLEET_SIM_PATH;
constexpr const char* kSshKeygenPath = "/usr/bin/ssh-keygen";
constexpr std::string_view kReadyLine = "listening on port ";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string tail_lines(const std::string& text, std::size_t count) {
  std::size_t start = text.size();
  for (std::size_t seen = 0; seen <= count && start > 0; ++seen) {
    const auto newline = text.rfind('\n', start - 1);
    if (newline == std::string::npos) {
      return text;
    }
    start = newline;
  }
  return text.substr(start);
}

std::uint64_t number(const nlohmann::json& json, const char* key) {
  return json.value(key, std::uint64_t{0});
}

}  // namespace

FleetSim::FleetSim() : FleetSim(Options{}) {}

FleetSim::FleetSim(Options options) : options_(std::move(options)), dir_("healer-fleet-") {
  generate_key(client_key_path());
  std::filesystem::copy_file(client_key_path().string() + ".pub", authorized_keys_path());
  std::filesystem::create_directory(host_authorized_keys_dir());
  if (!options_.responses.empty()) {
    nlohmann::json responses = nlohmann::json::array();
    for (const auto& response : options_.responses) {
      responses.push_back({{"command", response.command},
                           {"out", response.out},
                           {"err", response.err},
                           {"exit_status", response.exit_status}});
    }
    std::ofstream(dir() / "responses.json")
        << responses.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

FleetSim::~FleetSim() {
  try {
    stop();
    if (::testing::Test::HasFailure()) {
      dump_log_tail(60);
    }
  } catch (const std::exception& error) {
    std::cerr << "FleetSim teardown: " << error.what() << '\n';
  }
}

void FleetSim::generate_key(const std::filesystem::path& path) const {
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + ".pub");
  const auto result = run_command({kSshKeygenPath, "-q", "-t", "ed25519", "-N", "", "-C",
                                   "healer-fleet-sim", "-f", path.string()},
                                  milliseconds(20000));
  if (result.exit_code() != 0) {
    throw std::runtime_error("ssh-keygen failed: " + result.err);
  }
}

FleetSim::ClientKey FleetSim::add_client_key(bool authorized) {
  ClientKey key;
  key.private_key = dir() / fmt::format("client_extra_{}", ++extra_keys_);
  key.public_key = key.private_key.string() + ".pub";
  generate_key(key.private_key);
  if (authorized) {
    std::ofstream(authorized_keys_path(), std::ios::app) << read_file(key.public_key);
  }
  return key;
}

void FleetSim::authorize_on_host(std::size_t index, const std::filesystem::path& public_key) {
  std::ofstream(host_authorized_keys_dir() / host(index), std::ios::app) << read_file(public_key);
}

std::string FleetSim::host(std::size_t index) const {
  in_addr first{};
  if (::inet_pton(AF_INET, options_.first_address.c_str(), &first) != 1) {
    throw std::invalid_argument("bad first address " + options_.first_address);
  }
  const in_addr address{htonl(ntohl(first.s_addr) + static_cast<std::uint32_t>(index))};
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address, text, sizeof text);
  return text;
}

std::vector<std::string> FleetSim::argv() const {
  std::vector<std::string> args = {
      kSimPath,
      "--hosts",
      std::to_string(options_.hosts),
      "--first-address",
      options_.first_address,
      "--port",
      std::to_string(port_),
      "--user",
      user_,
      "--authorized-keys",
      authorized_keys_path().string(),
      "--host-authorized-keys",
      host_authorized_keys_dir().string(),
      "--host-key-seed",
      std::to_string(host_key_seed_),
      "--seed",
      std::to_string(options_.seed),
      "--latency",
      options_.latency,
      "--refuse-rate",
      fmt::format("{}", options_.refuse_rate),
      "--stall-rate",
      fmt::format("{}", options_.stall_rate),
      "--auth-fail-rate",
      fmt::format("{}", options_.auth_fail_rate),
      "--drop-rate",
      fmt::format("{}", options_.drop_rate),
      "--hang-rate",
      fmt::format("{}", options_.hang_rate),
      "--max-sessions",
      std::to_string(options_.max_sessions),
      "--known-hosts",
      (dir() / "known_hosts.generated").string(),
      "--stats-file",
      (dir() / "stats.json").string(),
      "--max-lifetime",
      std::to_string(options_.max_lifetime.count()),
  };
  for (const auto& profile : options_.profiles) {
    args.insert(args.end(), {"--profile", profile});
  }
  if (!options_.proc_template.empty()) {
    args.insert(args.end(), {"--proc-template", options_.proc_template.string()});
  }
  if (!options_.responses.empty()) {
    args.insert(args.end(), {"--responses", (dir() / "responses.json").string()});
  }
  if (options_.known_hosts_per_host) {
    args.insert(args.end(), {"--known-hosts-dir", (dir() / "known_hosts.d.generated").string()});
  }
  if (options_.verbose) {
    args.emplace_back("--verbose");
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  return args;
}

void FleetSim::start() {
  if (process_) {
    return;
  }
  const auto log_offset = read_file(log_path()).size();
  process_.emplace(ChildProcess::spawn(argv(), log_path()));
  std::string ready;
  const bool up = poll_until(
      [&] {
        const auto text = read_file(log_path());
        const auto at = text.find(kReadyLine, log_offset);
        if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
          ready = text.substr(at + kReadyLine.size());
          return true;
        }
        return !process_->running();
      },
      milliseconds(30000), milliseconds(10));
  if (!up || ready.empty()) {
    process_.reset();
    throw std::runtime_error("healer-fleet-sim did not come up:\n" +
                             tail_lines(read_file(log_path()), 30));
  }
  port_ = static_cast<std::uint16_t>(std::stoul(ready));
  if (!known_hosts_written_) {
    trust_current_host_keys();
  }
}

void FleetSim::trust_current_host_keys() {
  std::filesystem::copy_file(dir() / "known_hosts.generated", known_hosts_path(),
                             std::filesystem::copy_options::overwrite_existing);
  if (options_.known_hosts_per_host) {
    std::filesystem::remove_all(dir() / "known_hosts.d");
    std::filesystem::copy(dir() / "known_hosts.d.generated", dir() / "known_hosts.d");
  }
  known_hosts_written_ = true;
}

void FleetSim::stop() {
  if (!process_) {
    return;
  }
  process_->signal(SIGTERM);
  auto status = process_->wait_for_exit(milliseconds(5000));
  if (!status) {
    process_->signal(SIGKILL);
    (void)process_->wait_for_exit(milliseconds(3000));
  }
  process_.reset();
  // SIGTERM makes it disconnect everyone and exit 0: anything else (a crash, a sanitizer
  // report) is a failure of the test bed the test must show.
  if (!status || status->exit_code != 0) {
    dump_log_tail(40);
    ADD_FAILURE() << "healer-fleet-sim did not exit cleanly on SIGTERM: "
                  << (!status                    ? std::string("still running after 5 s")
                      : status->term_signal != 0 ? fmt::format("signal {}", status->term_signal)
                                                 : fmt::format("exit {}", status->exit_code));
  }
}

void FleetSim::kill() {
  if (process_) {
    process_->signal(SIGKILL);
    (void)process_->wait_for_exit(milliseconds(3000));
    process_.reset();
  }
}

void FleetSim::restart() {
  stop();
  start();
}

void FleetSim::change_host_keys() {
  ++host_key_seed_;
  if (process_) {
    restart();
  }
}

FleetSim::Stats FleetSim::stats() const {
  if (!process_) {
    throw std::runtime_error("FleetSim::stats: the simulator is not running");
  }
  const auto file = dir() / "stats.json";
  ::kill(process_->pid(), SIGUSR1);
  nlohmann::json json;
  const bool answered = poll_until(
      [&] {
        const auto text = read_file(file);
        if (text.empty()) {
          return false;
        }
        json = nlohmann::json::parse(text, nullptr, false);
        return !json.is_discarded() && number(json, "generation") > stats_generation_;
      },
      milliseconds(5000), milliseconds(2));
  if (!answered) {
    throw std::runtime_error("healer-fleet-sim did not write its stats");
  }
  stats_generation_ = number(json, "generation");
  Stats stats;
  stats.connections = number(json, "connections");
  stats.refused = number(json, "refused");
  stats.stalled = number(json, "stalled");
  stats.key_exchanges = number(json, "key_exchanges");
  stats.auth_requests = number(json, "auth_requests");
  stats.auth_successes = number(json, "auth_successes");
  stats.auth_failures = number(json, "auth_failures");
  stats.channels_opened = number(json, "channels_opened");
  stats.channels_refused = number(json, "channels_refused");
  stats.commands = number(json, "commands");
  stats.commands_answered = number(json, "commands_answered");
  stats.commands_signalled = number(json, "commands_signalled");
  stats.commands_abandoned = number(json, "commands_abandoned");
  stats.commands_dropped = number(json, "commands_dropped");
  stats.signals = number(json, "signals");
  stats.sessions_open = number(json, "sessions_open");
  stats.sessions_peak = number(json, "sessions_peak");
  stats.channels_open = number(json, "channels_open");
  if (json.contains("commands_by_kind")) {
    stats.commands_by_kind = json["commands_by_kind"].get<std::map<std::string, std::uint64_t>>();
  }
  stats.raw = std::move(json);
  return stats;
}

std::string FleetSim::log_text() const { return read_file(log_path()); }

void FleetSim::dump_log_tail(std::size_t lines) const {
  std::cerr << "---- healer-fleet-sim log tail (" << log_path().string() << ") ----\n"
            << tail_lines(log_text(), lines) << "\n---- end of healer-fleet-sim log ----\n";
}

}  // namespace healer::test
