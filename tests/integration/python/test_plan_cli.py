"""`switchyard plan` with a model whose first layers are dense (DeepSeek-V3: 61 layers, MoE from
layer 3): placements name the model's MoE layers, the cost model uses its routed-expert shapes,
and a trace with a layer that has no routed experts is refused. No server; a second or so."""

import json
import subprocess

from conftest import BIN

SYNTHETIC = ["--synthetic", "--experts", "256", "--top-k", "8", "--zipf", "1.0"]


def plan(*args):
    return subprocess.run([BIN, "plan", *args], capture_output=True, text=True, timeout=60)


def test_synthetic_trace_takes_the_models_moe_layers(tmp_path):
    out = tmp_path / "placement.json"
    r = plan("--preset", "deepseek-v3", *SYNTHETIC, "--layers", "58", "--ranks", "32",
             "--strategy", "greedy", "-o", str(out))
    assert r.returncode == 0, r.stderr
    # gate, up and down: 3 x 7168 x 2048 bf16 weights per routed expert.
    assert f"{3 * 7168 * 2048 * 2 / 1e6:.1f} MB/expert" in r.stdout
    doc = json.loads(out.read_text())
    assert [l["layer"] for l in doc["layers"]] == list(range(3, 61))
    assert doc["num_experts"] == 256 and doc["num_ranks"] == 32 and doc["slots_per_rank"] == 8


def test_trace_layers_outside_the_moe_layers_are_refused(tmp_path):
    r = plan("--preset", "deepseek-v3", *SYNTHETIC, "--layers", "16", "--ranks", "32",
             "--strategy", "greedy")
    assert r.returncode == 2
    assert "layer 0, which is not one of the model's MoE layers 3..60 (58 layers)" in r.stderr

    # A trace of layers 0..57 (as recorded from another model) is refused the same way.
    trace = tmp_path / "trace.json"
    saved = plan(*SYNTHETIC, "--layers", "58", "--ranks", "32", "--strategy", "contiguous",
                 "--save-trace", str(trace))
    assert saved.returncode == 0, saved.stderr
    r = plan("--preset", "deepseek-v3", "--trace", str(trace), "--ranks", "32",
             "--strategy", "greedy")
    assert r.returncode == 2 and "not one of the model's MoE layers" in r.stderr
