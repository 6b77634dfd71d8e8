#include "healer/service/errors.hpp"

#include "healer/checks/errors.hpp"
#include "healer/core/config_loader.hpp"
#include "healer/heal/errors.hpp"
#include "healer/metrics/errors.hpp"
#include "healer/pool/errors.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/store/errors.hpp"

namespace healer::service {
namespace {

const char* name_of(Errc e) noexcept {
  switch (e) {
    case Errc::invalid_input:
      return "invalid_input";
    case Errc::not_found:
      return "not_found";
    case Errc::conflict:
      return "conflict";
    case Errc::unauthorized:
      return "unauthorized";
    case Errc::forbidden:
      return "forbidden";
    case Errc::too_large:
      return "too_large";
    case Errc::rate_limited:
      return "rate_limited";
    case Errc::unavailable:
      return "unavailable";
    case Errc::cancelled:
      return "cancelled";
    case Errc::internal:
      return "internal";
  }
  return "unknown";
}

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "service"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::invalid_input:
        return "invalid input";
      case Errc::not_found:
        return "not found";
      case Errc::conflict:
        return "already exists";
      case Errc::unauthorized:
        return "unauthorized";
      case Errc::forbidden:
        return "forbidden";
      case Errc::too_large:
        return "too large";
      case Errc::rate_limited:
        return "too many requests";
      case Errc::unavailable:
        return "unavailable";
      case Errc::cancelled:
        return "cancelled";
      case Errc::internal:
        return "internal error";
    }
    return "unknown service error";
  }
};

ErrorClass classify_ssh(ssh::Errc e) noexcept {
  switch (e) {
    case ssh::Errc::timeout:
    case ssh::Errc::connect_timeout:
      return ErrorClass::timeout;
    case ssh::Errc::cancelled:
      return ErrorClass::cancelled;
    case ssh::Errc::key_invalid:
      return ErrorClass::bad_input;
    default:
      return ErrorClass::remote;
  }
}

ErrorClass classify_store(store::Errc e) noexcept {
  switch (e) {
    case store::Errc::not_found:
      return ErrorClass::not_found;
    case store::Errc::duplicate_name:
      return ErrorClass::conflict;
    case store::Errc::invalid_record:
      return ErrorClass::bad_input;
    default:
      return ErrorClass::store;
  }
}

ErrorClass classify_service(Errc e) noexcept {
  switch (e) {
    case Errc::invalid_input:
      return ErrorClass::bad_input;
    case Errc::not_found:
      return ErrorClass::not_found;
    case Errc::conflict:
      return ErrorClass::conflict;
    case Errc::unauthorized:
      return ErrorClass::unauthorized;
    case Errc::forbidden:
      return ErrorClass::forbidden;
    case Errc::too_large:
      return ErrorClass::too_large;
    case Errc::rate_limited:
      return ErrorClass::rate_limited;
    case Errc::unavailable:
      return ErrorClass::unavailable;
    case Errc::cancelled:
      return ErrorClass::cancelled;
    case Errc::internal:
      return ErrorClass::internal;
  }
  return ErrorClass::internal;
}

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

Error make_error(Errc code, std::string detail) {
  return Error{make_error_code(code), std::move(detail)};
}

ErrorClass classify(const Error& error) noexcept {
  const auto& category = error.code.category();
  const int value = error.code.value();
  if (category == error_category()) {
    return classify_service(static_cast<Errc>(value));
  }
  if (category == ssh::error_category()) {
    return classify_ssh(static_cast<ssh::Errc>(value));
  }
  if (category == pool::error_category()) {
    switch (static_cast<pool::Errc>(value)) {
      case pool::Errc::unknown_server:
        return ErrorClass::not_found;
      case pool::Errc::shutting_down:
        return ErrorClass::cancelled;
      default:
        return ErrorClass::unavailable;
    }
  }
  if (category == store::error_category()) {
    return classify_store(static_cast<store::Errc>(value));
  }
  if (category == config::error_category() || category == heal::error_category()) {
    return ErrorClass::bad_input;
  }
  if (category == metrics::error_category() || category == checks::error_category()) {
    return ErrorClass::remote;  // the server's output could not be read
  }
  if (error.code == std::errc::invalid_argument) {
    return ErrorClass::bad_input;
  }
  if (error.code == std::errc::operation_canceled) {
    return ErrorClass::cancelled;
  }
  return ErrorClass::internal;
}

int http_status(const Error& error) noexcept {
  switch (classify(error)) {
    case ErrorClass::bad_input:
      return 400;
    case ErrorClass::not_found:
      return 404;
    case ErrorClass::conflict:
      return 409;
    case ErrorClass::unauthorized:
      return 401;
    case ErrorClass::forbidden:
      return 403;
    case ErrorClass::too_large:
      return 413;
    case ErrorClass::rate_limited:
      return 429;
    case ErrorClass::store:
    case ErrorClass::unavailable:
      return 503;
    case ErrorClass::remote:
      return 502;
    case ErrorClass::timeout:
      return 504;
    case ErrorClass::cancelled:
      return 503;
    case ErrorClass::internal:
      return 500;
  }
  return 500;
}

std::string error_name(const Error& error) {
  const auto& category = error.code.category();
  const int value = error.code.value();
  if (category == error_category()) {
    return name_of(static_cast<Errc>(value));
  }
  if (category == ssh::error_category()) {
    return ssh::errc_name(static_cast<ssh::Errc>(value));
  }
  if (category == pool::error_category()) {
    return pool::errc_name(static_cast<pool::Errc>(value));
  }
  if (category == store::error_category()) {
    return store::errc_name(static_cast<store::Errc>(value));
  }
  if (category == config::error_category()) {
    return config::errc_name(static_cast<config::Errc>(value));
  }
  if (category == metrics::error_category()) {
    return metrics::errc_name(static_cast<metrics::Errc>(value));
  }
  if (category == heal::error_category()) {
    return std::string(heal::errc_name(static_cast<heal::Errc>(value)));
  }
  if (error.code == std::errc::invalid_argument) {
    return "invalid_input";
  }
  return error.code.message();
}

const std::error_category* category_named(std::string_view name) noexcept {
  for (const std::error_category* category :
       {&error_category(), &ssh::error_category(), &pool::error_category(),
        &store::error_category(), &config::error_category(), &metrics::error_category(),
        &checks::error_category(), &heal::error_category(), &std::generic_category(),
        &std::system_category()}) {
    if (name == category->name()) {
      return category;
    }
  }
  return nullptr;
}

}  // namespace healer::service
