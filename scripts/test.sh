#!/usr/bin/env bash
# The test command: installs dependencies (Debian packages, and the Python test clients into
# .venv-test), builds with warnings as errors, runs every test (unit, golden, integration with
# the real server; GPU tests skip without a GPU), then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then each fuzz target for FUZZ_SECONDS
# (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-30}

bash scripts/install-deps.sh
bash scripts/setup-test-venv.sh

echo "=== build (Release, -Werror) ==="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
echo "=== tests ==="
ctest --test-dir build --output-on-failure -j "$jobs"

echo "=== unit tests under ASan + UBSan ==="
# Host code only: nvcc takes no sanitizer flags, and the CUDA backend needs a GPU to run.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWITCHYARD_WERROR=ON \
  -DSWITCHYARD_SANITIZE=ON -DSWITCHYARD_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -L unit

if [[ "$fuzz_seconds" -gt 0 ]]; then
  echo "=== fuzzers (${fuzz_seconds}s each) ==="
  bash scripts/fuzz.sh "$fuzz_seconds"
fi
echo "=== all tests passed ==="
