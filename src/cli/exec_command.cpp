#include "exec_command.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "healer/cli/exit_codes.hpp"
#include "healer/ssh/session.hpp"

namespace healer::cli {
namespace {

namespace fs = std::filesystem;

std::string home_dir() {
  const char* home = std::getenv("HOME");
  return home != nullptr ? home : "";
}

// OpenSSH's default identities, in its order, for users who pass no --identity.
std::string default_identity() {
  for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
    const auto path = fs::path(home_dir()) / ".ssh" / name;
    if (fs::exists(path)) {
      return path.string();
    }
  }
  return (fs::path(home_dir()) / ".ssh" / "id_ed25519").string();
}

std::string join_command(const std::vector<std::string>& words) {
  std::string joined;
  for (const auto& word : words) {
    if (!joined.empty()) {
      joined += ' ';
    }
    joined += word;
  }
  return joined;
}

std::chrono::milliseconds seconds_to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000.0));
}

double ms(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; }

struct Outcome {
  Result<ssh::CommandResult> result = Error{};
  std::string fingerprint;
  std::chrono::microseconds connect_time{0};
};

asio::awaitable<Outcome> run_once(ssh::Endpoint endpoint, ssh::ConnectOptions options,
                                  std::string command, ssh::ExecOptions exec_options,
                                  Deadline connect_deadline, Deadline deadline) {
  Outcome outcome;
  const auto started = Clock::now();
  auto session = co_await ssh::Session::async_connect(std::move(endpoint), std::move(options),
                                                      connect_deadline);
  outcome.connect_time =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  if (!session) {
    outcome.result = std::move(session).error();
    co_return outcome;
  }
  outcome.fingerprint = session->host_key_fingerprint();
  outcome.result =
      co_await session->async_exec(std::move(command), std::move(exec_options), deadline);
  co_await session->async_close(Deadline::after(std::chrono::seconds(1)));
  co_return outcome;
}

std::optional<std::string> read_stdin_file(const std::string& path) {
  if (path.empty()) {
    return std::string{};
  }
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), {});
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void print_json(const ExecArgs& args, const std::string& command, const Outcome& outcome) {
  nlohmann::json doc;
  doc["host"] = args.host;
  doc["port"] = args.port;
  doc["command"] = command;
  doc["connect_ms"] = ms(outcome.connect_time);
  if (!outcome.fingerprint.empty()) {
    doc["host_key_fingerprint"] = outcome.fingerprint;
  }
  if (outcome.result) {
    const auto& r = *outcome.result;
    doc["ok"] = true;
    doc["exit_status"] = r.exit_status ? nlohmann::json(*r.exit_status) : nlohmann::json(nullptr);
    doc["exit_signal"] =
        r.exit_signal.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.exit_signal);
    // Output may not be UTF-8; replace invalid bytes rather than fail.
    doc["stdout"] = r.out;
    doc["stderr"] = r.err;
    doc["stdout_truncated"] = r.out_truncated;
    doc["stderr_truncated"] = r.err_truncated;
    doc["stdout_bytes"] = r.out_bytes;
    doc["stderr_bytes"] = r.err_bytes;
    doc["open_ms"] = ms(r.timing.open);
    doc["run_ms"] = ms(r.timing.run);
  } else {
    const auto& e = outcome.result.error();
    doc["ok"] = false;
    doc["error"] = {{"code", e.code.category() == ssh::error_category()
                                 ? ssh::errc_name(static_cast<ssh::Errc>(e.code.value()))
                                 : e.code.message()},
                    {"message", e.message()}};
  }
  std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

}  // namespace

int run_exec(const ExecArgs& args) {
  ssh::Endpoint endpoint{args.host, args.port};
  ssh::ConnectOptions options;
  options.user = args.user;
  options.known_hosts_file = args.known_hosts.empty()
                                 ? (fs::path(home_dir()) / ".ssh" / "known_hosts").string()
                                 : args.known_hosts;
  options.host_key_policy =
      args.accept_new_host_key ? ssh::HostKeyPolicy::accept_new : ssh::HostKeyPolicy::strict;
  if (args.auth == "agent") {
    options.auth = ssh::AuthMethod::agent;
    options.identity_file = args.identity;
  } else if (args.auth == "password") {
    options.auth = ssh::AuthMethod::password;
    const char* password = std::getenv("HEALER_PASSWORD");
    if (password == nullptr) {
      std::cerr << "healer: --auth password needs the password in HEALER_PASSWORD\n";
      return kExitUsage;
    }
    options.password = password;
  } else {
    options.auth = ssh::AuthMethod::key_file;
    options.identity_file = args.identity.empty() ? default_identity() : args.identity;
    if (const char* passphrase = std::getenv("HEALER_KEY_PASSPHRASE"); passphrase != nullptr) {
      options.passphrase = passphrase;
    }
  }
  auto stdin_data = read_stdin_file(args.stdin_file);
  if (!stdin_data) {
    std::cerr << fmt::format("healer: cannot read --stdin-file {}\n", args.stdin_file);
    return kExitUsage;
  }
  ssh::ExecOptions exec_options;
  exec_options.max_output = args.max_output;
  exec_options.stdin_data = std::move(*stdin_data);

  const std::string command = join_command(args.command);
  const auto deadline = Deadline::after(seconds_to_ms(args.timeout_s));
  const auto connect_deadline =
      deadline.min(Deadline::after(seconds_to_ms(args.connect_timeout_s)));

  asio::io_context io;
  std::optional<Outcome> outcome;
  asio::co_spawn(io,
                 run_once(std::move(endpoint), std::move(options), command, std::move(exec_options),
                          connect_deadline, deadline),
                 [&outcome](std::exception_ptr failure, Outcome value) {
                   if (failure) {
                     std::rethrow_exception(failure);
                   }
                   outcome = std::move(value);
                 });
  io.run();

  if (args.json) {
    print_json(args, command, *outcome);
  }
  if (!outcome->result) {
    const auto& error = outcome->result.error();
    const std::string who = args.user.empty() ? args.host : args.user + "@" + args.host;
    std::cerr << fmt::format("healer: exec on {} failed: {}\n", who, error.message());
    return exit_code_for(error);
  }
  const auto& result = *outcome->result;
  if (!args.json) {
    std::cout.write(result.out.data(), static_cast<std::streamsize>(result.out.size()));
    std::cout.flush();
    std::cerr.write(result.err.data(), static_cast<std::streamsize>(result.err.size()));
    if (result.out_truncated || result.err_truncated) {
      std::cerr << fmt::format(
          "healer: output truncated to {} bytes per stream ({} stdout, {} stderr bytes in all)\n",
          args.max_output, result.out_bytes, result.err_bytes);
    }
  }
  return result.shell_exit_code();
}

}  // namespace healer::cli
