#include "healer/checks/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <nlohmann/json.hpp>

#include "healer/pool/errors.hpp"
#include "healer/ssh/errors.hpp"
#include "text.hpp"

namespace healer::checks {
namespace {

using nlohmann::json;

constexpr std::string_view kReset = "\033[0m";
constexpr std::string_view kDim = "\033[2m";
constexpr std::string_view kBold = "\033[1m";

std::string_view status_color(Status status) noexcept {
  switch (status) {
    case Status::ok:
      return "\033[32m";
    case Status::warning:
      return "\033[33m";
    case Status::critical:
      return "\033[1;31m";
    case Status::unknown:
      return "\033[35m";
  }
  return "";
}

// `text` in `style` when colours are on. Padding is applied before, so escapes never count
// towards column widths.
std::string paint(std::string_view text, std::string_view style, const RenderOptions& options) {
  if (!options.color || style.empty()) {
    return std::string(text);
  }
  return fmt::format("{}{}{}", style, text, kReset);
}

std::string pad(std::string_view text, std::size_t width) {
  std::string padded(text);
  if (padded.size() < width) {
    padded.append(width - padded.size(), ' ');
  }
  return padded;
}

std::string duration_text(std::chrono::microseconds duration) {
  const auto us = duration.count();
  if (us < 1000000) {
    return fmt::format("{} ms", (us + 500) / 1000);
  }
  return fmt::format("{:.2f} s", static_cast<double>(us) / 1e6);
}

std::string message_text(const std::string& message, const RenderOptions& options) {
  if (options.max_message == 0 || message.size() <= options.max_message) {
    return message;
  }
  return text::one_line(message, options.max_message);
}

std::array<std::size_t, 4> count_by_status(const Diagnosis& diagnosis) {
  std::array<std::size_t, 4> counts{};
  for (const auto& run : diagnosis.checks) {
    ++counts[static_cast<std::size_t>(run.result.status)];
  }
  return counts;
}

json optional_number(const std::optional<double>& value) {
  return value ? json(*value) : json(nullptr);
}

std::string error_name(const Error& error) {
  if (error.code.category() == ssh::error_category()) {
    return ssh::errc_name(static_cast<ssh::Errc>(error.code.value()));
  }
  if (error.code.category() == pool::error_category()) {
    return pool::errc_name(static_cast<pool::Errc>(error.code.value()));
  }
  return error.code.message();
}

json error_json(const std::optional<Error>& error) {
  if (!error) {
    return nullptr;
  }
  return json{{"category", error->code.category().name()},
              {"code", error->code.value()},
              {"name", error_name(*error)},
              {"message", error->message()}};
}

std::string iso8601(std::chrono::system_clock::time_point at) {
  const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(at);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(at - seconds).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

double milliseconds(std::chrono::microseconds duration) {
  return static_cast<double>(duration.count()) / 1000.0;
}

json diagnosis_json(const Diagnosis& diagnosis) {
  json checks = json::array();
  for (const auto& run : diagnosis.checks) {
    json perfdata = json::array();
    for (const auto& value : run.result.perfdata) {
      perfdata.push_back(json{{"label", value.label},
                              {"value", value.value},
                              {"unit", value.unit},
                              {"warn", optional_number(value.warn)},
                              {"crit", optional_number(value.crit)},
                              {"min", optional_number(value.min)},
                              {"max", optional_number(value.max)},
                              {"lower_is_worse", value.lower_is_worse}});
    }
    checks.push_back(json{
        {"name", run.result.name},
        {"status", status_name(run.result.status)},
        {"message", run.result.message},
        {"duration_ms", milliseconds(run.duration)},
        {"cached", run.cached},
        {"exit_status", run.exit_status ? json(*run.exit_status) : json(nullptr)},
        {"error", error_json(run.error)},
        {"perfdata", std::move(perfdata)},
    });
  }
  return json{
      {"server", diagnosis.server_id},
      {"status", status_name(diagnosis.status)},
      {"exit_code", static_cast<int>(diagnosis.status)},
      {"reachable", diagnosis.reachable()},
      {"error", error_json(diagnosis.server_error)},
      {"started_at", iso8601(diagnosis.started_at)},
      {"duration_ms", milliseconds(diagnosis.duration)},
      {"mode", diagnosis.mode == RunMode::batched ? "batched" : "concurrent"},
      {"checks", std::move(checks)},
  };
}

}  // namespace

std::string render_table(const Diagnosis& diagnosis, const RenderOptions& options) {
  std::size_t name_width = 5;  // "CHECK"
  for (const auto& run : diagnosis.checks) {
    name_width = std::max(name_width, run.result.name.size());
  }
  constexpr std::size_t kStatusWidth = 8;    // "CRITICAL"
  constexpr std::size_t kDurationWidth = 9;  // "12345 ms", "123.45 s", "cached"

  std::string out = render_summary(diagnosis, options) + "\n";
  out += paint(fmt::format("  {}  {}  {:>{}}  MESSAGE", pad("CHECK", name_width),
                           pad("STATUS", kStatusWidth), "DURATION", kDurationWidth),
               kBold, options);
  out += "\n";
  for (const auto& run : diagnosis.checks) {
    const std::string duration = run.cached ? "cached" : duration_text(run.duration);
    out += fmt::format("  {}  {}  {:>{}}  {}\n", pad(run.result.name, name_width),
                       paint(pad(status_name(run.result.status), kStatusWidth),
                             status_color(run.result.status), options),
                       duration, kDurationWidth, message_text(run.result.message, options));
    if (options.show_perfdata && !run.result.perfdata.empty()) {
      std::vector<std::string> values;
      values.reserve(run.result.perfdata.size());
      for (const auto& value : run.result.perfdata) {
        values.push_back(value.format());
      }
      out += paint(
          fmt::format("  {}  {}", std::string(name_width + kStatusWidth + kDurationWidth + 4, ' '),
                      fmt::join(values, " ")),
          kDim, options);
      out += "\n";
    }
  }
  return out;
}

std::string render_summary(const Diagnosis& diagnosis, const RenderOptions& options) {
  const std::string status =
      paint(status_name(diagnosis.status), status_color(diagnosis.status), options);
  const std::string took = duration_text(diagnosis.duration);
  if (diagnosis.server_error) {
    return fmt::format("{}: {} - unreachable: {} ({})", diagnosis.server_id, status,
                       text::one_line(diagnosis.server_error->message()), took);
  }
  if (diagnosis.checks.empty()) {
    return fmt::format("{}: {} - no checks ({})", diagnosis.server_id, status, took);
  }
  const auto counts = count_by_status(diagnosis);
  const auto count = [&](Status s) {
    const auto n = counts[static_cast<std::size_t>(s)];
    const std::string part = fmt::format("{} {}", n, status_name(s));
    return n > 0 && s != Status::ok ? paint(part, status_color(s), options) : part;
  };
  return fmt::format("{}: {} - {}, {}, {}, {} ({})", diagnosis.server_id, status, count(Status::ok),
                     count(Status::warning), count(Status::critical), count(Status::unknown), took);
}

Status overall_status(const std::vector<Diagnosis>& diagnoses) {
  Status status = Status::ok;
  for (const auto& diagnosis : diagnoses) {
    status = worst(status, diagnosis.checks.empty() ? Status::unknown : diagnosis.status);
    for (const auto& run : diagnosis.checks) {
      status = worst(status, run.result.status);
    }
  }
  return status;
}

int nagios_exit_code(const std::vector<Diagnosis>& diagnoses) {
  return static_cast<int>(overall_status(diagnoses));
}

std::string render_json(const Diagnosis& diagnosis, int indent) {
  return diagnosis_json(diagnosis).dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string render_json(const std::vector<Diagnosis>& diagnoses, int indent) {
  json servers = json::array();
  for (const auto& diagnosis : diagnoses) {
    servers.push_back(diagnosis_json(diagnosis));
  }
  const Status status = overall_status(diagnoses);
  const json document{{"status", status_name(status)},
                      {"exit_code", static_cast<int>(status)},
                      {"servers", std::move(servers)}};
  return document.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace healer::checks
