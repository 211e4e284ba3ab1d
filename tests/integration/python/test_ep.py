"""Expert parallelism end to end: `serve --ep-size N` starts N ranks as processes joined by
Gloo over TCP; requests spread over the ranks (data-parallel attention) and every MoE layer
exchanges tokens between them. The oracle is the same server with one rank: greedy tokens must
be identical and logprobs within 1e-5, with contiguous and with replicated placements."""

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from openai import OpenAI

from conftest import ADMIN, MODEL_NAME, Server

PROMPTS = [
    "The quick brown fox",
    "Expert parallelism spreads experts",
    "1 2 3 4 5 6 7 8 9 10 11 12",
    "A",
    "Once upon a time in a land far away there lived",
    "def f(x): return",
    "Mixture of experts",
    "zzz",
]
TOLERANCE = 1e-5
pytestmark = pytest.mark.multiprocess


def complete_all(server):
    client = OpenAI(base_url=server.url + "/v1", api_key="none")

    def one(prompt):
        r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=12,
                                      temperature=0, logprobs=3,
                                      extra_body={"ignore_eos": True})
        c = r.choices[0]
        return c.text, c.logprobs.tokens, c.logprobs.token_logprobs, c.logprobs.top_logprobs

    # Concurrent, so that steps batch several requests on several ranks.
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(one, PROMPTS))


def assert_same(got, ref):
    for (text, tokens, lps, tops), (rtext, rtokens, rlps, rtops) in zip(got, ref):
        assert tokens == rtokens and text == rtext
        assert lps == pytest.approx(rlps, abs=TOLERANCE)
        for top, rtop in zip(tops, rtops):
            assert top.keys() == rtop.keys()
            for k in top:
                assert top[k] == pytest.approx(rtop[k], abs=TOLERANCE)


@pytest.fixture(scope="module")
def reference(model_dir, tmp_path_factory):
    s = Server(model_dir, tmp_path_factory.mktemp("log") / "ep1.log", grpc=False, threads=1)
    try:
        return complete_all(s)
    finally:
        assert s.stop() == 0, s.log_tail()


def replicated_placement(path, ranks, slots):
    """8 experts in a scrambled order over `ranks` ranks, spare slots holding replicas."""
    layout = [[-1] * slots for _ in range(ranks)]
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    free = [(r, s) for s in range(slots) for r in range(ranks)]
    for e, (r, s) in zip(order, free):
        layout[r][s] = e
    hot = iter([5, 2, 7, 0, 3, 6, 1, 4] * 2)
    for r, s in free[len(order):]:
        e = next(hot)
        while e in layout[r]:
            e = next(hot)
        layout[r][s] = e
    doc = {"format": "switchyard-placement-v1", "num_experts": 8, "num_ranks": ranks,
           "slots_per_rank": slots,
           "layers": [{"layer": 0, "slots": layout}, {"layer": 1, "slots": layout[::-1]}]}
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("ranks", [2, 4])
def test_contiguous_ranks_match_one_rank(model_dir, tmp_path, reference, ranks):
    s = Server(model_dir, tmp_path / "ep.log", extra_args=["--ep-size", str(ranks)], grpc=False,
               threads=1)
    try:
        assert_same(complete_all(s), reference)
    finally:
        assert s.stop() == 0, s.log_tail()


@pytest.mark.parametrize("ranks,slots", [(2, 6), (4, 3)])
def test_replicated_placement_matches_one_rank(model_dir, tmp_path, reference, ranks, slots):
    placement = replicated_placement(tmp_path / "placement.json", ranks, slots)
    trace = tmp_path / "routing.json"
    s = Server(model_dir, tmp_path / "ep.log", grpc=False, threads=1,
               extra_args=["--ep-size", str(ranks), "--placement", str(placement),
                           "--record-routing", str(trace), "--record-routing-steps", "4"])
    try:
        assert_same(complete_all(s), reference)
        # The routing statistics saw every pair, and every rank computed some.
        stats = requests.get(s.url + "/admin/routing", params={"transitions": "1"},
                             headers=ADMIN).json()
        total = stats["cumulative"]
        assert stats["num_ranks"] == ranks and stats["layers"] == [0, 1]
        for li in range(2):
            assert sum(total["counts"][li]) == total["tokens"] * 2
            assert sum(total["rank_pairs"][li]) == total["tokens"] * 2
            assert all(p > 0 for p in total["rank_pairs"][li])
        pairs = [s.metric("switchyard_moe_rank_pairs", layer=0, rank=r) for r in range(ranks)]
        assert sum(pairs) == sum(stats["window"]["rank_pairs"][0])
    finally:
        assert s.stop() == 0, s.log_tail()
    recorded = json.loads(trace.read_text())
    assert recorded["format"] == "switchyard-routing-v1" and recorded["num_experts"] == 8
    assert len(recorded["windows"]) >= 2
    assert sum(w["tokens"] for w in recorded["windows"]) == total["tokens"]


def test_placement_for_another_group_size_is_refused(model_dir, tmp_path):
    placement = replicated_placement(tmp_path / "placement.json", 2, 6)
    with pytest.raises(RuntimeError, match="placement: 2 ranks, the group has 4"):
        Server(model_dir, tmp_path / "bad.log", grpc=False, threads=1,
               extra_args=["--ep-size", "4", "--placement", str(placement)])


def test_live_placement_change_keeps_answers(model_dir, tmp_path, reference):
    """POST /admin/placement migrates experts between the rank processes while the server
    runs; afterwards it serves the new placement and still answers exactly as one rank."""
    s = Server(model_dir, tmp_path / "ep.log", grpc=False, threads=1,
               extra_args=["--ep-size", "4", "--expert-slots-per-rank", "3"])
    try:
        before = requests.get(s.url + "/admin/placement", headers=ADMIN).json()
        assert before["num_ranks"] == 4 and before["slots_per_rank"] == 3
        target = json.loads(replicated_placement(tmp_path / "next.json", 4, 3).read_text())
        r = requests.post(s.url + "/admin/placement", data=json.dumps(target), headers=ADMIN)
        assert r.status_code == 202 and r.json()["moves"] > 0
        deadline = time.time() + 30
        while (requests.get(s.url + "/admin/placement", headers=ADMIN).json()["layers"]
               != target["layers"]):
            assert time.time() < deadline, "the migration did not finish"
            time.sleep(0.05)
        assert s.metric("switchyard_ep_rebalances_total") == 1
        assert s.metric("switchyard_ep_experts_moved_total") == r.json()["moves"]
        assert_same(complete_all(s), reference)

        # Bad placements are refused with the OpenAI error object and change nothing.
        more_slots = {**target, "slots_per_rank": 4,
                      "layers": [{**l, "slots": [row + [-1] for row in l["slots"]]}
                                 for l in target["layers"]]}
        for body in ["{not json", json.dumps({**target, "num_ranks": 2}),
                     json.dumps({**target, "layers": target["layers"][:1]}),
                     json.dumps(more_slots)]:
            bad = requests.post(s.url + "/admin/placement", data=body, headers=ADMIN)
            assert bad.status_code == 400, bad.text
            assert bad.json()["error"]["message"]
        after = requests.get(s.url + "/admin/placement", headers=ADMIN).json()
        assert after["layers"] == target["layers"]
    finally:
        assert s.stop() == 0, s.log_tail()


def test_one_rank_has_no_placement(server):
    assert requests.get(server.url + "/admin/placement", headers=ADMIN).status_code == 404
    r = requests.post(server.url + "/admin/placement", data="{}", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["message"]


def test_a_dead_rank_takes_the_server_out_of_service(model_dir, tmp_path):
    """A worker rank killed with SIGKILL breaks the group: the leader stays up to say so
    (/health and /health/ready 503, requests refused with the error object) and exits 1 on
    SIGTERM."""
    s = Server(model_dir, tmp_path / "ep.log", grpc=False, threads=1,
               extra_args=["--ep-size", "2"])
    try:
        children = subprocess.run(["pgrep", "-P", str(s.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGKILL)
        deadline = time.time() + 30
        while requests.get(s.url + "/health").status_code != 503:
            assert time.time() < deadline, "the leader did not notice the dead rank"
            time.sleep(0.1)
        assert requests.get(s.url + "/health/ready").status_code == 503
        r = requests.post(s.url + "/v1/completions",
                          json={"model": MODEL_NAME, "prompt": "hello", "max_tokens": 4})
        assert r.status_code == 503 and r.json()["error"]["message"]
    finally:
        code = s.stop()
    assert code == 1, s.log_tail()
    assert "rank 1 was killed by signal 9" in s.log_tail(60)
