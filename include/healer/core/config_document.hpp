#pragma once

// The parsed form of a ConfigFile, for the parsers of its sections only: it brings toml++ in.

#include <toml++/toml.h>

#include "healer/core/config_file.hpp"

namespace healer::config {

struct ConfigFile::Document {
  toml::table root;
};

}  // namespace healer::config
