#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "fleet_sim.hpp"
#include "healer/pool/pool.hpp"

namespace healer::test {

/// A pool::Server for host `index` of `sim`: its address and port, the simulator's login user,
/// the fleet's client key (or `key`) and known_hosts (the fleet's file, or the host's own with
/// FleetSim::Options::known_hosts_per_host). Header-only: only code that links healer_pool
/// includes it.
inline pool::Server pool_server(const FleetSim& sim, std::size_t index, std::string id = {},
                                const std::filesystem::path& key = {}) {
  pool::Server server;
  server.id = id.empty() ? sim.host(index) : std::move(id);
  server.endpoint = ssh::Endpoint(sim.host(index), sim.port());
  server.connect.user = sim.user();
  server.connect.identity_file = key.empty() ? sim.client_key_path().string() : key.string();
  server.connect.known_hosts_file = sim.options().known_hosts_per_host
                                        ? sim.known_hosts_path(index).string()
                                        : sim.known_hosts_path().string();
  return server;
}

}  // namespace healer::test
