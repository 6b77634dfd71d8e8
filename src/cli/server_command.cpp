#include "server_command.hpp"

#include <fmt/format.h>
#include <glob.h>
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "daemon_client.hpp"
#include "healer/cli/exit_codes.hpp"
#include "healer/service/connection_test.hpp"
#include "healer/service/control.hpp"
#include "healer/service/errors.hpp"
#include "healer/service/inventory.hpp"
#include "healer/service/json.hpp"
#include "healer/ssh/errors.hpp"
#include "pool_options.hpp"
#include "ssh_config.hpp"
#include "values.hpp"

namespace healer::cli {
namespace {

namespace fs = std::filesystem;

struct ServerArgs {
  StoreArgs store;
  PoolOptionValues pool;
  // add
  std::string name;
  std::string host;
  std::uint16_t port = 22;
  std::string user;
  std::string auth = "key";
  std::string identity;
  std::string known_hosts;
  bool accept_new_host_key = false;
  std::vector<std::string> tags;
  std::vector<std::string> labels;
  bool password_stdin = false;
  bool replace = false;
  // list / show / remove / test
  std::vector<std::string> names;
  std::string tag;
  bool json = false;
  double timeout_s = 15;
  bool no_daemon = false;
  // import
  std::string config_file;
  bool dry_run = false;
};

std::optional<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

using service::auth_name;
using service::describe;
using service::home_dir;
using service::local_user;

// --- add ---------------------------------------------------------------------------------

int run_add(const ServerArgs& args) {
  service::ServerSpec spec;
  spec.name = args.name;
  spec.host = args.host;
  spec.port = args.port;
  spec.user = args.user;
  spec.auth = *service::parse_auth(args.auth);
  spec.identity = args.identity;
  spec.known_hosts = args.known_hosts;
  spec.accept_new_host_key = args.accept_new_host_key;
  spec.tags = args.tags;
  for (const auto& label : args.labels) {
    const auto eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      return usage(fmt::format("--label '{}' is not KEY=VALUE", label));
    }
    spec.labels[label.substr(0, eq)] = label.substr(eq + 1);
  }
  if (spec.auth == store::AuthMethod::password) {
    std::string password;
    if (args.password_stdin) {
      std::getline(std::cin, password);
    } else if (auto secrets = service::LocalSecrets::from_environment(true); secrets.password) {
      password = *secrets.password;
    } else {
      return usage(
          "--auth password needs the password in HEALER_PASSWORD or on stdin with "
          "--password-stdin");
    }
    if (password.empty()) {
      return usage("the password is empty");
    }
    spec.secret = std::move(password);
  } else if (spec.auth == store::AuthMethod::stored_key) {
    if (args.identity.empty()) {
      return usage(
          "--auth stored-key needs --identity FILE: the key is read from it and kept "
          "encrypted in the database");
    }
    auto pem = read_user_file(args.identity, std::size_t{1} << 20, "--identity");
    if (!pem) {
      return fail(pem.error());
    }
    spec.secret = std::move(*pem);
    spec.identity.clear();
  }
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  auto added = service::add_server((*runtime)->store(), std::move(spec), args.replace);
  if (!added) {
    return fail(added.error());
  }
  std::cout << terminal_safe(fmt::format("{} server {} ({})", added->updated ? "updated" : "added",
                                         added->record.name, describe(added->record)))
            << '\n';
  notify_inventory_changed(args.store);
  return 0;
}

// --- list / show / remove ------------------------------------------------------------------

int run_list(const ServerArgs& args) {
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  auto records = (*runtime)->store().list_servers(args.tag);
  if (!records) {
    return fail(records.error());
  }
  if (args.json) {
    auto doc = service::Json::array();
    for (const auto& record : *records) {
      doc.push_back(service::to_json(record));
    }
    std::cout << service::dump(doc, 2) << '\n';
    return 0;
  }
  if (records->empty()) {
    std::cerr << (args.tag.empty()
                      ? std::string("no servers yet (healer server add, healer server import)\n")
                      : terminal_safe(fmt::format("no server has the tag '{}'", args.tag)) + "\n");
    return 0;
  }
  std::size_t name_width = 4;
  std::size_t target_width = 6;
  for (const auto& record : *records) {
    name_width = std::max(name_width, terminal_safe(record.name).size());
    target_width = std::max(target_width, terminal_safe(describe(record)).size());
  }
  std::cout << fmt::format("{:<{}}  {:<{}}  {:<10}  {}\n", "NAME", name_width, "TARGET",
                           target_width, "AUTH", "TAGS");
  for (const auto& record : *records) {
    std::cout << fmt::format("{:<{}}  {:<{}}  {:<10}  {}\n", terminal_safe(record.name), name_width,
                             terminal_safe(describe(record)), target_width,
                             auth_name(record.auth_method), terminal_safe(join(record.tags, ",")));
  }
  return 0;
}

int run_show(const ServerArgs& args) {
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  auto& store = (*runtime)->store();
  auto doc = service::Json::array();
  for (const auto& name : args.names) {
    auto record = store.get_server_by_name(name);
    if (!record) {
      return record.error().code == store::Errc::not_found
                 ? usage(fmt::format("no server named '{}'", name))
                 : fail(record.error());
    }
    if (args.json) {
      doc.push_back(service::to_json(*record));
      continue;
    }
    std::cout << terminal_safe(
        fmt::format(
            "{}\n  target:      {}\n  auth:        {}{}\n  known_hosts: {} ({})\n  tags:        "
            "{}\n",
            record->name, describe(*record), auth_name(record->auth_method),
            record->has_secret              ? " (secret stored, encrypted)"
            : record->identity_file.empty() ? ""
                                            : fmt::format(", {}", record->identity_file),
            record->known_hosts_file.empty() ? service::default_known_hosts()
                                             : record->known_hosts_file,
            record->host_key_policy == store::HostKeyPolicy::accept_new ? "accept new keys"
                                                                        : "strict",
            join(record->tags, ", ")),
        true);
    for (const auto& [key, value] : record->labels) {
      std::cout << "  label:       " << terminal_safe(key) << '=' << terminal_safe(value) << '\n';
    }
  }
  if (args.json) {
    std::cout << service::dump(doc.size() == 1 ? doc.front() : doc, 2) << '\n';
  }
  return 0;
}

int run_remove(const ServerArgs& args) {
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  for (const auto& name : args.names) {
    if (auto removed = service::remove_server((*runtime)->store(), name); !removed) {
      return fail(removed.error());
    }
    std::cout << "removed server " << terminal_safe(name) << '\n';
  }
  notify_inventory_changed(args.store);
  return 0;
}

// --- test ----------------------------------------------------------------------------------

bool ask_yes(const std::string& question) {
  std::cerr << question << " [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) {
    return false;
  }
  return answer == "y" || answer == "Y" || answer == "yes";
}

int run_test(const ServerArgs& args) {
  auto timeout = timeout_from_seconds(args.timeout_s, "--timeout");
  if (!timeout) {
    return fail(timeout.error());
  }
  auto runtime = open_runtime(args.store, args.pool);
  if (!runtime) {
    return fail(runtime.error());
  }
  service::ConnectionTestRequest request;
  request.names = args.names;
  request.accept_new_host_key = args.accept_new_host_key;
  request.timeout = *timeout;
  auto results = (*runtime)->run_one_shot(service::async_test_connections(**runtime, request));
  if (!results) {
    return fail(results.error());
  }
  // Ask before trusting a new key, showing what the server presented; then pin exactly that
  // key: a second connection presenting another one is refused.
  if (!args.json && isatty(STDIN_FILENO) != 0) {
    service::ConnectionTestRequest again = request;
    again.names.clear();
    for (const auto& result : *results) {
      if (result.error && result.error->code == ssh::Errc::host_unknown &&
          !result.fingerprint.empty()) {
        std::cerr << "healer: " << terminal_safe(result.error->message()) << '\n';
        if (ask_yes(terminal_safe(fmt::format("Trust the key {} ({}) of {} and record it in {}?",
                                              result.fingerprint, result.key_type, result.target,
                                              result.known_hosts_file)))) {
          again.names.push_back(result.server);
          again.pinned_fingerprints[result.server] = result.fingerprint;
        }
      }
    }
    if (!again.names.empty()) {
      auto retried = (*runtime)->run_one_shot(service::async_test_connections(**runtime, again));
      if (!retried) {
        return fail(retried.error());
      }
      for (auto& result : *retried) {
        for (auto& original : *results) {
          if (original.server == result.server) {
            original = std::move(result);
            break;
          }
        }
      }
    }
  }
  int exit_code = 0;
  auto doc = service::Json::array();
  for (const auto& result : *results) {
    if (args.json) {
      doc.push_back(service::to_json(result));
    } else if (result.ok()) {
      std::cout << terminal_safe(fmt::format(
                       "OK {} ({}): host key {}, connected and authenticated in {:.1f} ms, round "
                       "trip {:.1f} ms, `true` in {:.1f} ms",
                       result.server, result.target, result.fingerprint, result.connect_ms,
                       result.round_trip_ms, result.exec_ms))
                << '\n';
    } else {
      std::cerr << terminal_safe(fmt::format("FAILED {} ({}): {}", result.server, result.target,
                                             result.error->message()))
                << '\n';
    }
    if (!result.ok() && exit_code == 0) {
      exit_code = exit_code_for(*result.error);
    }
  }
  if (args.json) {
    std::cout << service::dump(doc.size() == 1 ? doc.front() : doc, 2) << '\n';
  }
  return exit_code;
}

// --- import --------------------------------------------------------------------------------

std::vector<std::pair<std::string, std::string>> read_includes(const std::string& pattern) {
  // ssh_config(5): relative Include paths are relative to ~/.ssh.
  std::string absolute = pattern;
  if (absolute.starts_with("~/")) {
    absolute = home_dir() + absolute.substr(1);
  } else if (!absolute.starts_with('/')) {
    absolute = home_dir() + "/.ssh/" + absolute;
  }
  std::vector<std::pair<std::string, std::string>> files;
  glob_t matches{};
  if (glob(absolute.c_str(), 0, nullptr, &matches) == 0) {
    for (std::size_t i = 0; i < matches.gl_pathc; ++i) {
      if (auto text = read_text_file(matches.gl_pathv[i]); text) {
        files.emplace_back(matches.gl_pathv[i], std::move(*text));
      }
    }
  }
  globfree(&matches);
  return files;
}

int run_import(const ServerArgs& args) {
  const std::string file =
      args.config_file.empty() ? home_dir() + "/.ssh/config" : args.config_file;
  auto text = read_text_file(file);
  if (!text) {
    return usage(fmt::format("cannot read the OpenSSH config {}", file));
  }
  SshConfigContext context;
  context.home = home_dir();
  context.local_user = local_user();
  context.include = read_includes;
  context.file_name = file;
  const auto parsed = parse_ssh_config(*text, context);
  if (parsed.error) {
    return usage(*parsed.error);
  }
  for (const auto& warning : parsed.warnings) {
    std::cerr << "healer: " << terminal_safe(warning) << '\n';
  }
  if (parsed.hosts.empty()) {
    std::cerr << fmt::format("healer: {} names no concrete host (only patterns)\n", file);
    return 0;
  }
  std::unique_ptr<service::Runtime> runtime;
  if (!args.dry_run) {
    auto opened = open_runtime(args.store, args.pool);
    if (!opened) {
      return fail(opened.error());
    }
    runtime = std::move(*opened);
  }
  int imported = 0;
  int skipped = 0;
  for (const auto& host : parsed.hosts) {
    service::ServerSpec spec;
    spec.name = host.alias;
    spec.host = host.hostname;
    spec.port = host.port;
    spec.user = host.user.empty() ? context.local_user : host.user;
    spec.identity = host.identity_file;
    spec.known_hosts = host.known_hosts_file;
    spec.tags = args.tags;
    std::string verb = args.dry_run ? "would import" : "imported";
    auto record = service::validate_server(spec);
    if (record && runtime) {
      auto added = service::add_server(runtime->store(), std::move(spec), args.replace);
      if (added) {
        verb = added->updated ? "updated" : verb;
      } else {
        record = std::move(added).error();
      }
    }
    if (!record) {
      ++skipped;
      std::cerr << terminal_safe(fmt::format("healer: {} skipped: {}", host.alias,
                                             user_message(record.error())))
                << '\n';
      continue;
    }
    ++imported;
    std::cout << terminal_safe(
                     fmt::format("{} {} ({}{})", verb, host.alias, describe(*record),
                                 host.identity_file.empty() ? "" : ", key " + host.identity_file))
              << '\n';
    if (!host.skipped.empty()) {
      std::cout << terminal_safe("  options not used by healer: " + join(host.skipped, ", "))
                << '\n';
    }
    for (const auto& warning : host.warnings) {
      std::cout << "  note: " << terminal_safe(warning) << '\n';
    }
  }
  if (!args.dry_run && imported > 0) {
    notify_inventory_changed(args.store);
  }
  std::cout << fmt::format("{} host(s) {}, {} skipped\n", imported,
                           args.dry_run ? "to import" : "imported", skipped);
  return skipped > 0 ? 1 : 0;
}

}  // namespace

Command add_server_command(CLI::App& app) {
  auto args = std::make_shared<ServerArgs>();
  auto& a = *args;
  auto* server = app.add_subcommand("server", "Manage the server inventory");
  server->require_subcommand(1);

  auto* add = server->add_subcommand("add", "Add a server (secrets are stored encrypted)");
  add->add_option("name", a.name, "Unique name of the server")->required();
  add->add_option("--host", a.host, "Host name or address")->required();
  add->add_option("--port,-p", a.port, "SSH port (decimal)")->check(decimal_port());
  add->add_option("--user,-l", a.user, "Remote user (default: the local user)");
  add->add_option("--auth", a.auth,
                  "key (a key file) | agent | password (from HEALER_PASSWORD or "
                  "--password-stdin) | stored-key (the --identity file, kept encrypted in the "
                  "database)")
      ->check(CLI::IsMember({"key", "agent", "password", "stored-key"}));
  add->add_option("--identity,-i", a.identity, "Private key file");
  add->add_option("--known-hosts", a.known_hosts, "known_hosts file (default ~/.ssh/known_hosts)");
  add->add_flag("--accept-new-host-key", a.accept_new_host_key,
                "Trust and record an unknown host key on first connection (a changed key is "
                "always refused)");
  add->add_option("--tag,-t", a.tags, "Tag (repeatable)");
  add->add_option("--label", a.labels, "KEY=VALUE label (repeatable)");
  add->add_flag("--password-stdin", a.password_stdin, "Read the password from stdin's first line");
  add->add_flag("--replace", a.replace, "Update the server if the name exists");
  add_store_options(*add, a.store);

  auto* list = server->add_subcommand("list", "List servers");
  list->add_option("--tag,-t", a.tag, "Only servers with this tag");
  list->add_flag("--json", a.json, "JSON output");
  add_store_options(*list, a.store);

  auto* show = server->add_subcommand("show", "Show servers (never their secrets)");
  show->add_option("names", a.names, "Server names")->required();
  show->add_flag("--json", a.json, "JSON output");
  add_store_options(*show, a.store);

  auto* remove = server->add_subcommand("remove", "Remove servers with their history");
  remove->add_option("names", a.names, "Server names")->required();
  add_store_options(*remove, a.store);

  auto* test = server->add_subcommand(
      "test", "Connect, verify the host key, authenticate and measure the round trip");
  test->add_option("names", a.names, "Server names")->required();
  test->add_flag("--accept-new-host-key", a.accept_new_host_key,
                 "Record an unknown host key without asking");
  test->add_option("--timeout", a.timeout_s, "Seconds per server");
  test->add_flag("--json", a.json, "JSON output");
  add_store_options(*test, a.store);
  add_daemon_option(*test, a.no_daemon);
  add_pool_options(*test, a.pool);

  auto* import = server->add_subcommand(
      "import",
      "Import hosts from an OpenSSH client config (HostName, Port, User, IdentityFile, "
      "UserKnownHostsFile)");
  import->add_option("file", a.config_file, "The config file (default ~/.ssh/config)");
  import->add_option("--tag,-t", a.tags, "Tag every imported server (repeatable)");
  import->add_flag("--dry-run", a.dry_run, "Show what would be imported");
  import->add_flag("--replace", a.replace, "Update servers whose name exists");
  add_store_options(*import, a.store);

  return Command{server, [args, add, list, show, remove, test, import]() {
                   if (add->parsed()) {
                     return run_add(*args);
                   }
                   if (list->parsed()) {
                     return run_list(*args);
                   }
                   if (show->parsed()) {
                     return run_show(*args);
                   }
                   if (remove->parsed()) {
                     return run_remove(*args);
                   }
                   if (test->parsed()) {
                     return run_test(*args);
                   }
                   if (import->parsed()) {
                     return run_import(*args);
                   }
                   return static_cast<int>(kExitUsage);
                 }};
}

}  // namespace healer::cli
