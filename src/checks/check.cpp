#include "healer/checks/check.hpp"

#include <algorithm>
#include <utility>

#include "text.hpp"

namespace healer::checks {

std::string_view status_name(Status status) noexcept {
  switch (status) {
    case Status::ok:
      return "OK";
    case Status::warning:
      return "WARNING";
    case Status::critical:
      return "CRITICAL";
    case Status::unknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

int severity(Status status) noexcept {
  switch (status) {
    case Status::ok:
      return 0;
    case Status::unknown:
      return 1;
    case Status::warning:
      return 2;
    case Status::critical:
      return 3;
  }
  return 1;
}

Status worst(Status a, Status b) noexcept { return severity(b) > severity(a) ? b : a; }

std::string Perfdata::format() const {
  std::string label_text;
  for (const char c : label) {
    label_text.push_back(c);
    if (c == '\'') {
      label_text.push_back('\'');
    }
  }
  const auto level = [this](const std::optional<double>& v) -> std::string {
    if (!v) {
      return {};
    }
    return lower_is_worse ? text::number(*v, 6) + ":" : text::number(*v, 6);
  };
  const auto plain = [](const std::optional<double>& v) -> std::string {
    return v ? text::number(*v, 6) : std::string{};
  };
  std::vector<std::string> tail = {level(warn), level(crit), plain(min), plain(max)};
  while (!tail.empty() && tail.back().empty()) {
    tail.pop_back();
  }
  std::string result = "'" + text::one_line(label_text, 100) + "'=" + text::number(value, 6) + unit;
  for (const auto& field : tail) {
    result += ";" + field;
  }
  return result;
}

Status Thresholds::evaluate(double value) const noexcept {
  const auto reached = [&](const std::optional<double>& level) {
    if (!level) {
      return false;
    }
    return lower_is_worse ? value <= *level : value >= *level;
  };
  if (reached(crit)) {
    return Status::critical;
  }
  if (reached(warn)) {
    return Status::warning;
  }
  return Status::ok;
}

std::string CheckResult::nagios_line() const {
  std::string result(status_name(status));
  result += " - ";
  result += text::one_line(message);
  if (!perfdata.empty()) {
    result += " |";
    for (const auto& value : perfdata) {
      result += " " + value.format();
    }
  }
  return result;
}

Thresholds CheckSettings::thresholds_for(std::string_view key, const Thresholds& defaults) const {
  const auto it = thresholds.find(key);
  if (it == thresholds.end()) {
    return defaults;
  }
  Thresholds result = it->second;
  result.lower_is_worse = defaults.lower_is_worse;
  return result;
}

CheckSettings overlay(CheckSettings base, const CheckSettings& layer) {
  for (const auto& [key, levels] : layer.thresholds) {
    base.thresholds.insert_or_assign(key, levels);
  }
  const auto append = [](auto& to, const auto& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  append(base.expected_ports, layer.expected_ports);
  append(base.ignored_mounts, layer.ignored_mounts);
  append(base.ignored_fstypes, layer.ignored_fstypes);
  append(base.ignored_units, layer.ignored_units);
  append(base.ignored_log_patterns, layer.ignored_log_patterns);
  if (layer.oom_kill_baseline) {
    base.oom_kill_baseline = layer.oom_kill_baseline;
  }
  return base;
}

}  // namespace healer::checks
