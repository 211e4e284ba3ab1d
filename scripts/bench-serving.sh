#!/usr/bin/env bash
# CPU serving benchmark (docs/benchmarks.md): serves the medium Mixtral-shaped make-model
# checkpoint (hidden 1024, 8 layers, 8 experts top-2) and drives it with `switchyard bench` at
# 1, 4, 8, 16 and 64 concurrent streams (128-token prompts, 64 output tokens, ignore_eos), then
# offers 2x the sustainable request rate against a short queue to show overload behaviour.
# Usage: scripts/bench-serving.sh [dtype: bf16|f16] [threads] [quantization: none|int8|fp8]
# (results in out/bench-serving/DTYPE, or DTYPE-int8 / DTYPE-fp8 when quantized at load)
set -euo pipefail
cd "$(dirname "$0")/.."
dtype=${1:-bf16}
threads=${2:-$(nproc)}
quantization=${3:-none}
bin=./build/server/switchyard
model=models/medium-mixtral-${dtype}
out=out/bench-serving/${dtype}
[[ $quantization == none ]] || out=${out}-${quantization}
mkdir -p "$out"
[[ -x $bin ]] || bash scripts/build.sh
if [[ ! -f $model/config.json ]]; then
  $bin make-model --preset medium-mixtral --dtype "$dtype" --seed 1 --out "$model"
fi
port=18123

serve() {
  $bin serve --model "$model" --port $port --grpc-port 0 --threads "$threads" \
    --max-num-batched-tokens 512 --quantization "$quantization" "$@" >>"$out/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "server did not become ready"; cat "$out/serve.log"; exit 1
}
stop() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
trap 'kill "$server_pid" 2>/dev/null || true' EXIT

rm -f "$out/serve.log"
serve --max-num-seqs 64
bench=($bin bench --url "http://127.0.0.1:$port" --input-len 128 --output-len 64 --ignore-eos
  --range-ratio 0 --vocab-size 30000 --seed 1)
"${bench[@]}" --concurrency 2 --num-prompts 4 >/dev/null  # warm-up
for c in 1 4 8 16 64; do
  n=$((c < 8 ? 8 : 2 * c))
  "${bench[@]}" --concurrency "$c" --num-prompts "$n" --result-json "$out/c$c.json" >"$out/c$c.txt"
done
stop

# Overload: a queue of 8 and twice the request rate that 8 streams sustained.
rate=$(python3 -c "import json; print(2 * json.load(open('$out/c8.json'))['request_throughput'])")
serve --max-queued-requests 8 --max-num-seqs 8
"${bench[@]}" --request-rate "$rate" --num-prompts 64 --result-json "$out/overload.json" \
  >"$out/overload.txt" || true
# Recovery: the same server at a sustainable rate afterwards.
"${bench[@]}" --concurrency 4 --num-prompts 8 --result-json "$out/recovered.json" \
  >"$out/recovered.txt"
stop

python3 - "$out" "$dtype" "$threads" <<'PY'
import json, sys
out, dtype, threads = sys.argv[1:]
print(f"medium-mixtral {dtype}, {threads} threads, 128-token prompts, 64 output tokens")
print(f"{'streams':>7} {'out tok/s':>9} {'req/s':>6} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p50':>9} {'ITL p99':>8}")
base = None
for c in (1, 4, 8, 16, 64):
    r = json.load(open(f"{out}/c{c}.json"))
    base = base or r["output_throughput"]
    print(f"{c:>7} {r['output_throughput']:>9.1f} {r['request_throughput']:>6.2f} "
          f"{r['median_ttft_ms']:>7.0f}ms {r['p99_ttft_ms']:>7.0f}ms {r['median_tpot_ms']:>7.1f}ms "
          f"{r['p99_itl_ms']:>6.0f}ms   x{r['output_throughput'] / base:.2f}")
o = json.load(open(f"{out}/overload.json"))
r = json.load(open(f"{out}/recovered.json"))
print(f"overload at 2x the 8-stream rate: {o['completed']} completed, {o['failed']} rejected; "
      f"admitted TTFT p99 {o['p99_ttft_ms']:.0f} ms, E2E p99 {o['p99_e2el_ms']:.0f} ms")
print(f"afterwards at 4 streams: {r['completed']} completed, {r['failed']} failed, "
      f"TTFT p50 {r['median_ttft_ms']:.0f} ms")
PY
