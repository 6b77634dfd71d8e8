#include "healer/core/error.hpp"

namespace healer {

std::string Error::message() const {
  std::string text = code ? code.message() : std::string("error");
  if (!detail.empty()) {
    text += ": ";
    text += detail;
  }
  return text;
}

}  // namespace healer
