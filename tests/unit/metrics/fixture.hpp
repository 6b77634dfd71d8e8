#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace healer::metrics::testing {

/// Contents of tests/data/metrics/<name> (captured or hand-written /proc and probe output).
inline std::string fixture(std::string_view name) {
  const std::string path = std::string(HEALER_TEST_DATA) + "/metrics/" + std::string(name);
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file.good()) << "missing fixture " << path;
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

/// The marker the probe_* fixtures were written with.
inline constexpr std::string_view kFixtureMarker =
    "@@healer-metrics-00112233445566778899aabbccddeeff";

}  // namespace healer::metrics::testing
