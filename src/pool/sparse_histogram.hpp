#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "healer/pool/pool.hpp"

namespace healer::pool::detail {

/// A duration as Histogram counts it: microseconds, negative ones as zero.
inline std::uint64_t microseconds_of(std::chrono::microseconds value) {
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, value.count()));
}

/// Histogram's bucket of `us` microseconds: i for < 2^i us, the last for anything longer.
inline std::size_t bucket_of(std::uint64_t us) {
  return std::min<std::size_t>(Histogram::kBuckets - 1, std::bit_width(us));
}

/// A server's latency histogram as its pool keeps it: only the buckets with counts (a server's
/// latencies fall in a few of the 32), ~60 bytes instead of a Histogram's 272.
class SparseHistogram {
 public:
  void record(std::chrono::microseconds value) {
    const auto us = microseconds_of(value);
    const auto bucket = static_cast<std::uint64_t>(bucket_of(us)) << kCountBits;
    const auto at = std::lower_bound(buckets_.begin(), buckets_.end(), bucket);
    if (at != buckets_.end() && (*at & ~kCountMask) == bucket) {
      ++*at;
    } else {
      buckets_.insert(at, bucket | 1U);
    }
    ++total_;
    sum_us_ += us;
  }
  /// The same histogram in full (into a zeroed one).
  void copy_to(Histogram& out) const {
    for (const auto entry : buckets_) {
      out.counts[entry >> kCountBits] = entry & kCountMask;
    }
    out.total = total_;
    out.sum_us = sum_us_;
  }
  /// Buckets with counts (what it holds memory for).
  [[nodiscard]] std::size_t buckets_used() const noexcept { return buckets_.size(); }

 private:
  static constexpr int kCountBits = 56;
  static constexpr std::uint64_t kCountMask = (std::uint64_t{1} << kCountBits) - 1;
  // (bucket << 56) | count, by bucket; counts stay far below 2^56
  std::vector<std::uint64_t> buckets_;
  std::uint64_t total_ = 0;
  std::uint64_t sum_us_ = 0;
};

}  // namespace healer::pool::detail
