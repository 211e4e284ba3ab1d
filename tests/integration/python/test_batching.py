"""Continuous batching is exact: many concurrent requests give the same greedy tokens as the
same requests one at a time, also when the KV pool is so small that preemption must happen."""

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import MODEL_NAME, Server


def make_requests(count, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        prompt = [rng.randrange(3, 1000) for _ in range(rng.choice([1, 5, 17, 40, 90, 150]))]
        out.append({"model": MODEL_NAME, "prompt": prompt, "max_tokens": rng.choice([1, 8, 24, 48]),
                    "temperature": 0, "ignore_eos": True, "logprobs": 0})
    return out


def run(url, body):
    r = requests.post(url + "/v1/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    return choice["text"], choice["logprobs"]["tokens"]


def sequential(url, bodies):
    return [run(url, b) for b in bodies]


def concurrent(url, bodies, workers):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda b: run(url, b), bodies))


def test_64_concurrent_equal_one_at_a_time(server):
    bodies = make_requests(64, seed=1)
    alone = sequential(server.url, bodies)
    together = concurrent(server.url, bodies, 64)
    assert together == alone
    assert server.metric("switchyard_num_requests_running") == 0


def test_preemption_keeps_outputs_identical(model_dir, tmp_path):
    # 24 blocks of 16 tokens: a few long requests fill the pool, so running ones get preempted.
    small = Server(model_dir, tmp_path / "small.log",
                   ["--num-kv-blocks", "24", "--block-size", "16", "--no-enable-prefix-caching"])
    try:
        rng = random.Random(3)
        bodies = [{"model": MODEL_NAME, "prompt": [rng.randrange(3, 1000) for _ in range(100)],
                   "max_tokens": 64, "temperature": 0, "ignore_eos": True, "logprobs": 0}
                  for _ in range(12)]
        alone = sequential(small.url, bodies)
        before = small.metric("switchyard_num_preemptions_total")
        together = concurrent(small.url, bodies, 12)
        assert together == alone
        assert small.metric("switchyard_num_preemptions_total") > before
        assert small.metric("vllm:num_preemptions_total") > before
        assert small.metric("switchyard_kv_cache_usage_ratio") == 0
    finally:
        assert small.stop() == 0, small.log_tail()


def test_prefix_cache_hits_on_repeated_prompt(server):
    body = {"model": MODEL_NAME, "prompt": list(range(10, 110)), "max_tokens": 4,
            "temperature": 0, "ignore_eos": True}
    hits_before = server.metric("switchyard_prefix_cache_hits_total")
    first = requests.post(server.url + "/v1/completions", json=body).json()
    second = requests.post(server.url + "/v1/completions", json=body).json()
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert server.metric("switchyard_prefix_cache_hits_total") - hits_before >= 96
