#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "healer/daemon/http.hpp"

// The request side of the HTTP server without any I/O: bytes in, a request head, body and
// verdict out. Wraps Debian's nodejs http-parser (whose types stay in the .cpp) and adds the
// limits, the target's decoding and the checks a request must pass before a handler sees it.
// Pure, so the fuzz target and unit tests drive it directly.
namespace healer::daemon::detail {

/// Sizes a request may not exceed.
struct ParseLimits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_url_bytes = 8 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
};

/// A refusal the server sends instead of calling the handler.
struct Rejection {
  int status = 400;
  std::string code;     ///< stable, for the JSON body ("header_too_large")
  std::string message;  ///< one line, never echoes request bytes
};

/// What feed() stopped at.
enum class ParseEvent {
  need_more,         ///< every byte given was consumed; more are needed
  headers_complete,  ///< the head is in; inspect it, then resume() before feeding the body
  message_complete,  ///< the whole request is in; bytes after it belong to the next request
  failed,            ///< rejection() says why; the connection must be closed after answering
};

/// The request head as received (before the target is decoded).
struct RequestHead {
  std::string method;
  std::string target;
  std::map<std::string, std::string, std::less<>> headers;  ///< lower-case names
  unsigned http_major = 1;
  unsigned http_minor = 1;
  bool keep_alive = true;            ///< http_should_keep_alive(): version and Connection header
  bool chunked = false;              ///< Transfer-Encoding: chunked
  std::uint64_t content_length = 0;  ///< 0 when absent or chunked
  bool expect_continue = false;      ///< Expect: 100-continue (HTTP/1.1 only)
  bool upgrade = false;              ///< Upgrade / CONNECT: the connection closes after the answer
};

/// One connection's parser: feed bytes, it stops at the end of the head and of the message.
class RequestParser {
 public:
  explicit RequestParser(ParseLimits limits);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  /// Forgets the previous request; call before each request of a connection.
  void reset();
  /// Parses a prefix of `bytes` and returns how many were consumed; event() says why it stopped.
  /// After headers_complete, call resume() (or answer and close); after message_complete, reset().
  std::size_t feed(std::string_view bytes);
  /// Continues after headers_complete; fails with 413 when the announced body is too large.
  void resume();

  [[nodiscard]] ParseEvent event() const noexcept { return event_; }
  /// True once a byte of the current request was consumed (leading blank lines included).
  [[nodiscard]] bool started() const noexcept { return started_; }
  [[nodiscard]] const Rejection& rejection() const noexcept { return rejection_; }
  [[nodiscard]] const RequestHead& head() const noexcept { return head_; }
  [[nodiscard]] std::string& body() noexcept { return body_; }

  /// Checks a complete head (method, version, Host, Expect) and returns a rejection, or an
  /// empty code when the request may proceed. Called by the server at headers_complete.
  [[nodiscard]] Rejection check_head() const;

 private:
  struct State;
  friend struct Callbacks;

  void fail(int status, std::string code, std::string message);
  void commit_header();

  ParseLimits limits_;
  std::unique_ptr<State> state_;  // the http_parser struct, kept out of this header
  ParseEvent event_ = ParseEvent::need_more;
  Rejection rejection_;
  RequestHead head_;
  std::string body_;
  std::string field_;  // the header name being received
  std::string value_;  // and its value
  bool in_value_ = false;
  bool started_ = false;
  bool headers_done_ = false;
  std::size_t header_bytes_ = 0;
};

/// Turns a parsed head and body into what the handler sees: decodes the target (path and
/// query), refusing malformed escapes, NUL, invalid UTF-8 and ".." segments with a 400.
/// Returns false and fills `rejection` on refusal.
bool build_request(const RequestHead& head, std::string body, HttpRequest& request,
                   Rejection& rejection);

/// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
[[nodiscard]] bool valid_utf8(std::string_view text) noexcept;

}  // namespace healer::daemon::detail
