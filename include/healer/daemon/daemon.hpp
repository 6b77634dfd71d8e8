#pragma once

#include "healer/service/serve_options.hpp"

namespace healer::daemon {

/// `healer serve`: one process, one event loop, one pool for the scheduler, the control socket
/// and the HTTP API, until SIGTERM or SIGINT (then a graceful stop within the configured
/// shutdown timeout); SIGHUP reloads the config file. Returns the exit code.
int run_serve(const service::ServeOptions& options);

}  // namespace healer::daemon
