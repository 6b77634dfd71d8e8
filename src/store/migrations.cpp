#include "migrations.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "healer/core/log.hpp"
#include "healer/store/errors.hpp"
#include "healer/store/records.hpp"
#include "secret_binding.hpp"
#include "secret_box.hpp"

namespace healer::store::migrations {
namespace {

// Enums are stored as their names (readable with the sqlite3 shell, immune to reordering) and
// constrained by CHECKs; times are Unix ms; tables are STRICT.
constexpr std::string_view kInitialSchema = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value BLOB NOT NULL
) STRICT;

CREATE TABLE servers (
  id               INTEGER PRIMARY KEY,
  name             TEXT NOT NULL UNIQUE,
  host             TEXT NOT NULL,
  port             INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
  user             TEXT NOT NULL,
  auth_method      TEXT NOT NULL
                   CHECK (auth_method IN ('key_file', 'agent', 'password', 'stored_key')),
  identity_file    TEXT NOT NULL DEFAULT '',
  host_key_policy  TEXT NOT NULL CHECK (host_key_policy IN ('strict', 'accept_new')),
  known_hosts_file TEXT NOT NULL DEFAULT '',
  -- format byte || 24-byte nonce || XChaCha20-Poly1305 ciphertext and tag; never plaintext
  secret           BLOB,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE server_tags (
  server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  tag       TEXT NOT NULL,
  PRIMARY KEY (server_id, tag)
) STRICT, WITHOUT ROWID;
CREATE INDEX server_tags_by_tag ON server_tags(tag, server_id);

CREATE TABLE diagnosis_runs (
  id          INTEGER PRIMARY KEY,
  server_id   INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  started_at  INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN'))
) STRICT;
CREATE INDEX diagnosis_runs_by_server ON diagnosis_runs(server_id, started_at);
CREATE INDEX diagnosis_runs_by_time ON diagnosis_runs(started_at);

CREATE TABLE check_results (
  run_id      INTEGER NOT NULL REFERENCES diagnosis_runs(id) ON DELETE CASCADE,
  position    INTEGER NOT NULL,
  name        TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')),
  message     TEXT NOT NULL,
  perfdata    TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE metric_samples (
  server_id    INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  collected_at INTEGER NOT NULL,
  name         TEXT NOT NULL,
  labels       TEXT NOT NULL DEFAULT '',
  value        REAL NOT NULL
) STRICT;
CREATE INDEX metric_samples_by_server_time ON metric_samples(server_id, collected_at);
CREATE INDEX metric_samples_by_time ON metric_samples(collected_at);
)sql";

// Labels on servers, applications (the unit of diagnose(applicationId)) and runs of applications.
// The application's lists are JSON arrays: read and written whole, queryable with json_each().
constexpr std::string_view kLabelsAndApplications = R"sql(
CREATE TABLE server_labels (
  server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (server_id, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE applications (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  server_id     INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  systemd_units TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(systemd_units)),
  ports         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(ports)),
  health_url    TEXT NOT NULL DEFAULT '',
  log_paths     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(log_paths)),
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX applications_by_server ON applications(server_id);

ALTER TABLE diagnosis_runs
  ADD COLUMN app_id INTEGER REFERENCES applications(id) ON DELETE SET NULL;
CREATE INDEX diagnosis_runs_by_app ON diagnosis_runs(app_id, started_at);
)sql";

// Raw output of expensive checks (security updates: apt takes seconds) kept between processes, so
// a one-shot `healer diagnose` reuses it until it expires; parsed again with current settings.
constexpr std::string_view kCheckOutputCache = R"sql(
CREATE TABLE check_output_cache (
  server_id     INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  check_name    TEXT NOT NULL,
  command       TEXT NOT NULL,
  stdout        TEXT NOT NULL,
  stderr        TEXT NOT NULL,
  exit_status   INTEGER,
  out_truncated INTEGER NOT NULL,
  sent_at       REAL,
  received_at   REAL,
  expires_at    INTEGER NOT NULL,
  PRIMARY KEY (server_id, check_name)
) STRICT;
)sql";

// The checks runner frames command output with a random marker per run (a fixed one let server
// output forge framing lines); a cached output keeps the marker it was printed with. Entries
// framed the old way are dropped: it is a cache.
constexpr std::string_view kCheckOutputMarker = R"sql(
DELETE FROM check_output_cache;
ALTER TABLE check_output_cache ADD COLUMN marker TEXT NOT NULL DEFAULT '';
)sql";

// Secrets were bound to their server's id only: editing the row's host in the sqlite3 shell sent
// the password to that host. Step 5 re-seals every secret bound to the row's host, port, user,
// host key policy and known_hosts file (secret_binding.hpp).
Result<void> reseal_secrets(sql::Connection& db, const Environment& environment) {
  auto rows = db.prepare(
      "SELECT id, name, host, port, \"user\", host_key_policy, known_hosts_file, secret FROM "
      "servers "
      "WHERE secret IS NOT NULL ORDER BY id");
  if (!rows) {
    return std::move(rows).error();
  }
  auto update = db.prepare("UPDATE servers SET secret = ?2 WHERE id = ?1");
  if (!update) {
    return std::move(update).error();
  }
  struct Resealed {
    std::int64_t id;
    std::vector<unsigned char> sealed;
  };
  std::vector<Resealed> resealed;
  for (;;) {
    auto row = rows->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    const std::int64_t id = rows->int64(0);
    const std::string name = rows->text(1);
    if (environment.key == nullptr) {
      return make_error(Errc::master_key_missing,
                        "re-sealing the secret of server '" + name + "' needs the master key");
    }
    auto plaintext = crypto::open(*environment.key, rows->blob(7), legacy_secret_context(id));
    if (!plaintext) {
      // It did not decrypt before this step either; it stays as it is and fails when used, with
      // the same advice to store it again.
      log::get("store")->warn(
          "the secret of server '{}' (#{}) does not decrypt; left as it is (store it again)", name,
          id);
      continue;
    }
    const SecretBinding binding{
        id, rows->text(2), rows->int64(3), rows->text(4), rows->text(5), rows->text(6)};
    resealed.push_back({id, crypto::seal(*environment.key, *plaintext, secret_context(binding))});
    crypto::wipe(*plaintext);
  }
  for (const auto& row : resealed) {
    update->reset();
    update->bind(1, row.id).bind_blob(2, row.sealed);
    if (auto written = update->run(); !written) {
      return written;
    }
  }
  return {};
}

// Status changes of servers and applications, written with the run that showed them, so "red
// since when" and the transition history need no scan of every run.
constexpr std::string_view kStatusTransitions = R"sql(
CREATE TABLE status_transitions (
  id          INTEGER PRIMARY KEY,
  server_id   INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  app_id      INTEGER REFERENCES applications(id) ON DELETE CASCADE,
  at          INTEGER NOT NULL,
  from_status TEXT CHECK (from_status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')),
  to_status   TEXT NOT NULL CHECK (to_status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')),
  run_id      INTEGER REFERENCES diagnosis_runs(id) ON DELETE SET NULL
) STRICT;
CREATE INDEX status_transitions_by_server ON status_transitions(server_id, at);
CREATE INDEX status_transitions_by_time ON status_transitions(at);
)sql";

// Healing: the audit log is append-only (rows are events of a heal: started, finished,
// verified, refused, breaker opened/closed); triggers refuse UPDATE and DELETE whoever asks, so
// no healer interface and no bug can rewrite it. No foreign keys: a removed server keeps its
// history. Plans are kept by hash so the API can apply a plan the CLI made (and the reverse).
constexpr std::string_view kHealing = R"sql(
CREATE TABLE heal_audit (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  heal_id   TEXT NOT NULL,
  event     TEXT NOT NULL CHECK (event IN ('started', 'finished', 'verified', 'refused',
                                           'breaker_open', 'breaker_closed')),
  at        INTEGER NOT NULL,
  actor     TEXT NOT NULL,
  plan_hash TEXT NOT NULL,
  server    TEXT NOT NULL,
  server_id INTEGER,
  action    TEXT NOT NULL,
  params    TEXT NOT NULL CHECK (json_valid(params)),
  command   TEXT NOT NULL,
  result    TEXT NOT NULL,
  exit_code INTEGER,
  output    TEXT NOT NULL,
  before    TEXT NOT NULL CHECK (json_valid(before)),
  after     TEXT NOT NULL CHECK (json_valid(after)),
  detail    TEXT NOT NULL
) STRICT;
CREATE INDEX heal_audit_by_server_action ON heal_audit(server, action, at);
CREATE INDEX heal_audit_by_heal ON heal_audit(heal_id);
CREATE TRIGGER heal_audit_no_update BEFORE UPDATE ON heal_audit
BEGIN SELECT RAISE(ABORT, 'heal_audit is append-only'); END;
CREATE TRIGGER heal_audit_no_delete BEFORE DELETE ON heal_audit
BEGIN SELECT RAISE(ABORT, 'heal_audit is append-only'); END;

CREATE TABLE heal_plans (
  hash       TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  body       TEXT NOT NULL CHECK (json_valid(body))
) STRICT;
CREATE INDEX heal_plans_by_time ON heal_plans(created_at);
)sql";

// --- PostgreSQL: the same steps, table for table and column for column. Integers are BIGINT
// (ids, Unix ms), BLOB is BYTEA, REAL is DOUBLE PRECISION, INTEGER PRIMARY KEY is an identity
// column; metric_samples gets the `rowid` column SQLite has implicitly (prune and ordering use
// it); JSON columns are checked by a cast; the append-only triggers call a function.
constexpr std::string_view kInitialSchemaPostgres = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value BYTEA NOT NULL
);

CREATE TABLE servers (
  id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name             TEXT NOT NULL UNIQUE,
  host             TEXT NOT NULL,
  port             BIGINT NOT NULL CHECK (port BETWEEN 1 AND 65535),
  "user"           TEXT NOT NULL,
  auth_method      TEXT NOT NULL
                   CHECK (auth_method IN ('key_file', 'agent', 'password', 'stored_key')),
  identity_file    TEXT NOT NULL DEFAULT '',
  host_key_policy  TEXT NOT NULL CHECK (host_key_policy IN ('strict', 'accept_new')),
  known_hosts_file TEXT NOT NULL DEFAULT '',
  -- format byte || 24-byte nonce || XChaCha20-Poly1305 ciphertext and tag; never plaintext
  secret           BYTEA,
  created_at       BIGINT NOT NULL,
  updated_at       BIGINT NOT NULL
);

CREATE TABLE server_tags (
  server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  tag       TEXT NOT NULL,
  PRIMARY KEY (server_id, tag)
);
CREATE INDEX server_tags_by_tag ON server_tags(tag, server_id);

CREATE TABLE diagnosis_runs (
  id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  server_id   BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  started_at  BIGINT NOT NULL,
  finished_at BIGINT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN'))
);
CREATE INDEX diagnosis_runs_by_server ON diagnosis_runs(server_id, started_at);
CREATE INDEX diagnosis_runs_by_time ON diagnosis_runs(started_at);

CREATE TABLE check_results (
  run_id      BIGINT NOT NULL REFERENCES diagnosis_runs(id) ON DELETE CASCADE,
  position    BIGINT NOT NULL,
  name        TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')),
  message     TEXT NOT NULL,
  perfdata    TEXT NOT NULL,
  duration_ms BIGINT NOT NULL,
  PRIMARY KEY (run_id, position)
);

CREATE TABLE metric_samples (
  rowid        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  server_id    BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  collected_at BIGINT NOT NULL,
  name         TEXT NOT NULL,
  labels       TEXT NOT NULL DEFAULT '',
  value        DOUBLE PRECISION NOT NULL
);
CREATE INDEX metric_samples_by_server_time ON metric_samples(server_id, collected_at);
CREATE INDEX metric_samples_by_time ON metric_samples(collected_at);
)sql";

constexpr std::string_view kLabelsAndApplicationsPostgres = R"sql(
CREATE TABLE server_labels (
  server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  key       TEXT NOT NULL,
  value     TEXT NOT NULL,
  PRIMARY KEY (server_id, key)
);

CREATE TABLE applications (
  id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  server_id     BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  systemd_units TEXT NOT NULL DEFAULT '[]' CHECK (systemd_units::json IS NOT NULL),
  ports         TEXT NOT NULL DEFAULT '[]' CHECK (ports::json IS NOT NULL),
  health_url    TEXT NOT NULL DEFAULT '',
  log_paths     TEXT NOT NULL DEFAULT '[]' CHECK (log_paths::json IS NOT NULL),
  created_at    BIGINT NOT NULL,
  updated_at    BIGINT NOT NULL
);
CREATE INDEX applications_by_server ON applications(server_id);

ALTER TABLE diagnosis_runs
  ADD COLUMN app_id BIGINT REFERENCES applications(id) ON DELETE SET NULL;
CREATE INDEX diagnosis_runs_by_app ON diagnosis_runs(app_id, started_at);
)sql";

constexpr std::string_view kCheckOutputCachePostgres = R"sql(
CREATE TABLE check_output_cache (
  server_id     BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  check_name    TEXT NOT NULL,
  command       TEXT NOT NULL,
  stdout        TEXT NOT NULL,
  stderr        TEXT NOT NULL,
  exit_status   BIGINT,
  out_truncated BIGINT NOT NULL,
  sent_at       DOUBLE PRECISION,
  received_at   DOUBLE PRECISION,
  expires_at    BIGINT NOT NULL,
  PRIMARY KEY (server_id, check_name)
);
)sql";

constexpr std::string_view kStatusTransitionsPostgres = R"sql(
CREATE TABLE status_transitions (
  id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  server_id   BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
  app_id      BIGINT REFERENCES applications(id) ON DELETE CASCADE,
  at          BIGINT NOT NULL,
  from_status TEXT CHECK (from_status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')),
  to_status   TEXT NOT NULL CHECK (to_status IN ('OK', 'WARNING', 'CRITICAL', 'UNKNOWN')),
  run_id      BIGINT REFERENCES diagnosis_runs(id) ON DELETE SET NULL
);
CREATE INDEX status_transitions_by_server ON status_transitions(server_id, at);
CREATE INDEX status_transitions_by_time ON status_transitions(at);
)sql";

// Append-only as on SQLite, and TRUNCATE (which skips row triggers) refused too. Ids only grow
// (ALWAYS identity: no caller picks one).
constexpr std::string_view kHealingPostgres = R"sql(
CREATE TABLE heal_audit (
  id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  heal_id   TEXT NOT NULL,
  event     TEXT NOT NULL CHECK (event IN ('started', 'finished', 'verified', 'refused',
                                           'breaker_open', 'breaker_closed')),
  at        BIGINT NOT NULL,
  actor     TEXT NOT NULL,
  plan_hash TEXT NOT NULL,
  server    TEXT NOT NULL,
  server_id BIGINT,
  action    TEXT NOT NULL,
  params    TEXT NOT NULL CHECK (params::json IS NOT NULL),
  command   TEXT NOT NULL,
  result    TEXT NOT NULL,
  exit_code BIGINT,
  output    TEXT NOT NULL,
  before    TEXT NOT NULL CHECK (before::json IS NOT NULL),
  after     TEXT NOT NULL CHECK (after::json IS NOT NULL),
  detail    TEXT NOT NULL
);
CREATE INDEX heal_audit_by_server_action ON heal_audit(server, action, at);
CREATE INDEX heal_audit_by_heal ON heal_audit(heal_id);
CREATE FUNCTION heal_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'heal_audit is append-only'; END $$;
CREATE TRIGGER heal_audit_no_update BEFORE UPDATE ON heal_audit
  FOR EACH ROW EXECUTE FUNCTION heal_audit_append_only();
CREATE TRIGGER heal_audit_no_delete BEFORE DELETE ON heal_audit
  FOR EACH ROW EXECUTE FUNCTION heal_audit_append_only();
CREATE TRIGGER heal_audit_no_truncate BEFORE TRUNCATE ON heal_audit
  FOR EACH STATEMENT EXECUTE FUNCTION heal_audit_append_only();

CREATE TABLE heal_plans (
  hash       TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  body       TEXT NOT NULL CHECK (body::json IS NOT NULL)
);
CREATE INDEX heal_plans_by_time ON heal_plans(created_at);
)sql";

// Leases between `healer serve` nodes sharing one database (store/leases.cpp). One row per
// server (node NULL: free) so claims lock existing rows (PostgreSQL: FOR UPDATE SKIP LOCKED).
// Times are Unix ms by the database's clock.
constexpr std::string_view kLeases = R"sql(
CREATE TABLE server_leases (
  server_id  INTEGER PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
  node       TEXT,
  expires_at INTEGER NOT NULL DEFAULT 0,
  since      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX server_leases_by_node ON server_leases(node);

CREATE TABLE lease_nodes (
  node       TEXT PRIMARY KEY,
  started_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
)sql";

constexpr std::string_view kLeasesPostgres = R"sql(
CREATE TABLE server_leases (
  server_id  BIGINT PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
  node       TEXT,
  expires_at BIGINT NOT NULL DEFAULT 0,
  since      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX server_leases_by_node ON server_leases(node);

CREATE TABLE lease_nodes (
  node       TEXT PRIMARY KEY,
  started_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
)sql";

constexpr std::array kMigrations = {
    Migration{1, "initial schema", kInitialSchema, nullptr, kInitialSchemaPostgres},
    Migration{2, "server labels and applications", kLabelsAndApplications, nullptr,
              kLabelsAndApplicationsPostgres},
    Migration{3, "check output cache", kCheckOutputCache, nullptr, kCheckOutputCachePostgres},
    // Plain SQL both engines run alike.
    Migration{4, "check output cache marker", kCheckOutputMarker, nullptr, kCheckOutputMarker},
    Migration{5, "secrets bound to their server's address and host key settings", "",
              &reseal_secrets, ""},
    Migration{6, "status transitions", kStatusTransitions, nullptr, kStatusTransitionsPostgres},
    Migration{7, "heal audit log (append-only) and plans", kHealing, nullptr, kHealingPostgres},
    Migration{8, "server leases between nodes", kLeases, nullptr, kLeasesPostgres},
};

constexpr std::string_view kCreateMigrationsTable = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at INTEGER NOT NULL
) STRICT;
)sql";

constexpr std::string_view kCreateMigrationsTablePostgres = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    BIGINT PRIMARY KEY,
  name       TEXT NOT NULL,
  applied_at BIGINT NOT NULL
);
)sql";

Error step_failed(const Migration& migration, const Error& cause) {
  return make_error(Errc::migration_failed, "migration " + std::to_string(migration.version) +
                                                " (" + std::string(migration.name) +
                                                "): " + cause.message());
}

}  // namespace

std::span<const Migration> all() noexcept { return kMigrations; }

int latest_version() noexcept { return kMigrations.back().version; }

Result<int> current_version(sql::Connection& db) {
  if (auto created = db.exec(db.dialect() == sql::Dialect::postgres ? kCreateMigrationsTablePostgres
                                                                    : kCreateMigrationsTable);
      !created) {
    return std::move(created).error();
  }
  auto query = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!query) {
    return std::move(query).error();
  }
  auto row = query->step();
  if (!row) {
    return std::move(row).error();
  }
  return static_cast<int>(query->int64(0));
}

Result<int> read_version(sql::Connection& db) {
  auto exists = db.prepare(
      db.dialect() == sql::Dialect::postgres
          ? "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = 'schema_migrations'"
          : "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = "
            "'schema_migrations'");
  if (!exists) {
    return std::move(exists).error();
  }
  auto row = exists->step();
  if (!row) {
    return std::move(row).error();
  }
  if (exists->int64(0) == 0) {
    return 0;
  }
  auto query = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!query) {
    return std::move(query).error();
  }
  row = query->step();
  if (!row) {
    return std::move(row).error();
  }
  return static_cast<int>(query->int64(0));
}

Result<int> migrate(sql::Connection& db, int target, const Environment& environment) {
  auto version = current_version(db);
  if (!version) {
    return version;
  }
  if (*version > latest_version()) {
    return make_error(Errc::schema_too_new,
                      "database is at schema version " + std::to_string(*version) +
                          ", this healer knows up to " + std::to_string(latest_version()));
  }
  for (const Migration& migration : kMigrations) {
    if (migration.version <= *version || migration.version > target) {
      continue;
    }
    auto transaction = sql::Transaction::begin(db);
    if (!transaction) {
      return step_failed(migration, transaction.error());
    }
    // Another process may have migrated between our version read and the write lock.
    auto now_at = current_version(db);
    if (!now_at) {
      return step_failed(migration, now_at.error());
    }
    if (*now_at >= migration.version) {
      *version = *now_at;
      continue;
    }
    if (const auto ddl = migration.sql_for(db.dialect()); !ddl.empty()) {
      if (auto applied = db.exec(ddl); !applied) {
        return step_failed(migration, applied.error());
      }
    }
    if (migration.step != nullptr) {
      if (auto stepped = migration.step(db, environment); !stepped) {
        return step_failed(migration, stepped.error());
      }
    }
    auto record =
        db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)");
    if (!record) {
      return step_failed(migration, record.error());
    }
    record->bind(1, migration.version).bind(2, migration.name).bind(3, now_unix_ms());
    if (auto recorded = record->run(); !recorded) {
      return step_failed(migration, recorded.error());
    }
    if (auto committed = transaction->commit(); !committed) {
      return step_failed(migration, committed.error());
    }
    *version = migration.version;
  }
  return *version;
}

}  // namespace healer::store::migrations
