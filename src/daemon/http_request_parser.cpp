#include "http_request_parser.hpp"

#include <http_parser.h>

#include <algorithm>
#include <climits>
#include <utility>

namespace healer::daemon {

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  const auto hex = [](char c) -> int {
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
  };
  std::string decoded;
  decoded.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {
        return std::nullopt;
      }
      const int high = hex(text[i + 1]);
      const int low = hex(text[i + 2]);
      if (high < 0 || low < 0) {
        return std::nullopt;
      }
      const char byte = static_cast<char>(high * 16 + low);
      if (byte == '\0') {
        return std::nullopt;
      }
      decoded.push_back(byte);
      i += 2;
    } else if (c == '\0') {
      return std::nullopt;
    } else if (c == '+' && plus_is_space) {
      decoded.push_back(' ');
    } else {
      decoded.push_back(c);
    }
  }
  return decoded;
}

std::string HttpRequest::header(std::string_view name) const {
  std::string lower(name);
  for (auto& c : lower) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  const auto found = headers.find(lower);
  return found == headers.end() ? std::string() : found->second;
}

std::optional<std::string> HttpRequest::param(std::string_view name) const {
  const auto found = query.find(name);
  if (found == query.end()) {
    return std::nullopt;
  }
  return found->second;
}

namespace detail {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

Rejection make_rejection(int status, std::string code, std::string message) {
  return Rejection{status, std::move(code), std::move(message)};
}

}  // namespace

struct RequestParser::State {
  http_parser parser{};
  RequestParser* owner = nullptr;
};

// The http_parser callbacks; a non-zero return stops the parser with HPE_CB_<name>.
struct Callbacks {
  static RequestParser& owner(http_parser* parser) {
    return *static_cast<RequestParser::State*>(parser->data)->owner;
  }

  static int on_url(http_parser* parser, const char* at, std::size_t length) {
    auto& self = owner(parser);
    if (self.head_.target.size() + length > self.limits_.max_url_bytes) {
      self.fail(414, "uri_too_long", "the request target is too long");
      return 1;
    }
    self.head_.target.append(at, length);
    return 0;
  }

  static int on_header_field(http_parser* parser, const char* at, std::size_t length) {
    auto& self = owner(parser);
    if (self.in_value_) {
      self.commit_header();
      if (self.event_ == ParseEvent::failed) {
        return 1;
      }
      self.in_value_ = false;
    }
    self.field_.append(at, length);
    return 0;
  }

  static int on_header_value(http_parser* parser, const char* at, std::size_t length) {
    auto& self = owner(parser);
    self.in_value_ = true;
    self.value_.append(at, length);
    return 0;
  }

  static int on_headers_complete(http_parser* parser) {
    auto& self = owner(parser);
    self.commit_header();
    if (self.event_ == ParseEvent::failed) {
      return -1;
    }
    auto& head = self.head_;
    head.method = http_method_str(static_cast<http_method>(parser->method));
    head.http_major = parser->http_major;
    head.http_minor = parser->http_minor;
    head.keep_alive = http_should_keep_alive(parser) != 0;
    head.chunked = (parser->flags & F_CHUNKED) != 0;
    head.upgrade = parser->upgrade != 0;
    head.content_length =
        (head.chunked || parser->content_length == ULLONG_MAX) ? 0 : parser->content_length;
    if (const auto expect = head.headers.find("expect"); expect != head.headers.end()) {
      head.expect_continue = to_lower(expect->second) == "100-continue";
    }
    self.headers_done_ = true;
    if (head.content_length > self.limits_.max_body_bytes) {
      self.fail(413, "body_too_large", "the request body is larger than the server accepts");
      return -1;
    }
    self.event_ = ParseEvent::headers_complete;
    http_parser_pause(parser, 1);
    return 0;
  }

  static int on_body(http_parser* parser, const char* at, std::size_t length) {
    auto& self = owner(parser);
    if (self.body_.size() + length > self.limits_.max_body_bytes) {
      self.fail(413, "body_too_large", "the request body is larger than the server accepts");
      return 1;
    }
    self.body_.append(at, length);
    return 0;
  }

  static int on_message_complete(http_parser* parser) {
    auto& self = owner(parser);
    self.event_ = ParseEvent::message_complete;
    http_parser_pause(parser, 1);
    return 0;
  }

  static const http_parser_settings& settings() {
    static const http_parser_settings instance = [] {
      http_parser_settings s{};
      http_parser_settings_init(&s);
      s.on_url = &Callbacks::on_url;
      s.on_header_field = &Callbacks::on_header_field;
      s.on_header_value = &Callbacks::on_header_value;
      s.on_headers_complete = &Callbacks::on_headers_complete;
      s.on_body = &Callbacks::on_body;
      s.on_message_complete = &Callbacks::on_message_complete;
      return s;
    }();
    return instance;
  }
};

RequestParser::RequestParser(ParseLimits limits)
    : limits_(limits), state_(std::make_unique<State>()) {
  // http_parser_url keeps 16-bit offsets.
  limits_.max_url_bytes = std::min<std::size_t>(limits_.max_url_bytes, UINT16_MAX);
  state_->owner = this;
  reset();
}

RequestParser::~RequestParser() = default;

void RequestParser::reset() {
  http_parser_init(&state_->parser, HTTP_REQUEST);
  state_->parser.data = state_.get();
  event_ = ParseEvent::need_more;
  rejection_ = Rejection{};
  head_ = RequestHead{};
  body_.clear();
  field_.clear();
  value_.clear();
  in_value_ = false;
  started_ = false;
  headers_done_ = false;
  header_bytes_ = 0;
}

void RequestParser::fail(int status, std::string code, std::string message) {
  if (event_ == ParseEvent::failed) {
    return;
  }
  event_ = ParseEvent::failed;
  rejection_ = make_rejection(status, std::move(code), std::move(message));
}

void RequestParser::commit_header() {
  if (field_.empty()) {
    return;
  }
  // RFC 9112 5.1: no whitespace inside or before the colon (http_parser lets a space through).
  static constexpr std::string_view kTokenSpecials = "!#$%&'*+-.^_`|~";
  for (const char c : field_) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && kTokenSpecials.find(c) == std::string_view::npos) {
      fail(400, "bad_request", "malformed request: invalid character in a header name");
      return;
    }
  }
  auto name = to_lower(field_);
  const auto value = trim(value_);
  auto [at, inserted] = head_.headers.try_emplace(std::move(name), value);
  if (!inserted) {
    // Two Host fields make the target ambiguous (RFC 9112 3.2); other fields are lists.
    if (at->first == "host") {
      fail(400, "bad_request", "more than one Host header");
    } else {
      at->second.append(", ").append(value);
    }
  }
  field_.clear();
  value_.clear();
}

std::size_t RequestParser::feed(std::string_view bytes) {
  if (event_ == ParseEvent::failed || bytes.empty()) {
    return 0;
  }
  event_ = ParseEvent::need_more;
  std::size_t length = bytes.size();
  if (!headers_done_) {
    // The head may not exceed max_header_bytes: never give the parser more than the room left.
    if (header_bytes_ >= limits_.max_header_bytes) {
      fail(431, "header_too_large", "the request line and headers are too large");
      return 0;
    }
    length = std::min(length, limits_.max_header_bytes - header_bytes_);
  }
  auto& parser = state_->parser;
  const std::size_t consumed =
      http_parser_execute(&parser, &Callbacks::settings(), bytes.data(), length);
  if (consumed > 0) {
    started_ = true;
  }
  if (!headers_done_ || event_ == ParseEvent::headers_complete) {
    header_bytes_ += consumed;
  }
  const auto error = static_cast<http_errno>(parser.http_errno);
  if (event_ == ParseEvent::failed) {
    return consumed;  // a callback refused (limits)
  }
  if (error != HPE_OK && error != HPE_PAUSED) {
    fail(error == HPE_HEADER_OVERFLOW ? 431 : 400, "bad_request",
         std::string("malformed request: ") + http_errno_description(error));
    return consumed;
  }
  if (event_ == ParseEvent::need_more && consumed < length) {
    // http_parser stops short only on an upgrade, after message_complete (handled above).
    fail(400, "bad_request", "malformed request");
  }
  return consumed;
}

void RequestParser::resume() {
  if (event_ != ParseEvent::headers_complete) {
    return;
  }
  event_ = ParseEvent::need_more;
  http_parser_pause(&state_->parser, 0);
}

Rejection RequestParser::check_head() const {
  static constexpr std::string_view kMethods[] = {"GET",   "HEAD",   "POST",   "PUT",
                                                  "PATCH", "DELETE", "OPTIONS"};
  if (std::find(std::begin(kMethods), std::end(kMethods), head_.method) == std::end(kMethods)) {
    return make_rejection(501, "method_not_implemented",
                          "the server does not implement this method");
  }
  if (head_.http_major != 1) {
    return make_rejection(505, "http_version_not_supported",
                          "only HTTP/1.0 and HTTP/1.1 are served");
  }
  if (head_.http_minor >= 1 && !head_.headers.contains("host")) {
    return make_rejection(400, "bad_request", "an HTTP/1.1 request needs a Host header");
  }
  if (const auto expect = head_.headers.find("expect");
      expect != head_.headers.end() && !head_.expect_continue) {
    return make_rejection(417, "expectation_failed", "only Expect: 100-continue is supported");
  }
  return Rejection{0, {}, {}};
}

bool valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t extra = 0;
    std::uint32_t code = 0;
    std::uint32_t minimum = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      code = c & 0x1Fu;
      minimum = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      code = c & 0x0Fu;
      minimum = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      code = c & 0x07u;
      minimum = 0x10000;
    } else {
      return false;
    }
    if (text.size() - i <= extra) {
      return false;
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) {
        return false;
      }
      code = (code << 6) | (next & 0x3Fu);
    }
    if (code < minimum || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool build_request(const RequestHead& head, std::string body, HttpRequest& request,
                   Rejection& refusal) {
  http_parser_url url{};
  http_parser_url_init(&url);
  if (head.target.empty() || head.target.size() > UINT16_MAX ||
      http_parser_parse_url(head.target.data(), head.target.size(), 0, &url) != 0) {
    refusal = make_rejection(400, "bad_target", "the request target is not a valid path");
    return false;
  }
  const auto field = [&](int which) -> std::string_view {
    if ((url.field_set & (1u << which)) == 0) {
      return {};
    }
    return std::string_view(head.target)
        .substr(url.field_data[which].off, url.field_data[which].len);
  };
  std::string_view raw_path = field(UF_PATH);
  if (raw_path.empty()) {
    raw_path = "/";
  }
  if (raw_path.front() != '/') {
    refusal = make_rejection(400, "bad_target", "the request target is not a valid path");
    return false;
  }
  auto path = percent_decode(raw_path, false);
  if (!path || !valid_utf8(*path)) {
    refusal = make_rejection(400, "bad_path_encoding",
                             "the path has a malformed percent-escape, a NUL or invalid UTF-8");
    return false;
  }
  // ".." after decoding, whatever the encoding ("%2e%2e", "%2F..%2F"): never a way out of a root.
  for (std::size_t start = 0; start <= path->size();) {
    const auto end = std::min(path->find('/', start), path->size());
    if (std::string_view(*path).substr(start, end - start) == "..") {
      refusal = make_rejection(400, "path_traversal", "the path contains a \"..\" segment");
      return false;
    }
    start = end + 1;
  }

  std::map<std::string, std::string, std::less<>> query;
  std::string_view rest = field(UF_QUERY);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const auto pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    const auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = percent_decode(
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
    if (!key || !value || !valid_utf8(*key) || !valid_utf8(*value)) {
      refusal = make_rejection(400, "bad_query_encoding",
                               "the query has a malformed percent-escape, a NUL or invalid UTF-8");
      return false;
    }
    query.insert_or_assign(std::move(*key), std::move(*value));
  }

  request.head = head.method == "HEAD";
  request.method = request.head ? "GET" : head.method;
  request.path = std::move(*path);
  request.raw_target = head.target;
  request.query = std::move(query);
  request.headers = head.headers;
  request.body = std::move(body);
  return true;
}

}  // namespace detail
}  // namespace healer::daemon
