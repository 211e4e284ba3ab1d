#!/usr/bin/env bash
# The main command: installs dependencies, builds, writes a small random-weight Qwen3-MoE
# checkpoint to models/demo (once) and serves it on the CPU: the OpenAI API on
# http://127.0.0.1:8000 (gRPC on 50051, metrics on /metrics) until Ctrl-C. Extra arguments go
# to `switchyard serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
if [[ ! -f models/demo/config.json ]]; then
  ./build/server/switchyard make-model --preset demo-qwen3-moe --seed 1 --out models/demo
fi
cat <<'MSG'
Serving models/demo as "demo" on http://127.0.0.1:8000. Try, from another terminal:
  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \
    -d '{"model": "demo", "prompt": "The switchyard sorts", "max_tokens": 32}'
  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \
    -d '{"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}'
MSG
exec ./build/server/switchyard serve --model models/demo --served-model-name demo "$@"
