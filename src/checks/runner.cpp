#include "healer/checks/runner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <asio/this_coro.hpp>
#include <iterator>
#include <memory>
#include <utility>

#include "healer/exec/worker_group.hpp"
#include "healer/ssh/cancellation.hpp"
#include "healer/ssh/errors.hpp"
#include "text.hpp"

namespace healer::checks {
namespace {

// A batched run keeps this many output bytes at most, whatever max_output * checks says.
constexpr std::size_t kMaxBatchOutput = std::size_t{64} << 20;

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::chrono::microseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

CheckResult unknown_result(const std::string& name, std::string_view reason) {
  CheckResult result;
  result.name = name;
  result.status = Status::unknown;
  result.message = text::one_line(reason);
  return result;
}

std::string seconds_text(Clock::duration duration) {
  return text::number(std::chrono::duration<double>(duration).count(), 1) + " s";
}

// The one-line reason of a check whose command did not run or finish. `own_deadline` is true
// when the check's own timeout (not the overall deadline) bounded it.
std::string exec_failure_reason(const Error& error, bool own_deadline, Clock::duration allowed) {
  if (error.code == ssh::Errc::timeout) {
    return own_deadline ? "timed out after " + seconds_text(allowed) + " (the check's timeout)"
                        : "timed out: the diagnosis deadline passed";
  }
  return "command failed: " + error.message();
}

CheckResult parse_output(const CheckDefinition& check, const CheckInput& input,
                         const CheckSettings& settings) {
  if (check.parse == nullptr) {
    return unknown_result(check.name, "no parser for this check");
  }
  CheckResult result = check.parse(input, settings);
  result.name = check.name;  // the definition names the result (a parser may serve several)
  return result;
}

CheckInput input_of(const CachedOutput& output) {
  CheckInput input;
  input.out = output.out;
  input.err = output.err;
  input.marker = output.marker;
  input.exit_status = output.exit_status;
  input.out_truncated = output.out_truncated;
  input.sent_at = output.sent_at;
  input.received_at = output.received_at;
  return input;
}

// Parses `output` for `check` into `run`, and keeps it in the cache when the check asks for it
// and the result is worth keeping.
void finish_run(CheckRun& run, const CheckDefinition& check, CachedOutput output,
                const std::string& server_id, const CheckSettings& settings, ResultCache* cache) {
  run.exit_status = output.exit_status;
  run.result = parse_output(check, input_of(output), settings);
  if (cache != nullptr && check.cache_for.count() > 0 && run.result.status != Status::unknown) {
    output.expires_at = Clock::now() + check.cache_for;
    cache->store(server_id, check, std::move(output));
  }
}

// The reason a command that printed no marker line gets, when that is why it tells nothing.
std::optional<std::string> no_marker_reason(const std::string& marker,
                                            std::optional<int> exit_status) {
  if (marker.empty() && exit_status == 125) {
    return "healer could not draw a framing marker on the server (no "
           "/proc/sys/kernel/random/uuid, no /dev/urandom)";
  }
  return std::nullopt;
}

// What one async_diagnose shares with the workers it spawned.
struct ServerRun {
  ServerRun(exec::Executor* executor_in, std::string id, std::vector<CheckDefinition> check_list,
            CheckSettings check_settings, DiagnoseOptions run_options)
      : executor(executor_in),
        server_id(std::move(id)),
        checks(std::move(check_list)),
        settings(std::move(check_settings)),
        options(std::move(run_options)),
        runs(checks.size()) {}

  exec::Executor* executor;
  std::string server_id;
  std::vector<CheckDefinition> checks;
  CheckSettings settings;
  DiagnoseOptions options;
  std::vector<CheckRun> runs;       // by check index; never resized while workers run
  std::vector<std::size_t> to_run;  // indexes of checks to execute, in input order
  std::size_t next = 0;             // next position in to_run a worker takes
};

asio::awaitable<void> run_check(std::shared_ptr<ServerRun> state, std::size_t index) {
  const CheckDefinition& check = state->checks[index];
  CheckRun& run = state->runs[index];
  const auto started = Clock::now();
  const Deadline own = Deadline::after(check.timeout);
  exec::RunOptions run_options;
  run_options.deadline = state->options.deadline.min(own);
  run_options.priority = state->options.priority;
  run_options.max_output = state->options.max_output;
  std::string command = std::string(kDrawMarker) + check.command;
  const double before = wall_now();
  auto result =
      co_await state->executor->async_run(state->server_id, std::move(command), run_options);
  const double after = wall_now();
  if (!result) {
    const bool own_deadline = run_options.deadline.at() == own.at();
    run.error = result.error();
    run.result = unknown_result(check.name,
                                exec_failure_reason(result.error(), own_deadline, check.timeout));
  } else {
    CachedOutput output;
    output.exit_status = result->exit_status;
    output.out_truncated = result->out_truncated;
    // The command ran during the last `run` of the call (queueing and channel open came first).
    const double run_seconds = std::chrono::duration<double>(result->timing.run).count();
    output.sent_at = std::max(before, after - run_seconds);
    output.received_at = after;
    output.marker = take_marker(result->out);
    output.out = std::move(result->out);
    output.err = std::move(result->err);
    if (auto reason = no_marker_reason(output.marker, output.exit_status)) {
      run.exit_status = output.exit_status;
      run.result = unknown_result(check.name, *reason);
    } else {
      finish_run(run, check, std::move(output), state->server_id, state->settings,
                 state->options.cache);
    }
  }
  run.duration = since(started);
}

// A worker of a WorkerGroup: once the diagnosis is cancelled, the checks it still takes end at
// once with a cancelled error (their reason says so), so every check has a result.
asio::awaitable<void> check_worker(std::shared_ptr<ServerRun> state) {
  while (state->next < state->to_run.size()) {
    const std::size_t index = state->to_run[state->next++];
    co_await run_check(state, index);
  }
}

// Batched mode: one exec for every check in state->to_run.
asio::awaitable<void> run_batched(std::shared_ptr<ServerRun> state) {
  std::vector<CheckDefinition> batch;
  auto longest = std::chrono::seconds(0);
  for (const std::size_t index : state->to_run) {
    batch.push_back(state->checks[index]);
    longest = std::max(longest, state->checks[index].timeout);
  }
  const auto started = Clock::now();
  const Deadline own = Deadline::after(longest);
  exec::RunOptions run_options;
  run_options.deadline = state->options.deadline.min(own);
  run_options.priority = state->options.priority;
  run_options.max_output =
      std::min(kMaxBatchOutput, state->options.max_output * std::max<std::size_t>(1, batch.size()));
  std::string script = std::string(kDrawMarker) + batch_script(batch);
  const double before = wall_now();
  auto result =
      co_await state->executor->async_run(state->server_id, std::move(script), run_options);
  const double after = wall_now();
  const auto elapsed = since(started);
  if (!result) {
    const bool own_deadline = run_options.deadline.at() == own.at();
    for (const std::size_t index : state->to_run) {
      CheckRun& run = state->runs[index];
      run.error = result.error();
      run.result = unknown_result(state->checks[index].name,
                                  exec_failure_reason(result.error(), own_deadline, longest));
      run.duration = elapsed;
    }
    co_return;
  }
  const double run_seconds = std::chrono::duration<double>(result->timing.run).count();
  const std::string marker = take_marker(result->out);
  auto sections = marker.empty()
                      ? std::vector<BatchSection>(batch.size())
                      : split_batch_output(result->out, result->err, marker, batch.size());
  // No section at all: the wrapper itself failed (no mktemp, no writable temp dir...).
  const bool none_ran = std::none_of(sections.begin(), sections.end(), [](const BatchSection& s) {
    return s.exit_status.has_value();
  });
  const std::string wrapper_failed =
      !none_ran ? std::string()
      : no_marker_reason(marker, result->exit_status)
          ? *no_marker_reason(marker, result->exit_status)
          : fmt::format("batched run failed (exit {}): {}", result->shell_exit_code(),
                        text::first_line(result->err));
  for (std::size_t i = 0; i < state->to_run.size(); ++i) {
    const std::size_t index = state->to_run[i];
    const CheckDefinition& check = state->checks[index];
    CheckRun& run = state->runs[index];
    run.duration = elapsed;
    if (!sections[i].exit_status) {
      std::string reason = none_ran ? wrapper_failed
                           : result->out_truncated
                               ? "batched output was truncated before this check"
                               : "batched run ended before this check finished";
      run.result = unknown_result(check.name, reason);
      continue;
    }
    CachedOutput output;
    output.exit_status = sections[i].exit_status;
    output.sent_at = std::max(before, after - run_seconds);
    output.received_at = after;
    output.out = std::move(sections[i].out);
    output.err = std::move(sections[i].err);
    output.marker = marker;
    finish_run(run, check, std::move(output), state->server_id, state->settings,
               state->options.cache);
  }
}

// What one async_diagnose_all shares with its workers (WorkerGroup children, which keep the first
// exception, e.g. the callback's, for the sweep to rethrow).
struct Sweep {
  Sweep(exec::Executor* executor_in, std::vector<ServerChecks> server_list,
        SweepOptions sweep_options)
      : executor(executor_in),
        servers(std::move(server_list)),
        options(std::move(sweep_options)),
        results(servers.size()) {}

  exec::Executor* executor;
  std::vector<ServerChecks> servers;
  SweepOptions options;
  std::vector<Diagnosis> results;  // by server index
  std::size_t next = 0;
};

// Once the sweep is cancelled, the servers a worker still takes end at once: each diagnosis says
// it was cancelled (server_error), so no server is silently missing from the results.
asio::awaitable<void> sweep_worker(std::shared_ptr<Sweep> sweep) {
  while (sweep->next < sweep->servers.size()) {
    const std::size_t index = sweep->next++;
    ServerChecks& server = sweep->servers[index];
    DiagnoseOptions options = sweep->options.per_server;
    options.deadline = sweep->options.deadline.min(Deadline::after(sweep->options.server_timeout));
    sweep->results[index] =
        co_await async_diagnose(*sweep->executor, server.server_id, std::move(server.checks),
                                std::move(server.settings), std::move(options));
    if (sweep->options.on_diagnosis) {
      sweep->options.on_diagnosis(index, sweep->results[index]);
    }
  }
}

}  // namespace

// --- ResultCache --------------------------------------------------------------------------------

const CachedOutput* ResultCache::find(const std::string& server_id, const CheckDefinition& check) {
  const auto it = entries_.find(std::make_tuple(server_id, check.name, check.command));
  if (it == entries_.end()) {
    return nullptr;
  }
  if (Clock::now() >= it->second.expires_at) {
    entries_.erase(it);
    return nullptr;
  }
  return &it->second;
}

void ResultCache::store(const std::string& server_id, const CheckDefinition& check,
                        CachedOutput output) {
  entries_.insert_or_assign(std::make_tuple(server_id, check.name, check.command),
                            std::move(output));
}

std::vector<ResultCache::Entry> ResultCache::entries() const {
  std::vector<Entry> out;
  out.reserve(entries_.size());
  for (const auto& [key, output] : entries_) {
    out.push_back(Entry{std::get<0>(key), std::get<1>(key), std::get<2>(key), &output});
  }
  return out;
}

void ResultCache::forget(const std::string& server_id) {
  std::erase_if(entries_, [&](const auto& entry) { return std::get<0>(entry.first) == server_id; });
}

// --- markers and batched mode ------------------------------------------------------------------

std::string take_marker(std::string& out) {
  static constexpr std::string_view kPrefix = "@@healer-";
  // The prologue prints its line before any tool runs, so the first valid one is the prologue's;
  // an invalid look-alike before it can only come from a login script.
  for (auto at = out.find(kPrefix); at != std::string::npos; at = out.find(kPrefix, at + 1)) {
    const auto end = out.find('\n', at);
    if (end == std::string::npos) {
      return {};
    }
    const std::string_view random =
        std::string_view(out).substr(at + kPrefix.size(), end - at - kPrefix.size());
    if (random.size() >= 32 && random.size() <= 36 &&
        random.find_first_not_of("0123456789abcdef-") == std::string_view::npos) {
      std::string marker = out.substr(at, end - at);
      out.erase(0, end + 1);
      return marker;
    }
  }
  return {};
}

// Each check runs in its own subshell in the background; its framed stdout and stderr go to
// files of a private temp dir, printed in order after `wait` (two `cat`s: forks are what a
// batch costs, on bash especially). M is the value of HM (drawn by kDrawMarker before it):
//   stdout: "<M> begin <i>\n" <out> "\n<M> end <i> <rc>\n"
//   stderr: "<M> begin <i>\n" <err> "\n<M> end <i>\n"
// The newline before "end" is always added and always removed, so output without a final
// newline comes back byte for byte. A section killed before it ended has no end marker. The
// checks' own framing lines use the same marker; their tags are never "begin" or "end".
std::string batch_script(const std::vector<CheckDefinition>& checks) {
  std::string script =
      "D=$(mktemp -d 2>/dev/null || mktemp -d -t healer.XXXXXX) || exit 125\n"
      "trap 'rm -rf \"$D\"' EXIT\n"
      "trap 'exit 143' TERM INT HUP\n";
  for (std::size_t i = 0; i < checks.size(); ++i) {
    script += fmt::format(
        "{{ printf '%s begin {i}\\n' \"$HM\"; printf '%s begin {i}\\n' \"$HM\" >&2; (\n{cmd}\n) "
        "</dev/null; printf '\\n%s end {i} %s\\n' \"$HM\" $?; printf '\\n%s end {i}\\n' \"$HM\" "
        ">&2; "
        "}} >\"$D/{i:06}.o\" 2>\"$D/{i:06}.e\" &\n",
        fmt::arg("i", i), fmt::arg("cmd", checks[i].command));
  }
  script += "wait\ncat \"$D\"/*.o; cat \"$D\"/*.e >&2\n";
  return script;
}

std::vector<BatchSection> split_batch_output(const std::string& out, const std::string& err,
                                             const std::string& marker, std::size_t count) {
  std::vector<BatchSection> sections(count);
  // The text of section `i` in `stream`, and what follows its end marker on that line.
  const auto section = [&](const std::string& stream, std::size_t i,
                           std::string* tail) -> std::optional<std::string> {
    const std::string begin = fmt::format("{} begin {}\n", marker, i);
    const std::string end = fmt::format("\n{} end {}", marker, i);
    const auto b = stream.find(begin);
    if (b == std::string::npos) {
      return std::nullopt;
    }
    const auto body = b + begin.size();
    const auto e = stream.find(end, body);
    if (e == std::string::npos) {
      return std::nullopt;
    }
    const auto after = e + end.size();
    const auto line_end = stream.find('\n', after);
    if (line_end == std::string::npos) {
      return std::nullopt;
    }
    if (tail != nullptr) {
      *tail = stream.substr(after, line_end - after);
    }
    return stream.substr(body, e - body);
  };
  for (std::size_t i = 0; i < count; ++i) {
    std::string tail;
    if (auto text_out = section(out, i, &tail)) {
      sections[i].out = std::move(*text_out);
      if (auto rc = text::to_i64(text::trim(tail)); rc && *rc >= 0 && *rc <= 255) {
        sections[i].exit_status = static_cast<int>(*rc);
      }
    }
    if (auto text_err = section(err, i, nullptr)) {
      sections[i].err = std::move(*text_err);
    }
  }
  return sections;
}

// --- async_diagnose ---------------------------------------------------------------------------

namespace {

asio::awaitable<Diagnosis> diagnose(exec::Executor* executor, std::string server_id,
                                    std::vector<CheckDefinition> checks, CheckSettings settings,
                                    DiagnoseOptions options) {
  const auto started = Clock::now();
  Diagnosis diagnosis;
  diagnosis.server_id = server_id;
  diagnosis.started_at = std::chrono::system_clock::now();
  diagnosis.mode = options.mode;
  auto io_executor = co_await asio::this_coro::executor;
  auto state = std::make_shared<ServerRun>(executor, std::move(server_id), std::move(checks),
                                           std::move(settings), std::move(options));
  for (std::size_t i = 0; i < state->checks.size(); ++i) {
    const CheckDefinition& check = state->checks[i];
    CheckRun& run = state->runs[i];
    run.result = unknown_result(check.name, "not run");
    const CachedOutput* hit = nullptr;
    if (state->options.cache != nullptr && check.cache_for.count() > 0) {
      hit = state->options.cache->find(state->server_id, check);
    }
    if (hit != nullptr) {
      run.result = parse_output(check, input_of(*hit), state->settings);
      run.exit_status = hit->exit_status;
      run.cached = true;
    } else {
      state->to_run.push_back(i);
    }
  }

  if (!state->to_run.empty()) {
    // One connection first: an unreachable server then costs one attempt (one failed
    // authentication for a wrong key), and its reason is the server's, not 25 checks'.
    Result<pool::Lease> probe = co_await executor->async_reserve(
        state->server_id, state->options.priority, state->options.deadline);
    if (!probe) {
      diagnosis.server_error = probe.error();
      const std::string reason = probe.error().code == ssh::Errc::cancelled
                                     ? "not run: the diagnosis was cancelled"
                                     : "server unreachable: " + probe.error().message();
      for (const std::size_t index : state->to_run) {
        CheckRun& run = state->runs[index];
        run.error = probe.error();
        run.result = unknown_result(state->checks[index].name, reason);
        run.duration = since(started);
      }
      state->to_run.clear();
    } else {
      probe->release();
    }
  }

  if (!state->to_run.empty()) {
    if (state->options.mode == RunMode::batched) {
      co_await run_batched(state);
    } else {
      std::size_t parallel = state->options.max_parallel;
      if (parallel == 0) {
        const auto& config = executor->registry().config();
        parallel = std::min(config.max_channels, config.max_concurrent);
      }
      // Expensive checks (those worth caching) run after the others: apt or dnf busy on the
      // server's CPUs would otherwise show up in the cpu check's sample as the server's load.
      std::vector<std::size_t> later;
      if (state->options.expensive_last) {
        const auto expensive = [&](std::size_t index) {
          return state->checks[index].cache_for.count() > 0;
        };
        std::copy_if(state->to_run.begin(), state->to_run.end(), std::back_inserter(later),
                     expensive);
        std::erase_if(state->to_run, expensive);
      }
      for (auto* phase : {&state->to_run, &later}) {
        if (phase->empty()) {
          continue;
        }
        if (phase != &state->to_run) {
          state->to_run = std::move(*phase);
        }
        state->next = 0;
        const std::size_t workers = std::clamp<std::size_t>(parallel, 1, state->to_run.size());
        exec::WorkerGroup group(io_executor);
        if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
          group.cancel();  // cancelled in an earlier phase: these checks end at once
        }
        for (std::size_t i = 0; i < workers; ++i) {
          group.spawn(check_worker(state));
        }
        co_await group.async_wait();
      }
    }
  }

  diagnosis.checks = std::move(state->runs);
  if (!diagnosis.checks.empty()) {
    diagnosis.status = Status::ok;
    for (const auto& run : diagnosis.checks) {
      diagnosis.status = worst(diagnosis.status, run.result.status);
    }
  }
  diagnosis.duration = since(started);
  co_return diagnosis;
}

asio::awaitable<std::vector<Diagnosis>> diagnose_all(exec::Executor* executor,
                                                     std::vector<ServerChecks> servers,
                                                     SweepOptions options) {
  const std::size_t parallel =
      std::min(std::max<std::size_t>(1, options.max_servers), servers.size());
  auto sweep = std::make_shared<Sweep>(executor, std::move(servers), std::move(options));
  const auto io = co_await asio::this_coro::executor;  // not in the constructor call (GCC 12)
  exec::WorkerGroup workers(io);
  if (ssh::cancel_requested(co_await asio::this_coro::cancellation_state)) {
    workers.cancel();
  }
  for (std::size_t i = 0; i < parallel; ++i) {
    workers.spawn(sweep_worker(sweep));
  }
  co_await workers.async_wait();  // rethrows the first exception of a worker (the callback's)
  co_return std::move(sweep->results);
}

}  // namespace

asio::awaitable<Diagnosis> async_diagnose(exec::Executor& executor, std::string server_id,
                                          std::vector<CheckDefinition> checks,
                                          CheckSettings settings, DiagnoseOptions options) {
  return ssh::async_no_cancel_throw(diagnose(&executor, std::move(server_id), std::move(checks),
                                             std::move(settings), std::move(options)));
}

asio::awaitable<std::vector<Diagnosis>> async_diagnose_all(exec::Executor& executor,
                                                           std::vector<ServerChecks> servers,
                                                           SweepOptions options) {
  return ssh::async_no_cancel_throw(
      diagnose_all(&executor, std::move(servers), std::move(options)));
}

}  // namespace healer::checks
