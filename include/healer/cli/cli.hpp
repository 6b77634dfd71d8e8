#pragma once

#include "healer/service/serve_options.hpp"

namespace healer::cli {

/// Parses the command line, runs the chosen subcommand and returns the process exit code.
/// `serve` runs `healer serve` (main passes the daemon's entry: the CLI cannot depend on it).
int run(int argc, char** argv, const service::ServeEntry& serve = {});

}  // namespace healer::cli
