// libFuzzer target: parse_diskstats (/proc/diskstats), then disk rates against itself.
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
  if (auto parsed = parse_diskstats(text)) {
    sample.disks = std::move(parsed).value();
  }
  fuzz::consume(sample);
  for (const auto& disk : sample.disks.value_or(std::vector<DiskStats>{})) {
    (void)is_excluded_disk(disk.device);
  }
  const std::chrono::system_clock::time_point t0{};
  if (auto rates = compute_rates(Sample{}, t0, sample, t0 + std::chrono::seconds(1))) {
    (void)to_metrics(*rates);
  }
  return 0;
}
