#include "healer/core/buffer.hpp"

#include <sys/mman.h>

#include <cstdint>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; glibc 2.36's headers do not name it yet
#endif

namespace healer::buffer {
namespace {

// [begin, end) of `buffer`'s capacity rounded inwards to multiples of `unit`.
void advise(std::string& buffer, std::uintptr_t unit, int advice) noexcept {
  const auto data = reinterpret_cast<std::uintptr_t>(buffer.data());
  const auto begin = (data + buffer.size() + unit - 1) & ~(unit - 1);
  const auto end = (data + buffer.capacity()) & ~(unit - 1);
  if (end > begin) {
    static_cast<void>(madvise(reinterpret_cast<void*>(begin), end - begin, advice));
  }
}

}  // namespace

void prefer_huge_pages(std::string& buffer) noexcept {
  advise(buffer, std::uintptr_t{2} << 20U, MADV_HUGEPAGE);
}

void reserve_populated(std::string& buffer, std::size_t size) {
  constexpr std::size_t kWorthIt = 256 * 1024;  // below, the block comes from the arenas
  buffer.reserve(size);
  if (buffer.capacity() >= kWorthIt) {
    advise(buffer, 4096, MADV_POPULATE_WRITE);
  }
}

}  // namespace healer::buffer
