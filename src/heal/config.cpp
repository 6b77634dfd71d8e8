#include "healer/heal/config.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>

namespace healer::heal {
namespace {

bool any_shared(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  return std::any_of(a.begin(), a.end(), [&](const std::string& item) {
    return std::find(b.begin(), b.end(), item) != b.end();
  });
}

bool contains(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

std::optional<int> digits(std::string_view text) {
  int value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return value;
}

constexpr std::int64_t kMsPerMinute = 60'000;
constexpr std::int64_t kMsPerDay = 86'400'000;

}  // namespace

bool Rule::applies_to(std::string_view server, const std::vector<std::string>& server_tags) const {
  if (tags.empty() && servers.empty()) {
    return true;
  }
  return contains(servers, server) || any_shared(tags, server_tags);
}

bool Rule::matches(std::string_view status) const { return contains(statuses, status); }

bool Silence::covers(std::string_view server, const std::vector<std::string>& server_tags,
                     std::int64_t now_ms) const {
  if (!(servers.empty() && tags.empty()) && !contains(servers, server) &&
      !any_shared(tags, server_tags)) {
    return false;
  }
  if (from_ms && now_ms < *from_ms) {
    return false;
  }
  if (until_ms && now_ms >= *until_ms) {
    return false;
  }
  // Floor division: times before 1970 do not occur, but keep the arithmetic exact anyway.
  const std::int64_t day_index = now_ms >= 0 ? now_ms / kMsPerDay : (now_ms + 1) / kMsPerDay - 1;
  const auto minute = static_cast<int>((now_ms - day_index * kMsPerDay) / kMsPerMinute);
  // 1970-01-01 was a Thursday (4).
  const auto weekday = static_cast<int>(((day_index % 7) + 7 + 4) % 7);
  auto day_ok = [&](int day) {
    return days.empty() || std::find(days.begin(), days.end(), day) != days.end();
  };
  if (!start_minute || !end_minute) {
    return day_ok(weekday);  // whole days, or always (between from and until)
  }
  const int start = *start_minute;
  const int end = *end_minute;
  if (start <= end) {
    return day_ok(weekday) && minute >= start && minute < end;
  }
  // Wraps past midnight: the window belongs to the day it started on.
  if (minute >= start) {
    return day_ok(weekday);
  }
  return minute < end && day_ok((weekday + 6) % 7);
}

const ActionSpec* HealConfig::find_action(std::string_view id) const {
  for (const auto& action : builtin_actions()) {
    if (action.id == id) {
      return &action;
    }
  }
  for (const auto& action : actions) {
    if (action.id == id) {
      return &action;
    }
  }
  return nullptr;
}

std::vector<const ActionSpec*> HealConfig::all_actions() const {
  std::vector<const ActionSpec*> out;
  for (const auto& action : builtin_actions()) {
    out.push_back(&action);
  }
  for (const auto& action : actions) {
    out.push_back(&action);
  }
  return out;
}

Privilege HealConfig::privilege_for(std::string_view server,
                                    const std::vector<std::string>& tags) const {
  if (const auto found = privilege_by_server.find(server); found != privilege_by_server.end()) {
    return found->second;
  }
  for (const auto& tag : tags) {
    if (const auto found = privilege_by_tag.find(tag); found != privilege_by_tag.end()) {
      return found->second;
    }
  }
  return privilege;
}

const Silence* HealConfig::silence_for(std::string_view server,
                                       const std::vector<std::string>& tags,
                                       std::int64_t now_ms) const {
  for (const auto& silence : silences) {
    if (silence.covers(server, tags, now_ms)) {
      return &silence;
    }
  }
  return nullptr;
}

ValidationContext HealConfig::validation() const {
  ValidationContext context;
  context.cleanup_dirs = cleanup_dirs;
  context.logrotate_configs = logrotate_configs;
  return context;
}

const Rule* HealConfig::find_rule(std::string_view name) const {
  for (const auto& rule : rules) {
    if (rule.name == name) {
      return &rule;
    }
  }
  return nullptr;
}

bool within_rate(const std::vector<std::int64_t>& started_ms, int max_per_hour,
                 std::int64_t now_ms) {
  constexpr std::int64_t kHour = 3'600'000;
  const auto recent = std::count_if(started_ms.begin(), started_ms.end(), [&](std::int64_t at) {
    return at > now_ms - kHour && at <= now_ms;
  });
  return recent < max_per_hour;
}

std::optional<std::int64_t> parse_utc_time(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SSZ (or with a space instead of T).
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != ' ') || text[13] != ':' || text[16] != ':' ||
      text[19] != 'Z') {
    return std::nullopt;
  }
  const auto year = digits(text.substr(0, 4));
  const auto month = digits(text.substr(5, 2));
  const auto day = digits(text.substr(8, 2));
  const auto hour = digits(text.substr(11, 2));
  const auto minute = digits(text.substr(14, 2));
  const auto second = digits(text.substr(17, 2));
  if (!year || !month || !day || !hour || !minute || !second || *year < 1970 || *hour > 23 ||
      *minute > 59 || *second > 59) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(*year),
                                         std::chrono::month(static_cast<unsigned>(*month)),
                                         std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok()) {
    return std::nullopt;
  }
  const auto days = std::chrono::sys_days(date).time_since_epoch().count();
  return static_cast<std::int64_t>(days) * kMsPerDay +
         (static_cast<std::int64_t>(*hour) * 3600 + *minute * 60 + *second) * 1000;
}

std::optional<int> parse_clock(std::string_view text) {
  if (text.size() != 5 || text[2] != ':') {
    return std::nullopt;
  }
  const auto hour = digits(text.substr(0, 2));
  const auto minute = digits(text.substr(3, 2));
  if (!hour || !minute || *hour > 24 || *minute > 59 || (*hour == 24 && *minute != 0)) {
    return std::nullopt;
  }
  return *hour * 60 + *minute;
}

std::optional<int> parse_weekday(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kDays{
      std::pair{"sun", "sunday"},    std::pair{"mon", "monday"},   std::pair{"tue", "tuesday"},
      std::pair{"wed", "wednesday"}, std::pair{"thu", "thursday"}, std::pair{"fri", "friday"},
      std::pair{"sat", "saturday"}};
  for (std::size_t i = 0; i < kDays.size(); ++i) {
    if (text == kDays[i].first || text == kDays[i].second) {
      return static_cast<int>(i);
    }
  }
  return std::nullopt;
}

}  // namespace healer::heal
