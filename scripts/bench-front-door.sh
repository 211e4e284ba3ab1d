#!/usr/bin/env bash
# Front-door benchmark (docs/benchmarks.md "HTTP front door"): two `switchyard` binaries, one after
# the other, on the same tiny model (so the HTTP server, not the model, is what is measured):
#   1. requests/s of 1-token completions over keep-alive connections (32 clients);
#   2. output tokens/s of `switchyard bench` at 1, 8 and 64 streams (128-token prompts, 64 out);
#   3. for the first binary only: the soak (scripts/soak.py) with N concurrent streams, 200 slow
#      clients and a 500-client cancel storm: health latency under load and memory per stream.
# The bench client is always the first binary's. Results in out/bench-front-door/.
# Usage: scripts/bench-front-door.sh NEW_BIN [OLD_BIN] [soak streams, default 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
new=$1
old=${2:-}
streams=${3:-2000}
out=out/bench-front-door
mkdir -p "$out"
model=$out/tiny-qwen3-moe
[[ -f $model/config.json ]] || "$new" make-model --preset tiny-qwen3-moe --seed 11 --out "$model"
port=18124
py=python3
[[ -x .venv-test/bin/python ]] && py=.venv-test/bin/python

serve() {
  local bin=$1 tag=$2
  "$bin" serve --model "$model" --served-model-name tiny --port $port --grpc-port 0 --threads 1 \
    --max-queued-requests 8192 --max-num-seqs 256 --max-num-batched-tokens 2048 \
    --disable-access-log >"$out/$tag.serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "server did not become ready"; cat "$out/$tag.serve.log"; exit 1
}
stop() { kill -TERM "$server_pid"; wait "$server_pid" || true; }
trap 'kill "$server_pid" 2>/dev/null || true' EXIT

bench() {
  "$new" bench --url "http://127.0.0.1:$port" --model tiny --ignore-eos --vocab-size 1000 \
    --seed 1 --json "$@" 2>/dev/null
}

run() {
  local bin=$1 tag=$2
  serve "$bin" "$tag"
  bench --input-len 8 --output-len 1 --concurrency 32 --num-prompts 200 >/dev/null  # warm-up
  bench --input-len 8 --output-len 1 --concurrency 32 --num-prompts 3000 >"$out/$tag.rps.json"
  for c in 1 8 64; do
    bench --input-len 128 --output-len 64 --concurrency $c --num-prompts $((c < 4 ? 8 : 4 * c)) \
      >"$out/$tag.c$c.json"
  done
  if [[ $tag == new ]]; then
    $py scripts/soak.py --url "http://127.0.0.1:$port" --pid "$server_pid" --streams "$streams" \
      --slow 200 --cancel 500 --max-tokens 8 --json "$out/soak.json" >"$out/soak.txt"
  fi
  stop
}

run "$new" new
[[ -n $old ]] && run "$old" old

$py - "$out" "$old" <<'EOF'
import json, sys
out, old = sys.argv[1], sys.argv[2]
tags = ["new"] + (["old"] if old else [])
load = lambda t, n: json.load(open(f"{out}/{t}.{n}.json"))
print(f"{'':34s}" + "".join(f"{t:>12s}" for t in tags) + ("       new/old" if old else ""))
rows = [("1-token requests/s (32 clients)", "rps", "request_throughput")]
rows += [(f"output tok/s, {c} streams", f"c{c}", "output_throughput") for c in (1, 8, 64)]
for label, name, key in rows:
    vals = [load(t, name)[key] for t in tags]
    ratio = f"{vals[0] / vals[1]:14.2f}" if old else ""
    print(f"{label:34s}" + "".join(f"{v:12.1f}" for v in vals) + ratio)
soak = json.load(open(f"{out}/soak.json"))
print("soak (new):", json.dumps(soak))
EOF
