#include "healer/procfs/errors.hpp"

#include <string>

namespace healer::procfs {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "procfs"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::malformed:
        return "malformed /proc text";
      case Errc::missing_field:
        return "missing field";
      case Errc::empty:
        return "no output";
    }
    return "unknown procfs error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace healer::procfs
