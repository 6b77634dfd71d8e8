#pragma once

#include <string>

#include "command.hpp"
#include "healer/service/serve_options.hpp"

namespace CLI {
class App;
}  // namespace CLI

namespace healer::cli {

/// Registers `healer serve`; `serve` runs it with the options parsed, `log_level` is the global
/// level flag's value.
Command add_serve_command(CLI::App& app, const service::ServeEntry& serve,
                          const std::string& log_level);

}  // namespace healer::cli
