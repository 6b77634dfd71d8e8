// libFuzzer target: parse_clk_tck (getconf CLK_TCK).
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "healer/metrics/parsers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace healer::metrics;
  const auto text = fuzz::as_text(data, size);
  Sample sample;
  if (auto parsed = parse_clk_tck(text)) {
    sample.user_hz = *parsed;
  }
  fuzz::consume(sample);
  return 0;
}
