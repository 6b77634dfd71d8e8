#include "values.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>

#include "healer/service/errors.hpp"

namespace healer::cli {

Result<std::chrono::milliseconds> timeout_from_seconds(double seconds, std::string_view flag) {
  if (!std::isfinite(seconds) || seconds <= 0 || seconds > kMaxTimeoutSeconds) {
    return service::make_error(
        service::Errc::invalid_input,
        fmt::format("{} must be a number of seconds above 0 and at most {} (one day)",
                    std::string(flag), kMaxTimeoutSeconds));
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000.0)));
}

CLI::Validator decimal_port() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text.empty() || text.size() > 5 || text.front() == '0' ||
            text.find_first_not_of("0123456789") != std::string::npos) {
          return "a port is a decimal number 1-65535 (no leading zero, no 0x)";
        }
        if (std::stoul(text) > 65535) {
          return "a port is a decimal number 1-65535";
        }
        return {};
      },
      "PORT");
}

}  // namespace healer::cli
