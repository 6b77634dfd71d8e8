#include "healer/daemon/leases.hpp"

#include <fmt/format.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <climits>
#include <cstdio>

#include "healer/core/log.hpp"
#include "healer/metrics/metric.hpp"

namespace healer::daemon {
namespace {

using std::chrono::milliseconds;

// Other nodes' runs and collections are read back this often, with this much overlap: a sample
// is written a moment after the time it carries. Not more often: the read shares the store's
// thread with this node's writes and heartbeats.
constexpr milliseconds kRefreshInterval{10000};
constexpr std::int64_t kRefreshOverlapMs = 5000;

const auto& logger() {
  static const auto instance = log::get("daemon");
  return instance;
}

std::string default_node_id() {
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
    std::snprintf(host, sizeof host, "%s", "healer");
  }
  return fmt::format("{}-{}-{:04x}", host, ::getpid(), randombytes_uniform(0x10000));
}

// "a, b and 3 more" for log lines about many servers.
std::string some_names(const std::vector<std::string>& names) {
  std::string text;
  const std::size_t shown = std::min<std::size_t>(names.size(), 5);
  for (std::size_t i = 0; i < shown; ++i) {
    text += (i == 0 ? "" : ", ") + names[i];
  }
  if (names.size() > shown) {
    text += fmt::format(" and {} more", names.size() - shown);
  }
  return text;
}

}  // namespace

LeaseKeeper::LeaseKeeper(service::Runtime& runtime, FleetState& fleet, bool enabled)
    : runtime_(runtime),
      fleet_(fleet),
      node_(runtime.settings().serve.node_id.empty() ? default_node_id()
                                                     : runtime.settings().serve.node_id),
      ttl_(std::chrono::duration_cast<milliseconds>(runtime.settings().serve.lease_ttl)),
      timer_(runtime.io()) {
  stats_.enabled = enabled;
}

bool LeaseKeeper::owns(const ServerState& state) const {
  if (!stats_.enabled) {
    return true;
  }
  return held_.contains(state.record.id) && Clock::now() < valid_until_;
}

void LeaseKeeper::apply() {
  for (auto& [name, state] : fleet_.servers()) {
    if (!stats_.enabled) {
      state.owner = node_;
      state.owned = true;
      continue;
    }
    const auto owner = owners_.find(state.record.id);
    state.owner = owner == owners_.end() ? std::string() : owner->second;
    const bool owned = owns(state);
    if (state.owned && !owned) {
      // Another node polls it now: no connections kept here, and a later takeover takes the
      // base for rates from the store, not from this node's stale memory.
      runtime_.previous_collections().erase(name);
      runtime_.registry().remove_server(name);
    }
    state.owned = owned;
  }
}

asio::awaitable<void> LeaseKeeper::async_start() {
  if (!stats_.enabled) {
    apply();
    logger()->info("node {}: one node on this database, scheduling every server", node_);
    co_return;
  }
  logger()->info("node {}: sharing the fleet through leases ({} ms, heartbeat every {} ms)", node_,
                 ttl_.count(), (ttl_ / 3).count());
  running_ = true;
  co_await async_sync();
  next_refresh_ = Clock::now() + kRefreshInterval;
  asio::co_spawn(runtime_.io(), heartbeat_loop(), asio::detached);
}

asio::awaitable<void> LeaseKeeper::heartbeat_loop() {
  while (!stopping_) {
    timer_.expires_after(ttl_ / 3);
    co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (stopping_) {
      break;
    }
    co_await async_sync();
    if (!stopping_ && Clock::now() >= next_refresh_) {
      next_refresh_ = Clock::now() + kRefreshInterval;
      co_await async_refresh();
    }
  }
  running_ = false;
}

asio::awaitable<void> LeaseKeeper::async_sync() {
  auto& store = runtime_.store();
  const auto sent = Clock::now();
  auto job = [&store, node = node_, ttl = ttl_]() { return store.sync_leases(node, ttl); };
  syncing_ = true;
  auto sync = co_await runtime_.async_offload(std::move(job));
  syncing_ = false;
  ++stats_.syncs;
  if (stopping_) {
    co_return;  // async_stop gives everything back; do not start polling again
  }
  if (!sync) {
    ++stats_.sync_failures;
    const bool expired = !held_.empty() && Clock::now() >= valid_until_;
    logger()->warn("node {}: lease heartbeat failed ({}){}", node_, sync.error().message(),
                   expired ? ": leases ran out, no scheduled work until the database answers" : "");
    if (expired) {
      held_.clear();
      stats_.held = 0;
      apply();
    }
    co_return;
  }
  // The database set the expiry at or after `sent` + ttl: by our own steady clock the leases
  // are ours until then, whatever the wall clocks of this machine and the database say.
  valid_until_ = sent + ttl_;
  std::map<std::int64_t, std::string> names;
  for (const auto& [name, state] : fleet_.servers()) {
    names.emplace(state.record.id, name);
  }
  const auto name_of = [&](std::int64_t id) {
    const auto found = names.find(id);
    return found == names.end() ? fmt::format("#{}", id) : found->second;
  };
  std::set<std::int64_t> held;
  owners_.clear();
  for (const auto& lease : sync->leases) {
    owners_.emplace(lease.server_id, lease.node);
    if (lease.node == node_) {
      held.insert(lease.server_id);
    }
  }
  std::vector<std::string> lost;
  for (const auto id : held_) {
    const bool released = std::any_of(sync->released.begin(), sync->released.end(),
                                      [id](const auto& change) { return change.server_id == id; });
    if (!held.contains(id) && !released) {
      lost.push_back(name_of(id));
    }
  }
  std::map<std::string, std::vector<std::string>> taken;  // previous node -> servers
  std::size_t fresh = 0;
  for (const auto& claim : sync->claimed) {
    if (claim.previous_node.empty()) {
      ++fresh;
    } else {
      taken[claim.previous_node].push_back(name_of(claim.server_id));
      ++stats_.takeovers;
    }
  }
  stats_.claimed += sync->claimed.size();
  stats_.released += sync->released.size();
  stats_.lost += lost.size();
  for (const auto& [previous, servers] : taken) {
    logger()->info("node {}: took over {} server(s) from node {} (its lease expired): {}", node_,
                   servers.size(), previous, some_names(servers));
  }
  if (fresh > 0) {
    logger()->info("node {}: claimed {} free server(s)", node_, fresh);
  }
  if (!sync->released.empty()) {
    std::vector<std::string> released;
    for (const auto& change : sync->released) {
      released.push_back(name_of(change.server_id));
    }
    logger()->info("node {}: gave back {} server(s) to balance {} node(s): {}", node_,
                   released.size(), sync->nodes, some_names(released));
  }
  if (!lost.empty()) {
    logger()->warn("node {}: {} lease(s) lost to another node (this node's had expired): {}", node_,
                   lost.size(), some_names(lost));
  }
  held_ = std::move(held);
  stats_.held = held_.size();
  stats_.nodes = sync->nodes;
  stats_.servers = sync->servers;
  if (refreshed_at_ == 0) {
    refreshed_at_ = sync->now;  // the scheduler seeded everything older at start
  }
  apply();
}

asio::awaitable<void> LeaseKeeper::async_refresh() {
  if (held_.size() >= fleet_.servers().size()) {
    co_return;  // nothing is polled elsewhere
  }
  struct Fresh {
    Result<std::vector<store::DiagnosisRun>> runs;
    Result<std::vector<store::MetricSample>> samples;
  };
  auto& store = runtime_.store();
  const std::int64_t since = refreshed_at_ - kRefreshOverlapMs;
  auto job = [&store, since]() {
    const auto now = store::now_unix_ms();
    Fresh fresh{store.latest_runs_since(since), store.latest_samples(std::nullopt, since)};
    return std::make_pair(now, std::move(fresh));
  };
  auto [now, fresh] = co_await runtime_.async_offload(std::move(job));
  if (stopping_) {
    co_return;
  }
  if (!fresh.runs || !fresh.samples) {
    logger()->warn("node {}: cannot read other nodes' latest results: {}", node_,
                   (!fresh.runs ? fresh.runs.error() : fresh.samples.error()).message());
    co_return;
  }
  ++stats_.refreshes;
  refreshed_at_ = now;
  std::map<std::int64_t, std::string> foreign;
  for (const auto& [name, state] : fleet_.servers()) {
    if (!state.owned) {
      foreign.emplace(state.record.id, name);
    }
  }
  for (const auto& run : *fresh.runs) {
    const auto name = foreign.find(run.server_id);
    auto* state = name == foreign.end() ? nullptr : fleet_.find(name->second);
    if (state == nullptr || (state->run && state->run->run_id >= run.id)) {
      continue;
    }
    // A changed status changed with this run (its transition is in the store).
    const auto since_status = state->run && state->run->status == run.status
                                  ? state->status_since
                                  : std::optional<std::int64_t>(run.started_at);
    fleet_.seed(run, since_status);
  }
  std::map<std::int64_t, std::pair<std::int64_t, std::vector<metrics::Metric>>> collections;
  for (const auto& sample : *fresh.samples) {
    if (!foreign.contains(sample.server_id)) {
      continue;
    }
    auto labels = metrics::parse_labels(sample.labels);
    if (!labels) {
      continue;
    }
    auto& [at, list] = collections[sample.server_id];
    at = sample.collected_at;
    list.push_back(metrics::Metric{sample.name, std::move(*labels), sample.value});
  }
  for (const auto& [id, collection] : collections) {
    const auto& name = foreign.at(id);
    const auto* state = fleet_.find(name);
    if (state != nullptr &&
        (!state->collection || state->collection->collected_at < collection.first)) {
      fleet_.seed(name, collection.first, collection.second);
    }
  }
}

asio::awaitable<void> LeaseKeeper::async_stop(Deadline deadline) {
  if (!stats_.enabled || stopping_) {
    co_return;
  }
  stopping_ = true;
  timer_.cancel();
  // A heartbeat still on its way would claim again after the release below: let it land first.
  asio::steady_timer wait(runtime_.io());
  while (syncing_ && !deadline.expired()) {
    wait.expires_after(milliseconds(10));
    co_await wait.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  const auto count = held_.size();
  held_.clear();
  stats_.held = 0;
  auto& store = runtime_.store();
  auto job = [&store, node = node_]() { return store.release_leases(node); };
  auto released = co_await runtime_.async_offload(std::move(job));
  if (!released) {
    logger()->warn(
        "node {}: could not give its leases back ({}): other nodes take its {} "
        "server(s) over when they expire",
        node_, released.error().message(), count);
  } else {
    stats_.released += *released;
    logger()->info("node {}: gave back {} server(s) for other nodes to take over", node_,
                   *released);
  }
}

}  // namespace healer::daemon
