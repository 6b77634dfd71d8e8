#include "exec_command.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "healer/cli/exit_codes.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/pool.hpp"
#include "healer/ssh/errors.hpp"
#include "inventory.hpp"

namespace healer::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kServerId = "cli";

// Words after "--", split into commands at ":::" (as GNU parallel does).
std::vector<std::string> split_commands(const std::vector<std::string>& words) {
  std::vector<std::string> commands(1);
  for (const auto& word : words) {
    if (word == ":::") {
      commands.emplace_back();
      continue;
    }
    if (!commands.back().empty()) {
      commands.back() += ' ';
    }
    commands.back() += word;
  }
  std::erase_if(commands, [](const std::string& command) { return command.empty(); });
  return commands;
}

std::optional<std::string> read_file(const std::string& path) {
  if (path == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), {});
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

double ms(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; }

std::string error_name(const Error& error) {
  if (error.code.category() == ssh::error_category()) {
    return ssh::errc_name(static_cast<ssh::Errc>(error.code.value()));
  }
  if (error.code.category() == pool::error_category()) {
    return pool::errc_name(static_cast<pool::Errc>(error.code.value()));
  }
  return error.code.message();
}

nlohmann::json result_json(const std::string& command, const Result<ssh::CommandResult>& result) {
  nlohmann::json doc;
  doc["command"] = command;
  if (!result) {
    doc["ok"] = false;
    doc["error"] = {{"code", error_name(result.error())}, {"message", result.error().message()}};
    return doc;
  }
  const auto& r = *result;
  doc["ok"] = true;
  doc["exit_status"] = r.exit_status ? nlohmann::json(*r.exit_status) : nlohmann::json(nullptr);
  doc["exit_signal"] =
      r.exit_signal.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.exit_signal);
  doc["stdout"] = r.out;
  doc["stderr"] = r.err;
  doc["stdout_truncated"] = r.out_truncated;
  doc["stderr_truncated"] = r.err_truncated;
  doc["stdout_bytes"] = r.out_bytes;
  doc["stderr_bytes"] = r.err_bytes;
  doc["host_key_fingerprint"] = r.host_key_fingerprint;
  doc["session_reused"] = r.session_reused;
  doc["queue_ms"] = ms(r.timing.queue);
  doc["open_ms"] = ms(r.timing.open);
  doc["run_ms"] = ms(r.timing.run);
  return doc;
}

nlohmann::json stats_json(const pool::PoolStats& stats) {
  return {{"sessions_ready", stats.sessions_ready},
          {"sessions_opened", stats.sessions_opened},
          {"handshakes_started", stats.handshakes_started},
          {"handshakes_failed", stats.handshakes_failed},
          {"acquisitions", stats.acquisitions},
          {"hit_rate", stats.hit_rate()},
          {"reuse", stats.reuse()},
          {"exhausted", stats.exhausted},
          {"timeouts", stats.timeouts},
          {"channel_limit_lowered", stats.channel_limit_lowered},
          {"handshake_ms_p50", static_cast<double>(stats.handshake_time.quantile_us(0.5)) / 1000},
          {"wait_ms_p50", static_cast<double>(stats.wait_time.quantile_us(0.5)) / 1000},
          {"wait_ms_p99", static_cast<double>(stats.wait_time.quantile_us(0.99)) / 1000}};
}

void print_stats(const pool::PoolStats& stats) {
  std::cerr << fmt::format(
      "pool: {} connection(s) opened, {} handshake(s) ({} failed), {} acquisitions, hit rate "
      "{:.0f}%, {:.1f} commands per connection, {} exhausted, {} timeouts, handshake p50 {:.1f} "
      "ms, wait p50 {:.2f} ms\n",
      stats.sessions_opened, stats.handshakes_started, stats.handshakes_failed, stats.acquisitions,
      stats.hit_rate() * 100, stats.reuse(), stats.exhausted, stats.timeouts,
      static_cast<double>(stats.handshake_time.quantile_us(0.5)) / 1000,
      static_cast<double>(stats.wait_time.quantile_us(0.5)) / 1000);
}

struct Outcome {
  std::vector<Result<ssh::CommandResult>> results;
  pool::PoolStats stats;
};

asio::awaitable<Outcome> run_through_pool(pool::Server server, PoolConfig config,
                                          std::vector<std::string> commands,
                                          exec::RunOptions options) {
  auto executor = co_await asio::this_coro::executor;
  pool::Registry registry(executor, std::move(config));
  registry.add_server(std::move(server));
  exec::Executor runner(registry);
  Outcome outcome;
  outcome.results =
      co_await runner.async_run_all(kServerId, std::move(commands), std::move(options));
  co_await registry.async_shutdown(Deadline::after(std::chrono::seconds(2)));
  outcome.stats = registry.stats(kServerId);
  co_return outcome;
}

}  // namespace

int run_exec(const ExecArgs& args) {
  auto config = resolve_pool_config(args.pool);
  if (!config) {
    std::cerr << "healer: " << config.error().message() << '\n';
    return kExitUsage;
  }
  std::vector<std::string> commands = split_commands(args.command);
  if (!args.commands_file.empty()) {
    auto text = read_file(args.commands_file);
    if (!text) {
      std::cerr << fmt::format("healer: cannot read --commands {}\n", args.commands_file);
      return kExitUsage;
    }
    std::size_t start = 0;
    while (start < text->size()) {
      auto end = text->find('\n', start);
      if (end == std::string::npos) {
        end = text->size();
      }
      auto line = text->substr(start, end - start);
      if (!line.empty() && line.front() != '#') {
        commands.push_back(std::move(line));
      }
      start = end + 1;
    }
  }
  if (commands.empty()) {
    std::cerr << "healer: no command given (after --, or with --commands FILE)\n";
    return kExitUsage;
  }

  pool::Server server;
  server.id = kServerId;
  server.endpoint = ssh::Endpoint(args.host, args.port);
  server.connect.user = args.user;
  server.connect.known_hosts_file =
      args.known_hosts.empty() ? default_known_hosts() : args.known_hosts;
  server.connect.host_key_policy =
      args.accept_new_host_key ? ssh::HostKeyPolicy::accept_new : ssh::HostKeyPolicy::strict;
  if (args.auth == "agent") {
    server.connect.auth = ssh::AuthMethod::agent;
    server.connect.identity_file = args.identity;
  } else if (args.auth == "password") {
    server.connect.auth = ssh::AuthMethod::password;
    const char* password = std::getenv("HEALER_PASSWORD");
    if (password == nullptr) {
      std::cerr << "healer: --auth password needs the password in HEALER_PASSWORD\n";
      return kExitUsage;
    }
    server.connect.password = password;
  } else {
    server.connect.auth = ssh::AuthMethod::key_file;
    server.connect.identity_file = args.identity.empty() ? default_identity() : args.identity;
    if (const char* passphrase = std::getenv("HEALER_KEY_PASSPHRASE"); passphrase != nullptr) {
      server.connect.passphrase = passphrase;
    }
  }

  exec::RunOptions options;
  options.max_output = args.max_output;
  options.deadline = Deadline::after(
      std::chrono::milliseconds(static_cast<std::int64_t>(args.timeout_s * 1000.0)));
  if (!args.stdin_file.empty()) {
    auto stdin_data = read_file(args.stdin_file);
    if (!stdin_data) {
      std::cerr << fmt::format("healer: cannot read --stdin-file {}\n", args.stdin_file);
      return kExitUsage;
    }
    options.stdin_data = std::move(*stdin_data);
  }

  asio::io_context io;
  std::optional<Outcome> outcome;
  asio::co_spawn(io, run_through_pool(std::move(server), std::move(*config), commands, options),
                 [&outcome](std::exception_ptr failure, Outcome value) {
                   if (failure) {
                     std::rethrow_exception(failure);
                   }
                   outcome = std::move(value);
                 });
  io.run();

  const bool single = commands.size() == 1;
  if (args.json) {
    nlohmann::json doc;
    if (single) {
      doc = result_json(commands.front(), outcome->results.front());
      doc["host"] = args.host;
      doc["port"] = args.port;
    } else {
      doc["host"] = args.host;
      doc["port"] = args.port;
      doc["results"] = nlohmann::json::array();
      for (std::size_t i = 0; i < commands.size(); ++i) {
        doc["results"].push_back(result_json(commands[i], outcome->results[i]));
      }
    }
    if (args.stats) {
      doc["pool"] = stats_json(outcome->stats);
    }
    std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }

  int exit_code = 0;
  const std::string who = args.user.empty() ? args.host : args.user + "@" + args.host;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const auto& result = outcome->results[i];
    if (!result) {
      std::cerr << fmt::format("healer: exec on {} failed{}: {}\n", who,
                               single ? "" : fmt::format(" for `{}`", commands[i]),
                               result.error().message());
      if (exit_code == 0) {
        exit_code = exit_code_for(result.error());
      }
      continue;
    }
    if (!args.json) {
      if (!single) {
        std::cout << fmt::format("==> {} <== (exit {})\n", commands[i], result->shell_exit_code());
      }
      std::cout.write(result->out.data(), static_cast<std::streamsize>(result->out.size()));
      std::cout.flush();
      std::cerr.write(result->err.data(), static_cast<std::streamsize>(result->err.size()));
      if (result->out_truncated || result->err_truncated) {
        std::cerr << fmt::format(
            "healer: output truncated to {} bytes per stream ({} stdout, {} stderr bytes in "
            "all)\n",
            args.max_output, result->out_bytes, result->err_bytes);
      }
    }
    if (exit_code == 0) {
      exit_code = result->shell_exit_code();
    }
  }
  if (args.stats && !args.json) {
    print_stats(outcome->stats);
  }
  return exit_code;
}

Command add_exec_command(CLI::App& app) {
  auto args = std::make_shared<ExecArgs>();
  auto& exec = *args;
  auto* exec_cmd = app.add_subcommand(
      "exec", "Run commands on a host through the connection pool (concurrently, one connection)");
  exec_cmd->add_option("--host", exec.host, "Host name or address")->required();
  exec_cmd->add_option("--port,-p", exec.port, "SSH port")->check(CLI::Range(1, 65535));
  exec_cmd->add_option("--user,-l", exec.user, "Remote user (default: the local user)");
  exec_cmd
      ->add_option("--auth", exec.auth, "key | agent | password (password from HEALER_PASSWORD)")
      ->check(CLI::IsMember({"key", "agent", "password"}));
  exec_cmd->add_option("--identity,-i", exec.identity,
                       "Private key file (default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa); "
                       "passphrase from HEALER_KEY_PASSPHRASE");
  exec_cmd->add_option("--known-hosts", exec.known_hosts,
                       "known_hosts file (default: ~/.ssh/known_hosts)");
  exec_cmd->add_flag("--accept-new-host-key", exec.accept_new_host_key,
                     "Record the key of a host not yet in known_hosts (trust on first use); a "
                     "changed key is always refused");
  exec_cmd
      ->add_option("--timeout", exec.timeout_s,
                   "Deadline for the whole run (queueing, connecting, running), in seconds")
      ->check(CLI::PositiveNumber);
  exec_cmd
      ->add_option("--max-output", exec.max_output,
                   "Bytes kept per stream; the rest is counted and dropped")
      ->check(CLI::PositiveNumber);
  exec_cmd->add_option("--stdin-file", exec.stdin_file,
                       "Send this file ('-' = stdin) to each command as stdin");
  exec_cmd->add_option("--commands", exec.commands_file,
                       "Read commands from FILE, one per line ('#' starts a comment)");
  exec_cmd->add_flag("--json", exec.json, "Print JSON instead of the raw output");
  exec_cmd->add_flag("--stats", exec.stats, "Print the connection pool's stats after the run");
  exec_cmd->add_option("command", exec.command,
                       "The remote command(s), after --; separate several with :::");
  add_pool_options(*exec_cmd, exec.pool);
  return Command{exec_cmd, [args] { return run_exec(*args); }};
}

}  // namespace healer::cli
