"""Expert parallelism on the DeepSeek-V3 shape: 256 routed experts, 8 per token in grouped
sigmoid routing (8 groups, 4 picked), one shared expert and a dense first layer, with a skewed
router (make-model --router-skew 1.0) so that placements matter. Four Gloo rank processes must
answer exactly as one rank with the contiguous placement, with an ILP placement planned from a
trace this server recorded, and across live rebalances; the per-expert metrics cover the MoE
layers' routed experts only."""

import json
import subprocess
import time

import pytest
import requests

from conftest import ADMIN, BIN, Server
from test_ep import assert_same, complete_all

pytestmark = pytest.mark.multiprocess
EXPERTS = 256
RANKS = 4
SLOTS = EXPERTS // RANKS + 2  # two spare slots per rank and layer for replicas of hot experts
MOE_LAYERS = [1, 2]  # tiny-deepseek-v3: 3 layers, first_k_dense_replace 1


@pytest.fixture(scope="module")
def ds_model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("deepseek256")
    subprocess.run([BIN, "make-model", "--preset", "tiny-deepseek-v3", "--seed", "5",
                    "--set", f"n_routed_experts={EXPERTS}", "--set", "n_group=8",
                    "--set", "topk_group=4", "--set", "num_experts_per_tok=8",
                    "--router-skew", "1.0", "--out", str(out)], check=True, capture_output=True)
    # Small enough for CI: 256 experts of 3 x 64 x 32 weights in 2 MoE layers.
    size = sum(f.stat().st_size for f in out.iterdir())
    assert size < 16 * 1024 * 1024, size
    return out


@pytest.fixture(scope="module")
def ds_reference(ds_model_dir, tmp_path_factory):
    s = Server(ds_model_dir, tmp_path_factory.mktemp("log") / "ds1.log", grpc=False, threads=1)
    try:
        return complete_all(s)
    finally:
        assert s.stop() == 0, s.log_tail()


@pytest.fixture(scope="module")
def ds_trace(ds_model_dir, ds_reference, tmp_path_factory):
    """4 contiguous ranks: same answers, per-expert metrics of the MoE layers only, and the
    routing trace the server recorded (several windows)."""
    tmp = tmp_path_factory.mktemp("ds4")
    trace = tmp / "routing.json"
    s = Server(ds_model_dir, tmp / "ep.log", grpc=False, threads=1,
               extra_args=["--ep-size", str(RANKS), "--record-routing", str(trace),
                           "--record-routing-steps", "4"])
    try:
        assert_same(complete_all(s), ds_reference)
        samples = s.metrics()
        routed = [ls for n, ls, _ in samples if n == "switchyard_moe_routed_tokens_total"]
        assert {int(ls["layer"]) for ls in routed} == set(MOE_LAYERS)
        assert sorted(int(ls["expert"]) for ls in routed) == sorted(list(range(EXPERTS)) * 2)
        rank_pairs = [ls for n, ls, _ in samples if n == "switchyard_moe_rank_pairs"]
        assert {int(ls["layer"]) for ls in rank_pairs} == set(MOE_LAYERS)
        slots = [(ls, v) for n, ls, v in samples if n == "switchyard_ep_placement_expert"]
        assert {int(ls["layer"]) for ls, _ in slots} == set(MOE_LAYERS)
        assert sorted(int(v) for _, v in slots) == sorted(list(range(EXPERTS)) * 2)
        stats = requests.get(s.url + "/admin/routing", headers=ADMIN).json()
        assert stats["layers"] == MOE_LAYERS
        for li in range(len(MOE_LAYERS)):
            assert sum(stats["cumulative"]["counts"][li]) == stats["cumulative"]["tokens"] * 8
    finally:
        assert s.stop() == 0, s.log_tail()
    recorded = json.loads(trace.read_text())
    assert recorded["num_experts"] == EXPERTS and recorded["layers"] == MOE_LAYERS
    assert len(recorded["windows"]) >= 2
    return trace


def plan(trace, out, strategy, *extra):
    r = subprocess.run([BIN, "plan", "--trace", str(trace), "--ranks", str(RANKS),
                        "--slots-per-rank", str(SLOTS), "--strategy", strategy,
                        "--time-limit", "2", "-o", str(out), "--json", *extra],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_ilp_placement_from_the_recorded_trace_keeps_answers(ds_model_dir, ds_reference,
                                                              ds_trace, tmp_path):
    placement = tmp_path / "ilp.json"
    report = plan(ds_trace, placement, "ilp", "--model", str(ds_model_dir))
    greedy = plan(ds_trace, tmp_path / "greedy.json", "greedy", "--model", str(ds_model_dir))
    assert report["objective"]["total"] <= greedy["objective"]["total"] + 1e-9
    doc = json.loads(placement.read_text())
    assert doc["num_experts"] == EXPERTS and [l["layer"] for l in doc["layers"]] == MOE_LAYERS
    s = Server(ds_model_dir, tmp_path / "ep.log", grpc=False, threads=1,
               extra_args=["--ep-size", str(RANKS), "--placement", str(placement)])
    try:
        served = requests.get(s.url + "/admin/placement", headers=ADMIN).json()
        assert served["layers"] == doc["layers"]
        assert_same(complete_all(s), ds_reference)
    finally:
        assert s.stop() == 0, s.log_tail()


def test_live_rebalancing_moves_experts_and_keeps_answers(ds_model_dir, ds_reference, tmp_path):
    """Contiguous at start with spare slots; the rebalancer re-plans from the skewed routing
    window while requests run and migrates experts between the rank processes."""
    s = Server(ds_model_dir, tmp_path / "ep.log", grpc=False, threads=1,
               extra_args=["--ep-size", str(RANKS), "--expert-slots-per-rank", str(SLOTS),
                           "--rebalance-interval", "0.2", "--rebalance-min-gain", "0"])
    try:
        before = requests.get(s.url + "/admin/placement", headers=ADMIN).json()
        assert_same(complete_all(s), ds_reference)
        deadline = time.time() + 30
        while s.metric("switchyard_ep_rebalances_total") < 1:
            assert time.time() < deadline, "no live rebalance happened"
            time.sleep(0.1)
        assert s.metric("switchyard_ep_experts_moved_total") > 0
        after = requests.get(s.url + "/admin/placement", headers=ADMIN).json()
        assert after["layers"] != before["layers"]
        assert_same(complete_all(s), ds_reference)
    finally:
        assert s.stop() == 0, s.log_tail()
