#pragma once

#include "command.hpp"

namespace healer::cli {

/// Registers `healer metrics collect|show` on `app`.
Command add_metrics_command(CLI::App& app);

}  // namespace healer::cli
