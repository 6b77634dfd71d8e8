#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace healer::checks::testing {

/// The marker the checks tests run with; a real run draws a random one (checks::kDrawMarker).
inline constexpr std::string_view kMarker = "@@healer-5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

/// `text` as a run framed by kMarker prints it: fixtures and inline outputs write the marker as
/// "@@healer" at the start of a line ("@@healer mounts"). Any other text stays as it is, so a
/// line a server prints to look like a framing line can be added after this.
inline std::string framed(std::string_view text) {
  constexpr std::string_view kWritten = "@@healer";
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    end = end == std::string_view::npos ? text.size() : end + 1;
    std::string_view line = text.substr(start, end - start);
    const auto after = line.substr(std::min(line.size(), kWritten.size()));
    if (line.starts_with(kWritten) &&
        (after.empty() || after.front() == ' ' || after.front() == '\n' || after.front() == '\r')) {
      out += kMarker;
      out += after;
    } else {
      out += line;
    }
    start = end;
  }
  return out;
}

/// Contents of tests/data/proc/<name> (captured or hand-written command output).
inline std::string fixture(std::string_view name) {
  const std::string path = std::string(HEALER_TEST_DATA) + "/proc/" + std::string(name);
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file.good()) << "missing fixture " << path;
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace healer::checks::testing
