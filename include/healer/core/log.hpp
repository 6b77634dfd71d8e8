#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <string>

namespace healer::log {

/// The logger of one module ("ssh", "pool", ...), created on first use from the default logger's
/// sinks. Only apps/ configure sinks and levels.
std::shared_ptr<spdlog::logger> get(const std::string& module);

}  // namespace healer::log
