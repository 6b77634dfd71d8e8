#pragma once

// The store's one thread: runs jobs in the order they were posted. Every SQLite call of a Store
// runs here, so the connection needs no locks.

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

namespace healer::store {

class Worker {
 public:
  Worker();
  /// Runs every job already posted, then joins the thread.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Queues a job. Jobs must not throw: an escaping exception is a broken invariant (terminate).
  void post(std::function<void()> job);

  /// Runs `fn` on the worker and waits for its result. Called on the worker itself (from a job or
  /// a callback), runs `fn` inline: waiting there would deadlock.
  template <class F>
  std::invoke_result_t<F&> call(F fn) {
    using R = std::invoke_result_t<F&>;
    if (on_worker_thread()) {
      return fn();
    }
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
    std::future<R> result = task->get_future();
    post([task] { (*task)(); });
    return result.get();
  }

  [[nodiscard]] bool on_worker_thread() const noexcept {
    return std::this_thread::get_id() == thread_.get_id();
  }

  /// Jobs queued and not started yet.
  [[nodiscard]] std::size_t queued() const;

 private:
  void run();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  // jobs in posting order; the front one runs next
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the queue exists
};

}  // namespace healer::store
