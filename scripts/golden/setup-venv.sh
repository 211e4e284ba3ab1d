#!/usr/bin/env bash
# Creates .venv-golden in the repository root with the pinned Python packages that
# scripts/golden/gen_golden.py needs. Not used by CI: the fixtures under tests/golden/
# are committed. Usage: scripts/golden/setup-venv.sh  (then: .venv-golden/bin/python scripts/golden/gen_golden.py)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${repo_root}/.venv-golden"
python="${PYTHON:-python3}"

# transformers 4.57.x is the last 4.x line; it saves MoE experts in the classic per-expert
# layout of the hub checkpoints (model.layers.N.mlp.experts.E.gate_proj.weight, ...).
# torch comes from PyPI (the CUDA build on linux x86_64); the generator only uses the CPU.
pins=(
  "torch==2.9.1"
  "transformers==4.57.6"
  "tokenizers==0.22.2"
  "sentencepiece==0.2.1"
  "protobuf==6.33.1"
  "safetensors==0.6.2"
  "numpy==2.3.5"
  "jinja2==3.1.6"
)

if [[ ! -x "${venv}/bin/python" ]]; then
  "${python}" -m venv "${venv}"
fi
"${venv}/bin/python" -m pip install --quiet --upgrade pip
"${venv}/bin/python" -m pip install --quiet "${pins[@]}"
"${venv}/bin/python" - <<'PY'
import torch, transformers, tokenizers, sentencepiece, safetensors, numpy
from transformers import Qwen3MoeForCausalLM  # noqa: F401  (fails loudly if missing)
print("golden venv ready: torch", torch.__version__, "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__, "sentencepiece", sentencepiece.__version__)
PY
