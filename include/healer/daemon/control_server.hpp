#pragma once

#include <asio/awaitable.hpp>
#include <asio/local/stream_protocol.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/service/runtime.hpp"

namespace healer::daemon {

/// Counters for /metrics.
struct ControlStats {
  std::uint64_t connections = 0;
  std::uint64_t requests = 0;
  std::uint64_t refused = 0;  ///< another user, a malformed or oversized request
};

/// The daemon's end of the control socket (service/control.hpp): runs the CLI's diagnose,
/// collect, exec and test requests on the daemon's warm pool and answers with the same outcome
/// a local run gives. Used on the runtime's loop.
class ControlServer {
 public:
  /// `on_inventory_changed` runs when a client says it changed the inventory.
  ControlServer(service::Runtime& runtime, std::filesystem::path path,
                std::function<void()> on_inventory_changed);
  ~ControlServer();

  /// Binds the socket (mode 0600). A socket file of a daemon that still answers is an error
  /// (one daemon per database); a stale one is replaced.
  [[nodiscard]] Result<void> start();
  /// Stops accepting; waits for requests in flight until `deadline`; removes the socket file.
  asio::awaitable<void> async_stop(Deadline deadline);
  [[nodiscard]] const ControlStats& stats() const noexcept { return stats_; }

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(asio::local::stream_protocol::socket socket);

  service::Runtime& runtime_;
  std::filesystem::path path_;
  std::function<void()> on_inventory_changed_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> acceptor_;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;
  ControlStats stats_;
};

}  // namespace healer::daemon
