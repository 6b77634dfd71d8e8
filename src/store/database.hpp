#pragma once

// The store's synchronous core: one connection, the master key, and every operation as a plain
// function call. Store runs these on its thread; nothing here is thread-safe.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/store/master_key.hpp"
#include "healer/store/records.hpp"
#include "healer/store/store.hpp"
#include "sql.hpp"

namespace healer::store {

/// Creates the directories leading to `db_path` (mode 0700) and the file itself (mode 0600) if
/// missing, before SQLite touches it; tightens an existing database (and its -wal/-shm files) to
/// 0600. SQLite creates -wal/-shm with the database file's mode. A symbolic link at any of the
/// three paths is refused (O_NOFOLLOW; modes change through the open descriptor, never a path);
/// an existing file this process may not write is Errc::read_only.
[[nodiscard]] Result<void> prepare_database_file(const std::filesystem::path& db_path);

class Database {
 public:
  /// prepare_database_file, open, pragmas (WAL, foreign keys, busy timeout), master key and key
  /// check, migrate. With StoreOptions::read_only: open_read_only. A postgresql:// URL as the
  /// path: the same on a PostgreSQL server (open_postgres).
  [[nodiscard]] static Result<Database> open(const StoreOptions& options);

  [[nodiscard]] int schema_version() const noexcept { return schema_version_; }
  [[nodiscard]] bool read_only() const noexcept { return read_only_; }

  [[nodiscard]] Result<std::int64_t> add_server(const ServerRecord& server);
  [[nodiscard]] Result<void> update_server(const ServerRecord& server);
  [[nodiscard]] Result<ServerRecord> get_server(std::int64_t id, SecretAccess access);
  [[nodiscard]] Result<ServerRecord> get_server_by_name(std::string_view name, SecretAccess access);
  [[nodiscard]] Result<std::vector<ServerRecord>> list_servers(std::string_view tag);
  [[nodiscard]] Result<void> remove_server(std::int64_t id);
  [[nodiscard]] Result<void> remove_server_by_name(std::string_view name);

  [[nodiscard]] Result<std::int64_t> add_application(const ApplicationRecord& app);
  [[nodiscard]] Result<void> update_application(const ApplicationRecord& app);
  [[nodiscard]] Result<ApplicationRecord> get_application(std::int64_t id);
  [[nodiscard]] Result<ApplicationRecord> get_application_by_name(std::string_view name);
  [[nodiscard]] Result<std::vector<ApplicationRecord>> list_applications(
      std::optional<std::int64_t> server_id);
  [[nodiscard]] Result<void> remove_application(std::int64_t id);

  [[nodiscard]] Result<RecordedRun> record_run(const DiagnosisRun& run);
  [[nodiscard]] Result<std::vector<DiagnosisRun>> latest_runs();
  [[nodiscard]] Result<std::vector<DiagnosisRun>> runs_page(std::int64_t server_id,
                                                            std::int64_t before_id,
                                                            std::size_t limit);
  [[nodiscard]] Result<std::vector<StatusTransition>> transitions(std::int64_t server_id,
                                                                  std::int64_t since_ms,
                                                                  std::size_t limit);
  [[nodiscard]] Result<std::vector<MetricSample>> latest_samples(
      std::optional<std::int64_t> server_id, std::int64_t since_ms);
  [[nodiscard]] Result<DiagnosisRun> get_run(std::int64_t id);
  [[nodiscard]] Result<std::vector<DiagnosisRun>> recent_runs(std::int64_t server_id,
                                                              std::size_t limit);
  [[nodiscard]] Result<std::size_t> append_samples(const std::vector<MetricSample>& samples);
  [[nodiscard]] Result<std::vector<CachedCheckOutput>> cached_check_outputs(std::int64_t server_id,
                                                                            std::int64_t now_ms);
  [[nodiscard]] Result<void> put_cached_check_outputs(const std::vector<CachedCheckOutput>& outputs,
                                                      std::int64_t now_ms);
  [[nodiscard]] Result<std::vector<MetricSample>> samples_since(std::int64_t server_id,
                                                                std::int64_t since_ms,
                                                                std::string_view name);
  [[nodiscard]] Result<PruneResult> prune(const Retention& retention, std::int64_t now_ms);

  [[nodiscard]] Result<LeaseSync> sync_leases(std::string_view node, std::int64_t ttl_ms);
  [[nodiscard]] Result<std::size_t> release_leases(std::string_view node);
  [[nodiscard]] Result<std::vector<DiagnosisRun>> latest_runs_since(std::int64_t since_ms);

  [[nodiscard]] Result<std::int64_t> append_heal_event(const HealEvent& event);
  [[nodiscard]] Result<std::vector<HealEvent>> heal_events(const HealEventQuery& query);
  [[nodiscard]] Result<void> put_heal_plan(std::string_view hash, std::string_view body,
                                           std::int64_t now_ms);
  [[nodiscard]] Result<std::string> heal_plan(std::string_view hash);

 private:
  Database(sql::Connection connection, MasterKey key, int schema_version, bool read_only)
      : db_(std::move(connection)),
        key_(std::move(key)),
        schema_version_(schema_version),
        read_only_(read_only) {}

  // A PostgreSQL database (StoreOptions::db_path is a postgresql:// URL), read-write or read-only.
  [[nodiscard]] static Result<Database> open_postgres(const StoreOptions& options);
  // Resolves the master key against the database's key check, migrates to the latest schema and
  // stores the key check of a new database; returns the version reached and the key.
  [[nodiscard]] static Result<std::pair<int, MasterKey>> migrate_with_key(
      sql::Connection& connection, const StoreOptions& options, const std::string& where);

  // An existing database at the latest schema, read-only: nothing is created (no file, no
  // directory, no key file), migrated, chmod'ed or written.
  [[nodiscard]] static Result<Database> open_read_only(const StoreOptions& options);

  // Now by the database's clock (PostgreSQL's clock_timestamp(); SQLite: this machine's), Unix ms.
  [[nodiscard]] Result<std::int64_t> database_now();

  // Reads the server rows selected by `where` (a SQL suffix; `bind` binds its parameters), with
  // tags and labels, without decrypting secrets.
  Result<std::vector<ServerRecord>> select_servers(
      std::string_view where, const std::function<void(sql::Statement&)>& bind);
  Result<void> write_tags_and_labels(const ServerRecord& server, std::int64_t id);
  // Seals `secret` bound to `server`'s id, address and host key settings (nullopt: no secret).
  Result<void> write_secret(const ServerRecord& server, const std::optional<std::string>& secret);
  Result<void> decrypt_secret(ServerRecord& server);
  Result<std::vector<ApplicationRecord>> select_applications(std::string_view where,
                                                             std::optional<std::int64_t> key,
                                                             std::string_view name);
  Result<std::vector<DiagnosisRun>> select_runs(std::string_view where, std::int64_t key,
                                                std::int64_t limit);

  sql::Connection db_;
  MasterKey key_;
  int schema_version_;
  bool read_only_;
};

/// Runs an `INSERT ... RETURNING id` (both engines speak it) to completion; returns the id.
[[nodiscard]] Result<std::int64_t> insert_returning_id(sql::Statement& insert);

/// Every row of `query` (server_id, collected_at, name, labels, value) as samples.
[[nodiscard]] Result<std::vector<MetricSample>> read_samples(sql::Statement& query);

}  // namespace healer::store
