// healer-http-bench: the daemon's HTTP server (daemon::HttpServer: Asio coroutines on one loop,
// http-parser) next to cpp-httplib's server (a thread pool, the alternative issue 9 named), both
// in this process on 127.0.0.1, serving the same small JSON body:
//  (a) requests/s and latency under wrk (keep-alive), when wrk is installed;
//  (b) memory per idle connection: RSS growth with N connections open that never send;
//  (c) a new client's request while those N idle connections stay open: served, and how fast.
// Servers take turns; each figure is printed as a Markdown table on stdout.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "child_process.hpp"
#include "common.hpp"
#include "healer/daemon/http.hpp"

namespace healer::bench {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kBody = R"({"status":"ok","servers":3,"healthy":true})";

asio::awaitable<daemon::HttpResponse> hello(daemon::HttpRequest) {
  daemon::HttpResponse response;
  response.body = std::string(kBody);
  co_return response;
}

long rss_kib() { return status_kib("/proc/self/status", "VmRSS").value_or(0); }

// A server under test: started, its port, stopped.
class Target {
 public:
  virtual ~Target() = default;
  virtual std::string name() const = 0;
  virtual std::uint16_t port() const = 0;
};

class HealerTarget : public Target {
 public:
  HealerTarget() {
    daemon::HttpOptions options;
    options.rate_per_second = 0;  // the bench is one client address
    options.max_connections = 20000;
    server_ = std::make_unique<daemon::HttpServer>(io_.get_executor(), options, hello);
    if (auto started = server_->start(); !started) {
      throw std::runtime_error(started.error().message());
    }
    thread_ = std::thread([this] { io_.run(); });
  }
  ~HealerTarget() override {
    std::promise<void> done;
    asio::co_spawn(io_, server_->async_stop(Deadline::after(2s)),
                   [&done](std::exception_ptr) { done.set_value(); });
    done.get_future().wait();
    work_.reset();
    thread_.join();
  }
  std::string name() const override { return "healer (Asio + http-parser)"; }
  std::uint16_t port() const override { return server_->port(); }

 private:
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
      io_.get_executor()};
  std::unique_ptr<daemon::HttpServer> server_;
  std::thread thread_;
};

class HttplibTarget : public Target {
 public:
  HttplibTarget() {
    server_.Get("/hello", [](const httplib::Request&, httplib::Response& response) {
      response.set_content(std::string(kBody), "application/json");
    });
    port_ = static_cast<std::uint16_t>(server_.bind_to_any_port("127.0.0.1"));
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) {
      std::this_thread::sleep_for(1ms);  // 0.11 has no wait_until_ready()
    }
  }
  ~HttplibTarget() override {
    server_.stop();
    thread_.join();
  }
  std::string name() const override { return "cpp-httplib 0.11 server (thread pool)"; }
  std::uint16_t port() const override { return port_; }

 private:
  httplib::Server server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

int connect_idle(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    throw std::runtime_error("connect failed");
  }
  return fd;
}

struct WrkFigures {
  double requests_per_second = 0;
  std::string latency_avg;
  std::string latency_p99;
  std::string errors;
};

std::optional<WrkFigures> run_wrk(std::uint16_t port, int connections, int seconds) {
  const auto out = test::run_command(
      {"wrk", "-t1", fmt::format("-c{}", connections), fmt::format("-d{}s", seconds), "--latency",
       fmt::format("http://127.0.0.1:{}/hello", port)},
      std::chrono::seconds(seconds + 30));
  if (out.exit_code() != 0) {
    return std::nullopt;
  }
  WrkFigures figures;
  std::smatch match;
  if (std::regex_search(out.out, match, std::regex(R"(Requests/sec:\s+([0-9.]+))"))) {
    figures.requests_per_second = std::stod(match[1]);
  }
  if (std::regex_search(out.out, match, std::regex(R"(Latency\s+(\S+))"))) {
    figures.latency_avg = match[1];
  }
  if (std::regex_search(out.out, match, std::regex(R"(99%\s+(\S+))"))) {
    figures.latency_p99 = match[1];
  }
  if (std::regex_search(out.out, match, std::regex(R"(Socket errors:[^\n]*)"))) {
    figures.errors = match[0];
  }
  if (std::regex_search(out.out, match, std::regex(R"(Non-2xx[^\n]*)"))) {
    figures.errors += match[0];
  }
  return figures;
}

struct IdleFigures {
  long rss_growth_kib = 0;
  bool served = false;
  double request_ms = 0;
};

IdleFigures idle_connections(const Target& target, int count, std::chrono::seconds patience) {
  IdleFigures figures;
  const long before = rss_kib();
  std::vector<int> idle;
  idle.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    idle.push_back(connect_idle(target.port()));
  }
  std::this_thread::sleep_for(500ms);  // pacing only: let the server accept them all
  figures.rss_growth_kib = rss_kib() - before;

  httplib::Client client("127.0.0.1", target.port());
  client.set_connection_timeout(patience);
  client.set_read_timeout(patience);
  const auto start = Clock::now();
  const auto got = client.Get("/hello");
  figures.request_ms = ms_since(start);
  figures.served = got && got->status == 200;
  for (const int fd : idle) {
    ::close(fd);
  }
  return figures;
}

}  // namespace
}  // namespace healer::bench

int main(int argc, char** argv) {
  using namespace healer::bench;
  CLI::App app{"healer's HTTP server next to cpp-httplib's on 127.0.0.1"};
  int seconds = 5;
  std::string connection_list = "8,50";
  int idle = 1000;
  int patience = 10;
  app.add_option("--seconds", seconds, "wrk duration per server")->check(CLI::PositiveNumber);
  app.add_option("--connections", connection_list, "wrk connections, a list (one run each)");
  app.add_option("--idle", idle, "idle connections for (b) and (c)")->check(CLI::PositiveNumber);
  app.add_option("--patience", patience, "seconds (c) waits for the request")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  raise_fd_limit();
  spdlog::set_level(spdlog::level::warn);

  const bool have_wrk = healer::test::run_command({"sh", "-c", "command -v wrk"}).exit_code() == 0;
  const auto connection_counts = split_ints(connection_list);
  std::printf("| server | wrk -t1 connections | req/s | avg latency | p99 | wrk errors |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::vector<std::string> idle_rows;
  for (int which = 0; which < 2; ++which) {
    std::unique_ptr<Target> target;
    if (which == 0) {
      target = std::make_unique<HealerTarget>();
    } else {
      target = std::make_unique<HttplibTarget>();
    }
    for (const int connections : connection_counts) {
      progress(fmt::format("{}: wrk -c{}", target->name(), connections));
      std::optional<WrkFigures> wrk;
      if (have_wrk) {
        wrk = run_wrk(target->port(), connections, seconds);
      }
      std::printf("| %s | %d | %s | %s | %s | %s |\n", target->name().c_str(), connections,
                  wrk ? fmt::format("{:.0f}", wrk->requests_per_second).c_str() : "(no wrk)",
                  wrk ? wrk->latency_avg.c_str() : "-", wrk ? wrk->latency_p99.c_str() : "-",
                  wrk && !wrk->errors.empty() ? wrk->errors.c_str() : "none");
      std::fflush(stdout);
    }
    progress(target->name() + ": idle connections");
    const auto figures = idle_connections(*target, idle, std::chrono::seconds(patience));
    idle_rows.push_back(fmt::format("| {} | {:.1f} KiB | {} |", target->name(),
                                    static_cast<double>(figures.rss_growth_kib) / idle,
                                    figures.served ? format_ms(figures.request_ms)
                                                   : fmt::format("not served in {} s", patience)));
  }
  std::printf(
      "\n| server | RSS growth per idle connection (%d open) | a new client's GET while "
      "they stay open |\n|---|---|---|\n",
      idle);
  for (const auto& row : idle_rows) {
    std::printf("%s\n", row.c_str());
  }
  return 0;
}
