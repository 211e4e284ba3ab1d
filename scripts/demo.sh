#!/usr/bin/env bash
# The main command: installs dependencies, builds, writes a small random-weight Qwen3-MoE
# checkpoint to models/demo (once) and generates text from it on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
if [[ ! -f models/demo/config.json ]]; then
  ./build/server/switchyard make-model --preset demo-qwen3-moe --seed 1 --out models/demo
fi
./build/server/switchyard generate --model models/demo \
  --prompt "${1:-The switchyard sorts every car onto its track}" --max-tokens 48 --seed 7
