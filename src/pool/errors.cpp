#include "healer/pool/errors.hpp"

#include <string>

namespace healer::pool {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "pool"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::pool_exhausted:
        return "connection pool exhausted";
      case Errc::circuit_open:
        return "server blocked after an authentication or host key failure";
      case Errc::backing_off:
        return "server unreachable, backing off";
      case Errc::unknown_server:
        return "unknown server";
      case Errc::shutting_down:
        return "shutting down";
    }
    return "unknown pool error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

const char* errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::pool_exhausted:
      return "pool_exhausted";
    case Errc::circuit_open:
      return "circuit_open";
    case Errc::backing_off:
      return "backing_off";
    case Errc::unknown_server:
      return "unknown_server";
    case Errc::shutting_down:
      return "shutting_down";
  }
  return "unknown";
}

}  // namespace healer::pool
