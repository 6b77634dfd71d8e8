#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "healer/core/error.hpp"
#include "healer/metrics/metric.hpp"
#include "healer/service/collect.hpp"
#include "healer/service/diagnose.hpp"
#include "healer/service/settings.hpp"
#include "healer/store/records.hpp"

// What the daemon knows about every server right now: the inventory row, the latest diagnosis
// and collection, and its schedule. Read by the API, /metrics and the dashboard; written by the
// scheduler and on-demand runs. Lives on the daemon's loop (no locks).
namespace healer::daemon {

/// A check that is not OK in the latest run.
struct FailingCheck {
  std::string name;
  store::CheckStatus status = store::CheckStatus::unknown;
  std::string message;
};

/// The latest diagnosis of a server, summarised.
struct RunSummary {
  std::int64_t run_id = 0;
  std::int64_t started_at = 0;  ///< Unix ms
  std::int64_t duration_ms = 0;
  store::CheckStatus status = store::CheckStatus::unknown;
  std::size_t checks = 0;
  std::vector<FailingCheck> failing;
  std::optional<Error> server_error;  ///< the server could not be reached
};

/// One collected series as healer exports it, on /metrics and through remote write alike: the
/// node_exporter name, the `server` label first, then the metric's own labels.
struct NodeSeries {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  ///< server first
  double value = 0;
};

/// Every series of one server's collection (raw metrics, then rates) under healer's naming;
/// series whose metric or label names Prometheus could not read (they come from parsers of server
/// output) are left out, as is a metric carrying its own `server` label.
[[nodiscard]] std::vector<NodeSeries> node_series(const std::string& server,
                                                  const std::vector<metrics::Metric>& metrics,
                                                  const std::vector<metrics::Metric>& rates);

/// One family of a server's node series as /metrics shows it: its name and, per series, the
/// text that follows the `server` label: `,cpu="0",mode="idle"}`, or `}` for a series with no
/// other label. Servers whose family has the same series share one copy (FleetState interns
/// them, and the layouts that hold them), so a server keeps only its values and a pointer to a
/// layout: ~1.7 KiB for the ~200 series of a collection instead of ~20 KiB of text.
struct SeriesFamily {
  std::string name;
  std::string tails;                     ///< every series' tail, back to back
  std::vector<std::uint32_t> tail_ends;  ///< where each series' tail ends in `tails`

  [[nodiscard]] std::size_t series() const noexcept { return tail_ends.size(); }
  [[nodiscard]] std::string_view tail(std::size_t series) const noexcept;
  [[nodiscard]] std::size_t hash() const noexcept;
  bool operator==(const SeriesFamily&) const = default;
};

/// The families of a collection's node series in order (sorted by name) and where each one's
/// values start: what servers with collections of the same shape share (FleetState interns
/// layouts), so a server keeps one pointer to it instead of one per family.
struct SeriesLayout {
  struct Family {
    std::shared_ptr<const SeriesFamily> family;
    std::uint32_t first = 0;  ///< index of its first value
  };
  std::vector<Family> families;
  std::size_t values = 0;  ///< series in all families

  /// A hash of the names and series counts of the families (not of their labels).
  [[nodiscard]] std::size_t shape_hash() const noexcept;
};

/// One collection's node series: a layout (shared), the families in which this server differs
/// from it (node_uname_info, which carries the host's name, for all but one server of a layout)
/// and the values.
struct NodeExposition {
  /// A family of this server that is not the layout's one at that index: same name and series
  /// count, other labels.
  struct OwnFamily {
    std::uint32_t index = 0;
    std::shared_ptr<const SeriesFamily> family;
  };
  std::shared_ptr<const SeriesLayout> layout;
  std::vector<OwnFamily> own;  ///< by index, ascending
  std::vector<double> values;

  /// How many families there are.
  [[nodiscard]] std::size_t families() const noexcept { return layout->families.size(); }
  /// Family `index` of this server (its own one or the layout's).
  [[nodiscard]] const SeriesFamily& family(std::size_t index) const noexcept;
  /// Appends the lines of family(family) with this server's label (`server="..."`, escaped)
  /// in the Prometheus text format.
  void append_family(std::string& out, std::string_view server_label, std::size_t family) const;
  /// About the bytes append_family writes for every family, with a label of `label_size` bytes.
  [[nodiscard]] std::size_t text_size(std::size_t label_size) const noexcept;
};

/// The latest collection of a server.
struct CollectionSummary {
  std::int64_t collected_at = 0;  ///< Unix ms
  double elapsed_ms = 0;
  std::optional<Error> error;
  std::string headline;
  /// Key figures for lists: load1, memory used %, root disk used %, CPU busy %.
  std::optional<double> load1;
  std::optional<double> memory_used_percent;
  std::optional<double> disk_used_percent;
  std::optional<double> cpu_busy_percent;
  /// The series as /metrics shows them (null when the collection had none).
  std::shared_ptr<const NodeExposition> exposition;
};

/// Scheduling state of one kind of work (metrics or diagnose) on a server.
struct WorkState {
  std::chrono::seconds interval{0};  ///< 0: off
  std::optional<std::chrono::system_clock::time_point> next_due;
  bool running = false;
  std::uint64_t runs = 0;
  std::uint64_t skipped = 0;  ///< due while the previous run was still going
  std::uint64_t late = 0;     ///< started more than a second after they were due
};

/// One server.
struct ServerState {
  store::ServerRecord record;  ///< without its secret
  std::optional<RunSummary> run;
  std::optional<std::int64_t> status_since;  ///< Unix ms of the last transition
  std::optional<CollectionSummary> collection;
  WorkState metrics;
  WorkState diagnose;
  /// The node whose lease covers this server ("" while nobody holds it); see LeaseKeeper.
  std::string owner;
  /// This node polls it; false: another node does, and its figures come from the store.
  bool owned = true;
};

/// Families shared by every server whose series in them are the same: one copy of the names and
/// labels however many servers have them. Held weakly; a family goes away with its last server.
class SeriesFamilies {
 public:
  /// The shared family equal to `family`, adding it if there is none.
  [[nodiscard]] std::shared_ptr<const SeriesFamily> intern(SeriesFamily family);
  /// Families held by at least one server.
  [[nodiscard]] std::size_t size() const;

 private:
  std::unordered_multimap<std::size_t, std::weak_ptr<const SeriesFamily>> by_hash_;
  std::size_t sweep_at_ = 1024;  // purge expired entries when the table reaches this size
};

/// Layouts shared by servers whose collections have the same shape (family names and series
/// counts) and differ in at most a few families' labels. Held weakly; a layout goes away with its
/// last server.
class SeriesLayouts {
 public:
  /// At most this many families of a server may differ from its layout's; past it the server
  /// gets a layout of its own (which servers like it then share).
  static constexpr std::size_t kMaxOwnFamilies = 16;
  /// Layouts of one shape compared with a new collection, at most (the cost per collection).
  static constexpr std::size_t kMaxCandidates = 8;

  /// The shared layout for `layout` (interned families) and the families in which it differs
  /// from it; adds `layout` if no shared one is close enough.
  [[nodiscard]] std::shared_ptr<const SeriesLayout> intern(
      SeriesLayout layout, std::vector<NodeExposition::OwnFamily>& own);
  /// Layouts held by at least one server.
  [[nodiscard]] std::size_t size() const;

 private:
  std::unordered_multimap<std::size_t, std::weak_ptr<const SeriesLayout>> by_shape_;
  std::size_t sweep_at_ = 64;  // purge expired entries when the table reaches this size
};

/// Every server by name.
class FleetState {
 public:
  [[nodiscard]] std::map<std::string, ServerState, std::less<>>& servers() noexcept {
    return servers_;
  }
  [[nodiscard]] const std::map<std::string, ServerState, std::less<>>& servers() const noexcept {
    return servers_;
  }
  [[nodiscard]] ServerState* find(std::string_view name);
  /// The node series' families the servers share.
  [[nodiscard]] const SeriesFamilies& families() const noexcept { return families_; }
  /// The node series' layouts the servers share.
  [[nodiscard]] const SeriesLayouts& layouts() const noexcept { return layouts_; }

  /// Records a diagnosis (and its transition, if any) of a known server.
  void record(const service::DiagnosedServer& diagnosed);
  /// Records a collection of a known server.
  void record(const service::CollectedServer& collected);
  /// Seeds a server's latest run from the store (at start).
  void seed(const store::DiagnosisRun& run, std::optional<std::int64_t> status_since);
  /// Seeds a server's latest collection from stored samples (at start).
  void seed(const std::string& name, std::int64_t collected_at,
            const std::vector<metrics::Metric>& metrics);
  /// Called with each new collection's series (not seeds), on the loop: remote write.
  using CollectionSink = std::function<void(std::int64_t collected_at,
                                            std::shared_ptr<const std::vector<NodeSeries>>)>;
  void set_collection_sink(CollectionSink sink) { sink_ = std::move(sink); }
  /// Called with each recorded diagnosis of a known server (scheduled or on demand), on the
  /// loop: the automatic heal rules.
  using DiagnosisSink =
      std::function<void(const ServerState& state, const service::DiagnosedServer& diagnosed)>;
  void set_diagnosis_sink(DiagnosisSink sink) { diagnosis_sink_ = std::move(sink); }

 private:
  std::map<std::string, ServerState, std::less<>> servers_;
  SeriesFamilies families_;
  SeriesLayouts layouts_;
  CollectionSink sink_;
  DiagnosisSink diagnosis_sink_;
};

/// The summary of a diagnosis.
[[nodiscard]] RunSummary summarise(const service::DiagnosedServer& diagnosed);

/// The summary of a collection, with its exposition lines for /metrics.
[[nodiscard]] CollectionSummary summarise(const std::string& server, std::int64_t collected_at,
                                          double elapsed_ms, std::optional<Error> error,
                                          const std::vector<metrics::Metric>& metrics,
                                          const std::vector<metrics::Metric>& rates);

/// A sample value as the Prometheus text format writes it (NaN, +Inf, -Inf, shortest round trip).
void append_number(std::string& out, double value);

/// A Prometheus label value escaped (backslash, double quote, newline).
[[nodiscard]] std::string escape_label(std::string_view value);

}  // namespace healer::daemon
