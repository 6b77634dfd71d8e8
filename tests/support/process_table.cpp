#include "process_table.hpp"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

namespace healer::test {
namespace {

std::string read_small_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return {};
  }
  // libstdc++'s filebuf throws when read() fails, as it does for a process that exits while we
  // read its /proc file: treat that process as gone.
  try {
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  } catch (const std::ios_base::failure&) {
    return {};
  }
}

std::optional<pid_t> parse_pid(std::string_view text) {
  pid_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

std::optional<ProcessEntry> read_process(pid_t pid) {
  const std::string stat =
      read_small_file(std::filesystem::path("/proc") / std::to_string(pid) / "stat");
  // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so parse from the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) {
    return std::nullopt;
  }
  std::istringstream rest(stat.substr(close + 2));
  ProcessEntry entry;
  entry.pid = pid;
  if (!(rest >> entry.state >> entry.parent)) {
    return std::nullopt;
  }
  return entry;
}

std::vector<ProcessEntry> list_processes() {
  std::vector<ProcessEntry> entries;
  std::error_code ec;
  // Processes come and go while we read: increment with an error_code (a range-for's ++ throws
  // when an entry vanishes under it).
  for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end;
       it.increment(ec)) {
    const auto pid = parse_pid(it->path().filename().native());
    if (!pid) {
      continue;
    }
    if (auto entry = read_process(*pid)) {
      entries.push_back(*entry);
    }
  }
  return entries;
}

std::vector<pid_t> descendants_of(pid_t root) {
  std::multimap<pid_t, pid_t> children_by_parent;
  for (const auto& entry : list_processes()) {
    children_by_parent.emplace(entry.parent, entry.pid);
  }
  // Breadth-first, so every parent precedes its children.
  std::vector<pid_t> found;
  std::vector<pid_t> frontier{root};
  while (!frontier.empty()) {
    std::vector<pid_t> next;
    for (const pid_t parent : frontier) {
      const auto [first, last] = children_by_parent.equal_range(parent);
      for (auto it = first; it != last; ++it) {
        found.push_back(it->second);
        next.push_back(it->second);
      }
    }
    frontier = std::move(next);
  }
  return found;
}

std::string process_cmdline(pid_t pid) {
  std::string cmdline =
      read_small_file(std::filesystem::path("/proc") / std::to_string(pid) / "cmdline");
  while (!cmdline.empty() && cmdline.back() == '\0') {
    cmdline.pop_back();
  }
  for (char& c : cmdline) {
    if (c == '\0') {
      c = ' ';
    }
  }
  return cmdline;
}

bool process_gone(pid_t pid) {
  const auto entry = read_process(pid);
  return !entry || entry->state == 'Z' || entry->state == 'X';
}

bool process_stopped(pid_t pid) {
  const auto entry = read_process(pid);
  return entry && entry->state == 'T';
}

}  // namespace healer::test
