#include "healer/store/store.hpp"

#include <atomic>

#include "database.hpp"
#include "healer/core/log.hpp"
#include "healer/store/paths.hpp"
#include "worker.hpp"

namespace healer::store {
namespace detail {

struct StoreImpl {
  StoreImpl() = default;
  StoreImpl(const StoreImpl&) = delete;
  StoreImpl& operator=(const StoreImpl&) = delete;
  ~StoreImpl() {
    // Close the connection on the store thread, after every queued write; then the worker's
    // destructor drains and joins.
    worker.post([this] { db.reset(); });
  }

  std::filesystem::path path;
  std::string location;  // path without a URL's password
  int schema_version = 0;
  bool read_only = false;
  std::atomic<std::uint64_t> async_ok{0};
  std::atomic<std::uint64_t> async_failed{0};
  std::shared_ptr<spdlog::logger> logger = log::get("store");
  // Touched only on the worker thread. Declared before the worker: destroyed after it joined.
  std::optional<Database> db;
  Worker worker;
};

}  // namespace detail

using detail::StoreImpl;

namespace {

Error closed() { return make_error(Errc::closed, "the store was moved from"); }

// Runs `fn(Database&)` on the store thread and waits for its Result.
template <class F>
auto call(StoreImpl* impl, F fn) -> std::invoke_result_t<F&, Database&> {
  if (impl == nullptr) {
    return closed();
  }
  return impl->worker.call([impl, &fn] { return fn(*impl->db); });
}

Error read_only(const StoreImpl& impl) {
  return make_error(Errc::read_only, impl.location + " was opened read-only");
}

// Runs a writing `fn(Database&)` on the store thread and waits; a read-only store refuses it
// before SQLite is asked.
template <class F>
auto write(StoreImpl* impl, F fn) -> std::invoke_result_t<F&, Database&> {
  if (impl != nullptr && impl->read_only) {
    return read_only(*impl);
  }
  return call(impl, std::move(fn));
}

// Queues `fn(Database&)`; counts and logs a failure, then hands the result to `done`.
template <class T, class F>
void post_write(StoreImpl* impl, const char* what, F fn, Store::Callback<T> done) {
  if (impl == nullptr) {
    if (done) {
      done(closed());
    }
    return;
  }
  if (impl->read_only) {
    impl->async_failed.fetch_add(1, std::memory_order_relaxed);
    impl->logger->error("{} failed: {}", what, read_only(*impl).message());
    if (done) {
      done(read_only(*impl));
    }
    return;
  }
  impl->worker.post([impl, what, fn = std::move(fn), done = std::move(done)]() mutable {
    Result<T> result = fn(*impl->db);
    if (result) {
      impl->async_ok.fetch_add(1, std::memory_order_relaxed);
    } else {
      impl->async_failed.fetch_add(1, std::memory_order_relaxed);
      impl->logger->error("{} failed: {}", what, result.error().message());
    }
    if (done) {
      done(std::move(result));
    }
  });
}

}  // namespace

Result<Store> Store::open(StoreOptions options) {
  auto impl = std::make_unique<StoreImpl>();
  impl->path = options.db_path;
  impl->location = display_location(options.db_path.native());
  StoreImpl* raw = impl.get();
  auto version = impl->worker.call([raw, &options]() -> Result<int> {
    auto opened = Database::open(options);
    if (!opened) {
      return std::move(opened).error();
    }
    raw->db.emplace(std::move(opened).value());
    return raw->db->schema_version();
  });
  if (!version) {
    return std::move(version).error();
  }
  impl->schema_version = *version;
  impl->read_only = options.read_only;
  return Store(std::move(impl));
}

Store::Store(std::unique_ptr<StoreImpl> impl) noexcept : impl_(std::move(impl)) {}
Store::Store(Store&& other) noexcept = default;
Store& Store::operator=(Store&& other) noexcept = default;
Store::~Store() = default;

int Store::schema_version() const noexcept { return impl_ ? impl_->schema_version : 0; }

bool Store::read_only() const noexcept { return impl_ && impl_->read_only; }

const std::filesystem::path& Store::path() const noexcept {
  static const std::filesystem::path kNone;
  return impl_ ? impl_->path : kNone;
}

const std::string& Store::location() const noexcept {
  static const std::string kNone;
  return impl_ ? impl_->location : kNone;
}

Result<std::int64_t> Store::add_server(const ServerRecord& server) {
  return write(impl_.get(), [&](Database& db) { return db.add_server(server); });
}

Result<void> Store::update_server(const ServerRecord& server) {
  return write(impl_.get(), [&](Database& db) { return db.update_server(server); });
}

Result<ServerRecord> Store::get_server(std::int64_t id, SecretAccess access) {
  return call(impl_.get(), [&](Database& db) { return db.get_server(id, access); });
}

Result<ServerRecord> Store::get_server_by_name(std::string_view name, SecretAccess access) {
  return call(impl_.get(), [&](Database& db) { return db.get_server_by_name(name, access); });
}

Result<std::vector<ServerRecord>> Store::list_servers(std::string_view tag) {
  return call(impl_.get(), [&](Database& db) { return db.list_servers(tag); });
}

Result<void> Store::remove_server(std::int64_t id) {
  return write(impl_.get(), [&](Database& db) { return db.remove_server(id); });
}

Result<void> Store::remove_server_by_name(std::string_view name) {
  return write(impl_.get(), [&](Database& db) { return db.remove_server_by_name(name); });
}

Result<std::int64_t> Store::add_application(const ApplicationRecord& app) {
  return write(impl_.get(), [&](Database& db) { return db.add_application(app); });
}

Result<void> Store::update_application(const ApplicationRecord& app) {
  return write(impl_.get(), [&](Database& db) { return db.update_application(app); });
}

Result<ApplicationRecord> Store::get_application(std::int64_t id) {
  return call(impl_.get(), [&](Database& db) { return db.get_application(id); });
}

Result<ApplicationRecord> Store::get_application_by_name(std::string_view name) {
  return call(impl_.get(), [&](Database& db) { return db.get_application_by_name(name); });
}

Result<std::vector<ApplicationRecord>> Store::list_applications(
    std::optional<std::int64_t> server_id) {
  return call(impl_.get(), [&](Database& db) { return db.list_applications(server_id); });
}

Result<void> Store::remove_application(std::int64_t id) {
  return write(impl_.get(), [&](Database& db) { return db.remove_application(id); });
}

Result<std::int64_t> Store::record_run(const DiagnosisRun& run) {
  auto recorded = record_diagnosis(run);
  if (!recorded) {
    return std::move(recorded).error();
  }
  return recorded->run_id;
}

Result<RecordedRun> Store::record_diagnosis(const DiagnosisRun& run) {
  return write(impl_.get(), [&](Database& db) { return db.record_run(run); });
}

Result<std::vector<DiagnosisRun>> Store::latest_runs() {
  return call(impl_.get(), [&](Database& db) { return db.latest_runs(); });
}

Result<std::vector<DiagnosisRun>> Store::runs_page(std::int64_t server_id, std::int64_t before_id,
                                                   std::size_t limit) {
  return call(impl_.get(), [&](Database& db) { return db.runs_page(server_id, before_id, limit); });
}

Result<std::vector<StatusTransition>> Store::transitions(std::int64_t server_id,
                                                         std::int64_t since_ms, std::size_t limit) {
  return call(impl_.get(),
              [&](Database& db) { return db.transitions(server_id, since_ms, limit); });
}

Result<std::vector<MetricSample>> Store::latest_samples(std::optional<std::int64_t> server_id,
                                                        std::int64_t since_ms) {
  return call(impl_.get(), [&](Database& db) { return db.latest_samples(server_id, since_ms); });
}

Result<DiagnosisRun> Store::get_run(std::int64_t id) {
  return call(impl_.get(), [&](Database& db) { return db.get_run(id); });
}

Result<std::vector<DiagnosisRun>> Store::recent_runs(std::int64_t server_id, std::size_t limit) {
  return call(impl_.get(), [&](Database& db) { return db.recent_runs(server_id, limit); });
}

Result<std::size_t> Store::append_samples(const std::vector<MetricSample>& samples) {
  return write(impl_.get(), [&](Database& db) { return db.append_samples(samples); });
}

Result<std::vector<CachedCheckOutput>> Store::cached_check_outputs(std::int64_t server_id,
                                                                   std::int64_t now_ms) {
  return call(impl_.get(),
              [&](Database& db) { return db.cached_check_outputs(server_id, now_ms); });
}

Result<void> Store::put_cached_check_outputs(const std::vector<CachedCheckOutput>& outputs,
                                             std::int64_t now_ms) {
  return write(impl_.get(),
               [&](Database& db) { return db.put_cached_check_outputs(outputs, now_ms); });
}

Result<std::vector<MetricSample>> Store::samples_since(std::int64_t server_id,
                                                       std::int64_t since_ms,
                                                       std::string_view name) {
  return call(impl_.get(),
              [&](Database& db) { return db.samples_since(server_id, since_ms, name); });
}

Result<PruneResult> Store::prune(const Retention& retention, std::int64_t now_ms) {
  return write(impl_.get(), [&](Database& db) { return db.prune(retention, now_ms); });
}

Result<std::int64_t> Store::append_heal_event(const HealEvent& event) {
  return write(impl_.get(), [&](Database& db) { return db.append_heal_event(event); });
}

Result<std::vector<HealEvent>> Store::heal_events(const HealEventQuery& query) {
  return call(impl_.get(), [&](Database& db) { return db.heal_events(query); });
}

Result<void> Store::put_heal_plan(std::string_view hash, std::string_view body,
                                  std::int64_t now_ms) {
  return write(impl_.get(), [&](Database& db) { return db.put_heal_plan(hash, body, now_ms); });
}

Result<std::string> Store::heal_plan(std::string_view hash) {
  return call(impl_.get(), [&](Database& db) { return db.heal_plan(hash); });
}

Result<LeaseSync> Store::sync_leases(std::string_view node, std::chrono::milliseconds ttl) {
  return write(impl_.get(), [&](Database& db) { return db.sync_leases(node, ttl.count()); });
}

Result<std::size_t> Store::release_leases(std::string_view node) {
  return write(impl_.get(), [&](Database& db) { return db.release_leases(node); });
}

Result<std::vector<DiagnosisRun>> Store::latest_runs_since(std::int64_t since_ms) {
  return call(impl_.get(), [&](Database& db) { return db.latest_runs_since(since_ms); });
}

void Store::record_run_async(DiagnosisRun run, Callback<std::int64_t> done) {
  post_write<std::int64_t>(
      impl_.get(), "recording a diagnosis run",
      [run = std::move(run)](Database& db) -> Result<std::int64_t> {
        auto recorded = db.record_run(run);
        if (!recorded) {
          return std::move(recorded).error();
        }
        return recorded->run_id;
      },
      std::move(done));
}

void Store::append_samples_async(std::vector<MetricSample> samples, Callback<std::size_t> done) {
  post_write<std::size_t>(
      impl_.get(), "appending metric samples",
      [samples = std::move(samples)](Database& db) { return db.append_samples(samples); },
      std::move(done));
}

void Store::prune_async(Retention retention, Callback<PruneResult> done) {
  post_write<PruneResult>(
      impl_.get(), "pruning history",
      [retention](Database& db) { return db.prune(retention, now_unix_ms()); }, std::move(done));
}

void Store::flush() {
  if (impl_) {
    impl_->worker.call([] {});
  }
}

StoreStats Store::stats() const {
  StoreStats stats;
  if (impl_) {
    stats.async_writes_ok = impl_->async_ok.load(std::memory_order_relaxed);
    stats.async_writes_failed = impl_->async_failed.load(std::memory_order_relaxed);
    stats.queued_jobs = impl_->worker.queued();
  }
  return stats;
}

}  // namespace healer::store
