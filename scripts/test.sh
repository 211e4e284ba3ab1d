#!/usr/bin/env bash
# The test command: installs dependencies (Debian packages, and the Python test clients into
# .venv-test), checks formatting, builds with warnings as errors, runs every test (unit, golden,
# integration with the real server; GPU tests skip without a GPU), then builds the unit tests and
# the fuzzers once more with clang under AddressSanitizer + UndefinedBehaviorSanitizer, runs the
# unit tests there and each fuzz target for FUZZ_SECONDS (default 20). Prints how long each stage
# took and the ten slowest tests; JUnit files stay in build/junit and build-asan/junit.
#
# Compiler cache: ccache (when installed; install-deps.sh installs it) keeps its cache outside the
# clone (CCACHE_DIR, default ~/.cache/ccache) and hashes paths relative to the clone, so a fresh
# clone in another folder on the same machine hits it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-20}
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-10G}

stage_names=()
stage_seconds=()
report() {
  local status=$?
  echo "=== stage times ==="
  local i
  for i in "${!stage_names[@]}"; do
    printf '  %-34s %5ds\n' "${stage_names[$i]}" "${stage_seconds[$i]}"
  done
  printf '  %-34s %5ds\n' "total" "$SECONDS"
  if [[ -x .venv-test/bin/python ]]; then
    .venv-test/bin/python scripts/slowest-tests.py build/junit build-asan/junit || true
  fi
  exit "$status"
}
trap report EXIT

# stage NAME COMMAND...: runs COMMAND, recording its duration under NAME.
stage() {
  local name=$1
  shift
  echo "=== $name ==="
  local start=$SECONDS
  "$@"
  stage_names+=("$name")
  stage_seconds+=($((SECONDS - start)))
}

check_format() {
  git ls-files -z '*.cc' '*.h' '*.cu' '*.cuh' | xargs -0 clang-format --dry-run -Werror
}

build_release() {
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_WERROR=ON >/dev/null
  cmake --build build -j "$jobs"
}

test_release() {
  ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300 \
    --output-junit junit/ctest.xml
}

# One clang tree serves both: the unit tests (only those: no server, no benchmarks) and the fuzz
# targets. nvcc takes no sanitizer flags, so the CUDA backend is left out here.
build_asan() {
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWITCHYARD_WERROR=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSWITCHYARD_SANITIZE=ON \
    -DSWITCHYARD_FUZZ=ON -DSWITCHYARD_CUDA=OFF >/dev/null
  cmake --build build-asan -j "$jobs" --target unit_tests fuzz_targets
}

test_asan() {
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -L unit --timeout 300 \
    --output-junit junit/ctest.xml
}

stage "install (apt, venv)" bash -c "bash scripts/install-deps.sh && bash scripts/setup-test-venv.sh"
stage "format (clang-format)" check_format
stage "build (Release, -Werror)" build_release
stage "tests (Release)" test_release
stage "build (clang ASan+UBSan)" build_asan
stage "unit tests (ASan+UBSan)" test_asan
if [[ "$fuzz_seconds" -gt 0 ]]; then
  stage "fuzzers (${fuzz_seconds}s each)" bash scripts/fuzz.sh "$fuzz_seconds"
fi
echo "=== all tests passed ==="
