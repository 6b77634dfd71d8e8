// The daemon's HTTP server on real sockets (127.0.0.1): cpp-httplib's client for well-formed
// traffic, raw sockets for hostile input, the openssl CLI for a self-signed certificate.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "healer/daemon/http.hpp"
#include "poll_until.hpp"
#include "temp_dir.hpp"

namespace healer::daemon {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using test::poll_until;

// Handlers that ended because the server cancelled them (client gone, stop deadline).
std::atomic<int> g_cancelled{0};
// Handlers currently waiting in /slow or /hang.
std::atomic<int> g_waiting{0};

asio::awaitable<HttpResponse> wait_then_answer(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  ++g_waiting;
  auto [ec] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  --g_waiting;
  HttpResponse response;
  if (ec) {
    ++g_cancelled;
    response.status = 503;
    response.body = R"({"cancelled":true})";
    co_return response;
  }
  response.body = R"({"waited":true})";
  co_return response;
}

// The test routes: what the server hands a handler, and the ways a handler can misbehave.
asio::awaitable<HttpResponse> route(HttpRequest request) {
  if (request.path == "/throw") {
    throw std::runtime_error("boom \x1b[31m red");
  }
  if (request.path == "/slow") {
    co_return co_await wait_then_answer(
        std::chrono::milliseconds(std::stoi(request.param("ms").value_or("100"))));
  }
  if (request.path == "/hang") {
    co_return co_await wait_then_answer(1h);
  }
  HttpResponse response;
  if (request.path == "/bad-header") {
    response.headers.emplace_back("X-Evil", "a\r\nSet-Cookie: x=1");
    co_return response;
  }
  if (request.path == "/big") {
    response.content_type = "application/octet-stream";
    response.body.assign(std::stoul(request.param("bytes").value_or("1000")), 'b');
    co_return response;
  }
  if (request.path == "/text") {
    response.content_type = "text/plain";
    response.body = "plain";
    co_return response;
  }
  if (request.path.starts_with("/echo")) {
    Json query = Json::object();
    for (const auto& [key, value] : request.query) {
      query[key] = value;
    }
    response.body = Json{{"method", request.method}, {"head", request.head},
                         {"path", request.path},     {"raw_target", request.raw_target},
                         {"query", query},           {"body_size", request.body.size()},
                         {"body", request.body},     {"x_test", request.header("x-test")},
                         {"peer", request.peer},     {"loopback", request.peer_is_loopback},
                         {"tls", request.tls}}
                        .dump();
    co_return response;
  }
  response.status = 404;
  response.body = R"({"error":{"code":"not_found","message":"no such route"}})";
  co_return response;
}

// A blocking TCP client for hostile input: sends raw bytes, reads raw bytes.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      throw std::runtime_error("socket");
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect");
    }
  }
  ~RawClient() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Whatever arrives within `timeout` (returns early once `enough` says so or at EOF).
  template <class Enough>
  std::string read(std::chrono::milliseconds timeout, Enough enough) {
    const auto give_up = std::chrono::steady_clock::now() + timeout;
    while (!closed_ && !enough(received_)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          give_up - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        break;
      }
      pollfd waiting{fd_, POLLIN, 0};
      if (::poll(&waiting, 1, static_cast<int>(left.count())) <= 0) {
        continue;
      }
      char chunk[16384];
      const auto n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      received_.append(chunk, static_cast<std::size_t>(n));
    }
    return received_;
  }
  // Until the peer closes (or `timeout`).
  std::string read_to_close(std::chrono::milliseconds timeout = 5s) {
    return read(timeout, [](const std::string&) { return false; });
  }
  // Until `count` complete responses (head + Content-Length body) arrived.
  std::string read_responses(std::size_t count, std::chrono::milliseconds timeout = 5s) {
    return read(timeout, [count](const std::string& text) { return complete(text) >= count; });
  }
  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] int fd() const { return fd_; }

  static std::size_t complete(std::string_view text) {
    std::size_t found = 0;
    while (true) {
      const auto end = text.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        return found;
      }
      std::size_t length = 0;
      const auto head = text.substr(0, end);
      if (const auto at = head.find("Content-Length: "); at != std::string_view::npos) {
        length = std::stoul(std::string(head.substr(at + 16)));
      }
      if (head.starts_with("HTTP/1.1 100")) {
        length = 0;
      }
      if (text.size() < end + 4 + length) {
        return found;
      }
      ++found;
      text.remove_prefix(end + 4 + length);
    }
  }

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
};

int status_of(std::string_view response) {
  if (!response.starts_with("HTTP/1.1 ") || response.size() < 12) {
    return 0;
  }
  return std::stoi(std::string(response.substr(9, 3)));
}

// The server on its own io_context thread, as on the daemon's loop.
class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpOptions options, HttpHandler handler = route) {
    server_ =
        std::make_unique<HttpServer>(io_.get_executor(), std::move(options), std::move(handler));
    auto started = server_->start();
    ASSERT_TRUE(started) << started.error().message();
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_ && server_->port() != 0 && !stopped_) {
      stop(Deadline::after(2s));
    }
    work_.reset();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  // async_stop() on the loop; returns when it returned.
  void stop(Deadline deadline) {
    std::promise<void> done;
    auto finished = done.get_future();
    asio::co_spawn(io_, server_->async_stop(deadline),
                   [&done](std::exception_ptr) { done.set_value(); });
    ASSERT_EQ(finished.wait_for(10s), std::future_status::ready);
    stopped_ = true;
  }

  HttpStats stats() {
    std::packaged_task<HttpStats()> task([this] { return server_->stats(); });
    auto result = task.get_future();
    asio::post(io_, std::move(task));
    return result.get();
  }

  std::uint16_t port() const { return server_->port(); }

  httplib::Client client() {
    httplib::Client http("127.0.0.1", port());
    http.set_connection_timeout(5s);
    http.set_read_timeout(5s);
    return http;
  }

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      io_.get_executor()};
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  bool stopped_ = false;
};

TEST_F(HttpServerTest, RoutesRequestsToTheHandlerWithDecodedPathQueryAndHeaders) {
  start(HttpOptions{});
  auto http = client();
  auto got = http.Get("/echo/web%201?x=1&y=a%20b%21&x=2", {{"X-Test", "yes"}});
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 200);
  const auto body = Json::parse(got->body);
  EXPECT_EQ(body["method"], "GET");
  EXPECT_EQ(body["path"], "/echo/web 1");
  EXPECT_EQ(body["raw_target"], "/echo/web%201?x=1&y=a%20b%21&x=2");
  EXPECT_EQ(body["query"]["x"], "2");
  EXPECT_EQ(body["query"]["y"], "a b!");
  EXPECT_EQ(body["x_test"], "yes");
  EXPECT_EQ(body["peer"], "127.0.0.1");
  EXPECT_EQ(body["loopback"], true);
  EXPECT_EQ(body["tls"], false);
  EXPECT_EQ(got->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(got->get_header_value("Cache-Control"), "no-store");
  EXPECT_EQ(got->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(got->get_header_value("Content-Length"), std::to_string(got->body.size()));
  EXPECT_TRUE(got->get_header_value("Date").ends_with(" GMT"));

  auto posted = http.Post("/echo", std::string(1000, 'z'), "application/octet-stream");
  ASSERT_TRUE(posted);
  EXPECT_EQ(Json::parse(posted->body)["body_size"], 1000);
  EXPECT_EQ(Json::parse(posted->body)["method"], "POST");

  auto text = http.Get("/text");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->body, "plain");
  EXPECT_FALSE(text->has_header("Cache-Control"));  // no-store is for JSON

  auto missing = http.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(stats().responses_by_status[200], 3u);
  EXPECT_EQ(stats().responses_by_status[404], 1u);
}

TEST_F(HttpServerTest, HeadGetsTheHeadersOfGetWithoutABody) {
  start(HttpOptions{});
  RawClient raw(port());
  raw.send("HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\nGET /text HTTP/1.1\r\nHost: t\r\n\r\n");
  // The HEAD response announces the GET body's length but sends none: the next bytes on the
  // connection are the second response.
  const auto text = raw.read(5s, [](const std::string& t) { return t.ends_with("plain"); });
  ASSERT_EQ(status_of(text), 200) << text;
  const auto second = text.find("HTTP/1.1 200", 5);
  ASSERT_NE(second, std::string::npos) << text;
  const auto first_head = text.substr(0, second);
  EXPECT_TRUE(first_head.ends_with("\r\n\r\n")) << first_head;
  EXPECT_EQ(first_head.find("Content-Length: 0"), std::string::npos) << first_head;
  EXPECT_NE(first_head.find("Content-Length: "), std::string::npos);
  EXPECT_TRUE(text.ends_with("plain"));
}

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  start(HttpOptions{});
  auto http = client();
  http.set_keep_alive(true);
  for (int i = 0; i < 5; ++i) {
    auto got = http.Get("/echo");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, 200);
  }
  const auto counted = stats();
  EXPECT_EQ(counted.connections_accepted, 1u);
  EXPECT_EQ(counted.requests, 5u);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrderAndCloseIsHonoured) {
  start(HttpOptions{});
  RawClient raw(port());
  raw.send(
      "GET /echo/1 HTTP/1.1\r\nHost: t\r\n\r\n"
      "POST /echo/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
      "GET /echo/3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
      "GET /echo/4 HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto text = raw.read_to_close();
  EXPECT_TRUE(raw.closed());
  EXPECT_EQ(RawClient::complete(text), 3u) << text;
  const auto one = text.find("\"/echo/1\"");
  const auto two = text.find("\"/echo/2\"");
  const auto three = text.find("\"/echo/3\"");
  ASSERT_NE(one, std::string::npos);
  ASSERT_NE(two, std::string::npos);
  ASSERT_NE(three, std::string::npos);
  EXPECT_LT(one, two);
  EXPECT_LT(two, three);
  EXPECT_NE(text.find("\"body\":\"abc\""), std::string::npos);
  EXPECT_EQ(text.find("/echo/4"), std::string::npos);
  EXPECT_NE(text.find("Connection: close"), std::string::npos);
}

TEST_F(HttpServerTest, Http10ClosesUnlessKeepAliveIsAsked) {
  start(HttpOptions{});
  {
    RawClient raw(port());
    raw.send("GET /echo HTTP/1.0\r\n\r\n");
    const auto text = raw.read_to_close();
    EXPECT_EQ(status_of(text), 200);
    EXPECT_TRUE(raw.closed());
  }
  RawClient raw(port());
  raw.send("GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  auto text = raw.read_responses(1);
  EXPECT_NE(text.find("Connection: keep-alive"), std::string::npos) << text;
  raw.send("GET /text HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  text = raw.read_responses(2);
  EXPECT_EQ(RawClient::complete(text), 2u);
  EXPECT_FALSE(raw.closed());
}

TEST_F(HttpServerTest, OversizedHeadersGet431AndClose) {
  HttpOptions options;
  options.max_header_bytes = 4096;
  start(options);
  RawClient raw(port());
  raw.send("GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n");
  const auto text = raw.read_to_close();
  EXPECT_EQ(status_of(text), 431) << text.substr(0, 200);
  EXPECT_NE(text.find("\"code\":\"header_too_large\""), std::string::npos);
  EXPECT_TRUE(raw.closed());
  EXPECT_EQ(stats().bad_requests, 1u);

  auto http = client();  // a header just below the limit passes
  auto got = http.Get("/echo", {{"X-Big", std::string(3000, 'a')}});
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
}

TEST_F(HttpServerTest, OversizedBodiesGet413WhetherAnnouncedOrChunked) {
  HttpOptions options;
  options.max_body_bytes = 64 * 1024;
  start(options);
  auto http = client();
  auto got = http.Post("/echo", std::string(200 * 1024, 'x'), "application/octet-stream");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 413);
  EXPECT_EQ(Json::parse(got->body)["error"]["code"], "body_too_large");

  {
    // Refused on the Content-Length alone, before any body byte.
    RawClient raw(port());
    raw.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000000\r\n\r\n");
    EXPECT_EQ(status_of(raw.read_to_close()), 413);
  }
  {
    RawClient raw(port());
    std::string chunked = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 20; ++i) {
      chunked += "1000\r\n" + std::string(4096, 'c') + "\r\n";
    }
    raw.send(chunked);
    EXPECT_EQ(status_of(raw.read_to_close()), 413);
  }
  {
    RawClient raw(port());  // a chunked body within the limit is served
    raw.send(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    const auto text = raw.read_responses(1);
    EXPECT_EQ(status_of(text), 200);
    EXPECT_NE(text.find("\"body\":\"abcde\""), std::string::npos) << text;
  }
  EXPECT_EQ(stats().responses_by_status[413], 3u);
}

TEST_F(HttpServerTest, BodiesBeingReceivedShareOneMemoryBudget) {
  HttpOptions options;
  options.max_body_bytes = 1024 * 1024;
  options.max_buffered_body_bytes = 100 * 1024;
  start(options);
  RawClient first(port());
  first.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 81920\r\n\r\n" +
             std::string(61440, 'a'));
  ASSERT_TRUE(poll_until([&] { return stats().body_bytes_buffered == 61440; }, 5s));
  // A second upload that would take the total past 100 KiB is refused; the first goes on.
  RawClient second(port());
  second.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 81920\r\n\r\n" +
              std::string(61440, 'b'));
  const auto refused = second.read_to_close();
  EXPECT_EQ(status_of(refused), 503) << refused.substr(0, 200);
  EXPECT_NE(refused.find("\"code\":\"server_busy\""), std::string::npos);
  first.send(std::string(20480, 'a'));
  const auto served = first.read_responses(1);
  EXPECT_EQ(status_of(served), 200);
  EXPECT_NE(served.find("\"body_size\":81920"), std::string::npos);
  EXPECT_EQ(stats().body_bytes_buffered, 0u);
}

TEST_F(HttpServerTest, GarbageAndSmugglingGet400AndClose) {
  start(HttpOptions{});
  for (const std::string& bytes : std::vector<std::string>{
           std::string("\x01\x02\x03\x04 garbage\r\n\r\n"),
           "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
           "GET / HTTP/1.1\r\n\r\n",  // no Host
           "GET /\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
       }) {
    RawClient raw(port());
    raw.send(bytes);
    const auto text = raw.read_to_close();
    EXPECT_EQ(status_of(text), 400) << bytes;
    EXPECT_TRUE(raw.closed()) << bytes;
    EXPECT_EQ(Json::parse(text.substr(text.find("\r\n\r\n") + 4))["error"]["code"], "bad_request");
  }
  EXPECT_EQ(stats().bad_requests, 6u);
  auto got = client().Get("/echo");  // still serving
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
}

TEST_F(HttpServerTest, UnsupportedMethodsVersionsAndExpectationsAreRefused) {
  start(HttpOptions{});
  const auto status_for = [this](const std::string& bytes) {
    RawClient raw(port());
    raw.send(bytes);
    return status_of(raw.read_to_close());
  };
  EXPECT_EQ(status_for("TRACE / HTTP/1.1\r\nHost: t\r\n\r\n"), 501);
  EXPECT_EQ(status_for("CONNECT a:1 HTTP/1.1\r\nHost: t\r\n\r\n"), 501);
  EXPECT_EQ(status_for("GET / HTTP/2.0\r\nHost: t\r\n\r\n"), 505);
  EXPECT_EQ(status_for("POST / HTTP/1.1\r\nHost: t\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n"),
            417);
  EXPECT_EQ(status_for("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: t\r\n\r\n"), 414);
}

TEST_F(HttpServerTest, BadPercentEncodingNulAndTraversalGet400) {
  start(HttpOptions{});
  const std::vector<std::pair<std::string, std::string>> cases{
      {"/echo/%zz", "bad_path_encoding"},    {"/echo/%4", "bad_path_encoding"},
      {"/echo/a%00b", "bad_path_encoding"},  {"/echo/%ff%fe", "bad_path_encoding"},
      {"/../etc/passwd", "path_traversal"},  {"/echo/%2e%2e/%2e%2e/etc", "path_traversal"},
      {"/echo%2F..%2Fx", "path_traversal"},  {"/echo?q=%", "bad_query_encoding"},
      {"/echo?q=%00", "bad_query_encoding"},
  };
  for (const auto& [target, code] : cases) {
    RawClient raw(port());
    raw.send("GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n");
    const auto text = raw.read_to_close();
    EXPECT_EQ(status_of(text), 400) << target;
    EXPECT_NE(text.find("\"code\":\"" + code + "\""), std::string::npos) << target << text;
  }
  EXPECT_EQ(stats().bad_requests, cases.size());
}

TEST_F(HttpServerTest, SlowlorisGets408AtTheWholeRequestDeadline) {
  HttpOptions options;
  options.request_timeout = 300ms;
  start(options);
  RawClient raw(port());
  ASSERT_TRUE(raw.send("GET /echo HTTP/1.1\r\nHost: t\r\n"));
  // One header byte every 50 ms for up to 5 s: each byte is progress, but the deadline is for
  // the whole request, so the server answers 408 and closes long before the drip ends.
  std::string text;
  for (int i = 0; i < 100 && !raw.closed(); ++i) {
    if (!raw.send("X")) {
      break;
    }
    text = raw.read(50ms, [](const std::string& t) { return !t.empty(); });
    if (!text.empty()) {
      break;
    }
  }
  text = raw.read_to_close();
  EXPECT_EQ(status_of(text), 408) << text;
  EXPECT_TRUE(raw.closed());
  EXPECT_EQ(stats().timeouts, 1u);

  RawClient silent(port());  // a connection that never sends is closed without an answer
  EXPECT_EQ(silent.read_to_close(), "");
  EXPECT_TRUE(silent.closed());
  EXPECT_EQ(stats().timeouts, 2u);
}

TEST_F(HttpServerTest, IdleKeptAliveConnectionsAreClosed) {
  HttpOptions options;
  options.idle_timeout = 200ms;
  start(options);
  RawClient raw(port());
  raw.send("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto text = raw.read_to_close();
  EXPECT_EQ(RawClient::complete(text), 1u);
  EXPECT_TRUE(raw.closed());
  EXPECT_EQ(stats().timeouts, 1u);
  EXPECT_TRUE(poll_until([&] { return stats().connections_open == 0; }, 2s));
}

TEST_F(HttpServerTest, AClientThatDoesNotReadIsCutOffAtTheWriteDeadline) {
  HttpOptions options;
  options.write_timeout = 300ms;
  start(options);
  RawClient raw(port());
  const int small = 4096;
  ASSERT_EQ(::setsockopt(raw.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  // 64 MiB cannot sit in the socket buffers of a client that reads nothing.
  raw.send("GET /big?bytes=67108864 HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_TRUE(poll_until([&] { return stats().timeouts == 1; }, 5s));
  EXPECT_TRUE(poll_until([&] { return stats().connections_open == 0; }, 5s));
}

TEST_F(HttpServerTest, TheLastRequestOfAConnectionClosesIt) {
  HttpOptions options;
  options.max_requests_per_connection = 2;
  start(options);
  RawClient raw(port());
  raw.send(
      "GET /echo HTTP/1.1\r\nHost: t\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto text = raw.read_to_close();
  EXPECT_EQ(RawClient::complete(text), 2u);
  EXPECT_TRUE(raw.closed());
  EXPECT_EQ(text.find("Connection: close"), text.rfind("Connection: close"));
  EXPECT_NE(text.find("Connection: close"), std::string::npos);
}

TEST_F(HttpServerTest, ExpectContinueIsAnsweredBeforeTheBody) {
  HttpOptions options;
  options.max_body_bytes = 100;
  start(options);
  RawClient raw(port());
  raw.send("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  auto text = raw.read(5s, [](const std::string& t) { return t.find("\r\n\r\n") != t.npos; });
  EXPECT_EQ(text, "HTTP/1.1 100 Continue\r\n\r\n");
  raw.send("body");
  text = raw.read_responses(2);
  EXPECT_NE(text.find("\"body\":\"body\""), std::string::npos) << text;

  RawClient big(port());  // too large: the final answer comes at once, no 100
  big.send(
      "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n");
  const auto refused = big.read_to_close();
  EXPECT_EQ(status_of(refused), 413) << refused;
}

TEST_F(HttpServerTest, ThousandIdleConnectionsDoNotKeepOthersFromBeingServed) {
  rlimit files{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &files), 0);
  if (files.rlim_cur < 4096) {
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, 4096);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &files), 0);
  }
  ASSERT_GE(files.rlim_cur, 2100u) << "needs descriptors for both ends of 1000 connections";
  HttpOptions options;
  options.max_connections = 1100;
  start(options);
  const auto rss_kib = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.starts_with("VmRSS:")) {
        return std::stol(line.substr(6));
      }
    }
    return 0L;
  };
  ASSERT_EQ(client().Get("/echo")->status, 200);  // warm up
  const long before = rss_kib();
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 1000; ++i) {
    idle.push_back(std::make_unique<RawClient>(port()));
  }
  ASSERT_TRUE(poll_until([&] { return stats().connections_open == 1000; }, 5s))
      << stats().connections_open;
  const long after = rss_kib();
  auto got = client().Get("/echo");
  ASSERT_TRUE(got) << httplib::to_string(got.error());
  EXPECT_EQ(got->status, 200);
  // Both ends live in this process; the client's sockets cost no user memory.
  std::printf("RSS for 1000 idle connections: %ld KiB (%.1f KiB per connection)\n", after - before,
              static_cast<double>(after - before) / 1000.0);
  EXPECT_LT(after - before, 64 * 1024) << "an idle connection should cost a few KiB, not more";
  EXPECT_EQ(stats().connections_rejected, 0u);
}

TEST_F(HttpServerTest, RateLimitAnswers429WithRetryAfter) {
  HttpOptions options;
  options.rate_per_second = 0.01;  // no token comes back during the test, however slow it runs
  options.rate_burst = 3;
  start(options);
  auto http = client();
  http.set_keep_alive(true);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(http.Get("/echo")->status, 200);
  }
  auto limited = http.Get("/echo");
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  EXPECT_GE(std::stoi(limited->get_header_value("Retry-After")), 1);
  EXPECT_EQ(Json::parse(limited->body)["error"]["code"], "rate_limited");
  EXPECT_EQ(http.Get("/echo")->status, 429);  // same connection, still limited
  const auto counted = stats();
  EXPECT_EQ(counted.rate_limited, 2u);
  EXPECT_EQ(counted.connections_accepted, 1u);  // 429 keeps a bodiless request's connection
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  HttpOptions options;
  options.max_connections = 2;
  start(options);
  auto first = std::make_unique<RawClient>(port());
  RawClient second(port());
  ASSERT_TRUE(poll_until([&] { return stats().connections_open == 2; }, 5s));
  RawClient third(port());
  EXPECT_EQ(third.read_to_close(), "");
  EXPECT_TRUE(third.closed());
  EXPECT_EQ(stats().connections_rejected, 1u);

  first.reset();
  ASSERT_TRUE(poll_until([&] { return stats().connections_open == 1; }, 5s));
  RawClient fourth(port());
  fourth.send("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(status_of(fourth.read_responses(1)), 200);
}

TEST_F(HttpServerTest, AThrowingHandlerGets500JsonAndTheConnectionLives) {
  start(HttpOptions{});
  auto http = client();
  http.set_keep_alive(true);
  auto got = http.Get("/throw");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 500);
  EXPECT_EQ(Json::parse(got->body)["error"]["code"], "internal");
  EXPECT_EQ(got->body.find("boom"), std::string::npos);  // no internals to the client
  auto invalid = http.Get("/bad-header");
  ASSERT_TRUE(invalid);
  EXPECT_EQ(invalid->status, 500);
  EXPECT_FALSE(invalid->has_header("Set-Cookie"));
  EXPECT_EQ(http.Get("/echo")->status, 200);
  EXPECT_EQ(stats().handler_errors, 2u);
  EXPECT_EQ(stats().connections_accepted, 1u);
}

TEST_F(HttpServerTest, AClientThatGoesAwayCancelsItsHandler) {
  start(HttpOptions{});
  const int cancelled = g_cancelled;
  {
    RawClient raw(port());
    raw.send("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
    ASSERT_TRUE(poll_until([] { return g_waiting > 0; }, 5s));
  }
  EXPECT_TRUE(poll_until([&] { return g_cancelled == cancelled + 1; }, 5s));
  EXPECT_TRUE(poll_until([&] { return stats().connections_open == 0; }, 5s));
}

TEST_F(HttpServerTest, StopFinishesResponsesInFlightAndClosesTheRest) {
  start(HttpOptions{});
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 5; ++i) {
    idle.push_back(std::make_unique<RawClient>(port()));
  }
  RawClient busy(port());
  busy.send("GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n");
  RawClient hung(port());
  hung.send("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_TRUE(poll_until([] { return g_waiting == 2; }, 5s));
  const int cancelled = g_cancelled;

  stop(Deadline::after(2s));
  // The slow request finished within the deadline and was told the connection closes; the hung
  // one was cancelled at the deadline; idle connections were closed.
  const auto slow = busy.read_to_close();
  EXPECT_EQ(status_of(slow), 200) << slow;
  EXPECT_NE(slow.find("Connection: close"), std::string::npos);
  EXPECT_NE(slow.find("\"waited\":true"), std::string::npos);
  hung.read_to_close();
  EXPECT_TRUE(hung.closed());
  EXPECT_EQ(g_cancelled, cancelled + 1);
  for (auto& connection : idle) {
    EXPECT_EQ(connection->read_to_close(), "");
    EXPECT_TRUE(connection->closed());
  }
  EXPECT_EQ(g_waiting, 0);
  EXPECT_EQ(stats().connections_open, 0u);
  // Nothing listens any more.
  EXPECT_THROW(RawClient{port()}, std::runtime_error);
}

TEST_F(HttpServerTest, DestroyingTheServerWithoutStopClosesEverything) {
  start(HttpOptions{});
  RawClient idle(port());
  RawClient hung(port());
  hung.send("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_TRUE(poll_until([] { return g_waiting == 1; }, 5s));
  const int cancelled = g_cancelled;
  std::promise<void> destroyed;
  asio::post(io_, [&] {
    server_.reset();
    destroyed.set_value();
  });
  destroyed.get_future().wait();
  stopped_ = true;
  // The handler was cancelled, both connections closed, the coroutines ended on the loop (ASan
  // would see a frame or socket outliving the server's state).
  EXPECT_TRUE(poll_until([&] { return g_cancelled == cancelled + 1; }, 5s));
  EXPECT_EQ(idle.read_to_close(), "");
  hung.read_to_close();
  EXPECT_TRUE(hung.closed());
  EXPECT_TRUE(poll_until([] { return g_waiting == 0; }, 5s));
}

TEST_F(HttpServerTest, StartFailsOnABusyPortAndABadAddress) {
  start(HttpOptions{});
  HttpOptions same;
  same.port = port();
  HttpServer second(io_.get_executor(), same, route);
  auto started = second.start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, std::errc::address_in_use);

  HttpOptions bad;
  bad.address = "not-an-address";
  HttpServer third(io_.get_executor(), bad, route);
  EXPECT_FALSE(third.start());

  HttpOptions half_tls;
  half_tls.tls_cert = "/nonexistent.pem";
  HttpServer fourth(io_.get_executor(), half_tls, route);
  EXPECT_FALSE(fourth.start());
}

// A self-signed certificate for 127.0.0.1 made by the openssl CLI.
struct Certificate {
  test::TempDir dir{"healer-http-tls-"};
  std::filesystem::path cert = dir.path() / "cert.pem";
  std::filesystem::path key = dir.path() / "key.pem";

  Certificate() {
    const auto made = test::run_command(
        {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key.string(), "-out", cert.string()});
    if (made.exit_code() != 0) {
      throw std::runtime_error("openssl req failed: " + made.err);
    }
  }
};

TEST_F(HttpServerTest, TlsRoundTripAndPlainHttpToTheTlsPortFailsCleanly) {
  const Certificate certificate;
  HttpOptions options;
  options.tls_cert = certificate.cert;
  options.tls_key = certificate.key;
  options.tls_handshake_timeout = 1s;  // real handshakes finish well within it, even under ASan
  start(options);

  httplib::SSLClient https("127.0.0.1", port());
  https.set_ca_cert_path(certificate.cert.string());
  https.enable_server_certificate_verification(true);
  https.set_keep_alive(true);
  https.set_read_timeout(5s);
  for (int i = 0; i < 3; ++i) {
    auto got = https.Post("/echo?x=1", "payload", "text/plain");
    ASSERT_TRUE(got) << httplib::to_string(got.error());
    EXPECT_EQ(got->status, 200);
    const auto body = Json::parse(got->body);
    EXPECT_EQ(body["tls"], true);
    EXPECT_EQ(body["body"], "payload");
  }
  EXPECT_EQ(stats().connections_accepted, 1u);

  auto plain = client().Get("/echo");  // plain HTTP to the TLS port: a clear 400, then close
  ASSERT_TRUE(plain) << httplib::to_string(plain.error());
  EXPECT_EQ(plain->status, 400);
  EXPECT_EQ(Json::parse(plain->body)["error"]["code"], "tls_required");

  {
    RawClient silent(port());  // no ClientHello: closed at the handshake deadline
    EXPECT_EQ(silent.read_to_close(), "");
    EXPECT_TRUE(silent.closed());
  }
  const auto counted = stats();
  EXPECT_EQ(counted.tls_handshake_failures, 2u);
  EXPECT_EQ(counted.timeouts, 1u);

  // TLS 1.1 is refused (the client is told to allow it); TLS 1.2 and 1.3 are served.
  const auto negotiated = [&](const std::string& version) {
    const auto out =
        test::run_command({"sh", "-c",
                           "echo | openssl s_client -connect 127.0.0.1:" + std::to_string(port()) +
                               " " + version + " -CAfile " + certificate.cert.string() + " 2>&1"})
            .out;
    return out.find("Cipher is (NONE)") == std::string::npos &&
           out.find("Verify return code: 0 (ok)") != std::string::npos;
  };
  EXPECT_TRUE(negotiated("-tls1_2"));
  EXPECT_TRUE(negotiated("-tls1_3"));
  EXPECT_FALSE(negotiated("-tls1_1 -cipher DEFAULT@SECLEVEL=0"));

  auto again = https.Get("/echo");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

TEST_F(HttpServerTest, TlsConnectionsHaveTheSameDeadlines) {
  const Certificate certificate;
  HttpOptions options;
  options.tls_cert = certificate.cert;
  options.tls_key = certificate.key;
  options.request_timeout = 300ms;
  start(options);
  asio::io_context client_io;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.load_verify_file(certificate.cert.string());
  context.set_verify_mode(asio::ssl::verify_peer);
  const auto connect = [&] {
    auto stream = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(client_io, context);
    stream->next_layer().connect({asio::ip::make_address("127.0.0.1"), port()});
    stream->handshake(asio::ssl::stream_base::client);
    return stream;
  };
  const auto read_all = [](asio::ssl::stream<asio::ip::tcp::socket>& stream) {
    std::string text;
    std::array<char, 4096> chunk{};
    std::error_code ec;
    while (!ec) {
      const auto n = stream.read_some(asio::buffer(chunk), ec);
      text.append(chunk.data(), n);
    }
    return text;
  };
  // Half a request: 408 at the request deadline, then close.
  auto slow = connect();
  asio::write(*slow, asio::buffer(std::string_view("GET /echo HTTP/1.1\r\nHost: t\r\n")));
  EXPECT_EQ(status_of(read_all(*slow)), 408);
  // Nothing after the handshake: closed without an answer.
  auto silent = connect();
  EXPECT_EQ(read_all(*silent), "");
  EXPECT_EQ(stats().timeouts, 2u);
  EXPECT_EQ(stats().tls_handshake_failures, 0u);
}

TEST_F(HttpServerTest, CurlTalksToIt) {
  start(HttpOptions{});
  const auto got =
      test::run_command({"curl", "-sS", "--max-time", "5", "-i",
                         "http://127.0.0.1:" + std::to_string(port()) + "/echo/curl?a=%C3%A9"});
  ASSERT_EQ(got.exit_code(), 0) << got.err;
  EXPECT_EQ(status_of(got.out), 200) << got.out;
  EXPECT_NE(got.out.find("\"path\":\"/echo/curl\""), std::string::npos);
  EXPECT_NE(got.out.find("\"a\":\"\xc3\xa9\""), std::string::npos) << got.out;
}

}  // namespace
}  // namespace healer::daemon
