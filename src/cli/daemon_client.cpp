#include "daemon_client.hpp"

#include <CLI/CLI.hpp>
#include <cstdlib>

#include "healer/service/errors.hpp"
#include "healer/service/runtime.hpp"

namespace healer::cli {

void add_daemon_option(CLI::App& app, bool& no_daemon) {
  app.add_flag("--no-daemon", no_daemon,
               "Run here even when `healer serve` runs for this database (env HEALER_NO_DAEMON=1)");
}

Result<std::optional<service::control::Client>> daemon_for(const StoreArgs& store,
                                                           const PoolOptionValues& pool,
                                                           bool no_daemon) {
  const char* env = std::getenv("HEALER_NO_DAEMON");
  if (no_daemon || (env != nullptr && *env != '\0' && std::string_view(env) != "0") ||
      !pool.flags.empty() || pool.config_file) {
    return std::optional<service::control::Client>();
  }
  auto db = service::resolve_db_path(
      store.db.empty() ? std::nullopt : std::optional<std::filesystem::path>(store.db));
  if (!db) {
    return std::optional<service::control::Client>();  // the local run reports it
  }
  return service::control::Client::connect(service::control::socket_path(*db));
}

Result<service::Json> call_daemon(service::control::Client& client, std::string op,
                                  service::Json request,
                                  const std::function<void(const service::Json&)>& on_progress) {
  if (auto sent = client.send(service::Json{{"op", std::move(op)},
                                            {"request", std::move(request)},
                                            {"healer_version", service::version()}});
      !sent) {
    return std::move(sent).error();
  }
  while (true) {
    auto message = client.receive();
    if (!message) {
      return std::move(message).error();
    }
    if (message->contains("progress")) {
      if (on_progress) {
        on_progress(message->at("progress"));
      }
      continue;
    }
    if (message->contains("error")) {
      return service::error_from_json(message->at("error"));
    }
    if (message->contains("outcome")) {
      return message->at("outcome");
    }
    return service::make_error(service::Errc::internal, "the daemon sent an unknown message");
  }
}

void notify_inventory_changed(const StoreArgs& store) {
  auto client = daemon_for(store, PoolOptionValues{}, false);
  if (client && *client) {
    (void)call_daemon(**client, "inventory_changed", service::Json::object());
  }
}

}  // namespace healer::cli
