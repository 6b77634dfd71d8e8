#include "retention.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <charconv>
#include <system_error>

namespace healer::cli {
namespace {

Error bad(std::string detail) {
  return Error{std::make_error_code(std::errc::invalid_argument), std::move(detail)};
}

constexpr std::int64_t kMaxDays = 36500;

Result<std::optional<std::int64_t>> from_env(const config::Environment& env, const char* name) {
  const auto text = env.get(name);
  if (!text) {
    return std::optional<std::int64_t>{};
  }
  std::int64_t days = 0;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), days);
  if (ec != std::errc() || ptr != text->data() + text->size() || days < 1 || days > kMaxDays) {
    return bad(fmt::format("{}='{}': expected whole days, 1 to {}", name, *text, kMaxDays));
  }
  return std::optional<std::int64_t>{days};
}

}  // namespace

Result<store::Retention> load_retention(const config::Environment& env,
                                        const std::optional<std::string>& toml_text,
                                        std::string_view origin) {
  store::Retention retention;
  if (toml_text) {
    toml::table root;
    try {
      root = toml::parse(*toml_text, origin);
    } catch (const toml::parse_error& e) {
      return bad(fmt::format("{}: line {}: {}", std::string(origin), e.source().begin.line,
                             std::string(e.description())));
    }
    if (const auto* table = root.get_as<toml::table>("store"); table != nullptr) {
      for (const auto& [key, node] : *table) {
        const std::string name(key.str());
        if (name != "samples_retention_days" && name != "runs_retention_days") {
          return bad(
              fmt::format("{}: store.{}: unknown key (samples_retention_days, "
                          "runs_retention_days)",
                          std::string(origin), name));
        }
        const auto days = node.value<std::int64_t>();
        if (!days || *days < 1 || *days > kMaxDays || !node.is_integer()) {
          return bad(fmt::format("{}: store.{}: expected whole days, 1 to {}", std::string(origin),
                                 name, kMaxDays));
        }
        (name == "samples_retention_days" ? retention.samples : retention.runs) =
            std::chrono::days(*days);
      }
    }
  }
  auto samples = from_env(env, "HEALER_SAMPLES_RETENTION_DAYS");
  if (!samples) {
    return std::move(samples).error();
  }
  if (*samples) {
    retention.samples = std::chrono::days(**samples);
  }
  auto runs = from_env(env, "HEALER_RUNS_RETENTION_DAYS");
  if (!runs) {
    return std::move(runs).error();
  }
  if (*runs) {
    retention.runs = std::chrono::days(**runs);
  }
  return retention;
}

}  // namespace healer::cli
