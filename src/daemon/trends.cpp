#include "trends.hpp"

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>

#include "healer/store/records.hpp"

namespace healer::daemon {
namespace {

using service::Json;

constexpr float kNone = std::numeric_limits<float>::quiet_NaN();

// An increment over the interval; a counter that went backwards restarted from zero.
std::uint32_t delta(std::uint64_t previous, std::uint64_t current) {
  const auto increment = current >= previous ? current - previous : current;
  return static_cast<std::uint32_t>(
      std::min<std::uint64_t>(increment, std::numeric_limits<std::uint32_t>::max()));
}

std::uint32_t gauge(std::size_t value) {
  return static_cast<std::uint32_t>(
      std::min<std::size_t>(value, std::numeric_limits<std::uint32_t>::max()));
}

// Quantile of what a histogram recorded between two samples, in ms; NaN when nothing was.
float window_quantile_ms(const PoolBaseline::Window* previous, const pool::Histogram& current,
                         double q) {
  pool::Histogram window;
  const bool restarted = previous != nullptr && previous->total > current.total;
  for (std::size_t i = 0; i < pool::Histogram::kBuckets; ++i) {
    // Modulo 2^32 like the previous count: exact while an interval adds less than that.
    const auto now = static_cast<std::uint32_t>(current.counts[i]);
    const std::uint32_t before = previous == nullptr || restarted ? 0U : previous->counts[i];
    window.counts[i] = static_cast<std::uint32_t>(now - before);
    window.total += window.counts[i];
  }
  if (window.total == 0) {
    return kNone;
  }
  return static_cast<float>(static_cast<double>(window.quantile_us(q)) / 1000.0);
}

std::uint64_t eviction_total(const pool::PoolStats& stats) {
  std::uint64_t total = 0;
  for (const auto count : stats.evictions) {
    total += count;
  }
  return total;
}

PoolBaseline::Window window_of(const pool::Histogram& histogram) {
  PoolBaseline::Window window;
  window.total = histogram.total;
  for (std::size_t i = 0; i < pool::Histogram::kBuckets; ++i) {
    window.counts[i] = static_cast<std::uint32_t>(histogram.counts[i]);
  }
  return window;
}

// The counts and gauges of a point, and its latency quantiles, in the order PackedPoints keeps
// them.
constexpr std::uint32_t PoolPoint::*kCounts[] = {&PoolPoint::sessions_ready,
                                                 &PoolPoint::sessions_connecting,
                                                 &PoolPoint::sessions_draining,
                                                 &PoolPoint::channels_in_use,
                                                 &PoolPoint::waiters,
                                                 &PoolPoint::circuits_open,
                                                 &PoolPoint::backing_off,
                                                 &PoolPoint::acquisitions,
                                                 &PoolPoint::served_by_existing,
                                                 &PoolPoint::commands,
                                                 &PoolPoint::handshakes,
                                                 &PoolPoint::handshakes_failed,
                                                 &PoolPoint::sessions_opened,
                                                 &PoolPoint::evictions,
                                                 &PoolPoint::sessions_cleaned,
                                                 &PoolPoint::exhausted,
                                                 &PoolPoint::timeouts};
constexpr float PoolPoint::*kQuantiles[] = {&PoolPoint::wait_ms_p50, &PoolPoint::wait_ms_p99,
                                            &PoolPoint::handshake_ms_p50,
                                            &PoolPoint::handshake_ms_p99};

void put_varint(std::vector<std::uint8_t>& out, std::uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(value));
}

std::uint64_t get_varint(const std::uint8_t*& at) {
  std::uint64_t value = 0;
  for (int shift = 0;; shift += 7) {
    const std::uint8_t byte = *at++;
    value |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      return value;
    }
  }
}

std::uint64_t zigzag(std::int64_t value) {
  return (static_cast<std::uint64_t>(value) << 1) ^ static_cast<std::uint64_t>(value >> 63);
}

std::int64_t unzigzag(std::uint64_t value) {
  return static_cast<std::int64_t>(value >> 1) ^ -static_cast<std::int64_t>(value & 1);
}

// Reads one packed point at `at` (moved past it); its time is `at_ms` plus its delta unless it
// is the first.
PoolPoint read_point(const std::uint8_t*& at, std::int64_t at_ms, bool first) {
  PoolPoint point;
  const auto delta = unzigzag(get_varint(at));
  point.at = first ? at_ms : at_ms + delta;
  const auto present = get_varint(at);
  std::size_t bit = 0;
  for (const auto field : kCounts) {
    point.*field =
        (present & (1ULL << bit++)) != 0 ? static_cast<std::uint32_t>(get_varint(at)) : 0;
  }
  for (const auto field : kQuantiles) {
    if ((present & (1ULL << bit++)) != 0) {
      std::memcpy(&(point.*field), at, sizeof(float));
      at += sizeof(float);
    } else {
      point.*field = kNone;
    }
  }
  return point;
}

// Two decimals are all a chart shows; shorter JSON for 500 servers.
Json rounded(float value) {
  if (std::isnan(value)) {
    return nullptr;
  }
  return std::round(static_cast<double>(value) * 100.0) / 100.0;
}

template <class Points>
Json series_json(const Points& points) {
  Json series = Json::object();
  auto column = [&](const char* name, auto field) {
    Json values = Json::array();
    for (const auto& point : points) {
      const auto value = point.*field;
      if constexpr (std::is_same_v<decltype(value), const float>) {
        values.push_back(rounded(value));
      } else {
        values.push_back(value);
      }
    }
    series[name] = std::move(values);
  };
  column("at", &PoolPoint::at);
  column("sessions_ready", &PoolPoint::sessions_ready);
  column("sessions_connecting", &PoolPoint::sessions_connecting);
  column("sessions_draining", &PoolPoint::sessions_draining);
  column("channels_in_use", &PoolPoint::channels_in_use);
  column("waiters", &PoolPoint::waiters);
  column("circuits_open", &PoolPoint::circuits_open);
  column("backing_off", &PoolPoint::backing_off);
  column("acquisitions", &PoolPoint::acquisitions);
  column("served_by_existing", &PoolPoint::served_by_existing);
  column("commands", &PoolPoint::commands);
  column("handshakes", &PoolPoint::handshakes);
  column("handshakes_failed", &PoolPoint::handshakes_failed);
  column("sessions_opened", &PoolPoint::sessions_opened);
  column("evictions", &PoolPoint::evictions);
  column("sessions_cleaned", &PoolPoint::sessions_cleaned);
  column("exhausted", &PoolPoint::exhausted);
  column("timeouts", &PoolPoint::timeouts);
  column("wait_ms_p50", &PoolPoint::wait_ms_p50);
  column("wait_ms_p99", &PoolPoint::wait_ms_p99);
  column("handshake_ms_p50", &PoolPoint::handshake_ms_p50);
  column("handshake_ms_p99", &PoolPoint::handshake_ms_p99);
  return series;
}

template <class T>
void push_bounded(std::deque<T>& points, T point, std::size_t limit) {
  points.push_back(std::move(point));
  while (points.size() > limit) {
    points.pop_front();
  }
}

// A vector grows to `limit` at most (not to the next power of two): one per server.
template <class T>
void push_bounded(std::vector<T>& points, T point, std::size_t limit) {
  if (points.size() >= limit && !points.empty()) {
    points.erase(points.begin(),
                 points.begin() + static_cast<std::ptrdiff_t>(points.size() -
                                                              std::max<std::size_t>(limit, 1) + 1));
  } else if (points.size() == points.capacity()) {
    points.reserve(
        std::min(std::max<std::size_t>(limit, 1), std::max<std::size_t>(4, 2 * points.capacity())));
  }
  points.push_back(std::move(point));
}

}  // namespace

std::optional<Figure> parse_figure(std::string_view name) {
  constexpr std::pair<std::string_view, Figure> kNames[] = {{"load1", Figure::load1},
                                                            {"memory", Figure::memory},
                                                            {"disk", Figure::disk},
                                                            {"cpu", Figure::cpu}};
  for (const auto& [text, figure] : kNames) {
    if (text == name) {
      return figure;
    }
  }
  return std::nullopt;
}

PoolBaseline::PoolBaseline(const pool::PoolStats& stats)
    : acquisitions(stats.acquisitions),
      served_by_existing(stats.served_by_existing),
      commands(stats.commands),
      handshakes_started(stats.handshakes_started),
      handshakes_failed(stats.handshakes_failed),
      sessions_opened(stats.sessions_opened),
      evictions(eviction_total(stats)),
      sessions_cleaned(stats.sessions_cleaned),
      exhausted(stats.exhausted),
      timeouts(stats.timeouts),
      wait_time(window_of(stats.wait_time)),
      handshake_time(window_of(stats.handshake_time)) {}

PoolPoint pool_point(std::int64_t at, const std::optional<PoolBaseline>& previous,
                     const pool::PoolStats& current) {
  const PoolBaseline zero;
  const auto& before = previous ? *previous : zero;
  PoolPoint point;
  point.at = at;
  point.sessions_ready = gauge(current.sessions_ready);
  point.sessions_connecting = gauge(current.sessions_connecting);
  point.sessions_draining = gauge(current.sessions_draining);
  point.channels_in_use = gauge(current.channels_in_use);
  point.waiters = gauge(current.waiters);
  point.circuits_open = gauge(current.circuits_open);
  point.backing_off = gauge(current.backing_off);
  point.acquisitions = delta(before.acquisitions, current.acquisitions);
  point.served_by_existing = delta(before.served_by_existing, current.served_by_existing);
  point.commands = delta(before.commands, current.commands);
  point.handshakes = delta(before.handshakes_started, current.handshakes_started);
  point.handshakes_failed = delta(before.handshakes_failed, current.handshakes_failed);
  point.sessions_opened = delta(before.sessions_opened, current.sessions_opened);
  point.evictions = delta(before.evictions, eviction_total(current));
  point.sessions_cleaned = delta(before.sessions_cleaned, current.sessions_cleaned);
  point.exhausted = delta(before.exhausted, current.exhausted);
  point.timeouts = delta(before.timeouts, current.timeouts);
  const auto* wait_before = previous ? &previous->wait_time : nullptr;
  const auto* handshake_before = previous ? &previous->handshake_time : nullptr;
  point.wait_ms_p50 = window_quantile_ms(wait_before, current.wait_time, 0.5);
  point.wait_ms_p99 = window_quantile_ms(wait_before, current.wait_time, 0.99);
  point.handshake_ms_p50 = window_quantile_ms(handshake_before, current.handshake_time, 0.5);
  point.handshake_ms_p99 = window_quantile_ms(handshake_before, current.handshake_time, 0.99);
  return point;
}

PoolPoint pool_point(std::int64_t at, const pool::PoolStats* previous,
                     const pool::PoolStats& current) {
  std::optional<PoolBaseline> counters;
  if (previous != nullptr) {
    counters.emplace(*previous);
  }
  return pool_point(at, counters, current);
}

void PackedPoints::push(const PoolPoint& point, std::size_t limit) {
  // A point takes at most ~110 bytes; grow by a quarter, not twice: one of these per server.
  constexpr std::size_t kLargestPoint = 10 + 4 + 17 * 5 + 4 * sizeof(float);
  if (bytes_.capacity() - bytes_.size() < kLargestPoint) {
    bytes_.reserve(bytes_.size() + kLargestPoint + bytes_.size() / 4);
  }
  const std::int64_t delta = count_ == 0 ? 0 : point.at - last_at_;
  if (count_ == 0) {
    first_at_ = point.at;
  }
  put_varint(bytes_, zigzag(delta));
  // Which counts are not zero and which quantiles are numbers, then only those: a quiet
  // server's point (one ready session, nothing else) is ~5 bytes.
  std::uint64_t present = 0;
  std::size_t bit = 0;
  for (const auto field : kCounts) {
    present |= point.*field != 0 ? 1ULL << bit : 0;
    ++bit;
  }
  for (const auto field : kQuantiles) {
    present |= std::isnan(point.*field) ? 0 : 1ULL << bit;
    ++bit;
  }
  put_varint(bytes_, present);
  for (const auto field : kCounts) {
    if (point.*field != 0) {
      put_varint(bytes_, point.*field);
    }
  }
  for (const auto field : kQuantiles) {
    if (!std::isnan(point.*field)) {
      const auto at = bytes_.size();
      bytes_.resize(at + sizeof(float));
      std::memcpy(bytes_.data() + at, &(point.*field), sizeof(float));
    }
  }
  last_at_ = point.at;
  ++count_;
  while (count_ > limit) {
    drop_first();
  }
}

void PackedPoints::drop_first() {
  const std::uint8_t* at = bytes_.data();
  static_cast<void>(read_point(at, first_at_, true));
  if (count_ > 1) {
    const std::uint8_t* next = at;
    first_at_ += unzigzag(get_varint(next));
  }
  bytes_.erase(bytes_.begin(), bytes_.begin() + (at - bytes_.data()));
  --count_;
}

std::vector<PoolPoint> PackedPoints::unpack() const {
  std::vector<PoolPoint> points;
  points.reserve(count_);
  const std::uint8_t* at = bytes_.data();
  std::int64_t at_ms = first_at_;
  for (std::uint32_t i = 0; i < count_; ++i) {
    points.push_back(read_point(at, at_ms, i == 0));
    at_ms = points.back().at;
  }
  return points;
}

void Trends::record_figures(const FleetState& fleet) {
  // Both maps are sorted by name: one merge pass forgets servers that left the fleet and finds
  // (or adds) each server's trend, with no lookup per server (this runs on the loop every few
  // seconds: at 10,000 servers two lookups each were milliseconds the API waited for).
  auto trend_at = servers_.begin();
  for (const auto& [name, state] : fleet.servers()) {
    while (trend_at != servers_.end() && trend_at->first < name) {
      trend_at = servers_.erase(trend_at);
    }
    const bool known = trend_at != servers_.end() && trend_at->first == name;
    if (!state.collection || state.collection->error) {
      trend_at = known ? std::next(trend_at) : trend_at;
      continue;
    }
    if (!known) {
      trend_at = servers_.emplace_hint(trend_at, name, ServerTrend{});
    }
    auto& trend = trend_at->second;
    ++trend_at;
    const auto& collection = *state.collection;
    if (collection.collected_at == trend.last_collected_at) {
      continue;
    }
    trend.last_collected_at = collection.collected_at;
    const std::optional<double> figures[kFigures] = {
        collection.load1, collection.memory_used_percent, collection.disk_used_percent,
        collection.cpu_busy_percent};
    const auto index = collection.collected_at / options_.bucket_ms;
    if (trend.buckets.empty() || trend.buckets.back().index < index) {
      Bucket bucket;
      bucket.index = index;
      std::fill(std::begin(bucket.values), std::end(bucket.values), kNone);
      push_bounded(trend.buckets, bucket, options_.buckets);
    } else if (trend.buckets.back().index > index) {
      continue;  // older than what we have (a clock step back): not worth reordering for
    }
    auto& bucket = trend.buckets.back();
    for (std::size_t i = 0; i < kFigures; ++i) {
      if (figures[i] && !std::isnan(*figures[i])) {
        const auto value = static_cast<float>(*figures[i]);
        bucket.values[i] = std::isnan(bucket.values[i]) ? value : std::max(bucket.values[i], value);
      }
    }
  }
  servers_.erase(trend_at, servers_.end());
}

void Trends::record_pool_total(std::int64_t now_ms, const pool::PoolStats& total) {
  push_bounded(total_, pool_point(now_ms, total_previous_ ? &*total_previous_ : nullptr, total),
               options_.total_points);
  total_previous_ = total;
}

void Trends::record_pool_server(std::int64_t now_ms, const std::string& name,
                                const pool::PoolStats& stats) {
  auto& trend = servers_[name];
  trend.pool.push(pool_point(now_ms, trend.pool_previous, stats), options_.server_points);
  trend.pool_previous.emplace(stats);
}

Json Trends::sparklines_json(Figure figure, std::int64_t now_ms) const {
  const auto last = now_ms / options_.bucket_ms;
  const auto first = last - static_cast<std::int64_t>(options_.buckets) + 1;
  Json servers = Json::array();
  for (const auto& [name, trend] : servers_) {
    Json values = Json::array();
    bool any = false;
    auto bucket = trend.buckets.begin();
    for (auto index = first; index <= last; ++index) {
      while (bucket != trend.buckets.end() && bucket->index < index) {
        ++bucket;
      }
      if (bucket != trend.buckets.end() && bucket->index == index) {
        const auto value = bucket->values[static_cast<std::size_t>(figure)];
        any = any || !std::isnan(value);
        values.push_back(rounded(value));
      } else {
        values.push_back(nullptr);
      }
    }
    if (any) {
      servers.push_back(Json{{"server", name}, {"values", std::move(values)}});
    }
  }
  constexpr const char* kNames[] = {"load1", "memory", "disk", "cpu"};
  return Json{{"figure", kNames[static_cast<std::size_t>(figure)]},
              {"bucket_seconds", options_.bucket_ms / 1000},
              {"buckets", options_.buckets},
              {"from", first * options_.bucket_ms},
              {"servers", std::move(servers)}};
}

std::optional<Json> Trends::pool_json(const std::string* server) const {
  if (server == nullptr) {
    return Json{{"server", nullptr},
                {"interval_seconds", static_cast<double>(options_.interval.count()) / 1000.0},
                {"points", total_.size()},
                {"series", series_json(total_)}};
  }
  const auto it = servers_.find(*server);
  if (it == servers_.end()) {
    return std::nullopt;
  }
  const auto points = it->second.pool.unpack();
  return Json{{"server", *server},
              {"interval_seconds",
               static_cast<double>(options_.interval.count() * options_.server_every) / 1000.0},
              {"points", points.size()},
              {"series", series_json(points)}};
}

// ---------------------------------------------------------------------------------------------
// TrendSampler

struct TrendSampler::State {
  State(asio::any_io_executor executor, Trends& trends_ref, const FleetState& fleet_ref,
        const pool::Registry& registry_ref)
      : timer(std::move(executor)),
        trends(trends_ref),
        fleet(fleet_ref),
        registry(registry_ref),
        interval(trends_ref.options().interval),
        server_every(std::max(1U, trends_ref.options().server_every)) {}

  asio::steady_timer timer;
  Trends& trends;
  const FleetState& fleet;
  const pool::Registry& registry;
  std::chrono::milliseconds interval;
  unsigned server_every;
  unsigned ticks = 0;

  void sample(const pool::PoolStats& pool_total) {
    const auto now = store::now_unix_ms();
    trends.record_figures(fleet);
    trends.record_pool_total(now, pool_total);
    // Each server's pool every server_every ticks, a share of the fleet per tick (by a hash of
    // its name) rather than all of it in one: at 10,000 servers one tick of every server held
    // the loop ~10 ms (healer-trends-bench), and API requests waited behind it. All of them on
    // the first tick, so that a fresh daemon's pages have a point soon.
    const unsigned tick = ticks++;
    const unsigned slot = tick % server_every;
    for (const auto& [name, state] : fleet.servers()) {
      if (tick == 0 || std::hash<std::string_view>{}(name) % server_every == slot) {
        trends.record_pool_server(now, name, registry.stats(name));
      }
    }
  }

  // The handler holds the state weakly: once the sampler is gone, a pending wait does nothing.
  // The first sample comes a second after start, so a fresh daemon's page has one soon.
  static void schedule(const std::shared_ptr<State>& self) {
    self->timer.expires_after(self->ticks == 0 ? std::min<std::chrono::milliseconds>(
                                                     self->interval, std::chrono::seconds(1))
                                               : self->interval);
    self->timer.async_wait([weak = std::weak_ptr<State>(self)](std::error_code ec) {
      auto state = weak.lock();
      if (ec || !state) {
        return;
      }
      // The pool's total a slice of servers at a time, so that API requests do not wait
      // behind a sum over the whole fleet (~20 ms at 10,000 servers).
      asio::co_spawn(state->timer.get_executor(), state->registry.async_total_stats(),
                     [weak](const std::exception_ptr& error, pool::PoolStats total) {
                       auto sampler = weak.lock();
                       if (error || !sampler) {
                         return;
                       }
                       sampler->sample(total);
                       schedule(sampler);
                     });
    });
  }
};

TrendSampler::TrendSampler(asio::any_io_executor executor, Trends& trends, const FleetState& fleet,
                           const pool::Registry& registry)
    : state_(std::make_shared<State>(std::move(executor), trends, fleet, registry)) {
  State::schedule(state_);
}

TrendSampler::~TrendSampler() { state_->timer.cancel(); }

void TrendSampler::sample() { state_->sample(state_->registry.total_stats()); }

}  // namespace healer::daemon
