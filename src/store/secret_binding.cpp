#include "secret_binding.hpp"

#include <fmt/format.h>

namespace healer::store {
namespace {

void field(std::string& out, std::string_view name, std::string_view value) {
  out += fmt::format("{}={}:{}\n", name, value.size(), value);
}

}  // namespace

std::string secret_context(const SecretBinding& binding) {
  std::string context = "healer server secret v2\n";
  field(context, "id", std::to_string(binding.server_id));
  field(context, "host", binding.host);
  field(context, "port", std::to_string(binding.port));
  field(context, "user", binding.user);
  field(context, "host_key_policy", binding.host_key_policy);
  field(context, "known_hosts_file", binding.known_hosts_file);
  return context;
}

std::string legacy_secret_context(std::int64_t server_id) {
  return "server:" + std::to_string(server_id);
}

}  // namespace healer::store
