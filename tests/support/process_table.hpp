#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace healer::test {

/// One row of /proc: what the test bed needs to find and freeze server-side processes.
struct ProcessEntry {
  pid_t pid = 0;
  pid_t parent = 0;
  char state = '?';  ///< /proc/<pid>/stat state letter: R, S, T (stopped), Z (zombie), ...
};

/// Reads /proc/<pid>/stat; nullopt when the process does not exist (any more).
std::optional<ProcessEntry> read_process(pid_t pid);

/// A snapshot of every process in /proc. Processes may come and go while it is taken.
std::vector<ProcessEntry> list_processes();

/// Every process below `root` (children, grandchildren, ...) in one snapshot, parents before
/// their children. `root` itself is not included.
std::vector<pid_t> descendants_of(pid_t root);

/// /proc/<pid>/cmdline with the NUL separators turned into spaces; empty for zombies and for
/// processes that are gone.
std::string process_cmdline(pid_t pid);

/// True when the process no longer exists or is a zombie (exited, not yet reaped by its parent).
bool process_gone(pid_t pid);

/// True when the process exists and is stopped (SIGSTOP): state T.
bool process_stopped(pid_t pid);

}  // namespace healer::test
