#!/usr/bin/env bash
# The switchyard CLI end to end: make-model writes a checkpoint, generate streams text from it
# and reports speed, and bad input gets a clear message and a non-zero exit.
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$bin" make-model --list-presets | grep -qx "qwen3-30b-a3b" || fail "preset list"
"$bin" make-model --arch olmoe --seed 5 --dtype f16 --out "$work/m" 2>/dev/null
[[ -f "$work/m/config.json" && -f "$work/m/model.safetensors" && -f "$work/m/tokenizer.json" ]] ||
  fail "make-model files"

"$bin" generate --model "$work/m" --prompt "Hello there" --max-tokens 12 --seed 3 --ignore-eos \
  >"$work/out1" 2>"$work/err1"
"$bin" generate --model "$work/m" --prompt "Hello there" --max-tokens 12 --seed 3 --ignore-eos \
  >"$work/out2" 2>/dev/null
grep -q "generated 12 tokens (length)" "$work/err1" || fail "summary: $(cat "$work/err1")"
grep -q "tok/s decode" "$work/err1" || fail "speed summary"
cmp -s "$work/out1" "$work/out2" || fail "same seed gave different text"

if "$bin" generate --model "$work/none" --prompt hi 2>"$work/err3"; then fail "missing model"; fi
grep -q "NotFound" "$work/err3" || fail "missing model message: $(cat "$work/err3")"
if "$bin" generate --model "$work/m" --prompt hi --top-p 2 2>"$work/err4"; then fail "top-p 2"; fi
grep -q "top_p" "$work/err4" || fail "top_p message: $(cat "$work/err4")"
if "$bin" make-model --arch llama --out "$work/x" 2>"$work/err5"; then fail "bad arch"; fi
grep -q "unknown --arch" "$work/err5" || fail "bad arch message"
echo "1 passed, 0 failed"
