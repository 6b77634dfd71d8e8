#include "healer/ssh/errors.hpp"

#include <string>

namespace healer::ssh {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ssh"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::connect_refused:
        return "connection refused";
      case Errc::connect_timeout:
        return "connection timed out";
      case Errc::resolve_failed:
        return "host name did not resolve";
      case Errc::host_unknown:
        return "host key unknown";
      case Errc::host_key_changed:
        return "HOST KEY CHANGED";
      case Errc::auth_failed:
        return "authentication failed";
      case Errc::key_invalid:
        return "private key unusable";
      case Errc::channel_refused:
        return "channel refused";
      case Errc::timeout:
        return "timed out";
      case Errc::disconnected:
        return "disconnected";
      case Errc::protocol:
        return "SSH protocol error";
      case Errc::cancelled:
        return "cancelled";
      case Errc::not_started:
        return "connection lost before the command started";
    }
    return "unknown ssh error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

bool poisons_session(const Error& error) noexcept {
  if (error.code.category() != error_category()) {
    return true;
  }
  switch (static_cast<Errc>(error.code.value())) {
    case Errc::channel_refused:
      return false;
    default:
      return true;
  }
}

const char* errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::connect_refused:
      return "connect_refused";
    case Errc::connect_timeout:
      return "connect_timeout";
    case Errc::resolve_failed:
      return "resolve_failed";
    case Errc::host_unknown:
      return "host_unknown";
    case Errc::host_key_changed:
      return "host_key_changed";
    case Errc::auth_failed:
      return "auth_failed";
    case Errc::key_invalid:
      return "key_invalid";
    case Errc::channel_refused:
      return "channel_refused";
    case Errc::timeout:
      return "timeout";
    case Errc::disconnected:
      return "disconnected";
    case Errc::protocol:
      return "protocol";
    case Errc::cancelled:
      return "cancelled";
    case Errc::not_started:
      return "not_started";
  }
  return "unknown";
}

}  // namespace healer::ssh
