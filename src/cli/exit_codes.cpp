#include "healer/cli/exit_codes.hpp"

#include <system_error>

#include "healer/pool/errors.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/store/errors.hpp"

namespace healer::cli {

int exit_code_for(const Error& error) {
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
  }
  if (error.code == std::errc::invalid_argument) {
    return kExitUsage;  // bad input found after parsing (an unknown server name...)
  }
  if (error.code.category() == store::error_category()) {
    switch (static_cast<store::Errc>(error.code.value())) {
      case store::Errc::not_found:
      case store::Errc::duplicate_name:
      case store::Errc::invalid_record:
        return kExitUsage;
      default:
        return kExitStore;
    }
  }
  if (error.code.category() != ssh::error_category()) {
    return kExitProtocol;
  }
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

}  // namespace healer::cli
