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

std::string_view to_string(HealEventKind kind) noexcept {
  switch (kind) {
    case HealEventKind::started:
      return "started";
    case HealEventKind::finished:
      return "finished";
    case HealEventKind::verified:
      return "verified";
    case HealEventKind::refused:
      return "refused";
    case HealEventKind::breaker_open:
      return "breaker_open";
    case HealEventKind::breaker_closed:
      return "breaker_closed";
  }
  return "refused";
}

std::optional<HealEventKind> parse_heal_event_kind(std::string_view text) noexcept {
  for (const auto kind :
       {HealEventKind::started, HealEventKind::finished, HealEventKind::verified,
        HealEventKind::refused, HealEventKind::breaker_open, HealEventKind::breaker_closed}) {
    if (to_string(kind) == text) {
      return kind;
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
