#pragma once

#include "command.hpp"

namespace healer::cli {

/// Registers `healer server add|list|show|remove|test|import` on `app`.
Command add_server_command(CLI::App& app);

}  // namespace healer::cli
