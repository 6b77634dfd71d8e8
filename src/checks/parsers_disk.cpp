// Filesystem checks: space, inodes, read-only mounts.
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "common.hpp"
#include "healer/checks/parsers.hpp"
#include "healer/checks/records.hpp"
#include "text.hpp"

namespace healer::checks {
namespace {

bool listed(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// overlay/aufs mounted at / is a container's root filesystem and its space is what that
// container has; elsewhere it is a container's view of a backing filesystem that is checked
// where it is mounted itself (e.g. /var/lib/docker), so it would only repeat that one.
FsClass effective_class(std::string_view fstype, std::string_view device,
                        std::string_view mount_point) {
  if (fstype.empty()) {
    return classify_device(device);
  }
  if ((fstype == "overlay" || fstype == "aufs") && mount_point == "/") {
    return FsClass::local;
  }
  return classify_fstype(fstype);
}

enum class DfMeasure { space, inodes };

struct Judged {
  const DfRow* row;
  double used_percent;
  Status status;
};

CheckResult judge_df(std::string_view name, DfMeasure measure, std::string_view key,
                     const Thresholds& defaults, const CheckInput& input,
                     const CheckSettings& settings, bool exclude) {
  if (auto failed = detail::cannot_run(name, input)) {
    return *std::move(failed);
  }
  const auto parts = text::sections(input.out, input.marker);
  const auto* df_part = text::find_section(parts, "");
  const auto table = parse_df(df_part != nullptr ? df_part->body : std::string_view{});
  if (!table) {
    return detail::parse_failure(name, "df output", table.error(), input);
  }
  // busybox df has no -T: types come from the mount table the command appends. A later mount
  // on the same mount point hides the earlier one, so the last entry wins.
  std::map<std::string, std::string, std::less<>> mount_types;
  if (!table->has_type) {
    if (const auto* mounts_part = text::find_section(parts, "mounts")) {
      if (auto mounts = parse_mounts(mounts_part->body)) {
        for (auto& entry : *mounts) {
          mount_types.insert_or_assign(std::move(entry.mount_point), std::move(entry.fstype));
        }
      }
    }
  }
  const Thresholds levels = settings.thresholds_for(key, defaults);
  std::vector<Judged> judged;
  std::size_t skipped = 0;
  for (const auto& row : table->rows) {
    std::string_view fstype = row.fstype;
    if (fstype.empty()) {
      if (const auto it = mount_types.find(row.mount_point); it != mount_types.end()) {
        fstype = it->second;
      }
    }
    const bool excluded =
        exclude && (effective_class(fstype, row.filesystem, row.mount_point) != FsClass::local ||
                    listed(settings.ignored_fstypes, fstype) ||
                    listed(settings.ignored_mounts, row.mount_point));
    const auto used = row.used_percent();
    if (excluded || !used) {
      ++skipped;
      continue;
    }
    judged.push_back({&row, *used, levels.evaluate(*used)});
  }
  const std::string_view what = measure == DfMeasure::space ? "space" : "inodes";
  if (judged.empty()) {
    return detail::unknown(name, fmt::format("no local filesystem to check ({} skipped){}", skipped,
                                             detail::exit_note(input)));
  }
  std::stable_sort(judged.begin(), judged.end(), [](const Judged& a, const Judged& b) {
    return a.used_percent > b.used_percent;
  });
  Status status = Status::ok;
  std::vector<std::string> problems;
  std::vector<Perfdata> perfdata;
  for (const auto& item : judged) {
    status = worst(status, item.status);
    if (item.status != Status::ok) {
      const auto free_text =
          measure == DfMeasure::space
              ? text::bytes(static_cast<double>(item.row->available) * 1024.0) + " free"
              : fmt::format("{} inodes free", item.row->available);
      problems.push_back(fmt::format("{} {} used{} ({})", item.row->mount_point,
                                     text::percent(item.used_percent), detail::mark(item.status),
                                     free_text));
    }
    perfdata.push_back(
        detail::perf(item.row->mount_point, item.used_percent, "%", levels, 0.0, 100.0));
  }
  const std::string levels_part = detail::levels_text(levels, "%");
  std::string message;
  if (problems.empty()) {
    message =
        fmt::format("{} OK on {} filesystem{} ({}); fullest {} {}", what, judged.size(),
                    judged.size() == 1 ? "" : "s", levels_part, judged.front().row->mount_point,
                    text::percent(judged.front().used_percent));
  } else {
    message = fmt::format("{} of {} filesystem{} low on {} ({}): {}", problems.size(),
                          judged.size(), judged.size() == 1 ? "" : "s", what, levels_part,
                          text::join_limited(problems, 3));
  }
  return detail::make(name, status, message, std::move(perfdata));
}

}  // namespace

CheckResult parse_disk_space(const CheckInput& input, const CheckSettings& settings) {
  return judge_df("disk_space", DfMeasure::space, "disk_space", defaults::kDiskSpace, input,
                  settings, true);
}

CheckResult parse_disk_inodes(const CheckInput& input, const CheckSettings& settings) {
  return judge_df("disk_inodes", DfMeasure::inodes, "disk_inodes", defaults::kDiskInodes, input,
                  settings, true);
}

CheckResult parse_seed_df_root(const CheckInput& input, const CheckSettings& settings) {
  return judge_df("seed.df_root", DfMeasure::space, "disk_space", defaults::kDiskSpace, input,
                  settings, false);
}

CheckResult parse_read_only_mounts(const CheckInput& input, const CheckSettings& settings) {
  static constexpr std::string_view kName = "read_only_mounts";
  if (auto failed = detail::cannot_run(kName, input)) {
    return *std::move(failed);
  }
  const auto mounts = parse_mounts(input.out);
  if (!mounts) {
    return detail::parse_failure(kName, "/proc/mounts", mounts.error(), input);
  }
  // The last entry for a mount point is the one in effect (it hides the ones before it).
  std::map<std::string_view, const MountEntry*> effective;
  for (const auto& entry : *mounts) {
    effective.insert_or_assign(entry.mount_point, &entry);
  }
  std::vector<std::string> read_only;
  std::size_t checked = 0;
  for (const auto& [mount_point, entry] : effective) {
    if (effective_class(entry->fstype, entry->device, mount_point) != FsClass::local ||
        listed(settings.ignored_fstypes, entry->fstype) ||
        listed(settings.ignored_mounts, mount_point)) {
      continue;
    }
    ++checked;
    if (entry->has_option("ro")) {
      read_only.push_back(fmt::format("{} ({} on {})", mount_point, entry->fstype, entry->device));
    }
  }
  const Thresholds levels = settings.thresholds_for("read_only_mounts", defaults::kReadOnlyMounts);
  const auto count = static_cast<double>(read_only.size());
  const Status status = levels.evaluate(count);
  std::vector<Perfdata> perfdata = {detail::perf("read_only", count, "", levels, 0.0),
                                    detail::perf("checked", static_cast<double>(checked), "", {})};
  if (read_only.empty()) {
    return detail::make(kName, status,
                        checked == 1
                            ? std::string("the 1 local filesystem is mounted read-write")
                            : fmt::format("all {} local filesystems mounted read-write", checked),
                        std::move(perfdata));
  }
  return detail::make(kName, status,
                      fmt::format("{} of {} local filesystems mounted read-only: {}",
                                  read_only.size(), checked, text::join_limited(read_only, 4)),
                      std::move(perfdata));
}

}  // namespace healer::checks
