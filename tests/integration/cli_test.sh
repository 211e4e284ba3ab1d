#!/usr/bin/env bash
# The switchyard CLI end to end: make-model writes a checkpoint, generate streams text from it
# and reports speed, and bad input gets a clear message and a non-zero exit.
set -euo pipefail
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$bin" make-model --list-presets | grep -q "^qwen3-30b-a3b	Qwen3MoeForCausalLM	" || fail "preset list"
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

# A preset's shapes with random weights made in (here, CPU) device memory: no files needed.
"$bin" generate --model preset:tiny-qwen3-moe --random-weights --random-weights-seed 4 \
  --prompt "Hello" --max-tokens 6 --ignore-eos >/dev/null 2>"$work/err6" ||
  fail "preset random weights: $(cat "$work/err6")"
grep -q "generated 6 tokens" "$work/err6" || fail "preset summary: $(cat "$work/err6")"
if "$bin" generate --model preset:tiny-qwen3-moe --prompt hi 2>"$work/err7"; then
  fail "preset without --random-weights"
fi
grep -q -- "--random-weights" "$work/err7" || fail "preset message: $(cat "$work/err7")"
if "$bin" generate --model "$work/m" --prompt hi --device tpu 2>"$work/err8"; then
  fail "bad device"
fi
grep -q "expected cpu, cuda or cuda:N" "$work/err8" || fail "device message: $(cat "$work/err8")"
# --quantization int8: weights quantized at load, from a checkpoint or from random weights; an
# unknown value is a clear error for generate and serve alike.
"$bin" generate --model "$work/m" --quantization int8 --prompt "Hello there" --max-tokens 8 \
  --ignore-eos >/dev/null 2>"$work/err10" || fail "int8 checkpoint: $(cat "$work/err10")"
grep -q "generated 8 tokens" "$work/err10" || fail "int8 summary: $(cat "$work/err10")"
"$bin" generate --model preset:tiny-mixtral --random-weights --quantization int8 --prompt "Hello" \
  --max-tokens 4 --ignore-eos >/dev/null 2>"$work/err11" || fail "int8 preset: $(cat "$work/err11")"
"$bin" generate --model "$work/m" --quantization int4 --prompt "Hello there" --max-tokens 8 \
  --ignore-eos >/dev/null 2>"$work/err13" || fail "int4 checkpoint: $(cat "$work/err13")"
grep -q "generated 8 tokens" "$work/err13" || fail "int4 summary: $(cat "$work/err13")"
# FP8: quantized at load, and a published FP8 checkpoint (make-model --quantization fp8).
"$bin" generate --model "$work/m" --quantization fp8 --prompt "Hello there" --max-tokens 8 \
  --ignore-eos >/dev/null 2>"$work/err15" || fail "fp8 at load: $(cat "$work/err15")"
"$bin" make-model --arch qwen3_moe --quantization fp8 --out "$work/m-fp8" --seed 2 2>/dev/null ||
  fail "make-model --quantization fp8"
grep -q '"quant_method": "fp8"' "$work/m-fp8/config.json" || fail "fp8 quantization_config"
"$bin" generate --model "$work/m-fp8" --prompt "Hello there" --max-tokens 8 --ignore-eos \
  >/dev/null 2>"$work/err16" || fail "fp8 checkpoint: $(cat "$work/err16")"
grep -q "generated 8 tokens" "$work/err16" || fail "fp8 summary: $(cat "$work/err16")"
for cmd in "generate --prompt hi" "serve --grpc-port 0"; do
  if "$bin" $cmd --model "$work/m" --quantization int2 >"$work/err12" 2>&1; then
    fail "$cmd --quantization int2"
  fi
  grep -q "unknown --quantization 'int2' (expected none, int8, int4 or fp8)" "$work/err12" ||
    fail "$cmd quantization message: $(cat "$work/err12")"
done
# make-model --quantization gptq / awq: int4 checkpoints as those libraries write them, loaded
# as they are.
for fmt in gptq awq pack-quantized; do
  "$bin" make-model --preset tiny-mixtral --seed 2 --quantization $fmt --group-size 64 \
    --out "$work/$fmt" 2>/dev/null || fail "make-model $fmt"
  grep -q "\"bits\": 4\|\"num_bits\": 4" "$work/$fmt/config.json" || fail "$fmt config"
  "$bin" generate --model "$work/$fmt" --prompt "Hello there" --max-tokens 8 --ignore-eos \
    >/dev/null 2>"$work/err14" || fail "$fmt checkpoint: $(cat "$work/err14")"
  grep -q "generated 8 tokens" "$work/err14" || fail "$fmt summary: $(cat "$work/err14")"
done
# --desc-act: GPTQ (g_idx) and pack-quantized (actorder group, weight_g_idx) act-order
# checkpoints in a permuted order load and generate; the flag needs one of them. Groups of 32:
# tiny-mixtral's inputs (64 or 128 wide) then hold several groups to permute.
"$bin" make-model --preset tiny-mixtral --seed 2 --quantization gptq --desc-act --group-size 32 \
  --out "$work/gptq-act-order" 2>/dev/null || fail "make-model gptq --desc-act"
grep -q '"desc_act": true' "$work/gptq-act-order/config.json" || fail "desc_act config"
"$bin" make-model --preset tiny-mixtral --seed 2 --quantization pack-quantized --desc-act \
  --group-size 32 --out "$work/pack-act-order" 2>/dev/null || fail "make-model pack-quantized --desc-act"
grep -q '"actorder": "group"' "$work/pack-act-order/config.json" || fail "actorder config"
for m in gptq-act-order pack-act-order; do
  "$bin" generate --model "$work/$m" --prompt "Hello there" --max-tokens 8 \
    --ignore-eos >/dev/null 2>"$work/err14" || fail "$m checkpoint: $(cat "$work/err14")"
  grep -q "generated 8 tokens" "$work/err14" || fail "$m summary: $(cat "$work/err14")"
done
"$bin" make-model --preset tiny-mixtral --quantization awq --desc-act --out "$work/awq-act" \
  2>"$work/err14" && fail "awq --desc-act accepted"
grep -q "desc-act needs --quantization gptq" "$work/err14" || fail "--desc-act: $(cat "$work/err14")"
# The DeepSeek family from make-model: each architecture generates, and a DeepSeek-V3 FP8
# checkpoint in the published layout (MLA projections in F8_E4M3 too) loads and generates.
for arch in deepseek_v2 deepseek_v3 glm4_moe; do
  "$bin" make-model --arch $arch --seed 3 --out "$work/$arch" 2>/dev/null || fail "make-model $arch"
  "$bin" generate --model "$work/$arch" --prompt "Hello there" --max-tokens 8 --ignore-eos \
    >/dev/null 2>"$work/err17" || fail "$arch: $(cat "$work/err17")"
  grep -q "generated 8 tokens" "$work/err17" || fail "$arch summary: $(cat "$work/err17")"
done
"$bin" make-model --arch deepseek_v3 --quantization fp8 --seed 3 --out "$work/ds-fp8" 2>/dev/null ||
  fail "make-model deepseek_v3 fp8"
grep -q "kv_b_proj.weight_scale_inv" "$work/ds-fp8/model.safetensors" || fail "MLA not in FP8"
"$bin" generate --model "$work/ds-fp8" --prompt "Hello there" --max-tokens 8 --ignore-eos \
  >/dev/null 2>"$work/err18" || fail "deepseek fp8: $(cat "$work/err18")"
grep -q "generated 8 tokens" "$work/err18" || fail "deepseek fp8 summary: $(cat "$work/err18")"
# --kv-cache-dtype: bf16 and fp8 caches generate, for grouped-query attention and for MLA; a bad
# value is a clear error for generate and serve alike; fp8 on CUDA is refused with the reason.
for kv in bf16 fp8; do
  for model in "$work/m" "$work/deepseek_v3"; do
    "$bin" generate --model "$model" --kv-cache-dtype $kv --prompt "Hello there" --max-tokens 8 \
      --ignore-eos >/dev/null 2>"$work/err19" || fail "$kv cache: $(cat "$work/err19")"
    grep -q "generated 8 tokens" "$work/err19" || fail "$kv cache summary: $(cat "$work/err19")"
  done
done
for cmd in "generate --prompt hi" "serve --grpc-port 0"; do
  if "$bin" $cmd --model "$work/m" --kv-cache-dtype fp16 >"$work/err20" 2>&1; then
    fail "$cmd --kv-cache-dtype fp16"
  fi
  grep -q -- "--kv-cache-dtype must be auto, bf16 or fp8, got 'fp16'" "$work/err20" ||
    fail "$cmd kv-cache-dtype message: $(cat "$work/err20")"
done
if "$bin" generate --model "$work/m" --prompt hi --device cuda --kv-cache-dtype fp8 \
  2>"$work/err21"; then
  fail "fp8 KV cache on cuda"
fi
grep -q "CPU backend only" "$work/err21" || fail "fp8 cuda message: $(cat "$work/err21")"
# Without a GPU (CI), --device cuda is a clear error, never a crash.
if ! nvidia-smi >/dev/null 2>&1; then
  if "$bin" generate --model "$work/m" --prompt hi --device cuda 2>"$work/err9"; then
    fail "cuda without a GPU"
  fi
  grep -Eq "no CUDA device|built without CUDA" "$work/err9" || fail "cuda: $(cat "$work/err9")"
fi
echo "1 passed, 0 failed"
