// libFuzzer target: the probe's framing (split_sections, parse_sections) with the marker the
// tests/data/metrics/probe_* fixtures use; stdout and stderr are the input split at its first
// NUL byte.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "healer/metrics/probe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace healer::metrics;
  constexpr std::string_view kMarker = "@@healer-metrics-00112233445566778899aabbccddeeff";
  const auto text = fuzz::as_text(data, size);
  const auto nul = text.find('\0');
  const auto out = text.substr(0, nul);
  const auto err = nul == std::string_view::npos ? std::string_view{} : text.substr(nul + 1);
  if (auto sample = parse_probe_output(out, err, kMarker)) {
    fuzz::consume(*sample);
  }
  return 0;
}
