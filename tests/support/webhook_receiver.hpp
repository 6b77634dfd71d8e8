#pragma once

#include <httplib.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

namespace healer::test {

/// A small HTTP server on 127.0.0.1 keeping the JSON bodies POSTed to /hook (the daemon's
/// [notify] webhook), in order.
class WebhookReceiver {
 public:
  WebhookReceiver() {
    server_.Post("/hook", [this](const httplib::Request& request, httplib::Response& response) {
      std::lock_guard lock(mutex_);
      events_.push_back(nlohmann::json::parse(request.body, nullptr, false));
      response.status = 204;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;
  ~WebhookReceiver() {
    server_.stop();
    thread_.join();
  }

  /// The bodies received so far.
  [[nodiscard]] std::vector<nlohmann::json> received() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  [[nodiscard]] int port() const noexcept { return port_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<nlohmann::json> events_;
};

}  // namespace healer::test
