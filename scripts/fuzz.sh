#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang in build-asan (the same tree, and
# the same flags, as scripts/test.sh's sanitizer pass) and runs each for SECONDS (default 20), one
# after the other, from its seed corpus tests/fuzz/corpus/<target>/. New inputs go to
# build-asan/fuzz-corpus/<target>/ (the committed seeds stay untouched); crash reproducers go to
# build-asan/fuzz-artifacts/<target>/. Exits non-zero if any target fails.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]    (SY_JOBS sets build parallelism, default nproc)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-20}
if (($# > 0)); then shift; fi
build="$root/build-asan"
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true

if (($# > 0)); then
  targets=("$@")
else
  targets=()
  for src in "$root"/tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$src" .cc)"); done
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWITCHYARD_WERROR=ON \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSWITCHYARD_SANITIZE=ON \
  -DSWITCHYARD_FUZZ=ON -DSWITCHYARD_CUDA=OFF >/dev/null
ninja -C "$build" -j "${SY_JOBS:-$(nproc)}" "${targets[@]}"

failed=()
for target in "${targets[@]}"; do
  work="$build/fuzz-corpus/$target"
  artifacts="$build/fuzz-artifacts/$target"
  mkdir -p "$work" "$artifacts"
  args=(-max_total_time="$seconds" -timeout=25 -print_final_stats=1
        -artifact_prefix="$artifacts/")
  dict="$root/tests/fuzz/$target.dict"
  if [[ -f "$dict" ]]; then args+=(-dict="$dict"); fi
  seeds=()
  if [[ -d "$root/tests/fuzz/corpus/$target" ]]; then seeds+=("$root/tests/fuzz/corpus/$target"); fi
  echo "=== $target: ${seconds}s"
  if ! "$build/tests/fuzz/$target" "${args[@]}" "$work" "${seeds[@]}"; then
    echo "=== $target FAILED: reproducers in $artifacts"
    failed+=("$target")
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: crashes in ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
