#pragma once

namespace healer::cli {

/// Parses the command line, runs the chosen subcommand and returns the process exit code.
int run(int argc, char** argv);

}  // namespace healer::cli
