#include "healer/cli/cli.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <vector>

#include "app_command.hpp"
#include "command.hpp"
#include "diagnose_command.hpp"
#include "exec_command.hpp"
#include "healer/cli/exit_codes.hpp"
#include "metrics_command.hpp"
#include "server_command.hpp"

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

  const std::vector<Command> commands{
      add_exec_command(app),     add_server_command(app),  add_app_command(app),
      add_diagnose_command(app), add_metrics_command(app),
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  configure_logging(log_level);
  for (const auto& command : commands) {
    if (command.app->parsed()) {
      return command.run();
    }
  }
  return kExitUsage;
}

}  // namespace healer::cli
