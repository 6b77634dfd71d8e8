#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/daemon/fleet.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/json.hpp"

// What the dashboard draws over time and the API has no store query for: each server's key
// figures in 30-minute buckets over 24 h (the fleet page's sparklines; reading a day of one
// metric for 500 servers back from SQLite is millions of rows) and the pool's counters every few
// seconds (the pool page). Kept in memory since the daemon started, bounded. Lives on the
// daemon's loop (no locks).
namespace healer::daemon {

/// A key figure of the fleet page.
enum class Figure { load1 = 0, memory = 1, disk = 2, cpu = 3 };
inline constexpr std::size_t kFigures = 4;

/// "load1", "memory", "disk" or "cpu"; nullopt for anything else.
[[nodiscard]] std::optional<Figure> parse_figure(std::string_view name);

/// The pool over one sampling interval: gauges at its end, counters as increments over it,
/// latency quantiles of the commands and handshakes within it (NaN: none).
struct PoolPoint {
  std::int64_t at = 0;  ///< Unix ms
  std::uint32_t sessions_ready = 0;
  std::uint32_t sessions_connecting = 0;
  std::uint32_t sessions_draining = 0;
  std::uint32_t channels_in_use = 0;
  std::uint32_t waiters = 0;
  std::uint32_t circuits_open = 0;
  std::uint32_t backing_off = 0;
  std::uint32_t acquisitions = 0;
  std::uint32_t served_by_existing = 0;
  std::uint32_t commands = 0;
  std::uint32_t handshakes = 0;
  std::uint32_t handshakes_failed = 0;
  std::uint32_t sessions_opened = 0;
  std::uint32_t evictions = 0;
  std::uint32_t sessions_cleaned = 0;
  std::uint32_t exhausted = 0;
  std::uint32_t timeouts = 0;
  float wait_ms_p50 = 0;
  float wait_ms_p99 = 0;
  float handshake_ms_p50 = 0;
  float handshake_ms_p99 = 0;
};

/// What a pool point needs of the sample before it: the counters, and the latency histograms'
/// bucket counts modulo 2^32 (an interval's increments are far below that, so their differences
/// are exact). A server's is kept between samples: ~350 bytes instead of a PoolStats' ~900.
struct PoolBaseline {
  struct Window {
    std::uint64_t total = 0;
    std::uint32_t counts[pool::Histogram::kBuckets] = {};
  };
  PoolBaseline() = default;
  explicit PoolBaseline(const pool::PoolStats& stats);

  std::uint64_t acquisitions = 0;
  std::uint64_t served_by_existing = 0;
  std::uint64_t commands = 0;
  std::uint64_t handshakes_started = 0;
  std::uint64_t handshakes_failed = 0;
  std::uint64_t sessions_opened = 0;
  std::uint64_t evictions = 0;  ///< of every kind
  std::uint64_t sessions_cleaned = 0;
  std::uint64_t exhausted = 0;
  std::uint64_t timeouts = 0;
  Window wait_time;
  Window handshake_time;
};

/// The point for the interval that ends with `current`; `previous` is the sample before it
/// (nullptr for the first one: counters count from zero). A counter that went backwards (the
/// server was removed and added again) counts from zero too.
[[nodiscard]] PoolPoint pool_point(std::int64_t at, const std::optional<PoolBaseline>& previous,
                                   const pool::PoolStats& current);
[[nodiscard]] PoolPoint pool_point(std::int64_t at, const pool::PoolStats* previous,
                                   const pool::PoolStats& current);

/// Pool points packed as variable-length records, oldest first: a quiet server's point (one
/// ready session, nothing else) is ~5 bytes instead of sizeof(PoolPoint) (96), and an hour of
/// them per server is what the dashboard's pool page keeps for every server.
class PackedPoints {
 public:
  /// Appends `point` and drops the oldest ones past `limit`.
  void push(const PoolPoint& point, std::size_t limit);
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  /// The points, oldest first.
  [[nodiscard]] std::vector<PoolPoint> unpack() const;
  /// Bytes held (capacity), for tests of the packing.
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_.capacity(); }

 private:
  void drop_first();

  // Per point: the ms since the point before (zigzag varint; the first point's is not read:
  // first_at_ is its time), a varint of 21 bits saying which of the 17 counts and gauges are not
  // zero and which of the 4 latency quantiles are numbers, then those counts as varints and
  // those quantiles as 4-byte floats.
  std::vector<std::uint8_t> bytes_;
  std::int64_t first_at_ = 0;
  std::int64_t last_at_ = 0;
  std::uint32_t count_ = 0;
};

/// The history. Fed by TrendSampler (or a test); read by the API.
class Trends {
 public:
  struct Options {
    std::int64_t bucket_ms = 30 * 60 * 1000;   ///< one sparkline point per bucket
    std::size_t buckets = 48;                  ///< 24 h
    std::chrono::milliseconds interval{5000};  ///< the sampler's: figures and pool totals
    unsigned server_every = 12;                ///< each server's pool every 12 intervals (60 s)
    std::size_t total_points = 720;            ///< pool totals: 1 h
    std::size_t server_points = 60;            ///< per server: 1 h
  };
  Trends() : Trends(Options{}) {}
  explicit Trends(Options options) : options_(options) {}

  /// Takes each server's latest collection (when new) into its bucket: the highest value of a
  /// bucket is kept. Forgets servers that left the fleet.
  void record_figures(const FleetState& fleet);
  /// Adds a sample of the whole pool.
  void record_pool_total(std::int64_t now_ms, const pool::PoolStats& total);
  /// Adds a sample of one server's pool.
  void record_pool_server(std::int64_t now_ms, const std::string& name,
                          const pool::PoolStats& stats);

  /// {figure, bucket_seconds, buckets, from, servers: [{server, values}]}: every server with a
  /// value in the last `buckets` buckets up to `now_ms`, one value (or null) per bucket.
  [[nodiscard]] service::Json sparklines_json(Figure figure, std::int64_t now_ms) const;
  /// {server, points, series: {at: [...], <field>: [...]}} of the totals (no name) or of one
  /// server; nullopt for a server without samples.
  [[nodiscard]] std::optional<service::Json> pool_json(const std::string* server) const;

  [[nodiscard]] const Options& options() const noexcept { return options_; }

 private:
  struct Bucket {
    std::int64_t index = 0;  ///< collected_at / bucket_ms
    float values[kFigures];  ///< NaN: no value
  };
  // Kept for every server of the fleet, so kept small: vectors grown to their bound at most
  // (an empty std::deque holds ~580 bytes), the previous pool sample's counters only, and the
  // pool points packed.
  struct ServerTrend {
    std::int64_t last_collected_at = -1;
    std::vector<Bucket> buckets;  // oldest first, at most options_.buckets
    std::optional<PoolBaseline> pool_previous;
    PackedPoints pool;  // at most options_.server_points
  };

  Options options_;
  std::map<std::string, ServerTrend, std::less<>> servers_;
  std::optional<pool::PoolStats> total_previous_;
  std::deque<PoolPoint> total_;  // oldest first, at most options_.total_points
};

/// Feeds Trends on a timer on the daemon's loop: figures and pool totals every
/// `options().interval`, each server's pool every `options().server_every` intervals (a share
/// of the fleet at each interval; every server at the first). Stops when destroyed.
class TrendSampler {
 public:
  TrendSampler(asio::any_io_executor executor, Trends& trends, const FleetState& fleet,
               const pool::Registry& registry);
  TrendSampler(const TrendSampler&) = delete;
  TrendSampler& operator=(const TrendSampler&) = delete;
  ~TrendSampler();

  /// One sample now (the timer's work).
  void sample();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace healer::daemon
