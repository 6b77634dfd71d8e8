#pragma once

#include <optional>
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

/// The default or seed check called `name`.
[[nodiscard]] std::optional<CheckDefinition> find_check(std::string_view name);

}  // namespace healer::checks
