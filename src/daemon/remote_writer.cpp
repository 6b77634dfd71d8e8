#include "healer/daemon/remote_writer.hpp"

#include <httplib.h>
#include <remote_write.pb.h>
#include <snappy.h>

#include <algorithm>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "healer/core/log.hpp"
#include "healer/service/json.hpp"

namespace healer::daemon {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Prometheus' own remote write client backs off from 30 ms to 5 s; a little slower start here
// (a receiver that refuses connections refuses them for a while).
constexpr auto kMinBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::seconds(5);

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What one POST came to.
enum class Outcome { sent, retry, refused };

struct Attempt {
  Outcome outcome = Outcome::retry;
  int status = 0;      // HTTP status; 0: no response
  std::string detail;  // for the log: the connection error or the receiver's first words
};

// A receiver's error body is untrusted text: one short printable line.
std::string printable_line(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 200)) {
    out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  }
  return out;
}

}  // namespace

std::size_t SampleQueue::push(std::int64_t timestamp_ms,
                              const std::shared_ptr<const std::vector<NodeSeries>>& collection) {
  for (std::size_t i = 0; i < collection->size(); ++i) {
    samples_.push_back(Sample{collection, i, timestamp_ms});
  }
  std::size_t dropped = 0;
  while (samples_.size() > bound_) {
    samples_.pop_front();
    ++dropped;
  }
  return dropped;
}

std::vector<SampleQueue::Sample> SampleQueue::take(std::size_t max) {
  const auto count = std::min(max, samples_.size());
  std::vector<Sample> batch(std::make_move_iterator(samples_.begin()),
                            std::make_move_iterator(samples_.begin() + static_cast<long>(count)));
  samples_.erase(samples_.begin(), samples_.begin() + static_cast<long>(count));
  return batch;
}

std::string encode_write_request(const std::vector<SampleQueue::Sample>& batch) {
  prometheus::WriteRequest request;
  // One TimeSeries per label set: a batch that spans several collections (a backlog) sends each
  // series once with its samples in order, oldest first (the queue's order).
  std::unordered_map<std::string, prometheus::TimeSeries*> by_labels;
  std::string key;
  for (const auto& sample : batch) {
    const auto& series = sample.series();
    key.assign(series.name);
    for (const auto& [name, value] : series.labels) {
      key += '\0';
      key += name;
      key += '\0';
      key += value;
    }
    auto [it, added] = by_labels.try_emplace(key, nullptr);
    if (added) {
      it->second = request.add_timeseries();
      // Receivers expect labels sorted by name; __name__ sorts first of any valid name.
      std::vector<std::pair<std::string_view, std::string_view>> labels;
      labels.reserve(series.labels.size() + 1);
      labels.emplace_back("__name__", series.name);
      for (const auto& [name, value] : series.labels) {
        labels.emplace_back(name, value);
      }
      std::sort(labels.begin(), labels.end());
      for (const auto& [name, value] : labels) {
        auto* label = it->second->add_labels();
        label->set_name(std::string(name));
        label->set_value(std::string(value));
      }
    }
    auto* point = it->second->add_samples();
    point->set_value(series.value);
    point->set_timestamp(sample.timestamp_ms);
  }
  const std::string body = request.SerializeAsString();
  std::string compressed;
  snappy::Compress(body.data(), body.size(), &compressed);
  return compressed;
}

// What the loop and the sender thread share; guarded by `mutex`.
struct RemoteWriter::Shared {
  explicit Shared(service::RemoteWriteSettings remote_settings)
      : settings(std::move(remote_settings)), queue(settings.queue_max_samples) {}

  const service::RemoteWriteSettings settings;
  std::string bearer_token;  // set before the thread starts; never logged

  std::mutex mutex;
  std::condition_variable wake;
  SampleQueue queue;
  std::size_t in_flight = 0;  // samples of the batch being sent or retried
  RemoteWriteStats stats;
  bool stop_requested = false;
  SteadyClock::time_point stop_deadline = SteadyClock::time_point::max();
  bool finished = false;
  std::thread sender;
};

Result<std::string> read_bearer_token(const std::filesystem::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  auto token = text.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  if (!file || token.empty() || token.find_first_of("\r\n") != std::string::npos) {
    return Error{std::make_error_code(std::errc::invalid_argument),
                 "remote_write.bearer_token_file " + path.string() +
                     ": cannot be read or does not hold one token"};
  }
  return token;
}

RemoteWriter::RemoteWriter(service::RemoteWriteSettings settings)
    : shared_(std::make_shared<Shared>(std::move(settings))) {}

RemoteWriter::~RemoteWriter() {
  {
    std::lock_guard lock(shared_->mutex);
    shared_->stop_requested = true;
    shared_->stop_deadline = SteadyClock::now();
  }
  shared_->wake.notify_all();
  if (shared_->sender.joinable()) {
    shared_->sender.join();
  }
}

bool RemoteWriter::enabled() const noexcept { return shared_->settings.enabled(); }

Result<void> RemoteWriter::start() {
  if (!enabled()) {
    return {};
  }
  if (const auto& path = shared_->settings.bearer_token_file; !path.empty()) {
    auto token = read_bearer_token(path);
    if (!token) {
      return std::move(token).error();
    }
    shared_->bearer_token = std::move(*token);
  }
  shared_->sender = std::thread([shared = shared_] { run(shared); });
  return {};
}

void RemoteWriter::push(std::int64_t collected_at,
                        std::shared_ptr<const std::vector<NodeSeries>> series) {
  if (!enabled() || series == nullptr || series->empty()) {
    return;
  }
  bool full = false;
  {
    std::lock_guard lock(shared_->mutex);
    if (shared_->stop_requested) {
      return;
    }
    shared_->stats.dropped += shared_->queue.push(collected_at, series);
    full = shared_->queue.size() >= shared_->settings.max_batch_samples;
  }
  if (full) {
    shared_->wake.notify_all();
  }
}

RemoteWriteStats RemoteWriter::stats() const {
  std::lock_guard lock(shared_->mutex);
  auto stats = shared_->stats;
  stats.queued = shared_->queue.size() + shared_->in_flight;
  return stats;
}

void RemoteWriter::request_stop(Deadline deadline) {
  {
    std::lock_guard lock(shared_->mutex);
    if (shared_->stop_requested) {
      return;
    }
    shared_->stop_requested = true;
    shared_->stop_deadline = deadline.at();
  }
  shared_->wake.notify_all();
}

asio::awaitable<void> RemoteWriter::async_stop(Deadline deadline) {
  if (!shared_->sender.joinable()) {
    co_return;
  }
  request_stop(deadline);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!deadline.expired()) {
    {
      std::lock_guard lock(shared_->mutex);
      if (shared_->finished) {
        break;
      }
    }
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::use_awaitable);
  }
  bool finished = false;
  {
    std::lock_guard lock(shared_->mutex);
    finished = shared_->finished;
  }
  if (finished) {
    shared_->sender.join();
  } else {
    // A POST begun before the stop may outlast the deadline (it has the full timeout): the
    // process does not wait for it.
    log::get("daemon")->warn("remote write: the last batch was still being sent at the deadline");
    shared_->sender.detach();
  }
}

void RemoteWriter::run(std::shared_ptr<Shared> shared_ptr) {
  auto& shared = *shared_ptr;
  const auto& settings = shared.settings;
  auto logger = log::get("daemon");
  // http(s)://host[:port]/path
  const auto path_start = settings.url.find('/', settings.url.find("://") + 3);
  const std::string origin = settings.url.substr(0, path_start);
  const std::string path = path_start == std::string::npos ? "/" : settings.url.substr(path_start);
  httplib::Client client(origin);
  client.set_keep_alive(true);
  client.set_follow_location(false);
  httplib::Headers headers{{"Content-Encoding", "snappy"},
                           {"X-Prometheus-Remote-Write-Version", "0.1.0"},
                           {"User-Agent", std::string("healer/") + service::version()}};
  if (!shared.bearer_token.empty()) {
    headers.emplace("Authorization", "Bearer " + shared.bearer_token);
  }
  std::set<int> refusals_logged;  // statuses already logged (once per kind)
  std::mt19937_64 random(std::random_device{}());

  const auto post = [&](const std::string& body, SteadyClock::duration timeout) {
    const auto seconds = std::chrono::duration_cast<std::chrono::microseconds>(
        std::max<SteadyClock::duration>(timeout, std::chrono::milliseconds(1)));
    client.set_connection_timeout(seconds);
    client.set_read_timeout(seconds);
    client.set_write_timeout(seconds);
    Attempt attempt;
    auto response = client.Post(path, headers, body, "application/x-protobuf");
    if (!response) {
      attempt.detail = httplib::to_string(response.error());
      return attempt;
    }
    attempt.status = response->status;
    attempt.detail = printable_line(response->body);
    if (response->status >= 200 && response->status < 300) {
      attempt.outcome = Outcome::sent;
    } else if (response->status == 429 || response->status >= 500) {
      attempt.outcome = Outcome::retry;
    } else {
      attempt.outcome = Outcome::refused;
    }
    return attempt;
  };
  // Books a finished batch (sent or refused) and logs a refusal of a new kind.
  const auto settle = [&](const Attempt& attempt, std::size_t samples) {
    std::lock_guard lock(shared.mutex);
    shared.in_flight = 0;
    if (attempt.outcome == Outcome::sent) {
      shared.stats.sent += samples;
      shared.stats.last_success_ms = unix_ms_now();
    } else {
      shared.stats.failed += samples;
    }
  };
  const auto log_refusal = [&](const Attempt& attempt, std::size_t samples) {
    if (refusals_logged.insert(attempt.status).second) {
      logger->error(
          "remote write to {}: HTTP {} ({}): {} samples dropped; further batches refused with "
          "this status are dropped and counted without a log line",
          origin, attempt.status, attempt.detail, samples);
    }
  };

  auto next_flush = SteadyClock::now() + settings.flush_interval;
  auto backoff = SteadyClock::duration(kMinBackoff);
  bool failing = false;  // a retry streak is going on (logged once at its start)
  std::vector<SampleQueue::Sample> batch;
  std::string body;
  while (true) {
    {
      std::unique_lock lock(shared.mutex);
      if (batch.empty()) {
        shared.wake.wait_until(lock, next_flush, [&] {
          return shared.stop_requested || shared.queue.size() >= settings.max_batch_samples;
        });
        if (shared.stop_requested) {
          break;
        }
        if (shared.queue.size() == 0) {
          next_flush = SteadyClock::now() + settings.flush_interval;
          continue;
        }
        batch = shared.queue.take(settings.max_batch_samples);
        shared.in_flight = batch.size();
        body = encode_write_request(batch);
      }
    }
    const auto attempt = post(body, settings.timeout);
    if (attempt.outcome != Outcome::retry) {
      settle(attempt, batch.size());
      if (attempt.outcome == Outcome::refused) {
        log_refusal(attempt, batch.size());
      } else if (failing) {
        logger->info("remote write to {}: the receiver accepts batches again", origin);
      }
      failing = false;
      backoff = kMinBackoff;
      batch.clear();
      std::lock_guard lock(shared.mutex);
      // A backlog goes out at once; otherwise wait for the next flush.
      if (shared.queue.size() < settings.max_batch_samples) {
        next_flush = SteadyClock::now() + settings.flush_interval;
      } else {
        next_flush = SteadyClock::now();
      }
      continue;
    }
    if (!failing) {
      logger->warn("remote write to {}: {}; retrying with backoff, queueing up to {} samples",
                   origin,
                   attempt.status != 0 ? "HTTP " + std::to_string(attempt.status) : attempt.detail,
                   settings.queue_max_samples);
      failing = true;
    }
    // Full jitter over the upper half: nodes that lost one receiver do not return in step.
    std::uniform_int_distribution<SteadyClock::rep> jitter(backoff.count() / 2, backoff.count());
    const auto wait = SteadyClock::duration(jitter(random));
    backoff = std::min<SteadyClock::duration>(backoff * 2, kMaxBackoff);
    std::unique_lock lock(shared.mutex);
    ++shared.stats.retries;
    if (shared.wake.wait_for(lock, wait, [&] { return shared.stop_requested; })) {
      break;
    }
  }

  // Shutdown: what is queued (the batch being retried first) gets one try each until the
  // deadline; the first failure ends it.
  std::size_t left = 0;
  while (true) {
    SteadyClock::time_point deadline;
    {
      std::lock_guard lock(shared.mutex);
      deadline = shared.stop_deadline;
      if (batch.empty()) {
        batch = shared.queue.take(settings.max_batch_samples);
        shared.in_flight = batch.size();
        body = encode_write_request(batch);
      }
    }
    if (batch.empty()) {
      break;
    }
    const auto now = SteadyClock::now();
    if (now >= deadline) {
      break;
    }
    const auto attempt =
        post(body, std::min<SteadyClock::duration>(settings.timeout, deadline - now));
    if (attempt.outcome == Outcome::retry) {
      break;
    }
    settle(attempt, batch.size());
    if (attempt.outcome == Outcome::refused) {
      log_refusal(attempt, batch.size());
    }
    batch.clear();
  }
  {
    std::lock_guard lock(shared.mutex);
    left = batch.size() + shared.queue.size();
    shared.stats.dropped += left;
    shared.in_flight = 0;
    (void)shared.queue.take(shared.queue.size());
    shared.finished = true;
  }
  if (left > 0) {
    logger->warn("remote write to {}: {} samples not sent before the shutdown deadline", origin,
                 left);
  }
}

}  // namespace healer::daemon
