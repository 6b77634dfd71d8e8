#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "healer/checks/runner.hpp"
#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/exec/executor.hpp"
#include "healer/metrics/probe.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/settings.hpp"
#include "healer/store/store.hpp"

namespace healer::service {

/// Secrets the process was handed in its environment (HEALER_KEY_PASSPHRASE, HEALER_PASSWORD).
/// Read once at start; never logged. Not an aggregate on purpose.
struct LocalSecrets {
  LocalSecrets() = default;

  std::optional<std::string> key_passphrase;  ///< unlocks encrypted key files
  std::optional<std::string> password;        ///< `exec --auth password`, `server add`

  /// Reads both variables; with `scrub`, removes them from the environment afterwards (so a
  /// child process or /proc/PID/environ does not show them).
  [[nodiscard]] static LocalSecrets from_environment(bool scrub);
};

/// A server's previous metrics collection, kept so the next one yields rates (counters only).
struct PreviousCollection {
  std::chrono::system_clock::time_point at;
  metrics::Sample counters;
};

/// What a Runtime is built from. Not an aggregate on purpose.
struct RuntimeOptions {
  RuntimeOptions() = default;

  Settings settings;
  /// The inventory database (--db); unset: $HEALER_DB or the XDG default.
  std::optional<std::filesystem::path> db;
  /// False for work that needs no inventory (`exec --host`).
  bool open_store = true;
  LocalSecrets secrets;
};

/// Runs the blocking `work` on `threads` and resumes the caller on its own executor with the
/// result. `work` must not throw.
template <class F>
asio::awaitable<std::invoke_result_t<F>> async_offload(asio::thread_pool& threads, F work) {
  using Value = std::invoke_result_t<F>;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(Value)>(
      [&threads](auto handler, F job) {
        asio::post(threads, [handler = std::move(handler), job = std::move(job)]() mutable {
          Value value = job();
          auto executor = asio::get_associated_executor(handler);
          asio::post(executor, [handler = std::move(handler), value = std::move(value)]() mutable {
            std::move(handler)(std::move(value));
          });
        });
      },
      asio::use_awaitable, std::move(work));
}

/// What every healer command and the daemon share: the event loop, one pool registry, the
/// executor, the store, the check output cache and the settings. A one-shot CLI command keeps it
/// for one command; `healer serve` for the life of the process.
///
/// Threads: the loop (io()) owns the registry, the executor and the cache; use them only there.
/// The store may be called from any thread but its blocking calls never on the loop: coroutines
/// use async_offload(). A one-shot command runs the loop on its own thread (run_one_shot); the
/// daemon on a thread it owns.
class Runtime {
 public:
  /// Opens the store (when asked) and builds the registry on a new loop. Errors: store errors as
  /// they are (wrong master key, unreadable file...).
  [[nodiscard]] static Result<std::unique_ptr<Runtime>> open(RuntimeOptions options);

  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  /// Stops the worker threads; the registry aborts what is still open (prefer async_shutdown).
  ~Runtime();

  [[nodiscard]] asio::io_context& io() noexcept { return io_; }
  [[nodiscard]] pool::Registry& registry() noexcept { return *registry_; }
  [[nodiscard]] exec::Executor& executor() noexcept { return *executor_; }
  [[nodiscard]] checks::ResultCache& cache() noexcept { return cache_; }
  /// The last collection of each server (by pool id) this process made; on the loop.
  [[nodiscard]] std::map<std::string, PreviousCollection, std::less<>>& previous_collections() {
    return previous_collections_;
  }
  [[nodiscard]] bool has_store() const noexcept { return store_.has_value(); }
  /// The store; only when has_store().
  [[nodiscard]] store::Store& store() noexcept { return *store_; }
  [[nodiscard]] const Settings& settings() const noexcept { return settings_; }
  /// Replaces the settings (SIGHUP): checks, retention, schedule and notify take effect on the
  /// next run; pool settings need a restart (the registry keeps the ones it was built with).
  void replace_settings(Settings settings) { settings_ = std::move(settings); }
  [[nodiscard]] const LocalSecrets& secrets() const noexcept { return secrets_; }
  /// The worker threads for blocking work (store calls, processes, outgoing HTTP).
  [[nodiscard]] asio::thread_pool& blocking() noexcept { return blocking_; }

  /// Runs the blocking `work` (store calls, file reads) on a worker thread and resumes the caller
  /// on its own executor with the result. `work` must not throw.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> async_offload(F work) {
    return service::async_offload(blocking_, std::move(work));
  }

  /// For one-shot commands: runs `task` on this thread to completion, then closes every pooled
  /// session politely. SIGINT or SIGTERM while it runs shuts the pool down (waiters fail,
  /// running remote commands are signalled and their channels closed), so the task finishes with
  /// what completed; the signal number is then in `interrupted_by`.
  template <class T>
  T run_one_shot(asio::awaitable<T> task, int* interrupted_by = nullptr) {
    std::optional<T> value;
    std::exception_ptr failure;
    watch_signals(interrupted_by);
    asio::co_spawn(io_, std::move(task), [&](std::exception_ptr error, T result) {
      failure = error;
      value = std::move(result);
      finish_one_shot();
    });
    io_.run();
    io_.restart();
    if (failure) {
      std::rethrow_exception(failure);
    }
    return std::move(*value);
  }

  /// Closes every pooled session politely by `deadline` (on the loop).
  asio::awaitable<void> async_shutdown(Deadline deadline);

  /// True once the process is stopping: a one-shot command got SIGINT / SIGTERM, or
  /// async_shutdown() began. Long waits (a heal's grace period) end early then.
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }

 private:
  Runtime(Settings settings, std::optional<store::Store> store, LocalSecrets secrets);
  void watch_signals(int* interrupted_by);
  void finish_one_shot();

  asio::io_context io_;
  asio::thread_pool blocking_{2};
  Settings settings_;
  LocalSecrets secrets_;
  std::optional<store::Store> store_;
  std::unique_ptr<pool::Registry> registry_;
  std::unique_ptr<exec::Executor> executor_;
  checks::ResultCache cache_;
  std::map<std::string, PreviousCollection, std::less<>> previous_collections_;
  struct SignalWatch;
  std::unique_ptr<SignalWatch> signals_;
  bool stopping_ = false;
};

/// The database path: `db` if given, else $HEALER_DB, else the XDG default.
[[nodiscard]] Result<std::filesystem::path> resolve_db_path(
    const std::optional<std::filesystem::path>& db);

}  // namespace healer::service
