#include "healer/core/log.hpp"

#include <spdlog/spdlog.h>

namespace healer::log {

std::shared_ptr<spdlog::logger> get(const std::string& module) {
  if (auto existing = spdlog::get(module)) {
    return existing;
  }
  auto created = spdlog::default_logger()->clone(module);
  // Another thread may have registered the same name meanwhile; keep the registered one.
  try {
    spdlog::register_logger(created);
  } catch (const spdlog::spdlog_ex&) {
    return spdlog::get(module);
  }
  return created;
}

}  // namespace healer::log
