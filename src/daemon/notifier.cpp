#include "healer/daemon/notifier.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <thread>

#include "healer/core/log.hpp"
#include "healer/service/json.hpp"

extern char** environ;

namespace healer::daemon {
namespace {

std::string status_text(store::CheckStatus status) { return std::string(store::to_string(status)); }

// Runs argv with `input` on stdin, stdout/stderr to /dev/null; kills it at the deadline.
// Blocking: runs on a worker thread. Returns a one-line failure, or nullopt.
std::optional<std::string> run_command(const std::vector<std::string>& argv,
                                       const std::string& input,
                                       std::chrono::steady_clock::time_point deadline) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return std::string("pipe: ") + std::strerror(errno);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[0], STDIN_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char*> args;
  for (const auto& word : argv) {
    args.push_back(const_cast<char*>(word.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[0]);
  if (spawned != 0) {
    ::close(pipe_fds[1]);
    return argv[0] + ": " + std::strerror(spawned);
  }
  // The event is small (well under the pipe buffer); a command that does not read it still
  // ends by its deadline.
  const ssize_t written = ::write(pipe_fds[1], input.data(), input.size());
  (void)written;
  ::close(pipe_fds[1]);
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return argv[0] + ": killed after the notify timeout";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return std::nullopt;
  }
  return argv[0] + (WIFEXITED(status) ? ": exited with " + std::to_string(WEXITSTATUS(status))
                                      : std::string(": killed by a signal"));
}

std::optional<std::string> post_webhook(const std::string& url, const std::string& body,
                                        std::chrono::seconds timeout) {
  // scheme://host[:port]/path
  const auto scheme_end = url.find("://");
  const auto path_start = url.find('/', scheme_end + 3);
  const std::string origin = url.substr(0, path_start);
  const std::string path = path_start == std::string::npos ? "/" : url.substr(path_start);
  httplib::Client client(origin);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  client.set_follow_location(false);
  auto response = client.Post(path, body, "application/json");
  if (!response) {
    return "webhook " + origin + ": " + httplib::to_string(response.error());
  }
  if (response->status < 200 || response->status >= 300) {
    return "webhook " + origin + ": HTTP " + std::to_string(response->status);
  }
  return std::nullopt;
}

}  // namespace

std::string event_json(const StatusEvent& event) {
  service::Json failing = service::Json::array();
  for (const auto& check : event.failing) {
    failing.push_back(
        {{"name", check.name}, {"status", status_text(check.status)}, {"message", check.message}});
  }
  return service::dump(service::Json{
      {"event", "status_changed"},
      {"server", event.server},
      {"from", event.from ? service::Json(status_text(*event.from)) : service::Json(nullptr)},
      {"to", status_text(event.to)},
      {"at", event.at},
      {"run_id", event.run_id},
      {"failing_checks", std::move(failing)},
      {"healer_version", service::version()}});
}

void Notifier::seed(const std::string& server, store::CheckStatus status) {
  tracks_[server].notified = status;
}

void Notifier::forget(const std::string& server) {
  if (auto it = tracks_.find(server); it != tracks_.end()) {
    tracks_.erase(it);
  }
}

void Notifier::observe(const std::string& server, const RunSummary& run) {
  auto& track = tracks_[server];
  if (track.notified && *track.notified == run.status) {
    track.candidate.reset();
    track.seen = 0;
    return;
  }
  if (track.candidate && *track.candidate == run.status) {
    ++track.seen;
  } else {
    track.candidate = run.status;
    track.seen = 1;
  }
  const auto& settings = runtime_.settings().notify;
  // The very first status of a server is only news when it is not OK.
  if (!track.notified && run.status == store::CheckStatus::ok) {
    track.notified = run.status;
    return;
  }
  if (track.seen < settings.consecutive) {
    ++stats_.held;
    return;
  }
  StatusEvent event{server, track.notified, run.status, run.started_at, run.run_id, run.failing};
  track.notified = run.status;
  track.candidate.reset();
  track.seen = 0;
  if (!settings.enabled() || !within_rate(server, "status " + status_text(run.status))) {
    return;
  }
  deliver(server, event_json(event), "status change");
}

void Notifier::notify_heal(const service::HealNotice& notice) {
  if (!runtime_.settings().notify.enabled() || !within_rate(notice.server, notice.event)) {
    return;
  }
  deliver(notice.server, service::notice_json(notice), notice.event);
}

bool Notifier::within_rate(const std::string& server, std::string_view what) {
  const auto now = std::chrono::steady_clock::now();
  while (!recent_.empty() && now - recent_.front() > std::chrono::hours(1)) {
    recent_.pop_front();
  }
  if (recent_.size() >= static_cast<std::size_t>(runtime_.settings().notify.max_per_hour)) {
    ++stats_.rate_limited;
    log::get("daemon")->warn("[{}] {} not notified: {} notifications in the last hour", server,
                             what, recent_.size());
    return false;
  }
  recent_.push_back(now);
  return true;
}

void Notifier::deliver(std::string server, std::string body, std::string what) {
  const auto settings = runtime_.settings().notify;
  ++in_flight_;
  auto loop = runtime_.io().get_executor();
  asio::post(runtime_.blocking(), [this, loop, settings, body = std::move(body),
                                   server = std::move(server), what = std::move(what)] {
    std::vector<std::string> failures;
    const auto deadline = std::chrono::steady_clock::now() + settings.timeout;
    if (!settings.command.empty()) {
      if (auto failed = run_command(settings.command, body, deadline)) {
        failures.push_back(*failed);
      }
    }
    if (!settings.webhook.empty()) {
      if (auto failed = post_webhook(settings.webhook, body, settings.timeout)) {
        failures.push_back(*failed);
      }
    }
    asio::post(loop, [this, server, what, failures = std::move(failures)] {
      --in_flight_;
      if (failures.empty()) {
        ++stats_.sent;
        log::get("daemon")->info("[{}] {} notified", server, what);
        return;
      }
      ++stats_.failed;
      for (const auto& failure : failures) {
        log::get("daemon")->warn("[{}] notification failed: {}", server, failure);
      }
    });
  });
}

asio::awaitable<void> Notifier::async_drain(Deadline deadline) {
  asio::steady_timer timer(runtime_.io());
  while (in_flight_ > 0 && !deadline.expired()) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::use_awaitable);
  }
}

}  // namespace healer::daemon
