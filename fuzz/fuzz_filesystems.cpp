// libFuzzer target: parse_filesystems (the probe's filesystems section) and decode_mount_path.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "healer/metrics/parsers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace healer::metrics;
  const auto text = fuzz::as_text(data, size);
  Sample sample;
  if (auto parsed = parse_filesystems(text)) {
    sample.filesystems = std::move(parsed).value();
  }
  fuzz::consume(sample);
  (void)decode_mount_path(text);
  return 0;
}
