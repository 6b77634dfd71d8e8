// healer-checks-bench: checks::async_diagnose in its two run modes side by side on one warm pool
// against a throwaway test-bed sshd, at several added round-trip times: concurrent (one channel
// per check on the pooled session, the default) and batched (every check in one exec, run in
// parallel by the remote shell). Figures only; nothing is asserted. Results: docs/architecture.md
// ("Running checks").
#include <CLI/CLI.hpp>
#include <algorithm>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "common.hpp"
#include "healer/checks/catalog.hpp"
#include "healer/checks/runner.hpp"
#include "healer/core/pool_config.hpp"
#include "healer/exec/executor.hpp"
#include "healer/pool/pool.hpp"
#include "pool_helpers.hpp"
#include "run_async.hpp"
#include "sshd_fixture.hpp"

namespace healer::bench {
namespace {

using checks::CheckDefinition;
using checks::RunMode;

struct Timed {
  std::vector<double> ms;   // per timed run: the diagnosis's own duration
  std::size_t unknown = 0;  // UNKNOWN results over every timed run (a check that could not look)
  std::size_t unreachable = 0;
};

// One untimed run (it pays the handshake and warms the server's page cache), then `runs` timed.
asio::awaitable<Timed> time_runs(pool::Registry* registry, std::string server_id,
                                 std::vector<CheckDefinition> check_list, RunMode mode, int runs) {
  exec::Executor executor(*registry);
  Timed timed;
  for (int i = 0; i <= runs; ++i) {
    checks::DiagnoseOptions options;
    options.deadline = Deadline::after(std::chrono::seconds(60));
    options.mode = mode;
    const checks::CheckSettings settings;
    auto diagnosis =
        co_await checks::async_diagnose(executor, server_id, check_list, settings, options);
    if (i == 0) {
      continue;
    }
    timed.ms.push_back(static_cast<double>(diagnosis.duration.count()) / 1000.0);
    timed.unreachable += diagnosis.reachable() ? 0U : 1U;
    timed.unknown += static_cast<std::size_t>(std::count_if(
        diagnosis.checks.begin(), diagnosis.checks.end(),
        [](const auto& run) { return run.result.status == checks::Status::unknown; }));
  }
  co_return timed;
}

asio::awaitable<int> shut_down(pool::Registry* registry) {
  co_await registry->async_shutdown(Deadline::after(std::chrono::seconds(5)));
  co_return 0;
}

struct CheckSet {
  std::string name;
  std::vector<CheckDefinition> checks;
};

std::vector<CheckSet> check_sets() {
  // The default set without cpu (a 1 s sample) and security_updates (apt: seconds of CPU), which
  // would only add the same constant to both modes.
  auto fast = checks::default_checks();
  std::erase_if(fast, [](const CheckDefinition& check) {
    return check.name == "cpu" || check.name == "security_updates";
  });
  const std::string fast_name = "default minus cpu/apt (" + std::to_string(fast.size()) + ")";
  return {CheckSet{"seed (7)", checks::seed_checks()}, CheckSet{fast_name, std::move(fast)}};
}

int bench_main(int argc, char** argv) {
  CLI::App app{"healer-checks-bench: checks in concurrent and batched mode on one warm pool"};
  int runs = 10;
  std::string rtts_text = "0,50";
  std::string link_text = default_link_model();
  app.add_option("--runs", runs, "timed runs per figure, after one untimed warm-up")
      ->check(CLI::Range(1, 1000));
  app.add_option("--rtts", rtts_text, "added round-trip times in ms");
  app.add_option("--link", link_text,
                 "how RTT is added: proxy (DelayProxy) or packet (packet-level link, root); "
                 "default $HEALER_BENCH_LINK, else proxy");
  CLI11_PARSE(app, argc, argv);
  const LinkModel link = parse_link_model(link_text);

  std::string table =
      "| RTT | checks | concurrent median (p90) | batched median (p90) | batched / concurrent | "
      "UNKNOWN results (conc. / batch.) |\n|---|---|---|---|---|---|\n";
  asio::io_context io;
  for (const int rtt : split_ints(rtts_text)) {
    progress("sshd with " + std::to_string(rtt) + " ms RTT");
    test::SshdFixture::Options sshd_options;
    add_link(sshd_options, link, std::chrono::milliseconds(rtt));
    test::SshdFixture sshd(sshd_options);
    sshd.start();
    pool::Registry registry(io.get_executor(), PoolConfig{});
    registry.add_server(test::pool_server(sshd, "bench"));
    for (const auto& set : check_sets()) {
      Timed by_mode[2];
      for (const auto mode : {RunMode::concurrent, RunMode::batched}) {
        const bool batched = mode == RunMode::batched;
        progress(set.name + (batched ? ", batched" : ", concurrent"));
        by_mode[batched ? 1 : 0] = test::run_async(
            io, time_runs(&registry, "bench", set.checks, mode, runs), std::chrono::seconds(600));
      }
      const Summary concurrent = summarize(by_mode[0].ms);
      const Summary batched = summarize(by_mode[1].ms);
      std::string ratio = "-";
      if (concurrent.median > 0) {
        char text[32];
        std::snprintf(text, sizeof text, "%.2f", batched.median / concurrent.median);
        ratio = text;
      }
      table +=
          "| " + std::to_string(rtt) + " ms | " + set.name + " | " + format_ms(concurrent.median) +
          " (" + format_ms(concurrent.p90) + ") | " + format_ms(batched.median) + " (" +
          format_ms(batched.p90) + ") | " + ratio + " | " + std::to_string(by_mode[0].unknown) +
          " / " + std::to_string(by_mode[1].unknown) +
          (by_mode[0].unreachable + by_mode[1].unreachable > 0 ? " (server unreachable!)" : "") +
          " |\n";
    }
    test::run_async(io, shut_down(&registry));
  }
  std::cout << table << "\n"
            << "Each figure: median (p90, nearest rank) of " << runs
            << " timed diagnoses after one untimed warm-up, on one pool::Registry whose session\n"
               "stays open (Diagnosis::duration: the acquire of the probe lease, the checks, the "
               "parsing).\nUNKNOWN results are summed over the timed runs of a cell.\nLink model: "
            << link_model_name(link) << ". " << link_model_description(link) << "\n";
  return 0;
}

}  // namespace
}  // namespace healer::bench

int main(int argc, char** argv) {
  try {
    return healer::bench::bench_main(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "healer-checks-bench: " << error.what() << "\n";
    return 2;
  }
}
