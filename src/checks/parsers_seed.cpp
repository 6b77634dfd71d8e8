// Parsers of the seed's seven commands (the checks healer started with), kept simple.
#include <fmt/format.h>

#include <algorithm>

#include "common.hpp"
#include "healer/checks/parsers.hpp"
#include "healer/checks/records.hpp"
#include "text.hpp"

namespace healer::checks {
namespace {

// A command behind `|| true` or a pipe exits 0 even when the tool is missing; the shell's
// "not found" on stderr is then the only trace.
bool tool_missing(const CheckInput& input) {
  return text::trim(input.out).empty() &&
         (text::icontains(input.err, "not found") || text::icontains(input.err, "No such file"));
}

// Seconds in the "up ..." part of `uptime`: "3 days,  4:05", "1 day, 12 min", "5 min", "4:05".
std::optional<double> uptime_seconds(std::string_view line) {
  const auto up = line.find(" up ");
  if (up == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = line.substr(up + 4);
  double seconds = 0;
  bool any = false;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto item = text::trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    if (item.find("user") != std::string_view::npos || item.starts_with("load average")) {
      break;
    }
    const auto parts = text::fields(item);
    if (parts.size() == 2) {
      const auto count = text::to_u64(parts[0]);
      if (!count) {
        return std::nullopt;
      }
      const auto n = static_cast<double>(*count);
      if (parts[1].starts_with("day")) {
        seconds += n * 86400;
      } else if (parts[1].starts_with("min")) {
        seconds += n * 60;
      } else if (parts[1].starts_with("sec")) {
        seconds += n;
      } else if (parts[1].starts_with("hr") || parts[1].starts_with("hour")) {
        seconds += n * 3600;
      } else {
        return std::nullopt;
      }
      any = true;
    } else if (parts.size() == 1 && parts[0].find(':') != std::string_view::npos) {
      const auto colon = parts[0].find(':');
      const auto hours = text::to_u64(parts[0].substr(0, colon));
      const auto minutes = text::to_u64(parts[0].substr(colon + 1));
      if (!hours || !minutes) {
        return std::nullopt;
      }
      seconds += static_cast<double>(*hours) * 3600 + static_cast<double>(*minutes) * 60;
      any = true;
    } else {
      return std::nullopt;
    }
  }
  return any ? std::optional(seconds) : std::nullopt;
}

}  // namespace

CheckResult parse_seed_uptime(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "seed.uptime";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const std::string line = text::first_line(input.out);
  const auto seconds = uptime_seconds(line);
  if (!seconds) {
    return detail::unknown(kName, "cannot parse uptime output: \"" + text::one_line(line, 80) +
                                      "\"" + detail::exit_note(input));
  }
  const Thresholds levels = settings.thresholds_for("uptime", defaults::kUptime);
  const Status status = levels.evaluate(*seconds);
  std::vector<Perfdata> perfdata = {detail::perf("uptime", *seconds, "s", levels, 0.0)};
  std::string message = "up " + text::duration(*seconds);
  if (status != Status::ok) {
    message += "; rebooted recently" + std::string(detail::mark(status));
  }
  const auto load_at = line.find("load average");
  if (load_at != std::string::npos) {
    const auto colon = line.find(':', load_at);
    std::string loads(text::trim(
        std::string_view(line).substr(colon == std::string::npos ? line.size() : colon + 1)));
    loads.erase(std::remove(loads.begin(), loads.end(), ','), loads.end());
    if (const auto load = parse_loadavg(loads)) {
      message += fmt::format(", load average {} {} {}", text::number(load->load1, 2),
                             text::number(load->load5, 2), text::number(load->load15, 2));
      perfdata.push_back(detail::perf("load1", load->load1, "", {}, 0.0));
      perfdata.push_back(detail::perf("load5", load->load5, "", {}, 0.0));
      perfdata.push_back(detail::perf("load15", load->load15, "", {}, 0.0));
    }
  }
  return detail::make(kName, status, message, std::move(perfdata));
}

CheckResult parse_seed_free(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "seed.free";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  // Columns come from the header: procps >= 3.3.10 "total used free shared buff/cache
  // available", older procps and busybox "total used free shared buffers [cached]".
  std::vector<std::string_view> header;
  std::optional<std::uint64_t> total;
  std::optional<std::uint64_t> available;
  std::optional<std::uint64_t> plus_minus_free;  // "-/+ buffers/cache: used free"
  std::uint64_t free_plus_cache = 0;
  bool have_mem = false;
  for (const auto line : text::lines(input.out)) {
    const auto parts = text::fields(line);
    if (parts.empty()) {
      continue;
    }
    if (parts[0] == "total") {
      header = parts;
      continue;
    }
    if (parts[0] == "-/+" && parts.size() == 4) {
      plus_minus_free = text::to_u64(parts[3]);
      continue;
    }
    if (parts[0] != "Mem:" || header.empty() || parts.size() != header.size() + 1) {
      continue;
    }
    have_mem = true;
    for (std::size_t i = 0; i < header.size(); ++i) {
      const auto value = text::to_u64(parts[i + 1]);
      if (!value) {
        have_mem = false;
        break;
      }
      const auto column = header[i];
      if (column == "total") {
        total = value;
      } else if (column == "available") {
        available = value;
      } else if (column == "free" || column == "buffers" || column == "cached" ||
                 column == "buff/cache") {
        free_plus_cache += *value;
      }
    }
  }
  if (!have_mem || !total || *total == 0) {
    return detail::unknown(
        kName, "cannot parse free output (no Mem: line under a header)" + detail::exit_note(input));
  }
  bool estimated = false;
  if (!available) {
    available = plus_minus_free.value_or(free_plus_cache);
    estimated = true;
  }
  const Thresholds levels = settings.thresholds_for("memory", defaults::kMemory);
  const double available_pct =
      100.0 * static_cast<double>(*available) / static_cast<double>(*total);
  const Status status = levels.evaluate(available_pct);
  std::string message =
      fmt::format("{} available{} ({} of {}; {})", text::percent(available_pct),
                  detail::mark(status), text::bytes(static_cast<double>(*available)),
                  text::bytes(static_cast<double>(*total)), detail::levels_text(levels, "%"));
  if (estimated) {
    message += "; estimated as free+buffers+cache (no available column)";
  }
  return detail::make(kName, status, message,
                      {detail::perf("available", available_pct, "%", levels, 0.0, 100.0)});
}

CheckResult parse_seed_loadavg(const CheckInput& input, const CheckSettings& /*settings*/) {
  static constexpr std::string_view kName = "seed.loadavg";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto load = parse_loadavg(input.out);
  if (!load) {
    return detail::parse_failure(kName, "/proc/loadavg", load.error(), input);
  }
  return detail::make(kName, Status::ok,
                      fmt::format("load average {} {} {} (CPU count unknown: not judged)",
                                  text::number(load->load1, 2), text::number(load->load5, 2),
                                  text::number(load->load15, 2)),
                      {detail::perf("load1", load->load1, "", {}, 0.0),
                       detail::perf("load5", load->load5, "", {}, 0.0),
                       detail::perf("load15", load->load15, "", {}, 0.0)});
}

CheckResult parse_seed_system_state(const CheckInput& input, const CheckSettings& /*settings*/) {
  static constexpr std::string_view kName = "seed.system_state";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  if (tool_missing(input)) {
    return detail::unknown(kName, "systemctl not available" + detail::exit_note(input));
  }
  const std::string state = text::first_line(input.out, 40);
  Status status = Status::unknown;
  if (state == "running") {
    status = Status::ok;
  } else if (state == "degraded" || state == "starting" || state == "initializing") {
    status = Status::warning;
  } else if (state == "maintenance" || state == "stopping") {
    status = Status::critical;
  } else if (state == "offline" || state == "unknown" || state.empty()) {
    // "offline": systemd is not PID 1 (a container); nothing to judge.
    return detail::unknown(kName, fmt::format("system state \"{}\"{}", state.empty() ? "?" : state,
                                              detail::exit_note(input)));
  } else {
    return detail::unknown(kName,
                           "unexpected systemctl is-system-running output: \"" + state + "\"");
  }
  return detail::make(kName, status, "systemd system state: " + state);
}

CheckResult parse_seed_processes(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "seed.processes";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto lines = text::to_u64(text::first_line_view(input.out));
  // `ps -e` prints a header, so a working ps gives at least 2 lines (header and ps itself);
  // "0" means ps printed nothing (missing, or failed inside the pipe).
  if (!lines || *lines < 2) {
    return detail::unknown(kName, "cannot count processes: \"" + text::first_line(input.out, 40) +
                                      "\"" + detail::exit_note(input));
  }
  const auto count = static_cast<double>(*lines - 1);
  const Thresholds levels = settings.thresholds_for("seed.processes", defaults::kSeedProcesses);
  const Status status = levels.evaluate(count);
  return detail::make(kName, status,
                      fmt::format("{} processes{}", *lines - 1, detail::mark(status)),
                      {detail::perf("processes", count, "", levels, 0.0)});
}

}  // namespace healer::checks
