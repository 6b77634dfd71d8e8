#include "healer/exec/worker_group.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <deque>
#include <exception>
#include <utility>

#include "healer/core/deadline.hpp"
#include "healer/ssh/cancellation.hpp"

namespace healer::exec {

struct WorkerGroup::State {
  explicit State(const asio::any_io_executor& io) : executor(io), done(io) {}

  asio::any_io_executor executor;
  // One per child, bound to its coroutine's cancellation slot; a deque keeps their addresses
  // stable while children are added. A signal is emitted only while its child runs: the handler
  // Asio installs in the slot refers to the child's state, which ends with the child.
  std::deque<asio::cancellation_signal> signals;
  std::deque<bool> finished;  // by child
  std::size_t running = 0;
  bool cancelled = false;
  std::exception_ptr failure;  // the first exception of a child
  asio::steady_timer done;     // cancelled when `running` drops to zero
};

WorkerGroup::WorkerGroup(asio::any_io_executor executor)
    : state_(std::make_shared<State>(executor)) {}

WorkerGroup::WorkerGroup(WorkerGroup&&) noexcept = default;

WorkerGroup& WorkerGroup::operator=(WorkerGroup&& other) noexcept {
  if (this != &other) {
    cancel();
    state_ = std::move(other.state_);
  }
  return *this;
}

WorkerGroup::~WorkerGroup() { cancel(); }

void WorkerGroup::spawn(asio::awaitable<void> work) {
  State& state = *state_;
  const std::size_t index = state.signals.size();
  state.signals.emplace_back();
  state.finished.push_back(false);
  ++state.running;
  asio::co_spawn(state.executor, run_child(state_, index, std::move(work)),
                 asio::bind_cancellation_slot(state.signals[index].slot(), asio::detached));
  // A child of a cancelled group is cancelled from the start (unless it already ended: co_spawn
  // may run it inline up to its first suspension).
  if (state.cancelled && !state.finished[index]) {
    state.signals[index].emit(asio::cancellation_type::terminal);
  }
}

void WorkerGroup::cancel() {
  if (state_) {
    cancel_children(*state_);
  }
}

void WorkerGroup::cancel_children(State& state) {
  state.cancelled = true;
  for (std::size_t i = 0; i < state.signals.size(); ++i) {
    if (!state.finished[i]) {
      state.signals[i].emit(asio::cancellation_type::terminal);
    }
  }
}

bool WorkerGroup::cancelled() const noexcept { return state_ && state_->cancelled; }

std::size_t WorkerGroup::running() const noexcept { return state_ ? state_->running : 0; }

asio::awaitable<void> WorkerGroup::run_child(std::shared_ptr<State> state, std::size_t index,
                                             asio::awaitable<void> work) {
  // This coroutine is the bottom of the child's stack: the setting holds for all of it.
  co_await asio::this_coro::throw_if_cancelled(false);
  try {
    co_await std::move(work);
  } catch (...) {
    if (!state->failure) {
      state->failure = std::current_exception();
    }
  }
  state->finished[index] = true;
  if (--state->running == 0) {
    state->done.cancel();
  }
}

asio::awaitable<void> WorkerGroup::async_wait() {
  return ssh::async_no_cancel_throw(wait_all(state_));
}

asio::awaitable<void> WorkerGroup::wait_all(std::shared_ptr<State> state) {
  while (state->running > 0) {
    // co_await outside the && (GCC 12 miscompiles a co_await in a short-circuit operand).
    const bool cancel = ssh::cancel_requested(co_await asio::this_coro::cancellation_state);
    if (!state->cancelled && cancel) {
      cancel_children(*state);
      continue;
    }
    state->done.expires_at(Clock::time_point::max());
    co_await state->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  if (state->failure) {
    std::rethrow_exception(std::exchange(state->failure, nullptr));
  }
}

}  // namespace healer::exec
