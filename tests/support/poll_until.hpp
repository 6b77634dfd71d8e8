#pragma once

#include <chrono>
#include <thread>

namespace healer::test {

/// Re-evaluates `condition` every `interval` until it holds or `timeout` has passed; returns its
/// last value. The way tests wait for another process: a condition with a bounded deadline.
template <class Condition>
bool poll_until(Condition&& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return condition();
    }
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace healer::test
