#include "healer/daemon/control_server.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <deque>

#include "healer/core/log.hpp"
#include "healer/service/control.hpp"
#include "healer/service/errors.hpp"

namespace healer::daemon {
namespace {

using asio::local::stream_protocol;
namespace control = service::control;

constexpr auto kRequestTimeout = std::chrono::seconds(10);
// A request is small (an exec's stdin at most 64 MiB); the reply can be larger.
constexpr std::size_t kMaxRequest = std::size_t{80} << 20;

const auto& logger() {
  static const auto instance = log::get("daemon");
  return instance;
}

// Frames go out one at a time, in order (progress while the work runs, then the outcome): a
// write never overlaps another on the socket.
struct Outbox {
  explicit Outbox(stream_protocol::socket& s) : socket(s), idle(s.get_executor()) {}
  stream_protocol::socket& socket;
  std::deque<std::string> frames;
  bool writing = false;
  bool broken = false;
  asio::steady_timer idle;

  void post(const service::Json& message) {
    if (broken) {
      return;
    }
    frames.push_back(control::frame(message));
    if (!writing) {
      write_next();
    }
  }
  void write_next() {
    if (frames.empty() || broken) {
      writing = false;
      idle.cancel();
      return;
    }
    writing = true;
    asio::async_write(socket, asio::buffer(frames.front()),
                      [this](std::error_code ec, std::size_t) {
                        frames.pop_front();
                        if (ec) {
                          broken = true;
                          frames.clear();
                        }
                        write_next();
                      });
  }
  asio::awaitable<void> drain() {
    while (writing) {
      idle.expires_at(Clock::time_point::max());
      co_await idle.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
  }
};

asio::awaitable<bool> send(stream_protocol::socket& socket, const service::Json& message) {
  const auto bytes = control::frame(message);
  auto [ec, written] = co_await asio::async_write(
      socket, asio::buffer(bytes), asio::experimental::as_tuple(asio::use_awaitable));
  co_return !ec;
}

asio::awaitable<Result<service::Json>> receive(stream_protocol::socket& socket) {
  // One deadline for the whole request: a client that connects and stays silent is dropped.
  asio::steady_timer deadline(socket.get_executor());
  deadline.expires_after(kRequestTimeout);
  deadline.async_wait([&socket](std::error_code ec) {
    if (!ec) {
      std::error_code ignored;
      socket.cancel(ignored);
    }
  });
  unsigned char header[4];
  auto [ec, read] = co_await asio::async_read(socket, asio::buffer(header),
                                              asio::experimental::as_tuple(asio::use_awaitable));
  if (ec) {
    deadline.cancel();
    co_return service::make_error(service::Errc::invalid_input, "no request");
  }
  auto length = control::frame_length(header);
  if (!length || *length > kMaxRequest) {
    deadline.cancel();
    co_return service::make_error(service::Errc::too_large, "the request is too large");
  }
  std::string text(*length, '\0');
  auto [body_ec, body_read] = co_await asio::async_read(
      socket, asio::buffer(text), asio::experimental::as_tuple(asio::use_awaitable));
  deadline.cancel();
  if (body_ec) {
    co_return service::make_error(service::Errc::invalid_input, "a cut request");
  }
  auto message = service::Json::parse(text, nullptr, false);
  if (message.is_discarded() || !message.is_object()) {
    co_return service::make_error(service::Errc::invalid_input, "the request is not JSON");
  }
  co_return message;
}

service::Json error_message(const Error& error) {
  return service::Json{{"error", service::to_json(error)}};
}

}  // namespace

ControlServer::ControlServer(service::Runtime& runtime, std::filesystem::path path,
                             std::function<void()> on_inventory_changed)
    : runtime_(runtime),
      path_(std::move(path)),
      on_inventory_changed_(std::move(on_inventory_changed)) {}

ControlServer::~ControlServer() = default;

Result<void> ControlServer::start() {
  // One daemon per database: a socket that still answers belongs to a running one.
  auto existing = control::Client::connect(path_);
  if (existing && *existing) {
    return service::make_error(
        service::Errc::unavailable,
        fmt::format("another healer serve is running for this database ({} answers)",
                    path_.string()));
  }
  std::error_code ec;
  std::filesystem::remove(path_, ec);  // a stale socket of a daemon that died
  acceptor_ = std::make_unique<stream_protocol::acceptor>(runtime_.io());
  // The socket file is created 0600 (umask around bind: no window where others could connect).
  const mode_t old_mask = ::umask(0177);
  acceptor_->open(stream_protocol(), ec);
  if (!ec) {
    acceptor_->bind(stream_protocol::endpoint(path_.string()), ec);
  }
  ::umask(old_mask);
  if (!ec) {
    acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return service::make_error(service::Errc::unavailable,
                               fmt::format("control socket {}: {}", path_.string(), ec.message()));
  }
  asio::co_spawn(runtime_.io(), accept_loop(), asio::detached);
  logger()->info("control socket {}", path_.string());
  return {};
}

asio::awaitable<void> ControlServer::accept_loop() {
  while (!stopping_) {
    auto [ec, socket] =
        co_await acceptor_->async_accept(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) {
      if (stopping_ || ec == asio::error::operation_aborted) {
        break;
      }
      continue;
    }
    ++stats_.connections;
    // Only our own user (the file is 0600; the kernel's word on the peer is checked too).
    ucred peer{};
    socklen_t size = sizeof(peer);
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 ||
        (peer.uid != ::getuid() && peer.uid != 0)) {
      ++stats_.refused;
      continue;
    }
    asio::co_spawn(runtime_.io(), serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> ControlServer::serve(stream_protocol::socket socket) {
  ++in_flight_;
  auto request = co_await receive(socket);
  if (!request) {
    ++stats_.refused;
    co_await send(socket, error_message(request.error()));
    --in_flight_;
    co_return;
  }
  ++stats_.requests;
  Outbox outbox(socket);
  const auto op = request->value("op", std::string());
  const auto body = request->contains("request") ? request->at("request") : service::Json::object();
  service::Json reply;
  if (op == "diagnose") {
    auto parsed = control::diagnose_request_from_json(body);
    if (!parsed) {
      reply = error_message(parsed.error());
    } else {
      auto progress = [&outbox](std::size_t done, std::size_t total) {
        outbox.post(service::Json{{"progress", {{"done", done}, {"total", total}}}});
      };
      auto outcome = co_await service::async_diagnose(runtime_, std::move(*parsed), progress);
      reply = outcome ? service::Json{{"outcome", service::to_json(*outcome)}}
                      : error_message(outcome.error());
    }
  } else if (op == "collect") {
    auto parsed = control::collect_request_from_json(body);
    if (!parsed) {
      reply = error_message(parsed.error());
    } else {
      std::size_t done = 0;
      auto progress = [&outbox, &done](const service::CollectedServer& server, std::size_t total) {
        ++done;
        outbox.post(
            service::Json{{"progress", {{"done", done}, {"total", total}, {"ok", server.ok()}}}});
      };
      auto outcome = co_await service::async_collect(runtime_, std::move(*parsed), progress);
      reply = outcome ? service::Json{{"outcome", service::to_json(*outcome)}}
                      : error_message(outcome.error());
    }
  } else if (op == "exec") {
    auto parsed = control::exec_request_from_json(body);
    if (!parsed) {
      reply = error_message(parsed.error());
    } else {
      const auto commands = parsed->commands;
      auto outcome = co_await service::async_exec(runtime_, std::move(*parsed));
      reply = outcome ? service::Json{{"outcome",
                                       service::to_json(*outcome, commands, service::Wire::exact)}}
                      : error_message(outcome.error());
    }
  } else if (op == "test") {
    auto parsed = control::test_request_from_json(body);
    if (!parsed) {
      reply = error_message(parsed.error());
    } else {
      auto outcome = co_await service::async_test_connections(runtime_, std::move(*parsed));
      if (outcome) {
        service::Json results = service::Json::array();
        for (const auto& result : *outcome) {
          results.push_back(service::to_json(result));
        }
        reply = service::Json{{"outcome", std::move(results)}};
      } else {
        reply = error_message(outcome.error());
      }
    }
  } else if (op == "inventory_changed") {
    if (on_inventory_changed_) {
      on_inventory_changed_();
    }
    reply = service::Json{{"outcome", service::Json::object()}};
  } else if (op == "ping") {
    reply = service::Json{{"outcome", {{"healer_version", service::version()}}}};
  } else {
    reply = error_message(service::make_error(service::Errc::invalid_input,
                                              fmt::format("unknown operation '{}'", op)));
  }
  outbox.post(reply);
  co_await outbox.drain();
  std::error_code ignored;
  socket.shutdown(stream_protocol::socket::shutdown_both, ignored);
  --in_flight_;
}

asio::awaitable<void> ControlServer::async_stop(Deadline deadline) {
  stopping_ = true;
  if (acceptor_) {
    std::error_code ignored;
    acceptor_->close(ignored);
  }
  asio::steady_timer timer(runtime_.io());
  while (in_flight_ > 0 && !deadline.expired()) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

}  // namespace healer::daemon
