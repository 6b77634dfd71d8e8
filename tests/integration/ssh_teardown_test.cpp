// Destroying the event loop while sessions are mid-flight (a timed-out command being reaped, a
// polite close in progress) must free everything without touching freed memory: coroutine frames
// destroyed without being resumed unlink themselves from the session's wait list. In a plain
// (debug) build a frame that did not unlink fails the wait list's destructor assertion (the list
// must be empty when its session goes: a timer left in it is a freed frame's), which aborts the
// test; under the asan preset the use-after-free that follows fails it too. Each test then checks
// that the session really ended (sshd saw the disconnect) and cleans up its remote commands.
#include <gtest/gtest.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

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

// A marker no other run of these tests shares.
std::string unique_sleep(int seconds) {
  return "sleep " + std::to_string(seconds) + "." + std::to_string(::getpid());
}

// The session was torn down with the loop: the disconnect reached sshd.
void expect_disconnected(const SshdFixture& sshd) {
  EXPECT_TRUE(sshd.wait_for_log("Received disconnect from", 1) ||
              sshd.wait_for_log("Connection closed by", 1) ||
              sshd.wait_for_log("Connection reset by", 1))
      << sshd.log_text();
}

void abandon_loop_at(Stage stop_at) {
  SshdFixture sshd;
  sshd.start();
  const std::string marker = unique_sleep(30);
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
                [&session, &marker]() -> asio::awaitable<void> {
                  (void)co_await session->async_exec(marker, ssh::ExecOptions(),
                                                     Deadline::after(30s));
                },
                asio::detached);
          }
          ssh::ExecOptions options;
          options.kill_grace = 2s;
          auto ran = co_await session->async_exec(marker, options, Deadline::after(300ms));
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
  expect_disconnected(sshd);
  sshd.kill_remote_processes_matching(marker);
}

TEST(SshTeardown, LoopDestroyedWhileATimedOutCommandIsReaped) { abandon_loop_at(Stage::timed_out); }

TEST(SshTeardown, LoopDestroyedDuringAPoliteClose) { abandon_loop_at(Stage::closing); }

TEST(SshTeardown, LoopDestroyedUnderAPoolWithATimedOutCommand) {
  SshdFixture sshd;
  sshd.start();
  const std::string marker = unique_sleep(31);
  bool timed_out = false;
  {
    asio::io_context io;
    auto registry = std::make_unique<pool::Registry>(io.get_executor(), PoolConfig());
    registry->add_server(test::pool_server(sshd, "srv"));
    exec::Executor executor(*registry);
    for (int i = 0; i < 3; ++i) {
      asio::co_spawn(
          io,
          [&executor, &marker]() -> asio::awaitable<void> {
            exec::RunOptions options;
            options.deadline = Deadline::after(30s);
            (void)co_await executor.async_run("srv", marker, std::move(options));
          },
          asio::detached);
    }
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          exec::RunOptions options;
          options.deadline = Deadline::after(400ms);
          options.kill_grace = 2s;
          auto ran = co_await executor.async_run("srv", marker, std::move(options));
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
  expect_disconnected(sshd);
  sshd.kill_remote_processes_matching(marker);
}

}  // namespace
}  // namespace healer
