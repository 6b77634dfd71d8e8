#pragma once

#include <chrono>

namespace healer {

using Clock = std::chrono::steady_clock;

/// An absolute point in steady time by which an operation must finish. Computed once per request
/// and passed down unchanged, so nested waits never extend it.
class Deadline {
 public:
  constexpr Deadline() = default;
  constexpr explicit Deadline(Clock::time_point at) : at_(at) {}

  /// A deadline `timeout` from now.
  [[nodiscard]] static Deadline after(Clock::duration timeout) {
    return Deadline(Clock::now() + timeout);
  }
  /// A deadline that never expires (use only where a caller-provided bound already exists).
  [[nodiscard]] static constexpr Deadline never() { return Deadline(Clock::time_point::max()); }

  [[nodiscard]] constexpr Clock::time_point at() const { return at_; }
  [[nodiscard]] bool expired() const { return Clock::now() >= at_; }
  /// Time left, zero when expired.
  [[nodiscard]] Clock::duration remaining() const {
    const auto now = Clock::now();
    return now >= at_ ? Clock::duration::zero() : at_ - now;
  }
  /// The earlier of this deadline and `other`.
  [[nodiscard]] constexpr Deadline min(Deadline other) const {
    return other.at_ < at_ ? other : *this;
  }

 private:
  Clock::time_point at_ = Clock::time_point::max();
};

}  // namespace healer
