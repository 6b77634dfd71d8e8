#pragma once

#include <asio/awaitable.hpp>
#include <asio/cancellation_state.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/this_coro.hpp>
#include <exception>
#include <optional>
#include <utility>

namespace healer::ssh {

/// True when `state` (what `co_await asio::this_coro::cancellation_state` returns) recorded a
/// cancellation request. Not a coroutine, so checking never throws.
[[nodiscard]] inline bool cancel_requested(const asio::cancellation_state& state) noexcept {
  return state.cancelled() != asio::cancellation_type::none;
}

/// Awaits `operation` with Asio's throw_if_cancelled turned off for the awaiting coroutine's
/// thread, then restores the caller's setting. The ssh, pool and exec layers report a cancellation
/// as a value (Errc::cancelled) instead of an exception thrown out of some nested co_await; their
/// public coroutines are wrapped in this. Exceptions of `operation` (broken invariants, bad_alloc)
/// still propagate, after the setting is restored.
template <class T>
asio::awaitable<T> async_no_cancel_throw(asio::awaitable<T> operation) {
  const bool throws = co_await asio::this_coro::throw_if_cancelled();
  co_await asio::this_coro::throw_if_cancelled(false);
  std::exception_ptr failure;
  std::optional<T> value;
  try {
    value.emplace(co_await std::move(operation));
  } catch (...) {
    failure = std::current_exception();
  }
  co_await asio::this_coro::throw_if_cancelled(throws);
  if (failure) {
    std::rethrow_exception(failure);
  }
  co_return std::move(*value);
}

/// async_no_cancel_throw for operations that return nothing.
inline asio::awaitable<void> async_no_cancel_throw(asio::awaitable<void> operation) {
  const bool throws = co_await asio::this_coro::throw_if_cancelled();
  co_await asio::this_coro::throw_if_cancelled(false);
  std::exception_ptr failure;
  try {
    co_await std::move(operation);
  } catch (...) {
    failure = std::current_exception();
  }
  co_await asio::this_coro::throw_if_cancelled(throws);
  if (failure) {
    std::rethrow_exception(failure);
  }
}

}  // namespace healer::ssh
