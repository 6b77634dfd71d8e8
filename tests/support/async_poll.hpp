#pragma once

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>

namespace healer::test {

/// Pacing only: lets the io_context run the code under test meanwhile.
inline asio::awaitable<void> async_pause(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
}

/// Re-checks `condition` every 5 ms (running the loop in between) until it holds or `timeout`
/// passed; returns its last value. The coroutine twin of poll_until().
template <class Condition>
asio::awaitable<bool> async_poll(Condition condition, std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= give_up) {
      co_return condition();
    }
    co_await async_pause(std::chrono::milliseconds(5));
  }
  co_return true;
}

}  // namespace healer::test
