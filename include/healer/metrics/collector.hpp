#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/probe.hpp"

namespace healer::metrics {

/// The outcome for one server: a sample (possibly with failed sections) or why there is none.
struct CollectResult {
  std::string server_id;
  /// exec/ssh/pool errors as they are (auth_failed, timeout, unknown_server...), or
  /// metrics::Errc::probe_failed when the probe ran but printed no complete section.
  Result<Sample> sample;
  std::chrono::system_clock::time_point collected_at;  ///< when the output arrived (or failed)
  std::chrono::microseconds elapsed{0};                ///< start of collection to result
};

/// How one sweep runs. Not an aggregate on purpose (like exec::RunOptions).
struct CollectOptions {
  CollectOptions() = default;

  std::size_t concurrency = 16;  ///< servers collected at once (0 counts as 1)
  /// Per server, from the moment its collection starts (queueing for a channel included).
  std::chrono::milliseconds timeout{15000};
  /// The whole sweep: no server's deadline is later (servers not started by then fail at once).
  Deadline deadline = Deadline::never();
  std::size_t max_output = std::size_t{4} << 20;  ///< bytes kept per stream
  /// Queue priority of each probe (a daemon's schedule runs at background).
  pool::Priority priority = pool::Priority::normal;
  ProbeOptions probe;
  /// Called on the executor as each server finishes, before async_collect returns (progress bars,
  /// storing results). Must not block; a throw ends the sweep with that exception.
  std::function<void(const CollectResult&)> on_result;
};

/// Runs the probe once on each of `server_ids` through `executor` (one async_run per server),
/// at most options.concurrency at a time; each server gets a result by its deadline, in input
/// order. Runs on the registry's executor; `executor` must outlive the sweep.
///
/// Cancellation: honours the awaiting coroutine's cancellation slot (terminal cancellation): the
/// probes running are cancelled like timed-out ones (remote TERM, then KILL), the servers not
/// started yet end at once; each of those results is ssh::Errc::cancelled (on_result is still
/// called). Returns once every worker ended: none outlives the call; nothing throws because of
/// the cancellation.
asio::awaitable<std::vector<CollectResult>> async_collect(exec::Executor& executor,
                                                          std::vector<std::string> server_ids,
                                                          CollectOptions options);

/// One server (what async_collect runs per server). Cancellation: as async_collect.
asio::awaitable<CollectResult> async_collect_one(exec::Executor& executor, std::string server_id,
                                                 CollectOptions options);

}  // namespace healer::metrics
