#pragma once

#include <asio/awaitable.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "healer/core/error.hpp"
#include "healer/core/result.hpp"
#include "healer/service/runtime.hpp"

// "Can healer reach these servers?": a fresh connection per server (never a pooled one, so the
// whole path is exercised): TCP, host key, authentication, one round trip, one `true`.
namespace healer::service {

/// Which servers, and what to do with a host key known_hosts does not list. Not an aggregate on
/// purpose.
struct ConnectionTestRequest {
  ConnectionTestRequest() = default;

  std::vector<std::string> names;
  /// Record an unknown host key (trust on first use) instead of failing with host_unknown.
  bool accept_new_host_key = false;
  /// Per server name: record the unknown host key only if its fingerprint is this one (the key a
  /// person was shown and accepted); another key fails before any credential is sent.
  std::map<std::string, std::string, std::less<>> pinned_fingerprints;
  std::chrono::milliseconds timeout{15000};  ///< per server
};

/// One server's test.
struct ConnectionTestResult {
  std::string server;
  std::string target;            ///< "user@host:port"
  std::string known_hosts_file;  ///< where its key is (or would be) recorded
  std::optional<Error> error;
  /// The key the server presented ("SHA256:..."), also when the test failed after the key
  /// exchange (host_unknown: the key to show before trusting it). Empty when none was seen.
  std::string fingerprint;
  std::string key_type;
  double connect_ms = 0;  ///< TCP + key exchange + authentication
  double round_trip_ms = 0;
  double exec_ms = 0;

  [[nodiscard]] bool ok() const noexcept { return !error.has_value(); }
};

/// Tests every named server concurrently; results in request order. An unknown name is an error
/// of the call; a server that fails is a result with an error. On the runtime's loop.
asio::awaitable<Result<std::vector<ConnectionTestResult>>> async_test_connections(
    Runtime& runtime, ConnectionTestRequest request);

}  // namespace healer::service
