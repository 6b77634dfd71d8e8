// healer-store-bench: the store's operations on its two backends side by side, SQLite (a file in
// a temp dir, WAL) and PostgreSQL 15 (a local server started by PostgresFixture, over TCP on
// 127.0.0.1, fsync off like the test server). Prints a Markdown table: total time of N writes of
// each kind and the median of repeated fleet reads, with the PostgreSQL / SQLite ratio.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common.hpp"
#include "healer/store/store.hpp"
#include "postgres_fixture.hpp"
#include "temp_dir.hpp"

namespace healer::bench {
namespace {

struct Figures {
  double add_servers_ms = 0;
  double record_runs_ms = 0;
  double append_samples_ms = 0;
  double latest_runs_ms = 0;     // median of the repeats
  double latest_samples_ms = 0;  // median of the repeats
};

store::StoreOptions options_for(std::string db) {
  store::StoreOptions options;
  options.db_path = std::move(db);
  auto key = store::MasterKey::generate();
  if (!key) {
    throw std::runtime_error("no master key");
  }
  options.master_key = *key;
  return options;
}

template <class T>
T must(Result<T> result, std::string_view what) {
  if (!result) {
    throw std::runtime_error(std::string(what) + ": " + result.error().message());
  }
  return std::move(result).value();
}

Figures run(store::Store& store, int servers, int samples_per_batch, int repeats) {
  Figures figures;
  std::vector<std::int64_t> ids;
  auto start = Clock::now();
  for (int i = 0; i < servers; ++i) {
    store::ServerRecord server;
    server.name = fmt::format("s{:05}", i);
    server.host = "127.0.0.1";
    server.port = 22;
    server.user = "ops";
    server.auth_method = store::AuthMethod::password;
    server.secret = "bench-password";
    server.tags = {"bench"};
    ids.push_back(must(store.add_server(server), "add_server"));
  }
  figures.add_servers_ms = ms_since(start);

  start = Clock::now();
  for (const auto id : ids) {
    store::DiagnosisRun diagnosis;
    diagnosis.server_id = id;
    diagnosis.started_at = 1'000;
    diagnosis.finished_at = 1'200;
    diagnosis.status = store::CheckStatus::ok;
    for (const char* check : {"memory", "disk", "load", "uptime", "services"}) {
      diagnosis.checks.push_back({check, store::CheckStatus::ok, "fine", "", 3});
    }
    (void)must(store.record_diagnosis(diagnosis), "record_diagnosis");
  }
  figures.record_runs_ms = ms_since(start);

  start = Clock::now();
  for (const auto id : ids) {
    std::vector<store::MetricSample> batch;
    for (int k = 0; k < samples_per_batch; ++k) {
      batch.push_back({id, 2'000, fmt::format("node_metric_{}", k), "", 1.5 * k});
    }
    (void)must(store.append_samples(batch), "append_samples");
  }
  figures.append_samples_ms = ms_since(start);

  std::vector<double> runs;
  std::vector<double> samples;
  for (int r = 0; r < repeats; ++r) {
    start = Clock::now();
    (void)must(store.latest_runs(), "latest_runs");
    runs.push_back(ms_since(start));
    start = Clock::now();
    (void)must(store.latest_samples(std::nullopt, 0), "latest_samples");
    samples.push_back(ms_since(start));
  }
  figures.latest_runs_ms = median_of(runs);
  figures.latest_samples_ms = median_of(samples);
  return figures;
}

}  // namespace
}  // namespace healer::bench

int main(int argc, char** argv) {
  using namespace healer;
  CLI::App app{"healer-store-bench: the store on SQLite and on PostgreSQL"};
  int servers = 500;
  int samples = 100;
  int repeats = 10;
  app.add_option("--servers", servers, "Servers (one run and one sample batch each)");
  app.add_option("--samples", samples, "Samples per batch");
  app.add_option("--repeats", repeats, "Repeats of the fleet reads");
  CLI11_PARSE(app, argc, argv);
  try {
    test::TempDir dir;
    bench::progress("SQLite");
    bench::Figures sqlite;
    {
      auto store = bench::must(store::Store::open(bench::options_for((dir.path() / "bench.db"))),
                               "open SQLite");
      sqlite = bench::run(store, servers, samples, repeats);
    }
    if (const auto reason = test::PostgresFixture::unavailable_reason(); !reason.empty()) {
      std::cerr << reason << '\n';
      return 1;
    }
    bench::progress("PostgreSQL");
    test::PostgresFixture server;
    bench::Figures postgres;
    {
      auto store = bench::must(store::Store::open(bench::options_for(server.fresh_database_url())),
                               "open PostgreSQL");
      postgres = bench::run(store, servers, samples, repeats);
    }
    std::cout << fmt::format(
        "| operation ({} servers, {} samples a batch) | SQLite | PostgreSQL | ratio |\n"
        "|---|---|---|---|\n",
        servers, samples);
    const auto row = [](std::string_view what, double a, double b) {
      std::cout << fmt::format("| {} | {} | {} | {:.1f}x |\n", what, bench::format_ms(a),
                               bench::format_ms(b), a > 0 ? b / a : 0.0);
    };
    row("add_server, all (each its own transaction)", sqlite.add_servers_ms,
        postgres.add_servers_ms);
    row("record_diagnosis with 5 checks, all", sqlite.record_runs_ms, postgres.record_runs_ms);
    row("append_samples, all batches", sqlite.append_samples_ms, postgres.append_samples_ms);
    row("latest_runs (median)", sqlite.latest_runs_ms, postgres.latest_runs_ms);
    row("latest_samples, whole fleet (median)", sqlite.latest_samples_ms,
        postgres.latest_samples_ms);
  } catch (const std::exception& error) {
    std::cerr << "healer-store-bench: " << error.what() << '\n';
    return 1;
  }
  return 0;
}
