#include <fmt/format.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <array>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <list>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "healer/core/log.hpp"
#include "healer/daemon/http.hpp"
#include "http_request_parser.hpp"

namespace healer::daemon {
namespace {

using asio::awaitable;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

// Bytes asked of the socket per read. The buffer exists only while a request is being read.
constexpr std::size_t kReadChunk = 8 * 1024;
// After a response that closes the connection, the rest of what the client sends is read and
// dropped for this long (at most kLingerMaxBytes) before closing: closing a socket with unread
// input sends a RST, which can destroy the response (a 413 to a client still uploading).
constexpr auto kLingerTimeout = 1s;
constexpr std::size_t kLingerMaxBytes = 1024 * 1024;
// A handler that ignores cancellation delays async_stop() this much past its deadline.
constexpr auto kStopGrace = 1s;
// Accepting again after the process ran out of descriptors or memory.
constexpr auto kAcceptRetry = 50ms;
// Rate-limit buckets: full (idle) ones are dropped once a minute; a hard cap bounds memory.
constexpr auto kBucketSweep = 60s;
constexpr std::size_t kMaxBuckets = 64 * 1024;

const std::shared_ptr<spdlog::logger>& logger() {
  static const auto instance = log::get("http");
  return instance;
}

std::string_view reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

// "Sat, 05 Dec 2026 16:31:19 GMT", formatted once per second.
std::string_view http_date() {
  thread_local std::time_t cached_second = -1;
  thread_local std::array<char, 64> cached{};
  thread_local std::size_t length = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm utc{};
    gmtime_r(&now, &utc);
    length = std::strftime(cached.data(), cached.size(), "%a, %d %b %Y %H:%M:%S GMT", &utc);
    cached_second = now;
  }
  return {cached.data(), length};
}

// Request text (a path, an exception message) made safe for a log line: printable ASCII only,
// other bytes as \xNN, cut at `limit` characters.
std::string printable(std::string_view text, std::size_t limit = 200) {
  std::string out;
  for (const char c : text.substr(0, limit)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", byte);
    }
  }
  if (text.size() > limit) {
    out += "...";
  }
  return out;
}

bool is_token_char(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte <= 0x20 || byte >= 0x7f) {
    return false;
  }
  static constexpr std::string_view kSeparators = "()<>@,;:\\\"/[]?={}";
  return kSeparators.find(c) == std::string_view::npos;
}

bool valid_header(std::string_view name, std::string_view value) {
  if (name.empty()) {
    return false;
  }
  for (const char c : name) {
    if (!is_token_char(c)) {
      return false;
    }
  }
  for (const char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return false;
    }
  }
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = a[i];
    auto y = b[i];
    if (x >= 'A' && x <= 'Z') {
      x = static_cast<char>(x - 'A' + 'a');
    }
    if (y >= 'A' && y <= 'Z') {
      y = static_cast<char>(y - 'A' + 'a');
    }
    if (x != y) {
      return false;
    }
  }
  return true;
}

HttpResponse error_response(int status, std::string_view code, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump(
                      -1, ' ', false, nlohmann::json::error_handler_t::replace) +
                  "\n";
  return response;
}

// The response's head: status line, the server's headers, the handler's extra headers.
std::string serialize_head(const HttpResponse& response, std::size_t content_length,
                           bool keep_alive, bool http10) {
  const int status = response.status;
  const bool bodiless = status < 200 || status == 204 || status == 304;
  std::string head =
      fmt::format("HTTP/1.1 {} {}\r\nDate: {}\r\n", status, reason(status), http_date());
  if (!bodiless) {
    if (!response.content_type.empty()) {
      head += fmt::format("Content-Type: {}\r\n", response.content_type);
    }
    head += fmt::format("Content-Length: {}\r\n", content_length);
  }
  head += "X-Content-Type-Options: nosniff\r\n";
  bool cache_control = false;
  for (const auto& [name, value] : response.headers) {
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
        iequals(name, "connection") || iequals(name, "date") ||
        iequals(name, "x-content-type-options") || (iequals(name, "content-type"))) {
      continue;  // the server's own
    }
    cache_control = cache_control || iequals(name, "cache-control");
    head.append(name).append(": ").append(value).append("\r\n");
  }
  if (!cache_control && response.content_type.starts_with("application/json")) {
    head += "Cache-Control: no-store\r\n";
  }
  if (!keep_alive) {
    head += "Connection: close\r\n";
  } else if (http10) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  return head;
}

}  // namespace

// Types the Impl holds need linkage (GCC's -Wsubobject-linkage); they stay in this file.
namespace http_impl {

// Token buckets per client: an IPv4 address, or an IPv6 /64 (one host's usual allocation).
class RateLimiter {
 public:
  RateLimiter(double rate, double burst) : rate_(rate), burst_(std::max(1.0, burst)) {}

  // True when the client may make a request now; else `retry_after` is the seconds until it may.
  bool take(const asio::ip::address& address, Clock::time_point now, std::uint32_t& retry_after) {
    if (rate_ <= 0) {
      return true;
    }
    if (now - last_sweep_ >= kBucketSweep || buckets_.size() >= kMaxBuckets) {
      sweep(now);
    }
    auto [at, inserted] = buckets_.try_emplace(key(address), Bucket{burst_, now});
    auto& bucket = at->second;
    if (!inserted) {
      const double elapsed = std::chrono::duration<double>(now - bucket.updated).count();
      bucket.tokens = std::min(burst_, bucket.tokens + elapsed * rate_);
      bucket.updated = now;
    }
    if (bucket.tokens >= 1.0) {
      bucket.tokens -= 1.0;
      return true;
    }
    retry_after =
        static_cast<std::uint32_t>(std::max(1.0, std::ceil((1.0 - bucket.tokens) / rate_)));
    return false;
  }

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
  };

  static std::string key(const asio::ip::address& address) {
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      const auto v4 = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_bytes();
      return {v4.begin(), v4.end()};
    }
    if (address.is_v4()) {
      const auto bytes = address.to_v4().to_bytes();
      return {bytes.begin(), bytes.end()};
    }
    const auto bytes = address.to_v6().to_bytes();
    return {bytes.begin(), bytes.begin() + 8};
  }

  // Drops buckets that have refilled (their client is as new); past the cap, forgets them all:
  // that can only let clients make more requests, never lock one out.
  void sweep(Clock::time_point now) {
    last_sweep_ = now;
    std::erase_if(buckets_, [&](const auto& entry) {
      const double elapsed = std::chrono::duration<double>(now - entry.second.updated).count();
      return entry.second.tokens + elapsed * rate_ >= burst_;
    });
    if (buckets_.size() >= kMaxBuckets) {
      logger()->warn("rate limiter: {} clients tracked, forgetting them", buckets_.size());
      buckets_.clear();
    }
  }

  double rate_;
  double burst_;
  std::unordered_map<std::string, Bucket> buckets_;  // by client key
  Clock::time_point last_sweep_ = Clock::now();
};

struct Connection;

}  // namespace http_impl

namespace {
std::error_code timed_out_error() { return std::make_error_code(std::errc::timed_out); }

// Asio's system errors in std::system_category, so they compare equal to std::errc values.
std::error_code portable(std::error_code ec) {
  if (ec.category() == asio::error::get_system_category()) {
    return {ec.value(), std::system_category()};
  }
  return ec;
}
}  // namespace

using http_impl::Connection;
using http_impl::RateLimiter;

// ---------------------------------------------------------------------------------------------

struct HttpServer::Impl {
  Impl(asio::any_io_executor ex, HttpOptions opts, HttpHandler h)
      : executor(std::move(ex)),
        options(std::move(opts)),
        handler(std::move(h)),
        acceptor(executor),
        rate_limiter(options.rate_per_second, options.rate_burst),
        drained(executor) {}

  void count_response(int status) { ++stats.responses_by_status[status]; }
  // Wakes async_stop() when the last connection or the accept loop ended.
  void notify_drained() {
    if (stopping && drained_all()) {
      drained.cancel();
    }
  }
  [[nodiscard]] bool drained_all() const { return connections.empty() && !accept_running; }
  void begin_stop();
  void force_close_all();

  asio::any_io_executor executor;
  HttpOptions options;
  HttpHandler handler;
  tcp::acceptor acceptor;
  std::unique_ptr<asio::ssl::context> tls_context;  // set when serving HTTPS
  std::list<Connection*> connections;  // open ones, in accept order; each removes itself
  HttpStats stats;
  RateLimiter rate_limiter;
  asio::steady_timer drained;  // async_stop() waits on it; cancelled when everything ended
  std::size_t body_bytes = 0;  // request bodies being received, all connections
  std::uint64_t next_id = 1;
  bool started = false;
  bool stopping = false;
  bool accept_running = false;
  std::uint16_t bound_port = 0;
};

namespace http_impl {

// One client connection. Owned by its coroutine (shared_ptr); the watchdog and the peer watch
// hold weak references. Every member is used on the server's executor only.
struct Connection : std::enable_shared_from_this<Connection> {
  enum class Phase { handshake, idle, reading, handling, writing, closing };

  Connection(std::shared_ptr<HttpServer::Impl> owner, tcp::socket socket, std::uint64_t number)
      : server_ref(std::move(owner)),
        server(*server_ref),
        id(number),
        plain(std::move(socket)),
        timer(server.executor),
        parser(detail::ParseLimits{server.options.max_header_bytes, server.options.max_url_bytes,
                                   server.options.max_body_bytes}) {
    std::error_code ec;
    const auto endpoint = plain->remote_endpoint(ec);
    if (!ec) {
      address = endpoint.address();
      peer = address.to_string();
      loopback = address.is_loopback() ||
                 (address.is_v6() && address.to_v6().is_v4_mapped() &&
                  asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).is_loopback());
    }
    registration = server.connections.insert(server.connections.end(), this);
  }

  ~Connection() {
    account_body(0);
    server.connections.erase(registration);
    server.notify_drained();
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }

  // The watchdog: at `at`, cancels whatever the connection waits for and marks it timed out.
  void set_deadline(Clock::time_point at) {
    deadline = at;
    timed_out = false;
    if (at == Clock::time_point::max()) {
      timer.cancel();
      return;
    }
    timer.expires_at(at);
    timer.async_wait([weak = weak_from_this()](std::error_code ec) {
      auto self = weak.lock();
      if (!self || ec || self->deadline == Clock::time_point::max() ||
          Clock::now() < self->deadline) {
        return;  // cancelled or re-armed meanwhile
      }
      self->timed_out = true;
      std::error_code ignored;
      self->socket().cancel(ignored);
    });
  }
  [[nodiscard]] bool expired() const { return Clock::now() >= deadline; }

  void close_now() {
    timer.cancel();
    std::error_code ignored;
    socket().close(ignored);
  }

  // Counts this connection's partly received body in the server's total; false when the total
  // is over max_buffered_body_bytes.
  bool account_body(std::size_t bytes) {
    server.body_bytes = server.body_bytes - counted_body + bytes;
    counted_body = bytes;
    return server.body_bytes <= server.options.max_buffered_body_bytes;
  }

  // Plain TCP: waits for input without holding a buffer (an idle connection costs its frame).
  awaitable<std::error_code> wait_readable() {
    if (expired()) {
      co_return timed_out_error();
    }
    auto [ec] = co_await socket().async_wait(tcp::socket::wait_read, kNoThrow);
    if (timed_out) {
      co_return timed_out_error();
    }
    co_return ec;
  }

  // Appends what the client sent (up to kReadChunk bytes) to the buffer.
  awaitable<std::error_code> read_more() {
    if (expired()) {
      co_return timed_out_error();
    }
    if (offset == buffer.size()) {
      buffer.clear();
      offset = 0;
    } else if (offset >= kReadChunk) {
      buffer.erase(0, offset);
      offset = 0;
    }
    const auto old_size = buffer.size();
    buffer.resize(old_size + kReadChunk);
    const auto into = asio::buffer(buffer.data() + old_size, kReadChunk);
    std::error_code ec;
    std::size_t received = 0;
    if (tls) {
      std::tie(ec, received) = co_await tls->async_read_some(into, kNoThrow);
    } else {
      std::tie(ec, received) = co_await plain->async_read_some(into, kNoThrow);
    }
    buffer.resize(old_size + received);
    if (timed_out) {
      co_return timed_out_error();
    }
    co_return ec;
  }

  awaitable<std::error_code> write_all(std::array<asio::const_buffer, 2> buffers) {
    if (expired()) {
      co_return timed_out_error();
    }
    std::error_code ec;
    if (tls) {
      std::tie(ec, std::ignore) = co_await asio::async_write(*tls, buffers, kNoThrow);
    } else {
      std::tie(ec, std::ignore) = co_await asio::async_write(*plain, buffers, kNoThrow);
    }
    if (timed_out) {
      co_return timed_out_error();
    }
    co_return ec;
  }

  // While the handler runs: a client that closes its connection cancels the handler. Sees a FIN
  // or RST on the TCP socket (under TLS a close_notify first hides it: best effort).
  void watch_peer() {
    socket().async_wait(tcp::socket::wait_read, [weak = weak_from_this()](std::error_code ec) {
      auto self = weak.lock();
      if (!self || ec || self->phase != Phase::handling) {
        return;
      }
      char byte = 0;
      const auto n = ::recv(self->socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        self->watch_peer();
      } else if (n <= 0) {
        self->peer_gone = true;
        self->handler_cancel.emit(asio::cancellation_type::terminal);
      }
      // n > 0: the next (pipelined) request; it waits in the socket.
    });
  }

  std::shared_ptr<HttpServer::Impl> server_ref;  // keeps the server alive while this lives
  HttpServer::Impl& server;
  std::uint64_t id;
  std::optional<tcp::socket> plain;                   // before TLS, or plain HTTP
  std::optional<asio::ssl::stream<tcp::socket>> tls;  // after the TLS handshake starts
  asio::steady_timer timer;                           // the watchdog
  Clock::time_point deadline = Clock::time_point::max();
  bool timed_out = false;  // the watchdog cancelled the pending operation
  bool peer_gone = false;  // the client closed (EOF, reset) before we did
  Phase phase = Phase::handshake;
  asio::cancellation_signal handler_cancel;
  std::string buffer;  // received bytes; [offset, size) not parsed yet
  std::size_t offset = 0;
  detail::RequestParser parser;
  asio::ip::address address;
  std::string peer = "?";
  bool loopback = false;
  std::size_t requests = 0;
  std::size_t counted_body = 0;  // this connection's share of server.body_bytes
  std::list<Connection*>::iterator registration;
};

}  // namespace http_impl

namespace {

// Writes `response` (its body unless `head_only`); counts it.
awaitable<std::error_code> send_response(std::shared_ptr<Connection> conn, HttpResponse response,
                                         bool keep_alive, bool head_only, bool http10) {
  auto& server = conn->server;
  server.count_response(response.status);
  const bool bodiless = response.status < 200 || response.status == 204 || response.status == 304;
  const std::string head = serialize_head(response, response.body.size(), keep_alive, http10);
  std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::const_buffer{}};
  if (!head_only && !bodiless) {
    buffers[1] = asio::buffer(response.body);
  }
  conn->phase = Connection::Phase::writing;
  conn->set_deadline(Clock::now() + server.options.write_timeout);
  const auto ec = co_await conn->write_all(buffers);
  if (ec == timed_out_error()) {
    ++server.stats.timeouts;
  }
  co_return ec;
}

// A refusal by the server (not the handler): JSON error, counted.
// (GCC 12 destroys braced aggregate temporaries in a co_await expression twice: callers pass
// named Rejections; see docs/architecture.md.)
awaitable<std::error_code> send_rejection(std::shared_ptr<Connection> conn,
                                          detail::Rejection rejection, bool keep_alive,
                                          std::uint32_t retry_after) {
  auto response = error_response(rejection.status, rejection.code, rejection.message);
  if (retry_after > 0) {
    response.headers.emplace_back("Retry-After", std::to_string(retry_after));
  }
  if (rejection.status != 429) {
    ++conn->server.stats.bad_requests;
  }
  logger()->debug("[http #{} {}] {} {}", conn->id, conn->peer, rejection.status, rejection.code);
  const auto& head = conn->parser.head();  // as far as it was parsed
  const bool head_only = head.method == "HEAD";
  const bool http10 = head.http_major == 1 && head.http_minor == 0;
  co_return co_await send_response(std::move(conn), std::move(response), keep_alive, head_only,
                                   http10);
}

// Reads and discards what the client still sends, then closes (see kLingerTimeout).
awaitable<void> close_connection(std::shared_ptr<Connection> conn, bool linger) {
  conn->phase = Connection::Phase::closing;
  std::string().swap(conn->parser.body());  // nothing of a refused body is kept while lingering
  conn->account_body(0);
  auto& socket = conn->socket();
  if (linger && socket.is_open() && !conn->peer_gone && !conn->server.stopping) {
    conn->set_deadline(Clock::now() + kLingerTimeout);
    if (conn->tls) {
      // close_notify; waits (bounded by the watchdog) for the client's.
      co_await conn->tls->async_shutdown(kNoThrow);
    } else {
      std::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_send, ignored);
      std::array<char, 4096> sink{};
      std::size_t dropped = 0;
      while (dropped < kLingerMaxBytes && !conn->expired()) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), kNoThrow);
        if (ec || conn->timed_out) {
          break;
        }
        dropped += n;
      }
    }
  }
  conn->close_now();
}

// The handler, on its own coroutine with a cancellation slot; exceptions become a 500.
awaitable<HttpResponse> call_handler(std::shared_ptr<HttpServer::Impl> server,
                                     std::shared_ptr<Connection> conn, HttpRequest request) {
  const std::string method = request.head ? "HEAD" : request.method;
  const std::string path = printable(request.path);
  std::optional<awaitable<HttpResponse>> work;
  try {
    if (server->handler) {
      work.emplace(server->handler(std::move(request)));
    }
  } catch (const std::exception& e) {
    logger()->error("[http #{} {}] {} {}: handler failed: {}", conn->id, conn->peer, method, path,
                    printable(e.what()));
  }
  if (!work) {
    ++server->stats.handler_errors;
    co_return error_response(500, "internal", "internal server error");
  }
  conn->watch_peer();
  auto [failure, response] =
      co_await asio::co_spawn(server->executor, std::move(*work),
                              asio::bind_cancellation_slot(conn->handler_cancel.slot(), kNoThrow));
  conn->handler_cancel.slot().clear();
  if (conn->phase == Connection::Phase::handling && conn->socket().is_open()) {
    std::error_code ignored;
    conn->socket().cancel(ignored);  // ends the peer watch
  }
  if (failure) {
    ++server->stats.handler_errors;
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      logger()->error("[http #{} {}] {} {}: handler threw: {}", conn->id, conn->peer, method, path,
                      printable(e.what()));
    } catch (...) {
      logger()->error("[http #{} {}] {} {}: handler threw", conn->id, conn->peer, method, path);
    }
    co_return error_response(500, "internal", "internal server error");
  }
  bool valid = response.status >= 100 && response.status <= 599 && response.status != 101 &&
               valid_header("content-type", response.content_type);
  for (const auto& [name, value] : response.headers) {
    valid = valid && valid_header(name, value);
  }
  if (!valid) {
    ++server->stats.handler_errors;
    logger()->error("[http #{} {}] {} {}: handler returned an invalid response (status {})",
                    conn->id, conn->peer, method, path, response.status);
    co_return error_response(500, "internal", "internal server error");
  }
  co_return std::move(response);
}

// Plain HTTP sent to the TLS port: one clear plain-text refusal instead of a handshake error.
awaitable<bool> tls_handshake(std::shared_ptr<HttpServer::Impl> server,
                              std::shared_ptr<Connection> conn) {
  conn->set_deadline(Clock::now() + server->options.tls_handshake_timeout);
  if (auto ec = co_await conn->wait_readable(); ec) {
    if (conn->timed_out) {
      ++server->stats.timeouts;
    }
    ++server->stats.tls_handshake_failures;
    co_return false;
  }
  char first = 0;
  const auto peeked = ::recv(conn->plain->native_handle(), &first, 1, MSG_PEEK | MSG_DONTWAIT);
  if (peeked == 1 && first != 0x16 && first >= 'A' && first <= 'Z') {
    ++server->stats.tls_handshake_failures;
    detail::Rejection refusal{400, "tls_required", "this port speaks HTTPS: use https://"};
    co_await send_rejection(conn, std::move(refusal), false, 0);
    co_await close_connection(conn, true);
    co_return false;
  }
  conn->tls.emplace(std::move(*conn->plain), *server->tls_context);
  conn->plain.reset();
  auto [ec] = co_await conn->tls->async_handshake(asio::ssl::stream_base::server, kNoThrow);
  if (ec || conn->timed_out) {
    ++server->stats.tls_handshake_failures;
    if (conn->timed_out) {
      ++server->stats.timeouts;
    }
    logger()->debug("[http #{} {}] TLS handshake failed: {}", conn->id, conn->peer,
                    conn->timed_out ? std::string("timed out") : ec.message());
    co_return false;
  }
  co_return true;
}

enum class ReadOutcome {
  complete,          ///< a request, or (refusal set) a bodiless request refused with keep-alive
  refuse_and_close,  ///< answer `refusal`, then close
  closed,            ///< nothing to answer
};

struct ReadResult {
  ReadOutcome outcome = ReadOutcome::closed;
  detail::Rejection refusal{0, {}, {}};
  std::uint32_t retry_after = 0;  ///< seconds, for a 429
};

// Reads one request into conn->parser; sends the 100 Continue when asked and due.
awaitable<ReadResult> read_request(std::shared_ptr<HttpServer::Impl> server,
                                   std::shared_ptr<Connection> conn) {
  auto& parser = conn->parser;
  ReadResult result;
  for (;;) {
    while (conn->offset < conn->buffer.size()) {
      const auto rest = std::string_view(conn->buffer).substr(conn->offset);
      const auto consumed = parser.feed(rest);
      conn->offset += consumed;
      if (!conn->account_body(parser.body().size())) {
        result.outcome = ReadOutcome::refuse_and_close;
        result.refusal = detail::Rejection{503, "server_busy",
                                           "too many request bodies are being received; retry"};
        co_return result;
      }
      const auto event = parser.event();
      if (event == detail::ParseEvent::message_complete) {
        result.outcome = ReadOutcome::complete;
        co_return result;
      }
      if (event == detail::ParseEvent::failed) {
        result.outcome = ReadOutcome::refuse_and_close;
        result.refusal = parser.rejection();
        co_return result;
      }
      if (event == detail::ParseEvent::headers_complete) {
        ++server->stats.requests;
        const auto& head = parser.head();
        result.refusal = parser.check_head();
        if (result.refusal.status == 0 &&
            !server->rate_limiter.take(conn->address, Clock::now(), result.retry_after)) {
          ++server->stats.rate_limited;
          result.refusal =
              detail::Rejection{429, "rate_limited", "too many requests from this client"};
        }
        const bool body_follows = head.chunked || head.content_length > 0;
        if (result.refusal.status != 0) {
          // A refused request's body is not read, so only a bodiless one keeps the connection:
          // let the parser finish it (its last byte is buffered) and answer as for a request.
          if (result.refusal.status != 429 || body_follows || !head.keep_alive) {
            result.outcome = ReadOutcome::refuse_and_close;
            co_return result;
          }
        } else if (head.expect_continue && body_follows &&
                   conn->buffer.size() - conn->offset <= 1) {
          // (the head's last LF is still buffered: the parser consumes it on resume)
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          const std::array<asio::const_buffer, 2> buffers{asio::buffer(kContinue),
                                                          asio::const_buffer{}};
          if (auto ec = co_await conn->write_all(buffers); ec) {
            co_return result;
          }
        }
        parser.resume();
        continue;
      }
      if (consumed == 0) {
        result.outcome = ReadOutcome::refuse_and_close;
        result.refusal = detail::Rejection{400, "bad_request", "malformed request"};
        co_return result;
      }
    }
    const auto ec = co_await conn->read_more();
    if (ec == timed_out_error()) {
      ++server->stats.timeouts;
      if (parser.started()) {
        result.outcome = ReadOutcome::refuse_and_close;
        result.refusal =
            detail::Rejection{408, "request_timeout", "the request was not received in time"};
      }
      co_return result;
    }
    if (ec) {
      conn->peer_gone = true;  // EOF or reset
      co_return result;
    }
  }
}

awaitable<void> serve_connection(std::shared_ptr<HttpServer::Impl> server,
                                 std::shared_ptr<Connection> conn) {
  const auto& options = server->options;
  const bool tls = server->tls_context != nullptr;
  if (tls && !co_await tls_handshake(server, conn)) {
    conn->close_now();
    co_return;
  }
  // The first request is due request_timeout after accept (or the handshake).
  conn->set_deadline(Clock::now() + options.request_timeout);
  bool linger = false;
  for (bool first = true;; first = false) {
    conn->parser.reset();
    conn->account_body(0);
    if (server->stopping) {
      break;
    }
    if (conn->offset == conn->buffer.size()) {
      // Idle: no buffer held (plain TCP waits for readability first).
      conn->buffer.clear();
      conn->buffer.shrink_to_fit();
      conn->offset = 0;
      conn->phase = Connection::Phase::idle;
      if (!first) {
        conn->set_deadline(Clock::now() + options.idle_timeout);
      }
      if (!tls) {
        if (auto ec = co_await conn->wait_readable(); ec) {
          if (conn->timed_out) {
            ++server->stats.timeouts;
          }
          break;
        }
        conn->phase = Connection::Phase::reading;
      } else {
        // TLS may hold decrypted bytes of its own: read directly (the first read under the
        // idle deadline).
        if (auto ec = co_await conn->read_more(); ec) {
          if (conn->timed_out) {
            ++server->stats.timeouts;
          } else {
            conn->peer_gone = true;
          }
          break;
        }
        conn->phase = Connection::Phase::reading;
      }
      if (!first) {
        conn->set_deadline(Clock::now() + options.request_timeout);
      }
    } else {
      conn->phase = Connection::Phase::reading;
      if (!first) {
        conn->set_deadline(Clock::now() + options.request_timeout);  // pipelined
      }
    }

    auto read = co_await read_request(server, conn);
    if (read.outcome == ReadOutcome::closed) {
      break;
    }
    if (read.outcome == ReadOutcome::refuse_and_close) {
      co_await send_rejection(conn, std::move(read.refusal), false, 0);
      linger = true;
      break;
    }
    if (read.refusal.status != 0) {
      // A bodiless request refused with keep-alive (429).
      const bool keep_alive = !server->stopping;
      if (co_await send_rejection(conn, std::move(read.refusal), keep_alive, read.retry_after)) {
        break;
      }
      if (!keep_alive) {
        linger = true;
        break;
      }
      continue;
    }

    const auto& head = conn->parser.head();
    ++conn->requests;
    const bool http10 = head.http_minor == 0;
    HttpRequest request;
    detail::Rejection refusal;
    const bool built =
        detail::build_request(head, std::move(conn->parser.body()), request, refusal);
    conn->parser.body().clear();
    conn->account_body(0);  // the handler owns the body now
    if (!built) {
      co_await send_rejection(conn, std::move(refusal), false, 0);
      linger = true;
      break;
    }
    request.peer = conn->peer;
    request.peer_is_loopback = conn->loopback;
    request.tls = tls;
    const bool head_only = request.head;
    const auto started = Clock::now();
    const std::string method = head.method;
    const std::string path =
        logger()->should_log(spdlog::level::debug) ? printable(request.path) : std::string();
    const bool keep_alive_asked = head.keep_alive && !head.upgrade;

    conn->phase = Connection::Phase::handling;
    conn->set_deadline(Clock::time_point::max());
    auto response = co_await call_handler(server, conn, std::move(request));
    if (conn->peer_gone || !conn->socket().is_open()) {
      break;
    }
    const bool keep_alive = keep_alive_asked && !server->stopping &&
                            conn->requests < options.max_requests_per_connection;
    const int status = response.status;
    const auto ec =
        co_await send_response(conn, std::move(response), keep_alive, head_only, http10);
    logger()->debug(
        "[http #{} {}] {} {} -> {} ({} us)", conn->id, conn->peer, method, path, status,
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
    if (ec) {
      break;
    }
    if (!keep_alive) {
      linger = true;
      break;
    }
  }
  co_await close_connection(conn, linger);
}

awaitable<void> accept_loop(std::shared_ptr<HttpServer::Impl> server) {
  server->accept_running = true;
  Clock::time_point last_warning{};
  while (!server->stopping) {
    auto [accept_error, socket] = co_await server->acceptor.async_accept(kNoThrow);
    auto ec = accept_error;
    if (server->stopping || ec == asio::error::operation_aborted) {
      break;
    }
    if (ec) {
      // Out of descriptors or memory: the client waits in the backlog; try again shortly.
      if (Clock::now() - last_warning > 10s) {
        last_warning = Clock::now();
        logger()->warn("accept failed: {}", ec.message());
      }
      ec = portable(ec);
      if (ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
          ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory) {
        asio::steady_timer pause(server->executor, kAcceptRetry);
        co_await pause.async_wait(kNoThrow);
      }
      continue;
    }
    if (server->connections.size() >= server->options.max_connections) {
      ++server->stats.connections_rejected;
      std::error_code ignored;
      socket.close(ignored);
      continue;
    }
    ++server->stats.connections_accepted;
    std::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto conn = std::make_shared<Connection>(server, std::move(socket), server->next_id++);
    asio::co_spawn(server->executor, serve_connection(server, std::move(conn)),
                   [](std::exception_ptr failure) {
                     if (failure) {
                       try {
                         std::rethrow_exception(failure);
                       } catch (const std::exception& e) {
                         logger()->error("connection ended by an exception: {}",
                                         printable(e.what()));
                       } catch (...) {
                         logger()->error("connection ended by an exception");
                       }
                     }
                   });
  }
  server->accept_running = false;
  server->notify_drained();
}

}  // namespace

void HttpServer::Impl::begin_stop() {
  stopping = true;
  std::error_code ignored;
  acceptor.close(ignored);
  // Connections not working on a request close now; the others after their response.
  for (auto* conn : std::list<Connection*>(connections)) {
    if (conn->phase != Connection::Phase::handling && conn->phase != Connection::Phase::writing) {
      conn->close_now();
    }
  }
}

void HttpServer::Impl::force_close_all() {
  for (auto* conn : std::list<Connection*>(connections)) {
    conn->handler_cancel.emit(asio::cancellation_type::terminal);
    conn->close_now();
  }
}

// ---------------------------------------------------------------------------------------------

HttpServer::HttpServer(asio::any_io_executor executor, HttpOptions options, HttpHandler handler)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  if (impl_ && impl_->started && !(impl_->stopping && impl_->drained_all())) {
    // Not stopped (or not waited for): close everything; the coroutines still queued end on
    // their executor and keep the Impl alive until then.
    impl_->begin_stop();
    impl_->force_close_all();
  }
}

Result<void> HttpServer::start() {
  auto& impl = *impl_;
  const auto& options = impl.options;
  if (impl.started) {
    return Error{std::make_error_code(std::errc::operation_in_progress), "already started"};
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return Error{std::make_error_code(std::errc::invalid_argument),
                 "TLS needs both a certificate and a key file"};
  }
  if (!options.tls_cert.empty()) {
    auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1 | asio::ssl::context::no_compression |
                         asio::ssl::context::single_dh_use);
    SSL_CTX* native = context->native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    // Mozilla's "intermediate" TLS 1.2 suites (forward secret AEAD only); TLS 1.3 keeps its own.
    SSL_CTX_set_cipher_list(native,
                            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);  // idle TLS connections hold no buffers
    SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_SERVER);
    std::error_code ec;
    context->use_certificate_chain_file(options.tls_cert.string(), ec);
    if (ec) {
      return Error{ec,
                   fmt::format("TLS certificate {}: {}", options.tls_cert.string(), ec.message())};
    }
    context->use_private_key_file(options.tls_key.string(), asio::ssl::context::pem, ec);
    if (ec) {
      return Error{ec, fmt::format("TLS key {}: {}", options.tls_key.string(), ec.message())};
    }
    if (SSL_CTX_check_private_key(native) != 1) {
      return Error{std::make_error_code(std::errc::invalid_argument),
                   fmt::format("TLS key {} does not match the certificate {}",
                               options.tls_key.string(), options.tls_cert.string())};
    }
    impl.tls_context = std::move(context);
  }

  std::error_code ec;
  const auto address =
      asio::ip::make_address(options.address == "localhost" ? "127.0.0.1" : options.address, ec);
  if (ec) {
    return Error{
        std::make_error_code(std::errc::invalid_argument),
        fmt::format("listen address '{}' is not an IP address", printable(options.address))};
  }
  const tcp::endpoint endpoint(address, options.port);
  const auto where = fmt::format("{}:{}", options.address, options.port);
  if (impl.acceptor.open(endpoint.protocol(), ec); ec) {
    return Error{portable(ec), fmt::format("listen on {}: {}", where, ec.message())};
  }
  impl.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (impl.acceptor.bind(endpoint, ec); ec) {
    impl.acceptor.close();
    return Error{portable(ec), fmt::format("listen on {}: {}", where, ec.message())};
  }
  if (impl.acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    impl.acceptor.close();
    return Error{portable(ec), fmt::format("listen on {}: {}", where, ec.message())};
  }
  impl.bound_port = impl.acceptor.local_endpoint().port();
  impl.started = true;
  impl.accept_running = true;
  asio::co_spawn(impl.executor, accept_loop(impl_), [](std::exception_ptr failure) {
    if (failure) {
      logger()->error("the accept loop ended by an exception");
    }
  });
  logger()->info("listening on {}:{}{}", options.address, impl.bound_port,
                 impl.tls_context ? " (TLS)" : "");
  return {};
}

std::uint16_t HttpServer::port() const noexcept { return impl_->bound_port; }

asio::awaitable<void> HttpServer::async_stop(Deadline deadline) {
  auto server = impl_;
  if (!server->started) {
    co_return;
  }
  server->begin_stop();
  server->drained.expires_at(deadline.at());
  bool forced = false;
  while (!server->drained_all()) {
    co_await server->drained.async_wait(kNoThrow);
    if (server->drained_all()) {
      break;
    }
    if (Clock::now() >= server->drained.expiry()) {
      if (forced) {
        logger()->warn(
            "stop: {} connection(s) still running a handler that ignores "
            "cancellation; not waiting longer",
            server->connections.size());
        break;
      }
      forced = true;
      server->force_close_all();
      server->drained.expires_after(kStopGrace);
    }
  }
  logger()->info("stopped ({} connections served, {} requests)", server->stats.connections_accepted,
                 server->stats.requests);
}

HttpStats HttpServer::stats() const {
  auto copy = impl_->stats;
  copy.connections_open = impl_->connections.size();
  copy.body_bytes_buffered = impl_->body_bytes;
  return copy;
}

}  // namespace healer::daemon
