#include "healer/exec/executor.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <memory>

#include "healer/ssh/errors.hpp"

namespace healer::exec {
namespace {

// Channel refusals at most per command before giving up (each one lowers the limit, so a few
// are enough to find the server's MaxSessions).
constexpr int kMaxChannelRetries = 8;

// The state one async_run_all shares with the commands it spawned.
struct Batch {
  explicit Batch(std::size_t size, asio::any_io_executor executor)
      : results(size, Error{}), pending(size), done(std::move(executor)) {}
  std::vector<Result<ssh::CommandResult>> results;
  std::size_t pending;
  asio::steady_timer done;
};

asio::awaitable<void> run_into(Executor* executor, std::shared_ptr<Batch> batch, std::size_t index,
                               std::string server_id, std::string command, RunOptions options) {
  batch->results[index] =
      co_await executor->async_run(std::move(server_id), std::move(command), std::move(options));
  if (--batch->pending == 0) {
    batch->done.cancel();
  }
}

}  // namespace

asio::awaitable<Result<ssh::CommandResult>> Executor::async_run(std::string server_id,
                                                                std::string command,
                                                                RunOptions options) {
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
    if (error.code == ssh::Errc::channel_refused && ++channel_retries <= kMaxChannelRetries) {
      lease->channel_refused();
      continue;
    }
    if (error.code == ssh::Errc::not_started && !retried_not_started) {
      retried_not_started = true;
      lease->discard();
      continue;
    }
    if (error.code == ssh::Errc::timeout) {
      lease->timed_out();
    } else if (ssh::poisons_session(error)) {
      lease->discard();
    }
    co_return std::move(result).error();
  }
}

asio::awaitable<std::vector<Result<ssh::CommandResult>>> Executor::async_run_all(
    std::string server_id, std::vector<std::string> commands, RunOptions options) {
  auto executor = co_await asio::this_coro::executor;
  auto batch = std::make_shared<Batch>(commands.size(), executor);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    asio::co_spawn(executor, run_into(this, batch, i, server_id, std::move(commands[i]), options),
                   asio::detached);
  }
  while (batch->pending > 0) {
    batch->done.expires_at(Clock::time_point::max());
    co_await batch->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  co_return std::move(batch->results);
}

}  // namespace healer::exec
