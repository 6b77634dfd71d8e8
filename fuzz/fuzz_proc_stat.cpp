// libFuzzer target: parse_proc_stat (/proc/stat), then rates between the sample and itself.
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "healer/metrics/parsers.hpp"
#include "healer/metrics/rates.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace healer::metrics;
  const auto text = fuzz::as_text(data, size);
  // Two samples: the input split at its first blank line (a whole file if there is none).
  const auto blank = text.find("\n\n");
  const auto first = text.substr(0, blank);
  const auto second = blank == std::string_view::npos ? text : text.substr(blank + 2);
  Sample previous;
  Sample current;
  if (auto parsed = parse_proc_stat(first, 100.0)) {
    previous.stat = std::move(parsed).value();
  }
  if (auto parsed = parse_proc_stat(second, 250.0)) {
    current.stat = std::move(parsed).value();
  }
  fuzz::consume(previous);
  const std::chrono::system_clock::time_point t0{};
  if (auto rates = compute_rates(previous, t0, current, t0 + std::chrono::seconds(10))) {
    (void)to_metrics(*rates);
  }
  return 0;
}
