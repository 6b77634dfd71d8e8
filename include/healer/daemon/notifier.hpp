#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/daemon/fleet.hpp"
#include "healer/service/heal.hpp"
#include "healer/service/runtime.hpp"
#include "healer/store/records.hpp"

namespace healer::daemon {

/// A status change worth telling someone about.
struct StatusEvent {
  std::string server;
  std::optional<store::CheckStatus> from;  ///< unset: the first status healer saw
  store::CheckStatus to = store::CheckStatus::unknown;
  std::int64_t at = 0;  ///< Unix ms of the run that confirmed it
  std::int64_t run_id = 0;
  std::vector<FailingCheck> failing;
};

/// The event as the JSON a command reads on stdin and a webhook receives.
[[nodiscard]] std::string event_json(const StatusEvent& event);

/// Counters for /metrics.
struct NotifierStats {
  std::uint64_t sent = 0;
  std::uint64_t failed = 0;  ///< the command failed or the webhook did not answer 2xx
  std::uint64_t rate_limited = 0;
  std::uint64_t held = 0;  ///< a changed status not yet seen `consecutive` times (flapping)
};

/// Decides when a status change is notified (flap suppression: the new status must be seen
/// `consecutive` runs in a row; a rate limit per hour over all servers) and runs the [notify]
/// command and/or POSTs the webhook off the loop. Used on the daemon's loop.
class Notifier {
 public:
  explicit Notifier(service::Runtime& runtime) : runtime_(runtime) {}

  /// The status a server was last notified with (at start: its latest stored status), so a
  /// restart does not notify again.
  void seed(const std::string& server, store::CheckStatus status);
  /// Feeds a recorded diagnosis; may start a delivery.
  void observe(const std::string& server, const RunSummary& run);
  /// Sends a heal notice (a failed heal, an opened breaker) at once: no flap suppression, the
  /// same hourly cap as status changes.
  void notify_heal(const service::HealNotice& notice);
  /// Forgets a removed server.
  void forget(const std::string& server);
  /// Waits for deliveries in flight, until `deadline`.
  asio::awaitable<void> async_drain(Deadline deadline);
  [[nodiscard]] const NotifierStats& stats() const noexcept { return stats_; }

 private:
  struct Track {
    std::optional<store::CheckStatus> notified;
    std::optional<store::CheckStatus> candidate;
    int seen = 0;
  };
  // Whether the hourly cap lets one more notification out (counts it).
  bool within_rate(const std::string& server, std::string_view what);
  void deliver(std::string server, std::string body, std::string what);

  service::Runtime& runtime_;
  std::map<std::string, Track, std::less<>> tracks_;
  std::deque<std::chrono::steady_clock::time_point> recent_;  // deliveries in the last hour
  std::size_t in_flight_ = 0;
  NotifierStats stats_;
};

}  // namespace healer::daemon
