#pragma once

#include <asio/awaitable.hpp>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/daemon/fleet.hpp"
#include "healer/service/settings.hpp"

// Prometheus remote write 1.0 from `healer serve`: every collected node series (the ones /metrics
// shows, same names and `server` label) is queued and POSTed to a receiver (Prometheus,
// VictoriaMetrics, Mimir...) as a snappy-compressed protobuf WriteRequest, off the loop.
namespace healer::daemon {

/// Counters for /metrics (samples, not batches).
struct RemoteWriteStats {
  std::uint64_t sent = 0;     ///< accepted by the receiver (2xx)
  std::uint64_t dropped = 0;  ///< pushed out of a full queue, or left at shutdown
  std::uint64_t failed = 0;   ///< in batches the receiver refused for good (4xx other than 429)
  std::uint64_t retries = 0;  ///< POSTs retried after a connection error, 5xx or 429
  std::size_t queued = 0;     ///< waiting, including a batch being retried
  std::optional<std::int64_t> last_success_ms;  ///< Unix ms of the last accepted batch
};

/// Samples waiting to be sent, oldest first, at most `bound` of them: a push beyond the bound
/// drops the oldest. A sample points into its collection's series (shared, not copied). Not
/// thread-safe: RemoteWriter guards it.
class SampleQueue {
 public:
  struct Sample {
    std::shared_ptr<const std::vector<NodeSeries>> collection;
    std::size_t index = 0;
    std::int64_t timestamp_ms = 0;

    [[nodiscard]] const NodeSeries& series() const { return (*collection)[index]; }
  };

  explicit SampleQueue(std::size_t bound) : bound_(bound) {}

  /// Appends every series of one collection, stamped `timestamp_ms`; returns how many of the
  /// oldest samples were dropped to stay within the bound.
  std::size_t push(std::int64_t timestamp_ms,
                   const std::shared_ptr<const std::vector<NodeSeries>>& collection);
  /// Removes and returns up to `max` of the oldest samples.
  [[nodiscard]] std::vector<Sample> take(std::size_t max);
  [[nodiscard]] std::size_t size() const noexcept { return samples_.size(); }

 private:
  std::deque<Sample> samples_;  // oldest first
  std::size_t bound_;
};

/// A batch as a remote write 1.0 body: a prompb WriteRequest (one TimeSeries per label set, its
/// labels sorted by name with `__name__`, its samples oldest first), snappy block compressed.
[[nodiscard]] std::string encode_write_request(const std::vector<SampleQueue::Sample>& batch);

/// The bearer token in `path`: its one line, trailing whitespace removed. Errors: unreadable,
/// empty, or more than one line. The token never appears in an error.
[[nodiscard]] Result<std::string> read_bearer_token(const std::filesystem::path& path);

/// Queues collections and sends them from a thread of its own (the loop never waits on the
/// receiver): a batch every flush interval or as soon as max_batch_samples are queued; retries
/// with exponential backoff and jitter on connection errors, 5xx and 429; drops a batch the
/// receiver refuses with another 4xx (counted, logged once per status). push() and stats() are
/// for the loop; everything else runs on the sender thread.
class RemoteWriter {
 public:
  /// Nothing runs until start(); a writer with remote write off (no url) ignores everything.
  explicit RemoteWriter(service::RemoteWriteSettings settings);
  RemoteWriter(const RemoteWriter&) = delete;
  RemoteWriter& operator=(const RemoteWriter&) = delete;
  /// Stops the sender without a final flush (prefer async_stop).
  ~RemoteWriter();

  /// Reads the bearer token file (if any) and starts the sender thread. Errors: the token file
  /// cannot be read or is empty.
  [[nodiscard]] Result<void> start();
  /// Queues one collection's series stamped with its collection time (Unix ms). Never blocks
  /// beyond a short lock.
  void push(std::int64_t collected_at, std::shared_ptr<const std::vector<NodeSeries>> series);
  /// SIGTERM: no more pushes; the sender makes one final flush of what is queued (one try per
  /// batch, no retries) until `deadline`, then stops; what is left is counted as dropped.
  void request_stop(Deadline deadline);
  /// request_stop(), then waits for the sender on the caller's executor (never blocking it)
  /// until the deadline.
  asio::awaitable<void> async_stop(Deadline deadline);
  [[nodiscard]] RemoteWriteStats stats() const;
  [[nodiscard]] bool enabled() const noexcept;

 private:
  struct Shared;
  // The sender thread; it holds its own reference, so a sender still in its last POST at the
  // shutdown deadline can be left to finish alone.
  static void run(std::shared_ptr<Shared> shared);
  std::shared_ptr<Shared> shared_;
};

}  // namespace healer::daemon
