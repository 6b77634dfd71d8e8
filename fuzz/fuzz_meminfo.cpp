// libFuzzer target: parse_meminfo (/proc/meminfo).
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "healer/metrics/parsers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace healer::metrics;
  const auto text = fuzz::as_text(data, size);
  Sample sample;
  if (auto parsed = parse_meminfo(text)) {
    sample.memory = std::move(parsed).value();
  }
  fuzz::consume(sample);
  return 0;
}
