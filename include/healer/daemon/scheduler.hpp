#pragma once

#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/daemon/fleet.hpp"
#include "healer/daemon/leases.hpp"
#include "healer/daemon/notifier.hpp"
#include "healer/service/runtime.hpp"

namespace healer::daemon {

/// What the scheduler does.
enum class WorkKind { metrics = 0, diagnose = 1 };

/// Counters for /metrics and the API.
struct SchedulerStats {
  std::uint64_t runs[2] = {};
  std::uint64_t skipped[2] = {};  ///< due while the previous run was still going
  std::uint64_t late[2] = {};     ///< started over a second after their due time
  std::uint64_t inventory_reloads = 0;
  /// How late runs started after their due time, microseconds (log2 buckets like the pool's).
  pool::Histogram start_delay;
  std::size_t running = 0;
};

/// Runs every server's metrics collection and diagnosis at its interval (settings' [schedule]),
/// each server at a stable slot in the interval (a hash of its name, plus a little jitter) so a
/// fleet never fires at once; at background priority on the shared pool; never two runs of one
/// kind on one server at a time (a run still going when the next is due is skipped and counted).
/// Timers live in one priority queue: the loop wakes for the earliest due run only. The
/// inventory is re-read every few seconds: added servers are scheduled, removed ones dropped and
/// their connections drained. Used on the runtime's loop.
class Scheduler {
 public:
  Scheduler(service::Runtime& runtime, FleetState& fleet, Notifier& notifier);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /// Loads the inventory, seeds the fleet state from the store (latest runs and collections)
  /// and starts the timers.
  asio::awaitable<void> async_start();
  /// Re-reads the inventory now (the control socket calls it after `server add` / `remove`).
  void reload_soon();
  /// The settings changed (SIGHUP): intervals are recomputed on the next inventory pass.
  void settings_changed();
  /// Stops starting runs; waits for those running until `deadline`.
  asio::awaitable<void> async_stop(Deadline deadline);
  [[nodiscard]] const SchedulerStats& stats() const noexcept { return stats_; }
  /// Scheduled work only on servers `leases` says this node owns (several nodes on one
  /// database); set before async_start(). Without it every server is this node's.
  void set_leases(LeaseKeeper* leases) noexcept { leases_ = leases; }
  /// True once the inventory was loaded once.
  [[nodiscard]] bool ready() const noexcept { return ready_; }

 private:
  struct Due {
    std::chrono::system_clock::time_point at;
    std::string server;
    WorkKind kind;
    std::uint64_t generation;
    bool operator>(const Due& other) const { return at > other.at; }
  };

  asio::awaitable<void> timer_loop();
  asio::awaitable<void> inventory_loop();
  asio::awaitable<void> load_inventory();
  asio::awaitable<void> run(std::string server, WorkKind kind);
  void schedule(const std::string& server, WorkKind kind, ServerState& state);
  void wake();

  service::Runtime& runtime_;
  FleetState& fleet_;
  Notifier& notifier_;
  LeaseKeeper* leases_ = nullptr;
  SchedulerStats stats_;
  // due runs, earliest first; an entry whose generation is stale is ignored when it comes up
  std::priority_queue<Due, std::vector<Due>, std::greater<>> queue_;
  std::map<std::string, std::uint64_t, std::less<>> generations_;
  asio::steady_timer wakeup_;
  asio::steady_timer reload_timer_;
  bool stopping_ = false;
  bool ready_ = false;
  bool settings_dirty_ = false;
};

/// A stable offset of `server` within `interval`: where in each period it runs.
[[nodiscard]] std::chrono::milliseconds slot_offset(std::string_view server,
                                                    std::chrono::seconds interval);

}  // namespace healer::daemon
