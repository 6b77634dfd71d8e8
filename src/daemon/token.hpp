#pragma once

#include <filesystem>
#include <string>

#include "healer/core/result.hpp"

namespace healer::daemon {

/// The API's bearer token from `path`, created (64 hex digits from the system's random source,
/// mode 0600) when missing. A file that group or others can read is refused, like master.key.
[[nodiscard]] Result<std::string> load_or_create_token(const std::filesystem::path& path);

/// Compares a presented token with the real one in constant time.
[[nodiscard]] bool token_matches(std::string_view presented, std::string_view token);

}  // namespace healer::daemon
