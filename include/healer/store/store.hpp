#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/store/errors.hpp"
#include "healer/store/master_key.hpp"
#include "healer/store/records.hpp"

namespace healer::store {

namespace detail {
struct StoreImpl;
}  // namespace detail

/// How to open a store.
struct StoreOptions {
  /// The database file (see default_db_path()). Created with mode 0600 (its directory 0700) when
  /// missing; an existing file with group/other permissions is tightened to 0600. Or a
  /// PostgreSQL database: `postgresql://user[:password]@host[:port]/dbname[?param=value...]`
  /// (or postgres://), any URL libpq accepts; the database must exist, healer creates its tables.
  std::filesystem::path db_path;
  /// The master key; when unset: HEALER_MASTER_KEY, else key_file (created on first run).
  std::optional<MasterKey> master_key;
  /// Empty: default_key_file(db_path), i.e. master.key next to the database; for a database URL,
  /// master.key in state_directory() (paths.hpp).
  std::filesystem::path key_file;
  /// How long a write waits for another process holding the database lock (PostgreSQL: the
  /// session's lock_timeout).
  std::chrono::milliseconds busy_timeout{5000};
  /// PostgreSQL only: how long a call waits for the server's answer before it gives the
  /// connection up with Errc::unavailable (the next call connects again).
  std::chrono::milliseconds reply_timeout{30000};
  /// Read-only: for commands that only read (`server list`, `show`...). Opens an existing
  /// database at the current schema without creating, migrating, chmod'ing or writing anything
  /// (no key file is created either), so it works in a read-only directory or on a 0444 file.
  /// A missing database is Errc::not_found, one that needs migrating Errc::schema_too_old; every
  /// write method then fails with Errc::read_only.
  bool read_only = false;
};

/// Counters of the store (for tests and /metrics).
struct StoreStats {
  std::uint64_t async_writes_ok = 0;
  std::uint64_t async_writes_failed = 0;  ///< each one was logged with its error
  std::size_t queued_jobs = 0;            ///< queued for the store thread, not started yet
};

/// The inventory (servers, applications, encrypted secrets), diagnosis history and metric samples
/// in one SQLite file (WAL). Owns one thread that runs every SQLite call, in the order calls were
/// made; every method may be called from any thread.
///
/// Blocking methods (returning Result) run on the store thread and wait: fine for the CLI and for
/// HTTP worker threads, never on the event loop. The event loop uses the `*_async` writes: they
/// queue and return at once; their callback, if any, runs on the store thread (post back to your
/// executor from it; it must not throw), and a failure is logged in any case.
///
/// Secrets are encrypted (XChaCha20-Poly1305, per-secret random nonce, bound to the server's id,
/// host, port, user, host key policy and known_hosts file) before they reach SQLite; a wrong
/// master key fails open() with Errc::wrong_master_key, a row edited outside healer makes its
/// secret fail with Errc::secret_corrupt.
class Store {
 public:
  template <class T>
  using Callback = std::function<void(Result<T>)>;

  /// Opens (creating if needed) the database, migrates it to the current schema and checks the
  /// master key against the one the database was created with. A symbolic link at the database
  /// path (or its -wal/-shm) is refused; a database this process may not write is
  /// Errc::read_only (open it with StoreOptions::read_only to read it).
  [[nodiscard]] static Result<Store> open(StoreOptions options);

  Store(Store&& other) noexcept;
  Store& operator=(Store&& other) noexcept;
  /// Finishes every queued write, closes the database and joins the store thread. Must not run
  /// on the store thread (i.e. not from a callback).
  ~Store();

  /// The schema version the database is at (the latest this code knows).
  [[nodiscard]] int schema_version() const noexcept;
  /// True when opened with StoreOptions::read_only.
  [[nodiscard]] bool read_only() const noexcept;
  /// The database file, or URL (with its password, if it has one: never show it; see location()).
  [[nodiscard]] const std::filesystem::path& path() const noexcept;
  /// The database for messages and logs: the file, or the URL without its password.
  [[nodiscard]] const std::string& location() const noexcept;

  // Servers. Names are unique (Errc::duplicate_name); tags and labels are replaced on update.

  /// Adds a server; returns its id. `server.id` is ignored.
  [[nodiscard]] Result<std::int64_t> add_server(const ServerRecord& server);
  /// Updates the server `server.id`; a secret of nullopt keeps the stored one. A method that uses
  /// no secret (key_file, agent) drops the stored secret.
  [[nodiscard]] Result<void> update_server(const ServerRecord& server);
  [[nodiscard]] Result<ServerRecord> get_server(std::int64_t id,
                                                SecretAccess access = SecretAccess::omit);
  [[nodiscard]] Result<ServerRecord> get_server_by_name(std::string_view name,
                                                        SecretAccess access = SecretAccess::omit);
  /// Every server (by name), or those carrying `tag`. Secrets are never decrypted here.
  [[nodiscard]] Result<std::vector<ServerRecord>> list_servers(std::string_view tag = {});
  /// Removes a server with its applications, runs and samples.
  [[nodiscard]] Result<void> remove_server(std::int64_t id);
  [[nodiscard]] Result<void> remove_server_by_name(std::string_view name);

  // Applications (a server plus units, ports, health URL, log paths). Names are unique.

  [[nodiscard]] Result<std::int64_t> add_application(const ApplicationRecord& app);
  [[nodiscard]] Result<void> update_application(const ApplicationRecord& app);
  [[nodiscard]] Result<ApplicationRecord> get_application(std::int64_t id);
  [[nodiscard]] Result<ApplicationRecord> get_application_by_name(std::string_view name);
  /// Every application (by name), or those of one server.
  [[nodiscard]] Result<std::vector<ApplicationRecord>> list_applications(
      std::optional<std::int64_t> server_id = std::nullopt);
  [[nodiscard]] Result<void> remove_application(std::int64_t id);

  // Diagnosis history and metric samples.

  /// Records a run and its checks in one transaction; returns the run's id.
  [[nodiscard]] Result<std::int64_t> record_run(const DiagnosisRun& run);
  /// Records a run like record_run() and, in the same transaction, a status transition when the
  /// run's status differs from the server's (or application's) previous run.
  [[nodiscard]] Result<RecordedRun> record_diagnosis(const DiagnosisRun& run);
  /// The newest server-level run (no application) of every server that has one, with checks.
  [[nodiscard]] Result<std::vector<DiagnosisRun>> latest_runs();
  /// A server's runs older than run `before_id` (0: the newest), newest first, with checks.
  [[nodiscard]] Result<std::vector<DiagnosisRun>> runs_page(std::int64_t server_id,
                                                            std::int64_t before_id,
                                                            std::size_t limit);
  /// A server's status transitions at or after `since_ms`, newest first.
  [[nodiscard]] Result<std::vector<StatusTransition>> transitions(std::int64_t server_id,
                                                                  std::int64_t since_ms = 0,
                                                                  std::size_t limit = 100);
  /// The newest collection (every sample of one collected_at) of one server, or of every server
  /// when `server_id` is unset, among samples at or after `since_ms`.
  [[nodiscard]] Result<std::vector<MetricSample>> latest_samples(
      std::optional<std::int64_t> server_id, std::int64_t since_ms);
  [[nodiscard]] Result<DiagnosisRun> get_run(std::int64_t id);
  /// A server's most recent runs (newest first), with their checks.
  [[nodiscard]] Result<std::vector<DiagnosisRun>> recent_runs(std::int64_t server_id,
                                                              std::size_t limit = 20);
  /// Appends samples in one transaction (all or none); returns how many.
  [[nodiscard]] Result<std::size_t> append_samples(const std::vector<MetricSample>& samples);
  /// A server's samples collected at or after `since_ms` (oldest first), optionally of one name.
  [[nodiscard]] Result<std::vector<MetricSample>> samples_since(std::int64_t server_id,
                                                                std::int64_t since_ms,
                                                                std::string_view name = {});
  /// Deletes samples and runs older than the retention (relative to `now_ms`).
  [[nodiscard]] Result<PruneResult> prune(const Retention& retention,
                                          std::int64_t now_ms = now_unix_ms());

  /// A server's cached check outputs that have not expired at `now_ms`.
  [[nodiscard]] Result<std::vector<CachedCheckOutput>> cached_check_outputs(
      std::int64_t server_id, std::int64_t now_ms = now_unix_ms());
  /// Keeps (replacing the server's entry for that check) cached outputs, in one transaction;
  /// expired entries of the same servers are dropped.
  [[nodiscard]] Result<void> put_cached_check_outputs(const std::vector<CachedCheckOutput>& outputs,
                                                      std::int64_t now_ms = now_unix_ms());

  // Healing: the audit log (append-only: there is no method to change or delete an event, and
  // the database refuses UPDATE and DELETE on it) and plans by hash.

  /// Appends an event; returns its id.
  [[nodiscard]] Result<std::int64_t> append_heal_event(const HealEvent& event);
  /// Events matching `query`, newest first.
  [[nodiscard]] Result<std::vector<HealEvent>> heal_events(const HealEventQuery& query);
  /// Keeps a plan document by its hash (an existing one stays); drops plans older than 7 days.
  [[nodiscard]] Result<void> put_heal_plan(std::string_view hash, std::string_view body,
                                           std::int64_t now_ms = now_unix_ms());
  /// The plan document of `hash`; Errc::not_found when there is none.
  [[nodiscard]] Result<std::string> heal_plan(std::string_view hash);

  // Leases: several `healer serve` nodes on one database split the fleet between them (see
  // docs/architecture.md, "Several nodes"). Times are the database's clock.

  /// One heartbeat of `node`, in one transaction: renews its liveness and its leases until now +
  /// `ttl`, forgets nodes whose heartbeat expired, gives back its leases above its share
  /// (ceil(servers / live nodes)) and claims free or expired leases up to it (on PostgreSQL with
  /// `FOR UPDATE SKIP LOCKED`, so two nodes never claim the same server).
  [[nodiscard]] Result<LeaseSync> sync_leases(std::string_view node, std::chrono::milliseconds ttl);
  /// Gives back every lease of `node` and forgets its heartbeat (a node draining); returns how
  /// many leases it held.
  [[nodiscard]] Result<std::size_t> release_leases(std::string_view node);
  /// The newest server-level run of every server whose newest run started at or after `since_ms`
  /// (with checks): what other nodes recorded lately.
  [[nodiscard]] Result<std::vector<DiagnosisRun>> latest_runs_since(std::int64_t since_ms);

  // Fire-and-forget writes for the event loop: queued in call order, never blocking.

  void record_run_async(DiagnosisRun run, Callback<std::int64_t> done = {});
  void append_samples_async(std::vector<MetricSample> samples, Callback<std::size_t> done = {});
  void prune_async(Retention retention, Callback<PruneResult> done = {});

  /// Waits until everything queued before this call has run.
  void flush();
  [[nodiscard]] StoreStats stats() const;

 private:
  explicit Store(std::unique_ptr<detail::StoreImpl> impl) noexcept;

  std::unique_ptr<detail::StoreImpl> impl_;
};

}  // namespace healer::store
