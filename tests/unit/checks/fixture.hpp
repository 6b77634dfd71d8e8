#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace healer::checks::testing {

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
