#pragma once

// The [heal] table's parser, private to the service (settings.cpp calls it).

#include <string_view>

#include "healer/core/config_document.hpp"
#include "healer/core/result.hpp"
#include "healer/heal/config.hpp"

namespace healer::service {

/// The `[heal]` table of `root` (nullptr or absent: the defaults); `origin` names the file in
/// errors. Rules are checked against the checks and actions, parameters against their
/// validators, `auto` against the action's risk.
[[nodiscard]] Result<heal::HealConfig> heal_from(const toml::table* root, std::string_view origin);

}  // namespace healer::service
