#include "healer/daemon/daemon.hpp"

#include <malloc.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <cstdlib>
#include <iostream>

#include "api.hpp"
#include "healer/core/log.hpp"
#include "healer/daemon/control_server.hpp"
#include "healer/daemon/fleet.hpp"
#include "healer/daemon/http.hpp"
#include "healer/daemon/leases.hpp"
#include "healer/daemon/notifier.hpp"
#include "healer/daemon/remote_writer.hpp"
#include "healer/daemon/scheduler.hpp"
#include "healer/service/control.hpp"
#include "healer/service/errors.hpp"
#include "healer/service/heal.hpp"
#include "healer/service/runtime.hpp"
#include "healer/service/settings.hpp"
#include "healer/store/paths.hpp"
#include "token.hpp"

namespace healer::daemon {
namespace {

namespace fs = std::filesystem;

// Logs go to stderr; under systemd (JOURNAL_STREAM set) without our own timestamps, which
// journald adds.
void configure_logging(const std::string& level) {
  spdlog::drop("healer");  // the CLI's, made before the command was known
  auto logger = spdlog::stderr_logger_mt("healer");
  const bool journald = std::getenv("JOURNAL_STREAM") != nullptr;
  logger->set_pattern(journald ? "%l %n: %v" : "%Y-%m-%dT%H:%M:%S.%e %l %n: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

// Two descriptors per SSH session and one per HTTP client: the soft limit goes to the hard one.
void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

bool loopback(const std::string& address) {
  return address == "127.0.0.1" || address == "::1" || address.starts_with("127.");
}

int fail(const std::string& message) {
  std::cerr << "healer serve: " << message << '\n';
  return 2;
}

// Everything the daemon runs, in the order it is built (and the reverse of how it stops).
struct Daemon {
  explicit Daemon(service::Runtime& runtime_ref)
      : runtime(runtime_ref),
        notifier(runtime_ref),
        remote_writer(runtime_ref.settings().remote_write),
        scheduler(runtime_ref, fleet, notifier),
        // Several nodes share a fleet only through a database server; a SQLite file has one.
        leases(runtime_ref, fleet, store::is_database_url(runtime_ref.store().path().native())),
        heal(runtime_ref) {
    scheduler.set_leases(&leases);
    // Every recorded diagnosis (scheduled or on demand) feeds the automatic heal rules; their
    // notices go out like status changes.
    heal.set_notice_sink(
        [this](const service::HealNotice& notice) { notifier.notify_heal(notice); });
    fleet.set_diagnosis_sink(
        [this](const ServerState& state, const service::DiagnosedServer& diagnosed) {
          heal.observe(state.record, diagnosed);
        });
    // Every new collection goes to remote write as /metrics shows it (fleet.cpp's naming).
    fleet.set_collection_sink(
        [this](std::int64_t collected_at, std::shared_ptr<const std::vector<NodeSeries>> series) {
          remote_writer.push(collected_at, std::move(series));
        });
  }

  service::Runtime& runtime;
  FleetState fleet;
  Notifier notifier;
  RemoteWriter remote_writer;  // settings from start; SIGHUP does not change them
  Scheduler scheduler;
  LeaseKeeper leases;
  service::HealEngine heal;  // the API's plans and applies, and the automatic rules
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<Api> api;
  std::unique_ptr<HttpServer> http;
  bool stopping = false;
};

asio::awaitable<void> stop(Daemon& daemon, Deadline deadline) {
  auto log = log::get("daemon");
  log->info("stopping: no new work; in-flight runs have until the deadline");
  co_await daemon.http->async_stop(deadline);
  co_await daemon.control->async_stop(deadline);
  // Leave the pool a second of the budget to signal what still runs remotely and disconnect.
  const auto close_budget = std::chrono::seconds(1);
  const auto work_deadline = Deadline(std::max(Clock::now(), deadline.at() - close_budget));
  co_await daemon.scheduler.async_stop(work_deadline);
  // No scheduled run is left: hand the servers to the other nodes now, not when leases expire.
  co_await daemon.leases.async_stop(work_deadline);
  // Heals in their grace period stop waiting (verification recorded as interrupted); a command
  // still running is cut off by the pool's shutdown below and its audit row written after it.
  co_await daemon.heal.async_stop(work_deadline);
  // The last collections are queued now: remote write's final flush runs on its thread while
  // the pool closes.
  daemon.remote_writer.request_stop(deadline);
  co_await daemon.notifier.async_drain(work_deadline);
  co_await daemon.runtime.async_shutdown(deadline);
  co_await daemon.heal.async_stop(deadline);
  co_await daemon.remote_writer.async_stop(deadline);
  daemon.runtime.store().flush();
  log->info("stopped");
  daemon.runtime.io().stop();
}

// Every minute, free pages inside the C allocator's arenas go back to the system (malloc_trim).
// Blocks of 256 KiB and more are mmapped and unmapped when freed (run_serve); what this returns
// is the whole pages freed between smaller blocks, which stay in an arena and in the RSS until
// reused. The trim runs on a worker thread, not the loop.
asio::awaitable<void> trim_loop(Daemon& daemon) {
  auto& runtime = daemon.runtime;
  asio::steady_timer timer(runtime.io());
  while (!daemon.stopping) {
    timer.expires_after(std::chrono::minutes(1));
    auto [ec] = co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec || daemon.stopping) {
      break;
    }
    const int released = co_await runtime.async_offload([] { return malloc_trim(0); });
    spdlog::debug("malloc_trim: {}", released == 1 ? "memory released" : "nothing to release");
  }
}

asio::awaitable<void> start(Daemon& daemon) {
  asio::co_spawn(daemon.runtime.io(), trim_loop(daemon), asio::detached);
  co_await daemon.scheduler.async_start();
  if (!daemon.stopping) {
    co_await daemon.leases.async_start();
  }
}

}  // namespace

int run_serve(const service::ServeOptions& options) {
  // Blocks of 256 KiB and more come from mmap and go back to the system when freed. glibc's
  // default threshold rises to the largest block freed so far (up to 32 MiB): after one full
  // /metrics of a large fleet, its megabyte-sized pieces were carved from the arenas and left
  // them fragmented, ~19 MiB of RSS at 10,000 servers that malloc_trim could not return.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  service::SettingsSources sources;
  sources.config_file = options.config_file;
  sources.pool_flags = options.pool_flags;
  auto settings = service::load_settings(config::Environment::process(), sources);
  if (!settings) {
    return fail(settings.error().message());
  }
  if (options.listen) {
    auto listen = service::parse_listen(*options.listen);
    if (!listen) {
      return fail("--listen " + listen.error().detail);
    }
    settings->serve.listen_address = listen->first;
    settings->serve.listen_port = listen->second;
  }
  const bool beyond_loopback = !loopback(settings->serve.listen_address);
  if (beyond_loopback && settings->serve.tls_cert.empty()) {
    return fail(
        "listening on " + settings->serve.listen_address +
        " (beyond loopback) needs TLS: set [serve] tls_cert and tls_key in the config file");
  }
  if (settings->remote_write.enabled() && !settings->remote_write.bearer_token_file.empty()) {
    if (auto token = read_bearer_token(settings->remote_write.bearer_token_file); !token) {
      return fail(token.error().detail);
    }
  }
  if (options.check_config) {
    std::cout << "config OK"
              << (settings->file ? " (" + settings->file->string() + ")"
                                 : std::string(" (defaults)"))
              << '\n';
    return 0;
  }
  auto db = service::resolve_db_path(options.db);
  if (!db) {
    return fail(db.error().message());
  }
  // Next to a database file; for a database URL in the state directory (store/paths.hpp).
  auto state = store::state_directory(*db);
  if (!state) {
    return fail(state.error().message());
  }
  const auto token_file =
      settings->serve.token_file.empty() ? *state / "api.token" : settings->serve.token_file;
  if (options.print_token) {
    std::error_code ec;
    fs::create_directories(*state, ec);
    auto token = load_or_create_token(token_file);
    if (!token) {
      return fail(token.error().detail);
    }
    std::cout << *token << '\n';
    return 0;
  }

  configure_logging(options.log_level);
  raise_fd_limit();
  // The token and the control socket live in the state directory; with a database URL and the
  // master key from HEALER_MASTER_KEY nothing else has made it yet.
  if (std::error_code ec; !fs::exists(*state, ec)) {
    fs::create_directories(*state, ec);
    fs::permissions(*state, fs::perms::owner_all, fs::perm_options::replace, ec);
  }
  service::RuntimeOptions runtime_options;
  runtime_options.settings = *settings;
  runtime_options.db = *db;
  runtime_options.secrets = service::LocalSecrets::from_environment(true);
  auto runtime = service::Runtime::open(std::move(runtime_options));
  if (!runtime) {
    std::cerr << "healer serve: " << runtime.error().message() << '\n';
    return 239;
  }
  auto token = load_or_create_token(token_file);
  if (!token) {
    return fail(token.error().detail);
  }
  Daemon daemon(**runtime);
  auto& io = (*runtime)->io();
  daemon.control = std::make_unique<ControlServer>(**runtime, service::control::socket_path(*db),
                                                   [&daemon] { daemon.scheduler.reload_soon(); });
  if (auto started = daemon.control->start(); !started) {
    return fail(started.error().detail);
  }
  if (auto started = daemon.remote_writer.start(); !started) {
    return fail(started.error().detail);
  }
  ApiContext context{**runtime,       daemon.fleet,         daemon.scheduler, daemon.notifier,
                     *daemon.control, daemon.remote_writer, nullptr,          *token,
                     beyond_loopback, &daemon.heal,         &daemon.leases};
  daemon.api = std::make_unique<Api>(std::move(context));
  HttpOptions http;
  http.address = settings->serve.listen_address;
  http.port = settings->serve.listen_port;
  http.tls_cert = settings->serve.tls_cert;
  http.tls_key = settings->serve.tls_key;
  // The rate limit protects a listener others can reach; on loopback the clients are this
  // machine's own (Prometheus, the dashboard, scripts).
  http.rate_per_second = beyond_loopback ? 50 : 0;
  daemon.http = std::make_unique<HttpServer>(
      io.get_executor(), http,
      [api = daemon.api.get()](HttpRequest request) { return api->handle(std::move(request)); });
  if (auto started = daemon.http->start(); !started) {
    asio::co_spawn(io, daemon.control->async_stop(Deadline::after(std::chrono::seconds(1))),
                   asio::detached);
    io.run();
    return fail(started.error().message());
  }
  daemon.api->context().http = daemon.http.get();
  log::get("daemon")->info("healer {} serving {} on {}:{} ({} servers' pool, database {})",
                           service::version(), beyond_loopback ? "https" : "http", http.address,
                           daemon.http->port(), (*runtime)->settings().pool.max_connections,
                           store::display_location(db->native()));

  asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
  std::function<void(std::error_code, int)> on_signal;
  on_signal = [&](std::error_code ec, int number) {
    if (ec) {
      return;
    }
    if (number == SIGHUP) {
      auto reloaded = service::load_settings(config::Environment::process(), sources);
      if (!reloaded) {
        log::get("daemon")->error(
            "SIGHUP: the config file is not valid, keeping the running "
            "one: {}",
            reloaded.error().message());
      } else {
        (*runtime)->replace_settings(std::move(*reloaded));
        daemon.scheduler.settings_changed();
        log::get("daemon")->info("SIGHUP: configuration reloaded (pool settings need a restart)");
      }
      signals.async_wait(on_signal);
      return;
    }
    if (daemon.stopping) {
      return;
    }
    daemon.stopping = true;
    asio::co_spawn(io, stop(daemon, Deadline::after((*runtime)->settings().serve.shutdown_timeout)),
                   asio::detached);
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  asio::co_spawn(io, start(daemon), asio::detached);
  io.run();
  return 0;
}

}  // namespace healer::daemon
