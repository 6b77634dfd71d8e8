#include "healer/cli/cli.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdlib>

#include "exec_command.hpp"
#include "healer/cli/exit_codes.hpp"
#include "pool_options.hpp"

namespace healer::cli {
namespace {

// Logs go to stderr so stdout stays the command's own output.
void configure_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("healer");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"healer: agentless diagnosis and metrics for Linux servers over pooled SSH"};
  app.require_subcommand(1);
  std::string log_level = "error";
  if (const char* env = std::getenv("HEALER_LOG"); env != nullptr) {
    log_level = env;
  }
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off (env HEALER_LOG)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  ExecArgs exec;
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  configure_logging(log_level);
  if (exec_cmd->parsed()) {
    return run_exec(exec);
  }
  return kExitUsage;
}

}  // namespace healer::cli
