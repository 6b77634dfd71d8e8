#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <cstddef>
#include <memory>

namespace healer::exec {

/// The child coroutines one parent coroutine starts and waits for (a sweep's workers, a batch's
/// commands), each with its own cancellation slot, so that a cancelled parent cancels every child
/// and no child outlives the parent's frame. Used on one executor (no locks); children run on it.
///
/// Children run with Asio's throw_if_cancelled turned off: a cancellation reaches them as the
/// ssh::Errc::cancelled results of the calls they await (Executor, Registry), and they finish
/// through their normal code path. Move-only; destroying a group with children still running
/// cancels them (they then end on their own; only async_wait() waits for them).
class WorkerGroup {
 public:
  explicit WorkerGroup(asio::any_io_executor executor);
  WorkerGroup(WorkerGroup&&) noexcept;
  WorkerGroup& operator=(WorkerGroup&&) noexcept;
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;
  ~WorkerGroup();

  /// Starts `work` on the group's executor with a cancellation slot of its own. An exception it
  /// throws is kept (the first one) and rethrown by async_wait().
  void spawn(asio::awaitable<void> work);

  /// Cancels every child still running (terminal cancellation). Idempotent.
  void cancel();

  /// Waits until every child spawned so far has ended. A cancellation of the awaiting coroutine
  /// (terminal, through its cancellation slot) is forwarded to the children, and the wait goes on
  /// until they all ended; nothing here throws because of it. Then rethrows the first exception a
  /// child threw, if any. Await it from one coroutine at a time.
  asio::awaitable<void> async_wait();

  /// True once cancel() ran or async_wait() forwarded a cancellation.
  [[nodiscard]] bool cancelled() const noexcept;
  /// Children not finished yet.
  [[nodiscard]] std::size_t running() const noexcept;

 private:
  struct State;
  static asio::awaitable<void> run_child(std::shared_ptr<State> state, std::size_t index,
                                         asio::awaitable<void> work);
  static asio::awaitable<void> wait_all(std::shared_ptr<State> state);
  static void cancel_children(State& state);

  std::shared_ptr<State> state_;
};

}  // namespace healer::exec
