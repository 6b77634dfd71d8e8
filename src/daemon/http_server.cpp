#include <fmt/format.h>
#include <http_parser.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <ctime>
#include <list>
#include <nlohmann/json.hpp>

#include "healer/core/log.hpp"
#include "healer/daemon/http.hpp"
#include "healer/service/errors.hpp"

namespace healer::daemon {
namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr auto kTlsHandshakeTimeout = 10s;

const auto& logger() {
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
    case 204:
      return "No Content";
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
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
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
    default:
      return "Status";
  }
}

std::string http_date() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[64];
  std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc);
  return text;
}

HttpResponse error(int status, std::string_view code, std::string_view message) {
  HttpResponse response;
  response.status = status;
  response.body = nlohmann::json{{"error", {{"code", code}, {"message", message}}}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

std::string serialize(const HttpResponse& response, bool keep_alive, bool head) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Length: {}\r\n",
                                response.status, reason(response.status), http_date(),
                                response.status == 204 ? 0 : response.body.size());
  if (!response.content_type.empty() && response.status != 204) {
    out += "Content-Type: " + response.content_type + "\r\n";
  }
  out += "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    out += name + ": " + value + "\r\n";
  }
  out += "\r\n";
  if (!head && response.status != 204) {
    out += response.body;
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// What the parser callbacks fill for the request being read.
struct Parse {
  HttpRequest request;
  std::string header_field;
  std::string header_value;
  bool in_value = false;
  std::size_t header_bytes = 0;
  std::size_t max_header_bytes = 0;
  std::size_t max_body_bytes = 0;
  bool headers_done = false;
  bool complete = false;
  int refuse = 0;  // a status to answer with instead of going on (413, 431)

  void flush_header() {
    if (!header_field.empty()) {
      auto& slot = request.headers[lower(header_field)];
      slot = slot.empty() ? header_value : slot + ", " + header_value;
    }
    header_field.clear();
    header_value.clear();
    in_value = false;
  }
  int count(std::size_t length) {
    header_bytes += length;
    if (header_bytes > max_header_bytes) {
      refuse = 431;
      return 1;
    }
    return 0;
  }
};

Parse& state_of(http_parser* parser) { return *static_cast<Parse*>(parser->data); }

const http_parser_settings& parser_settings() {
  static const http_parser_settings settings = [] {
    http_parser_settings s{};
    s.on_url = [](http_parser* p, const char* at, std::size_t length) {
      auto& st = state_of(p);
      st.request.raw_target.append(at, length);
      return st.count(length);
    };
    s.on_header_field = [](http_parser* p, const char* at, std::size_t length) {
      auto& st = state_of(p);
      if (st.in_value) {
        st.flush_header();
      }
      st.header_field.append(at, length);
      return st.count(length);
    };
    s.on_header_value = [](http_parser* p, const char* at, std::size_t length) {
      auto& st = state_of(p);
      st.in_value = true;
      st.header_value.append(at, length);
      return st.count(length);
    };
    s.on_headers_complete = [](http_parser* p) {
      auto& st = state_of(p);
      st.flush_header();
      st.headers_done = true;
      st.request.method = http_method_str(static_cast<http_method>(p->method));
      if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > st.max_body_bytes) {
        st.refuse = 413;
        return -1;
      }
      return 0;
    };
    s.on_body = [](http_parser* p, const char* at, std::size_t length) {
      auto& st = state_of(p);
      if (st.request.body.size() + length > st.max_body_bytes) {
        st.refuse = 413;
        return 1;
      }
      st.request.body.append(at, length);
      return 0;
    };
    s.on_message_complete = [](http_parser* p) {
      state_of(p).complete = true;
      http_parser_pause(p, 1);  // one request at a time; pipelined bytes wait in the buffer
      return 0;
    };
    return s;
  }();
  return settings;
}

// "/a%20b" -> "/a b"; the query into key/value pairs. Errors: malformed escapes, NUL, "..".
bool split_target(HttpRequest& request) {
  http_parser_url url{};
  http_parser_url_init(&url);
  if (http_parser_parse_url(request.raw_target.data(), request.raw_target.size(), 0, &url) != 0 ||
      (url.field_set & (1U << UF_PATH)) == 0) {
    return false;
  }
  const auto field = [&](http_parser_url_fields which) {
    return std::string_view(request.raw_target)
        .substr(url.field_data[which].off, url.field_data[which].len);
  };
  auto path = percent_decode(field(UF_PATH), false);
  if (!path || path->front() != '/') {
    return false;
  }
  // No "." or ".." segment: nothing reaches a file by path, but a route must mean what it says.
  std::string_view rest(*path);
  while (!rest.empty()) {
    rest.remove_prefix(1);
    const auto end = rest.find('/');
    const auto segment = rest.substr(0, end);
    if (segment == ".." || segment == ".") {
      return false;
    }
    if (end == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(end);
  }
  request.path = std::move(*path);
  if ((url.field_set & (1U << UF_QUERY)) != 0) {
    std::string_view query = field(UF_QUERY);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const auto pair = query.substr(0, amp);
      const auto eq = pair.find('=');
      auto key = percent_decode(pair.substr(0, eq), true);
      auto value = percent_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
      if (!key || !value) {
        return false;
      }
      if (!key->empty()) {
        request.query[*key] = std::move(*value);
      }
      if (amp == std::string_view::npos) {
        break;
      }
      query.remove_prefix(amp + 1);
    }
  }
  return true;
}

bool is_loopback(const asio::ip::address& address) {
  if (address.is_v4()) {
    return address.to_v4().is_loopback();
  }
  const auto v6 = address.to_v6();
  return v6.is_loopback() ||
         (v6.is_v4_mapped() && asio::ip::make_address_v4(asio::ip::v4_mapped, v6).is_loopback());
}

}  // namespace

std::string HttpRequest::header(std::string_view name) const {
  const auto found = headers.find(lower(name));
  return found == headers.end() ? std::string() : found->second;
}

std::optional<std::string> HttpRequest::param(std::string_view name) const {
  const auto found = query.find(name);
  if (found == query.end()) {
    return std::nullopt;
  }
  return found->second;
}

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {
        return std::nullopt;
      }
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) {
        return std::nullopt;
      }
      c = static_cast<char>(high * 16 + low);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') {
      return std::nullopt;
    }
    out += c;
  }
  return out;
}

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(asio::any_io_executor ex, HttpOptions opts, HttpHandler h)
      : executor(std::move(ex)),
        options(std::move(opts)),
        handler(std::move(h)),
        acceptor(executor) {}

  // A connection the server can close on stop.
  struct Connection {
    std::function<void()> close;
    bool idle = true;  // between requests
  };

  struct Bucket {
    double tokens = 0;
    Clock::time_point refreshed;
  };

  asio::any_io_executor executor;
  HttpOptions options;
  HttpHandler handler;
  tcp::acceptor acceptor;
  std::unique_ptr<asio::ssl::context> tls;
  std::list<Connection> connections;
  std::map<std::string, Bucket, std::less<>> buckets;
  Clock::time_point buckets_pruned = Clock::now();
  bool stopping = false;
  HttpStats stats;

  bool take_token(const std::string& peer) {
    const auto now = Clock::now();
    if (now - buckets_pruned > 60s) {  // forget clients idle for a minute (bounded memory)
      std::erase_if(buckets, [&](const auto& entry) { return now - entry.second.refreshed > 60s; });
      buckets_pruned = now;
    }
    auto [it, added] = buckets.try_emplace(peer, Bucket{options.rate_burst, now});
    auto& bucket = it->second;
    const double elapsed = std::chrono::duration<double>(now - bucket.refreshed).count();
    bucket.tokens = std::min(options.rate_burst, bucket.tokens + elapsed * options.rate_per_second);
    bucket.refreshed = now;
    if (bucket.tokens < 1) {
      return false;
    }
    bucket.tokens -= 1;
    return true;
  }

  asio::awaitable<void> accept_loop(std::shared_ptr<Impl> self);
  template <class Stream>
  asio::awaitable<void> serve(std::shared_ptr<Impl> self, Stream& stream, tcp::socket& socket,
                              std::list<Connection>::iterator connection, std::string peer,
                              bool peer_loopback);
  asio::awaitable<void> connection(std::shared_ptr<Impl> self, tcp::socket socket);
};

asio::awaitable<void> HttpServer::Impl::accept_loop(std::shared_ptr<Impl> self) {
  while (!stopping) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec) {
      if (stopping || ec == asio::error::operation_aborted) {
        break;
      }
      // Out of descriptors or similar: back off a moment instead of spinning.
      asio::steady_timer pause(executor, 50ms);
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (connections.size() >= options.max_connections) {
      ++stats.connections_rejected;
      std::error_code ignored;
      socket.close(ignored);
      continue;
    }
    ++stats.connections_accepted;
    asio::co_spawn(executor, connection(self, std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> HttpServer::Impl::connection(std::shared_ptr<Impl> self, tcp::socket socket) {
  std::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  const std::string peer = ec ? std::string("?") : remote.address().to_string();
  const bool loopback = !ec && is_loopback(remote.address());
  socket.set_option(tcp::no_delay(true), ec);
  connections.push_back(Connection{});
  auto entry = std::prev(connections.end());
  stats.connections_open = connections.size();
  if (tls) {
    asio::ssl::stream<tcp::socket&> stream(socket, *tls);
    entry->close = [&socket] {
      std::error_code ignored;
      socket.close(ignored);
    };
    asio::steady_timer deadline(executor, kTlsHandshakeTimeout);
    deadline.async_wait([&socket](std::error_code timer_ec) {
      if (!timer_ec) {
        std::error_code ignored;
        socket.close(ignored);
      }
    });
    auto [handshake_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple);
    deadline.cancel();
    if (!handshake_ec) {
      co_await serve(self, stream, socket, entry, peer, loopback);
      auto [shutdown_ec] = co_await stream.async_shutdown(kTuple);
      (void)shutdown_ec;
    } else {
      ++stats.bad_requests;
    }
  } else {
    entry->close = [&socket] {
      std::error_code ignored;
      socket.close(ignored);
    };
    co_await serve(self, socket, socket, entry, peer, loopback);
  }
  std::error_code ignored;
  socket.close(ignored);
  connections.erase(entry);
  stats.connections_open = connections.size();
}

template <class Stream>
asio::awaitable<void> HttpServer::Impl::serve(std::shared_ptr<Impl> self, Stream& stream,
                                              tcp::socket& socket,
                                              std::list<Connection>::iterator connection,
                                              std::string peer, bool peer_loopback) {
  (void)self;
  std::string buffer;  // bytes received and not parsed yet (pipelined requests)
  char chunk[16384];
  asio::steady_timer deadline(executor);
  bool timed_out = false;
  auto arm = [&](Clock::duration after) {
    deadline.expires_after(after);
    deadline.async_wait([&socket, &timed_out](std::error_code ec) {
      if (!ec) {
        timed_out = true;
        std::error_code ignored;
        socket.cancel(ignored);
      }
    });
  };
  for (std::size_t served = 0; !stopping && served < options.max_requests_per_connection;
       ++served) {
    Parse parse;
    parse.max_header_bytes = options.max_header_bytes;
    parse.max_body_bytes = options.max_body_bytes;
    parse.request.peer = peer;
    parse.request.peer_is_loopback = peer_loopback;
    parse.request.tls = tls != nullptr;
    http_parser parser{};
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &parse;
    connection->idle = buffer.empty();
    timed_out = false;
    arm(buffer.empty() ? options.idle_timeout : options.request_timeout);
    bool started = !buffer.empty();
    bool sent_continue = false;
    bool bad = false;
    while (!parse.complete) {
      if (buffer.empty()) {
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(chunk), kTuple);
        if (ec || n == 0) {
          deadline.cancel();
          if (timed_out && started) {
            ++stats.bad_requests;
            const auto bytes = serialize(
                error(408, "request_timeout", "the request did not arrive in time"), false, false);
            arm(options.write_timeout);
            co_await asio::async_write(stream, asio::buffer(bytes), kTuple);
            deadline.cancel();
          }
          co_return;
        }
        if (!started) {
          // The first byte of a request starts its own deadline (slowloris).
          started = true;
          connection->idle = false;
          deadline.cancel();
          timed_out = false;
          arm(options.request_timeout);
        }
        buffer.assign(chunk, n);
      }
      const std::size_t parsed =
          http_parser_execute(&parser, &parser_settings(), buffer.data(), buffer.size());
      const auto errno_value = HTTP_PARSER_ERRNO(&parser);
      if (errno_value == HPE_PAUSED) {
        http_parser_pause(&parser, 0);
      } else if (errno_value != HPE_OK) {
        bad = true;
        break;
      }
      buffer.erase(0, parsed);
      if (parse.refuse != 0) {
        bad = true;
        break;
      }
      if (parse.headers_done && !parse.complete && !sent_continue &&
          lower(parse.request.header("expect")) == "100-continue") {
        sent_continue = true;
        static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await asio::async_write(stream, asio::buffer(kContinue), kTuple);
      }
      if (parsed == 0 && !parse.complete && !buffer.empty()) {
        bad = true;  // the parser made no progress on bytes it has
        break;
      }
    }
    deadline.cancel();
    HttpResponse response;
    bool keep_alive = false;
    const bool head = parse.request.method == "HEAD";
    if (bad) {
      ++stats.bad_requests;
      if (parse.refuse == 413) {
        response = error(413, "too_large",
                         fmt::format("the body is over {} bytes", options.max_body_bytes));
      } else if (parse.refuse == 431) {
        response = error(431, "headers_too_large",
                         fmt::format("the request line and headers are over {} bytes",
                                     options.max_header_bytes));
      } else {
        response = error(400, "bad_request", "the request is not valid HTTP/1.1");
      }
    } else if (!split_target(parse.request)) {
      ++stats.bad_requests;
      response = error(400, "bad_target",
                       "the request target has a malformed %-escape, a NUL or a '.' or '..' "
                       "segment");
    } else if (!take_token(peer)) {
      ++stats.rate_limited;
      response = error(429, "rate_limited", "too many requests; slow down");
      response.headers.emplace_back("Retry-After", "1");
      keep_alive = http_should_keep_alive(&parser) != 0;
    } else {
      ++stats.requests;
      keep_alive = http_should_keep_alive(&parser) != 0;
      try {
        response = co_await handler(std::move(parse.request));
      } catch (const std::exception& failure) {
        logger()->error("handler failed: {}", failure.what());
        response = error(500, "internal", "internal error (see the daemon's log)");
      }
    }
    ++stats.responses_by_status[response.status];
    keep_alive = keep_alive && !stopping && served + 1 < options.max_requests_per_connection;
    const auto bytes = serialize(response, keep_alive, head);
    timed_out = false;
    arm(options.write_timeout);
    auto [write_ec, written] = co_await asio::async_write(stream, asio::buffer(bytes), kTuple);
    deadline.cancel();
    if (write_ec || !keep_alive) {
      co_return;
    }
  }
}

HttpServer::HttpServer(asio::any_io_executor executor, HttpOptions options, HttpHandler handler)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
  impl_->stopping = true;
  std::error_code ignored;
  impl_->acceptor.close(ignored);
  for (auto& connection : impl_->connections) {
    connection.close();
  }
}

Result<void> HttpServer::start() {
  auto& o = impl_->options;
  std::error_code ec;
  const auto address = asio::ip::make_address(o.address, ec);
  if (ec) {
    return service::make_error(service::Errc::invalid_input,
                               fmt::format("listen address '{}': {}", o.address, ec.message()));
  }
  if (!o.tls_cert.empty() || !o.tls_key.empty()) {
    try {
      auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
      context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
      context->use_certificate_chain_file(o.tls_cert.string());
      context->use_private_key_file(o.tls_key.string(), asio::ssl::context::pem);
      impl_->tls = std::move(context);
    } catch (const std::system_error& failure) {
      return service::make_error(
          service::Errc::invalid_input,
          fmt::format("TLS certificate {} or key {}: {}", o.tls_cert.string(), o.tls_key.string(),
                      failure.what()));
    }
  }
  const tcp::endpoint endpoint(address, o.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return service::make_error(
        service::Errc::unavailable,
        fmt::format("cannot listen on {}:{}: {}", o.address, o.port, ec.message()));
  }
  asio::co_spawn(impl_->executor, impl_->accept_loop(impl_), asio::detached);
  return {};
}

std::uint16_t HttpServer::port() const noexcept {
  std::error_code ec;
  const auto endpoint = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

asio::awaitable<void> HttpServer::async_stop(Deadline deadline) {
  impl_->stopping = true;
  std::error_code ignored;
  impl_->acceptor.close(ignored);
  // Idle keep-alive connections go now; those answering a request get until the deadline.
  for (auto& connection : impl_->connections) {
    if (connection.idle) {
      connection.close();
    }
  }
  asio::steady_timer timer(impl_->executor);
  while (!impl_->connections.empty() && !deadline.expired()) {
    timer.expires_after(10ms);
    co_await timer.async_wait(kTuple);
  }
  // Past the deadline every socket closes; a handler still running finishes on its own (its
  // reply has nowhere to go).
  for (auto& connection : impl_->connections) {
    connection.close();
  }
}

HttpStats HttpServer::stats() const { return impl_->stats; }

}  // namespace healer::daemon
