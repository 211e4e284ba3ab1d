#!/usr/bin/env bash
# GPU benchmarks (docs/benchmarks.md), run on the GPU machine: the copy roofline, the MoE layer
# alone, decode and prefill of OLMoE-1B-7B and Qwen3-30B-A3B (random weights), Switchyard against
# Hugging Face transformers on 4-layer make-model checkpoints of both shapes, and serving
# Qwen3-30B-A3B to 1..128 concurrent streams with `switchyard bench`.
#
#   scripts/bench-gpu.sh [--build DIR | --bundle FILE.tar.gz] [STAGE...]
#
# Programs: from --build DIR; else from the bundle already set up by .gpu/run-on-device.sh
# (`bash .gpu/run-on-device.sh bench STAGE...`, the usual way on the device); else from --bundle
# or .gpu/bundle.tar.gz (scripts/gpu-bundle.sh); else from build/.
# Stages, in the order given (default: all, as listed); each command has a timeout so that a few
# stages fit in one 10-minute device call:
#   copy          gpu_bench --copy                                              (~10 s)
#   moe           gpu_bench --moe, both shapes, 1..2048 tokens                  (~1 min)
#   quant         gpu_bench --quant: int8/int4/fp8 quantized_matmul, 1..512 rows (~1 min)
#   decode-olmoe  gpu_bench --decode (batch 1, 8, 32, 128) --prefill, random    (~2 min)
#   decode-qwen3  the same for qwen3-30b-a3b (61 GB of bf16 weights)           (~3 min)
#   hf-olmoe      make-model 4 layers, gpu_bench --decode on it, hf_baseline.py (~3 min)
#   hf-qwen3      the same for qwen3-30b-a3b                                    (~4 min)
#   serve         switchyard serve --device cuda (qwen3, random) + bench at 1, 8, 32, 128 (~5 min)
#   summary       only the tables (every stage ends with them anyway)
# Results: each stage's JSON and logs in $SY_BENCH_DIR (default /tmp/sy-bench: it lasts as long
# as the machine); after every run all of them are merged into $OUT/bench-gpu.json, with the log
# in $OUT/bench-gpu.log (OUT defaults to out/bench-gpu).
set -uo pipefail
cd "$(dirname "$0")/.." || exit
repo=$PWD
build=
bundle=
while [[ $# -gt 0 ]]; do
  case $1 in
    --build) build=$2 && shift 2 ;;
    --bundle) bundle=$2 && shift 2 ;;
    *) break ;;
  esac
done
stages=("$@")
[[ ${#stages[@]} -gt 0 ]] ||
  stages=(copy moe quant decode-olmoe decode-qwen3 hf-olmoe hf-qwen3 serve)

if [[ -n $build ]]; then
  sy=$build/server/switchyard
  gb=$build/tests/bench/gpu_bench
else
  [[ -z $bundle && -z ${SY_BUNDLE:-} && -f .gpu/bundle.tar.gz ]] && bundle=.gpu/bundle.tar.gz
  if [[ -n $bundle ]]; then
    export SY_BUNDLE_DIR=${SY_BUNDLE_DIR:-/tmp/sy-bundle}
    rm -rf "$SY_BUNDLE_DIR" && mkdir -p "$SY_BUNDLE_DIR" &&
      tar -xzf "$bundle" -C "$SY_BUNDLE_DIR" --strip-components=1 || exit 1
    touch "$SY_BUNDLE_DIR/.unpacked"
    # shellcheck source=/dev/null
    source "$SY_BUNDLE_DIR/env.sh"
  fi
  if [[ -n ${SY_BUNDLE:-} ]]; then
    sy=$SY_BUNDLE/bin/switchyard
    gb=$SY_BUNDLE/bin/gpu_bench
  else
    sy=build/server/switchyard
    gb=build/tests/bench/gpu_bench
  fi
fi
for p in "$sy" "$gb"; do
  [[ -x $p ]] || { echo "bench-gpu: no $p" >&2 && exit 1; }
done

w=${SY_BENCH_DIR:-/tmp/sy-bench}
models=${SY_BENCH_MODELS:-/tmp/sy-models}
out=${OUT:-$repo/out/bench-gpu}
mkdir -p "$w" "$models" "$out"
log=$w/bench.log
export PYTHONUNBUFFERED=1
failed=0

# Runs "$@" under a timeout (seconds in $1), its output to the terminal and the log.
step() {
  local limit=$1
  shift
  echo "+ $*" | tee -a "$log"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then
    echo "bench-gpu: exit $rc from $1" | tee -a "$log"
    failed=$((failed + 1))
  fi
  return "$rc"
}

# Switchyard and transformers decoding the same 4-layer make-model checkpoint of the preset's
# shape (made once per machine, in bf16).
hf_stage() {
  local preset=$1 tag=$2 dir=$models/$1-4l
  if [[ ! -f $dir/config.json ]]; then
    rm -rf "$dir" "$dir.tmp"
    step 300 "$sy" make-model --preset "$preset" --dtype bf16 --set num_hidden_layers=4 \
      --seed 1 --out "$dir.tmp" || return
    mv "$dir.tmp" "$dir"
  fi
  step 300 "$gb" --decode --model "$dir" --batches 1,32 --context 512 --steps 64 \
    --json "$w/hf-$tag-switchyard.json"
  step 300 python3 scripts/hf_baseline.py "$dir" --batches 1,32 --context 512 --steps 64 \
    --json "$w/hf-$tag-transformers.json"
}

port=18130
serve_stage() {
  local server_log=$w/serve.log c n
  "$sy" serve --device cuda --model preset:qwen3-30b-a3b --random-weights --port $port \
    --grpc-port 0 --max-num-seqs 128 --max-num-batched-tokens 2048 --max-model-len 4096 \
    >"$server_log" 2>&1 &
  server_pid=$!
  trap 'kill -TERM "$server_pid" 2>/dev/null' EXIT
  local ready=0
  for _ in $(seq 300); do
    if python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health/ready', timeout=1)" \
      2>/dev/null; then
      ready=1
      break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 1
  done
  if [[ $ready -ne 1 ]]; then
    echo "bench-gpu: the server did not become ready" | tee -a "$log"
    tail -n 30 "$server_log" | tee -a "$log"
    kill -TERM "$server_pid" 2>/dev/null
    failed=$((failed + 1))
    return 1
  fi
  local bench=("$sy" bench --url "http://127.0.0.1:$port" --input-len 512 --output-len 128
    --ignore-eos --range-ratio 0 --vocab-size 150000 --seed 1)
  step 120 "${bench[@]}" --concurrency 4 --num-prompts 8 >/dev/null # warm-up
  for c in 1 8 32 128; do
    n=$((c < 8 ? 8 : 2 * c))
    step 240 "${bench[@]}" --concurrency "$c" --num-prompts "$n" --result-json "$w/serve-c$c.json"
  done
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null
  grep -iE "cuda backend|KV cache|graphs" "$server_log" | head -n 5 | tee -a "$log"
}

for stage in "${stages[@]}"; do
  echo "=== stage $stage ($(date -u +%H:%M:%S))" | tee -a "$log"
  case $stage in
    copy) step 120 "$gb" --copy --json "$w/copy.json" ;;
    moe) step 400 "$gb" --moe --json "$w/moe.json" ;;
    quant) step 300 "$gb" --quant --json "$w/quant.json" ;;
    decode-olmoe | decode-qwen3)
      preset=${stage#decode-}
      [[ $preset == olmoe ]] && preset=olmoe-1b-7b || preset=qwen3-30b-a3b
      step 500 "$gb" --decode --prefill --model "preset:$preset" --batches 1,8,32,128 \
        --context 512 --steps 64 --prompt 2048 --json "$w/$stage.json"
      ;;
    hf-olmoe) hf_stage olmoe-1b-7b olmoe ;;
    hf-qwen3) hf_stage qwen3-30b-a3b qwen3 ;;
    serve) serve_stage ;;
    summary) ;;
    *) echo "bench-gpu: unknown stage $stage" | tee -a "$log" && failed=$((failed + 1)) ;;
  esac
done

# Tables from every result on this machine so far, and all of them merged into one JSON.
python3 - "$w" "$out/bench-gpu.json" <<'PY' | tee -a "$log"
import json, os, sys

w, merged_path = sys.argv[1:]
res = {}
for name in sorted(os.listdir(w)):
    if name.endswith(".json"):
        try:
            res[name[:-5]] = json.load(open(os.path.join(w, name)))
        except ValueError as e:
            print(f"{name}: unreadable ({e})")
json.dump(res, open(merged_path, "w"), indent=1)
copy_gbs = res.get("copy", {}).get("copy", {}).get("bandwidth_gbs")
dev = next((r["device"] for r in res.values() if isinstance(r, dict) and "device" in r), "?")
print(f"\n==== summary ({dev})")
if copy_gbs:
    print(f"copy roofline: {copy_gbs:.0f} GB/s (read + written)")
for shape in res.get("moe", {}).get("moe", []):
    print(f"\nMoE layer {shape['shape']} (bf16): tokens, active experts, graph us, GB/s, TFLOP/s"
          f" | eager us")
    for r in shape["rows"]:
        print(f"  {r['tokens']:>5} {r['active_experts']:>4} {r['graph_us']:>9.1f} "
              f"{r['graph_gbs']:>7.0f} {r['graph_tflops']:>7.1f} | {r['eager_us']:>9.1f}")
for tag in ("decode-olmoe", "decode-qwen3"):
    r = res.get(tag)
    if not r or "decode" not in r:
        continue
    d = r["decode"]
    print(f"\n{tag}: context {d['context']}, graphs {d['graphs']}, KV {d['kv_dtype']}")
    print(f"  {'batch':>5} {'step ms':>8} {'tok/s':>9} {'MB/step':>8} {'GB/s':>7} {'of copy':>7}")
    for x in d["rows"]:
        print(f"  {x['batch']:>5} {x['step_ms_median']:>8.3f} {x['tok_s']:>9.1f} "
              f"{x['bytes_per_step'] / 1e6:>8.1f} {x['achieved_gbs']:>7.0f} "
              f"{100 * x['fraction_of_copy']:>6.1f}%")
    if "prefill" in r:
        p = r["prefill"]
        print(f"  prefill {p['prompt']} tokens: {p['tok_s']:.0f} tok/s, {p['tflops']:.0f} TFLOP/s")
for tag in ("olmoe", "qwen3"):
    s, h = res.get(f"hf-{tag}-switchyard"), res.get(f"hf-{tag}-transformers")
    if not s or not h or "decode" not in s:
        continue
    print(f"\n{tag} 4 layers vs transformers {h['transformers']} (experts "
          f"{h['experts_implementation']}, attention {h['attn_implementation']}):")
    hrows = {x["batch"]: x for x in h["rows"]}
    for x in s["decode"]["rows"]:
        y = hrows.get(x["batch"])
        if y:
            print(f"  batch {x['batch']:>3}: switchyard {x['tok_s']:>9.1f} tok/s "
                  f"({x['step_ms_median']:.2f} ms), transformers {y['tok_s']:>9.1f} tok/s "
                  f"({y['step_ms_median']:.2f} ms): {x['tok_s'] / y['tok_s']:.2f}x")
rows = [(c, res[f"serve-c{c}"]) for c in (1, 8, 32, 128) if f"serve-c{c}" in res]
if rows:
    print("\nserving qwen3-30b-a3b (random weights), 512-token prompts, 128 output tokens:")
    print(f"  {'streams':>7} {'out tok/s':>9} {'TTFT p50':>9} {'TPOT p50':>9} {'ITL p99':>8}")
    for c, r in rows:
        print(f"  {c:>7} {r['output_throughput']:>9.1f} {r['median_ttft_ms']:>7.0f}ms "
              f"{r['median_tpot_ms']:>7.2f}ms {r['p99_itl_ms']:>6.1f}ms")
print(f"\nall results: {merged_path}")
PY
cp "$log" "$out/bench-gpu.log"
echo "bench-gpu: $failed failed step(s)"
[[ $failed -eq 0 ]]
