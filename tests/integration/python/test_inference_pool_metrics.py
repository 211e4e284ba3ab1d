"""What the Gateway API Inference Extension's endpoint picker scrapes from a model server that
speaks vLLM's metrics protocol is all on a live server's /metrics (deploy/kubernetes's
inference-pool overlay relies on it)."""

from conftest import MODEL_NAME


def test_endpoint_picker_metrics(server):
    samples = server.metrics()
    names = {name for name, _, _ in samples}
    assert {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
            "vllm:gpu_cache_usage_perc"} <= names
    [(labels, value)] = [(ls, v) for n, ls, v in samples if n == "vllm:cache_config_info"]
    assert value == 1
    assert labels["model_name"] == MODEL_NAME
    assert labels["block_size"] == "16"  # serve's default --block-size
    assert int(labels["num_gpu_blocks"]) == server.metric("switchyard_kv_cache_blocks_total") > 0
