// Destroying the event loop while sessions are mid-flight (a timed-out command being reaped, a
// polite close in progress) must free everything without touching freed memory: coroutine frames
// destroyed without being resumed unlink themselves from the session's wait list. Run under the
// asan preset, a use-after-free here fails the test.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>

#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/pool.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/ssh/session.hpp"
#include "pool_helpers.hpp"
#include "sshd_fixture.hpp"

namespace healer {
namespace {

using namespace std::chrono_literals;
using test::SshdFixture;

enum class Stage { connecting, timed_out, closing };

void abandon_loop_at(Stage stop_at) {
  SshdFixture sshd;
  sshd.start();
  const auto server = test::pool_server(sshd, "srv");
  std::optional<Stage> reached;
  {
    asio::io_context io;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto session = co_await ssh::Session::async_connect(server.endpoint, server.connect,
                                                              Deadline::after(10s));
          if (!session) {
            ADD_FAILURE() << session.error().message();
            co_return;
          }
          // Several commands wait on the session; one times out and is being reaped (TERM, a
          // grace period, KILL) while the others keep waiting.
          for (int i = 0; i < 3; ++i) {
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&session]() -> asio::awaitable<void> {
                  (void)co_await session->async_exec("sleep 30", ssh::ExecOptions(),
                                                     Deadline::after(30s));
                },
                asio::detached);
          }
          ssh::ExecOptions options;
          options.kill_grace = 2s;
          auto ran = co_await session->async_exec("sleep 30", options, Deadline::after(300ms));
          EXPECT_FALSE(ran);
          reached = Stage::timed_out;
          if (stop_at == Stage::timed_out) {
            co_return;  // the session dies with this frame while its waiters are pending
          }
          reached = Stage::closing;
          co_await session->async_close(Deadline::after(10s));
        },
        asio::detached);
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (reached != stop_at && std::chrono::steady_clock::now() < until) {
      io.run_for(5ms);
    }
    ASSERT_EQ(reached, stop_at);
    io.run_for(20ms);  // let the close / the reaper get going, then abandon the loop
  }                    // ~io_context destroys every pending frame, in no particular order
  SUCCEED();
}

TEST(SshTeardown, LoopDestroyedWhileATimedOutCommandIsReaped) { abandon_loop_at(Stage::timed_out); }

TEST(SshTeardown, LoopDestroyedDuringAPoliteClose) { abandon_loop_at(Stage::closing); }

TEST(SshTeardown, LoopDestroyedUnderAPoolWithATimedOutCommand) {
  SshdFixture sshd;
  sshd.start();
  bool timed_out = false;
  {
    asio::io_context io;
    auto registry = std::make_unique<pool::Registry>(io.get_executor(), PoolConfig());
    registry->add_server(test::pool_server(sshd, "srv"));
    exec::Executor executor(*registry);
    for (int i = 0; i < 3; ++i) {
      asio::co_spawn(
          io,
          [&executor]() -> asio::awaitable<void> {
            exec::RunOptions options;
            options.deadline = Deadline::after(30s);
            (void)co_await executor.async_run("srv", "sleep 30", std::move(options));
          },
          asio::detached);
    }
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          exec::RunOptions options;
          options.deadline = Deadline::after(400ms);
          options.kill_grace = 2s;
          auto ran = co_await executor.async_run("srv", "sleep 30", std::move(options));
          EXPECT_FALSE(ran);
          timed_out = true;
        },
        asio::detached);
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!timed_out && std::chrono::steady_clock::now() < until) {
      io.run_for(5ms);
    }
    ASSERT_TRUE(timed_out);
    io.run_for(20ms);
    registry.reset();  // no polite shutdown: sessions are aborted with commands in flight
  }
  SUCCEED();
}

}  // namespace
}  // namespace healer
