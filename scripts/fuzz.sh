#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (one per metrics parser, one for HTTP requests) with clang in build/fuzz and runs
# each for SECONDS seconds (default 10), seeded with the fixtures of tests/data/metrics.
# Exits non-zero if a target fails to build or finds a crash, leak, timeout or UB; the input
# that triggered it is kept in build/fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs clang with libclang_rt.fuzzer (Debian 12: clang-14 / libclang-rt-14-dev), CMake, Ninja.
set -euo pipefail

seconds="${1:-10}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [seconds per target, default 10]" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build/fuzz"
data="$root/tests/data/metrics"
cc="${CC:-clang}"
cxx="${CXX:-clang++}"
case "$cxx" in *clang*) ;; *) echo "fuzz.sh: CXX must be clang++ (got $cxx)" >&2; exit 2 ;; esac

echo "== configure $build ($cxx)"
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHEALER_FUZZ=ON -DHEALER_BUILD_TESTS=OFF -DHEALER_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; exit 1; }

echo "== build healer_fuzz"
cmake --build "$build" --target healer_fuzz -j "$(nproc)"

# target -> fixture globs (relative to tests/data/metrics) that seed its corpus
declare -A seeds=(
  [clk_tck]=""
  [diskstats]="diskstats_*"
  [file_nr]="file-nr_*"
  [filesystems]="filesystems_*"
  [http_request]=""
  [loadavg]="loadavg_*"
  [meminfo]="meminfo_*"
  [net_dev]="net_dev_*"
  [probe]="probe_*.out"
  [proc_stat]="stat_*"
  [time]=""
  [uname]="uname_*"
  [vmstat]="vmstat_*"
)

failed=()
summary=()
for target in $(printf '%s\n' "${!seeds[@]}" | sort); do
  corpus="$build/corpus/$target"     # grows across runs (libFuzzer writes new inputs here)
  seed_dir="$build/seeds/$target"    # refreshed from the fixtures every run
  artifacts="$build/artifacts/$target/"
  rm -rf "$seed_dir"
  mkdir -p "$corpus" "$seed_dir" "$artifacts"
  for glob in ${seeds[$target]}; do
    for file in "$data"/$glob; do
      [ -e "$file" ] && cp "$file" "$seed_dir/"
    done
  done
  case "$target" in
    clk_tck) printf '100\n' >"$seed_dir/clk_tck" ;;
    time) printf '1700003600\n' >"$seed_dir/time" ;;
    http_request)  # first byte: the piece size; then requests as a client sends them
      printf '\x07GET /a%%20b?x=1&y=%%41+b HTTP/1.1\r\nHost: h\r\n\r\n' >"$seed_dir/get"
      printf '\x20POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.0\r\n\r\n' \
        >"$seed_dir/pipelined"
      printf '\x03POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n0\r\n\r\n' \
        >"$seed_dir/chunked"
      ;;
  esac
  log="$build/fuzz_$target.log"
  cmd=("$build/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts" "$corpus" "$seed_dir")
  echo "== run fuzz_$target ($(ls "$seed_dir" | wc -l) seeds): ${cmd[*]}"
  if "${cmd[@]}" >"$log" 2>&1; then
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    summary+=("fuzz_$target: ok, ${runs:-?} runs, ${cov:-cov: ?}")
  else
    failed+=("fuzz_$target")
    summary+=("fuzz_$target: FAILED (log $log, artifacts $artifacts)")
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -20 >&2 || true
  fi
done

echo "== summary (${seconds} s per target)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: all ${#summary[@]} targets ran without a finding"
