// libFuzzer target: parse_net_dev (/proc/net/dev), then network rates against itself.
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "healer/metrics/parsers.hpp"
#include "healer/metrics/rates.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace healer::metrics;
  const auto text = fuzz::as_text(data, size);
  Sample sample;
  if (auto parsed = parse_net_dev(text)) {
    sample.network = std::move(parsed).value();
  }
  fuzz::consume(sample);
  const std::chrono::system_clock::time_point t0{};
  if (auto rates = compute_rates(sample, t0, sample, t0 + std::chrono::seconds(3))) {
    (void)to_metrics(*rates);
  }
  return 0;
}
