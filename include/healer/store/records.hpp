#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace healer::store {

// Records are plain values: what goes into the store and what comes out. Ids are SQLite rowids;
// 0 means "not stored yet". Times are Unix epoch milliseconds (UTC).

/// How healer authenticates to a server.
enum class AuthMethod {
  key_file,    ///< private key file at identity_file
  agent,       ///< ssh-agent (identity_file, if set, selects the agent key)
  password,    ///< password, kept encrypted in the database (secret)
  stored_key,  ///< private key PEM kept encrypted in the database (secret)
};

/// What to do with a host key that known_hosts does not list (a changed key is always an error).
enum class HostKeyPolicy {
  strict,      ///< unknown host = error
  accept_new,  ///< record an unknown host's key (trust on first use)
};

/// A server of the inventory.
struct ServerRecord {
  std::int64_t id = 0;
  std::string name;  ///< unique
  std::string host;
  std::uint16_t port = 22;
  std::string user;
  AuthMethod auth_method = AuthMethod::key_file;
  std::string identity_file;
  HostKeyPolicy host_key_policy = HostKeyPolicy::strict;
  std::string known_hosts_file;
  std::vector<std::string> tags;              ///< sorted, unique when read back
  std::map<std::string, std::string> labels;  ///< key -> value
  /// Password (AuthMethod::password) or private key PEM (AuthMethod::stored_key). Plaintext only
  /// in memory: encrypted before it reaches SQLite. Read back only on request
  /// (SecretAccess::decrypt). On update, nullopt keeps the stored secret. Never format or log it.
  std::optional<std::string> secret;
  bool has_secret = false;      ///< output only: the database holds an encrypted secret
  std::int64_t created_at = 0;  ///< output only
  std::int64_t updated_at = 0;  ///< output only
};

/// Whether a read decrypts the server's secret into ServerRecord::secret.
enum class SecretAccess { omit, decrypt };

/// An application: a server plus the systemd units, ports, health URL and log paths that make it
/// up (the unit of `diagnose(applicationId)`).
struct ApplicationRecord {
  std::int64_t id = 0;
  std::string name;  ///< unique
  std::int64_t server_id = 0;
  std::vector<std::string> systemd_units;
  std::vector<std::uint16_t> ports;
  std::string health_url;  ///< empty: none
  std::vector<std::string> log_paths;
};

/// Outcome of a check, with the Nagios plugin meaning.
enum class CheckStatus { ok, warning, critical, unknown };

/// "OK", "WARNING", "CRITICAL", "UNKNOWN".
[[nodiscard]] std::string_view to_string(CheckStatus status) noexcept;
/// Parses to_string()'s output; nullopt for anything else.
[[nodiscard]] std::optional<CheckStatus> parse_check_status(std::string_view text) noexcept;

/// One check's result inside a diagnosis run.
struct CheckResultRecord {
  std::string name;
  CheckStatus status = CheckStatus::unknown;
  std::string message;
  std::string perfdata;  ///< Nagios perfdata text, as produced by the check
  std::int64_t duration_ms = 0;
};

/// One diagnosis of a server (or of one of its applications) and its checks, in order.
struct DiagnosisRun {
  std::int64_t id = 0;
  std::int64_t started_at = 0;
  std::int64_t finished_at = 0;
  std::int64_t server_id = 0;
  std::optional<std::int64_t> app_id;
  CheckStatus status = CheckStatus::unknown;  ///< overall (usually the worst check)
  std::vector<CheckResultRecord> checks;
};

/// A change of a server's (or one of its applications') overall status between two recorded
/// runs; the first run of a server is a transition from no status.
struct StatusTransition {
  std::int64_t id = 0;
  std::int64_t server_id = 0;
  std::optional<std::int64_t> app_id;
  std::int64_t at = 0;              ///< the run's start, Unix ms
  std::optional<CheckStatus> from;  ///< unset for the first run
  CheckStatus to = CheckStatus::unknown;
  std::int64_t run_id = 0;  ///< the run that showed the new status; 0 once it was pruned
};

/// What recording a run did.
struct RecordedRun {
  std::int64_t run_id = 0;
  std::optional<StatusTransition> transition;  ///< set when the status changed
};

/// One metric value of one server at one time.
struct MetricSample {
  std::int64_t server_id = 0;
  std::int64_t collected_at = 0;  ///< Unix ms
  std::string name;               ///< e.g. "node_load1"
  std::string labels;             ///< opaque to the store, e.g. "cpu=0,mode=idle"
  double value = 0.0;
};

/// The raw output of an expensive check, kept so the next process can reuse it until it expires.
struct CachedCheckOutput {
  std::int64_t server_id = 0;
  std::string check_name;
  std::string command;  ///< a changed command invalidates the entry
  std::string out;
  std::string err;
  std::string marker;  ///< the framing marker of the run that printed `out` (checks::CachedOutput)
  std::optional<int> exit_status;
  bool out_truncated = false;
  std::optional<double> sent_at;
  std::optional<double> received_at;
  std::int64_t expires_at = 0;  ///< Unix ms
};

/// How long raw history is kept.
struct Retention {
  std::chrono::days samples{30};  ///< metric samples older than this are deleted
  std::chrono::days runs{90};     ///< diagnosis runs (and their checks) older than this
};

/// What prune() deleted.
struct PruneResult {
  std::int64_t samples_deleted = 0;
  std::int64_t runs_deleted = 0;
};

/// What one row of the heal audit log records. The log is append-only: rows are never updated
/// or deleted (the database refuses both), so a heal is a sequence of events sharing a heal_id.
enum class HealEventKind {
  started,         ///< the commands were sent
  finished,        ///< they ended (result, exit code, output)
  verified,        ///< the re-check after the grace period (result verified / failed / ...)
  refused,         ///< healer did not run it (stale plan, breaker open, rate limit...)
  breaker_open,    ///< automatic healing of (server, action) stopped
  breaker_closed,  ///< a person reset it
};

/// "started", "finished", ...
[[nodiscard]] std::string_view to_string(HealEventKind kind) noexcept;
[[nodiscard]] std::optional<HealEventKind> parse_heal_event_kind(std::string_view text) noexcept;

/// One event of the heal audit log.
struct HealEvent {
  std::int64_t id = 0;  ///< output only; increasing, never reused
  std::string heal_id;  ///< the heal it belongs to (random); breaker events have their own
  HealEventKind kind = HealEventKind::started;
  std::int64_t at = 0;    ///< Unix ms
  std::string actor;      ///< "cli:USER", "api", "rule:NAME"
  std::string plan_hash;  ///< "" when there was no plan (breaker events)
  std::string server;     ///< the name at the time (the server may be removed later)
  std::optional<std::int64_t> server_id;
  std::string action;
  std::string params = "{}";  ///< JSON object
  std::string command;        ///< the shell text sent
  std::string result;         ///< "succeeded", "failed", "privilege_missing", "verified", ...
  std::optional<int> exit_code;
  std::string output;         ///< capped stdout and stderr
  std::string before = "{}";  ///< JSON: checks and facts before
  std::string after = "{}";   ///< JSON: checks and facts after (verification)
  std::string detail;
};

/// Which audit events to read (newest first).
struct HealEventQuery {
  std::string server;                 ///< "" = any
  std::string action;                 ///< "" = any
  std::vector<std::string> heal_ids;  ///< empty = any
  std::vector<HealEventKind> kinds;   ///< empty = any
  std::int64_t since_ms = 0;          ///< at or after
  std::int64_t before_id = 0;         ///< 0 = from the newest
  std::size_t limit = 100;
};

/// A node's lease on a server (`healer serve` nodes sharing one database): the node schedules
/// that server's collections and diagnoses until `expires_at`, by the database's clock, unless it
/// renews the lease before then.
struct ServerLease {
  std::int64_t server_id = 0;
  std::string node;
  std::int64_t expires_at = 0;  ///< Unix ms, the database's clock
};

/// A server whose lease a sync took or gave up.
struct LeaseChange {
  std::int64_t server_id = 0;
  /// For a claim: the node whose lease had expired ("" when the server was free).
  std::string previous_node;
};

/// What one lease sync (Store::sync_leases) did and saw, in one transaction.
struct LeaseSync {
  std::int64_t now = 0;     ///< Unix ms, the database's clock
  std::size_t nodes = 0;    ///< live nodes (this one included)
  std::size_t servers = 0;  ///< servers in the inventory
  std::size_t share = 0;    ///< what this node may hold: ceil(servers / nodes)
  std::vector<LeaseChange> claimed;
  std::vector<LeaseChange> released;  ///< surplus given back to balance the fleet
  /// Every live lease after the sync (every node's), by server id.
  std::vector<ServerLease> leases;
};

/// Current time as Unix epoch milliseconds (system clock).
[[nodiscard]] std::int64_t now_unix_ms() noexcept;

}  // namespace healer::store
