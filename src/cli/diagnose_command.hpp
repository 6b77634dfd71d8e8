#pragma once

#include "command.hpp"

namespace healer::cli {

/// Registers `healer diagnose` on `app`.
Command add_diagnose_command(CLI::App& app);

}  // namespace healer::cli
