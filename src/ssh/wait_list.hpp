#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <cassert>
#include <list>

#include "healer/core/deadline.hpp"

namespace healer::ssh::detail {

/// Coroutines waiting for "something happened on this session". notify_all() wakes all of them;
/// each re-checks its own condition. Single-threaded: used only on the session's executor.
class WaitList {
 public:
  explicit WaitList(asio::any_io_executor executor) : executor_(std::move(executor)) {}
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;
  /// Every waiting frame holds its session alive, so none can wait on a list being destroyed; an
  /// entry left here is a frame that was freed without unlinking its timer (see wait()), and the
  /// next notify_all() of a list like this one would touch freed memory.
  ~WaitList() { assert(timers_.empty() && "a freed coroutine frame left its timer linked"); }

  /// Suspends until notify_all() or the deadline, whichever comes first.
  asio::awaitable<void> wait(Deadline deadline) {
    asio::steady_timer timer(executor_, deadline.at());
    // Waiting timers, in arrival order; a notification cancels them all. The entry is removed
    // by a destructor, not after the co_await: when the io_context is destroyed with this frame
    // suspended, the frame is freed without being resumed, and a later notify_all() (from a
    // Session destroyed in another frame) must not find a pointer to the freed timer.
    struct Unlink {
      std::list<asio::steady_timer*>& list;
      std::list<asio::steady_timer*>::iterator position;
      ~Unlink() { list.erase(position); }
    } unlink{timers_, timers_.insert(timers_.end(), &timer)};
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }

  void notify_all() {
    for (auto* timer : timers_) {
      timer->cancel();
    }
  }

  [[nodiscard]] std::size_t size() const { return timers_.size(); }

 private:
  asio::any_io_executor executor_;
  std::list<asio::steady_timer*> timers_;
};

}  // namespace healer::ssh::detail
