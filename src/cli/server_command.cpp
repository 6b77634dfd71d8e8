#include "server_command.hpp"

#include <fmt/format.h>
#include <glob.h>
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "healer/cli/exit_codes.hpp"
#include "healer/core/deadline.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/ssh/session.hpp"
#include "inventory.hpp"
#include "pool_options.hpp"
#include "ssh_config.hpp"

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

const char* auth_name(store::AuthMethod method) {
  switch (method) {
    case store::AuthMethod::key_file:
      return "key";
    case store::AuthMethod::agent:
      return "agent";
    case store::AuthMethod::password:
      return "password";
    case store::AuthMethod::stored_key:
      return "stored-key";
  }
  return "?";
}

nlohmann::json record_json(const store::ServerRecord& record) {
  nlohmann::json doc{
      {"id", record.id},
      {"name", record.name},
      {"host", record.host},
      {"port", record.port},
      {"user", record.user},
      {"auth", auth_name(record.auth_method)},
      {"identity_file", record.identity_file},
      {"known_hosts_file", record.known_hosts_file},
      {"host_key_policy",
       record.host_key_policy == store::HostKeyPolicy::accept_new ? "accept-new" : "strict"},
      {"tags", record.tags},
      {"labels", record.labels},
      {"has_secret", record.has_secret},
      {"created_at", record.created_at},
      {"updated_at", record.updated_at}};
  return doc;
}

// --- add ---------------------------------------------------------------------------------

int run_add(const ServerArgs& args) {
  store::ServerRecord record;
  record.name = args.name;
  record.host = args.host;
  record.port = args.port;
  record.user = args.user.empty() ? local_user() : args.user;
  record.known_hosts_file = args.known_hosts;
  record.host_key_policy =
      args.accept_new_host_key ? store::HostKeyPolicy::accept_new : store::HostKeyPolicy::strict;
  record.tags = args.tags;
  for (const auto& label : args.labels) {
    const auto eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      return usage(fmt::format("--label '{}' is not KEY=VALUE", label));
    }
    record.labels[label.substr(0, eq)] = label.substr(eq + 1);
  }
  if (args.auth == "key") {
    record.auth_method = store::AuthMethod::key_file;
    record.identity_file =
        args.identity.empty() ? default_identity() : fs::absolute(args.identity).string();
  } else if (args.auth == "agent") {
    record.auth_method = store::AuthMethod::agent;
    record.identity_file = args.identity;
  } else if (args.auth == "password") {
    record.auth_method = store::AuthMethod::password;
    std::string password;
    if (args.password_stdin) {
      std::getline(std::cin, password);
    } else if (const char* env = std::getenv("HEALER_PASSWORD"); env != nullptr) {
      password = env;
    } else {
      return usage(
          "--auth password needs the password in HEALER_PASSWORD or on stdin with "
          "--password-stdin");
    }
    if (password.empty()) {
      return usage("the password is empty");
    }
    record.secret = std::move(password);
  } else {  // stored-key
    record.auth_method = store::AuthMethod::stored_key;
    if (args.identity.empty()) {
      return usage(
          "--auth stored-key needs --identity FILE: the key is read from it and kept "
          "encrypted in the database");
    }
    auto pem = read_text_file(args.identity);
    if (!pem) {
      return usage(fmt::format("cannot read the key file {}", args.identity));
    }
    record.secret = std::move(*pem);
  }

  auto store = open_store(args.store);
  if (!store) {
    return fail(store.error());
  }
  if (args.replace) {
    if (auto existing = store->get_server_by_name(args.name); existing) {
      record.id = existing->id;
      if (auto updated = store->update_server(record); !updated) {
        return fail(updated.error());
      }
      std::cout << fmt::format("updated server {} ({})\n", record.name, describe(record));
      return 0;
    }
  }
  auto id = store->add_server(record);
  if (!id) {
    if (id.error().code == store::Errc::duplicate_name) {
      return usage(fmt::format("a server named '{}' already exists (use --replace to update it)",
                               args.name));
    }
    return fail(id.error());
  }
  std::cout << fmt::format("added server {} ({})\n", record.name, describe(record));
  return 0;
}

// --- list / show / remove ------------------------------------------------------------------

int run_list(const ServerArgs& args) {
  auto store = open_store(args.store);
  if (!store) {
    return fail(store.error());
  }
  auto records = store->list_servers(args.tag);
  if (!records) {
    return fail(records.error());
  }
  if (args.json) {
    auto doc = nlohmann::json::array();
    for (const auto& record : *records) {
      doc.push_back(record_json(record));
    }
    std::cout << doc.dump(2) << '\n';
    return 0;
  }
  if (records->empty()) {
    std::cerr << (args.tag.empty() ? "no servers yet (healer server add, healer server import)\n"
                                   : fmt::format("no server has the tag '{}'\n", args.tag));
    return 0;
  }
  std::size_t name_width = 4;
  std::size_t target_width = 6;
  for (const auto& record : *records) {
    name_width = std::max(name_width, record.name.size());
    target_width = std::max(target_width, describe(record).size());
  }
  std::cout << fmt::format("{:<{}}  {:<{}}  {:<10}  {}\n", "NAME", name_width, "TARGET",
                           target_width, "AUTH", "TAGS");
  for (const auto& record : *records) {
    std::cout << fmt::format("{:<{}}  {:<{}}  {:<10}  {}\n", record.name, name_width,
                             describe(record), target_width, auth_name(record.auth_method),
                             join(record.tags, ","));
  }
  return 0;
}

int run_show(const ServerArgs& args) {
  auto store = open_store(args.store);
  if (!store) {
    return fail(store.error());
  }
  auto doc = nlohmann::json::array();
  for (const auto& name : args.names) {
    auto record = store->get_server_by_name(name);
    if (!record) {
      return record.error().code == store::Errc::not_found
                 ? usage(fmt::format("no server named '{}'", name))
                 : fail(record.error());
    }
    if (args.json) {
      doc.push_back(record_json(*record));
      continue;
    }
    std::cout << fmt::format(
        "{}\n  target:      {}\n  auth:        {}{}\n  known_hosts: {} ({})\n  tags:        {}\n",
        record->name, describe(*record), auth_name(record->auth_method),
        record->has_secret              ? " (secret stored, encrypted)"
        : record->identity_file.empty() ? ""
                                        : fmt::format(", {}", record->identity_file),
        record->known_hosts_file.empty() ? default_known_hosts() : record->known_hosts_file,
        record->host_key_policy == store::HostKeyPolicy::accept_new ? "accept new keys" : "strict",
        join(record->tags, ", "));
    for (const auto& [key, value] : record->labels) {
      std::cout << fmt::format("  label:       {}={}\n", key, value);
    }
  }
  if (args.json) {
    std::cout << (doc.size() == 1 ? doc.front() : doc).dump(2) << '\n';
  }
  return 0;
}

int run_remove(const ServerArgs& args) {
  auto store = open_store(args.store);
  if (!store) {
    return fail(store.error());
  }
  for (const auto& name : args.names) {
    if (auto removed = store->remove_server_by_name(name); !removed) {
      return removed.error().code == store::Errc::not_found
                 ? usage(fmt::format("no server named '{}'", name))
                 : fail(removed.error());
    }
    std::cout << fmt::format("removed server {}\n", name);
  }
  return 0;
}

// --- test ----------------------------------------------------------------------------------

struct Probe {
  Result<void> outcome;
  std::string fingerprint;
  double connect_ms = 0;
  double ping_ms = 0;
  double exec_ms = 0;
};

asio::awaitable<Probe> probe_server(pool::Server server, Deadline deadline) {
  Probe probe;
  const auto started = Clock::now();
  auto session = co_await ssh::Session::async_connect(server.endpoint, server.connect, deadline);
  probe.connect_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  if (!session) {
    probe.outcome = std::move(session).error();
    co_return probe;
  }
  probe.fingerprint = session->host_key_fingerprint();
  const auto ping_started = Clock::now();
  if (auto pinged = co_await session->async_ping(deadline); !pinged) {
    probe.outcome = std::move(pinged).error();
    co_await session->async_close(Deadline::after(std::chrono::seconds(1)));
    co_return probe;
  }
  probe.ping_ms = std::chrono::duration<double, std::milli>(Clock::now() - ping_started).count();
  const auto exec_started = Clock::now();
  auto ran = co_await session->async_exec("true", ssh::ExecOptions(), deadline);
  probe.exec_ms = std::chrono::duration<double, std::milli>(Clock::now() - exec_started).count();
  if (!ran) {
    probe.outcome = std::move(ran).error();
  }
  co_await session->async_close(Deadline::after(std::chrono::seconds(1)));
  co_return probe;
}

Probe run_probe(pool::Server server, Deadline deadline) {
  asio::io_context io;
  std::optional<Probe> probe;
  asio::co_spawn(io, probe_server(std::move(server), deadline),
                 [&probe](std::exception_ptr failure, Probe value) {
                   if (failure) {
                     std::rethrow_exception(failure);
                   }
                   probe = std::move(value);
                 });
  io.run();
  return std::move(*probe);
}

bool ask_yes(const std::string& question) {
  std::cerr << question << " [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) {
    return false;
  }
  return answer == "y" || answer == "Y" || answer == "yes";
}

int run_test(const ServerArgs& args) {
  auto config = resolve_pool_config(args.pool);
  if (!config) {
    return usage(config.error().message());
  }
  auto store = open_store(args.store);
  if (!store) {
    return fail(store.error());
  }
  int exit_code = 0;
  auto results = nlohmann::json::array();
  for (const auto& name : args.names) {
    auto record = store->get_server_by_name(name, store::SecretAccess::decrypt);
    if (!record) {
      return record.error().code == store::Errc::not_found
                 ? usage(fmt::format("no server named '{}'", name))
                 : fail(record.error());
    }
    auto server = pool_server_for(*record, *config);
    if (!server) {
      return fail(server.error());
    }
    if (args.accept_new_host_key) {
      server->connect.host_key_policy = ssh::HostKeyPolicy::accept_new;
    }
    const auto timeout =
        std::chrono::milliseconds(static_cast<std::int64_t>(args.timeout_s * 1000));
    auto probe = run_probe(*server, Deadline::after(timeout));
    if (!probe.outcome && probe.outcome.error().code == ssh::Errc::host_unknown && !args.json &&
        isatty(STDIN_FILENO) != 0) {
      // Ask before trusting a new key, showing what the server presented; then pin exactly that
      // key: a second connection presenting another one is refused.
      std::cerr << "healer: " << probe.outcome.error().message() << '\n';
      static const std::regex kFingerprint("SHA256:[A-Za-z0-9+/=]+");
      std::smatch shown;
      const auto message = probe.outcome.error().detail;
      if (std::regex_search(message, shown, kFingerprint) &&
          ask_yes(fmt::format("Trust the key {} of {} and record it in {}?", shown.str(),
                              describe(*record), server->connect.known_hosts_file))) {
        server->connect.host_key_policy = ssh::HostKeyPolicy::accept_new;
        server->connect.accept_fingerprint = shown.str();  // exactly the key shown, or nothing
        probe = run_probe(*server, Deadline::after(timeout));
      }
    }
    if (args.json) {
      nlohmann::json doc{{"server", record->name}, {"target", describe(*record)}};
      doc["ok"] = probe.outcome.has_value();
      if (probe.outcome) {
        doc["host_key_fingerprint"] = probe.fingerprint;
        doc["connect_ms"] = probe.connect_ms;
        doc["round_trip_ms"] = probe.ping_ms;
        doc["exec_ms"] = probe.exec_ms;
      } else {
        const auto& error = probe.outcome.error();
        doc["error"] = {{"category", error.code.category().name()}, {"message", error.message()}};
      }
      results.push_back(std::move(doc));
    } else if (probe.outcome) {
      std::cout << fmt::format(
          "OK {} ({}): host key {}, connected and authenticated in {:.1f} ms, round trip "
          "{:.1f} ms, `true` in {:.1f} ms\n",
          record->name, describe(*record), probe.fingerprint, probe.connect_ms, probe.ping_ms,
          probe.exec_ms);
    } else {
      std::cerr << fmt::format("FAILED {} ({}): {}\n", record->name, describe(*record),
                               probe.outcome.error().message());
    }
    if (!probe.outcome && exit_code == 0) {
      exit_code = exit_code_for(probe.outcome.error());
    }
  }
  if (args.json) {
    std::cout << (results.size() == 1 ? results.front() : results).dump(2) << '\n';
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
  for (const auto& warning : parsed.warnings) {
    std::cerr << "healer: " << warning << '\n';
  }
  if (parsed.hosts.empty()) {
    std::cerr << fmt::format("healer: {} names no concrete host (only patterns)\n", file);
    return 0;
  }
  std::optional<store::Store> store;
  if (!args.dry_run) {
    auto opened = open_store(args.store);
    if (!opened) {
      return fail(opened.error());
    }
    store.emplace(std::move(*opened));
  }
  int imported = 0;
  int skipped = 0;
  for (const auto& host : parsed.hosts) {
    store::ServerRecord record;
    record.name = host.alias;
    record.host = host.hostname;
    record.port = host.port;
    record.user = host.user.empty() ? context.local_user : host.user;
    record.identity_file = host.identity_file.empty() ? default_identity() : host.identity_file;
    record.known_hosts_file = host.known_hosts_file;
    record.tags = args.tags;
    std::string verb = args.dry_run ? "would import" : "imported";
    if (store) {
      auto id = store->add_server(record);
      if (!id && id.error().code == store::Errc::duplicate_name && args.replace) {
        auto existing = store->get_server_by_name(record.name);
        if (existing) {
          record.id = existing->id;
          auto updated = store->update_server(record);
          id = updated ? Result<std::int64_t>(record.id) : std::move(updated).error();
          verb = "updated";
        }
      }
      if (!id) {
        ++skipped;
        std::cerr << fmt::format("healer: {} skipped: {}\n", host.alias,
                                 id.error().code == store::Errc::duplicate_name
                                     ? "a server with that name exists (use --replace to update it)"
                                     : id.error().message());
        continue;
      }
    }
    ++imported;
    std::cout << fmt::format("{} {} ({}{})\n", verb, host.alias, describe(record),
                             host.identity_file.empty() ? "" : ", key " + host.identity_file);
    if (!host.skipped.empty()) {
      std::cout << fmt::format("  options not used by healer: {}\n", join(host.skipped, ", "));
    }
    for (const auto& warning : host.warnings) {
      std::cout << fmt::format("  note: {}\n", warning);
    }
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
  add->add_option("--port,-p", a.port, "SSH port")->check(CLI::Range(1, 65535));
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
  test->add_option("--timeout", a.timeout_s, "Seconds per server")->check(CLI::PositiveNumber);
  test->add_flag("--json", a.json, "JSON output");
  add_store_options(*test, a.store);
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
