#!/usr/bin/env bash
# Expert placement planner benchmark (docs/benchmarks.md, "Expert placement planner"): contiguous,
# greedy and ILP placements on synthetic traces (planned on one window, replayed on the next) and
# on the real OLMoE / Mixtral routing statistics in tests/data/traces. Prints a table and a JSON
# line; never passes or fails.
# Usage: scripts/bench-planner.sh [ILP time limit, seconds (default 1)] [--quick]
#        BUILD_DIR=build-bench (default) selects the Release build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-1}
shift || true
build=${BUILD_DIR:-build-bench}
out=out/bench-planner
mkdir -p "$out"
if [[ ! -f $build/build.ninja ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
ninja -C "$build" -j1 planner_bench
"$build"/tests/bench/planner_bench --time-limit "$limit" \
  --real-traces tests/data/traces/olmoe-mixtral-routing.json "$@" | tee "$out/result.txt"
