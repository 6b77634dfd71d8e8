#include "blackhole_proxy.hpp"

#include <asio.hpp>
#include <atomic>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace healer::test {

using asio::ip::tcp;

class BlackholeProxy::Impl {
 public:
  Impl(std::string host, std::uint16_t port) : host_(std::move(host)), requested_port_(port) {}

  void start() {
    if (started_) {
      throw std::logic_error("BlackholeProxy already started");
    }
    started_ = true;
    const tcp::endpoint listen(asio::ip::make_address(host_), requested_port_);
    acceptor_.open(listen.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(listen);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(this), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }

  void stop() {
    if (!thread_.joinable()) {
      return;
    }
    asio::post(io_, [this] {
      asio::error_code ignored;
      acceptor_.close(ignored);
      held_.clear();
      io_.stop();
    });
    thread_.join();
  }

  // Accepts until the acceptor is closed and keeps every socket open without reading or writing.
  static asio::awaitable<void> accept_loop(Impl* self) {
    asio::steady_timer backoff(self->io_);
    asio::error_code ec;
    for (;;) {
      tcp::socket socket =
          co_await self->acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (!self->acceptor_.is_open()) {
        co_return;
      }
      if (ec) {
        // Out of descriptors, typically: retry later instead of spinning on the error.
        backoff.expires_after(std::chrono::milliseconds(10));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      self->held_.push_back(std::move(socket));
      ++self->accepted_;
    }
  }

  // Set before the thread starts, read-only afterwards.
  std::string host_;
  std::uint16_t requested_port_ = 0;
  std::uint16_t port_ = 0;

  std::atomic<std::size_t> accepted_{0};
  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  // Accepted connections, open until stop(); only touched on the thread.
  std::vector<tcp::socket> held_;
  std::thread thread_;
  bool started_ = false;
};

BlackholeProxy::BlackholeProxy(std::string listen_host, std::uint16_t listen_port)
    : impl_(std::make_unique<Impl>(std::move(listen_host), listen_port)) {}

BlackholeProxy::~BlackholeProxy() { stop(); }

void BlackholeProxy::start() { impl_->start(); }

void BlackholeProxy::stop() { impl_->stop(); }

std::uint16_t BlackholeProxy::port() const noexcept { return impl_->port_; }

const std::string& BlackholeProxy::host() const noexcept { return impl_->host_; }

std::size_t BlackholeProxy::accepted_count() const noexcept { return impl_->accepted_.load(); }

}  // namespace healer::test
