#include "healer/store/records.hpp"

namespace healer::store {

std::string_view to_string(CheckStatus status) noexcept {
  switch (status) {
    case CheckStatus::ok:
      return "OK";
    case CheckStatus::warning:
      return "WARNING";
    case CheckStatus::critical:
      return "CRITICAL";
    case CheckStatus::unknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

std::optional<CheckStatus> parse_check_status(std::string_view text) noexcept {
  for (const auto status :
       {CheckStatus::ok, CheckStatus::warning, CheckStatus::critical, CheckStatus::unknown}) {
    if (to_string(status) == text) {
      return status;
    }
  }
  return std::nullopt;
}

std::int64_t now_unix_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace healer::store
