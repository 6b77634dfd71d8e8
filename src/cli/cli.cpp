#include "healer/cli/cli.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "app_command.hpp"
#include "command.hpp"
#include "common.hpp"
#include "diagnose_command.hpp"
#include "exec_command.hpp"
#include "heal_command.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/service/json.hpp"
#include "metrics_command.hpp"
#include "serve_command.hpp"
#include "server_command.hpp"

namespace healer::cli {
namespace {

constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};

bool known_level(std::string_view level) {
  for (const auto known : kLogLevels) {
    if (level == known) {
      return true;
    }
  }
  return false;
}

// Logs go to stderr so stdout stays the command's own output.
void configure_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("healer");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

// Secrets (passwords, decrypted keys) live in this process's memory: no core file may keep them,
// and no other process of the same user may read them through ptrace or /proc/PID/mem.
void protect_secrets_in_memory() {
  const rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

}  // namespace

int run(int argc, char** argv, const service::ServeEntry& serve) {
  protect_secrets_in_memory();
  // Words after the first "--" are a remote command (`healer exec ... -- CMD`), never options or
  // server names: they are split off before CLI11 sees them.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<std::string> after_dashdash;
  bool has_dashdash = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--") {
      after_dashdash.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      args.resize(i);
      has_dashdash = true;
      break;
    }
  }

  CLI::App app{"healer: agentless diagnosis and metrics for Linux servers over pooled SSH"};
  app.require_subcommand(0, 1);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print healer's version and exit");
  std::string log_level = "error";
  if (const char* env = std::getenv("HEALER_LOG"); env != nullptr && *env != '\0') {
    if (!known_level(env)) {
      return usage(
          fmt::format("HEALER_LOG='{}' is not a log level (trace, debug, info, warn, "
                      "error, critical, off)",
                      env));
    }
    log_level = env;
  }
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off (env HEALER_LOG)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

  const std::vector<Command> commands{
      add_exec_command(app, &after_dashdash),
      add_server_command(app),
      add_app_command(app),
      add_diagnose_command(app),
      add_metrics_command(app),
      add_heal_command(app),
      add_serve_command(app, serve, log_level),
  };

  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  if (show_version) {
    std::cout << "healer " << service::version() << '\n';
    return 0;
  }
  configure_logging(log_level);
  for (const auto& command : commands) {
    if (command.app->parsed()) {
      if (has_dashdash && command.app->get_name() != "exec") {
        return usage("`--` is only for `healer exec ... -- COMMAND`");
      }
      return command.run();
    }
  }
  std::cerr << app.help();
  return kExitUsage;
}

}  // namespace healer::cli
