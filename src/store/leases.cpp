// Leases between `healer serve` nodes sharing one database (migration 8): one row per server in
// server_leases (node NULL: free) and one heartbeat row per live node in lease_nodes. A node's
// sync renews both in one transaction, balances (gives back what is above its share, claims free
// or expired leases up to it) and reads every live lease back. Expiry times are the database's
// clock, so nodes with wrong clocks still agree on who holds what.
#include <algorithm>
#include <string>

#include "database.hpp"
#include "healer/store/errors.hpp"

namespace healer::store {
namespace {

// Ids we own, as SQL text: "1,2,3" (integers, never user text).
std::string id_list(const std::vector<LeaseChange>& changes) {
  std::string text;
  for (const auto& change : changes) {
    if (!text.empty()) {
      text += ',';
    }
    text += std::to_string(change.server_id);
  }
  return text;
}

Result<std::int64_t> single_int(sql::Connection& db, std::string_view sql, std::string_view text) {
  auto query = db.prepare(sql);
  if (!query) {
    return std::move(query).error();
  }
  if (!text.empty()) {
    query->bind(1, text);
  }
  auto row = query->step();
  if (!row) {
    return std::move(row).error();
  }
  return *row && !query->is_null(0) ? query->int64(0) : 0;
}

// Rows of (server_id, node) from `query` as changes.
Result<std::vector<LeaseChange>> read_changes(sql::Statement& query) {
  std::vector<LeaseChange> out;
  for (;;) {
    auto row = query.step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      return out;
    }
    out.push_back(LeaseChange{query.int64(0), query.is_null(1) ? std::string() : query.text(1)});
  }
}

}  // namespace

Result<std::int64_t> Database::database_now() {
  if (db_.dialect() != sql::Dialect::postgres) {
    return now_unix_ms();
  }
  // clock_timestamp(), not now(): now() is the transaction's start.
  return single_int(db_, "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT", {});
}

Result<LeaseSync> Database::sync_leases(std::string_view node, std::int64_t ttl_ms) {
  if (node.empty() || ttl_ms <= 0) {
    return make_error(Errc::invalid_record, "a lease needs a node id and a positive lifetime");
  }
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  auto now = database_now();
  if (!now) {
    return std::move(now).error();
  }
  LeaseSync sync;
  sync.now = *now;
  const std::int64_t expires = *now + ttl_ms;
  // This node's heartbeat; nodes whose heartbeat expired are gone (their leases expired with it:
  // both were renewed together).
  {
    auto beat = db_.prepare(
        "INSERT INTO lease_nodes (node, started_at, expires_at) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (node) DO UPDATE SET expires_at = excluded.expires_at");
    if (!beat) {
      return std::move(beat).error();
    }
    beat->bind(1, node).bind(2, *now).bind(3, expires);
    if (auto done = beat->run(); !done) {
      return std::move(done).error();
    }
    auto gone = db_.prepare("DELETE FROM lease_nodes WHERE expires_at < ?1");
    if (!gone) {
      return std::move(gone).error();
    }
    gone->bind(1, *now);
    if (auto done = gone->run(); !done) {
      return std::move(done).error();
    }
  }
  // Every server has its lease row (new servers get a free one; removed servers take theirs
  // with them: ON DELETE CASCADE).
  if (auto added =
          db_.exec("INSERT INTO server_leases (server_id, node, expires_at, since) "
                   "SELECT s.id, NULL, 0, 0 FROM servers s WHERE NOT EXISTS "
                   "(SELECT 1 FROM server_leases l WHERE l.server_id = s.id) ORDER BY s.id "
                   "ON CONFLICT (server_id) DO NOTHING");
      !added) {
    return std::move(added).error();
  }
  // Renew: only rows still ours (a lease another node took after it expired stays theirs).
  {
    auto renew = db_.prepare("UPDATE server_leases SET expires_at = ?2 WHERE node = ?1");
    if (!renew) {
      return std::move(renew).error();
    }
    renew->bind(1, node).bind(2, expires);
    if (auto done = renew->run(); !done) {
      return std::move(done).error();
    }
  }
  auto nodes = single_int(db_, "SELECT COUNT(*) FROM lease_nodes", {});
  auto servers = nodes ? single_int(db_, "SELECT COUNT(*) FROM server_leases", {}) : nodes;
  auto held = servers ? single_int(db_, "SELECT COUNT(*) FROM server_leases WHERE node = ?1", node)
                      : servers;
  if (!held) {
    return std::move(held).error();
  }
  sync.nodes = static_cast<std::size_t>(std::max<std::int64_t>(*nodes, 1));
  sync.servers = static_cast<std::size_t>(*servers);
  sync.share = (sync.servers + sync.nodes - 1) / sync.nodes;
  const auto holding = static_cast<std::size_t>(*held);
  const bool postgres = db_.dialect() == sql::Dialect::postgres;
  if (holding > sync.share) {
    // Give the surplus back (the highest ids, so a node keeps a stable part of the fleet).
    auto surplus = db_.prepare(
        "SELECT server_id, node FROM server_leases WHERE node = ?1 ORDER BY server_id DESC "
        "LIMIT ?2");
    if (!surplus) {
      return std::move(surplus).error();
    }
    surplus->bind(1, node).bind(2, holding - sync.share);
    auto changes = read_changes(*surplus);
    if (!changes) {
      return std::move(changes).error();
    }
    sync.released = std::move(*changes);
    if (!sync.released.empty()) {
      auto release = db_.prepare(
          "UPDATE server_leases SET node = NULL, expires_at = 0 WHERE node = ?1 AND server_id IN "
          "(" +
          id_list(sync.released) + ")");
      if (!release) {
        return std::move(release).error();
      }
      release->bind(1, node);
      if (auto done = release->run(); !done) {
        return std::move(done).error();
      }
    }
  } else if (holding < sync.share) {
    // Free or expired leases, in id order; on PostgreSQL rows another node is claiming right now
    // are skipped, not waited for, so nodes starting together each get different servers.
    auto candidates =
        db_.prepare(std::string("SELECT server_id, node FROM server_leases WHERE node IS NULL OR "
                                "expires_at < ?1 ORDER BY server_id LIMIT ?2") +
                    (postgres ? " FOR UPDATE SKIP LOCKED" : ""));
    if (!candidates) {
      return std::move(candidates).error();
    }
    candidates->bind(1, *now).bind(2, sync.share - holding);
    auto changes = read_changes(*candidates);
    if (!changes) {
      return std::move(changes).error();
    }
    sync.claimed = std::move(*changes);
    if (!sync.claimed.empty()) {
      auto claim = db_.prepare(
          "UPDATE server_leases SET node = ?1, expires_at = ?2, since = ?3 WHERE server_id IN (" +
          id_list(sync.claimed) + ")");
      if (!claim) {
        return std::move(claim).error();
      }
      claim->bind(1, node).bind(2, expires).bind(3, *now);
      if (auto done = claim->run(); !done) {
        return std::move(done).error();
      }
    }
  }
  auto live = db_.prepare(
      "SELECT server_id, node, expires_at FROM server_leases WHERE node IS NOT NULL AND "
      "expires_at >= ?1 ORDER BY server_id");
  if (!live) {
    return std::move(live).error();
  }
  live->bind(1, *now);
  for (;;) {
    auto row = live->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    sync.leases.push_back(ServerLease{live->int64(0), live->text(1), live->int64(2)});
  }
  if (auto committed = transaction->commit(); !committed) {
    return std::move(committed).error();
  }
  return sync;
}

Result<std::size_t> Database::release_leases(std::string_view node) {
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  auto release =
      db_.prepare("UPDATE server_leases SET node = NULL, expires_at = 0 WHERE node = ?1");
  if (!release) {
    return std::move(release).error();
  }
  release->bind(1, node);
  if (auto done = release->run(); !done) {
    return std::move(done).error();
  }
  const auto released = static_cast<std::size_t>(db_.changes());
  auto forget = db_.prepare("DELETE FROM lease_nodes WHERE node = ?1");
  if (!forget) {
    return std::move(forget).error();
  }
  forget->bind(1, node);
  if (auto done = forget->run(); !done) {
    return std::move(done).error();
  }
  if (auto committed = transaction->commit(); !committed) {
    return std::move(committed).error();
  }
  return released;
}

Result<std::vector<DiagnosisRun>> Database::latest_runs_since(std::int64_t since_ms) {
  // Ids grow with insertion, so a server's highest id is its newest recorded run.
  return select_runs(
      "WHERE id IN (SELECT MAX(id) FROM diagnosis_runs WHERE app_id IS NULL AND started_at >= ?1 "
      "GROUP BY server_id) ORDER BY server_id LIMIT ?2",
      since_ms, 1'000'000);
}

}  // namespace healer::store
