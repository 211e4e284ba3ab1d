"""An abuse corpus: malformed or hostile requests each get the documented status and an OpenAI
error object, and the server stays healthy and keeps answering in between."""

import json
import socket

import pytest
import requests

from conftest import MODEL_NAME

OK_BODY = {"model": MODEL_NAME, "prompt": "hi", "max_tokens": 2}


def body(**changes):
    b = dict(OK_BODY)
    for k, v in changes.items():
        if v is DELETE:
            b.pop(k, None)
        else:
            b[k] = v
    return json.dumps(b)


DELETE = object()


def nested(levels, objects=False):
    """Raw JSON: `levels` arrays (or objects) nested around 0."""
    opening, closing = ("{\"a\": ", "}") if objects else ("[", "]")
    return opening * levels + "0" + closing * levels


# Deep enough to overflow any recursive walk of the parsed value; the limit is 64 levels.
DEEP = 300_000
CHAT_HEAD = json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]})[:-3]

# (name, path, raw body, expected status)
CASES = [
    ("malformed json", "/v1/completions", "{\"model\": ", 400),
    ("not an object", "/v1/completions", "[1, 2, 3]", 400),
    ("json string", "/v1/completions", "\"prompt\"", 400),
    ("empty body", "/v1/completions", "", 400),
    ("trailing garbage", "/v1/completions", body() + "xyz", 400),
    ("missing prompt", "/v1/completions", body(prompt=DELETE), 400),
    ("empty prompt", "/v1/completions", body(prompt=""), 400),
    ("empty token list", "/v1/completions", body(prompt=[]), 400),
    ("prompt wrong type", "/v1/completions", body(prompt=42), 400),
    ("token id negative", "/v1/completions", body(prompt=[1, -5]), 400),
    ("token id beyond vocab", "/v1/completions", body(prompt=[1, 10**7]), 400),
    ("mixed prompt list", "/v1/completions", body(prompt=["a", 3]), 400),
    ("max_tokens negative", "/v1/completions", body(max_tokens=-3), 400),
    ("max_tokens zero", "/v1/completions", body(max_tokens=0), 400),
    ("max_tokens string", "/v1/completions", body(max_tokens="ten"), 400),
    ("max_tokens huge", "/v1/completions", body(max_tokens=10**30), 400),
    ("max_tokens float", "/v1/completions", body(max_tokens=3.5), 400),
    ("temperature string", "/v1/completions", body(temperature="hot"), 400),
    ("temperature negative", "/v1/completions", body(temperature=-0.5), 400),
    ("temperature NaN literal", "/v1/completions", body()[:-1] + ", \"temperature\": NaN}", 400),
    ("top_p zero", "/v1/completions", body(top_p=0), 400),
    ("top_k negative", "/v1/completions", body(top_k=-7), 400),
    ("min_p above one", "/v1/completions", body(min_p=1.5), 400),
    ("n huge", "/v1/completions", body(n=100000), 400),
    ("stop wrong type", "/v1/completions", body(stop=5), 400),
    ("256 prompts x n=128", "/v1/completions", body(prompt=["hi"] * 256, n=128), 400),
    ("17 stop strings", "/v1/completions", body(stop=[str(i) for i in range(17)]), 400),
    ("5000-byte stop string", "/v1/completions", body(stop="x" * 5000), 400),
    ("65 stop_token_ids", "/v1/completions", body(stop_token_ids=[3] * 65), 400),
    ("stop_token_id beyond vocab", "/v1/completions", body(stop_token_ids=[10**7]), 400),
    ("seed string", "/v1/completions", body(seed="x"), 400),
    ("logprobs negative", "/v1/completions", body(logprobs=-1), 400),
    ("frequency_penalty big", "/v1/completions", body(frequency_penalty=9), 400),
    ("repetition_penalty zero", "/v1/completions", body(repetition_penalty=0), 400),
    ("prompt over context", "/v1/completions", body(prompt=[7] * 2100), 400),
    ("prompt + max_tokens over context", "/v1/completions",
     body(prompt=[7] * 2000, max_tokens=100), 400),
    ("unknown model", "/v1/completions", body(model="gpt-17"), 404),
    ("model wrong type", "/v1/completions", body(model=5), 400),
    ("invalid utf-8", "/v1/completions", b"{\"model\": \"tiny\", \"prompt\": \"\xff\xfe\"}", 400),
    ("chat missing messages", "/v1/chat/completions", json.dumps({"model": MODEL_NAME}), 400),
    ("chat messages not a list", "/v1/chat/completions",
     json.dumps({"model": MODEL_NAME, "messages": "hi"}), 400),
    ("chat message without role", "/v1/chat/completions",
     json.dumps({"model": MODEL_NAME, "messages": [{"content": "hi"}]}), 400),
    ("chat content wrong type", "/v1/chat/completions",
     json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": 5}]}), 400),
    ("chat top_logprobs too big", "/v1/chat/completions",
     json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": "a"}],
                 "logprobs": True, "top_logprobs": 500}), 400),
    ("detokenize bad tokens", "/detokenize", json.dumps({"tokens": "abc"}), 400),
    ("tokenize without prompt", "/tokenize", json.dumps({"model": MODEL_NAME}), 400),
    ("deep array prompt", "/v1/completions", "{\"prompt\": " + nested(DEEP) + "}", 400),
    ("deep object body", "/v1/completions", nested(DEEP, objects=True), 400),
    ("deep chat tools", "/v1/chat/completions",
     CHAT_HEAD + "}], \"tools\": [" + nested(DEEP) + "]}", 400),
    ("deep chat_template_kwargs", "/v1/chat/completions",
     CHAT_HEAD + "}], \"chat_template_kwargs\": {\"x\": " + nested(DEEP, objects=True) + "}}",
     400),
    ("deep chat message field", "/v1/chat/completions",
     CHAT_HEAD + ", \"extra\": " + nested(DEEP) + "}]}", 400),
    ("deep tokenize", "/tokenize", "{\"prompt\": " + nested(DEEP, objects=True) + "}", 400),
    ("deep detokenize", "/detokenize", "{\"tokens\": " + nested(DEEP) + "}", 400),
    ("unknown route", "/v1/engines", "{}", 404),
]


def check_healthy(server):
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    r = requests.post(server.url + "/v1/completions", json=OK_BODY, timeout=30)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("name,path,raw,status", CASES, ids=[c[0] for c in CASES])
def test_abuse_case(server, name, path, raw, status):
    data = raw if isinstance(raw, bytes) else raw.encode()
    r = requests.post(server.url + path, data=data, headers={"Content-Type": "application/json"},
                      timeout=30)
    assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    assert "param" in err and "code" in err
    check_healthy(server)


@pytest.mark.parametrize("param,changes", [
    ("n", {"prompt": ["hi"] * 256, "n": 128}),
    ("stop", {"stop": [str(i) for i in range(17)]}),
    ("stop", {"stop": "x" * 5000}),
    ("stop_token_ids", {"stop_token_ids": [3] * 65}),
    ("stop_token_ids", {"stop_token_ids": [10**7]}),
])
def test_limit_errors_name_the_parameter(server, param, changes):
    r = requests.post(server.url + "/v1/completions", data=body(**changes),
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text


def test_unknown_fields_are_ignored(server):
    r = requests.post(server.url + "/v1/completions", data=body(frobnicate=True, user="u1"),
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200


def test_ten_megabyte_body_is_413(server):
    big = json.dumps({"model": MODEL_NAME, "prompt": "a" * (10 << 20), "max_tokens": 1})
    r = requests.post(server.url + "/v1/completions", data=big,
                      headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413
    assert "error" in r.json()
    check_healthy(server)


def test_nesting_limit_is_64_levels(server):
    url = server.url + "/tokenize"
    ok = requests.post(url, data="{\"prompt\": \"hi\", \"x\": " + nested(63) + "}", timeout=30)
    assert ok.status_code == 200, ok.text
    r = requests.post(url, data="{\"prompt\": \"hi\", \"x\": " + nested(64) + "}", timeout=30)
    assert r.status_code == 400
    assert "deeper than 64 levels" in r.json()["error"]["message"]


def test_wrong_method_is_405(server):
    r = requests.get(server.url + "/v1/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_garbage_bytes_on_the_socket(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n")
    try:
        s.recv(1024)
    except OSError:
        pass
    s.close()
    check_healthy(server)
