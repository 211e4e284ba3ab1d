#!/usr/bin/env bash
# End-to-end expert-parallel benchmark on CPU (docs/benchmarks.md): a Qwen3-MoE-shaped
# make-model checkpoint (hidden 512, 8 layers, 64 experts top-8) whose router is skewed toward a
# Zipf popularity, served by N Gloo ranks (default 4) with
#   A. the contiguous placement (16 experts per rank, 2 spare slots left empty),
#   B. a placement planned by `switchyard plan --strategy ilp` from the routing trace A recorded
#      (replicas of hot experts in the spare slots),
#   C. the same model with another skew order (the hot experts moved), served with B's now
#      stale placement, without and with live rebalancing.
# Each phase runs `switchyard bench` closed-loop (128-token prompts, 64 output tokens) and reads
# the rank imbalance from /admin/routing and the mean step time from /metrics.
# Usage: scripts/bench-ep.sh [ranks] [concurrency]   (results in out/bench-ep/)
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=${1:-4}
conc=${2:-32}
bin=./build/server/switchyard
out=out/bench-ep/r$ranks
mkdir -p "$out"
[[ -x $bin ]] || bash scripts/build.sh
shape=(--preset qwen3-30b-a3b --dtype bf16 --set hidden_size=512 --set num_hidden_layers=8
  --set num_experts=64 --set num_experts_per_tok=8 --set moe_intermediate_size=256
  --set num_attention_heads=8 --set num_key_value_heads=2 --set head_dim=64
  --set vocab_size=8192 --set max_position_embeddings=4096 --router-skew 1.0)
for seed in 1 2; do
  if [[ ! -f models/ep-bench-s$seed/config.json ]]; then
    $bin make-model "${shape[@]}" --seed 1 --router-skew-seed $seed --out models/ep-bench-s$seed
  fi
done
slots=$((64 / ranks + 2))
port=18124

serve() {
  local model=$1 tag=$2
  shift 2
  $bin serve --model "$model" --port $port --grpc-port 0 --ep-size "$ranks" --threads 1 \
    --admin-api-key bench \
    --expert-slots-per-rank $slots --max-num-batched-tokens 512 --max-num-seqs 64 \
    "$@" >"$out/$tag.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "server did not become ready"; cat "$out/$tag.log"; exit 1
}
stop() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
bench=($bin bench --url "http://127.0.0.1:$port" --input-len 128 --output-len 64 --ignore-eos
  --range-ratio 0 --vocab-size 8000 --seed 1 --concurrency "$conc")

# Routing and metrics are cumulative; each phase reads them before and after its bench.
run_phase() {
  local tag=$1
  curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$port/admin/routing" >"$out/$tag.routing0.json"
  curl -s "http://127.0.0.1:$port/metrics" >"$out/$tag.metrics0.txt"
  "${bench[@]}" --num-prompts $((2 * conc)) --result-json "$out/$tag.json" >"$out/$tag.txt"
  curl -s -H "Authorization: Bearer bench" "http://127.0.0.1:$port/admin/routing" >"$out/$tag.routing1.json"
  curl -s "http://127.0.0.1:$port/metrics" >"$out/$tag.metrics1.txt"
}

serve models/ep-bench-s1 A --record-routing "$out/trace-s1.json" --record-routing-steps 32
"${bench[@]}" --num-prompts 8 >/dev/null  # warm-up
run_phase A
stop
# The cost model with this machine's numbers: a rank is one core (~17 GB/s of the 2-core VM's
# 35 GB/s, ~0.1 TFLOP/s in the bf16 matmul tile), a decode step carries `conc` tokens.
$bin plan --trace "$out/trace-s1.json" --ranks "$ranks" --slots-per-rank $slots --strategy ilp \
  --model models/ep-bench-s1 --bandwidth-gbs 17 --tflops 0.1 --batch-tokens "$conc" \
  --time-limit 5 -o "$out/placement-s1.json" >"$out/plan.txt"

serve models/ep-bench-s1 B --placement "$out/placement-s1.json"
"${bench[@]}" --num-prompts 8 >/dev/null
run_phase B
stop

serve models/ep-bench-s2 C-stale --placement "$out/placement-s1.json"
"${bench[@]}" --num-prompts 8 >/dev/null
run_phase C-stale
stop

serve models/ep-bench-s2 C-rebalance --placement "$out/placement-s1.json" \
  --rebalance-interval 2 --rebalance-strategy ilp --rebalance-time-limit 1
"${bench[@]}" --num-prompts 8 >/dev/null
run_phase C-during
run_phase C-after
stop

python3 - "$out" "$ranks" "$conc" <<'PY'
import json, re, sys
out, ranks, conc = sys.argv[1:]

def metric(tag, i, name):
    text = open(f"{out}/{tag}.metrics{i}.txt").read()
    m = re.search(r"^" + name + r"\{[^}]*\} (\S+)", text, re.M)
    return float(m[1]) if m else 0.0

def delta(tag, name):
    return metric(tag, 1, name) - metric(tag, 0, name)

def rank_imbalance(tag):
    """Mean over MoE layers of max/mean rank pairs during the phase."""
    a = json.load(open(f"{out}/{tag}.routing0.json"))["cumulative"]["rank_pairs"]
    b = json.load(open(f"{out}/{tag}.routing1.json"))["cumulative"]["rank_pairs"]
    ratios = []
    for la, lb in zip(a, b):
        d = [y - x for x, y in zip(la, lb)]
        ratios.append(max(d) / (sum(d) / len(d)))
    return sum(ratios) / len(ratios)

print(f"{ranks} Gloo ranks, 1 thread each, {conc} concurrent streams, 128-token prompts, "
      f"64 output tokens")
print(f"{'phase':<12} {'out tok/s':>9} {'step ms':>8} {'rank max/mean':>13} "
      f"{'ITL p50':>8} {'ITL p99':>8} {'moved':>6}")
rows = {}
for tag in ["A", "B", "C-stale", "C-during", "C-after"]:
    b = json.load(open(f"{out}/{tag}.json"))
    step = delta(tag, "switchyard_engine_step_seconds_sum") / delta(
        tag, "switchyard_engine_step_seconds_count")
    moved = delta(tag, "switchyard_ep_experts_moved_total")
    rows[tag] = dict(tok_s=b["output_throughput"], step_ms=1e3 * step,
                     rank_imbalance=rank_imbalance(tag), itl_p50=b["median_itl_ms"],
                     itl_p99=b["p99_itl_ms"], moved=moved)
    x = rows[tag]
    print(f"{tag:<12} {x['tok_s']:9.1f} {x['step_ms']:8.2f} {x['rank_imbalance']:13.3f} "
          f"{x['itl_p50']:8.1f} {x['itl_p99']:8.1f} {int(moved):6d}")
print(json.dumps(rows))
PY
