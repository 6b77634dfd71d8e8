#include "healer/checks/errors.hpp"

#include <string>

namespace healer::checks {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "checks"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::malformed:
        return "malformed output";
      case Errc::missing_field:
        return "missing field";
      case Errc::empty:
        return "no output";
    }
    return "unknown checks error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace healer::checks
