#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace healer::test {

/// A TCP relay on loopback that adds latency: each chunk read from one side is written to the
/// other side `one_way_delay` after it arrived, in order, in both directions, so a connection
/// through it sees 2 * one_way_delay of extra round-trip time (netem is not available here). It is
/// a pipe with latency, not a rate limiter: delays do not add up across chunks. EOF is forwarded
/// as a half-close and a reset as a reset, each after the same delay. Runs its own io_context on
/// its own thread; the accessors are thread-safe.
class DelayProxy {
 public:
  struct Options {
    std::string target_host = "127.0.0.1";  ///< an IP address literal; no name lookup
    std::uint16_t target_port = 0;
    std::chrono::microseconds one_way_delay{0};  ///< added in each direction
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 0;  ///< 0: any free port
    /// Bytes a direction of one connection may hold before it stops reading (TCP back-pressure
    /// then slows the sender): bounds memory and caps throughput at this much per delay.
    std::size_t max_in_flight_bytes = std::size_t{4} << 20;
  };

  /// Options relaying to 127.0.0.1:`target_port` with `rtt` of added round-trip time.
  static Options for_rtt(std::uint16_t target_port, std::chrono::milliseconds rtt);

  explicit DelayProxy(Options options);
  ~DelayProxy();  ///< stop()
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;
  DelayProxy(DelayProxy&&) = delete;
  DelayProxy& operator=(DelayProxy&&) = delete;

  /// Binds, listens and starts the relay thread. Throws std::system_error (address in use, bad
  /// address) or std::logic_error when already started.
  void start();
  /// Closes the listener and every relayed connection (with a reset), joins the thread.
  /// Idempotent; the proxy cannot be started again.
  void stop();

  /// The port clients connect to; valid after start().
  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] const std::string& host() const noexcept;
  /// Connections accepted since start().
  [[nodiscard]] std::size_t accepted_count() const noexcept;
  /// Connections currently being relayed.
  [[nodiscard]] std::size_t active_count() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace healer::test
