#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "healer/pool/pool.hpp"
#include "sshd_fixture.hpp"

namespace healer::test {

/// A pool::Server that logs in to `sshd` as its user, with its client key (or `key`) and its
/// known_hosts. Header-only: only tests that link healer_pool include it.
inline pool::Server pool_server(const SshdFixture& sshd, std::string id,
                                const std::filesystem::path& key = {}) {
  pool::Server server;
  server.id = std::move(id);
  server.endpoint = ssh::Endpoint(sshd.host(), sshd.port());
  server.connect.user = sshd.user();
  server.connect.identity_file = key.empty() ? sshd.client_key_path().string() : key.string();
  server.connect.known_hosts_file = sshd.known_hosts_path().string();
  return server;
}

/// Evictions of one kind.
inline std::size_t evictions(const pool::PoolStats& stats, pool::Eviction why) {
  return static_cast<std::size_t>(stats.evictions[static_cast<std::size_t>(why)]);
}

}  // namespace healer::test
