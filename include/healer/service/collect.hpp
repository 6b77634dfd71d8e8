#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "healer/core/error.hpp"
#include "healer/core/result.hpp"
#include "healer/metrics/metric.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/runtime.hpp"
#include "healer/service/targets.hpp"

// "Collect metrics from these servers": one probe per server through the runtime's pool, rates
// from the previous collection (this process's, else the store's), samples stored as each server
// finishes. The CLI, the control socket, the API and the scheduler call this.
namespace healer::service {

/// What to collect and how. Not an aggregate on purpose.
struct CollectRequest {
  CollectRequest() = default;

  Selection selection;
  bool store_samples = true;
  std::chrono::milliseconds timeout{15000};  ///< per server
  std::size_t parallel = 64;                 ///< servers at once
  pool::Priority priority = pool::Priority::normal;
};

/// One server's collection, flattened to what people and machines read.
struct CollectedServer {
  std::string server;          ///< name
  std::int64_t server_id = 0;  ///< inventory id
  std::optional<Error> error;  ///< set when there is no sample at all
  double elapsed_ms = 0;
  std::int64_t collected_at = 0;         ///< Unix ms
  std::vector<metrics::Metric> metrics;  ///< node_exporter-named series
  std::vector<metrics::Metric> rates;    ///< healer_* rates since the previous collection
  std::vector<std::pair<std::string, std::string>> failed_sections;  ///< section, reason
  std::string headline;  ///< "cpu 3.1% busy ..., load ..., mem ..., / ..% used"

  [[nodiscard]] bool ok() const noexcept { return !error.has_value(); }
  [[nodiscard]] bool partial() const noexcept { return ok() && !failed_sections.empty(); }
};

/// What a collection request produced. Not an aggregate on purpose.
struct CollectOutcome {
  CollectOutcome() = default;

  std::vector<CollectedServer> servers;  ///< in request order
  std::size_t values_stored = 0;
  std::size_t store_failures = 0;  ///< servers whose samples could not be written
};

/// Called on the loop as each server finishes (progress bars, the daemon's latest values), with
/// the number of servers in the request.
using CollectCallback = std::function<void(const CollectedServer& server, std::size_t total)>;

/// Selects the servers, runs the probe on each through the pool, computes rates and stores the
/// samples (unless asked not to) as each finishes; waits for the writes before returning. Bad
/// input is an error before anything runs; a server that fails is a CollectedServer with an
/// error. On the runtime's loop.
asio::awaitable<Result<CollectOutcome>> async_collect(Runtime& runtime, CollectRequest request,
                                                      CollectCallback on_server = {});

/// The latest stored collection of one server within the last `window`, rebuilt as counters
/// for rates (blocking; off the loop).
[[nodiscard]] std::optional<PreviousCollection> stored_collection(store::Store& store,
                                                                  std::int64_t server_id,
                                                                  std::chrono::milliseconds window);

/// The few figures a person looks at first, from a collection's metrics and rates.
[[nodiscard]] std::string headline(const std::vector<metrics::Metric>& metrics,
                                   const std::vector<metrics::Metric>& rates);

}  // namespace healer::service
