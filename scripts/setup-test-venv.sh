#!/usr/bin/env bash
# Creates .venv-test in the repository root with the pinned Python clients the integration
# tests drive the server with (the openai package, grpcio + grpcio-tools to compile the proto,
# requests), the independent oracles they check it against (Hugging Face tokenizers for token
# counts, jinja2 for chat templates), and what the Kubernetes manifest tests read and validate
# with (PyYAML; kubernetes-validate, which ships the Kubernetes OpenAPI schemas; jsonschema for
# the CRD schemas). Idempotent: reinstalls only when the pins change.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${repo_root}/.venv-test"
pins=(
  "openai==2.8.0"
  "grpcio==1.76.0"
  "grpcio-tools==1.76.0"
  "grpcio-health-checking==1.76.0"
  "pytest==8.4.2"
  "requests==2.32.5"
  "tokenizers==0.22.1"
  "jinja2==3.1.6"
  "PyYAML==6.0.3"
  "jsonschema==4.26.0"
  "kubernetes-validate==1.37.0"
)
stamp="${venv}/.pins"
if [[ -x "${venv}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${pins[*]}" ]]; then
  exit 0
fi
python3 -m venv "${venv}"
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
echo "${pins[*]}" >"${stamp}"
echo "setup-test-venv: ${venv} ready"
