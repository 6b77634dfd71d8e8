#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "healer/checks/check.hpp"
#include "healer/core/deadline.hpp"
#include "healer/core/error.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/pool.hpp"

// Runs checks for real: a server's checks over its pooled connection, parsed into a Diagnosis.
// Everything here runs on the executor's (the pool registry's) thread.
namespace healer::checks {

/// The raw outcome of one check's command, kept by ResultCache so a cached check is parsed again
/// with the current settings.
struct CachedOutput {
  std::string out;
  std::string err;
  std::string marker;  ///< the run's framing marker in `out` (CheckInput::marker); keep it too
  std::optional<int> exit_status;
  bool out_truncated = false;
  std::optional<double> sent_at;
  std::optional<double> received_at;
  Clock::time_point expires_at{};  ///< steady clock
};

/// In-memory cache of command outputs for checks with CheckDefinition::cache_for > 0 (for
/// example security_updates), keyed by server id, check name and command. Owned by the caller
/// (a daemon keeps one across sweeps); used on the executor's thread only. Only outputs that
/// parsed to OK, WARNING or CRITICAL are kept: an UNKNOWN is retried next time.
class ResultCache {
 public:
  /// The fresh output of `check` on `server_id`, if any (expired entries are dropped).
  [[nodiscard]] const CachedOutput* find(const std::string& server_id,
                                         const CheckDefinition& check);
  /// Keeps `output` (its expires_at set by the caller).
  void store(const std::string& server_id, const CheckDefinition& check, CachedOutput output);
  /// Drops every entry of `server_id` (new credentials, an operator asking for a fresh look).
  void forget(const std::string& server_id);
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// One kept output and what it belongs to (for persisting the cache between processes).
  struct Entry {
    std::string server_id;
    std::string check_name;
    std::string command;
    const CachedOutput* output = nullptr;  ///< valid until the cache changes
  };
  /// Every kept output, expired ones included.
  [[nodiscard]] std::vector<Entry> entries() const;

 private:
  // (server id, check name, command) -> output; expired entries are dropped on lookup
  std::map<std::tuple<std::string, std::string, std::string>, CachedOutput, std::less<>> entries_;
};

/// How a server's checks are sent.
enum class RunMode {
  concurrent,  ///< one channel per check, packed on one pooled session (default)
  batched,     ///< all checks in one exec, run in parallel by the remote shell, output framed by
               ///< the run's random marker with per-section exit codes
};

/// How to diagnose one server. Not an aggregate on purpose (see ssh/options.hpp).
struct DiagnoseOptions {
  DiagnoseOptions() = default;

  /// Overall deadline (connect, queueing and every check); each check also stops at its own
  /// CheckDefinition::timeout, counted from when it starts.
  Deadline deadline = Deadline::after(std::chrono::seconds(60));
  pool::Priority priority = pool::Priority::normal;
  /// Checks in flight at once on the server; 0: the pool's max_channels (capped by
  /// max_concurrent), so they share one connection.
  std::size_t max_parallel = 0;
  std::size_t max_output = std::size_t{1} << 20;  ///< stdout/stderr bytes kept per check
  RunMode mode = RunMode::concurrent;
  /// Concurrent mode: checks with cache_for > 0 (the expensive ones, e.g. security_updates) start
  /// after the others have finished, so their CPU use does not show in the cpu check's sample.
  bool expensive_last = true;
  /// Results of checks with cache_for > 0 are taken from and stored here; null: no cache. Must
  /// outlive the call.
  ResultCache* cache = nullptr;
};

/// One check's result on one server, with how it was obtained.
struct CheckRun {
  CheckResult result;
  std::chrono::microseconds duration{0};  ///< start of its run (incl. queueing) to parsed
  bool cached = false;                    ///< parsed from ResultCache output, nothing was run
  std::optional<int> exit_status;         ///< of the remote command, when it ran and exited
  /// Why the command did not run or finish (its result is then UNKNOWN); unset when it ran.
  std::optional<Error> error;
};

/// One server's diagnosis: every check's result (in the order given) and the overall status.
struct Diagnosis {
  std::string server_id;
  Status status = Status::unknown;  ///< worst() over the checks; UNKNOWN when there are none
  std::vector<CheckRun> checks;
  /// Set when the server could not be reached at all (connect refused or timed out, auth
  /// failed, host key unknown or changed, circuit open, unknown server...): ssh::Errc or
  /// pool::Errc. Every check is then UNKNOWN with this reason.
  std::optional<Error> server_error;
  std::chrono::system_clock::time_point started_at{};  ///< wall clock, for storing runs
  std::chrono::microseconds duration{0};
  RunMode mode = RunMode::concurrent;

  [[nodiscard]] bool reachable() const noexcept { return !server_error.has_value(); }
};

/// Runs `checks` on `server_id` through `executor` (which must outlive the call) and parses them
/// with `settings`. Concurrent mode: one connection is acquired first (so an unreachable server
/// costs one attempt: a wrong key means one failed authentication), then the checks run in
/// parallel on pooled channels. A failed exec (timeout, disconnect...) makes that check UNKNOWN
/// with a one-line reason, never CRITICAL. Never throws on remote failure.
///
/// Cancellation: honours the awaiting coroutine's cancellation slot (terminal cancellation).
/// Checks running are cancelled like timed-out ones (remote TERM, then KILL), the others end
/// without running; each then carries CheckRun::error ssh::Errc::cancelled (server_error too when
/// the connection was not there yet). Returns once every check worker ended; nothing throws
/// because of the cancellation.
asio::awaitable<Diagnosis> async_diagnose(exec::Executor& executor, std::string server_id,
                                          std::vector<CheckDefinition> checks,
                                          CheckSettings settings, DiagnoseOptions options);

/// One server of a sweep.
struct ServerChecks {
  ServerChecks() = default;
  ServerChecks(std::string id, std::vector<CheckDefinition> check_list,
               CheckSettings check_settings = {})
      : server_id(std::move(id)),
        checks(std::move(check_list)),
        settings(std::move(check_settings)) {}

  std::string server_id;
  std::vector<CheckDefinition> checks;
  CheckSettings settings;
};

/// Called as each server's diagnosis completes (in completion order): its index in the input
/// and the diagnosis. Runs on the executor's thread; must not block.
using DiagnosisCallback = std::function<void(std::size_t index, const Diagnosis& diagnosis)>;

/// How to sweep many servers. Not an aggregate on purpose.
struct SweepOptions {
  SweepOptions() = default;

  std::size_t max_servers = 32;  ///< servers diagnosed at once (at least 1)
  /// Per server, counted from when its diagnosis starts, bounded by `deadline`.
  std::chrono::milliseconds server_timeout{60000};
  Deadline deadline = Deadline::never();  ///< the whole sweep
  DiagnoseOptions per_server;             ///< its deadline is replaced per server
  DiagnosisCallback on_diagnosis;         ///< may be empty
};

/// Diagnoses every server of `servers`, at most SweepOptions::max_servers at once; results in
/// input order. `executor` must outlive the call. Rethrows an exception of on_diagnosis once
/// every server's diagnosis has ended.
///
/// Cancellation: as async_diagnose, for every server: the diagnoses running are cancelled, the
/// servers not started yet end at once with server_error ssh::Errc::cancelled (each still gets a
/// Diagnosis and an on_diagnosis call). Returns once every worker ended: none outlives the call.
asio::awaitable<std::vector<Diagnosis>> async_diagnose_all(exec::Executor& executor,
                                                           std::vector<ServerChecks> servers,
                                                           SweepOptions options);

/// What the runner puts before every command it sends (a check's, or the batched script): draws
/// a framing marker on the server into the shell variable HM (not exported) and prints it as the
/// first line of stdout. 122 random bits from the kernel (/proc/sys/kernel/random/uuid; 128 from
/// /dev/urandom where that file is missing; exit 125 when neither works): the marker is on no
/// command line and in no environment that another user of the server could read, and no tool
/// has printed anything yet when it is printed. Costs no round trip (a marker healer sent on
/// stdin would make every command wait for it) and no process where the uuid file exists.
inline constexpr std::string_view kDrawMarker =
    "IFS= read -r HM 2>/dev/null </proc/sys/kernel/random/uuid || "
    "HM=$(od -An -N16 -tx1 /dev/urandom 2>/dev/null | tr -d ' \\n'); [ -n \"$HM\" ] || exit 125; "
    "HM=\"@@healer-$HM\"; echo \"$HM\"; ";

/// The marker line kDrawMarker printed, taken off `out`: returns the marker and leaves in `out`
/// what followed its line. Anything before it (a login script's output) is dropped. The line is
/// the first that is "@@healer-" and 32 to 36 characters of [0-9a-f-] (it may follow text without
/// a newline); without one, returns "" and leaves `out` as it is.
[[nodiscard]] std::string take_marker(std::string& out);

/// The batched-mode script for `checks`, framed by "$HM" (exposed for tests).
[[nodiscard]] std::string batch_script(const std::vector<CheckDefinition>& checks);

/// One check's part of a batched run's output.
struct BatchSection {
  std::string out;
  std::string err;
  std::optional<int> exit_status;  ///< unset when the section's end marker is missing
};

/// Splits a batched run's stdout (its marker line already taken) and stderr into `count` sections
/// by `marker`.
[[nodiscard]] std::vector<BatchSection> split_batch_output(const std::string& out,
                                                           const std::string& err,
                                                           const std::string& marker,
                                                           std::size_t count);

}  // namespace healer::checks
