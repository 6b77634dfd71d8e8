#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/heal/plan.hpp"
#include "healer/service/diagnose.hpp"
#include "healer/service/json.hpp"
#include "healer/service/runtime.hpp"
#include "healer/service/targets.hpp"
#include "healer/store/records.hpp"

// Healing as users ask for it, once for the CLI, the API and the daemon's automatic rules: a
// plan from the latest diagnosis (rules + explicit actions, probed live), applying a plan by
// hash after re-checking the server's state, verification after a grace period, the brakes
// (breaker per (server, action), rate limit, global cap, flap suppression, silences) and the
// append-only audit log. docs/healing.md explains the safety model.
namespace healer::service {

/// Something a person should hear about, sent through the daemon's notifier ([notify]).
struct HealNotice {
  std::string event;  ///< "heal_failed" (verification or the command failed), "heal_breaker_open"
  std::string server;
  std::string action;
  std::string rule;  ///< "" for a manual apply
  std::string heal_id;
  std::string reason;
  std::int64_t at = 0;  ///< Unix ms
};

/// The notice as the JSON a notify command reads on stdin and a webhook receives.
[[nodiscard]] std::string notice_json(const HealNotice& notice);

/// What to plan. Not an aggregate on purpose.
struct HealPlanRequest {
  HealPlanRequest() = default;

  Selection selection;
  std::vector<heal::ActionRequest> actions;  ///< explicit actions, on every selected server
  bool rules = true;                         ///< false: explicit actions only
  std::string actor;                         ///< "cli:USER", "api"
  std::chrono::milliseconds timeout{30000};  ///< for the probes
};

/// What to apply. Not an aggregate on purpose.
struct HealApplyRequest {
  HealApplyRequest() = default;

  heal::Plan plan;  ///< its hash checked against its content by whoever read it
  bool dry_run = true;
  heal::Risk allow_risk = heal::Risk::medium;  ///< a ready step above it refuses the plan
  std::string actor;
  std::chrono::milliseconds timeout{60000};  ///< for the live re-check of checks and probes
};

/// The re-check after the grace period.
struct HealVerification {
  std::string result;  ///< "verified", "failed", "unknown" (could not look), "unverifiable"
                       ///< (nothing to re-check), "interrupted"
  std::string detail;
  std::map<std::string, std::string> checks;  ///< trigger check -> status
  heal::Facts facts;
};

/// One step of an apply.
struct HealStepOutcome {
  std::string server;
  std::string action;
  std::map<std::string, std::string> params;
  std::string command;
  std::string heal_id;  ///< "" when nothing was recorded
  /// "succeeded", "failed", "privilege_missing", "precondition_failed", "timeout", "error",
  /// "interrupted" (it ran); "skipped" (not ready, or an earlier step failed), "would_run" (dry
  /// run), "stale" (the plan was refused)
  std::string result;
  std::optional<int> exit_code;
  std::string output;  ///< capped
  std::string detail;
  std::optional<HealVerification> verification;
  bool breaker_opened = false;
};

/// What an apply did.
struct HealApplyOutcome {
  std::string plan_hash;
  bool dry_run = true;
  std::string status;                ///< "applied", "dry_run", "stale", "nothing_to_do"
  std::vector<std::string> changes;  ///< what changed since the plan (status "stale")
  std::vector<HealStepOutcome> steps;

  /// Whether every step that ran succeeded and verified (or could not be verified).
  [[nodiscard]] bool all_good() const;
};

/// One heal (or refusal, or breaker change) as `healer heal history` shows it.
struct HealRecord {
  std::int64_t id = 0;  ///< the first event's id (the history's cursor)
  std::string kind;     ///< "heal", "refused", "breaker_open", "breaker_closed"
  std::string heal_id;
  std::int64_t at = 0;
  std::string actor;
  std::string plan_hash;
  std::string server;
  std::string action;
  std::string params = "{}";  ///< JSON
  std::string command;
  std::string result;  ///< "unfinished" when no end was recorded (running, or the process died)
  std::optional<int> exit_code;
  std::string output;
  std::optional<std::int64_t> finished_at;
  std::string verification;  ///< "" when none
  std::optional<std::int64_t> verified_at;
  std::string before = "{}";  ///< JSON
  std::string after = "{}";   ///< JSON
  std::string detail;
};

/// A page of history, newest first.
struct HealHistoryQuery {
  std::string server;  ///< "" = all
  std::size_t limit = 50;
  std::int64_t before_id = 0;  ///< the cursor: records older than this id
};
struct HealHistoryPage {
  std::vector<HealRecord> items;
  std::optional<std::int64_t> next_cursor;
};

/// Counters (for the API and tests).
struct HealStats {
  std::uint64_t started = 0;            ///< heals whose commands were sent
  std::uint64_t verified = 0;           ///< verified OK
  std::uint64_t failed = 0;             ///< command or verification failed
  std::uint64_t refused = 0;            ///< stale plans, privilege missing, rate limit
  std::uint64_t automatic_skipped = 0;  ///< auto rule due but silenced, capped or breaker open
  std::size_t running = 0;              ///< applies and automatic heals in progress
};

/// Plans and applies heals on a runtime's loop; keeps the automatic rules' state (consecutive
/// bad results, heals in progress) and the global cap. The CLI makes one per command, the
/// daemon one for its life. Used on the runtime's loop only.
class HealEngine {
 public:
  explicit HealEngine(Runtime& runtime);
  HealEngine(const HealEngine&) = delete;
  HealEngine& operator=(const HealEngine&) = delete;
  ~HealEngine();

  /// Where notices go (the daemon's notifier); none by default.
  void set_notice_sink(std::function<void(const HealNotice&)> sink);

  /// A plan for the selected servers from their latest stored diagnosis: the rules whose check
  /// has one of their statuses, plus the explicit actions; each step probed on the server
  /// (unprivileged). Bad input (an unknown action, a parameter failing its validator, an unknown
  /// server) is an error before anything runs on a server. The plan is kept in the store by
  /// hash.
  asio::awaitable<Result<heal::Plan>> async_plan(HealPlanRequest request);

  /// Applies exactly `request.plan`: refuses a ready step above allow_risk (error); re-runs the
  /// plan's checks and probes live and refuses the whole plan when the rebuilt plan's hash
  /// differs (status "stale", with what changed); a dry run stops there. Then per server (at
  /// most [heal] max_concurrent servers at once) runs its ready steps in order, stopping at the
  /// first failure, waits the grace period and verifies; everything is recorded in the audit
  /// log, and a failed heal opens its breaker and sends a notice.
  asio::awaitable<Result<HealApplyOutcome>> async_apply(HealApplyRequest request);

  /// The scheduler's hook after a scheduled diagnosis of `record`'s server: counts bad results
  /// per automatic rule and, when a rule is due (consecutive), not silenced, not in progress,
  /// its breaker closed, under its rate limit and the global cap, heals it in the background.
  /// Returns at once.
  void observe(const store::ServerRecord& record, const DiagnosedServer& diagnosed);

  /// Stops starting heals and cuts grace periods short (their verification is recorded as
  /// interrupted); waits until no heal runs or `deadline`. May be called again (after the pool
  /// shut down, to wait for the interrupted heals' audit rows).
  asio::awaitable<void> async_stop(Deadline deadline);

  [[nodiscard]] const HealStats& stats() const noexcept;
  [[nodiscard]] bool stopping() const noexcept;

  /// What the engine's coroutines share (defined in heal.cpp).
  struct State;

 private:
  std::shared_ptr<State> state_;
};

/// The history page (blocking: store reads).
[[nodiscard]] Result<HealHistoryPage> heal_history(store::Store& store,
                                                   const HealHistoryQuery& query);

/// The raw audit events, newest first (blocking): `healer heal history --jsonl`.
[[nodiscard]] Result<std::vector<store::HealEvent>> heal_events(store::Store& store,
                                                                const HealHistoryQuery& query);

/// Closes the breaker of (server, action) by appending a breaker_closed event (blocking);
/// returns whether it was open.
[[nodiscard]] Result<bool> reset_breaker(store::Store& store, const std::string& server,
                                         const std::string& action, const std::string& actor);

/// A plan kept in the store by its hash (blocking); checks the hash against the content.
[[nodiscard]] Result<heal::Plan> load_plan(store::Store& store, const std::string& hash);

/// "cli:USER" for the local user.
[[nodiscard]] std::string local_actor();

[[nodiscard]] Json to_json(const HealApplyOutcome& outcome);
[[nodiscard]] Json to_json(const HealRecord& record);
[[nodiscard]] Json to_json(const HealHistoryPage& page);
[[nodiscard]] Json to_json(const store::HealEvent& event);

}  // namespace healer::service
