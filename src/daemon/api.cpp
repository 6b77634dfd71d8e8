#include "api.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "assets.hpp"
#include "exporter.hpp"
#include "heal_api.hpp"
#include "healer/core/buffer.hpp"
#include "healer/core/log.hpp"
#include "healer/service/diagnose.hpp"
#include "healer/service/errors.hpp"
#include "healer/service/inventory.hpp"
#include "healer/service/json.hpp"
#include "healer/service/settings.hpp"
#include "token.hpp"
#include "trends.hpp"

namespace healer::daemon {
namespace {

using service::Json;

constexpr std::size_t kDefaultPage = 100;
constexpr std::size_t kMaxPage = 1000;
constexpr std::size_t kMaxPoints = 2000;
constexpr std::chrono::milliseconds kPoolTotalMaxAge{1000};  // see the /metrics route

// How much of a server a list item holds: everything, or what a fleet overview shows (name,
// address, tags, owner, status, the failing checks, the key figures, when the next runs are due).
enum class ListView { full, summary };

std::string status_text(store::CheckStatus status) { return std::string(store::to_string(status)); }

std::optional<std::int64_t> integer_param(const HttpRequest& request, std::string_view name) {
  const auto text = request.param(name);
  if (!text) {
    return std::nullopt;
  }
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size()) {
    return std::nullopt;
  }
  return value;
}

Result<std::size_t> page_limit(const HttpRequest& request) {
  if (!request.param("limit")) {
    return kDefaultPage;
  }
  const auto limit = integer_param(request, "limit");
  if (!limit || *limit < 1 || *limit > static_cast<std::int64_t>(kMaxPage)) {
    return service::make_error(service::Errc::invalid_input, "limit must be 1 to 1000");
  }
  return static_cast<std::size_t>(*limit);
}

// The list's `view` parameter: full (the default) or summary.
Result<ListView> list_view(const HttpRequest& request) {
  const auto view = request.param("view");
  if (!view || *view == "full") {
    return ListView::full;
  }
  if (*view == "summary") {
    return ListView::summary;
  }
  return service::make_error(service::Errc::invalid_input, "view is full or summary");
}

// This node's share of the fleet (GET /api/v1/scheduler).
Json lease_json(const LeaseKeeper* leases) {
  const LeaseStats stats = leases != nullptr ? leases->stats() : LeaseStats{};
  return Json{{"enabled", stats.enabled},     {"held", stats.held},         {"nodes", stats.nodes},
              {"takeovers", stats.takeovers}, {"released", stats.released}, {"lost", stats.lost}};
}

// A failing check's message in the summary view: its first kSummaryMessage bytes, cut at a code
// point, then an ellipsis (the full text is on the server's own item and its runs).
constexpr std::size_t kSummaryMessage = 160;

std::string summary_message(const std::string& message) {
  if (message.size() <= kSummaryMessage) {
    return message;
  }
  std::size_t end = kSummaryMessage;
  while (end > 0 && (static_cast<unsigned char>(message[end]) & 0xC0U) == 0x80U) {
    --end;
  }
  return message.substr(0, end) + "\u2026";
}

void write_optional(service::JsonWriter& out, const std::optional<double>& value) {
  if (value) {
    out.number(*value);
  } else {
    out.null();
  }
}

void write_error(service::JsonWriter& out, const std::optional<Error>& error) {
  if (error) {
    out.json(service::to_json(*error));
  } else {
    out.null();
  }
}

void write_next_due(service::JsonWriter& out, const WorkState& work) {
  out.key("next_due");
  if (work.next_due) {
    out.number(
        std::chrono::duration_cast<std::chrono::milliseconds>(work.next_due->time_since_epoch())
            .count());
  } else {
    out.null();
  }
}

void write_work(service::JsonWriter& out, const WorkState& work, bool full) {
  out.begin_object();
  if (full) {
    out.key("interval_seconds").number(work.interval.count());
  }
  write_next_due(out, work);
  if (full) {
    out.key("running").boolean(work.running);
    out.key("runs").number(work.runs);
    out.key("skipped").number(work.skipped);
    out.key("late").number(work.late);
  }
  out.end_object();
}

// A server as lists and the dashboard show it: inventory row, latest status and figures,
// schedule. The summary view is a subset of the full one: the same names in the same places
// with the same values, but for failing checks' messages cut to kSummaryMessage bytes. Written
// straight as text: a page of 1,000 built as a tree first took ~10 ms of the loop.
void write_server(service::JsonWriter& out, const ServerState& state, ListView view) {
  const bool full = view == ListView::full;
  const auto& record = state.record;
  out.begin_object();
  if (full) {
    const auto row = service::to_json(record);
    for (const auto& [name, value] : row.items()) {
      out.key(name).json(value);
    }
  } else {
    out.key("name").string(record.name);
    out.key("host").string(record.host);
    out.key("port").number(record.port);
    out.key("user").string(record.user);
    out.key("tags").begin_array();
    for (const auto& tag : record.tags) {
      out.string(tag);
    }
    out.end_array();
  }
  out.key("status");
  if (state.run) {
    out.string(store::to_string(state.run->status));
  } else {
    out.null();
  }
  out.key("status_since");
  if (state.status_since) {
    out.number(*state.status_since);
  } else {
    out.null();
  }
  out.key("last_run");
  if (state.run) {
    const auto& run = *state.run;
    out.begin_object();
    if (full) {
      out.key("run_id");
      if (run.run_id == 0) {
        out.null();
      } else {
        out.number(run.run_id);
      }
    }
    out.key("started_at").number(run.started_at);
    if (full) {
      out.key("duration_ms").number(run.duration_ms);
    }
    out.key("status").string(store::to_string(run.status));
    out.key("checks").number(run.checks);
    out.key("failing").begin_array();
    for (const auto& check : run.failing) {
      out.begin_object();
      out.key("name").string(check.name);
      out.key("status").string(store::to_string(check.status));
      out.key("message").string(full ? check.message : summary_message(check.message));
      out.end_object();
    }
    out.end_array();
    out.key("error");
    write_error(out, run.server_error);
    out.end_object();
  } else {
    out.null();
  }
  out.key("metrics");
  if (state.collection) {
    const auto& c = *state.collection;
    out.begin_object();
    out.key("collected_at").number(c.collected_at);
    out.key("error");
    write_error(out, c.error);
    out.key("headline").string(c.headline);
    out.key("load1");
    write_optional(out, c.load1);
    out.key("memory_used_percent");
    write_optional(out, c.memory_used_percent);
    out.key("disk_used_percent");
    write_optional(out, c.disk_used_percent);
    out.key("cpu_busy_percent");
    write_optional(out, c.cpu_busy_percent);
    out.end_object();
  } else {
    out.null();
  }
  out.key("owner");
  if (state.owner.empty()) {
    out.null();
  } else {
    out.string(state.owner);
  }
  out.key("schedule").begin_object();
  out.key("metrics");
  write_work(out, state.metrics, full);
  out.key("diagnose");
  write_work(out, state.diagnose, full);
  out.end_object();
  out.end_object();
}

Json stored_run_json(const store::DiagnosisRun& run) {
  Json checks = Json::array();
  for (const auto& check : run.checks) {
    checks.push_back({{"name", check.name},
                      {"status", status_text(check.status)},
                      {"message", check.message},
                      {"perfdata", check.perfdata},
                      {"duration_ms", check.duration_ms}});
  }
  return Json{{"id", run.id},
              {"server_id", run.server_id},
              {"app_id", run.app_id ? Json(*run.app_id) : Json(nullptr)},
              {"started_at", run.started_at},
              {"finished_at", run.finished_at},
              {"status", status_text(run.status)},
              {"checks", std::move(checks)}};
}

// What /metrics shows of a server: figures and its node series (shared, not copied), taken on
// the loop.
ExpositionSnapshot::Server exposition_of(const ServerState& state, pool::Registry& registry) {
  ExpositionSnapshot::Server server;
  server.name = state.record.name;
  if (state.run) {
    server.status = static_cast<int>(state.run->status);
    server.diagnosed_at = state.run->started_at;
  }
  if (state.collection) {
    server.collected_at = state.collection->collected_at;
    server.collection_failed = state.collection->error.has_value();
    server.series = state.collection->exposition;
  }
  server.pool = registry.stats(state.record.name);
  return server;
}

struct ExpositionPart {
  ExpositionSnapshot::Part part = ExpositionSnapshot::Part::all;
  std::size_t shard = 0;
  std::size_t shards = 1;
};

// /metrics' parameters: none (everything), `servers=none`, or `shard=I&shards=N`.
Result<ExpositionPart> exposition_part(const HttpRequest& request) {
  constexpr std::int64_t kMaxShards = 4096;
  ExpositionPart part;
  if (const auto servers = request.param("servers")) {
    if (*servers != "none" || request.param("shard") || request.param("shards")) {
      return service::make_error(service::Errc::invalid_input,
                                 "servers=none is the only value (without shard parameters)");
    }
    part.part = ExpositionSnapshot::Part::fleet;
    return part;
  }
  if (!request.param("shard") && !request.param("shards")) {
    return part;
  }
  const auto shard = integer_param(request, "shard");
  const auto shards = integer_param(request, "shards");
  if (!shard || !shards || *shards < 1 || *shards > kMaxShards || *shard < 0 || *shard >= *shards) {
    return service::make_error(service::Errc::invalid_input,
                               "shard=I&shards=N go together: N from 1 to 4096, I from 0 to N-1");
  }
  part.part = ExpositionSnapshot::Part::servers;
  part.shard = static_cast<std::size_t>(*shard);
  part.shards = static_cast<std::size_t>(*shards);
  return part;
}

// Matches "/api/v1/servers/{name}/rest": the decoded name and what follows it.
std::optional<std::pair<std::string, std::string>> server_route(std::string_view path) {
  constexpr std::string_view kPrefix = "/api/v1/servers/";
  if (!path.starts_with(kPrefix) || path.size() == kPrefix.size()) {
    return std::nullopt;
  }
  // Names may hold '/': the API's own sub-resources are matched from the end.
  std::string_view rest = path.substr(kPrefix.size());
  for (const std::string_view tail : {"/diagnose", "/runs", "/metrics", "/transitions", "/pool"}) {
    if (rest.size() > tail.size() && rest.ends_with(tail)) {
      return std::pair{std::string(rest.substr(0, rest.size() - tail.size())),
                       std::string(tail.substr(1))};
    }
  }
  return std::pair{std::string(rest), std::string()};
}

Result<service::ServerSpec> spec_from(const Json& body) {
  try {
    if (!body.is_object()) {
      return service::make_error(service::Errc::invalid_input, "the body must be a JSON object");
    }
    service::ServerSpec spec;
    spec.name = body.at("name").get<std::string>();
    spec.host = body.at("host").get<std::string>();
    const auto port = body.value("port", 22);
    if (port < 1 || port > 65535) {
      return service::make_error(service::Errc::invalid_input, "port must be 1-65535");
    }
    spec.port = static_cast<std::uint16_t>(port);
    spec.user = body.value("user", std::string());
    const auto auth = service::parse_auth(body.value("auth", std::string("key")));
    if (!auth) {
      return service::make_error(service::Errc::invalid_input,
                                 "auth must be key, agent, password or stored-key");
    }
    spec.auth = *auth;
    spec.identity = body.value("identity_file", std::string());
    spec.known_hosts = body.value("known_hosts_file", std::string());
    spec.accept_new_host_key = body.value("host_key_policy", std::string("strict")) == "accept-new";
    spec.tags = body.value("tags", std::vector<std::string>{});
    spec.labels = body.value("labels", std::map<std::string, std::string>{});
    if (body.contains("password")) {
      spec.secret = body.at("password").get<std::string>();
    } else if (body.contains("private_key")) {
      spec.secret = body.at("private_key").get<std::string>();
    }
    if (spec.auth == store::AuthMethod::key_file && spec.identity.empty()) {
      return service::make_error(service::Errc::invalid_input,
                                 "auth key needs identity_file (a path on the daemon's machine)");
    }
    return spec;
  } catch (const Json::exception&) {
    return service::make_error(service::Errc::invalid_input,
                               "the body needs name and host (strings) and fields of the right "
                               "types");
  }
}

// The dashboard's additions (issue 10), apart from the routes above: every server's sparkline
// and the pool over time from the in-memory Trends, and the dashboard's own files with headers
// that keep the browser strict (no inline script, nothing from elsewhere, no framing).
std::optional<HttpResponse> dashboard_route(const HttpRequest& request, Trends& trends,
                                            const FleetState& fleet, const PoolConfig& pool) {
  const auto& path = request.path;
  if (request.method != "GET" && request.method != "HEAD") {
    return std::nullopt;
  }
  if (path == "/api/v1/trends") {
    const auto figure = parse_figure(request.param("figure").value_or("load1"));
    if (!figure) {
      return error_response(400, "invalid_input", "figure is load1, memory, disk or cpu");
    }
    // The latest collections too, not only those the sampler took up to its last tick.
    trends.record_figures(fleet);
    return json_response(200, trends.sparklines_json(*figure, store::now_unix_ms()));
  }
  if (path == "/api/v1/pool/history") {
    const auto server = request.param("server");
    auto history = trends.pool_json(server ? &*server : nullptr);
    if (!history) {
      return error_response(404, "not_found",
                            fmt::format("no pool history for a server named '{}' (yet)", *server));
    }
    (*history)["limits"] = Json{{"servers", fleet.servers().size()},
                                {"max_connections", pool.max_connections},
                                {"max_channels", pool.max_channels},
                                {"max_concurrent", pool.max_concurrent},
                                {"max_concurrent_total", pool.max_concurrent_total}};
    return json_response(200, *history);
  }
  if (path.starts_with("/api/")) {
    return std::nullopt;
  }
  auto asset = dashboard_asset(path);
  if (!asset) {
    return std::nullopt;
  }
  HttpResponse response;
  response.content_type = std::string(asset->content_type);
  response.body = std::string(asset->body);
  response.headers = {
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      {"Cache-Control", "no-cache"}};
  return response;
}

}  // namespace

HttpResponse json_response(int status, const Json& body) {
  HttpResponse response;
  response.status = status;
  response.body = service::dump(body);
  return response;
}

HttpResponse from_error(const Error& error) {
  return error_response(
      service::http_status(error), service::error_name(error),
      error.code.category() == service::error_category() ? error.detail : error.message());
}

HttpResponse error_response(int status, std::string_view code, std::string_view message) {
  return json_response(status, Json{{"error", {{"code", code}, {"message", message}}}});
}

Api::Api(ApiContext context)
    : context_(std::move(context)),
      sampler_(context_.runtime.io().get_executor(), trends_, context_.fleet,
               context_.runtime.registry()) {}

asio::awaitable<HttpResponse> Api::handle(HttpRequest request) {
  auto& c = context_;
  auto& runtime = c.runtime;
  const auto& path = request.path;
  const bool mutating = request.method != "GET" && request.method != "HEAD";

  if (path == "/healthz") {
    co_return json_response(200, Json{{"status", "ok"}});
  }
  // Tokens travel in a header only (no cookie, so a browser on another site cannot ride on one).
  const auto header = request.header("authorization");
  const bool authorized = header.starts_with("Bearer ") && token_matches(header.substr(7), c.token);
  const bool api_or_metrics = path.starts_with("/api/") || path == "/metrics" || path == "/probe";
  if ((mutating || (c.reads_need_token && api_or_metrics)) && !authorized) {
    auto response = error_response(401, "unauthorized",
                                   "this needs the API token: Authorization: Bearer <token> "
                                   "(healer serve --print-token)");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    co_return response;
  }
  if (path == "/readyz") {
    const bool ready = c.scheduler.ready() && runtime.has_store();
    co_return json_response(ready ? 200 : 503, Json{{"ready", ready}});
  }
  if (path == "/metrics" || path == "/probe") {
    if (request.method != "GET" && request.method != "HEAD") {
      co_return error_response(405, "method_not_allowed", "GET only");
    }
    ExpositionSnapshot snapshot;
    if (path == "/probe") {
      const auto target = request.param("target");
      if (!target) {
        co_return error_response(400, "invalid_input", "/probe needs ?target=SERVER");
      }
      snapshot.with_healer_metrics = false;
      auto* state = c.fleet.find(*target);
      if (state == nullptr) {
        co_return error_response(404, "not_found", fmt::format("no server named '{}'", *target));
      }
      snapshot.servers.push_back(exposition_of(*state, runtime.registry()));
    } else {
      // A fleet too large for one scrape is split: `servers=none` (healer's fleet-wide series)
      // plus N shards of the per-server ones (docs/scaling.md).
      auto part = exposition_part(request);
      if (!part) {
        co_return from_error(part.error());
      }
      snapshot.part = part->part;
      for (const auto& [name, state] : c.fleet.servers()) {
        snapshot.servers_owned += state.owned ? 1 : 0;
      }
      if (snapshot.part != ExpositionSnapshot::Part::fleet) {
        snapshot.servers.reserve(part->shards > 1 ? c.fleet.servers().size() / part->shards + 16
                                                  : c.fleet.servers().size());
        for (const auto& [name, state] : c.fleet.servers()) {
          // Another node's server is on that node's /metrics: one series per server in total.
          if (state.owned && (part->shards <= 1 || shard_of(name, part->shards) == part->shard)) {
            snapshot.servers.push_back(exposition_of(state, runtime.registry()));
          }
        }
      }
      if (c.leases != nullptr) {
        snapshot.node = c.leases->node();
        snapshot.leases = c.leases->stats();
      }
      // Shared by the scrapes of one round (a fleet's shards come together) and the trends.
      snapshot.pool_total = runtime.registry().total_stats(kPoolTotalMaxAge);
      snapshot.scheduler = c.scheduler.stats();
      if (c.http != nullptr) {
        snapshot.http = c.http->stats();
      }
      snapshot.notifier = c.notifier.stats();
      if (c.remote_writer.enabled()) {
        snapshot.remote_write = c.remote_writer.stats();
      }
      snapshot.control = c.control.stats();
      snapshot.store = runtime.store().stats();
    }
    auto job = [snapshot = std::move(snapshot)]() { return render_exposition(snapshot); };
    HttpResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = co_await runtime.async_offload(std::move(job));
    co_return response;
  }

  if (path == "/api/v1/openapi.json") {
    HttpResponse response;
    response.body = std::string(openapi_document());
    co_return response;
  }
  if (is_heal_route(path)) {
    if (c.heal == nullptr) {
      co_return error_response(503, "unavailable", "healing is not running in this daemon");
    }
    co_return co_await handle_heal(runtime, *c.heal, std::move(request));
  }
  if (path == "/api/v1/servers" && request.method == "GET") {
    auto limit = page_limit(request);
    if (!limit) {
      co_return from_error(limit.error());
    }
    auto view = list_view(request);
    if (!view) {
      co_return from_error(view.error());
    }
    const auto cursor = request.param("cursor").value_or("");
    const auto tag = request.param("tag").value_or("");
    const auto text = request.param("q").value_or("");
    HttpResponse response;
    if (tag.empty() && text.empty()) {
      // About what the page will take (~0.5 KiB per summary item, ~0.9 per full one at
      // 10,000 servers), mapped at once rather than in a fault per page as it grows.
      const std::size_t items = std::min(*limit, c.fleet.servers().size());
      buffer::reserve_populated(response.body,
                                4096 + items * (*view == ListView::summary ? 640 : 1152));
    }
    service::JsonWriter out(response.body);
    out.begin_object().key("items").begin_array();
    std::size_t count = 0;
    std::string last;
    bool more = false;
    for (auto it = c.fleet.servers().upper_bound(cursor); it != c.fleet.servers().end(); ++it) {
      auto& state = it->second;
      if (!tag.empty() && std::find(state.record.tags.begin(), state.record.tags.end(), tag) ==
                              state.record.tags.end()) {
        continue;
      }
      if (!text.empty() && state.record.name.find(text) == std::string::npos &&
          state.record.host.find(text) == std::string::npos) {
        continue;
      }
      if (count == *limit) {
        more = true;
        break;
      }
      ++count;
      write_server(out, state, *view);
      last = it->first;
    }
    out.end_array().key("next_cursor");
    if (more) {
      out.string(last);
    } else {
      out.null();
    }
    out.end_object();
    co_return response;
  }
  if (path == "/api/v1/servers" && request.method == "POST") {
    auto body = Json::parse(request.body, nullptr, false);
    if (body.is_discarded()) {
      co_return error_response(400, "invalid_json", "the body is not valid JSON");
    }
    auto spec = spec_from(body);
    if (!spec) {
      co_return from_error(spec.error());
    }
    const bool replace = request.param("replace").value_or("") == "true";
    auto job = [&runtime, spec = std::move(*spec), replace]() mutable {
      return service::add_server(runtime.store(), std::move(spec), replace);
    };
    auto added = co_await runtime.async_offload(std::move(job));
    if (!added) {
      co_return from_error(added.error());
    }
    c.scheduler.reload_soon();
    co_return json_response(added->updated ? 200 : 201, service::to_json(added->record));
  }
  if (auto route = server_route(path)) {
    const auto& [name, rest] = *route;
    auto* state = c.fleet.find(name);
    if (rest.empty() && request.method == "DELETE") {
      auto job = [&runtime, name = name]() {
        return service::remove_server(runtime.store(), name);
      };
      auto removed = co_await runtime.async_offload(std::move(job));
      if (!removed) {
        co_return from_error(removed.error());
      }
      c.scheduler.reload_soon();
      HttpResponse response;
      response.status = 204;
      response.content_type.clear();
      co_return response;
    }
    if (state == nullptr) {
      co_return error_response(404, "not_found", fmt::format("no server named '{}'", name));
    }
    const auto server_id = state->record.id;
    if (rest.empty() && request.method == "GET") {
      HttpResponse response;
      service::JsonWriter out(response.body);
      write_server(out, *state, ListView::full);
      co_return response;
    }
    if (rest == "diagnose" && request.method == "POST") {
      service::DiagnoseRequest diagnose;
      diagnose.selection.names = {name};
      if (!request.body.empty()) {
        auto body = Json::parse(request.body, nullptr, false);
        if (body.is_discarded() || !body.is_object()) {
          co_return error_response(400, "invalid_json", "the body is not a JSON object");
        }
        try {
          diagnose.checks = body.value("checks", std::vector<std::string>{});
          diagnose.seed = body.value("seed", false);
          diagnose.fresh = body.value("fresh", false);
        } catch (const Json::exception&) {
          co_return error_response(400, "invalid_input", "checks must be a list of names");
        }
      }
      auto outcome = co_await service::async_diagnose(runtime, std::move(diagnose));
      if (!outcome) {
        co_return from_error(outcome.error());
      }
      for (const auto& diagnosed : outcome->servers) {
        c.fleet.record(diagnosed);
        if (auto* current = c.fleet.find(name);
            current != nullptr && current->run && diagnosed.run_id != 0) {
          c.notifier.observe(name, *current->run);
        }
      }
      co_return json_response(200, service::to_json(*outcome));
    }
    if (rest == "runs" && request.method == "GET") {
      auto limit = page_limit(request);
      if (!limit) {
        co_return from_error(limit.error());
      }
      const auto before = integer_param(request, "before").value_or(0);
      auto job = [&runtime, server_id, before, limit = *limit]() {
        return runtime.store().runs_page(server_id, before, limit + 1);
      };
      auto runs = co_await runtime.async_offload(std::move(job));
      if (!runs) {
        co_return from_error(runs.error());
      }
      const bool more = runs->size() > *limit;
      if (more) {
        runs->pop_back();
      }
      Json items = Json::array();
      for (const auto& run : *runs) {
        items.push_back(stored_run_json(run));
      }
      co_return json_response(
          200, Json{{"items", std::move(items)},
                    {"next_cursor", more ? Json(std::to_string(runs->back().id)) : Json(nullptr)}});
    }
    if (rest == "transitions" && request.method == "GET") {
      const auto since = integer_param(request, "since").value_or(0);
      auto limit = page_limit(request);
      if (!limit) {
        co_return from_error(limit.error());
      }
      auto job = [&runtime, server_id, since, limit = *limit]() {
        return runtime.store().transitions(server_id, since, limit);
      };
      auto transitions = co_await runtime.async_offload(std::move(job));
      if (!transitions) {
        co_return from_error(transitions.error());
      }
      Json items = Json::array();
      for (const auto& t : *transitions) {
        items.push_back({{"at", t.at},
                         {"from", t.from ? Json(status_text(*t.from)) : Json(nullptr)},
                         {"to", status_text(t.to)},
                         {"run_id", t.run_id == 0 ? Json(nullptr) : Json(t.run_id)}});
      }
      co_return json_response(200, Json{{"items", std::move(items)}});
    }
    if (rest == "pool" && request.method == "GET") {
      co_return json_response(200, service::to_json(runtime.registry().stats(name)));
    }
    if (rest == "metrics" && request.method == "GET") {
      const auto metric = request.param("name").value_or("");
      const auto since_text = request.param("since").value_or("1h");
      const auto since = service::parse_duration(since_text);
      const auto step = integer_param(request, "step").value_or(0);
      if (!since || since->count() == 0 || step < 0 || step > 86400) {
        co_return error_response(400, "invalid_input",
                                 "since is a duration (90s, 15m, 2h, 7d); step 0-86400 seconds");
      }
      if (metric.empty()) {
        // Which series there are: the names of the latest collection.
        Json names = Json::array();
        if (state->collection && state->collection->exposition) {
          const auto& exposition = *state->collection->exposition;
          for (std::size_t f = 0; f < exposition.families(); ++f) {
            names.push_back(exposition.family(f).name);
          }
        }
        co_return json_response(200, Json{{"names", std::move(names)}});
      }
      const auto from = store::now_unix_ms() -
                        std::chrono::duration_cast<std::chrono::milliseconds>(*since).count();
      auto job = [&runtime, server_id, from, metric, step]() -> Result<Json> {
        auto samples = runtime.store().samples_since(server_id, from, metric);
        if (!samples) {
          return std::move(samples).error();
        }
        // Per label set, the last value of each step-long bucket, at most kMaxPoints.
        std::map<std::string, std::vector<std::pair<std::int64_t, double>>> series;
        const std::int64_t bucket_ms = std::max<std::int64_t>(step * 1000, 1);
        for (const auto& sample : *samples) {
          auto& points = series[sample.labels];
          const auto bucket = sample.collected_at / bucket_ms;
          if (!points.empty() && points.back().first / bucket_ms == bucket && step > 0) {
            points.back() = {sample.collected_at, sample.value};
          } else {
            points.emplace_back(sample.collected_at, sample.value);
          }
        }
        Json out = Json::array();
        for (auto& [labels, points] : series) {
          if (points.size() > kMaxPoints) {
            points.erase(points.begin(),
                         points.begin() + static_cast<std::ptrdiff_t>(points.size() - kMaxPoints));
          }
          Json values = Json::array();
          for (const auto& [at, value] : points) {
            values.push_back(Json::array({at, value}));
          }
          auto parsed = metrics::parse_labels(labels);
          Json label_object = Json::object();
          if (parsed) {
            for (const auto& [key, value] : *parsed) {
              label_object[key] = value;
            }
          }
          out.push_back({{"labels", std::move(label_object)}, {"points", std::move(values)}});
        }
        return Json{{"name", metric}, {"series", std::move(out)}};
      };
      auto series = co_await runtime.async_offload(std::move(job));
      if (!series) {
        co_return from_error(series.error());
      }
      co_return json_response(200, *series);
    }
    co_return error_response(405, "method_not_allowed",
                             fmt::format("{} {} is not a route", request.method, path));
  }
  if (path.starts_with("/api/v1/runs/") && request.method == "GET") {
    std::int64_t id = 0;
    const auto text = path.substr(std::string_view("/api/v1/runs/").size());
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc() || ptr != text.data() + text.size() || id <= 0) {
      co_return error_response(400, "invalid_input", "a run id is a positive integer");
    }
    auto job = [&runtime, id]() { return runtime.store().get_run(id); };
    auto run = co_await runtime.async_offload(std::move(job));
    if (!run) {
      co_return from_error(run.error());
    }
    co_return json_response(200, stored_run_json(*run));
  }
  if (path == "/api/v1/pool" && request.method == "GET") {
    Json servers = Json::array();
    for (const auto& [name, state] : c.fleet.servers()) {
      Json entry = service::to_json(runtime.registry().stats(name));
      entry["server"] = name;
      servers.push_back(std::move(entry));
    }
    co_return json_response(200,
                            Json{{"totals", service::to_json(runtime.registry().total_stats())},
                                 {"servers", std::move(servers)}});
  }
  if (path == "/api/v1/scheduler" && request.method == "GET") {
    const auto& stats = c.scheduler.stats();
    const auto& schedule = runtime.settings().schedule.defaults;
    co_return json_response(
        200, Json{{"ready", c.scheduler.ready()},
                  {"servers", c.fleet.servers().size()},
                  {"running", stats.running},
                  {"metrics_interval_seconds", schedule.metrics.count()},
                  {"diagnose_interval_seconds", schedule.diagnose.count()},
                  {"runs", {{"metrics", stats.runs[0]}, {"diagnose", stats.runs[1]}}},
                  {"skipped", {{"metrics", stats.skipped[0]}, {"diagnose", stats.skipped[1]}}},
                  {"late", {{"metrics", stats.late[0]}, {"diagnose", stats.late[1]}}},
                  {"start_delay_p99_ms",
                   static_cast<double>(stats.start_delay.quantile_us(0.99)) / 1000.0},
                  {"inventory_reloads", stats.inventory_reloads},
                  {"node", c.leases != nullptr ? c.leases->node() : std::string()},
                  {"leases", lease_json(c.leases)}});
  }
  if (path == "/api/v1" || path == "/api/v1/") {
    co_return json_response(
        200, Json{{"healer_version", service::version()}, {"openapi", "/api/v1/openapi.json"}});
  }
  if (auto response = dashboard_route(request, trends_, c.fleet, runtime.registry().config())) {
    co_return std::move(*response);
  }
  co_return error_response(404, "not_found", "no such route");
}

}  // namespace healer::daemon
