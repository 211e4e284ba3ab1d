#!/usr/bin/env bash
# Packs Switchyard's GPU programs for the device machine, a GPU host with the NVIDIA driver, the
# CUDA 13 toolkit, PyTorch and transformers, but none of our Debian libraries (and no apt, no
# network): switchyard, gpu_bench and every tests/gpu test program of a CUDA build, plus every
# shared library they load except glibc, the C++ runtime, the driver (libcuda) and the CUDA
# libraries too big to carry (cuBLAS/cuBLASLt ~600 MB, NCCL ~200 MB), which env.sh finds on the
# device (CUDA toolkit, else PyTorch's nvidia-* wheels). Writes .gpu/bundle.tar.gz and
# .gpu/run-on-device.sh; .gpu/ is git-ignored, so the device tool must carry it.
#
# Here, after a CUDA build:   scripts/gpu-bundle.sh [BUILD_DIR...]     (default: build)
#   Each program comes from the first BUILD_DIR that has it (e.g. `build build-bench`).
# Then with the device tool (it runs in the repository root of a copy of this tree; files written
# under $OUT come back, at most 8 per call):
#   run(command="bash .gpu/run-on-device.sh check", carry=[".gpu"])     # GPU, libraries, copy GB/s
#   run(command="bash .gpu/run-on-device.sh tests", carry=[".gpu"])     # every GPU test program
#   run(command="bash .gpu/run-on-device.sh tests cuda_gemm_test", carry=[".gpu"])
#   run(command="bash .gpu/run-on-device.sh sanitize memcheck racecheck", carry=[".gpu"])
#   run(command="bash .gpu/run-on-device.sh bench copy moe decode-olmoe", carry=[".gpu"])
#   run(command="bash .gpu/run-on-device.sh exec switchyard generate --help", carry=[".gpu"])
# GTEST_FILTER=... before `bash` narrows the tests. One call may run 10 minutes: split the work.
# The carried tree (repository + .gpu) must stay under 64 MiB; this script prints both sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=("$@")
[[ ${#dirs[@]} -gt 0 ]] || dirs=(build)

# The first build dir holding the executable $1 (a path inside a build dir).
find_program() {
  local d
  for d in "${dirs[@]}"; do
    if [[ -x $d/$1 ]]; then
      echo "$d/$1"
      return 0
    fi
  done
  return 1
}

programs=()
for rel in server/switchyard tests/bench/gpu_bench; do
  if ! p=$(find_program "$rel"); then
    echo "gpu-bundle: no $rel in ${dirs[*]} (build it with CUDA first)" >&2
    exit 1
  fi
  programs+=("$p")
done
declare -A seen=()
for d in "${dirs[@]}"; do
  for t in "$d"/tests/gpu/*; do
    n=$(basename "$t")
    if [[ -f $t && -x $t && -z ${seen[$n]:-} ]]; then
      seen[$n]=1
      programs+=("$t")
    fi
  done
done
if [[ ${#seen[@]} -eq 0 ]]; then
  echo "gpu-bundle: no tests/gpu programs in ${dirs[*]}" >&2
  exit 1
fi

# Libraries the device provides: glibc, the C++ runtime, the driver; cuBLAS and NCCL are there
# too (external-libs.txt lists them for env.sh to find), and far too big to carry.
provided='^(linux-vdso|ld-linux-x86-64|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda)\.so'
external='^(libcublas|libcublasLt|libnccl)\.so'
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/sy-bundle
mkdir -p "$root/bin" "$root/lib"
declare -A libs=() externals=()
missing=()
for p in "${programs[@]}"; do
  deps=$(ldd "$p")
  if [[ $deps != *libcudart.so* ]]; then
    echo "gpu-bundle: $p does not load libcudart: not a CUDA build" >&2
    exit 1
  fi
  cp "$p" "$root/bin/"
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    if [[ $path == not ]]; then
      missing+=("$name (for $p)")
    elif [[ $name =~ $external ]]; then
      externals[$name]=1
    elif [[ ! $name =~ $provided ]]; then
      libs[$name]=$path
    fi
  done <<<"$deps"
done
if [[ ${#missing[@]} -gt 0 ]]; then
  printf 'gpu-bundle: unresolved library: %s\n' "${missing[@]}" >&2
  exit 1
fi
for name in "${!libs[@]}"; do cp -L "${libs[$name]}" "$root/lib/$name"; done
printf '%s\n' "${!externals[@]}" | sort >"$root/external-libs.txt"

cat >"$root/env.sh" <<'EOF'
# Sourced (by run-on-device.sh, or by hand): the bundle's programs on PATH, and on
# LD_LIBRARY_PATH its libraries, then the directories of the libraries in external-libs.txt that
# the device provides (CUDA toolkit first, else PyTorch's nvidia-* wheels).
SY_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SY_BUNDLE
sy_dirs=$SY_BUNDLE/lib
sy_wheels=$(python3 -c 'import nvidia; print(" ".join(nvidia.__path__))' 2>/dev/null || true)
while read -r sy_name; do
  [[ -n $sy_name ]] || continue
  sy_dir=
  for sy_d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib \
    /usr/lib/x86_64-linux-gnu; do
    if [[ -e $sy_d/$sy_name ]]; then
      sy_dir=$sy_d
      break
    fi
  done
  if [[ -z $sy_dir && -n $sy_wheels ]]; then
    # shellcheck disable=SC2086  # several namespace-package paths
    sy_dir=$(find $sy_wheels -name "$sy_name" -printf '%h\n' 2>/dev/null | head -n 1)
  fi
  if [[ -z $sy_dir ]]; then
    echo "env.sh: $sy_name is not on this machine" >&2
  elif [[ :$sy_dirs: != *:$sy_dir:* ]]; then
    sy_dirs=$sy_dirs:$sy_dir
  fi
done <"$SY_BUNDLE/external-libs.txt"
export LD_LIBRARY_PATH=$sy_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$SY_BUNDLE/bin:$PATH
unset sy_dirs sy_wheels sy_name sy_dir sy_d
EOF

cat >"$root/run-on-device.sh" <<'EOF'
#!/usr/bin/env bash
# Runs Switchyard's GPU programs on the device machine from .gpu/bundle.tar.gz (made by
# scripts/gpu-bundle.sh, which also documents the device-tool calls). From the repository root:
#   bash .gpu/run-on-device.sh check               GPU, unresolved libraries, gpu_bench --copy
#   bash .gpu/run-on-device.sh tests [PROGRAM...]  GPU test programs (default: all), plain runs
#   bash .gpu/run-on-device.sh sanitize [TOOL...]  compute-sanitizer (default: memcheck racecheck)
#                                                  on the kernel tests (SY_SANITIZE_TESTS: which)
#   bash .gpu/run-on-device.sh bench [STAGE...]    scripts/bench-gpu.sh with the bundle's programs
#   bash .gpu/run-on-device.sh exec CMD [ARG...]   any command in the bundle's environment
# GTEST_FILTER narrows the tests; SY_TEST_TIMEOUT (default 300 s) bounds each program. The bundle
# unpacks to /tmp/sy-bundle; SY_SOURCE_DIR points the tests at this repository copy (golden
# fixtures). Logs go to $OUT (brought back by the device tool), else /tmp/sy-out.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
dest=${SY_BUNDLE_DIR:-/tmp/sy-bundle}
if [[ ! -f $dest/.unpacked || $here/bundle.tar.gz -nt $dest/.unpacked ]]; then
  rm -rf "$dest" && mkdir -p "$dest" || exit 1
  tar -xzf "$here/bundle.tar.gz" -C "$dest" --strip-components=1 || exit 1
  touch "$dest/.unpacked"
fi
# shellcheck source=/dev/null
source "$dest/env.sh"
export SY_SOURCE_DIR=$repo
out=${OUT:-/tmp/sy-out}
mkdir -p "$out"
mode=${1:-check}
shift || true
limit=${SY_TEST_TIMEOUT:-300}
summary=()
total_failed=0

# Runs "$@" under a timeout, appends its output to $log, and records a summary line from the
# gtest and compute-sanitizer totals.
run_logged() {
  local label=$1
  shift
  local tmp rc t0=$SECONDS
  tmp=$(mktemp)
  echo "=== $label: $*" >>"$log"
  timeout -k 10 "$limit" "$@" >"$tmp" 2>&1
  rc=$?
  cat "$tmp" >>"$log"
  local passed failed skipped errors
  passed=$(grep -oP '^\[  PASSED  \] \K[0-9]+' "$tmp" | tail -n 1)
  failed=$(grep -oP '^\[  FAILED  \] \K[0-9]+(?= tests?,)' "$tmp" | tail -n 1)
  skipped=$(grep -oP '^\[  SKIPPED \] \K[0-9]+(?= tests?,)' "$tmp" | tail -n 1)
  errors=$(grep -oP 'ERROR SUMMARY: \K[0-9]+' "$tmp" | tail -n 1)
  rm -f "$tmp"
  local line
  line=$(printf '%-44s rc %-3s %4s passed %3s failed %3s skipped %s %4ss' "$label" "$rc" \
    "${passed:-0}" "${failed:-0}" "${skipped:-0}" "${errors:+ sanitizer errors $errors}" \
    $((SECONDS - t0)))
  [[ $rc -eq 124 || $rc -eq 137 ]] && line+="  TIMED OUT"
  summary+=("$line")
  echo "$line"
  [[ $rc -eq 0 ]] || total_failed=$((total_failed + 1))
}

test_programs() {
  local p
  if [[ $# -gt 0 ]]; then
    for p in "$@"; do echo "$SY_BUNDLE/bin/$p"; done
  else
    for p in "$SY_BUNDLE"/bin/cuda_*_test; do echo "$p"; done
  fi
}

case $mode in
  check)
    log=$out/check.log
    : >"$log"
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L 2>&1 | tee -a "$log"; fi
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" | tee -a "$log"
    for p in "$SY_BUNDLE"/bin/*; do
      unresolved=$(ldd "$p" | grep 'not found')
      if [[ -n $unresolved ]]; then
        printf 'UNRESOLVED in %s:\n%s\n' "$(basename "$p")" "$unresolved" | tee -a "$log"
        total_failed=$((total_failed + 1))
      fi
    done
    ldd "$SY_BUNDLE/bin/gpu_bench" | grep -E 'cudart|cublas|nccl' | tee -a "$log"
    gpu_bench --copy --json "$out/copy.json" 2>&1 | tee -a "$log"
    ;;
  tests)
    log=$out/tests.log
    : >"$log"
    while read -r p; do run_logged "$(basename "$p")" "$p"; done < <(test_programs "$@")
    ;;
  sanitize)
    log=$out/sanitize.log
    : >"$log"
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer \
      /opt/nvidia/*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -n 1)
    if [[ -z $cs ]]; then
      echo "run-on-device: compute-sanitizer not found" | tee -a "$log"
      exit 1
    fi
    tools=("$@")
    [[ ${#tools[@]} -gt 0 ]] || tools=(memcheck racecheck)
    read -r -a targets <<<"${SY_SANITIZE_TESTS:-cuda_elementwise_test cuda_moe_routing_test cuda_attention_test cuda_gemm_test cuda_latent_attention_test cuda_quant_gemm_test}"
    for tool in "${tools[@]}"; do
      while read -r p; do
        run_logged "$tool $(basename "$p")" "$cs" --tool "$tool" --error-exitcode 99 \
          --print-limit 20 "$p"
      done < <(test_programs "${targets[@]}")
    done
    ;;
  bench)
    exec bash "$repo/scripts/bench-gpu.sh" "$@"
    ;;
  exec)
    exec "$@"
    ;;
  *)
    echo "run-on-device: unknown mode $mode (check, tests, sanitize, bench, exec)" >&2
    exit 2
    ;;
esac
if [[ ${#summary[@]} -gt 0 ]]; then
  echo
  echo "summary ($log):"
  printf '  %s\n' "${summary[@]}"
  echo "programs: $((${#summary[@]} - total_failed)) ok, $total_failed failed"
fi
[[ $total_failed -eq 0 ]]
EOF
chmod +x "$root/run-on-device.sh"

{
  echo "switchyard GPU bundle, made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "source: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + local changes')"
  echo "build dirs: ${dirs[*]}"
  echo "external (found on the device): $(tr '\n' ' ' <"$root/external-libs.txt")"
  (cd "$root" && find bin lib -type f -printf '%s\t%p\n' | sort -k2)
} >"$root/MANIFEST.txt"

mkdir -p .gpu
tar -czf .gpu/bundle.tar.gz -C "$stage" sy-bundle
cp "$root/run-on-device.sh" .gpu/run-on-device.sh
bundle_bytes=$(stat -c %s .gpu/bundle.tar.gz)
repo_bytes=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -n 1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "gpu-bundle: ${#programs[@]} programs, ${#libs[@]} libraries," \
  "$(mib "$(du -sb "$root" | cut -f1)") unpacked"
echo "gpu-bundle: .gpu/bundle.tar.gz $(mib "$bundle_bytes"); with the repository" \
  "($(mib "$repo_bytes")) the carried tree is $(mib $((bundle_bytes + repo_bytes))) of 64 MiB"
if git check-ignore -q .gpu/bundle.tar.gz; then :; else
  echo "gpu-bundle: warning: .gpu/ is not git-ignored (add /.gpu/ to .gitignore)" >&2
fi
if ((bundle_bytes + repo_bytes > 60 * 1048576)); then
  echo "gpu-bundle: warning: too close to the device tool's 64 MiB limit" >&2
fi
