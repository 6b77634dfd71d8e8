#pragma once

#include <asio/awaitable.hpp>
#include <string>

#include "healer/daemon/control_server.hpp"
#include "healer/daemon/fleet.hpp"
#include "healer/daemon/http.hpp"
#include "healer/daemon/leases.hpp"
#include "healer/daemon/notifier.hpp"
#include "healer/daemon/remote_writer.hpp"
#include "healer/daemon/scheduler.hpp"
#include "healer/service/heal.hpp"
#include "healer/service/json.hpp"
#include "healer/service/runtime.hpp"
#include "trends.hpp"

namespace healer::daemon {

/// What the API reads and acts on. References outlive the Api.
struct ApiContext {
  service::Runtime& runtime;
  FleetState& fleet;
  Scheduler& scheduler;
  Notifier& notifier;
  ControlServer& control;
  RemoteWriter& remote_writer;
  HttpServer* http = nullptr;  ///< for its stats; set once the server exists
  std::string token;
  /// Listening beyond loopback: every request but /healthz needs the token.
  bool reads_need_token = false;
  /// Plans and applies heals for /api/v1/heal (heal_api.cpp); none: those routes are 503.
  service::HealEngine* heal = nullptr;
  /// This node's leases (its id, what it holds); none: a single node owning every server.
  LeaseKeeper* leases = nullptr;
};

/// The HTTP routes: /healthz, /readyz, /metrics, /probe, /api/v1/... and the dashboard's assets.
/// Runs on the runtime's loop; store reads and rendering go to worker threads.
class Api {
 public:
  explicit Api(ApiContext context);

  /// The handler to give the HttpServer.
  asio::awaitable<HttpResponse> handle(HttpRequest request);

  ApiContext& context() noexcept { return context_; }

 private:
  ApiContext context_;
  Trends trends_;  ///< the dashboard's history: sparklines, the pool over time
  TrendSampler sampler_;
};

/// A JSON error response with a stable code: {"error": {"code", "message"}}.
[[nodiscard]] HttpResponse error_response(int status, std::string_view code,
                                          std::string_view message);

/// `body` as the response with `status`.
[[nodiscard]] HttpResponse json_response(int status, const service::Json& body);

/// A service error as its HTTP status and stable code; the message without the category prefix.
[[nodiscard]] HttpResponse from_error(const Error& error);

}  // namespace healer::daemon
