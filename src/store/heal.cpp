// The heal audit log (append-only: INSERT and SELECT only; the schema's triggers refuse UPDATE
// and DELETE) and heal plans by hash.
#include <algorithm>

#include "database.hpp"
#include "healer/store/errors.hpp"

namespace healer::store {
namespace {

constexpr std::int64_t kPlanLifetimeMs = 7LL * 24 * 3600 * 1000;

std::int64_t capped(std::size_t limit) {
  return static_cast<std::int64_t>(std::clamp<std::size_t>(limit, 1, 100'000));
}

}  // namespace

Result<std::int64_t> Database::append_heal_event(const HealEvent& event) {
  if (event.heal_id.empty() || event.server.empty() || event.action.empty()) {
    return make_error(Errc::invalid_record, "a heal event needs a heal id, a server and an action");
  }
  auto insert = db_.prepare(
      "INSERT INTO heal_audit (heal_id, event, at, actor, plan_hash, server, server_id, action, "
      "params, command, result, exit_code, output, before, after, detail) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) "
      "RETURNING id");
  if (!insert) {
    return std::move(insert).error();
  }
  insert->bind(1, event.heal_id)
      .bind(2, to_string(event.kind))
      .bind(3, event.at)
      .bind(4, event.actor)
      .bind(5, event.plan_hash)
      .bind(6, event.server)
      .bind(7, event.server_id)
      .bind(8, event.action)
      .bind(9, event.params.empty() ? std::string_view("{}") : std::string_view(event.params))
      .bind(10, event.command)
      .bind(11, event.result)
      .bind(12, event.exit_code ? std::optional<std::int64_t>(*event.exit_code) : std::nullopt)
      .bind(13, event.output)
      .bind(14, event.before.empty() ? std::string_view("{}") : std::string_view(event.before))
      .bind(15, event.after.empty() ? std::string_view("{}") : std::string_view(event.after))
      .bind(16, event.detail);
  return insert_returning_id(*insert);
}

Result<std::vector<HealEvent>> Database::heal_events(const HealEventQuery& query) {
  std::string sql =
      "SELECT id, heal_id, event, at, actor, plan_hash, server, server_id, action, params, "
      "command, result, exit_code, output, before, after, detail FROM heal_audit WHERE at >= ?1";
  int next = 2;
  std::vector<std::pair<int, std::string>> texts;
  if (!query.server.empty()) {
    sql += " AND server = ?" + std::to_string(next);
    texts.emplace_back(next++, query.server);
  }
  if (!query.action.empty()) {
    sql += " AND action = ?" + std::to_string(next);
    texts.emplace_back(next++, query.action);
  }
  auto in_list = [&](const char* column, const std::vector<std::string>& values) {
    sql += std::string(" AND ") + column + " IN (";
    for (std::size_t i = 0; i < values.size(); ++i) {
      sql += (i == 0 ? "?" : ", ?") + std::to_string(next);
      texts.emplace_back(next++, values[i]);
    }
    sql += ")";
  };
  if (!query.heal_ids.empty()) {
    in_list("heal_id", query.heal_ids);
  }
  if (!query.kinds.empty()) {
    std::vector<std::string> names;
    for (const auto kind : query.kinds) {
      names.emplace_back(to_string(kind));
    }
    in_list("event", names);
  }
  // No gap in the numbering: PostgreSQL must see every placeholder to know its type.
  const int before_index = query.before_id > 0 ? next++ : 0;
  if (query.before_id > 0) {
    sql += " AND id < ?" + std::to_string(before_index);
  }
  sql += " ORDER BY id DESC LIMIT ?" + std::to_string(next);
  const int limit_index = next;
  auto select = db_.prepare(sql);
  if (!select) {
    return std::move(select).error();
  }
  select->bind(1, query.since_ms);
  for (const auto& [index, text] : texts) {
    select->bind(index, std::string_view(text));
  }
  if (query.before_id > 0) {
    select->bind(before_index, query.before_id);
  }
  select->bind(limit_index, capped(query.limit));
  std::vector<HealEvent> events;
  for (;;) {
    auto row = select->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    HealEvent event;
    event.id = select->int64(0);
    event.heal_id = select->text(1);
    const auto kind = parse_heal_event_kind(select->text(2));
    if (!kind) {
      return make_error(Errc::corrupt, "unknown heal event '" + select->text(2) + "'");
    }
    event.kind = *kind;
    event.at = select->int64(3);
    event.actor = select->text(4);
    event.plan_hash = select->text(5);
    event.server = select->text(6);
    if (!select->is_null(7)) {
      event.server_id = select->int64(7);
    }
    event.action = select->text(8);
    event.params = select->text(9);
    event.command = select->text(10);
    event.result = select->text(11);
    if (!select->is_null(12)) {
      event.exit_code = static_cast<int>(select->int64(12));
    }
    event.output = select->text(13);
    event.before = select->text(14);
    event.after = select->text(15);
    event.detail = select->text(16);
    events.push_back(std::move(event));
  }
  return events;
}

Result<void> Database::put_heal_plan(std::string_view hash, std::string_view body,
                                     std::int64_t now_ms) {
  if (hash.empty()) {
    return make_error(Errc::invalid_record, "a heal plan needs its hash");
  }
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  auto insert = db_.prepare(
      // ON CONFLICT, not OR IGNORE: that would also swallow the CHECK on the body.
      "INSERT INTO heal_plans (hash, created_at, body) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (hash) DO NOTHING");
  auto expired = db_.prepare("DELETE FROM heal_plans WHERE created_at < ?1");
  if (!insert) {
    return std::move(insert).error();
  }
  if (!expired) {
    return std::move(expired).error();
  }
  insert->bind(1, hash).bind(2, now_ms).bind(3, body);
  if (auto inserted = insert->run(); !inserted) {
    return inserted;
  }
  expired->bind(1, now_ms - kPlanLifetimeMs);
  if (auto pruned = expired->run(); !pruned) {
    return pruned;
  }
  return transaction->commit();
}

Result<std::string> Database::heal_plan(std::string_view hash) {
  auto select = db_.prepare("SELECT body FROM heal_plans WHERE hash = ?1");
  if (!select) {
    return std::move(select).error();
  }
  select->bind(1, hash);
  auto row = select->step();
  if (!row) {
    return std::move(row).error();
  }
  if (!*row) {
    return make_error(Errc::not_found, "no heal plan with hash " + std::string(hash));
  }
  return select->text(0);
}

}  // namespace healer::store
