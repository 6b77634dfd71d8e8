// libFuzzer target: the HTTP server's request side (http-parser behind RequestParser, the
// limits, the head checks, the target's decoding), fed the way sockets feed it: in pieces whose
// size the first input byte picks, several requests per input (pipelining).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "healer/daemon/http.hpp"
#include "http_request_parser.hpp"

namespace {

// Keeps a value alive so the work that made it is not optimised away.
void consume(int value) { __asm__ volatile("" : : "g"(value) : "memory"); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace healer::daemon;
  if (size == 0) {
    return 0;
  }
  const std::size_t piece = 1 + data[0] % 64;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  static_cast<void>(percent_decode(bytes, true));

  detail::ParseLimits limits;
  limits.max_header_bytes = 1024;
  limits.max_url_bytes = 256;
  limits.max_body_bytes = 512;
  detail::RequestParser parser(limits);
  std::size_t offset = 0;
  std::size_t stalls = 0;
  while (offset < bytes.size() && stalls < 4) {
    const auto chunk = bytes.substr(offset, std::min(piece, bytes.size() - offset));
    const auto consumed = parser.feed(chunk);
    offset += consumed;
    stalls = consumed == 0 ? stalls + 1 : 0;
    switch (parser.event()) {
      case detail::ParseEvent::headers_complete: {
        const auto refusal = parser.check_head();
        consume(refusal.status);
        parser.resume();
        stalls = 0;
        break;
      }
      case detail::ParseEvent::message_complete: {
        HttpRequest request;
        detail::Rejection refusal;
        if (detail::build_request(parser.head(), parser.body(), request, refusal)) {
          // What the server promises a handler.
          if (request.path.find('\0') != std::string::npos || request.path.empty() ||
              request.path.front() != '/' || !detail::valid_utf8(request.path)) {
            __builtin_trap();
          }
        }
        parser.reset();
        stalls = 0;
        break;
      }
      case detail::ParseEvent::failed:
        consume(parser.rejection().status);
        return 0;
      case detail::ParseEvent::need_more:
        break;
    }
  }
  return 0;
}
