#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "healer/checks/runner.hpp"
#include "healer/core/result.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/runtime.hpp"
#include "healer/service/targets.hpp"
#include "healer/store/records.hpp"

// "Diagnose these servers": which checks with which settings, run through the runtime's pool,
// recorded in the store (runs, status transitions, the slow checks' output cache). The CLI, the
// control socket, the HTTP API and the scheduler all call this.
namespace healer::service {

/// What to diagnose and how. Not an aggregate on purpose.
struct DiagnoseRequest {
  DiagnoseRequest() = default;

  Selection selection;
  std::string app;                      ///< an application: its server and its own checks
  std::vector<std::string> checks;      ///< only these checks (by name); empty: the default set
  bool seed = false;                    ///< the seed design's seven checks
  std::vector<std::string> thresholds;  ///< "KEY=WARN:CRIT" overrides over the config file
  bool batched = false;                 ///< all of a server's checks in one exec
  bool fresh = false;                   ///< ignore kept outputs of slow checks
  bool store_runs = true;               ///< record runs (and transitions) in the store
  std::chrono::milliseconds timeout{60000};  ///< per server
  std::size_t parallel = 32;                 ///< servers at once
  pool::Priority priority = pool::Priority::normal;
};

/// One server's part of an outcome.
struct DiagnosedServer {
  std::int64_t server_id = 0;  ///< inventory id
  std::optional<std::int64_t> app_id;
  checks::Diagnosis diagnosis;
  std::int64_t run_id = 0;                            ///< the stored run; 0 when not stored
  std::optional<store::StatusTransition> transition;  ///< when the status changed
};

/// What a diagnosis request produced. Not an aggregate on purpose.
struct DiagnoseOutcome {
  DiagnoseOutcome() = default;

  std::vector<DiagnosedServer> servers;  ///< in request order
  /// Runs that could not be recorded, one line each (the results above are still right).
  std::vector<std::string> store_errors;
};

/// Progress: servers done so far and in all (on the loop).
using ProgressCallback = std::function<void(std::size_t done, std::size_t total)>;

/// Validates the request (check names, thresholds), reads the servers and their settings, runs
/// every server's checks concurrently through the pool, records each run as it completes and
/// returns every diagnosis in request order. Bad input is an error before anything runs; a server
/// that cannot be reached is a diagnosis with server_error, never an error of the call. On the
/// runtime's loop.
asio::awaitable<Result<DiagnoseOutcome>> async_diagnose(Runtime& runtime, DiagnoseRequest request,
                                                        ProgressCallback progress = {});

/// The Nagios exit code over an outcome (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
[[nodiscard]] int nagios_exit_code(const DiagnoseOutcome& outcome);

/// The checks that `request` asks for (before an application adds its own), or an error naming
/// an unknown check.
[[nodiscard]] Result<std::vector<checks::CheckDefinition>> requested_checks(
    const DiagnoseRequest& request);

/// "KEY=WARN:CRIT" (either level may be empty: "disk_space=:97") -> a threshold override.
[[nodiscard]] Result<std::pair<std::string, checks::Thresholds>> parse_threshold(
    std::string_view text);

/// A diagnosis as the store keeps it.
[[nodiscard]] store::DiagnosisRun to_run(const checks::Diagnosis& diagnosis, std::int64_t server_id,
                                         std::optional<std::int64_t> app_id);

/// The store's status for a check status.
[[nodiscard]] store::CheckStatus to_store(checks::Status status) noexcept;

}  // namespace healer::service
