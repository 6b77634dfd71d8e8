#pragma once

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <utility>

namespace healer::test {

/// Runs `work` on `io` until it completes and returns its value; background work it spawned
/// (session pumps) stays queued on `io`. Throws if the coroutine threw, or if it has not finished
/// after `limit`, so a hang fails the test instead of stalling the suite.
template <class T>
T run_async(asio::io_context& io, asio::awaitable<T> work,
            std::chrono::seconds limit = std::chrono::seconds(30)) {
  std::optional<T> value;
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(io, std::move(work), [&](std::exception_ptr e, T result) {
    failure = e;
    if (!e) {
      value.emplace(std::move(result));
    }
    done = true;
  });
  io.restart();
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < give_up) {
    io.run_one_until(give_up);
  }
  if (!done) {
    throw std::runtime_error("coroutine did not finish in time");
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
  return std::move(*value);
}

}  // namespace healer::test
