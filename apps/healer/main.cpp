#include <exception>
#include <iostream>

#include "healer/cli/cli.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/daemon/daemon.hpp"

int main(int argc, char** argv) {
  try {
    return healer::cli::run(argc, argv, &healer::daemon::run_serve);
  } catch (const std::exception& e) {
    std::cerr << "healer: " << e.what() << '\n';
    return healer::cli::kExitUsage;
  }
}
