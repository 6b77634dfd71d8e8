#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/checks/check.hpp"

namespace healer::checks {

/// The built-in checks, in a stable order: disk_space, disk_inodes, memory, swap, load, cpu,
/// oom_kills, failed_units, time_sync, clock_skew, reboot_required, security_updates,
/// kernel_errors, read_only_mounts, processes, file_descriptors, uptime, listening_ports.
[[nodiscard]] std::vector<CheckDefinition> default_checks();

/// The seed's seven commands (`uptime`, `df -P /`, `free -b`, `cat /proc/loadavg`,
/// `systemctl is-system-running || true`, `ps -e | wc -l`, `head -5 /proc/meminfo`), each
/// behind `LC_ALL=C`, with simple parsers; names start with "seed.".
[[nodiscard]] std::vector<CheckDefinition> seed_checks();

/// What an application needs from its server (the store's ApplicationRecord, without the store).
struct ApplicationSpec {
  std::string name;
  std::vector<std::string> units;      ///< systemd units that must be active
  std::string health_url;              ///< fetched from the server itself; empty: none
  std::vector<std::string> log_paths;  ///< files scanned for error lines
};

/// The checks of one application, those it has data for: "app.units", "app.health" (curl or
/// wget on the server, so a URL bound to localhost works), "app.logs". Every value is
/// single-quoted into the command, so names with spaces or quotes cannot inject shell.
[[nodiscard]] std::vector<CheckDefinition> application_checks(const ApplicationSpec& app);

/// The default or seed check called `name`.
[[nodiscard]] std::optional<CheckDefinition> find_check(std::string_view name);

}  // namespace healer::checks
