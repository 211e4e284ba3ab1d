"""What the Gateway API Inference Extension's endpoint picker scrapes from a model server that
speaks vLLM's metrics protocol is all on a live server's /metrics (deploy/kubernetes's
inference-pool overlay relies on it)."""

import requests

from conftest import MODEL_NAME, Server


def test_endpoint_picker_metrics(model_dir, tmp_path):
    # A server of its own, first scraped after it has run steps, with a block size that is not
    # the default: the cache-config labels must come from the running engine's settings.
    server = Server(model_dir, tmp_path / "server.log", extra_args=["--block-size", "32"],
                    grpc=False)
    try:
        r = requests.post(server.url + "/v1/completions", timeout=60,
                          json={"model": MODEL_NAME, "prompt": "Hello", "max_tokens": 4})
        assert r.status_code == 200, r.text
        samples = server.metrics()
        names = {name for name, _, _ in samples}
        assert {"vllm:num_requests_waiting", "vllm:num_requests_running",
                "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"} <= names
        [(labels, value)] = [(ls, v) for n, ls, v in samples if n == "vllm:cache_config_info"]
        assert value == 1
        assert labels["model_name"] == MODEL_NAME
        assert labels["block_size"] == "32"
        assert int(labels["num_gpu_blocks"]) == server.metric("switchyard_kv_cache_blocks_total")
        assert int(labels["num_gpu_blocks"]) > 0
    finally:
        assert server.stop() == 0, server.log_tail()
