#include "text.hpp"

namespace healer::metrics::text {

std::optional<double> to_double(std::string_view s) noexcept {
  return healer::text::to_unsigned_double(s);
}

Error error(Errc code, std::string_view what, std::string_view excerpt_of) {
  std::string detail(what);
  if (!excerpt_of.empty()) {
    detail += ": \"" + excerpt(excerpt_of) + "\"";
  }
  return make_error(code, std::move(detail));
}

}  // namespace healer::metrics::text
