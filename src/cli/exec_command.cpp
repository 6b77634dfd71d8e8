#include "exec_command.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "daemon_client.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/service/control.hpp"
#include "healer/service/errors.hpp"
#include "healer/service/exec.hpp"
#include "healer/service/inventory.hpp"
#include "healer/service/json.hpp"
#include "values.hpp"

namespace healer::cli {
namespace {

constexpr std::size_t kMaxInputFile = std::size_t{64} << 20;

// Words split into commands at ":::" (as GNU parallel does).
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

// Remote output as it is when piped (byte for byte); on a terminal, with control characters
// escaped (a server's output must not drive the terminal).
void write_output(std::ostream& stream, const std::string& text, bool terminal) {
  if (terminal) {
    const auto safe = terminal_safe(text, true);
    stream.write(safe.data(), static_cast<std::streamsize>(safe.size()));
  } else {
    stream.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
}

// One server's results as before fan-out existed: the output of each command, "==> cmd <=="
// headers with several commands.
int print_single(const ExecArgs& args, const std::vector<std::string>& commands,
                 const service::ExecServerResult& server, const std::string& who) {
  const bool single = commands.size() == 1;
  const bool out_tty = stdout_is_terminal();
  const bool err_tty = stderr_is_terminal();
  int exit_code = 0;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const auto& result = server.results[i];
    if (!result) {
      std::cerr << terminal_safe(fmt::format("healer: exec on {} failed{}: {}", who,
                                             single ? "" : fmt::format(" for `{}`", commands[i]),
                                             result.error().message()))
                << '\n';
      if (exit_code == 0) {
        exit_code = exit_code_for(result.error());
      }
      continue;
    }
    if (!args.json) {
      if (!single) {
        std::cout << terminal_safe(
            fmt::format("==> {} <== (exit {})\n", commands[i], result->shell_exit_code()), true);
      }
      write_output(std::cout, result->out, out_tty);
      std::cout.flush();
      write_output(std::cerr, result->err, err_tty);
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
  return exit_code;
}

// The exit code of one command for the fan-out summary: its status, else its error's code.
int command_code(const Result<ssh::CommandResult>& result) {
  return result ? result->shell_exit_code() : exit_code_for(result.error());
}

// Several servers, grouped like `dshbak -c`: servers whose results are identical share one block
// headed by their names; exit code = the worst (highest) of all.
int print_fan_out(const ExecArgs& args, const std::vector<std::string>& commands,
                  const service::ExecOutcome& outcome) {
  const bool out_tty = stdout_is_terminal();
  std::map<std::string, std::vector<std::string>> groups;  // block text -> servers
  std::vector<std::string> order;
  int worst = 0;
  for (const auto& server : outcome.servers) {
    std::string block;
    for (std::size_t i = 0; i < commands.size(); ++i) {
      const auto& result = server.results[i];
      worst = std::max(worst, command_code(result));
      if (commands.size() > 1) {
        block += fmt::format("--- {} (exit {})\n", commands[i], command_code(result));
      }
      if (!result) {
        block += "healer: " + result.error().message() + "\n";
        continue;
      }
      block += result->out;
      if (!result->err.empty()) {
        block += result->err;
      }
      if (!result->out.empty() && result->out.back() != '\n') {
        block += '\n';
      }
      if (commands.size() == 1 && result->shell_exit_code() != 0) {
        block += fmt::format("(exit {})\n", result->shell_exit_code());
      }
    }
    auto [it, inserted] = groups.try_emplace(block);
    if (inserted) {
      order.push_back(block);
    }
    it->second.push_back(server.server);
  }
  for (const auto& block : order) {
    const auto& names = groups[block];
    const std::string header =
        fmt::format("----------------\n{}\n----------------\n", join(names, ","));
    std::cout << terminal_safe(header, true);
    write_output(std::cout, block, out_tty);
  }
  (void)args;
  return worst;
}

int run_exec(const ExecArgs& args, const std::vector<std::string>& after_dashdash) {
  auto timeout = timeout_from_seconds(args.timeout_s, "--timeout");
  if (!timeout) {
    return fail(timeout.error());
  }
  service::ExecRequest request;
  std::vector<std::string> command_words = after_dashdash;
  request.selection = args.selection;
  if (!args.host.empty()) {
    if (!args.words.empty() && after_dashdash.empty()) {
      command_words = args.words;  // `healer exec --host h cmd` (no "--") still works
    } else if (!args.words.empty()) {
      return usage("give either --host or server names, not both");
    }
    service::AdHocTarget target;
    target.host = args.host;
    target.port = args.port;
    target.user = args.user;
    target.auth = *service::parse_auth(args.auth == "key" ? "key" : args.auth);
    target.identity = args.identity;
    target.known_hosts = args.known_hosts;
    target.accept_new_host_key = args.accept_new_host_key;
    request.host = target;
  } else {
    request.selection.names.insert(request.selection.names.end(), args.words.begin(),
                                   args.words.end());
  }
  request.commands = split_commands(command_words);
  if (!args.commands_file.empty()) {
    auto text = read_user_file(args.commands_file, kMaxInputFile, "--commands");
    if (!text) {
      return fail(text.error());
    }
    std::size_t start = 0;
    while (start < text->size()) {
      auto end = text->find('\n', start);
      if (end == std::string::npos) {
        end = text->size();
      }
      auto line = text->substr(start, end - start);
      if (!line.empty() && line.front() != '#') {
        request.commands.push_back(std::move(line));
      }
      start = end + 1;
    }
  }
  if (request.commands.empty()) {
    return usage("no command given (after --, or with --commands FILE)");
  }
  if (!request.host && request.selection.empty()) {
    return usage("name servers, or use --tag TAG, --all or --host HOST");
  }
  if (!args.stdin_file.empty()) {
    auto data = read_user_file(args.stdin_file, kMaxInputFile, "--stdin-file");
    if (!data) {
      return fail(data.error());
    }
    request.stdin_data = std::move(*data);
  }
  request.max_output = args.max_output;
  request.timeout = *timeout;
  request.parallel = args.parallel;
  request.with_stats = args.stats;
  const auto commands = request.commands;

  // A daemon runs it on its warm pool, unless it needs a secret this process holds (a password,
  // a key passphrase): those never travel over the socket.
  const bool needs_local_secret =
      request.host && (request.host->auth == store::AuthMethod::password ||
                       std::getenv("HEALER_KEY_PASSPHRASE") != nullptr);
  if (request.host) {
    // The daemon may run as another user with another home: paths are resolved here.
    auto& host = *request.host;
    host.user = host.user.empty() ? service::local_user() : host.user;
    if (host.auth == store::AuthMethod::key_file && host.identity.empty()) {
      host.identity = service::default_identity();
    }
    if (!host.identity.empty()) {
      host.identity = std::filesystem::absolute(host.identity).string();
    }
    host.known_hosts =
        std::filesystem::absolute(host.known_hosts.empty() ? service::default_known_hosts()
                                                           : host.known_hosts)
            .string();
  }
  int interrupted = 0;
  Result<service::ExecOutcome> outcome;
  auto daemon = daemon_for(args.store, args.pool, args.no_daemon || needs_local_secret);
  if (!daemon) {
    return fail(daemon.error());
  }
  if (*daemon) {
    auto reply = call_daemon(**daemon, "exec", service::control::to_json(request));
    outcome = reply ? service::exec_outcome_from_json(*reply)
                    : Result<service::ExecOutcome>(reply.error());
  } else {
    auto runtime = open_runtime(args.store, args.pool, !request.host.has_value());
    if (!runtime) {
      return fail(runtime.error());
    }
    if (request.host && request.host->auth == store::AuthMethod::password &&
        !(*runtime)->secrets().password) {
      return usage("--auth password needs the password in HEALER_PASSWORD");
    }
    outcome =
        (*runtime)->run_one_shot(service::async_exec(**runtime, std::move(request)), &interrupted);
  }
  if (!outcome) {
    return fail(outcome.error());
  }
  int exit_code = 0;
  if (outcome->servers.size() == 1 && args.host.size() > 0) {
    const auto& server = outcome->servers.front();
    if (args.json) {
      service::Json doc;
      if (commands.size() == 1) {
        doc = service::to_json(commands.front(), server.results.front(), service::Wire::text);
        doc["host"] = args.host;
        doc["port"] = args.port;
      } else {
        doc["host"] = args.host;
        doc["port"] = args.port;
        doc["results"] = service::Json::array();
        for (std::size_t i = 0; i < commands.size(); ++i) {
          doc["results"].push_back(
              service::to_json(commands[i], server.results[i], service::Wire::text));
        }
      }
      doc["healer_version"] = service::version();
      if (outcome->stats) {
        doc["pool"] = service::to_json(*outcome->stats);
      }
      std::cout << service::dump(doc, 2) << '\n';
    }
    const std::string who = args.user.empty() ? args.host : args.user + "@" + args.host;
    exit_code = print_single(args, commands, server, who);
  } else if (args.json) {
    std::cout << service::dump(service::to_json(*outcome, commands, service::Wire::text), 2)
              << '\n';
    for (const auto& server : outcome->servers) {
      for (const auto& result : server.results) {
        exit_code = std::max(exit_code, command_code(result));
      }
    }
  } else {
    exit_code = print_fan_out(args, commands, *outcome);
  }
  if (args.stats && !args.json && outcome->stats) {
    print_stats(*outcome->stats);
  }
  if (interrupted != 0) {
    return 128 + interrupted;
  }
  return exit_code;
}

}  // namespace

Command add_exec_command(CLI::App& app, const std::vector<std::string>* after_dashdash) {
  auto args = std::make_shared<ExecArgs>();
  auto& exec = *args;
  auto* exec_cmd = app.add_subcommand(
      "exec",
      "Run commands on a host, or on inventory servers (names, --tag, --all) in parallel, "
      "through the connection pool (one connection per server)");
  exec_cmd->add_option("--host", exec.host, "Host name or address (instead of inventory names)");
  exec_cmd->add_option("--port,-p", exec.port, "SSH port (decimal)")->check(decimal_port());
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
  exec_cmd->add_option("--tag,-t", exec.selection.tags, "Every server with this tag (repeatable)");
  exec_cmd->add_flag("--all,-a", exec.selection.all, "Every server in the inventory");
  exec_cmd->add_option("--timeout", exec.timeout_s,
                       "Deadline for the whole run (queueing, connecting, running), in seconds");
  exec_cmd
      ->add_option("--max-output", exec.max_output,
                   "Bytes kept per stream; the rest is counted and dropped")
      ->check(CLI::PositiveNumber);
  exec_cmd->add_option("--parallel", exec.parallel, "Servers at once (inventory servers)")
      ->check(CLI::Range(1, 10000));
  exec_cmd->add_option("--stdin-file", exec.stdin_file,
                       "Send this file ('-' = stdin) to each command as stdin");
  exec_cmd->add_option("--commands", exec.commands_file,
                       "Read commands from FILE, one per line ('#' starts a comment)");
  exec_cmd->add_flag("--json", exec.json, "Print JSON instead of the raw output");
  exec_cmd->add_flag("--stats", exec.stats, "Print the connection pool's stats after the run");
  exec_cmd
      ->add_option("words", exec.words,
                   "Server names; the remote command(s) go after --, several separated "
                   "with :::")
      ->type_name("SERVER");
  add_store_options(*exec_cmd, exec.store);
  add_daemon_option(*exec_cmd, exec.no_daemon);
  add_pool_options(*exec_cmd, exec.pool);
  return Command{exec_cmd, [args, after_dashdash] { return run_exec(*args, *after_dashdash); }};
}

}  // namespace healer::cli
