#include "healer/service/connection_test.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <memory>

#include "healer/service/errors.hpp"
#include "healer/service/targets.hpp"
#include "healer/ssh/session.hpp"

namespace healer::service {
namespace {

double ms_since(Clock::time_point started) {
  return std::chrono::duration<double, std::milli>(Clock::now() - started).count();
}

// What the probes of one request share.
struct Tests {
  explicit Tests(asio::any_io_executor executor) : done(std::move(executor)) {}
  std::vector<ConnectionTestResult> results;
  std::size_t running = 0;
  asio::steady_timer done;
};

asio::awaitable<void> probe(pool::Server server, Deadline deadline, std::shared_ptr<Tests> tests,
                            std::size_t index) {
  auto& result = tests->results[index];
  auto seen = std::make_shared<std::pair<std::string, std::string>>();
  server.connect.on_host_key = [seen](const std::string& type, const std::string& fingerprint) {
    *seen = {type, fingerprint};
  };
  const auto started = Clock::now();
  auto session = co_await ssh::Session::async_connect(server.endpoint, server.connect, deadline);
  result.connect_ms = ms_since(started);
  result.key_type = seen->first;
  result.fingerprint = seen->second;
  if (!session) {
    result.error = std::move(session).error();
  } else {
    const auto ping_started = Clock::now();
    if (auto pinged = co_await session->async_ping(deadline); !pinged) {
      result.error = std::move(pinged).error();
    } else {
      result.round_trip_ms = ms_since(ping_started);
      const auto exec_started = Clock::now();
      auto ran = co_await session->async_exec("true", ssh::ExecOptions(), deadline);
      result.exec_ms = ms_since(exec_started);
      if (!ran) {
        result.error = std::move(ran).error();
      }
    }
    co_await session->async_close(Deadline::after(std::chrono::seconds(1)));
  }
  if (--tests->running == 0) {
    tests->done.cancel();
  }
}

}  // namespace

asio::awaitable<Result<std::vector<ConnectionTestResult>>> async_test_connections(
    Runtime& runtime, ConnectionTestRequest request) {
  if (request.names.empty()) {
    co_return make_error(Errc::invalid_input, "name at least one server");
  }
  if (!runtime.has_store()) {
    co_return make_error(Errc::unavailable, "testing servers needs the inventory database");
  }
  Selection selection;
  selection.names = request.names;
  // A named job: GCC 12 mis-builds a capturing lambda temporary inside co_await.
  auto job = [&runtime, selection]() { return select_servers(runtime.store(), selection); };
  auto records = co_await runtime.async_offload(std::move(job));
  if (!records) {
    co_return std::move(records).error();
  }
  auto loop = runtime.io().get_executor();
  auto tests = std::make_shared<Tests>(loop);
  tests->results.resize(records->size());
  std::vector<pool::Server> servers;
  for (std::size_t i = 0; i < records->size(); ++i) {
    const auto& record = (*records)[i];
    auto server = pool_server_for(record, runtime.settings().pool, runtime.secrets());
    if (!server) {
      co_return std::move(server).error();
    }
    if (request.accept_new_host_key) {
      server->connect.host_key_policy = ssh::HostKeyPolicy::accept_new;
    }
    if (auto pinned = request.pinned_fingerprints.find(record.name);
        pinned != request.pinned_fingerprints.end()) {
      server->connect.host_key_policy = ssh::HostKeyPolicy::accept_new;
      server->connect.accept_fingerprint = pinned->second;  // exactly the key shown, or nothing
    }
    auto& result = tests->results[i];
    result.server = record.name;
    result.target = describe(record);
    result.known_hosts_file = server->connect.known_hosts_file;
    servers.push_back(std::move(*server));
  }
  tests->running = servers.size();
  for (std::size_t i = 0; i < servers.size(); ++i) {
    asio::co_spawn(loop, probe(std::move(servers[i]), Deadline::after(request.timeout), tests, i),
                   asio::detached);
  }
  while (tests->running > 0) {
    tests->done.expires_at(Clock::time_point::max());
    co_await tests->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  co_return std::move(tests->results);
}

}  // namespace healer::service
