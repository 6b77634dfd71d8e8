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
ctest --test-dir "build/$preset" --output-on-failure -j2 --timeout 120
