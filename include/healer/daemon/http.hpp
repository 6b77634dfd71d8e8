#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"

// A small HTTP/1.1 server on the daemon's event loop (Asio coroutines, one per connection), with
// the limits a server reachable by untrusted clients needs. Requests are parsed by the Debian
// packaged nodejs http-parser; TLS by Asio over OpenSSL. No libhttp / OpenSSL type appears here.
namespace healer::daemon {

/// One request, parsed and within the limits.
struct HttpRequest {
  std::string method;  ///< "GET", "POST", "DELETE", ...
  std::string path;    ///< percent-decoded path, without the query ("/api/v1/servers/web%201" ->
                       ///< "/api/v1/servers/web 1"); never contains NUL
  std::string raw_target;  ///< the request target as received
  std::map<std::string, std::string, std::less<>> query;    ///< decoded; the last value wins
  std::map<std::string, std::string, std::less<>> headers;  ///< names lower-cased
  std::string body;
  std::string peer;  ///< remote address, e.g. "127.0.0.1"
  bool peer_is_loopback = false;
  bool tls = false;

  /// The header's value, or "" when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
  /// The query parameter's value, or nullopt.
  [[nodiscard]] std::optional<std::string> param(std::string_view name) const;
};

/// A response. Content-Length is set by the server; no chunking.
struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers
};

/// Limits and timeouts; defaults suit a local API. Not an aggregate on purpose.
struct HttpOptions {
  HttpOptions() = default;

  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0: any free port (tests)
  std::size_t max_connections = 1024;  ///< beyond: accepted and closed at once
  std::size_t max_header_bytes = 16 * 1024;  ///< request line + headers -> 431
  std::size_t max_body_bytes = 1024 * 1024;  ///< -> 413
  /// A client must send a whole request (headers and body) within this, from its first byte or
  /// from the previous response (slowloris) -> 408 and close.
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{30000};  ///< keep-alive connections with no request
  std::chrono::milliseconds write_timeout{30000};
  std::size_t max_requests_per_connection = 1000;
  /// Per client address: sustained requests per second and burst (token bucket) -> 429.
  double rate_per_second = 50;
  double rate_burst = 200;
  /// Both set: serve HTTPS with these PEM files.
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
};

/// Produces a response for a request; runs on the server's executor, must not block (offload
/// blocking work). An exception becomes a 500 with a JSON error, logged.
using HttpHandler = std::function<asio::awaitable<HttpResponse>(HttpRequest)>;

/// Counters for /metrics.
struct HttpStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_rejected = 0;  ///< over max_connections
  std::size_t connections_open = 0;
  std::uint64_t requests = 0;
  std::uint64_t bad_requests = 0;  ///< unparsable, too large, timed out
  std::uint64_t rate_limited = 0;
  std::map<int, std::uint64_t> responses_by_status;
};

/// The server. Used on one executor (the daemon's loop).
class HttpServer {
 public:
  HttpServer(asio::any_io_executor executor, HttpOptions options, HttpHandler handler);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  /// Binds and starts accepting. Errors: the address is in use, not local, TLS files unreadable.
  [[nodiscard]] Result<void> start();
  /// The bound port (after start()).
  [[nodiscard]] std::uint16_t port() const noexcept;
  /// Stops accepting, finishes responses being written until `deadline`, closes every
  /// connection.
  asio::awaitable<void> async_stop(Deadline deadline);
  [[nodiscard]] HttpStats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// "Mon, 05 Dec 2026 14:01:00 GMT" style helpers and JSON error bodies are the API's business;
/// this is only the percent-decoding the server uses, exposed for tests: nullopt for malformed
/// escapes or a decoded NUL.
[[nodiscard]] std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

}  // namespace healer::daemon
