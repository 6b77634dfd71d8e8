#include "healer/service/runtime.hpp"

#include <asio/detached.hpp>
#include <asio/signal_set.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>

#include "healer/store/paths.hpp"

namespace healer::service {
namespace {

// How long a one-shot command gives its sessions to close politely, and the remote commands a
// signal interrupted to end.
constexpr auto kOneShotCloseTimeout = std::chrono::seconds(2);

}  // namespace

struct Runtime::SignalWatch {
  explicit SignalWatch(asio::io_context& io) : signals(io, SIGINT, SIGTERM) {}
  asio::signal_set signals;
  bool finished = false;
};

LocalSecrets LocalSecrets::from_environment(bool scrub) {
  LocalSecrets secrets;
  for (const auto& [name, slot] : {std::pair{"HEALER_KEY_PASSPHRASE", &secrets.key_passphrase},
                                   std::pair{"HEALER_PASSWORD", &secrets.password}}) {
    if (const char* value = std::getenv(name); value != nullptr) {
      *slot = std::string(value);
      if (scrub) {
        ::unsetenv(name);
      }
    }
  }
  return secrets;
}

Result<std::filesystem::path> resolve_db_path(const std::optional<std::filesystem::path>& db) {
  if (db && !db->empty()) {
    return *db;
  }
  return store::default_db_path();
}

Result<std::unique_ptr<Runtime>> Runtime::open(RuntimeOptions options) {
  std::optional<store::Store> store;
  if (options.open_store) {
    auto path = resolve_db_path(options.db);
    if (!path) {
      return std::move(path).error();
    }
    store::StoreOptions store_options;
    store_options.db_path = std::move(*path);
    auto opened = store::Store::open(std::move(store_options));
    if (!opened) {
      return std::move(opened).error();
    }
    store.emplace(std::move(*opened));
  }
  return std::unique_ptr<Runtime>(
      new Runtime(std::move(options.settings), std::move(store), std::move(options.secrets)));
}

Runtime::Runtime(Settings settings, std::optional<store::Store> store, LocalSecrets secrets)
    : settings_(std::move(settings)), secrets_(std::move(secrets)), store_(std::move(store)) {
  registry_ = std::make_unique<pool::Registry>(io_.get_executor(), settings_.pool);
  executor_ = std::make_unique<exec::Executor>(*registry_);
}

Runtime::~Runtime() {
  blocking_.join();
  executor_.reset();
  registry_.reset();
}

asio::awaitable<void> Runtime::async_shutdown(Deadline deadline) {
  stopping_ = true;
  co_await registry_->async_shutdown(deadline);
}

void Runtime::watch_signals(int* interrupted_by) {
  signals_ = std::make_unique<SignalWatch>(io_);
  signals_->signals.async_wait([this, interrupted_by](std::error_code ec, int signal_number) {
    if (ec || signals_->finished) {
      return;
    }
    if (interrupted_by != nullptr) {
      *interrupted_by = signal_number;
    }
    stopping_ = true;
    // A second signal gets the default disposition: it ends the process at once.
    std::error_code ignored;
    signals_->signals.clear(ignored);
    // Everything the task waits for ends promptly: queued acquires fail, running commands are
    // signalled on the server and their channels closed, sessions disconnect.
    asio::co_spawn(io_, registry_->async_shutdown(Deadline::after(kOneShotCloseTimeout)),
                   asio::detached);
  });
}

void Runtime::finish_one_shot() {
  signals_->finished = true;
  signals_->signals.cancel();
  // The loop ends when the polite close of every session is done.
  asio::co_spawn(io_, registry_->async_shutdown(Deadline::after(kOneShotCloseTimeout)),
                 asio::detached);
}

}  // namespace healer::service
