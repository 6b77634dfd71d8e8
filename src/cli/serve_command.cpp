#include "serve_command.hpp"

#include <CLI/CLI.hpp>
#include <memory>

#include "common.hpp"
#include "healer/cli/exit_codes.hpp"
#include "pool_options.hpp"

namespace healer::cli {
namespace {

struct ServeArgs {
  StoreArgs store;
  PoolOptionValues pool;
  std::string listen;
  bool check_config = false;
  bool print_token = false;
};

}  // namespace

Command add_serve_command(CLI::App& app, const service::ServeEntry& serve,
                          const std::string& log_level) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve",
      "Run the daemon: one warm pool for scheduled metrics and diagnoses, the CLI (through a "
      "control socket next to the database), the HTTP API, /metrics and the dashboard "
      "(default http://127.0.0.1:7464); SIGTERM stops it, SIGHUP reloads the config file");
  cmd->add_option("--listen", args->listen,
                  "HTTP address, ADDR:PORT (default 127.0.0.1:7464; beyond loopback needs TLS "
                  "and the token for every call)");
  cmd->add_flag("--check-config", args->check_config, "Validate the config file and exit");
  cmd->add_flag("--print-token", args->print_token,
                "Print the API token (created on first use, api.token next to the database) and "
                "exit");
  add_store_options(*cmd, args->store);
  add_pool_options(*cmd, args->pool);
  return Command{cmd, [args, &serve, &log_level] {
                   if (!serve) {
                     return usage("this build has no daemon");
                   }
                   service::ServeOptions options;
                   options.config_file = args->pool.config_file;
                   options.pool_flags = args->pool.flags;
                   if (!args->store.db.empty()) {
                     options.db = args->store.db;
                   }
                   if (!args->listen.empty()) {
                     options.listen = args->listen;
                   }
                   options.check_config = args->check_config;
                   options.print_token = args->print_token;
                   options.log_level = log_level == "error" ? "info" : log_level;
                   return serve(options);
                 }};
}

}  // namespace healer::cli
