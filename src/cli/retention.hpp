#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "healer/core/config_loader.hpp"
#include "healer/core/result.hpp"
#include "healer/store/records.hpp"

namespace healer::cli {

/// How long history is kept: HEALER_SAMPLES_RETENTION_DAYS / HEALER_RUNS_RETENTION_DAYS over the
/// config file's `[store] samples_retention_days` / `runs_retention_days` over the defaults
/// (30 and 90 days). Whole days >= 1. `toml_text` is the config file's text, if there is one;
/// errors name the variable or `origin` and the key.
[[nodiscard]] Result<store::Retention> load_retention(const config::Environment& env,
                                                      const std::optional<std::string>& toml_text,
                                                      std::string_view origin);

}  // namespace healer::cli
