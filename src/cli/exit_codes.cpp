#include "healer/cli/exit_codes.hpp"

#include "healer/pool/errors.hpp"
#include "healer/service/errors.hpp"
#include "healer/ssh/errors.hpp"

namespace healer::cli {

int exit_code_for(const Error& error) {
  if (error.code.category() == ssh::error_category()) {
    switch (static_cast<ssh::Errc>(error.code.value())) {
      case ssh::Errc::connect_refused:
        return kExitConnectRefused;
      case ssh::Errc::connect_timeout:
        return kExitConnectTimeout;
      case ssh::Errc::resolve_failed:
        return kExitResolveFailed;
      case ssh::Errc::host_unknown:
        return kExitHostUnknown;
      case ssh::Errc::host_key_changed:
        return kExitHostKeyChanged;
      case ssh::Errc::auth_failed:
        return kExitAuthFailed;
      case ssh::Errc::key_invalid:
        return kExitKeyInvalid;
      case ssh::Errc::channel_refused:
        return kExitChannelRefused;
      case ssh::Errc::timeout:
        return kExitTimeout;
      case ssh::Errc::disconnected:
      case ssh::Errc::not_started:
        return kExitDisconnected;
      case ssh::Errc::protocol:
        return kExitProtocol;
      case ssh::Errc::cancelled:
        return kExitCancelled;
    }
    return kExitProtocol;
  }
  if (error.code.category() == pool::error_category()) {
    switch (static_cast<pool::Errc>(error.code.value())) {
      case pool::Errc::pool_exhausted:
        return kExitPoolExhausted;
      case pool::Errc::circuit_open:
        return kExitCircuitOpen;
      case pool::Errc::backing_off:
        return kExitBackingOff;
      case pool::Errc::shutting_down:
        return kExitCancelled;
      case pool::Errc::unknown_server:
        return kExitUsage;
    }
    return kExitProtocol;
  }
  switch (service::classify(error)) {
    case service::ErrorClass::bad_input:
    case service::ErrorClass::not_found:
    case service::ErrorClass::conflict:
    case service::ErrorClass::too_large:
      return kExitUsage;
    case service::ErrorClass::store:
      return kExitStore;
    case service::ErrorClass::timeout:
      return kExitTimeout;
    case service::ErrorClass::cancelled:
      return kExitCancelled;
    case service::ErrorClass::unauthorized:
    case service::ErrorClass::forbidden:
    case service::ErrorClass::rate_limited:
    case service::ErrorClass::unavailable:
    case service::ErrorClass::remote:
    case service::ErrorClass::internal:
      break;
  }
  return kExitProtocol;
}

}  // namespace healer::cli
