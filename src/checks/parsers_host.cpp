// Host resource checks: memory, swap, load, CPU, OOM kills, processes, file handles, uptime.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common.hpp"
#include "healer/checks/parsers.hpp"
#include "healer/checks/records.hpp"
#include "text.hpp"

namespace healer::checks {
namespace {

CheckResult judge_memory(std::string_view name, const CheckInput& input,
                         const CheckSettings& settings) {
  if (auto failed = detail::cannot_run(name, input)) {
    return *std::move(failed);
  }
  const auto info = parse_meminfo(input.out);
  if (!info) {
    return detail::parse_failure(name, "/proc/meminfo", info.error(), input);
  }
  const Thresholds levels = settings.thresholds_for("memory", defaults::kMemory);
  const double total = static_cast<double>(info->total);
  const double available = static_cast<double>(info->available);
  const double available_pct = 100.0 * available / total;
  const Status status = levels.evaluate(available_pct);
  std::string message = fmt::format("{} available{} ({} of {}; {})", text::percent(available_pct),
                                    detail::mark(status), text::bytes(available),
                                    text::bytes(total), detail::levels_text(levels, "%"));
  if (info->available_estimated) {
    message += "; estimated as MemFree+Buffers+Cached (no MemAvailable before Linux 3.14)";
  }
  return detail::make(name, status, message,
                      {detail::perf("available", available_pct, "%", levels, 0.0, 100.0),
                       detail::perf("available_bytes", available, "B", {}, 0.0, total)});
}

}  // namespace

CheckResult parse_memory(const CheckInput& input, const CheckSettings& settings) {
  return judge_memory("memory", input, settings);
}

CheckResult parse_seed_meminfo(const CheckInput& input, const CheckSettings& settings) {
  return judge_memory("seed.meminfo", input, settings);
}

CheckResult parse_swap(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "swap";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto info = parse_meminfo(input.out);
  if (!info) {
    return detail::parse_failure(kName, "/proc/meminfo", info.error(), input);
  }
  if (!info->swap_total || !info->swap_free || *info->swap_free > *info->swap_total) {
    return detail::unknown(kName, "no valid SwapTotal/SwapFree in /proc/meminfo");
  }
  const Thresholds levels = settings.thresholds_for("swap", defaults::kSwap);
  if (*info->swap_total == 0) {
    // check_swap defaults to CRITICAL here; many servers and containers run without swap by
    // design, so healer reports it as a fact, not a problem.
    return detail::make(kName, Status::ok, "no swap configured",
                        {detail::perf("used", 0.0, "%", levels, 0.0, 100.0)});
  }
  const double total = static_cast<double>(*info->swap_total);
  const double used = static_cast<double>(*info->swap_total - *info->swap_free);
  const double used_pct = 100.0 * used / total;
  const Status status = levels.evaluate(used_pct);
  return detail::make(
      kName, status,
      fmt::format("{} of swap used{} ({} of {}; {})", text::percent(used_pct), detail::mark(status),
                  text::bytes(used), text::bytes(total), detail::levels_text(levels, "%")),
      {detail::perf("used", used_pct, "%", levels, 0.0, 100.0),
       detail::perf("used_bytes", used, "B", {}, 0.0, total)});
}

CheckResult parse_load(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "load";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto parts = text::sections(input.out, input.marker);
  const auto* load_part = text::find_section(parts, "");
  const auto load = parse_loadavg(load_part != nullptr ? load_part->body : std::string_view{});
  if (!load) {
    return detail::parse_failure(kName, "/proc/loadavg", load.error(), input);
  }
  const auto* cores_part = text::find_section(parts, "cores");
  const auto cores =
      cores_part != nullptr ? text::to_u64(text::first_line_view(cores_part->body)) : std::nullopt;
  if (!cores || *cores == 0 || *cores > 1'000'000) {
    return detail::unknown(kName, "cannot count the online CPUs" + detail::exit_note(input));
  }
  const double per_core = load->load5 / static_cast<double>(*cores);
  const Thresholds levels = settings.thresholds_for("load", defaults::kLoad);
  const Status status = levels.evaluate(per_core);
  return detail::make(
      kName, status,
      fmt::format("load average {} {} {} on {} CPU{}: {} per CPU over 5 min{} ({})",
                  text::number(load->load1, 2), text::number(load->load5, 2),
                  text::number(load->load15, 2), *cores, *cores == 1 ? "" : "s",
                  text::number(per_core, 2), detail::mark(status), detail::levels_text(levels, "")),
      {detail::perf("load5_per_cpu", per_core, "", levels, 0.0),
       detail::perf("load1", load->load1, "", {}, 0.0),
       detail::perf("load5", load->load5, "", {}, 0.0),
       detail::perf("load15", load->load15, "", {}, 0.0),
       detail::perf("cpus", static_cast<double>(*cores), "", {})});
}

CheckResult parse_cpu(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "cpu";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  std::vector<std::string_view> samples;
  for (const auto& part : text::sections(input.out, input.marker)) {
    if (part.tag == "sample") {
      samples.push_back(part.body);
    }
  }
  if (samples.size() != 2) {
    return detail::unknown(kName, fmt::format("expected 2 /proc/stat samples, got {}{}",
                                              samples.size(), detail::exit_note(input)));
  }
  const auto before = parse_proc_stat(samples[0]);
  const auto after = parse_proc_stat(samples[1]);
  if (!before || !after) {
    return detail::parse_failure(kName, "/proc/stat", before ? after.error() : before.error(),
                                 input);
  }
  const auto usage = cpu_usage(*before, *after);
  if (!usage) {
    return detail::parse_failure(kName, "/proc/stat samples", usage.error(), input);
  }
  const Thresholds busy_levels = settings.thresholds_for("cpu.busy", defaults::kCpuBusy);
  const Thresholds iowait_levels = settings.thresholds_for("cpu.iowait", defaults::kCpuIowait);
  const Thresholds steal_levels = settings.thresholds_for("cpu.steal", defaults::kCpuSteal);
  const Status busy = busy_levels.evaluate(usage->busy);
  const Status iowait = iowait_levels.evaluate(usage->iowait);
  const Status steal = steal_levels.evaluate(usage->steal);
  return detail::make(
      kName, worst(busy, worst(iowait, steal)),
      fmt::format("busy {}{}, iowait {}{}, steal {}{} over a 1 s sample",
                  text::percent(usage->busy), detail::mark(busy), text::percent(usage->iowait),
                  detail::mark(iowait), text::percent(usage->steal), detail::mark(steal)),
      {detail::perf("busy", usage->busy, "%", busy_levels, 0.0, 100.0),
       detail::perf("iowait", usage->iowait, "%", iowait_levels, 0.0, 100.0),
       detail::perf("steal", usage->steal, "%", steal_levels, 0.0, 100.0)});
}

CheckResult parse_oom_kills(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "oom_kills";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  if (input.exit_status != 0) {
    return detail::unknown(kName, "cannot read /proc/vmstat" + detail::exit_note(input));
  }
  const auto count = parse_counter(input.out, "oom_kill");
  if (!count) {
    if (text::trim(input.out).empty()) {
      return detail::unknown(kName, "no oom_kill counter in /proc/vmstat (Linux < 4.13)");
    }
    return detail::parse_failure(kName, "/proc/vmstat", count.error(), input);
  }
  // A counter below the baseline means the server rebooted since: every kill is new.
  const std::uint64_t baseline = settings.oom_kill_baseline.value_or(0);
  const std::uint64_t fresh = *count >= baseline ? *count - baseline : *count;
  const Thresholds levels = settings.thresholds_for("oom_kills", defaults::kOomKills);
  const Status status = levels.evaluate(static_cast<double>(fresh));
  std::string message;
  if (settings.oom_kill_baseline) {
    message = fmt::format("{} new OOM kill{} ({} since boot, {} accounted for)", fresh,
                          fresh == 1 ? "" : "s", *count, baseline);
  } else {
    message = fmt::format("{} OOM kill{} since boot", fresh, fresh == 1 ? "" : "s");
  }
  return detail::make(kName, status, message,
                      {detail::perf("new", static_cast<double>(fresh), "", levels, 0.0),
                       detail::perf("oom_kill", static_cast<double>(*count), "c", {}, 0.0)});
}

CheckResult parse_processes(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "processes";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto parts = text::sections(input.out, input.marker);
  const auto* procstat = text::find_section(parts, "procstat");
  const auto* ps_part = text::find_section(parts, "");
  const auto processes =
      procstat != nullptr
          ? parse_proc_pid_stats(procstat->body)
          : parse_ps_states(ps_part != nullptr ? ps_part->body : std::string_view{});
  if (!processes) {
    return detail::parse_failure(kName, procstat != nullptr ? "/proc/<pid>/stat" : "ps output",
                                 processes.error(), input);
  }
  std::vector<std::string> zombies;
  std::vector<std::string> blocked;
  for (const auto& process : *processes) {
    const std::string label =
        process.pid
            ? fmt::format("{}[{}]", process.command.empty() ? "?" : process.command, *process.pid)
            : std::string("?");
    if (process.state == 'Z') {
      zombies.push_back(label);
    } else if (process.state == 'D') {
      blocked.push_back(label);
    }
  }
  const Thresholds zombie_levels = settings.thresholds_for("processes.zombie", defaults::kZombies);
  const Thresholds dstate_levels = settings.thresholds_for("processes.dstate", defaults::kDState);
  const Status zombie_status = zombie_levels.evaluate(static_cast<double>(zombies.size()));
  const Status dstate_status = dstate_levels.evaluate(static_cast<double>(blocked.size()));
  std::string message = fmt::format("{} zombie{}, {} in D state{} of {} processes", zombies.size(),
                                    detail::mark(zombie_status), blocked.size(),
                                    detail::mark(dstate_status), processes->size());
  if (!blocked.empty()) {
    message += "; D: " + text::join_limited(blocked, 5);
  }
  if (!zombies.empty()) {
    message += "; Z: " + text::join_limited(zombies, 5);
  }
  return detail::make(
      kName, worst(zombie_status, dstate_status), message,
      {detail::perf("zombie", static_cast<double>(zombies.size()), "", zombie_levels, 0.0),
       detail::perf("dstate", static_cast<double>(blocked.size()), "", dstate_levels, 0.0),
       detail::perf("total", static_cast<double>(processes->size()), "", {}, 0.0)});
}

CheckResult parse_file_descriptors(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "file_descriptors";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto file_nr = parse_file_nr(input.out);
  if (!file_nr) {
    return detail::parse_failure(kName, "/proc/sys/fs/file-nr", file_nr.error(), input);
  }
  const auto used = static_cast<double>(file_nr->allocated - file_nr->unused);
  const auto max = static_cast<double>(file_nr->max);
  const double used_pct = 100.0 * used / max;
  const Thresholds levels = settings.thresholds_for("file_descriptors", defaults::kFileDescriptors);
  const Status status = levels.evaluate(used_pct);
  return detail::make(
      kName, status,
      fmt::format("{} of {} file handles in use: {}{} ({})", text::number(used), text::number(max),
                  text::percent(used_pct), detail::mark(status), detail::levels_text(levels, "%")),
      {detail::perf("used", used_pct, "%", levels, 0.0, 100.0),
       detail::perf("handles", used, "", {}, 0.0, max)});
}

CheckResult parse_uptime(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "uptime";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto seconds = parse_proc_uptime(input.out);
  if (!seconds) {
    return detail::parse_failure(kName, "/proc/uptime", seconds.error(), input);
  }
  const Thresholds levels = settings.thresholds_for("uptime", defaults::kUptime);
  const Status status = levels.evaluate(*seconds);
  std::string message = "up " + text::duration(*seconds);
  if (status != Status::ok) {
    message += "; rebooted recently" + std::string(detail::mark(status));
  }
  return detail::make(kName, status, message,
                      {detail::perf("uptime", std::floor(*seconds), "s", levels, 0.0)});
}

}  // namespace healer::checks
