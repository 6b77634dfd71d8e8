#pragma once

#include <asio/awaitable.hpp>
#include <string_view>

#include "healer/daemon/http.hpp"
#include "healer/service/heal.hpp"
#include "healer/service/runtime.hpp"

namespace healer::daemon {

/// Whether `path` is one of the heal routes (/api/v1/heal and below).
[[nodiscard]] bool is_heal_route(std::string_view path);

/// The heal routes (docs/healing.md, openapi.json): POST /api/v1/heal/plans, GET
/// /api/v1/heal/plans/{hash}, POST /api/v1/heal/plans/{hash}/apply, GET /api/v1/heal/history
/// (JSON, or JSON lines with ?format=jsonl) and GET /api/v1/heal (the engine's counters). The
/// caller has checked the bearer token. Every route calls the service layer the CLI calls; the
/// actor recorded in the audit log is "api". Runs on the runtime's loop; store reads go to
/// worker threads.
asio::awaitable<HttpResponse> handle_heal(service::Runtime& runtime, service::HealEngine& engine,
                                          HttpRequest request);

}  // namespace healer::daemon
