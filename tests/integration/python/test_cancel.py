"""Clients that go away abort their requests: a storm of 100 streaming clients disconnecting at
random points (some before the first token) leaves no running request and no used KV block, and
the server keeps serving. A request whose `timeout` passes ends the same way, answered with 504
(streaming: an error event, then [DONE])."""

import json
import random
import socket
import threading
import time

import pytest
import requests

from conftest import MODEL_NAME, Server


@pytest.fixture(scope="module")
def server(long_server):
    return long_server


def raw_stream_and_drop(port, body, chunks_to_read, rng):
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    seen = 0
    while seen < chunks_to_read:
        buf = s.recv(4096)
        if not buf:
            break
        seen += buf.count(b"data: ")
    if rng.random() < 0.5:
        # An abortive close (RST), as a killed client would.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def wait_for(server, name, value, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.metric(name) == value:
            return True
        time.sleep(0.1)
    return False


def test_cancel_storm_frees_everything(server):
    rng = random.Random(5)
    aborts_before = server.metric("switchyard_request_success_total", finished_reason="abort")
    threads = []
    for i in range(100):
        body = {"model": MODEL_NAME, "prompt": [rng.randrange(3, 1000) for _ in range(rng.choice([4, 64, 300]))],
                "max_tokens": 20000, "temperature": 0, "ignore_eos": True, "stream": True}
        t = threading.Thread(target=raw_stream_and_drop,
                             args=(server.port, body, rng.choice([0, 1, 3, 10, 40]),
                                   random.Random(i)))
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    assert wait_for(server, "switchyard_num_requests_running", 0), server.metrics()
    assert wait_for(server, "switchyard_num_requests_waiting", 0)
    assert wait_for(server, "switchyard_kv_cache_usage_ratio", 0)
    assert server.metric("vllm:num_requests_running") == 0
    aborts = server.metric("switchyard_request_success_total", finished_reason="abort")
    assert aborts - aborts_before >= 90  # 20000 tokens take far longer than the storm
    r = requests.post(server.url + "/v1/completions",
                      json={"model": MODEL_NAME, "prompt": "still here", "max_tokens": 4})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1


def test_non_streaming_client_that_leaves_aborts(server):
    body = json.dumps({"model": MODEL_NAME, "prompt": "x", "max_tokens": 30000,
                       "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert wait_for(server, "switchyard_num_requests_running", 1)
    time.sleep(0.3)
    s.close()
    assert wait_for(server, "switchyard_num_requests_running", 0, timeout=10)
    assert wait_for(server, "switchyard_kv_cache_usage_ratio", 0)


def test_request_timeout_is_504_and_frees_the_request(server):
    body = {"model": MODEL_NAME, "prompt": "x", "max_tokens": 30000, "ignore_eos": True,
            "timeout": 0.5}
    start = time.time()
    r = requests.post(server.url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 504, r.text
    error = r.json()["error"]
    assert error["code"] == "request_timeout"
    assert error["type"] == "timeout_error"
    assert 0.4 < time.time() - start < 30  # 30000 tokens would take far longer
    assert wait_for(server, "switchyard_num_requests_running", 0, timeout=10)
    assert wait_for(server, "switchyard_kv_cache_usage_ratio", 0)


def test_request_timeout_mid_stream_sends_an_error_event_then_done(server):
    body = {"model": MODEL_NAME, "prompt": "x", "max_tokens": 30000, "ignore_eos": True,
            "timeout": 0.5, "stream": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=60) as r:
        assert r.status_code == 200
        events = [line[len("data: "):] for line in r.iter_lines(decode_unicode=True)
                  if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["error"]["code"] == "request_timeout"
    assert any(json.loads(e).get("choices") for e in events[:-2])  # tokens came before it
    assert wait_for(server, "switchyard_num_requests_running", 0, timeout=10)
    assert wait_for(server, "switchyard_kv_cache_usage_ratio", 0)


def test_server_request_timeout_bounds_every_request(long_model_dir, tmp_path):
    """`--request-timeout` applies without a `timeout` field, and a longer `timeout` cannot
    extend it (the smaller wins)."""
    s = Server(long_model_dir, tmp_path / "timeout.log", ["--request-timeout", "0.5"], grpc=False)
    try:
        for extra in ({}, {"timeout": 600}):
            body = {"model": MODEL_NAME, "prompt": "x", "max_tokens": 30000, "ignore_eos": True,
                    **extra}
            start = time.time()
            r = requests.post(s.url + "/v1/completions", json=body, timeout=60)
            assert r.status_code == 504, r.text
            assert r.json()["error"]["code"] == "request_timeout"
            assert time.time() - start < 30
        r = requests.post(s.url + "/v1/completions",
                          json={"model": MODEL_NAME, "prompt": "x", "max_tokens": 2})
        assert r.status_code == 200
    finally:
        assert s.stop() == 0
