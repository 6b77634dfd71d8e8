#include "behaviour.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

namespace healer::fleet_sim {
namespace {

std::size_t parse_size(std::string_view text, std::string_view what) {
  std::size_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    throw std::invalid_argument(fmt::format("{}: '{}' is not a non-negative integer", what, text));
  }
  return value;
}

double parse_rate(std::string_view text, std::string_view what) {
  double value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || !std::isfinite(value) || value < 0.0 ||
      value > 1.0) {
    throw std::invalid_argument(fmt::format("{}: '{}' is not a rate in [0, 1]", what, text));
  }
  return value;
}

}  // namespace

void parse_latency(std::string_view text, std::chrono::milliseconds& min,
                   std::chrono::milliseconds& max) {
  const auto dash = text.find('-');
  const auto low = parse_size(text.substr(0, dash), "latency");
  const auto high =
      dash == std::string_view::npos ? low : parse_size(text.substr(dash + 1), "latency");
  if (high < low) {
    throw std::invalid_argument(fmt::format("latency: '{}' has max < min", text));
  }
  min = std::chrono::milliseconds(static_cast<std::int64_t>(low));
  max = std::chrono::milliseconds(static_cast<std::int64_t>(high));
}

Profile parse_profile(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    throw std::invalid_argument(
        fmt::format("profile '{}': expected RANGE:key=value,... (RANGE: N, N-M or *)", text));
  }
  Profile profile;
  const auto range = text.substr(0, colon);
  if (range == "*") {
    profile.first = 0;
    profile.last = std::numeric_limits<std::size_t>::max();
  } else {
    const auto dash = range.find('-');
    profile.first = parse_size(range.substr(0, dash), "profile range");
    profile.last = dash == std::string_view::npos
                       ? profile.first
                       : parse_size(range.substr(dash + 1), "profile range");
    if (profile.last < profile.first) {
      throw std::invalid_argument(fmt::format("profile '{}': range ends before it starts", text));
    }
  }
  profile.settings = std::string(text.substr(colon + 1));
  (void)apply_settings(Behaviour{}, profile.settings);  // validate now, not at the first connection
  return profile;
}

Behaviour apply_settings(Behaviour base, std::string_view settings) {
  while (!settings.empty()) {
    const auto comma = settings.find(',');
    const auto item = settings.substr(0, comma);
    settings = comma == std::string_view::npos ? std::string_view() : settings.substr(comma + 1);
    if (item.empty()) {
      continue;
    }
    const auto equals = item.find('=');
    if (equals == std::string_view::npos) {
      throw std::invalid_argument(fmt::format("'{}': expected key=value", item));
    }
    const auto key = item.substr(0, equals);
    const auto value = item.substr(equals + 1);
    if (key == "latency") {
      parse_latency(value, base.latency_min, base.latency_max);
    } else if (key == "refuse") {
      base.refuse = parse_rate(value, key);
    } else if (key == "stall") {
      base.stall = parse_rate(value, key);
    } else if (key == "auth_fail") {
      base.auth_fail = parse_rate(value, key);
    } else if (key == "drop") {
      base.drop = parse_rate(value, key);
    } else if (key == "hang") {
      base.hang = parse_rate(value, key);
    } else if (key == "max_sessions") {
      base.max_sessions = parse_size(value, key);
    } else {
      throw std::invalid_argument(fmt::format(
          "unknown setting '{}' (latency, refuse, stall, auth_fail, drop, hang, max_sessions)",
          key));
    }
  }
  return base;
}

BehaviourTable::BehaviourTable(Behaviour defaults, std::vector<Profile> profiles,
                               std::uint64_t seed)
    : defaults_(std::move(defaults)), profiles_(std::move(profiles)), seed_(seed) {}

Behaviour BehaviourTable::of(std::size_t host) const {
  Behaviour behaviour = defaults_;
  for (const auto& profile : profiles_) {
    if (host >= profile.first && host <= profile.last) {
      behaviour = apply_settings(behaviour, profile.settings);
    }
  }
  return behaviour;
}

std::chrono::milliseconds BehaviourTable::latency(std::size_t host) const {
  const Behaviour behaviour = of(host);
  const auto span = behaviour.latency_max - behaviour.latency_min;
  const double offset = draw(seed_, host, Draw::latency, 0) * static_cast<double>(span.count() + 1);
  return behaviour.latency_min +
         std::chrono::milliseconds(static_cast<std::int64_t>(std::floor(offset)));
}

}  // namespace healer::fleet_sim
