#include "app_command.hpp"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/service/inventory.hpp"
#include "healer/service/json.hpp"
#include "values.hpp"

namespace healer::cli {
namespace {

struct AppArgs {
  StoreArgs store;
  std::string name;
  std::string server;
  std::vector<std::string> units;
  std::vector<std::uint16_t> ports;
  std::string health_url;
  std::vector<std::string> logs;
  bool replace = false;
  bool json = false;
};

nlohmann::json app_json(const store::ApplicationRecord& app, const std::string& server) {
  return {{"id", app.id},
          {"name", app.name},
          {"server", server},
          {"systemd_units", app.systemd_units},
          {"ports", app.ports},
          {"health_url", app.health_url},
          {"log_paths", app.log_paths}};
}

std::string server_name(store::Store& store, std::int64_t id) {
  auto server = store.get_server(id);
  return server ? server->name : fmt::format("#{}", id);
}

int run_add(const AppArgs& args) {
  auto runtime = open_runtime(args.store, PoolOptionValues{});
  if (!runtime) {
    return fail(runtime.error());
  }
  auto* store = &(*runtime)->store();
  auto server = store->get_server_by_name(args.server);
  if (!server) {
    return server.error().code == store::Errc::not_found
               ? usage(fmt::format("no server named '{}' (add it with `healer server add`)",
                                   args.server))
               : fail(server.error());
  }
  store::ApplicationRecord app;
  app.name = args.name;
  app.server_id = server->id;
  app.systemd_units = args.units;
  app.ports = args.ports;
  app.health_url = args.health_url;
  app.log_paths = args.logs;
  if (auto valid = service::validate_application(app); !valid) {
    return fail(valid.error());
  }
  if (args.replace) {
    if (auto existing = store->get_application_by_name(args.name); existing) {
      app.id = existing->id;
      if (auto updated = store->update_application(app); !updated) {
        return fail(updated.error());
      }
      std::cout << fmt::format("updated application {} on {}\n", app.name, server->name);
      return 0;
    }
  }
  if (auto id = store->add_application(app); !id) {
    return id.error().code == store::Errc::duplicate_name
               ? usage(fmt::format(
                     "an application named '{}' already exists (use --replace to update it)",
                     args.name))
               : fail(id.error());
  }
  std::cout << fmt::format("added application {} on {}\n", app.name, server->name);
  return 0;
}

int run_list(const AppArgs& args) {
  auto runtime = open_runtime(args.store, PoolOptionValues{});
  if (!runtime) {
    return fail(runtime.error());
  }
  auto* store = &(*runtime)->store();
  auto apps = store->list_applications();
  if (!apps) {
    return fail(apps.error());
  }
  if (args.json) {
    auto doc = nlohmann::json::array();
    for (const auto& app : *apps) {
      doc.push_back(app_json(app, server_name(*store, app.server_id)));
    }
    std::cout << service::dump(doc, 2) << '\n';
    return 0;
  }
  if (apps->empty()) {
    std::cerr << "no applications yet (healer app add NAME --server SERVER ...)\n";
    return 0;
  }
  for (const auto& app : *apps) {
    std::vector<std::string> ports;
    for (auto port : app.ports) {
      ports.push_back(std::to_string(port));
    }
    std::cout << terminal_safe(fmt::format("{} on {}: units [{}], ports [{}]{}", app.name,
                                           server_name(*store, app.server_id),
                                           join(app.systemd_units), join(ports),
                                           app.health_url.empty() ? "" : ", " + app.health_url))
              << '\n';
  }
  return 0;
}

int run_remove(const AppArgs& args) {
  auto runtime = open_runtime(args.store, PoolOptionValues{});
  if (!runtime) {
    return fail(runtime.error());
  }
  auto* store = &(*runtime)->store();
  auto app = store->get_application_by_name(args.name);
  if (!app) {
    return app.error().code == store::Errc::not_found
               ? usage(fmt::format("no application named '{}'", args.name))
               : fail(app.error());
  }
  if (auto removed = store->remove_application(app->id); !removed) {
    return fail(removed.error());
  }
  std::cout << fmt::format("removed application {}\n", args.name);
  return 0;
}

}  // namespace

Command add_app_command(CLI::App& app) {
  auto args = std::make_shared<AppArgs>();
  auto& a = *args;
  auto* cmd = app.add_subcommand(
      "app",
      "Manage applications: a server plus the units, ports, health URL and logs that make "
      "up a service (`healer diagnose --app NAME`)");
  cmd->require_subcommand(1);
  auto* add = cmd->add_subcommand("add", "Add an application");
  add->add_option("name", a.name, "Unique name")->required();
  add->add_option("--server,-s", a.server, "The server it runs on")->required();
  add->add_option("--unit,-u", a.units, "systemd unit that must be active (repeatable)");
  add->add_option("--port,-p", a.ports, "TCP port that must be listening (repeatable)")
      ->check(decimal_port());
  add->add_option("--health-url", a.health_url,
                  "URL fetched from the server itself; 2xx/3xx is healthy");
  add->add_option("--log", a.logs, "Log file path (repeatable)");
  add->add_flag("--replace", a.replace, "Update the application if the name exists");
  add_store_options(*add, a.store);
  auto* list = cmd->add_subcommand("list", "List applications");
  list->add_flag("--json", a.json, "JSON output");
  add_store_options(*list, a.store);
  auto* remove = cmd->add_subcommand("remove", "Remove an application (its runs stay)");
  remove->add_option("name", a.name, "Application name")->required();
  add_store_options(*remove, a.store);
  return Command{cmd, [args, add, list] {
                   if (add->parsed()) {
                     return run_add(*args);
                   }
                   return list->parsed() ? run_list(*args) : run_remove(*args);
                 }};
}

}  // namespace healer::cli
