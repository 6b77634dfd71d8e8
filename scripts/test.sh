#!/usr/bin/env bash
# Installs the dependencies, builds with the given CMake preset (default: debug) and runs the whole
# test suite (unit + integration against a real sshd on 127.0.0.1). Usage: scripts/test.sh [preset]
# where preset is debug, asan, tsan or release. HEALER_WERROR=ON turns warnings into errors.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-debug}"

scripts/install-deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j2
if [ "$preset" = asan ]; then
  # libssh and OpenSSL keep a few process-lifetime allocations; leaks of ours still fail.
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi
# A test that fails is run once more (a loaded CI machine can starve an integration test's sshd
# for seconds), and every test that failed a first time is listed at the end, so that a flaky
# test is seen and fixed rather than hidden; one that fails twice fails the run.
log="build/$preset/ctest-last.log"
set +e
ctest --test-dir "build/$preset" --output-on-failure -j2 --timeout 120 --repeat until-pass:2 \
  2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
retried=$(grep -oE 'Test +#[0-9]+: [^ ]+ \.+ *\*\*\*[A-Za-z]+' "$log" | awk '{print $3}' | sort -u || true)
if [ -n "$retried" ]; then
  echo "== tests that failed a first time (their output is above):"
  echo "$retried"
fi
exit "$status"
