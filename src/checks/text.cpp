#include "text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace healer::checks::text {
namespace {

char lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

}  // namespace

std::optional<std::int64_t> to_i64(std::string_view s) noexcept {
  std::int64_t value = 0;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, value);
  if (s.empty() || ec != std::errc{} || ptr != end) {
    return std::nullopt;
  }
  return value;
}

std::optional<double> to_double(std::string_view s) noexcept {
  double value = 0;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, value, std::chars_format::fixed);
  if (s.empty() || ec != std::errc{} || ptr != end || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

bool icontains(std::string_view haystack, std::string_view needle) noexcept {
  if (needle.empty()) {
    return true;
  }
  const auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                              [](char a, char b) { return lower(a) == lower(b); });
  return it != haystack.end();
}

std::string one_line(std::string_view s, std::size_t max_chars) {
  std::string result;
  result.reserve(std::min(s.size(), max_chars));
  bool pending_space = false;
  for (const char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f || c == ' ') {
      pending_space = !result.empty();
      continue;
    }
    if (pending_space) {
      result.push_back(' ');
      pending_space = false;
    }
    result.push_back(c == '|' ? '/' : c);
  }
  if (result.size() > max_chars) {
    result.resize(max_chars > 3 ? max_chars - 3 : 0);
    result += "...";
  }
  return result;
}

std::string_view first_line_view(std::string_view s) noexcept {
  while (!s.empty()) {
    const auto end = s.find('\n');
    const auto line = trim(s.substr(0, end));
    if (!line.empty() || end == std::string_view::npos) {
      return line;
    }
    s.remove_prefix(end + 1);
  }
  return {};
}

std::string first_line(std::string_view s, std::size_t max_chars) {
  for (const auto line : lines(s)) {
    if (!trim(line).empty()) {
      return one_line(line, max_chars);
    }
  }
  return {};
}

std::string number(double value, int decimals) {
  if (!std::isfinite(value)) {
    return "0";
  }
  std::string result = fmt::format("{:.{}f}", value, decimals);
  if (result.find('.') != std::string::npos) {
    while (result.back() == '0') {
      result.pop_back();
    }
    if (result.back() == '.') {
      result.pop_back();
    }
  }
  if (result == "-0") {
    result = "0";
  }
  return result;
}

std::string percent(double value) { return number(value, 1) + "%"; }

std::string bytes(double value) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::size_t unit = 0;
  while (std::fabs(value) >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return number(value, unit == 0 ? 0 : 1) + " " + kUnits[unit];
}

std::string duration(double seconds) {
  const auto total = static_cast<std::int64_t>(std::llround(std::max(seconds, 0.0)));
  const std::int64_t days = total / 86400;
  const std::int64_t hours = (total % 86400) / 3600;
  const std::int64_t minutes = (total % 3600) / 60;
  if (days > 0) {
    return fmt::format("{} d {} h", days, hours);
  }
  if (hours > 0) {
    return fmt::format("{} h {} min", hours, minutes);
  }
  if (minutes > 0) {
    return fmt::format("{} min", minutes);
  }
  return fmt::format("{} s", total);
}

std::optional<std::string_view> marker_tag(std::string_view line,
                                           std::string_view marker) noexcept {
  if (marker.empty() || !line.starts_with(marker)) {
    return std::nullopt;
  }
  line.remove_prefix(marker.size());
  if (!line.empty() && line.front() != ' ') {
    return std::nullopt;  // a longer word that merely starts like the marker
  }
  return trim(line);
}

std::vector<Section> sections(std::string_view out, std::string_view marker) {
  std::vector<Section> result;
  std::size_t pos = 0;
  std::optional<std::string_view> tag;  // tag of the section being collected
  std::size_t body_start = 0;
  const auto close = [&](std::size_t body_end) {
    const std::string_view body = out.substr(body_start, body_end - body_start);
    if (tag || !trim(body).empty()) {
      result.push_back({tag.value_or(std::string_view{}), body});
    }
  };
  while (pos < out.size()) {
    const auto end = std::min(out.find('\n', pos), out.size());
    std::string_view line = out.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (const auto framing = marker_tag(line, marker)) {
      close(pos);
      tag = *framing;
      body_start = std::min(end + 1, out.size());
    }
    pos = end + 1;
  }
  close(out.size());
  return result;
}

const Section* find_section(const std::vector<Section>& all, std::string_view word) {
  for (const auto& section : all) {
    const auto first = section.tag.substr(0, section.tag.find(' '));
    if (first == word) {
      return &section;
    }
  }
  return nullptr;
}

std::string join_limited(const std::vector<std::string>& items, std::size_t max_items) {
  std::string result;
  for (std::size_t i = 0; i < items.size() && i < max_items; ++i) {
    if (i > 0) {
      result += ", ";
    }
    result += items[i];
  }
  if (items.size() > max_items) {
    result += fmt::format(" and {} more", items.size() - max_items);
  }
  return result;
}

}  // namespace healer::checks::text
