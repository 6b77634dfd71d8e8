#include "healer/service/exec.hpp"

#include <asio/this_coro.hpp>
#include <memory>

#include "healer/exec/executor.hpp"
#include "healer/exec/worker_group.hpp"
#include "healer/service/errors.hpp"
#include "healer/ssh/cancellation.hpp"

namespace healer::service {
namespace {

// What the workers of one fan-out share (WorkerGroup children): each takes the next server in
// turn. Once the fan-out is cancelled, the servers a worker still takes end at once (each command
// ssh::Errc::cancelled), so every server has results.
struct FanOut {
  FanOut(std::vector<std::string> server_ids, std::vector<std::string> command_list,
         exec::RunOptions run_options)
      : ids(std::move(server_ids)),
        commands(std::move(command_list)),
        options(std::move(run_options)),
        results(ids.size()) {}
  std::vector<std::string> ids;
  std::vector<std::string> commands;
  exec::RunOptions options;
  std::vector<std::vector<Result<ssh::CommandResult>>> results;
  std::size_t next = 0;
};

asio::awaitable<void> fan_out_worker(exec::Executor* executor, std::shared_ptr<FanOut> fan) {
  while (fan->next < fan->ids.size()) {
    const std::size_t index = fan->next++;
    fan->results[index] =
        co_await executor->async_run_all(fan->ids[index], fan->commands, fan->options);
  }
}

}  // namespace

asio::awaitable<Result<ExecOutcome>> async_exec(Runtime& runtime, ExecRequest request) {
  std::erase_if(request.commands, [](const std::string& command) { return command.empty(); });
  if (request.commands.empty()) {
    co_return make_error(Errc::invalid_input,
                         "no command given (after --, or with --commands FILE)");
  }
  if (request.host.has_value() == !request.selection.empty()) {
    co_return make_error(Errc::invalid_input,
                         request.host ? "give either --host or server names / --tag / --all"
                                      : "name servers, or use --tag TAG, --all or --host HOST");
  }
  if (request.timeout <= std::chrono::milliseconds::zero()) {
    co_return make_error(Errc::invalid_input, "the timeout must be positive");
  }
  std::vector<store::ServerRecord> records;
  if (request.host) {
    auto record = record_for(*request.host, runtime.secrets());
    if (!record) {
      co_return std::move(record).error();
    }
    records.push_back(std::move(*record));
  } else {
    if (!runtime.has_store()) {
      co_return make_error(Errc::unavailable, "running on inventory servers needs the database");
    }
    // A named job: GCC 12 mis-builds a capturing lambda temporary inside co_await.
    auto job = [&runtime, selection = request.selection]() {
      return select_servers(runtime.store(), selection);
    };
    auto selected = co_await runtime.async_offload(std::move(job));
    if (!selected) {
      co_return std::move(selected).error();
    }
    records = std::move(*selected);
  }
  auto ids = register_servers(runtime, records);
  if (!ids) {
    co_return std::move(ids).error();
  }

  exec::RunOptions options;
  options.max_output = request.max_output;
  options.deadline = Deadline::after(request.timeout);
  options.priority = request.priority;
  options.stdin_data = std::move(request.stdin_data);
  auto fan = std::make_shared<FanOut>(*ids, std::move(request.commands), std::move(options));
  const std::size_t workers = std::min(ids->size(), std::max<std::size_t>(request.parallel, 1));
  // A cancellation of this coroutine reaches every worker, and the wait below outlasts them all.
  exec::WorkerGroup group(runtime.io().get_executor());
  if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
    group.cancel();
  }
  for (std::size_t i = 0; i < workers; ++i) {
    group.spawn(fan_out_worker(&runtime.executor(), fan));
  }
  co_await group.async_wait();

  ExecOutcome outcome;
  for (std::size_t i = 0; i < records.size(); ++i) {
    outcome.servers.push_back(
        ExecServerResult{records[i].name, describe(records[i]), std::move(fan->results[i])});
  }
  if (request.with_stats) {
    pool::PoolStats stats;
    for (const auto& id : *ids) {
      stats += runtime.registry().stats(id);
    }
    outcome.stats = stats;
  }
  co_return outcome;
}

}  // namespace healer::service
