#include "heal_api.hpp"

#include <fmt/format.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <charconv>
#include <cmath>
#include <memory>
#include <optional>

#include "api.hpp"
#include "healer/heal/action.hpp"
#include "healer/heal/plan.hpp"
#include "healer/service/errors.hpp"
#include "healer/service/json.hpp"

namespace healer::daemon {
namespace {

using service::Json;

constexpr std::string_view kPlansPrefix = "/api/v1/heal/plans/";
constexpr std::string_view kApplySuffix = "/apply";
constexpr std::size_t kDefaultHistory = 50;
constexpr std::size_t kMaxHistory = 1000;
constexpr std::size_t kDefaultExport = 10000;
constexpr std::size_t kMaxExport = 100000;
constexpr double kMaxTimeoutSeconds = 600;

Error bad_input(std::string detail) {
  return service::make_error(service::Errc::invalid_input, std::move(detail));
}

bool looks_like_hash(std::string_view text) {
  return text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

Result<Json> body_object(const HttpRequest& request) {
  if (request.body.empty()) {
    return Json::object();
  }
  auto body = Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return bad_input("the body is not a JSON object");
  }
  return body;
}

// "timeout_seconds" of a body: 1-600 s, else the default.
Result<std::chrono::milliseconds> timeout_of(const Json& body, std::chrono::milliseconds fallback) {
  if (!body.contains("timeout_seconds")) {
    return fallback;
  }
  const auto& value = body.at("timeout_seconds");
  if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 1 ||
      value.get<double>() > kMaxTimeoutSeconds) {
    return bad_input("timeout_seconds must be a number from 1 to 600");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(value.get<double>() * 1000));
}

// The body of POST /api/v1/heal/plans as the CLI's `heal plan` arguments.
Result<service::HealPlanRequest> plan_request(const Json& body) {
  service::HealPlanRequest request;
  request.actor = "api";
  try {
    request.selection.names = body.value("names", std::vector<std::string>{});
    request.selection.tags = body.value("tags", std::vector<std::string>{});
    request.selection.all = body.value("all", false);
    request.rules = body.value("rules", true);
    if (body.contains("actions")) {
      for (const auto& entry : body.at("actions")) {
        heal::ActionRequest asked;
        asked.action = entry.at("action").get<std::string>();
        asked.params = entry.value("params", std::map<std::string, std::string>{});
        request.actions.push_back(std::move(asked));
      }
    }
  } catch (const Json::exception&) {
    return bad_input(
        "names and tags are lists of strings, all and rules booleans, actions a list of "
        "{\"action\": ID, \"params\": {NAME: VALUE}}");
  }
  if (request.selection.empty()) {
    return bad_input("name servers (\"names\"), a tag (\"tags\") or \"all\": true");
  }
  auto timeout = timeout_of(body, request.timeout);
  if (!timeout) {
    return std::move(timeout).error();
  }
  request.timeout = *timeout;
  return request;
}

Result<std::size_t> limit_of(const HttpRequest& request, std::size_t fallback, std::size_t most) {
  const auto text = request.param("limit");
  if (!text) {
    return fallback;
  }
  std::size_t value = 0;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size() || value < 1 || value > most) {
    return bad_input(fmt::format("limit must be 1 to {}", most));
  }
  return value;
}

Json stats_json(const service::HealStats& stats) {
  return Json{{"started", stats.started},
              {"verified", stats.verified},
              {"failed", stats.failed},
              {"refused", stats.refused},
              {"automatic_skipped", stats.automatic_skipped},
              {"running", stats.running}};
}

asio::awaitable<HttpResponse> history(service::Runtime& runtime, HttpRequest request) {
  const auto format = request.param("format").value_or("json");
  if (format != "json" && format != "jsonl") {
    co_return error_response(400, "invalid_input", "format is json or jsonl");
  }
  const bool export_lines = format == "jsonl";
  auto limit = export_lines ? limit_of(request, kDefaultExport, kMaxExport)
                            : limit_of(request, kDefaultHistory, kMaxHistory);
  if (!limit) {
    co_return from_error(limit.error());
  }
  service::HealHistoryQuery query;
  query.server = request.param("server").value_or("");
  query.limit = *limit;
  if (const auto cursor = request.param("cursor")) {
    std::int64_t before = 0;
    const auto [ptr, ec] = std::from_chars(cursor->data(), cursor->data() + cursor->size(), before);
    if (ec != std::errc() || ptr != cursor->data() + cursor->size() || before <= 0) {
      co_return error_response(400, "invalid_input", "cursor is a next_cursor of a previous page");
    }
    query.before_id = before;
  }
  if (export_lines) {
    auto job = [&runtime, query]() -> Result<std::string> {
      auto events = service::heal_events(runtime.store(), query);
      if (!events) {
        return std::move(events).error();
      }
      // Oldest first, as an export reads (the same as `healer heal history --jsonl`).
      std::string lines;
      for (auto it = events->rbegin(); it != events->rend(); ++it) {
        lines += service::dump(service::to_json(*it));
        lines += '\n';
      }
      return lines;
    };
    auto lines = co_await runtime.async_offload(std::move(job));
    if (!lines) {
      co_return from_error(lines.error());
    }
    HttpResponse response;
    response.content_type = "application/x-ndjson";
    response.body = std::move(*lines);
    co_return response;
  }
  auto job = [&runtime, query]() -> Result<Json> {
    auto page = service::heal_history(runtime.store(), query);
    if (!page) {
      return std::move(page).error();
    }
    return service::to_json(*page);
  };
  auto page = co_await runtime.async_offload(std::move(job));
  if (!page) {
    co_return from_error(page.error());
  }
  co_return json_response(200, *page);
}

// An apply in progress, shared by the request that waits for it and the coroutine running it.
struct Applying {
  explicit Applying(asio::any_io_executor executor) : done(std::move(executor)) {}
  std::optional<Result<service::HealApplyOutcome>> outcome;
  asio::steady_timer done;
};

asio::awaitable<void> run_apply(service::HealEngine& engine, service::HealApplyRequest request,
                                std::shared_ptr<Applying> applying) {
  applying->outcome = co_await engine.async_apply(std::move(request));
  applying->done.cancel();
}

// Runs the apply as its own coroutine: a client that goes away (the HTTP server then cancels
// its handler) must not cut a heal short between its audit events; it runs to its end and is
// in the history either way.
asio::awaitable<Result<service::HealApplyOutcome>> apply_detached(
    service::Runtime& runtime, service::HealEngine& engine, service::HealApplyRequest request) {
  auto applying = std::make_shared<Applying>(runtime.io().get_executor());
  asio::co_spawn(runtime.io(), run_apply(engine, std::move(request), applying), asio::detached);
  while (!applying->outcome) {
    applying->done.expires_at(asio::steady_timer::time_point::max());
    co_await applying->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  co_return std::move(*applying->outcome);
}

asio::awaitable<HttpResponse> apply(service::Runtime& runtime, service::HealEngine& engine,
                                    std::string hash, HttpRequest request) {
  auto body = body_object(request);
  if (!body) {
    co_return from_error(body.error());
  }
  // The hash again in the body: what the caller approved, not only which URL it reached.
  const auto repeated =
      body->value("hash", Json()).is_string() ? body->at("hash").get<std::string>() : std::string();
  if (repeated.empty()) {
    co_return error_response(400, "invalid_input",
                             "the body must repeat the plan's hash: {\"hash\": \"...\"}");
  }
  if (repeated != hash) {
    co_return from_error(service::make_error(
        service::Errc::conflict,
        fmt::format("the body's hash {} is not the plan's {}: nothing was run", repeated, hash)));
  }
  service::HealApplyRequest apply_request;
  apply_request.actor = "api";
  try {
    apply_request.dry_run = body->value("dry_run", false);
    const auto risk = heal::parse_risk(body->value("allow_risk", std::string("medium")));
    if (!risk) {
      co_return error_response(400, "invalid_input", "allow_risk is low, medium or high");
    }
    apply_request.allow_risk = *risk;
  } catch (const Json::exception&) {
    co_return error_response(400, "invalid_input",
                             "dry_run is a boolean, allow_risk low, medium or high");
  }
  auto timeout = timeout_of(*body, apply_request.timeout);
  if (!timeout) {
    co_return from_error(timeout.error());
  }
  apply_request.timeout = *timeout;
  auto load = [&runtime, hash]() { return service::load_plan(runtime.store(), hash); };
  auto plan = co_await runtime.async_offload(std::move(load));
  if (!plan) {
    co_return from_error(plan.error());
  }
  apply_request.plan = std::move(*plan);
  auto outcome = co_await apply_detached(runtime, engine, std::move(apply_request));
  if (!outcome) {
    co_return from_error(outcome.error());
  }
  auto document = service::to_json(*outcome);
  if (outcome->status == "stale") {
    // The same refusal as the CLI's exit 75: the outcome says what changed.
    document["error"] = Json{{"code", "stale_plan"},
                             {"message",
                              "the servers' state changed since the plan was made: nothing was "
                              "run (plan again)"}};
    co_return json_response(409, document);
  }
  co_return json_response(200, document);
}

}  // namespace

bool is_heal_route(std::string_view path) {
  return path == "/api/v1/heal" || path.starts_with("/api/v1/heal/");
}

asio::awaitable<HttpResponse> handle_heal(service::Runtime& runtime, service::HealEngine& engine,
                                          HttpRequest request) {
  const auto& path = request.path;
  const auto& method = request.method;
  if (path == "/api/v1/heal" && method == "GET") {
    co_return json_response(200, Json{{"stats", stats_json(engine.stats())}});
  }
  if (path == "/api/v1/heal/history" && method == "GET") {
    co_return co_await history(runtime, std::move(request));
  }
  if (path == "/api/v1/heal/plans" && method == "POST") {
    auto body = body_object(request);
    if (!body) {
      co_return from_error(body.error());
    }
    auto asked = plan_request(*body);
    if (!asked) {
      co_return from_error(asked.error());
    }
    auto plan = co_await engine.async_plan(std::move(*asked));
    if (!plan) {
      co_return from_error(plan.error());
    }
    auto response = json_response(201, heal::to_json(*plan));
    response.headers.emplace_back("Location", std::string(kPlansPrefix) + plan->hash);
    co_return response;
  }
  if (path.starts_with(kPlansPrefix)) {
    std::string_view rest = std::string_view(path).substr(kPlansPrefix.size());
    const bool applying = rest.ends_with(kApplySuffix);
    if (applying) {
      rest.remove_suffix(kApplySuffix.size());
    }
    if (!looks_like_hash(rest)) {
      co_return error_response(400, "invalid_input",
                               "a plan hash is 64 lower-case hexadecimal digits");
    }
    if (applying && method == "POST") {
      co_return co_await apply(runtime, engine, std::string(rest), std::move(request));
    }
    if (!applying && method == "GET") {
      auto load = [&runtime, hash = std::string(rest)]() {
        return service::load_plan(runtime.store(), hash);
      };
      auto plan = co_await runtime.async_offload(std::move(load));
      if (!plan) {
        co_return from_error(plan.error());
      }
      co_return json_response(200, heal::to_json(*plan));
    }
  }
  if (path == "/api/v1/heal" || path == "/api/v1/heal/history" || path == "/api/v1/heal/plans" ||
      path.starts_with(kPlansPrefix)) {
    co_return error_response(405, "method_not_allowed",
                             fmt::format("{} {} is not a route", method, path));
  }
  co_return error_response(404, "not_found", "no such route");
}

}  // namespace healer::daemon
