#include "healer/metrics/errors.hpp"

#include <string>

namespace healer::metrics {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "metrics"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::malformed:
        return "malformed output";
      case Errc::missing_field:
        return "missing field";
      case Errc::empty:
        return "no output";
      case Errc::section_missing:
        return "probe section missing";
      case Errc::section_failed:
        return "probe section failed";
      case Errc::section_incomplete:
        return "probe section incomplete";
      case Errc::probe_failed:
        return "probe failed";
      case Errc::rebooted:
        return "server rebooted between samples";
      case Errc::no_interval:
        return "samples not in time order";
    }
    return "unknown metrics error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

const char* errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::malformed:
      return "malformed";
    case Errc::missing_field:
      return "missing_field";
    case Errc::empty:
      return "empty";
    case Errc::section_missing:
      return "section_missing";
    case Errc::section_failed:
      return "section_failed";
    case Errc::section_incomplete:
      return "section_incomplete";
    case Errc::probe_failed:
      return "probe_failed";
    case Errc::rebooted:
      return "rebooted";
    case Errc::no_interval:
      return "no_interval";
  }
  return "unknown";
}

}  // namespace healer::metrics
