#include "pool_options.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iterator>
#include <system_error>

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

Result<PoolConfig> resolve_pool_config(const PoolOptionValues& values) {
  const auto env = config::Environment::process();
  auto file = config::find_config_file(env, values.config_file);
  if (!file) {
    return std::move(file).error();
  }
  return config::load_pool_config(env, *file, values.flags);
}

Result<std::optional<ConfigFile>> read_config_file(const PoolOptionValues& values) {
  auto file = config::find_config_file(config::Environment::process(), values.config_file);
  if (!file) {
    return std::move(file).error();
  }
  if (!*file) {
    return std::optional<ConfigFile>{};
  }
  std::ifstream in(**file, std::ios::binary);
  if (!in) {
    return Error{std::make_error_code(std::errc::io_error),
                 fmt::format("cannot read the config file {}", (*file)->string())};
  }
  return std::optional<ConfigFile>{
      ConfigFile{**file, std::string(std::istreambuf_iterator<char>(in), {})}};
}

}  // namespace healer::cli
