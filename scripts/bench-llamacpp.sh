#!/usr/bin/env bash
# Switchyard vs llama.cpp on the CPU, same weights, one session (docs/benchmarks.md): builds
# llama.cpp from the llama-cpp-python sdist (which vendors llama.cpp, convert_hf_to_gguf.py and
# gguf-py) in a temporary folder, converts the make-model medium-mixtral f16 checkpoint to an f16
# GGUF with llama.cpp's own converter, quantizes it to Q8_0 and Q4_K_M with llama-quantize, then
# alternates llama-bench / llama-batched-bench and Switchyard's decode_bench (none, int8, int4).
# Prints a table and one JSON line. Nothing of llama.cpp is written into the repository.
#
# Usage: scripts/bench-llamacpp.sh [--keep] [--workdir DIR] [--torch-from PYTHON] [--threads N]
#                                  [--rounds N]
#   --rounds N        alternate all six runs N times (default 3); the table gives medians
#   --keep            keep the temporary folder (printed at the end)
#   --workdir DIR     use DIR as the work folder (kept; steps whose outputs exist are skipped)
#   --torch-from PY   let the converter's venv see torch/transformers/safetensors from the
#                     Python environment of PY instead of installing them (a .pth line, read-only)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
llama_cpp_python_version=0.3.36
threads=2
rounds=3
keep=0
work=""
torch_from=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --keep) keep=1 ;;
    --workdir) work=$2; keep=1; shift ;;
    --torch-from) torch_from=$2; shift ;;
    --threads) threads=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
bin=$repo/build/server/switchyard
bench=$repo/build/tests/bench/decode_bench
for b in "$bin" "$bench"; do
  [[ -x $b ]] || { echo "missing $b: build server/switchyard and tests/bench/decode_bench" >&2; exit 1; }
done
if [[ -z $work ]]; then work=$(mktemp -d /tmp/sy-bench-llamacpp.XXXXXX); fi
work=$(realpath -m "$work")
case $work/ in "$repo"/*) echo "the work folder must be outside the repository" >&2; exit 2 ;; esac
mkdir -p "$work"
cleanup() { if [[ $keep == 0 ]]; then rm -rf "$work"; else echo "kept $work"; fi; }
trap cleanup EXIT
log() { echo "[bench-llamacpp $(date -u +%H:%M:%S)] $*" >&2; }

# 1. A venv for pip, the llama.cpp sources from the llama-cpp-python sdist.
venv=$work/venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
py=$venv/bin/python
src=$work/llama.cpp
if [[ ! -f $src/CMakeLists.txt ]]; then
  log "downloading the llama-cpp-python $llama_cpp_python_version sdist"
  "$py" -m pip download --quiet --no-binary :all: --no-deps -d "$work/sdist" \
    "llama-cpp-python==$llama_cpp_python_version"
  tar -xzf "$work/sdist/llama_cpp_python-$llama_cpp_python_version.tar.gz" -C "$work/sdist"
  mv "$work/sdist/llama_cpp_python-$llama_cpp_python_version/vendor/llama.cpp" "$src"
  rm -rf "$work/sdist"
fi

# 2. llama-bench, llama-batched-bench and llama-quantize: CPU only, native, static.
lbin=$work/llama-build/bin
if [[ ! -x $lbin/llama-bench || ! -x $lbin/llama-quantize || ! -x $lbin/llama-batched-bench ]]; then
  log "building llama.cpp (nice, -j2)"
  nice -n 10 cmake -S "$src" -B "$work/llama-build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >"$work/llama-cmake.log"
  nice -n 10 cmake --build "$work/llama-build" -j2 \
    --target llama-bench llama-quantize llama-batched-bench >"$work/llama-build.log"
fi

# 3. The converter's Python requirements: the vendored gguf-py, numpy, torch, transformers.
if ! "$py" -c "import gguf, torch, transformers, safetensors, numpy" 2>/dev/null; then
  if [[ -n $torch_from ]]; then
    site=$("$torch_from" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "$site" >"$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/torch-from.pth"
  else
    "$py" -m pip install --quiet torch transformers safetensors numpy sentencepiece protobuf
  fi
  "$py" -m pip install --quiet "$src/gguf-py"
fi

# 4. The checkpoint, its f16 GGUF (llama.cpp's converter) and the Q8_0 / Q4_K_M quantizations.
model=$work/medium-mixtral-f16
[[ -f $model/config.json ]] ||
  "$bin" make-model --preset medium-mixtral --dtype f16 --seed 1 --out "$model" >/dev/null
# Our synthesized BPE tokenizer uses exactly Qwen2's pre-tokenizer (the same split regex, NFC,
# byte-level), but its vocabulary is its own, so the converter's fingerprint (a hash of the token
# ids of a fixed text) matches no model it knows and it refuses. The shim maps that one case to
# llama.cpp's "qwen2" pre-tokenizer, and only when the tokenizer.json's split regex is Qwen2's.
cat >"$work/convert_shim.py" <<'EOF'
import json, runpy, sys
from pathlib import Path
llama_dir = Path(sys.argv[1])
sys.path.insert(0, str(llama_dir))
from conversion import base  # noqa: E402
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
known = base.TextModel.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return known(self, tokenizer)
    except NotImplementedError:
        pre = json.loads((self.dir_model / "tokenizer.json").read_text())["pre_tokenizer"]
        splits = [p["pattern"]["Regex"] for p in pre.get("pretokenizers", [])
                  if p.get("type") == "Split"]
        if splits != [QWEN2_SPLIT]:
            raise
        print("convert_shim: unknown BPE fingerprint, Qwen2 split regex: pre-tokenizer qwen2")
        return "qwen2"
base.TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = [str(llama_dir / "convert_hf_to_gguf.py")] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
EOF
gguf_f16=$work/model-f16.gguf
if [[ ! -f $gguf_f16 ]]; then
  log "converting to f16 GGUF"
  nice -n 10 "$py" "$work/convert_shim.py" "$src" "$model" --outtype f16 \
    --outfile "$gguf_f16.part" >"$work/convert.log" 2>&1 || { tail -20 "$work/convert.log"; exit 1; }
  mv "$gguf_f16.part" "$gguf_f16"
fi
for q in Q8_0 Q4_K_M; do
  if [[ ! -f $work/model-$q.gguf ]]; then
    log "quantizing $q"
    nice -n 10 "$lbin/llama-quantize" "$gguf_f16" "$work/model-$q.gguf.part" "$q" "$threads" \
      >"$work/quantize-$q.log" 2>&1 || { tail -20 "$work/quantize-$q.log"; exit 1; }
    mv "$work/model-$q.gguf.part" "$work/model-$q.gguf"
  fi
done

# 5. One session, alternating: for each format pair, llama-bench (pp128, tg32), then
#    llama-batched-bench (16-token prompts, 32 decoded tokens, 1 and 8 sequences, as decode_bench's
#    batched rows), then decode_bench on the safetensors checkpoint.
res=$work/results
mkdir -p "$res"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$rounds"); do
  for pair in f16:none Q8_0:int8 Q4_K_M:int4; do
    theirs=${pair%%:*}
    ours=${pair##*:}
    log "round $round: llama-bench $theirs"
    "$lbin/llama-bench" -m "$work/model-$theirs.gguf" -p 128 -n 32 -t "$threads" -r 3 -o json \
      >"$res/llama-bench-$theirs-$round.json" 2>"$res/llama-bench-$theirs-$round.log"
    log "round $round: llama-batched-bench $theirs"
    "$lbin/llama-batched-bench" -m "$work/model-$theirs.gguf" -c 1024 -b 512 -ub 512 \
      -t "$threads" -npp 16 -ntg 32 -npl 1,8 --output-format jsonl \
      >"$res/batched-$theirs-$round.jsonl" 2>"$res/batched-$theirs-$round.log"
    log "round $round: decode_bench --quantization $ours"
    "$bench" --model "$model" --threads "$threads" --prompt-len 128 --decode 32 --batches 1,8 \
      --quantization "$ours" >"$res/decode-$ours-$round.txt" 2>&1
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# 6. The table and the JSON line. Weight bytes a decoded token reads from a GGUF: every tensor
#    once, except the experts (top_k of num_experts) and the embedding (one row).
"$py" - "$work" "$res" "$load_before" "$load_after" "$threads" "$rounds" <<'EOF'
import json, os, statistics, sys
from pathlib import Path
import gguf
work, res = Path(sys.argv[1]), Path(sys.argv[2])
cfg = json.loads((work / "medium-mixtral-f16" / "config.json").read_text())
top_k, experts, vocab = cfg["num_experts_per_tok"], cfg["num_local_experts"], cfg["vocab_size"]

def gguf_bytes(path):
    reader = gguf.GGUFReader(path)
    params = sum(int(t.n_elements) for t in reader.tensors)
    active = 0.0
    for t in reader.tensors:
        share = top_k / experts if "_exps" in t.name else 1 / vocab if t.name == "token_embd.weight" else 1
        active += int(t.n_bytes) * share
    return params, active

rows = []
for theirs, ours in (("f16", "none"), ("Q8_0", "int8"), ("Q4_K_M", "int4")):
    path = work / f"model-{theirs}.gguf"
    params, active = gguf_bytes(path)
    runs = []
    for n in range(1, int(sys.argv[6]) + 1):
        lb = json.loads((res / f"llama-bench-{theirs}-{n}.json").read_text())
        batched = {}
        for line in (res / f"batched-{theirs}-{n}.jsonl").read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                batched[r["pl"]] = r["speed_tg"]
        decode = json.loads((res / f"decode-{ours}-{n}.txt").read_text().strip().splitlines()[-1])
        ob = {b["batch"]: b["decode_tok_s"] for b in decode["batched"]}
        runs.append({
            "ours_prefill_tok_s": decode["prefill_tok_s"],
            "theirs_prefill_tok_s": next(r["avg_ts"] for r in lb
                                         if r["n_prompt"] > 0 and r["n_gen"] == 0),
            "ours_decode_1_tok_s": decode["decode_tok_s"],
            "theirs_decode_1_tok_s": next(r["avg_ts"] for r in lb
                                          if r["n_gen"] > 0 and r["n_prompt"] == 0),
            "ours_batch1_tok_s": ob[1], "theirs_batch1_tok_s": batched[1],
            "ours_batch8_tok_s": ob[8], "theirs_batch8_tok_s": batched[8],
            "ours_bytes_per_token": decode["bytes_per_token"],
            "read_bandwidth_gbs": decode["read_bandwidth_gbs"]})
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    spread = {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in runs[0]}
    rows.append({"ours": ours, "theirs": theirs, **median, "range": spread,
                 "theirs_weight_bytes_per_token": active,
                 "theirs_file_bits_per_weight": os.path.getsize(path) * 8 / params})

def ratio(a, b):
    return f"{a / b:5.2f}" if a and b else "  n/a"

print(f"\nSwitchyard vs llama.cpp, medium-mixtral (f16 checkpoint), {sys.argv[5]} threads, "
      f"median of {sys.argv[6]} rounds (tok/s); load {sys.argv[3]} -> {sys.argv[4]}")
print(f"{'format':16} {'prefill128':>22} {'decode 1 (tg32)':>22} {'batch 1 (pp16+32)':>22} "
      f"{'batch 8 (pp16+32)':>22} {'MB/token':>16} {'GGUF bpw':>8}")
print(f"{'ours / theirs':16} " + " ".join(f"{'ours  theirs  ratio':>22}" for _ in range(4)) +
      f" {'ours  theirs':>16}")
for r in rows:
    cells = []
    for k in ("prefill", "decode_1", "batch1", "batch8"):
        a, b = r[f"ours_{k}_tok_s"], r[f"theirs_{k}_tok_s"]
        cells.append(f"{a or 0:6.1f} {b or 0:7.1f} {ratio(a, b):>7}")
    print(f"{r['ours'] + ' / ' + r['theirs']:16} " + " ".join(f"{c:>22}" for c in cells) +
          f" {r['ours_bytes_per_token'] / 1e6:7.1f} {r['theirs_weight_bytes_per_token'] / 1e6:8.1f}"
          f" {r['theirs_file_bits_per_weight']:8.2f}")
print(json.dumps({"bench": "llamacpp", "threads": int(sys.argv[5]),
                  "rounds": int(sys.argv[6]), "load_before": sys.argv[3],
                  "load_after": sys.argv[4], "rows": rows}))
EOF
