#include "healer/metrics/collector.hpp"

#include <algorithm>
#include <asio/this_coro.hpp>
#include <exception>
#include <memory>

#include "healer/core/log.hpp"
#include "healer/exec/worker_group.hpp"
#include "healer/metrics/errors.hpp"
#include "healer/ssh/cancellation.hpp"
#include "healer/ssh/errors.hpp"

namespace healer::metrics {
namespace {

// What the workers of one sweep share (WorkerGroup children). Workers take the next server index
// in turn, so at most `workers` servers are in flight whatever the length of the list.
struct Sweep {
  Sweep(std::vector<std::string> ids, CollectOptions opts)
      : server_ids(std::move(ids)), options(std::move(opts)), results(server_ids.size()) {}
  std::vector<std::string> server_ids;
  CollectOptions options;
  std::vector<CollectResult> results;  // by input index
  std::size_t next = 0;                // next index to start
  std::exception_ptr failure;          // first exception of a worker (on_result threw)
};

// Once the sweep is cancelled, the servers a worker still takes end at once with a cancelled
// error, so every server has a result. After on_result threw, the workers stop taking servers.
asio::awaitable<void> run_worker(exec::Executor* executor, std::shared_ptr<Sweep> sweep) {
  try {
    while (sweep->next < sweep->server_ids.size() && !sweep->failure) {
      const std::size_t index = sweep->next++;
      sweep->results[index] =
          co_await async_collect_one(*executor, sweep->server_ids[index], sweep->options);
      if (sweep->options.on_result) {
        sweep->options.on_result(sweep->results[index]);
      }
    }
  } catch (...) {
    if (!sweep->failure) {
      sweep->failure = std::current_exception();
    }
  }
}

void log_result(const CollectResult& result) {
  static const auto logger = log::get("metrics");
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(result.elapsed).count();
  if (!result.sample) {
    logger->debug("[{}] metrics not collected in {} ms: {}", result.server_id, ms,
                  result.sample.error().message());
    return;
  }
  for (const auto& failure : result.sample->failures) {
    logger->debug("[{}] metrics section {} failed: {}", result.server_id, failure.section,
                  failure.error.message());
  }
  logger->debug("[{}] metrics collected in {} ms ({} failed sections)", result.server_id, ms,
                result.sample->failures.size());
}

asio::awaitable<CollectResult> collect_one(exec::Executor* executor, std::string server_id,
                                           CollectOptions options) {
  const auto started = Clock::now();
  CollectResult result;
  result.server_id = server_id;
  const Deadline deadline = options.deadline.min(Deadline::after(options.timeout));
  if (deadline.expired()) {
    result.sample = make_error(ssh::Errc::timeout,
                               server_id + ": the sweep's deadline passed before collection");
  } else {
    const std::string marker = make_marker();
    exec::RunOptions run;
    run.deadline = deadline;
    run.max_output = options.max_output;
    run.priority = options.priority;
    run.stdin_data = probe_script(marker, options.probe);
    auto ran = co_await executor->async_run(server_id, std::string(kProbeCommand), std::move(run));
    if (!ran) {
      result.sample = std::move(ran).error();
    } else {
      const ssh::CommandResult& command = *ran;
      auto sample = parse_probe_output(command.out, command.err, marker);
      if (sample && command.exit_status != 0) {
        // The script ends with `exit 0`: anything else means the shell died part way (its
        // complete sections are still worth keeping, the missing ones are listed as failures).
        sample->failures.push_back(SectionFailure{
            "probe",
            make_error(Errc::probe_failed, server_id + ": probe exited with " +
                                               std::to_string(command.shell_exit_code()))});
      }
      if (!sample) {
        Error error = std::move(sample).error();
        error.detail = server_id + ": " + error.detail + " (exit " +
                       std::to_string(command.shell_exit_code()) + ")";
        result.sample = std::move(error);
      } else {
        result.sample = std::move(sample);
      }
    }
  }
  result.collected_at = std::chrono::system_clock::now();
  result.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
  log_result(result);
  co_return result;
}

asio::awaitable<std::vector<CollectResult>> collect(exec::Executor* executor,
                                                    std::vector<std::string> server_ids,
                                                    CollectOptions options) {
  const std::size_t workers =
      std::min(server_ids.size(), std::max<std::size_t>(options.concurrency, 1));
  auto sweep = std::make_shared<Sweep>(std::move(server_ids), std::move(options));
  const auto io = co_await asio::this_coro::executor;  // not in the constructor call (GCC 12)
  exec::WorkerGroup group(io);
  if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
    group.cancel();
  }
  for (std::size_t i = 0; i < workers; ++i) {
    group.spawn(run_worker(executor, sweep));
  }
  co_await group.async_wait();
  if (sweep->failure) {
    std::rethrow_exception(sweep->failure);
  }
  co_return std::move(sweep->results);
}

}  // namespace

asio::awaitable<CollectResult> async_collect_one(exec::Executor& executor, std::string server_id,
                                                 CollectOptions options) {
  return ssh::async_no_cancel_throw(
      collect_one(&executor, std::move(server_id), std::move(options)));
}

asio::awaitable<std::vector<CollectResult>> async_collect(exec::Executor& executor,
                                                          std::vector<std::string> server_ids,
                                                          CollectOptions options) {
  return ssh::async_no_cancel_throw(collect(&executor, std::move(server_ids), std::move(options)));
}

}  // namespace healer::metrics
