#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <memory>
#include <optional>
#include <utility>

namespace healer::test {

/// A coroutine started with its own cancellation slot, as a daemon starts an HTTP request's work
/// or a one-shot CLI its command: cancel() emits terminal cancellation (what a closed request, an
/// awaitable operator or a SIGINT handler does), value() holds what the coroutine returned once
/// it ended. Used on the loop's thread only.
template <class T>
class Cancellable {
 public:
  Cancellable(const asio::any_io_executor& executor, asio::awaitable<T> work)
      : state_(std::make_shared<State>()) {
    asio::co_spawn(executor, store(state_, std::move(work)),
                   asio::bind_cancellation_slot(state_->signal.slot(), asio::detached));
  }
  Cancellable(const Cancellable&) = delete;
  Cancellable& operator=(const Cancellable&) = delete;

  /// Terminal cancellation through the coroutine's slot (once it ended: nothing).
  void cancel() {
    if (!state_->value) {
      state_->signal.emit(asio::cancellation_type::terminal);
    }
  }
  [[nodiscard]] bool done() const { return state_->value.has_value(); }
  [[nodiscard]] T& value() { return *state_->value; }

 private:
  struct State {
    asio::cancellation_signal signal;
    std::optional<T> value;
  };
  static asio::awaitable<void> store(std::shared_ptr<State> state, asio::awaitable<T> work) {
    state->value.emplace(co_await std::move(work));
  }
  std::shared_ptr<State> state_;
};

}  // namespace healer::test
