#include "http_request_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "healer/daemon/http.hpp"

namespace healer::daemon {
namespace {

using detail::ParseEvent;
using detail::ParseLimits;
using detail::Rejection;
using detail::RequestParser;

ParseLimits small_limits() {
  ParseLimits limits;
  limits.max_header_bytes = 256;
  limits.max_url_bytes = 64;
  limits.max_body_bytes = 16;
  return limits;
}

// Feeds `bytes` in pieces of `step`, resuming at the end of the head; returns the final event.
ParseEvent feed_all(RequestParser& parser, std::string_view bytes, std::size_t step = 1) {
  std::size_t offset = 0;
  while (offset < bytes.size()) {
    const auto piece = bytes.substr(offset, std::min(step, bytes.size() - offset));
    const auto consumed = parser.feed(piece);
    offset += consumed;
    switch (parser.event()) {
      case ParseEvent::headers_complete:
        parser.resume();
        break;
      case ParseEvent::message_complete:
      case ParseEvent::failed:
        return parser.event();
      case ParseEvent::need_more:
        if (consumed == 0) {
          return ParseEvent::failed;
        }
        break;
    }
  }
  return parser.event();
}

TEST(PercentDecode, DecodesEscapesAndPlus) {
  EXPECT_EQ(percent_decode("/web%201", false), "/web 1");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("a+b%2B", true), "a b+");
  EXPECT_EQ(percent_decode("%e2%82%AC", false), "\xe2\x82\xac");
  EXPECT_EQ(percent_decode("", false), "");
}

TEST(PercentDecode, RefusesMalformedEscapesAndNul) {
  EXPECT_FALSE(percent_decode("%", false));
  EXPECT_FALSE(percent_decode("%4", false));
  EXPECT_FALSE(percent_decode("abc%", false));
  EXPECT_FALSE(percent_decode("%zz", false));
  EXPECT_FALSE(percent_decode("%0g", false));
  EXPECT_FALSE(percent_decode("a%00b", false));
  EXPECT_FALSE(percent_decode(std::string_view("a\0b", 3), false));
}

TEST(Utf8, AcceptsWellFormedRefusesTheRest) {
  EXPECT_TRUE(detail::valid_utf8("plain"));
  EXPECT_TRUE(detail::valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  EXPECT_FALSE(detail::valid_utf8("\xff"));
  EXPECT_FALSE(detail::valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(detail::valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(detail::valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(detail::valid_utf8("\xe2\x82"));          // cut
}

TEST(RequestParser, ParsesAHeadAndBodyByteByByte) {
  RequestParser parser(small_limits());
  const std::string request =
      "POST /a/b%20c?x=1&y=%41+B&x=2&flag HTTP/1.1\r\nHost: h\r\nX-Two: a\r\nx-two: b\r\n"
      "Content-Length: 5\r\n\r\nhello";
  ASSERT_EQ(feed_all(parser, request), ParseEvent::message_complete);
  const auto& head = parser.head();
  EXPECT_EQ(head.method, "POST");
  EXPECT_EQ(head.headers.at("x-two"), "a, b");
  EXPECT_EQ(head.content_length, 5u);
  EXPECT_TRUE(head.keep_alive);
  EXPECT_EQ(parser.body(), "hello");

  HttpRequest request_out;
  Rejection refusal;
  ASSERT_TRUE(detail::build_request(head, parser.body(), request_out, refusal));
  EXPECT_EQ(request_out.path, "/a/b c");
  EXPECT_EQ(request_out.query.at("x"), "2");
  EXPECT_EQ(request_out.query.at("y"), "A B");
  EXPECT_EQ(request_out.query.at("flag"), "");
  EXPECT_EQ(request_out.param("y"), "A B");
  EXPECT_FALSE(request_out.param("nope"));
  EXPECT_EQ(request_out.header("X-TWO"), "a, b");
}

TEST(RequestParser, StopsAtTheEndOfEachPipelinedRequest) {
  RequestParser parser(small_limits());
  const std::string two = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
  std::size_t offset = parser.feed(two);
  ASSERT_EQ(parser.event(), ParseEvent::headers_complete);
  parser.resume();
  offset += parser.feed(std::string_view(two).substr(offset));
  ASSERT_EQ(parser.event(), ParseEvent::message_complete);
  EXPECT_EQ(parser.head().target, "/1");
  EXPECT_EQ(two.substr(offset), "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
  parser.reset();
  EXPECT_EQ(feed_all(parser, std::string_view(two).substr(offset), 1000),
            ParseEvent::message_complete);
  EXPECT_EQ(parser.head().target, "/2");
}

TEST(RequestParser, RefusesAHeadOverTheLimitWith431) {
  RequestParser parser(small_limits());
  const std::string request =
      "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(300, 'a') + "\r\n\r\n";
  EXPECT_EQ(feed_all(parser, request, 4096), ParseEvent::failed);
  EXPECT_EQ(parser.rejection().status, 431);
}

TEST(RequestParser, AcceptsAHeadOfExactlyTheLimit) {
  std::string request = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  const std::string end = "\r\n\r\n";
  request += std::string(256 - request.size() - end.size(), 'a') + end;
  ASSERT_EQ(request.size(), 256u);
  RequestParser parser(small_limits());
  EXPECT_EQ(feed_all(parser, request, 4096), ParseEvent::message_complete);
}

TEST(RequestParser, RefusesALongTargetWith414) {
  RequestParser parser(small_limits());
  EXPECT_EQ(feed_all(parser, "GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n", 4096),
            ParseEvent::failed);
  EXPECT_EQ(parser.rejection().status, 414);
}

TEST(RequestParser, RefusesAnAnnouncedBodyOverTheLimitAtTheHead) {
  RequestParser parser(small_limits());
  // No body byte is sent: the refusal comes from the Content-Length alone.
  EXPECT_EQ(feed_all(parser, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000000000\r\n\r\n"),
            ParseEvent::failed);
  EXPECT_EQ(parser.rejection().status, 413);
}

TEST(RequestParser, DecodesChunkedBodiesWithinTheLimit) {
  RequestParser parser(small_limits());
  EXPECT_EQ(feed_all(parser,
                     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"),
            ParseEvent::message_complete);
  EXPECT_EQ(parser.body(), "helloabc");
  EXPECT_TRUE(parser.head().chunked);

  RequestParser over(small_limits());
  EXPECT_EQ(feed_all(over,
                     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n"),
            ParseEvent::failed);
  EXPECT_EQ(over.rejection().status, 413);
}

TEST(RequestParser, RefusesSmugglingShapes) {
  for (const std::string& request : std::vector<std::string>{
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
           "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nBad Name: b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n",
           std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 35),
           "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
       }) {
    RequestParser parser(small_limits());
    EXPECT_EQ(feed_all(parser, request, 4096), ParseEvent::failed) << request;
    EXPECT_EQ(parser.rejection().status, 400) << request;
  }
}

TEST(RequestParser, ChecksMethodVersionHostAndExpect) {
  const auto check = [](const std::string& request) {
    RequestParser parser(small_limits());
    parser.feed(request);
    EXPECT_EQ(parser.event(), ParseEvent::headers_complete) << request;
    return parser.check_head().status;
  };
  EXPECT_EQ(check("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
  EXPECT_EQ(check("GET / HTTP/1.0\r\n\r\n"), 0);
  EXPECT_EQ(check("GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(check("TRACE / HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
  EXPECT_EQ(check("MKCOL / HTTP/1.1\r\nHost: h\r\n\r\n"), 501);
  EXPECT_EQ(check("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
  EXPECT_EQ(check("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n"), 0);
  EXPECT_EQ(check("POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n"), 417);
}

TEST(RequestParser, KeepAliveFollowsVersionAndConnection) {
  const auto keep_alive = [](const std::string& request) {
    RequestParser parser(small_limits());
    parser.feed(request);
    return parser.head().keep_alive;
  };
  EXPECT_TRUE(keep_alive("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_FALSE(keep_alive("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(keep_alive("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(keep_alive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
}

Rejection refusal_for(const std::string& target) {
  RequestParser parser(small_limits());
  const auto event = feed_all(parser, "GET " + target + " HTTP/1.1\r\nHost: h\r\n\r\n", 4096);
  if (event != ParseEvent::message_complete) {
    return parser.rejection();
  }
  HttpRequest request;
  Rejection refusal;
  if (detail::build_request(parser.head(), "", request, refusal)) {
    return Rejection{0, "", ""};
  }
  return refusal;
}

TEST(BuildRequest, RefusesBadEncodingNulTraversalAndBadUtf8) {
  EXPECT_EQ(refusal_for("/ok/%41").status, 0);
  EXPECT_EQ(refusal_for("/a/..b/c..").status, 0);  // ".." inside a name is a name
  EXPECT_EQ(refusal_for("/a%zz").code, "bad_path_encoding");
  EXPECT_EQ(refusal_for("/a%4").code, "bad_path_encoding");
  EXPECT_EQ(refusal_for("/a%00b").code, "bad_path_encoding");
  EXPECT_EQ(refusal_for("/a%ff").code, "bad_path_encoding");
  EXPECT_EQ(refusal_for("/../etc/passwd").code, "path_traversal");
  EXPECT_EQ(refusal_for("/a/%2e%2e/b").code, "path_traversal");
  EXPECT_EQ(refusal_for("/a/%2E%2E").code, "path_traversal");
  EXPECT_EQ(refusal_for("/a%2F..%2Fb").code, "path_traversal");
  EXPECT_EQ(refusal_for("/a?q=%").code, "bad_query_encoding");
  EXPECT_EQ(refusal_for("/a?q=%00").code, "bad_query_encoding");
  EXPECT_EQ(refusal_for("/a?%c0%af=1").code, "bad_query_encoding");
  EXPECT_EQ(refusal_for("*").status, 400);
}

TEST(BuildRequest, TakesThePathOfAnAbsoluteTargetAndServesHeadAsGet) {
  RequestParser parser(small_limits());
  ASSERT_EQ(
      feed_all(parser, "HEAD http://example.test/x%20y?a=b HTTP/1.1\r\nHost: h\r\n\r\n", 4096),
      ParseEvent::message_complete);
  HttpRequest request;
  Rejection refusal;
  ASSERT_TRUE(detail::build_request(parser.head(), "", request, refusal));
  EXPECT_EQ(request.path, "/x y");
  EXPECT_EQ(request.method, "GET");
  EXPECT_TRUE(request.head);
  EXPECT_EQ(request.raw_target, "http://example.test/x%20y?a=b");
  EXPECT_EQ(request.query.at("a"), "b");
}

}  // namespace
}  // namespace healer::daemon
