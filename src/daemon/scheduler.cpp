#include "healer/daemon/scheduler.hpp"

#include <sodium.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <map>
#include <set>

#include "healer/core/log.hpp"
#include "healer/metrics/rates.hpp"
#include "healer/service/collect.hpp"
#include "healer/service/diagnose.hpp"

namespace healer::daemon {
namespace {

using std::chrono::milliseconds;
using SystemClock = std::chrono::system_clock;

// How often the inventory is re-read when nobody asks (server add/remove via the CLI also asks).
constexpr std::chrono::seconds kInventoryInterval{10};
// Longest time one collection or diagnosis may take (it is also kept under its interval).
constexpr milliseconds kMaxCollectTimeout{30000};
constexpr milliseconds kMaxDiagnoseTimeout{120000};

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 1469598103934665603ULL;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

std::string key_of(const std::string& server, WorkKind kind) {
  return server + (kind == WorkKind::metrics ? "#m" : "#d");
}

WorkState& work_of(ServerState& state, WorkKind kind) {
  return kind == WorkKind::metrics ? state.metrics : state.diagnose;
}

// A small random delay on top of the slot so servers with one slot do not fire in lockstep.
milliseconds jitter(std::chrono::seconds interval) {
  const auto bound =
      std::min<std::int64_t>(std::chrono::duration_cast<milliseconds>(interval).count() / 50, 2000);
  if (bound <= 0) {
    return milliseconds(0);
  }
  return milliseconds(randombytes_uniform(static_cast<std::uint32_t>(bound)));
}

const auto& logger() {
  static const auto instance = log::get("daemon");
  return instance;
}

}  // namespace

milliseconds slot_offset(std::string_view server, std::chrono::seconds interval) {
  const auto period = std::chrono::duration_cast<milliseconds>(interval).count();
  if (period <= 0) {
    return milliseconds(0);
  }
  return milliseconds(
      static_cast<std::int64_t>(fnv1a(server) % static_cast<std::uint64_t>(period)));
}

Scheduler::Scheduler(service::Runtime& runtime, FleetState& fleet, Notifier& notifier)
    : runtime_(runtime),
      fleet_(fleet),
      notifier_(notifier),
      wakeup_(runtime.io()),
      reload_timer_(runtime.io()) {}

void Scheduler::schedule(const std::string& server, WorkKind kind, ServerState& state) {
  auto& work = work_of(state, kind);
  if (work.interval.count() <= 0) {
    work.next_due.reset();
    return;
  }
  const auto period = std::chrono::duration_cast<milliseconds>(work.interval);
  const auto offset = slot_offset(server, work.interval);
  // The next slot strictly after the later of now and the slot that just fired.
  auto after = SystemClock::now();
  if (work.next_due && *work.next_due > after) {
    after = *work.next_due;
  }
  const auto since_epoch = std::chrono::duration_cast<milliseconds>(after.time_since_epoch());
  const auto periods = (since_epoch - offset) / period + 1;
  const auto due = SystemClock::time_point(periods * period + offset + jitter(work.interval));
  work.next_due = due;
  queue_.push(Due{due, server, kind, generations_[key_of(server, kind)]});
}

void Scheduler::wake() { wakeup_.cancel(); }

void Scheduler::reload_soon() { reload_timer_.cancel(); }

void Scheduler::settings_changed() {
  settings_dirty_ = true;
  reload_soon();
}

asio::awaitable<void> Scheduler::async_start() {
  co_await load_inventory();
  // What the store knows from before this process: latest runs (status and since when) and the
  // latest collection of each server (values for /metrics and a base for rates).
  struct Seed {
    std::vector<store::DiagnosisRun> runs;
    std::map<std::int64_t, std::int64_t> since;
    std::vector<store::MetricSample> samples;
  };
  auto& store = runtime_.store();
  auto job = [&store]() {
    Seed seed;
    if (auto runs = store.latest_runs(); runs) {
      seed.runs = std::move(*runs);
      for (const auto& run : seed.runs) {
        if (auto transitions = store.transitions(run.server_id, 0, 1);
            transitions && !transitions->empty()) {
          seed.since[run.server_id] = transitions->front().at;
        }
      }
    }
    // Collections older than this are no base for rates and too old to show as current.
    const auto window = std::chrono::duration_cast<milliseconds>(std::chrono::hours(2)).count();
    if (auto samples = store.latest_samples(std::nullopt, store::now_unix_ms() - window); samples) {
      seed.samples = std::move(*samples);
    }
    return seed;
  };
  auto seed = co_await runtime_.async_offload(std::move(job));
  for (const auto& run : seed.runs) {
    const auto since = seed.since.find(run.server_id);
    fleet_.seed(run, since == seed.since.end() ? std::nullopt : std::optional(since->second));
  }
  std::map<std::int64_t, std::string> names;
  for (const auto& [name, state] : fleet_.servers()) {
    names.emplace(state.record.id, name);
    if (state.run) {
      notifier_.seed(name, state.run->status);
    }
  }
  std::map<std::string, std::vector<metrics::Metric>> collections;
  std::map<std::string, std::int64_t> collected_at;
  for (const auto& sample : seed.samples) {
    const auto name = names.find(sample.server_id);
    auto labels = metrics::parse_labels(sample.labels);
    if (name == names.end() || !labels) {
      continue;
    }
    collections[name->second].push_back(
        metrics::Metric{sample.name, std::move(*labels), sample.value});
    collected_at[name->second] = sample.collected_at;
  }
  for (auto& [name, list] : collections) {
    fleet_.seed(name, collected_at[name], list);
    runtime_.previous_collections()[name] =
        service::PreviousCollection{SystemClock::time_point(milliseconds(collected_at[name])),
                                    metrics::counters_from_metrics(list)};
  }
  ready_ = true;
  asio::co_spawn(runtime_.io(), timer_loop(), asio::detached);
  asio::co_spawn(runtime_.io(), inventory_loop(), asio::detached);
  logger()->info("scheduling {} server(s)", fleet_.servers().size());
}

asio::awaitable<void> Scheduler::load_inventory() {
  auto& store = runtime_.store();
  auto job = [&store]() { return store.list_servers(); };
  auto records = co_await runtime_.async_offload(std::move(job));
  if (!records) {
    logger()->error("cannot read the inventory: {}", records.error().message());
    co_return;
  }
  ++stats_.inventory_reloads;
  const bool dirty = std::exchange(settings_dirty_, false);
  const auto& plan = runtime_.settings().schedule;
  std::set<std::string, std::less<>> present;
  for (auto& record : *records) {
    present.insert(record.name);
    const auto intervals = plan.intervals_for(record.name, record.tags);
    auto [it, added] = fleet_.servers().try_emplace(record.name);
    auto& state = it->second;
    const bool tags_changed = !added && state.record.tags != record.tags;
    state.record = std::move(record);
    for (const auto kind : {WorkKind::metrics, WorkKind::diagnose}) {
      auto& work = work_of(state, kind);
      const auto interval = kind == WorkKind::metrics ? intervals.metrics : intervals.diagnose;
      if (added || ((dirty || tags_changed) && work.interval != interval)) {
        work.interval = interval;
        ++generations_[key_of(it->first, kind)];
        work.next_due.reset();
        schedule(it->first, kind, state);
      }
    }
  }
  std::vector<std::string> removed;
  for (const auto& [name, state] : fleet_.servers()) {
    if (!present.contains(name)) {
      removed.push_back(name);
    }
  }
  for (const auto& name : removed) {
    fleet_.servers().erase(name);
    ++generations_[key_of(name, WorkKind::metrics)];
    ++generations_[key_of(name, WorkKind::diagnose)];
    notifier_.forget(name);
    runtime_.previous_collections().erase(name);
    runtime_.cache().forget(name);
    runtime_.registry().remove_server(name);
    logger()->info("[{}] removed from the inventory: no longer scheduled, connections drained",
                   name);
  }
  if (leases_ != nullptr) {
    leases_->apply();
  }
  wake();
}

asio::awaitable<void> Scheduler::inventory_loop() {
  while (!stopping_) {
    reload_timer_.expires_after(kInventoryInterval);
    co_await reload_timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (stopping_) {
      break;
    }
    co_await load_inventory();
  }
}

asio::awaitable<void> Scheduler::timer_loop() {
  while (!stopping_) {
    if (queue_.empty()) {
      wakeup_.expires_at(Clock::time_point::max());
    } else {
      const auto wait = queue_.top().at - SystemClock::now();
      wakeup_.expires_after(std::max(wait, SystemClock::duration::zero()));
    }
    co_await wakeup_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    const auto now = SystemClock::now();
    while (!stopping_ && !queue_.empty() && queue_.top().at <= now) {
      Due due = queue_.top();
      queue_.pop();
      if (generations_[key_of(due.server, due.kind)] != due.generation) {
        continue;  // the server went away or its interval changed since
      }
      auto* state = fleet_.find(due.server);
      if (state == nullptr) {
        continue;
      }
      auto& work = work_of(*state, due.kind);
      const auto kind = static_cast<std::size_t>(due.kind);
      schedule(due.server, due.kind, *state);  // the next slot, whatever this one does
      // Another node holds this server's lease: it runs this slot (every node computes the same
      // slots, so a server changing hands is neither polled twice nor skipped for long).
      if (leases_ != nullptr && !leases_->owns(*state)) {
        continue;
      }
      if (work.running) {
        ++work.skipped;
        ++stats_.skipped[kind];
        logger()->warn("[{}] {} still running when due again: skipped", due.server,
                       due.kind == WorkKind::metrics ? "metrics collection" : "diagnosis");
        continue;
      }
      const auto delay = std::chrono::duration_cast<std::chrono::microseconds>(now - due.at);
      stats_.start_delay.record(delay);
      if (delay > std::chrono::seconds(1)) {
        ++work.late;
        ++stats_.late[kind];
      }
      work.running = true;
      ++work.runs;
      ++stats_.runs[kind];
      ++stats_.running;
      asio::co_spawn(runtime_.io(), run(due.server, due.kind), asio::detached);
    }
  }
}

asio::awaitable<void> Scheduler::run(std::string server, WorkKind kind) {
  auto* state = fleet_.find(server);
  const auto interval = state != nullptr ? work_of(*state, kind).interval : std::chrono::seconds(0);
  // A run should end before the next one is due (else that one is skipped), but a deadline
  // shorter than a few seconds turns a briefly slow server into timeouts and reconnections.
  const auto bound =
      std::max(milliseconds(5000), std::chrono::duration_cast<milliseconds>(interval) * 8 / 10);
  if (kind == WorkKind::metrics) {
    service::CollectRequest request;
    request.selection.names = {server};
    request.priority = pool::Priority::background;
    request.timeout = std::min(bound, kMaxCollectTimeout);
    auto outcome = co_await service::async_collect(runtime_, std::move(request));
    if (!outcome) {
      logger()->warn("[{}] metrics collection not run: {}", server, outcome.error().message());
    } else {
      for (const auto& collected : outcome->servers) {
        fleet_.record(collected);
      }
    }
  } else {
    service::DiagnoseRequest request;
    request.selection.names = {server};
    request.checks = runtime_.settings().schedule.checks;
    request.seed = runtime_.settings().schedule.seed_checks;
    request.priority = pool::Priority::background;
    request.timeout = std::min(bound, kMaxDiagnoseTimeout);
    auto outcome = co_await service::async_diagnose(runtime_, std::move(request));
    if (!outcome) {
      logger()->warn("[{}] diagnosis not run: {}", server, outcome.error().message());
    } else {
      for (const auto& diagnosed : outcome->servers) {
        fleet_.record(diagnosed);
        if (auto* current = fleet_.find(server);
            current != nullptr && current->run && diagnosed.run_id != 0) {
          notifier_.observe(server, *current->run);
        }
      }
    }
  }
  if (auto* current = fleet_.find(server); current != nullptr) {
    work_of(*current, kind).running = false;
  }
  --stats_.running;
}

asio::awaitable<void> Scheduler::async_stop(Deadline deadline) {
  stopping_ = true;
  wakeup_.cancel();
  reload_timer_.cancel();
  asio::steady_timer timer(runtime_.io());
  while (stats_.running > 0 && !deadline.expired()) {
    timer.expires_after(milliseconds(20));
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

}  // namespace healer::daemon
