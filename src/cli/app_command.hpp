#pragma once

#include "command.hpp"

namespace healer::cli {

/// Registers `healer app add|list|show|remove` on `app`.
Command add_app_command(CLI::App& app);

}  // namespace healer::cli
