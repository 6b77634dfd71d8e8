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
#include <string_view>
#include <utility>
#include <vector>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"

// A small HTTP/1.1 server on the daemon's event loop (Asio coroutines, one per connection), with
// the limits a server reachable by untrusted clients needs. Requests are parsed by the Debian
// packaged nodejs http-parser; TLS by Asio over OpenSSL. No libhttp / OpenSSL type appears here.
namespace healer::daemon {

/// One request, parsed and within the limits.
struct HttpRequest {
  /// "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS". A HEAD request reaches the handler as
  /// "GET" with `head` set; the server sends the GET response's headers without its body.
  std::string method;
  bool head = false;  ///< the client sent HEAD
  std::string path;   ///< percent-decoded path, without the query ("/api/v1/servers/web%201" ->
                      ///< "/api/v1/servers/web 1"); never contains NUL
  std::string raw_target;                                 ///< the request target as received
  std::map<std::string, std::string, std::less<>> query;  ///< decoded; the last value wins
  /// Names lower-cased; repeated fields joined with ", " (RFC 9110 5.3).
  std::map<std::string, std::string, std::less<>> headers;
  std::string body;
  std::string peer;  ///< remote address, e.g. "127.0.0.1"
  bool peer_is_loopback = false;
  bool tls = false;

  /// The header's value, or "" when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
  /// The query parameter's value, or nullopt.
  [[nodiscard]] std::optional<std::string> param(std::string_view name) const;
};

/// A response. Content-Length, Date, Connection, `X-Content-Type-Options: nosniff` and, for
/// JSON, `Cache-Control: no-store` are set by the server; no chunking. A status outside
/// 100..599 or a header name or value that could split the response (CR, LF, NUL, a non-token
/// name) turns the response into a 500.
struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// Extra headers; Content-Length, Transfer-Encoding, Connection and Date are the server's
  /// and ignored here.
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Limits and timeouts; defaults suit a local API. Not an aggregate on purpose.
struct HttpOptions {
  HttpOptions() = default;

  std::string address = "127.0.0.1";
  std::uint16_t port = 0;                    ///< 0: any free port (tests)
  std::size_t max_connections = 1024;        ///< beyond: accepted and closed at once
  std::size_t max_header_bytes = 16 * 1024;  ///< request line + headers -> 431
  std::size_t max_url_bytes = 8 * 1024;      ///< the request target -> 414 (at most 65535)
  /// Content-Length or chunked body (both accepted) -> 413.
  std::size_t max_body_bytes = 1024 * 1024;
  /// Request bodies being received by all connections together (bounds memory at far less than
  /// max_connections x max_body_bytes); the request that crosses it -> 503 and close.
  std::size_t max_buffered_body_bytes = 64 * 1024 * 1024;
  /// A client must send a whole request (headers and body) within this (slowloris) -> 408 and
  /// close. The clock starts at accept (or at the end of the TLS handshake) for a connection's
  /// first request, at the request's first byte on a kept-alive connection, and at the previous
  /// response for a pipelined request already received.
  std::chrono::milliseconds request_timeout{10000};
  /// A kept-alive connection with no request for this long is closed (no response).
  std::chrono::milliseconds idle_timeout{30000};
  /// Writing one response (or the 100 Continue) must finish within this, else the connection is
  /// closed.
  std::chrono::milliseconds write_timeout{30000};
  std::chrono::milliseconds tls_handshake_timeout{10000};  ///< from accept
  std::size_t max_requests_per_connection = 1000;  ///< the last response says Connection: close
  /// Per client address (IPv4 address, IPv6 /64): sustained requests per second and burst (token
  /// bucket) -> 429 with Retry-After. rate_per_second <= 0 turns the limit off.
  double rate_per_second = 50;
  double rate_burst = 200;
  /// Both set: serve HTTPS (TLS 1.2+) with these PEM files (certificate chain, private key).
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
};

/// Produces a response for a request; runs on the server's executor, must not block (offload
/// blocking work). An exception becomes a 500 with a JSON error, logged. The handler runs with
/// a cancellation slot (Asio per-operation cancellation, `this_coro::cancellation_state`): the
/// server emits terminal cancellation when the client closes its connection meanwhile (seen on
/// plain TCP; best effort under TLS) and at async_stop()'s deadline, so work it awaits (pool
/// acquisitions, timers, sockets) can stop early.
using HttpHandler = std::function<asio::awaitable<HttpResponse>(HttpRequest)>;

/// Counters for /metrics.
struct HttpStats {
  std::uint64_t connections_accepted = 0;  ///< admitted (not counting the rejected)
  std::uint64_t connections_rejected = 0;  ///< over max_connections: closed at once
  std::size_t connections_open = 0;
  std::size_t body_bytes_buffered = 0;  ///< request bodies being received right now
  std::uint64_t requests = 0;           ///< request heads parsed (answered by the handler or not)
  std::uint64_t bad_requests = 0;  ///< unparsable, too large, bad target, timed out: 4xx/5xx by us
  std::uint64_t rate_limited = 0;  ///< 429s
  std::uint64_t timeouts = 0;      ///< request (408), idle, write and TLS handshake deadlines
  std::uint64_t handler_errors = 0;          ///< handler threw or returned an invalid response
  std::uint64_t tls_handshake_failures = 0;  ///< including plain HTTP sent to the TLS port
  std::map<int, std::uint64_t> responses_by_status;
};

/// The server. Used on one executor (the daemon's loop).
class HttpServer {
 public:
  HttpServer(asio::any_io_executor executor, HttpOptions options, HttpHandler handler);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  /// Binds and starts accepting. Errors: the address is in use, not local, TLS files unreadable
  /// or not a matching certificate and key. Call once.
  [[nodiscard]] Result<void> start();
  /// The bound port (after start()).
  [[nodiscard]] std::uint16_t port() const noexcept;
  /// Stops accepting and closes idle and half-received connections at once; requests being
  /// handled or written may finish (their responses say Connection: close) until `deadline`,
  /// when their handlers are cancelled and every socket is closed. Returns once every connection
  /// coroutine has ended (a handler that ignores cancellation gets one more second, then a
  /// warning is logged). The destructor does the same without waiting.
  asio::awaitable<void> async_stop(Deadline deadline);
  [[nodiscard]] HttpStats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// "Mon, 05 Dec 2026 14:01:00 GMT" style helpers and JSON error bodies are the API's business
/// (the server's own errors are `{"error": {"code": "...", "message": "..."}}`); this is only
/// the percent-decoding the server uses, exposed for tests: nullopt for malformed escapes or a
/// decoded NUL.
[[nodiscard]] std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space);

}  // namespace healer::daemon
