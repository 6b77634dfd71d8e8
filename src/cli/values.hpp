#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "healer/core/result.hpp"

namespace CLI {
class Validator;
}  // namespace CLI

// Values typed on the command line that CLI11 alone would accept too loosely.
namespace healer::cli {

/// The longest deadline a command accepts (one day): longer is a typo, and NaN or infinity would
/// make a deadline that never comes or has already passed.
inline constexpr double kMaxTimeoutSeconds = 86400;

/// Seconds as typed (`--timeout 2.5`) -> a duration; an error naming `flag` for NaN, infinity,
/// zero, negative or more than a day.
[[nodiscard]] Result<std::chrono::milliseconds> timeout_from_seconds(double seconds,
                                                                     std::string_view flag);

/// A CLI11 validator for a TCP port in decimal (1-65535): "022" and "0x50" are refused instead
/// of being read as octal or hexadecimal.
[[nodiscard]] CLI::Validator decimal_port();

}  // namespace healer::cli
