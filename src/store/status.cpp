// Reads for a fleet view: the latest run and collection of every server, run history by page and
// status transitions.
#include <algorithm>

#include "database.hpp"
#include "healer/store/errors.hpp"

namespace healer::store {
namespace {

std::int64_t capped(std::size_t limit) {
  return static_cast<std::int64_t>(std::min<std::size_t>(limit, 1'000'000));
}

Result<CheckStatus> parse_status(const std::string& text) {
  if (auto status = parse_check_status(text)) {
    return *status;
  }
  return make_error(Errc::corrupt, "unknown status '" + text + "' in the database");
}

}  // namespace

Result<std::vector<DiagnosisRun>> Database::latest_runs() {
  // The newest server-level run of every server (application runs are their own history).
  return select_runs(
      "WHERE app_id IS NULL AND id IN (SELECT (SELECT id FROM diagnosis_runs r "
      "WHERE r.server_id = s.id AND r.app_id IS NULL ORDER BY r.started_at DESC, r.id DESC "
      "LIMIT 1) FROM servers s WHERE s.id > ?1) ORDER BY server_id LIMIT ?2",
      0, capped(1'000'000));
}

Result<std::vector<DiagnosisRun>> Database::runs_page(std::int64_t server_id,
                                                      std::int64_t before_id, std::size_t limit) {
  if (before_id <= 0) {
    return recent_runs(server_id, limit);
  }
  // ?1 is the server; the id bound is part of the text (an integer we own).
  return select_runs("WHERE server_id = ?1 AND id < " + std::to_string(before_id) +
                         " ORDER BY started_at DESC, id DESC LIMIT ?2",
                     server_id, capped(limit));
}

Result<std::vector<StatusTransition>> Database::transitions(std::int64_t server_id,
                                                            std::int64_t since_ms,
                                                            std::size_t limit) {
  auto query = db_.prepare(
      "SELECT id, server_id, app_id, at, from_status, to_status, run_id FROM status_transitions "
      "WHERE server_id = ?1 AND at >= ?2 ORDER BY at DESC, id DESC LIMIT ?3");
  if (!query) {
    return std::move(query).error();
  }
  query->bind(1, server_id).bind(2, since_ms).bind(3, capped(limit));
  std::vector<StatusTransition> out;
  for (;;) {
    auto row = query->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    StatusTransition transition;
    transition.id = query->int64(0);
    transition.server_id = query->int64(1);
    if (!query->is_null(2)) {
      transition.app_id = query->int64(2);
    }
    transition.at = query->int64(3);
    if (!query->is_null(4)) {
      auto from = parse_status(query->text(4));
      if (!from) {
        return std::move(from).error();
      }
      transition.from = *from;
    }
    auto to = parse_status(query->text(5));
    if (!to) {
      return std::move(to).error();
    }
    transition.to = *to;
    transition.run_id = query->is_null(6) ? 0 : query->int64(6);
    out.push_back(transition);
  }
  return out;
}

Result<std::vector<MetricSample>> Database::latest_samples(std::optional<std::int64_t> server_id,
                                                           std::int64_t since_ms) {
  // Per server, every sample of its newest collection (one collected_at) within the window.
  std::string sql =
      "SELECT m.server_id, m.collected_at, m.name, m.labels, m.value FROM metric_samples m "
      "JOIN (SELECT server_id, MAX(collected_at) AS at FROM metric_samples "
      "WHERE collected_at >= ?1";
  if (server_id) {
    sql += " AND server_id = ?2";
  }
  sql +=
      " GROUP BY server_id) latest ON m.server_id = latest.server_id AND m.collected_at = "
      "latest.at ORDER BY m.server_id, m.rowid";
  auto query = db_.prepare(sql);
  if (!query) {
    return std::move(query).error();
  }
  query->bind(1, since_ms);
  if (server_id) {
    query->bind(2, *server_id);
  }
  return read_samples(*query);
}

}  // namespace healer::store
