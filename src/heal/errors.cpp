#include "healer/heal/errors.hpp"

namespace healer::heal {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "heal"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::invalid_parameter:
        return "invalid parameter";
      case Errc::unknown_action:
        return "unknown action";
      case Errc::invalid_plan:
        return "invalid plan";
      case Errc::invalid_config:
        return "invalid heal configuration";
    }
    return "unknown heal error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

Error make_error(Errc code, std::string detail) {
  return Error{make_error_code(code), std::move(detail)};
}

std::string_view errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::invalid_parameter:
      return "invalid_parameter";
    case Errc::unknown_action:
      return "unknown_action";
    case Errc::invalid_plan:
      return "invalid_plan";
    case Errc::invalid_config:
      return "invalid_config";
  }
  return "unknown";
}

}  // namespace healer::heal
