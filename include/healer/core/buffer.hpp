#pragma once

#include <cstddef>
#include <string>

// Large response buffers (a scrape's text, a list page) are blocks of hundreds of KiB to MiB,
// mmapped afresh (run_serve's fixed mmap threshold) and freed after the response. Written into
// 4 KiB page after page, each first write costs a page fault: ~12 us in the VM the benches run
// in, ~1.5-2 ms for 600 KiB. These ask the kernel to do better; where it cannot (an old kernel,
// THP off) the advice is refused and nothing changes.
namespace healer::buffer {

/// Asks for transparent huge pages over the 2 MiB-aligned part of `buffer`'s capacity not written
/// yet (an 8 MiB scrape: ~24 ms of faults in 4 KiB pages, a few hundred microseconds in 2 MiB
/// ones). For buffers whose reserved size may be far above what gets written: nothing is
/// committed before it is written.
void prefer_huge_pages(std::string& buffer) noexcept;

/// Reserves `size` bytes in `buffer` and has the kernel map all of the new block's pages at once
/// (MADV_POPULATE_WRITE: half the time of the faults one by one, measured for 600 KiB). For a
/// reservation close to what will be written: every page of it counts in the RSS at once.
void reserve_populated(std::string& buffer, std::size_t size);

}  // namespace healer::buffer
