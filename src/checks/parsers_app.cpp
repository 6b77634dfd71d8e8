// Parsers of the application checks (catalog.cpp, application_checks()).
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common.hpp"
#include "healer/checks/parsers.hpp"
#include "text.hpp"

namespace healer::checks {

CheckResult parse_app_units(const CheckInput& input, const CheckSettings& settings) {
  constexpr std::string_view kName = "app.units";
  if (auto early = detail::cannot_run(kName, input)) {
    return *early;
  }
  const auto levels = settings.thresholds_for("app.units", defaults::kAppUnitsDown);
  std::vector<std::string> active;
  std::vector<std::string> starting;
  std::vector<std::string> down;
  // "<marker> unit <state> <name>": the state first, so a name cannot shift it; a name with a
  // newline continues on a line without the marker, which is ignored. An empty state (a unit
  // systemd does not know prints nothing on some versions) is not active either.
  for (const auto line : text::lines(input.out)) {
    const auto tag = text::marker_tag(line, input.marker);
    if (!tag || !tag->starts_with("unit ")) {
      continue;
    }
    auto rest = tag->substr(5);
    const auto space = rest.find(' ');
    if (space == std::string_view::npos) {
      continue;
    }
    const std::string_view state = space == 0 ? std::string_view("unknown") : rest.substr(0, space);
    const std::string unit(text::trim(rest.substr(space + 1)));
    if (unit.empty()) {
      continue;
    }
    if (state == "active") {
      active.push_back(unit);
    } else if (state == "activating" || state == "reloading") {
      starting.push_back(fmt::format("{} {}", unit, state));
    } else {
      down.push_back(fmt::format("{} {}", unit, state));
    }
  }
  const std::size_t total = active.size() + starting.size() + down.size();
  if (total == 0) {
    return detail::unknown(kName, "no unit state in the output" + detail::exit_note(input));
  }
  const auto count = static_cast<double>(down.size());
  auto status = levels.evaluate(count);
  if (status == Status::ok && !starting.empty()) {
    status = Status::warning;
  }
  std::string message;
  if (down.empty() && starting.empty()) {
    message = fmt::format("all {} units active: {}", total, text::join_limited(active, 5));
  } else {
    std::vector<std::string> problems = down;
    problems.insert(problems.end(), starting.begin(), starting.end());
    message = fmt::format("{} of {} units not active: {}", down.size() + starting.size(), total,
                          text::join_limited(problems, 5));
  }
  return detail::make(
      kName, status, message,
      {detail::perf("not_active", count, "", levels, 0.0, static_cast<double>(total))});
}

CheckResult parse_app_health(const CheckInput& input, const CheckSettings& settings) {
  constexpr std::string_view kName = "app.health";
  if (auto early = detail::cannot_run(kName, input)) {
    return *early;
  }
  const auto levels = settings.thresholds_for("app.response_time", defaults::kAppResponseTime);
  for (const auto line : text::lines(input.out)) {
    const auto tag = text::marker_tag(line, input.marker);
    if (!tag) {
      continue;
    }
    const auto f = text::fields(*tag);
    if (f.size() >= 4 && f[0] == "curl") {  // curl <exit> <http code> <seconds>
      const auto exit_code = text::to_u64(f[1]);
      const auto code = text::to_u64(f[2]);
      const auto seconds = text::to_double(f[3]);
      if (!exit_code || !code || !seconds) {
        break;
      }
      if (*code == 0 || *exit_code != 0) {
        return detail::make(
            kName, Status::critical,
            *exit_code == 28
                ? std::string("no HTTP answer within 10 s")
                : fmt::format(
                      "no HTTP answer: {}",
                      text::first_line(input.err.empty() ? fmt::format("curl exit {}", *exit_code)
                                                         : input.err)));
      }
      if (*code >= 400 || *code < 200) {
        return detail::make(kName, Status::critical,
                            fmt::format("HTTP {} in {}", *code, text::duration(*seconds)),
                            {detail::perf("time", *seconds, "s", levels, 0.0)});
      }
      const auto status = levels.evaluate(*seconds);
      return detail::make(kName, status,
                          fmt::format("HTTP {} in {}{} ({})", *code, text::duration(*seconds),
                                      detail::mark(status), detail::levels_text(levels, "s")),
                          {detail::perf("time", *seconds, "s", levels, 0.0)});
    }
    if (f.size() >= 2 && f[0] == "wget") {
      if (f[1] == "ok") {
        return detail::make(kName, Status::ok, "answered (wget; no timing without curl)");
      }
      // wget exit 8: the server answered with an error status; 4: network failure.
      const auto code = f.size() > 2 ? text::to_u64(f[2]) : std::nullopt;
      return detail::make(kName, Status::critical,
                          code && *code == 8
                              ? std::string("the server answered with an HTTP error (wget exit 8)")
                              : fmt::format("no answer (wget exit {})", f.size() > 2 ? f[2] : "?"));
    }
  }
  return detail::unknown(kName, "no result line in the output" + detail::exit_note(input));
}

CheckResult parse_app_logs(const CheckInput& input, const CheckSettings& settings) {
  constexpr std::string_view kName = "app.logs";
  if (auto early = detail::cannot_run(kName, input)) {
    return *early;
  }
  const auto levels = settings.thresholds_for("app.log_errors", defaults::kAppLogErrors);
  std::vector<std::string> missing;
  std::vector<std::string> unreadable;
  std::vector<std::pair<std::uint64_t, std::string>> counts;
  for (const auto line : text::lines(input.out)) {
    const auto tag = text::marker_tag(line, input.marker);
    if (!tag) {
      continue;
    }
    auto rest = *tag;
    const auto space = rest.find(' ');
    if (space == std::string_view::npos) {
      continue;
    }
    const auto kind = rest.substr(0, space);
    rest.remove_prefix(space + 1);
    if (kind == "missing") {
      missing.emplace_back(rest);
    } else if (kind == "unreadable") {
      unreadable.emplace_back(rest);
    } else if (kind == "log") {
      const auto gap = rest.find(' ');
      const auto n = text::to_u64(rest.substr(0, gap));
      if (n && gap != std::string_view::npos) {
        counts.emplace_back(*n, std::string(rest.substr(gap + 1)));
      }
    }
  }
  if (counts.empty() && missing.empty() && unreadable.empty()) {
    return detail::unknown(kName, "no result line in the output" + detail::exit_note(input));
  }
  if (counts.empty() && missing.empty()) {
    return detail::unknown(
        kName, fmt::format("cannot read {} (permission)", text::join_limited(unreadable, 3)));
  }
  std::uint64_t most = 0;
  std::string most_file;
  for (const auto& [n, path] : counts) {
    if (n >= most) {
      most = n;
      most_file = path;
    }
  }
  auto status = levels.evaluate(static_cast<double>(most));
  if (!missing.empty()) {
    status = worst(status, Status::warning);
  }
  std::string message =
      counts.empty() ? std::string("no log file to scan")
                     : fmt::format("{} error line(s) in the last 500 of {}{}", most, most_file,
                                   detail::mark(levels.evaluate(static_cast<double>(most))));
  if (!missing.empty()) {
    message += fmt::format("; missing: {}", text::join_limited(missing, 3));
  }
  if (!unreadable.empty()) {
    message += fmt::format("; unreadable: {}", text::join_limited(unreadable, 3));
  }
  return detail::make(kName, status, message,
                      {detail::perf("error_lines", static_cast<double>(most), "", levels, 0.0)});
}

}  // namespace healer::checks
