"""A real Prometheus server (Debian's `prometheus`) scrapes /metrics, and PromQL over the TTFT
histogram returns data, under both our name and vLLM's."""

import shutil
import subprocess
import time

import pytest
import requests

from conftest import MODEL_NAME, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@pytest.fixture
def prometheus(server, tmp_path):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: switchyard
    static_configs:
      - targets: ["127.0.0.1:{server.port}"]
""")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prom.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def query(prom, expr):
    r = requests.get(prom + "/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_promql_over_ttft_histogram(server, prometheus):
    for i in range(5):
        r = requests.post(server.url + "/v1/completions",
                          json={"model": MODEL_NAME, "prompt": f"scrape {i}", "max_tokens": 4})
        assert r.status_code == 200
    exprs = [
        "histogram_quantile(0.99, sum by (le) (switchyard_time_to_first_token_seconds_bucket))",
        'histogram_quantile(0.5, sum by (le) ({__name__="vllm:time_to_first_token_seconds_bucket"}))',
        'sum(switchyard_request_success_total{finished_reason="length"})',
        "up{job=\"switchyard\"}",
    ]
    deadline = time.time() + 60
    results = {}
    while time.time() < deadline and len(results) < len(exprs):
        for e in exprs:
            if e not in results:
                got = query(prometheus, e)
                if got and got[0]["value"][1] not in ("NaN", "0"):
                    results[e] = float(got[0]["value"][1])
        time.sleep(0.5)
    assert set(results) == set(exprs), results
    assert results[exprs[0]] > 0
    assert results[exprs[2]] >= 5
    targets = requests.get(prometheus + "/api/v1/targets").json()["data"]["activeTargets"]
    assert targets[0]["health"] == "up", targets[0].get("lastError")
