// healer::buffer against the kernel it runs on: a populated reservation is in the RSS at once
// (its pages mapped in one call), a huge-page hint commits nothing.
#include "healer/core/buffer.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <fstream>
#include <string>

namespace healer {
namespace {

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

// Resident pages of this process (/proc/self/statm, second field), in bytes.
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0;
  std::size_t resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

bool kernel_populates() {
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const bool supported = madvise(page, 4096, MADV_POPULATE_WRITE) == 0;
  munmap(page, 4096);
  return supported;
}

constexpr std::size_t kSize = 8 << 20;

TEST(Buffer, APopulatedReservationIsMappedAtOnceAndKeepsWhatWasWritten) {
  if (!kernel_populates()) {
    GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE (Linux < 5.14)";
  }
  std::string text = "kept";
  const auto before = resident_bytes();
  buffer::reserve_populated(text, kSize);
  const auto after = resident_bytes();
  EXPECT_GE(text.capacity(), kSize);
  EXPECT_EQ(text, "kept");
  EXPECT_GE(after, before + kSize * 9 / 10) << "before " << before << ", after " << after;
}

TEST(Buffer, AHugePageHintCommitsNothingAndAPlainReserveNeither) {
  std::string text;
  text.reserve(kSize);
  const auto before = resident_bytes();
  buffer::prefer_huge_pages(text);
  EXPECT_LT(resident_bytes(), before + kSize / 4);
  // A small reservation (from the arenas, not populated) is still a reservation.
  std::string small;
  buffer::reserve_populated(small, 1000);
  EXPECT_GE(small.capacity(), 1000U);
}

}  // namespace
}  // namespace healer
