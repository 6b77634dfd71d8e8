#include "exporter.hpp"

#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "healer/core/buffer.hpp"
#include "healer/service/json.hpp"

namespace healer::daemon {
namespace {

// Histogram bucket bounds in seconds: the pool's log2 microsecond buckets from 1 ms to ~33 s.
constexpr std::size_t kFirstBucket = 10;  // 2^10 us ~ 1 ms
constexpr std::size_t kLastBucket = 25;   // 2^25 us ~ 33.5 s

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    append_number(out_, value);
    out_ += '\n';
  }
  void histogram(std::string_view name, std::string_view labels, const pool::Histogram& h) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kFirstBucket && i < pool::Histogram::kBuckets; ++i) {
      cumulative += h.counts[i];
    }
    const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
    for (std::size_t i = kFirstBucket; i <= kLastBucket; ++i) {
      cumulative += h.counts[i];
      const double bound = static_cast<double>(std::uint64_t{1} << i) / 1e6;
      sample(std::string(name) + "_bucket", prefix + fmt::format("le=\"{}\"", bound),
             static_cast<double>(cumulative));
    }
    sample(std::string(name) + "_bucket", prefix + "le=\"+Inf\"", static_cast<double>(h.total));
    sample(std::string(name) + "_sum", labels, static_cast<double>(h.sum_us) / 1e6);
    sample(std::string(name) + "_count", labels, static_cast<double>(h.total));
  }

 private:
  std::string& out_;
};

std::string server_label(const std::string& name) {
  return "server=\"" + escape_label(name) + "\"";
}

// Every server's `server="..."` label, escaped once per scrape rather than once per sample.
std::vector<std::string> server_labels(const ExpositionSnapshot& s) {
  std::vector<std::string> labels;
  labels.reserve(s.servers.size());
  for (const auto& server : s.servers) {
    labels.push_back(server_label(server.name));
  }
  return labels;
}

double seconds(std::chrono::milliseconds duration) {
  return static_cast<double>(duration.count()) / 1000.0;
}

template <class F>
void per_server(Writer& w, const ExpositionSnapshot& s, const std::vector<std::string>& labels,
                std::string_view name, std::string_view type, std::string_view help, F value) {
  w.family(name, type, help);
  for (std::size_t i = 0; i < s.servers.size(); ++i) {
    w.sample(name, labels[i], static_cast<double>(value(s.servers[i].pool)));
  }
}

void render_pool(Writer& w, const ExpositionSnapshot& s, const std::vector<std::string>& labels) {
  w.family("healer_pool_sessions", "gauge", "SSH connections in the pool by state.");
  for (std::size_t i = 0; i < s.servers.size(); ++i) {
    const auto& server = s.servers[i];
    const auto& label = labels[i];
    w.sample("healer_pool_sessions", label + ",state=\"connecting\"",
             static_cast<double>(server.pool.sessions_connecting));
    w.sample("healer_pool_sessions", label + ",state=\"ready\"",
             static_cast<double>(server.pool.sessions_ready));
    w.sample("healer_pool_sessions", label + ",state=\"draining\"",
             static_cast<double>(server.pool.sessions_draining));
  }
  per_server(w, s, labels, "healer_pool_channels_in_use", "gauge",
             "SSH channels running a command now.",
             [](const pool::PoolStats& p) { return p.channels_in_use; });
  per_server(w, s, labels, "healer_pool_waiters", "gauge", "Callers queued for a channel.",
             [](const pool::PoolStats& p) { return p.waiters; });
  per_server(w, s, labels, "healer_pool_channel_capacity", "gauge",
             "SSH channels the ready connections can carry at once.",
             [](const pool::PoolStats& p) { return p.channel_capacity; });
  per_server(w, s, labels, "healer_pool_channel_limit", "gauge",
             "SSH channels per connection the server allows (lowered after a MaxSessions refusal).",
             [](const pool::PoolStats& p) { return p.channel_limit; });
  per_server(w, s, labels, "healer_pool_circuit_open", "gauge",
             "1 while an auth or host-key failure blocks new connections.",
             [](const pool::PoolStats& p) { return p.circuits_open; });
  per_server(w, s, labels, "healer_pool_circuit_retry_seconds", "gauge",
             "While the circuit is open: seconds until the next attempt is let through.",
             [](const pool::PoolStats& p) { return seconds(p.circuit_retry_in); });
  per_server(w, s, labels, "healer_pool_backing_off", "gauge",
             "1 while connection failures hold back the next attempt (exponential backoff).",
             [](const pool::PoolStats& p) { return p.backing_off; });
  per_server(w, s, labels, "healer_pool_backoff_retry_seconds", "gauge",
             "While backing off: seconds until the next connection attempt.",
             [](const pool::PoolStats& p) { return seconds(p.backoff_retry_in); });
  per_server(w, s, labels, "healer_pool_acquisitions_total", "counter",
             "Channel leases handed out.", [](const pool::PoolStats& p) { return p.acquisitions; });
  per_server(w, s, labels, "healer_pool_reused_acquisitions_total", "counter",
             "Leases served by a connection that had served before (pool hits).",
             [](const pool::PoolStats& p) { return p.served_by_existing; });
  per_server(w, s, labels, "healer_pool_commands_total", "counter",
             "Commands run through the pool.", [](const pool::PoolStats& p) { return p.commands; });
  per_server(w, s, labels, "healer_pool_hit_ratio", "gauge",
             "Share of leases served by an existing connection.",
             [](const pool::PoolStats& p) { return p.hit_rate(); });
  per_server(w, s, labels, "healer_pool_commands_per_connection", "gauge",
             "Commands per connection opened (reuse).",
             [](const pool::PoolStats& p) { return p.reuse(); });
  per_server(w, s, labels, "healer_pool_connections_opened_total", "counter",
             "SSH connections opened.", [](const pool::PoolStats& p) { return p.sessions_opened; });
  per_server(w, s, labels, "healer_pool_handshakes_total", "counter", "SSH handshakes started.",
             [](const pool::PoolStats& p) { return p.handshakes_started; });
  per_server(w, s, labels, "healer_pool_handshake_failures_total", "counter",
             "SSH handshakes that failed.",
             [](const pool::PoolStats& p) { return p.handshakes_failed; });
  per_server(w, s, labels, "healer_pool_handshakes_cancelled_total", "counter",
             "SSH handshakes abandoned (every caller left, settings changed, shutdown).",
             [](const pool::PoolStats& p) { return p.handshakes_cancelled; });
  per_server(w, s, labels, "healer_pool_handshake_retries_total", "counter",
             "Connection attempts repeated after the server dropped the connection before any "
             "credential was sent (MaxStartups).",
             [](const pool::PoolStats& p) { return p.handshakes_retried; });
  per_server(w, s, labels, "healer_pool_exhausted_total", "counter",
             "Acquires that ended with no slot before their deadline.",
             [](const pool::PoolStats& p) { return p.exhausted; });
  per_server(w, s, labels, "healer_pool_command_timeouts_total", "counter",
             "Commands that timed out.", [](const pool::PoolStats& p) { return p.timeouts; });
  per_server(w, s, labels, "healer_pool_acquires_cancelled_total", "counter",
             "Channel requests cancelled by their caller (closed request, SIGINT).",
             [](const pool::PoolStats& p) { return p.acquires_cancelled; });
  per_server(w, s, labels, "healer_pool_commands_cancelled_total", "counter",
             "Commands cancelled by their caller (remote TERM, then KILL).",
             [](const pool::PoolStats& p) { return p.commands_cancelled; });
  per_server(w, s, labels, "healer_pool_cleanup_runs_total", "counter", "Idle cleanup passes.",
             [](const pool::PoolStats& p) { return p.cleanup_runs; });
  per_server(w, s, labels, "healer_pool_idle_closed_total", "counter",
             "Connections closed by the idle cleanup.",
             [](const pool::PoolStats& p) { return p.sessions_cleaned; });
  w.family("healer_pool_evictions_total", "counter", "Connections that left the pool, by reason.");
  static constexpr const char* kReasons[] = {"idle", "lifetime", "dead", "error", "shutdown"};
  for (std::size_t n = 0; n < s.servers.size(); ++n) {
    for (std::size_t i = 0; i < pool::kEvictionKinds; ++i) {
      w.sample("healer_pool_evictions_total",
               labels[n] + fmt::format(",reason=\"{}\"", kReasons[i]),
               static_cast<double>(s.servers[n].pool.evictions[i]));
    }
  }
}

// The pool's histograms over every server.
void render_pool_totals(Writer& w, const ExpositionSnapshot& s) {
  w.family("healer_pool_handshake_duration_seconds", "histogram",
           "Time to connect and authenticate, over every server.");
  w.histogram("healer_pool_handshake_duration_seconds", "", s.pool_total.handshake_time);
  w.family("healer_pool_wait_duration_seconds", "histogram",
           "Time callers waited for a channel, over every server.");
  w.histogram("healer_pool_wait_duration_seconds", "", s.pool_total.wait_time);
  // Spare channels over every server (per server: /api/v1/servers/NAME/pool); a series per
  // server would add 10,000 lines per family to a fleet's scrape.
  const auto& total = s.pool_total;
  w.family("healer_pool_spare_channels", "gauge",
           "Spare channels (opened ahead of time, no command yet) over every server, by state.");
  w.sample("healer_pool_spare_channels", "state=\"opening\"",
           static_cast<double>(total.spare_channels -
                               std::min(total.spare_channels_ready, total.spare_channels)));
  w.sample("healer_pool_spare_channels", "state=\"ready\"",
           static_cast<double>(total.spare_channels_ready));
  w.family("healer_pool_spare_channel_events_total", "counter",
           "Spare channels over every server: opened, leased to a command (no channel-open round "
           "trip), closed unused, refused by the server.");
  const std::pair<const char*, std::uint64_t> events[] = {{"opened", total.spares_opened},
                                                          {"leased", total.leases_on_spare},
                                                          {"closed_unused", total.spares_closed},
                                                          {"refused", total.spares_refused}};
  for (const auto& [event, count] : events) {
    w.sample("healer_pool_spare_channel_events_total", fmt::format("event=\"{}\"", event),
             static_cast<double>(count));
  }
}

void render_servers(Writer& w, const ExpositionSnapshot& s,
                    const std::vector<std::string>& labels) {
  w.family("healer_server_status", "gauge",
           "Latest diagnosis: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios codes).");
  for (std::size_t i = 0; i < s.servers.size(); ++i) {
    if (const auto& server = s.servers[i]; server.status) {
      w.sample("healer_server_status", labels[i], static_cast<double>(*server.status));
    }
  }
  w.family("healer_server_last_diagnosis_timestamp_seconds", "gauge",
           "When the latest diagnosis started.");
  for (std::size_t i = 0; i < s.servers.size(); ++i) {
    if (const auto& server = s.servers[i]; server.status) {
      w.sample("healer_server_last_diagnosis_timestamp_seconds", labels[i],
               static_cast<double>(server.diagnosed_at) / 1000.0);
    }
  }
  w.family("healer_server_up", "gauge", "1 when the latest metrics collection succeeded.");
  for (std::size_t i = 0; i < s.servers.size(); ++i) {
    const auto& server = s.servers[i];
    w.sample("healer_server_up", labels[i],
             server.collected_at && !server.collection_failed ? 1 : 0);
  }
  w.family("healer_server_last_collection_timestamp_seconds", "gauge",
           "When the latest successful metrics collection arrived.");
  for (std::size_t i = 0; i < s.servers.size(); ++i) {
    if (const auto& server = s.servers[i]; server.collected_at) {
      w.sample("healer_server_last_collection_timestamp_seconds", labels[i],
               static_cast<double>(*server.collected_at) / 1000.0);
    }
  }
}

// mallinfo2 walks every free chunk of every arena holding the arena's lock (~3 ms at 10,000
// servers, while the loop's own allocations wait): taken at most once a second, shared by the
// scrapes of one round (a fleet's shards come together).
struct mallinfo2 recent_heap() {
  static std::mutex mutex;
  static std::chrono::steady_clock::time_point taken{};
  static struct mallinfo2 heap {};
  const std::lock_guard lock(mutex);
  const auto now = std::chrono::steady_clock::now();
  if (taken == std::chrono::steady_clock::time_point{} || now - taken > std::chrono::seconds(1)) {
    heap = mallinfo2();
    taken = now;
  }
  return heap;
}

void render_self(Writer& w, const ExpositionSnapshot& s) {
  w.family("healer_build_info", "gauge", "healer's version.");
  w.sample("healer_build_info", fmt::format("version=\"{}\"", service::version()), 1);
  // The allocator's view: RSS well above in_use + free means pages the allocator holds for
  // reuse; a large in_use per server is what to look at first (docs/scaling.md).
  const struct mallinfo2 heap = recent_heap();
  w.family(
      "healer_process_heap_bytes", "gauge",
      "The C allocator's heap: bytes in use (mmapped chunks included) and free in its arenas.");
  w.sample("healer_process_heap_bytes", "state=\"in_use\"",
           static_cast<double>(heap.uordblks + heap.hblkhd));
  w.sample("healer_process_heap_bytes", "state=\"free\"", static_cast<double>(heap.fordblks));
  static constexpr const char* kKinds[] = {"metrics", "diagnose"};
  w.family("healer_scheduler_runs_total", "counter", "Scheduled runs started.");
  for (std::size_t k = 0; k < 2; ++k) {
    w.sample("healer_scheduler_runs_total", fmt::format("kind=\"{}\"", kKinds[k]),
             static_cast<double>(s.scheduler.runs[k]));
  }
  w.family("healer_scheduler_skipped_total", "counter",
           "Scheduled runs skipped because the previous one was still running.");
  for (std::size_t k = 0; k < 2; ++k) {
    w.sample("healer_scheduler_skipped_total", fmt::format("kind=\"{}\"", kKinds[k]),
             static_cast<double>(s.scheduler.skipped[k]));
  }
  w.family("healer_scheduler_late_total", "counter",
           "Scheduled runs that started over a second after they were due.");
  for (std::size_t k = 0; k < 2; ++k) {
    w.sample("healer_scheduler_late_total", fmt::format("kind=\"{}\"", kKinds[k]),
             static_cast<double>(s.scheduler.late[k]));
  }
  w.family("healer_scheduler_running", "gauge", "Scheduled runs in progress.");
  w.sample("healer_scheduler_running", "", static_cast<double>(s.scheduler.running));
  w.family("healer_scheduler_start_delay_seconds", "histogram",
           "How late scheduled runs started after their due time.");
  w.histogram("healer_scheduler_start_delay_seconds", "", s.scheduler.start_delay);
  w.family("healer_http_requests_total", "counter", "HTTP responses by status code.");
  for (const auto& [status, count] : s.http.responses_by_status) {
    w.sample("healer_http_requests_total", fmt::format("code=\"{}\"", status),
             static_cast<double>(count));
  }
  w.family("healer_http_connections_open", "gauge", "Open HTTP connections.");
  w.sample("healer_http_connections_open", "", static_cast<double>(s.http.connections_open));
  w.family("healer_http_rate_limited_total", "counter", "Requests refused by the rate limit.");
  w.sample("healer_http_rate_limited_total", "", static_cast<double>(s.http.rate_limited));
  w.family("healer_control_requests_total", "counter", "Requests on the control socket.");
  w.sample("healer_control_requests_total", "", static_cast<double>(s.control.requests));
  w.family("healer_notifications_total", "counter", "Status change notifications by result.");
  w.sample("healer_notifications_total", "result=\"sent\"", static_cast<double>(s.notifier.sent));
  w.sample("healer_notifications_total", "result=\"failed\"",
           static_cast<double>(s.notifier.failed));
  w.sample("healer_notifications_total", "result=\"rate_limited\"",
           static_cast<double>(s.notifier.rate_limited));
  if (s.remote_write) {
    const auto& rw = *s.remote_write;
    w.family("healer_remote_write_samples_total", "counter",
             "Collected samples by what became of them: sent (accepted by the receiver), dropped "
             "(pushed out of the full queue or left at shutdown), failed (refused by the receiver "
             "with a 4xx).");
    w.sample("healer_remote_write_samples_total", "result=\"sent\"", static_cast<double>(rw.sent));
    w.sample("healer_remote_write_samples_total", "result=\"dropped\"",
             static_cast<double>(rw.dropped));
    w.sample("healer_remote_write_samples_total", "result=\"failed\"",
             static_cast<double>(rw.failed));
    w.family("healer_remote_write_retries_total", "counter",
             "Remote write POSTs retried after a connection error, a 5xx or a 429.");
    w.sample("healer_remote_write_retries_total", "", static_cast<double>(rw.retries));
    w.family("healer_remote_write_queue_samples", "gauge",
             "Samples waiting to be sent, including a batch being retried.");
    w.sample("healer_remote_write_queue_samples", "", static_cast<double>(rw.queued));
    w.family("healer_remote_write_last_success_timestamp_seconds", "gauge",
             "When the receiver last accepted a batch.");
    if (rw.last_success_ms) {
      w.sample("healer_remote_write_last_success_timestamp_seconds", "",
               static_cast<double>(*rw.last_success_ms) / 1000.0);
    }
  }
  w.family("healer_store_async_writes_total", "counter", "Store writes queued by the loop.");
  w.sample("healer_store_async_writes_total", "result=\"ok\"",
           static_cast<double>(s.store.async_writes_ok));
  w.sample("healer_store_async_writes_total", "result=\"failed\"",
           static_cast<double>(s.store.async_writes_failed));
  w.family("healer_store_queued_jobs", "gauge", "Jobs waiting for the store thread.");
  w.sample("healer_store_queued_jobs", "", static_cast<double>(s.store.queued_jobs));
  if (!s.node.empty()) {
    const auto& l = s.leases;
    w.family("healer_node_info", "gauge",
             "This node's id; several nodes on one database split the fleet with leases.");
    w.sample(
        "healer_node_info",
        fmt::format("node=\"{}\",leases=\"{}\"", escape_label(s.node), l.enabled ? "on" : "off"),
        1);
    w.family("healer_leases_held", "gauge", "Servers this node polls on schedule (its leases).");
    w.sample("healer_leases_held", "", static_cast<double>(l.enabled ? l.held : s.servers_owned));
    w.family("healer_lease_nodes", "gauge", "Live nodes sharing the fleet, this one included.");
    w.sample("healer_lease_nodes", "", static_cast<double>(l.nodes));
    w.family("healer_lease_claims_total", "counter", "Leases this node took, free or expired.");
    w.sample("healer_lease_claims_total", "", static_cast<double>(l.claimed));
    w.family("healer_lease_takeovers_total", "counter",
             "Leases taken from another node whose lease had expired (it died or lost the "
             "database).");
    w.sample("healer_lease_takeovers_total", "", static_cast<double>(l.takeovers));
    w.family("healer_lease_releases_total", "counter",
             "Leases given back: surplus when a node joins, and at shutdown.");
    w.sample("healer_lease_releases_total", "", static_cast<double>(l.released));
    w.family("healer_lease_lost_total", "counter",
             "Leases found taken by another node after this node's had expired.");
    w.sample("healer_lease_lost_total", "", static_cast<double>(l.lost));
    w.family("healer_lease_heartbeat_failures_total", "counter",
             "Lease heartbeats the database did not answer.");
    w.sample("healer_lease_heartbeat_failures_total", "", static_cast<double>(l.sync_failures));
  }
}

}  // namespace

std::size_t shard_of(std::string_view server, std::size_t shards) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (const char c : server) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return static_cast<std::size_t>(hash % shards);
}

std::string render_exposition(const ExpositionSnapshot& snapshot) {
  // Every family of every server's node series, each family's lines together (the format asks
  // for one group per metric name). Families are grouped by a hash of the name (no string
  // ordering per line); the lines are written once into a buffer of about the right size.
  const auto labels = server_labels(snapshot);
  struct Group {
    std::size_t server;  // index into snapshot.servers
    std::size_t family;  // index into that server's families
  };
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<std::pair<std::string_view, std::vector<Group>>> families;
  std::size_t node_bytes = 0;
  for (std::size_t s = 0; s < snapshot.servers.size(); ++s) {
    const auto& series = snapshot.servers[s].series;
    if (!series) {
      continue;
    }
    node_bytes += series->text_size(labels[s].size());
    // Servers mostly have the same families in the same (sorted) order: the family after the
    // previous one is tried before the hash.
    std::size_t next = 0;
    for (std::size_t f = 0; f < series->families(); ++f) {
      const std::string_view name = series->family(f).name;
      std::size_t at = next;
      if (at >= families.size() || families[at].first != name) {
        auto [it, added] = index.try_emplace(name, families.size());
        if (added) {
          // Not reserved for every server: most families are one host's (node_uname_info), and
          // 10,000 reservations of 10,000 groups were 1.6 GB of address space for a full scrape.
          families.emplace_back(name, std::vector<Group>{});
        }
        at = it->second;
      }
      families[at].second.push_back(Group{s, f});
      next = at + 1;
    }
  }
  std::sort(families.begin(), families.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  constexpr std::size_t kOwnBytesPerServer = 4096;  // healer_pool_* and healer_server_* lines
  std::string out;
  out.reserve(64 * 1024 + node_bytes + families.size() * 128 +
              snapshot.servers.size() * kOwnBytesPerServer);
  buffer::prefer_huge_pages(out);
  Writer w(out);
  using Part = ExpositionSnapshot::Part;
  if (snapshot.with_healer_metrics && snapshot.part != Part::servers) {
    render_self(w, snapshot);
    render_pool_totals(w, snapshot);
  }
  if (snapshot.part == Part::fleet) {
    return out;
  }
  if (snapshot.with_healer_metrics) {
    render_pool(w, snapshot, labels);
  }
  render_servers(w, snapshot, labels);
  for (const auto& [name, groups] : families) {
    const bool counter = name.ends_with("_total");
    w.family(name, counter ? "counter" : "gauge",
             "Collected over SSH by healer (node_exporter name).");
    for (const auto& group : groups) {
      snapshot.servers[group.server].series->append_family(out, labels[group.server], group.family);
    }
  }
  return out;
}

}  // namespace healer::daemon
