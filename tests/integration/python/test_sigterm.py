"""SIGTERM during active streams: readiness goes false, new requests are refused, the streams
complete, and the process exits 0."""

import json
import signal
import threading
import time

import requests

from conftest import MODEL_NAME, Server


def stream(url, results, i):
    body = {"model": MODEL_NAME, "prompt": f"stream {i}", "max_tokens": 3000, "stream": True,
            "temperature": 0, "ignore_eos": True, "stream_options": {"include_usage": True}}
    events = []
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=120) as r:
        for line in r.iter_lines(decode_unicode=True):
            if line:
                events.append(line)
    results[i] = events


def test_sigterm_drains_streams_and_exits_zero(long_model_dir, tmp_path):
    server = Server(long_model_dir, tmp_path / "sigterm.log", ["--shutdown-timeout", "60"])
    results = {}
    threads = [threading.Thread(target=stream, args=(server.url, results, i)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while server.metric("switchyard_num_requests_running") < 4 and time.time() < deadline:
        time.sleep(0.05)
    assert server.metric("switchyard_num_requests_running") == 4
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    refused = False
    try:
        r = requests.post(server.url + "/v1/completions",
                          json={"model": MODEL_NAME, "prompt": "late", "max_tokens": 2}, timeout=5)
        refused = r.status_code == 503 and "Retry-After" in r.headers
        assert requests.get(server.url + "/health/ready", timeout=5).status_code == 503
    except requests.ConnectionError:
        refused = True
    assert refused
    for t in threads:
        t.join()
    code = server.proc.wait(timeout=60)
    server.log.close()
    assert code == 0, server.log_tail()
    for i in range(4):
        events = results[i]
        assert events[-1] == "data: [DONE]"
        usage = json.loads(events[-2][len("data: "):])["usage"]
        assert usage["completion_tokens"] == 3000
