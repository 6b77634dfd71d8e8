#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace healer::test {

/// A listener that accepts TCP connections and never sends a byte: the peer of a connect-timeout
/// or banner-timeout test. Accepted sockets stay open until stop(). Runs its own io_context on its
/// own thread; the accessors are thread-safe.
class BlackholeProxy {
 public:
  explicit BlackholeProxy(std::string listen_host = "127.0.0.1", std::uint16_t listen_port = 0);
  ~BlackholeProxy();  ///< stop()
  BlackholeProxy(const BlackholeProxy&) = delete;
  BlackholeProxy& operator=(const BlackholeProxy&) = delete;
  BlackholeProxy(BlackholeProxy&&) = delete;
  BlackholeProxy& operator=(BlackholeProxy&&) = delete;

  /// Binds, listens and starts the thread; throws std::system_error or std::logic_error.
  void start();
  /// Closes the listener and every held connection, joins the thread. Idempotent.
  void stop();

  /// The port clients connect to; valid after start().
  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] const std::string& host() const noexcept;
  /// Connections accepted since start().
  [[nodiscard]] std::size_t accepted_count() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace healer::test
