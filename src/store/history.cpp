// Diagnosis runs with their check results, metric samples, and retention.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <unordered_map>

#include "database.hpp"
#include "healer/store/errors.hpp"

namespace healer::store {
namespace {

constexpr std::int64_t kMsPerDay = 24LL * 60 * 60 * 1000;
// Rows deleted per transaction by prune(), so other writers (another process) get the lock
// between chunks instead of waiting for one long delete.
constexpr std::int64_t kPruneChunk = 5000;
// Metric samples per INSERT statement (5 parameters each: well under SQLite's 32,766 and
// PostgreSQL's 65,535 parameters).
constexpr std::size_t kSampleRowsPerInsert = 100;

Error invalid(std::string detail) { return make_error(Errc::invalid_record, std::move(detail)); }

Result<void> validate(const DiagnosisRun& run) {
  if (run.server_id <= 0) {
    return invalid("a diagnosis run needs a server");
  }
  if (run.finished_at < run.started_at) {
    return invalid("a diagnosis run cannot finish before it started");
  }
  for (const auto& check : run.checks) {
    if (check.name.empty()) {
      return invalid("a check result needs a name");
    }
    if (check.duration_ms < 0) {
      return invalid("check '" + check.name + "' has a negative duration");
    }
  }
  return {};
}

Result<CheckStatus> status_from_sql(const std::string& text) {
  if (auto status = parse_check_status(text)) {
    return *status;
  }
  return make_error(Errc::corrupt, "unknown check status in the database");
}

// Deletes the rows `select_keys` (a SELECT of `key` values binding ?1 = cutoff, ?2 = limit)
// from `table`, chunk by chunk, each chunk in its own transaction. Returns how many went.
Result<std::int64_t> delete_in_chunks(sql::Connection& db, std::string_view table,
                                      std::string_view key, std::string_view select_keys,
                                      std::int64_t cutoff) {
  const std::string sql = "DELETE FROM " + std::string(table) + " WHERE " + std::string(key) +
                          " IN (" + std::string(select_keys) + ")";
  std::int64_t total = 0;
  for (;;) {
    auto transaction = sql::Transaction::begin(db);
    if (!transaction) {
      return std::move(transaction).error();
    }
    auto remove = db.prepare(sql);
    if (!remove) {
      return std::move(remove).error();
    }
    remove->bind(1, cutoff).bind(2, kPruneChunk);
    if (auto removed = remove->run(); !removed) {
      return std::move(removed).error();
    }
    const std::int64_t deleted = db.changes();
    if (auto committed = transaction->commit(); !committed) {
      return std::move(committed).error();
    }
    total += deleted;
    if (deleted < kPruneChunk) {
      return total;
    }
  }
}

}  // namespace

Result<RecordedRun> Database::record_run(const DiagnosisRun& run) {
  if (auto valid = validate(run); !valid) {
    return std::move(valid).error();
  }
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  if (run.app_id) {
    // A run of an application must belong to that application's server.
    auto owner = db_.prepare("SELECT server_id FROM applications WHERE id = ?1");
    if (!owner) {
      return std::move(owner).error();
    }
    owner->bind(1, *run.app_id);
    auto row = owner->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      return make_error(Errc::not_found, "application #" + std::to_string(*run.app_id));
    }
    if (owner->int64(0) != run.server_id) {
      return invalid("application #" + std::to_string(*run.app_id) + " is not on server #" +
                     std::to_string(run.server_id));
    }
  }
  // The status before this run, for the transition (same server, same application or none).
  auto previous = db_.prepare(
      "SELECT status FROM diagnosis_runs WHERE server_id = ?1 AND app_id IS NOT DISTINCT FROM ?2 "
      "ORDER BY started_at DESC, id DESC LIMIT 1");
  if (!previous) {
    return std::move(previous).error();
  }
  previous->bind(1, run.server_id).bind(2, run.app_id);
  auto previous_row = previous->step();
  if (!previous_row) {
    return std::move(previous_row).error();
  }
  std::optional<CheckStatus> before;
  if (*previous_row) {
    auto status = status_from_sql(previous->text(0));
    if (!status) {
      return std::move(status).error();
    }
    before = *status;
  }
  auto insert = db_.prepare(
      "INSERT INTO diagnosis_runs (server_id, app_id, started_at, finished_at, status) "
      "VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id");
  if (!insert) {
    return std::move(insert).error();
  }
  insert->bind(1, run.server_id)
      .bind(2, run.app_id)
      .bind(3, run.started_at)
      .bind(4, run.finished_at)
      .bind(5, to_string(run.status));
  auto inserted = insert_returning_id(*insert);
  if (!inserted) {
    Error error = std::move(inserted).error();
    if (error.code == make_error_code(Errc::not_found)) {
      error.detail = "server #" + std::to_string(run.server_id);
    }
    return error;
  }
  const std::int64_t id = *inserted;
  auto check = db_.prepare(
      "INSERT INTO check_results (run_id, position, name, status, message, perfdata, "
      "duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!check) {
    return std::move(check).error();
  }
  std::int64_t position = 0;
  for (const auto& result : run.checks) {
    check->reset();
    check->bind(1, id)
        .bind(2, position++)
        .bind(3, result.name)
        .bind(4, to_string(result.status))
        .bind(5, result.message)
        .bind(6, result.perfdata)
        .bind(7, result.duration_ms);
    if (auto check_inserted = check->run(); !check_inserted) {
      return std::move(check_inserted).error();
    }
  }
  RecordedRun recorded;
  recorded.run_id = id;
  if (!before || *before != run.status) {
    auto transition = db_.prepare(
        "INSERT INTO status_transitions (server_id, app_id, at, from_status, to_status, run_id) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id");
    if (!transition) {
      return std::move(transition).error();
    }
    transition->bind(1, run.server_id)
        .bind(2, run.app_id)
        .bind(3, run.started_at)
        .bind(5, to_string(run.status))
        .bind(6, id);
    if (before) {
      transition->bind(4, to_string(*before));
    }
    auto transition_id = insert_returning_id(*transition);
    if (!transition_id) {
      return std::move(transition_id).error();
    }
    recorded.transition = StatusTransition{
        *transition_id, run.server_id, run.app_id, run.started_at, before, run.status, id};
  }
  if (auto committed = transaction->commit(); !committed) {
    return std::move(committed).error();
  }
  return recorded;
}

Result<std::vector<DiagnosisRun>> Database::select_runs(std::string_view where, std::int64_t key,
                                                        std::int64_t limit) {
  auto query = db_.prepare(
      "SELECT id, server_id, app_id, started_at, finished_at, status FROM diagnosis_runs " +
      std::string(where));
  if (!query) {
    return std::move(query).error();
  }
  query->bind(1, key).bind(2, limit);
  std::vector<DiagnosisRun> runs;
  for (;;) {
    auto row = query->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    DiagnosisRun run;
    run.id = query->int64(0);
    run.server_id = query->int64(1);
    if (!query->is_null(2)) {
      run.app_id = query->int64(2);
    }
    run.started_at = query->int64(3);
    run.finished_at = query->int64(4);
    auto status = status_from_sql(query->text(5));
    if (!status) {
      return std::move(status).error();
    }
    run.status = *status;
    runs.push_back(std::move(run));
  }
  if (runs.empty()) {
    return runs;
  }
  // The runs' checks by id, up to 500 runs per statement, not one statement per run: on
  // PostgreSQL each statement is a round trip, and the fleet view reads a run per server.
  constexpr std::size_t kRunsPerStatement = 500;
  std::unordered_map<std::int64_t, DiagnosisRun*> by_id;
  by_id.reserve(runs.size());
  for (auto& run : runs) {
    by_id.emplace(run.id, &run);
  }
  for (std::size_t first = 0; first < runs.size(); first += kRunsPerStatement) {
    const std::size_t count = std::min(kRunsPerStatement, runs.size() - first);
    std::string sql =
        "SELECT run_id, name, status, message, perfdata, duration_ms FROM check_results "
        "WHERE run_id IN (";
    for (std::size_t i = 0; i < count; ++i) {
      sql += (i == 0 ? "?" : ", ?") + std::to_string(i + 1);
    }
    sql += ") ORDER BY run_id, position";
    auto checks = db_.prepare(sql);
    if (!checks) {
      return std::move(checks).error();
    }
    for (std::size_t i = 0; i < count; ++i) {
      checks->bind(static_cast<int>(i + 1), runs[first + i].id);
    }
    for (;;) {
      auto row = checks->step();
      if (!row) {
        return std::move(row).error();
      }
      if (!*row) {
        break;
      }
      CheckResultRecord check;
      check.name = checks->text(1);
      auto status = status_from_sql(checks->text(2));
      if (!status) {
        return std::move(status).error();
      }
      check.status = *status;
      check.message = checks->text(3);
      check.perfdata = checks->text(4);
      check.duration_ms = checks->int64(5);
      by_id.at(checks->int64(0))->checks.push_back(std::move(check));
    }
  }
  return runs;
}

Result<DiagnosisRun> Database::get_run(std::int64_t id) {
  auto runs = select_runs("WHERE id = ?1 LIMIT ?2", id, 1);
  if (!runs) {
    return std::move(runs).error();
  }
  if (runs->empty()) {
    return make_error(Errc::not_found, "diagnosis run #" + std::to_string(id));
  }
  return std::move(runs->front());
}

Result<std::vector<DiagnosisRun>> Database::recent_runs(std::int64_t server_id, std::size_t limit) {
  const auto capped = static_cast<std::int64_t>(std::min<std::size_t>(limit, 1'000'000));
  return select_runs("WHERE server_id = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2", server_id,
                     capped);
}

Result<std::size_t> Database::append_samples(const std::vector<MetricSample>& samples) {
  for (const auto& sample : samples) {
    if (sample.name.empty()) {
      return invalid("a metric sample needs a name");
    }
    if (std::isnan(sample.value)) {
      // SQLite stores NaN as NULL; refuse it here with a clear message instead.
      return invalid("metric sample '" + sample.name + "' is NaN");
    }
  }
  if (samples.empty()) {
    return std::size_t{0};
  }
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  // Many rows per statement: one round trip per chunk on PostgreSQL (a function call per row
  // would be on SQLite either way). The full chunk's statement is prepared once.
  const auto rows_sql = [](std::size_t rows) {
    std::string sql =
        "INSERT INTO metric_samples (server_id, collected_at, name, labels, value) VALUES ";
    for (std::size_t row = 0; row < rows; ++row) {
      const std::size_t first = row * 5 + 1;
      sql += (row == 0 ? "(?" : ", (?") + std::to_string(first) + ", ?" +
             std::to_string(first + 1) + ", ?" + std::to_string(first + 2) + ", ?" +
             std::to_string(first + 3) + ", ?" + std::to_string(first + 4) + ")";
    }
    return sql;
  };
  std::optional<sql::Statement> full_chunk;
  for (std::size_t begin = 0; begin < samples.size(); begin += kSampleRowsPerInsert) {
    const std::size_t rows = std::min(kSampleRowsPerInsert, samples.size() - begin);
    if (rows == kSampleRowsPerInsert && !full_chunk) {
      auto prepared = db_.prepare(rows_sql(rows));
      if (!prepared) {
        return std::move(prepared).error();
      }
      full_chunk.emplace(std::move(prepared).value());
    }
    std::optional<sql::Statement> last_chunk;
    if (rows != kSampleRowsPerInsert) {
      auto prepared = db_.prepare(rows_sql(rows));
      if (!prepared) {
        return std::move(prepared).error();
      }
      last_chunk.emplace(std::move(prepared).value());
    }
    sql::Statement& insert = rows == kSampleRowsPerInsert ? *full_chunk : *last_chunk;
    insert.reset();
    for (std::size_t row = 0; row < rows; ++row) {
      const auto& sample = samples[begin + row];
      const int first = static_cast<int>(row * 5 + 1);
      insert.bind(first, sample.server_id)
          .bind(first + 1, sample.collected_at)
          .bind(first + 2, sample.name)
          .bind(first + 3, sample.labels)
          .bind(first + 4, sample.value);
    }
    if (auto inserted = insert.run(); !inserted) {
      Error error = std::move(inserted).error();
      if (error.code == make_error_code(Errc::not_found)) {
        error.detail = "server #" + std::to_string(samples[begin].server_id) + " (metric samples)";
        for (std::size_t row = 1; row < rows; ++row) {
          if (samples[begin + row].server_id != samples[begin].server_id) {
            error.detail = "a server of the batch (metric samples)";
            break;
          }
        }
      }
      return error;
    }
  }
  if (auto committed = transaction->commit(); !committed) {
    return std::move(committed).error();
  }
  return samples.size();
}

Result<std::vector<MetricSample>> Database::samples_since(std::int64_t server_id,
                                                          std::int64_t since_ms,
                                                          std::string_view name) {
  std::string sql =
      "SELECT server_id, collected_at, name, labels, value FROM metric_samples "
      "WHERE server_id = ?1 AND collected_at >= ?2";
  if (!name.empty()) {
    sql += " AND name = ?3";
  }
  sql += " ORDER BY collected_at, rowid";
  auto query = db_.prepare(sql);
  if (!query) {
    return std::move(query).error();
  }
  query->bind(1, server_id).bind(2, since_ms);
  if (!name.empty()) {
    query->bind(3, name);
  }
  return read_samples(*query);
}

Result<std::vector<MetricSample>> read_samples(sql::Statement& query) {
  std::vector<MetricSample> samples;
  for (;;) {
    auto row = query.step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    MetricSample sample;
    sample.server_id = query.int64(0);
    sample.collected_at = query.int64(1);
    sample.name = query.text(2);
    sample.labels = query.text(3);
    sample.value = query.real(4);
    samples.push_back(std::move(sample));
  }
  return samples;
}

Result<std::vector<CachedCheckOutput>> Database::cached_check_outputs(std::int64_t server_id,
                                                                      std::int64_t now_ms) {
  auto query = db_.prepare(
      "SELECT check_name, command, stdout, stderr, exit_status, out_truncated, sent_at, "
      "received_at, expires_at, marker FROM check_output_cache WHERE server_id = ?1 AND "
      "expires_at > ?2 ORDER BY check_name");
  if (!query) {
    return std::move(query).error();
  }
  query->bind(1, server_id).bind(2, now_ms);
  std::vector<CachedCheckOutput> outputs;
  for (;;) {
    auto row = query->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    CachedCheckOutput output;
    output.server_id = server_id;
    output.check_name = query->text(0);
    output.command = query->text(1);
    output.out = query->text(2);
    output.err = query->text(3);
    if (!query->is_null(4)) {
      output.exit_status = static_cast<int>(query->int64(4));
    }
    output.out_truncated = query->int64(5) != 0;
    if (!query->is_null(6)) {
      output.sent_at = query->real(6);
    }
    if (!query->is_null(7)) {
      output.received_at = query->real(7);
    }
    output.expires_at = query->int64(8);
    output.marker = query->text(9);
    outputs.push_back(std::move(output));
  }
  return outputs;
}

Result<void> Database::put_cached_check_outputs(const std::vector<CachedCheckOutput>& outputs,
                                                std::int64_t now_ms) {
  for (const auto& output : outputs) {
    if (output.server_id == 0 || output.check_name.empty()) {
      return invalid("a cached check output needs a server and a check name");
    }
  }
  if (outputs.empty()) {
    return {};
  }
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  auto insert = db_.prepare(
      "INSERT INTO check_output_cache (server_id, check_name, command, stdout, stderr, "
      "exit_status, out_truncated, sent_at, received_at, expires_at, marker) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
      "ON CONFLICT (server_id, check_name) DO UPDATE SET command = excluded.command, "
      "stdout = excluded.stdout, stderr = excluded.stderr, exit_status = excluded.exit_status, "
      "out_truncated = excluded.out_truncated, sent_at = excluded.sent_at, "
      "received_at = excluded.received_at, expires_at = excluded.expires_at, "
      "marker = excluded.marker");
  auto expired =
      db_.prepare("DELETE FROM check_output_cache WHERE server_id = ?1 AND expires_at <= ?2");
  if (!insert) {
    return std::move(insert).error();
  }
  if (!expired) {
    return std::move(expired).error();
  }
  for (const auto& output : outputs) {
    insert->reset();
    insert->bind(1, output.server_id)
        .bind(2, output.check_name)
        .bind(3, output.command)
        .bind(4, output.out)
        .bind(5, output.err)
        .bind(7, output.out_truncated ? std::int64_t{1} : std::int64_t{0})
        .bind(10, output.expires_at)
        .bind(11, output.marker);
    if (output.exit_status) {
      insert->bind(6, static_cast<std::int64_t>(*output.exit_status));
    } else {
      insert->bind_null(6);
    }
    if (output.sent_at) {
      insert->bind(8, *output.sent_at);
    } else {
      insert->bind_null(8);
    }
    if (output.received_at) {
      insert->bind(9, *output.received_at);
    } else {
      insert->bind_null(9);
    }
    if (auto inserted = insert->run(); !inserted) {
      Error error = std::move(inserted).error();
      if (error.code == make_error_code(Errc::not_found)) {
        error.detail = "server #" + std::to_string(output.server_id) + " (check output cache)";
      }
      return error;
    }
    expired->reset();
    expired->bind(1, output.server_id).bind(2, now_ms);
    if (auto deleted = expired->run(); !deleted) {
      return std::move(deleted).error();
    }
  }
  if (auto committed = transaction->commit(); !committed) {
    return std::move(committed).error();
  }
  return {};
}

Result<PruneResult> Database::prune(const Retention& retention, std::int64_t now_ms) {
  if (retention.samples.count() < 0 || retention.runs.count() < 0) {
    return invalid("retention must not be negative");
  }
  PruneResult result;
  // metric_samples has a rowid on both engines (implicit in SQLite, a column in PostgreSQL).
  auto samples =
      delete_in_chunks(db_, "metric_samples", "rowid",
                       "SELECT rowid FROM metric_samples WHERE collected_at < ?1 LIMIT ?2",
                       now_ms - static_cast<std::int64_t>(retention.samples.count()) * kMsPerDay);
  if (!samples) {
    return std::move(samples).error();
  }
  result.samples_deleted = *samples;
  // Check results go with their runs (ON DELETE CASCADE).
  auto runs = delete_in_chunks(
      db_, "diagnosis_runs", "id", "SELECT id FROM diagnosis_runs WHERE started_at < ?1 LIMIT ?2",
      now_ms - static_cast<std::int64_t>(retention.runs.count()) * kMsPerDay);
  if (!runs) {
    return std::move(runs).error();
  }
  result.runs_deleted = *runs;
  return result;
}

}  // namespace healer::store
