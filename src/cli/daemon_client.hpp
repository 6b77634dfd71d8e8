#pragma once

#include <functional>
#include <optional>
#include <string>

#include "common.hpp"
#include "healer/core/result.hpp"
#include "healer/service/control.hpp"
#include "pool_options.hpp"

// A running `healer serve` for the same database does the work of `exec`, `diagnose`,
// `metrics collect` and `server test` on its warm pool; the CLI renders its answer exactly as a
// local run's. --no-daemon (or HEALER_NO_DAEMON=1) forces a local run, and so do pool flags or
// --config (they ask for a pool configured otherwise than the daemon's).
namespace healer::cli {

/// The daemon to use for this command, or nullopt for a local run.
[[nodiscard]] Result<std::optional<service::control::Client>> daemon_for(
    const StoreArgs& store, const PoolOptionValues& pool, bool no_daemon);

/// Sends one request and reads until its outcome (returned) or error; progress frames go to
/// `on_progress`.
[[nodiscard]] Result<service::Json> call_daemon(
    service::control::Client& client, std::string op, service::Json request,
    const std::function<void(const service::Json&)>& on_progress = {});

/// Tells a running daemon (if any) that the inventory changed, so it schedules the change now.
void notify_inventory_changed(const StoreArgs& store);

/// Registers --no-daemon on `app`.
void add_daemon_option(CLI::App& app, bool& no_daemon);

}  // namespace healer::cli
