#pragma once

#include "command.hpp"

namespace healer::cli {

/// Registers `healer heal` (plan, apply, history, sudoers, reset) on `app`.
Command add_heal_command(CLI::App& app);

}  // namespace healer::cli
