#include "pool_options.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "healer/core/config_loader.hpp"

namespace healer::cli {

void add_pool_options(CLI::App& app, PoolOptionValues& values) {
  constexpr const char* kGroup = "Pool (flag > environment > config file > default)";
  app.add_option_function<std::string>(
         "--config",
         [&values](const std::string& file) { values.config_file = std::filesystem::path(file); },
         "TOML config file (default: $HEALER_CONFIG, else ~/.config/healer/config.toml if it "
         "exists)")
      ->type_name("FILE")
      ->group(kGroup);
  for (const auto& setting : config::pool_settings()) {
    const bool is_mode = setting.rule.find('|') != std::string::npos;
    // Values are kept as typed: the loader validates them like the environment's and names the
    // flag in its error, so CLI11 checks nothing here.
    app.add_option_function<std::string>(
           "--" + setting.flag,
           [&values, flag = setting.flag](const std::string& text) { values.flags[flag] = text; },
           setting.help + " (env " + setting.env + ", default " + setting.default_text + ")")
        ->type_name(is_mode ? setting.rule : (setting.rule.starts_with("ms") ? "MS" : "N"))
        ->group(kGroup);
  }
}

}  // namespace healer::cli
