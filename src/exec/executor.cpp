#include "healer/exec/executor.hpp"

#include <asio/this_coro.hpp>
#include <memory>

#include "healer/exec/worker_group.hpp"
#include "healer/ssh/cancellation.hpp"
#include "healer/ssh/errors.hpp"

namespace healer::exec {
namespace {

// Channel refusals at most per command before giving up (each one lowers the limit, so a few
// are enough to find the server's MaxSessions).
constexpr int kMaxChannelRetries = 8;

// One command of a batch, in its own coroutine (a WorkerGroup child).
asio::awaitable<void> run_into(Executor* executor,
                               std::shared_ptr<std::vector<Result<ssh::CommandResult>>> results,
                               std::size_t index, std::string server_id, std::string command,
                               RunOptions options) {
  (*results)[index] =
      co_await executor->async_run(std::move(server_id), std::move(command), std::move(options));
}

}  // namespace

asio::awaitable<Result<ssh::CommandResult>> Executor::async_run(std::string server_id,
                                                                std::string command,
                                                                RunOptions options) {
  return ssh::async_no_cancel_throw(
      run(std::move(server_id), std::move(command), std::move(options)));
}

asio::awaitable<std::vector<Result<ssh::CommandResult>>> Executor::async_run_all(
    std::string server_id, std::vector<std::string> commands, RunOptions options) {
  return ssh::async_no_cancel_throw(
      run_all(std::move(server_id), std::move(commands), std::move(options)));
}

asio::awaitable<Result<pool::Lease>> Executor::async_reserve(std::string server_id,
                                                             pool::Priority priority,
                                                             Deadline deadline) {
  return registry_.async_acquire(std::move(server_id), priority, deadline);
}

asio::awaitable<Result<ssh::CommandResult>> Executor::run(std::string server_id,
                                                          std::string command, RunOptions options) {
  int channel_retries = 0;
  bool retried_not_started = false;
  for (;;) {
    auto lease = co_await registry_.async_acquire(server_id, options.priority, options.deadline);
    if (!lease) {
      co_return std::move(lease).error();
    }
    if (options.deadline.expired()) {
      // Nothing was sent: the session is fine, only this request is late.
      co_return make_error(ssh::Errc::timeout,
                           server_id + ": deadline passed before the command could start");
    }
    ssh::ExecOptions exec_options;
    exec_options.max_output = options.max_output;
    exec_options.stdin_data = options.stdin_data;
    exec_options.kill_grace = options.kill_grace;
    auto result =
        co_await lease->session().async_exec(command, std::move(exec_options), options.deadline);
    if (result) {
      result->session_reused = lease->reused();
      result->timing.queue = lease->waited();
      co_return result;
    }
    const Error& error = result.error();
    const bool cancelled = ssh::cancel_requested(co_await asio::this_coro::cancellation_state);
    if (!cancelled && error.code == ssh::Errc::channel_refused &&
        ++channel_retries <= kMaxChannelRetries) {
      lease->channel_refused();
      continue;
    }
    if (!cancelled && error.code == ssh::Errc::not_started && !retried_not_started) {
      retried_not_started = true;
      lease->discard();
      continue;
    }
    if (error.code == ssh::Errc::timeout) {
      lease->timed_out();
    } else if (error.code == ssh::Errc::cancelled) {
      lease->cancelled();
    } else if (ssh::poisons_session(error)) {
      lease->discard();
    }
    co_return std::move(result).error();
  }
}

asio::awaitable<std::vector<Result<ssh::CommandResult>>> Executor::run_all(
    std::string server_id, std::vector<std::string> commands, RunOptions options) {
  auto results =
      std::make_shared<std::vector<Result<ssh::CommandResult>>>(commands.size(), Error{});
  // The executor in a variable of its own: GCC 12 mishandles a co_await in a constructor's
  // argument list.
  const auto io = co_await asio::this_coro::executor;
  WorkerGroup commands_running(io);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    commands_running.spawn(run_into(this, results, i, server_id, std::move(commands[i]), options));
  }
  co_await commands_running.async_wait();
  co_return std::move(*results);
}

}  // namespace healer::exec
