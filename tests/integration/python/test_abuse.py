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


# --- field-level cases: every field of the four JSON routes, each with the `param` it names ---

CHAT_OK = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def fields(base, changes, raw=None):
    """`base` with `changes` applied (DELETE removes a field); `raw` (old bytes, new bytes) then
    replaces a placeholder in the serialized body, for bytes no JSON encoder writes."""
    b = dict(base)
    for k, v in changes.items():
        if v is DELETE:
            b.pop(k, None)
        else:
            b[k] = v
    data = json.dumps(b).encode()
    return data.replace(*raw) if raw else data


def comp(raw=None, **changes):
    return fields(OK_BODY, changes, raw)


def chat(raw=None, **changes):
    return fields(CHAT_OK, changes, raw)


def user(content, **extra):
    return [{"role": "user", "content": content, **extra}]


BAD_UTF8 = (b"@BAD@", b"ok \xff\xfe \xc3\x28 \xed\xa0\x80")  # stray, truncated, encoded surrogate
LONE = "\ud800"  # json.dumps writes it as the escape \ud800, which no UTF-8 text can hold
BODY_CAP = 8 << 20
C, H, T, D = "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"

# (name, path, raw body, expected status, expected param: None for errors about the whole body)
FIELD_CASES = [
    # /v1/completions: prompt
    ("prompt 257 strings", C, comp(prompt=["a"] * 257), 400, "prompt"),
    ("prompt empty inner list", C, comp(prompt=[[1, 2], []]), 400, "prompt"),
    ("prompt inner list of strings", C, comp(prompt=[[1, "a"]]), 400, "prompt"),
    ("prompt float ids", C, comp(prompt=[1.5, 2]), 400, "prompt"),
    ("prompt id 2^64-1", C, comp(prompt=[2**64 - 1]), 400, "prompt"),
    ("prompt id 2^31", C, comp(prompt=[[5, 2**31]]), 400, "prompt"),
    ("prompt object", C, comp(prompt={"text": "hi"}), 400, "prompt"),
    ("prompt null", C, comp(prompt=None), 400, "prompt"),
    ("prompt nested three deep", C, comp(prompt=[[[1]]]), 400, "prompt"),
    ("prompt invalid utf-8", C, comp(raw=BAD_UTF8, prompt="@BAD@"), 400, None),
    ("prompt lone surrogate", C, comp(prompt="a" + LONE), 400, None),
    ("prompt 7 MiB over context", C, comp(prompt="ab " * ((7 << 20) // 3)), 400, "prompt"),
    # token limits
    ("max_completion_tokens zero", C, comp(max_completion_tokens=0), 400, "max_completion_tokens"),
    ("max_completion_tokens string", C, comp(max_completion_tokens="5"), 400,
     "max_completion_tokens"),
    ("max_completion_tokens over context", C, comp(max_completion_tokens=10**6), 400,
     "max_completion_tokens"),
    ("max_tokens bool", C, comp(max_tokens=True), 400, "max_tokens"),
    ("max_tokens 2^63", C, comp(max_tokens=2**63), 400, "max_tokens"),
    ("min_tokens negative", C, comp(min_tokens=-1), 400, "min_tokens"),
    ("min_tokens above max_tokens", C, comp(min_tokens=5), 400, "min_tokens"),
    ("min_tokens list", C, comp(min_tokens=[1]), 400, "min_tokens"),
    # sampling
    ("temperature above float range", C, comp(temperature=1e39), 400, "temperature"),
    ("temperature bool", C, comp(temperature=True), 400, "temperature"),
    ("temperature Infinity literal", C, comp(raw=(b'"@T@"', b"Infinity"), temperature="@T@"), 400,
     None),
    ("top_p above one", C, comp(top_p=1.5), 400, "top_p"),
    ("top_p string", C, comp(top_p="0.5"), 400, "top_p"),
    ("top_k 2^31", C, comp(top_k=2**31), 400, "top_k"),
    ("top_k fractional", C, comp(top_k=2.5), 400, "top_k"),
    ("min_p negative", C, comp(min_p=-0.1), 400, "min_p"),
    ("presence_penalty below -2", C, comp(presence_penalty=-2.5), 400, "presence_penalty"),
    ("frequency_penalty string", C, comp(frequency_penalty="high"), 400, "frequency_penalty"),
    ("repetition_penalty negative", C, comp(repetition_penalty=-1), 400, "repetition_penalty"),
    ("seed fractional", C, comp(seed=1.5), 400, "seed"),
    ("seed 2^64", C, comp(seed=2**64), 400, "seed"),
    # stop conditions
    ("stop list with a number", C, comp(stop=["a", 1]), 400, "stop"),
    ("stop empty string", C, comp(stop=[""]), 400, "stop"),
    ("stop object", C, comp(stop={"a": 1}), 400, "stop"),
    ("stop 1 MiB string", C, comp(stop="x" * (1 << 20)), 400, "stop"),
    ("stop invalid utf-8", C, comp(raw=BAD_UTF8, stop=["@BAD@"]), 400, None),
    ("stop lone surrogate", C, comp(stop=[LONE]), 400, None),
    ("stop_token_ids not a list", C, comp(stop_token_ids=5), 400, "stop_token_ids"),
    ("stop_token_ids negative", C, comp(stop_token_ids=[-1]), 400, "stop_token_ids"),
    ("stop_token_ids strings", C, comp(stop_token_ids=["1"]), 400, "stop_token_ids"),
    ("stop_token_ids 2^64", C, comp(stop_token_ids=[2**64 - 1]), 400, "stop_token_ids"),
    ("ignore_eos string", C, comp(ignore_eos="yes"), 400, "ignore_eos"),
    ("include_stop_str_in_output number", C, comp(include_stop_str_in_output=1), 400,
     "include_stop_str_in_output"),
    ("skip_special_tokens string", C, comp(skip_special_tokens="no"), 400, "skip_special_tokens"),
    # serving fields
    ("n zero", C, comp(n=0), 400, "n"),
    ("n negative", C, comp(n=-1), 400, "n"),
    ("n fractional", C, comp(n=1.5), 400, "n"),
    ("n 129", C, comp(n=129), 400, "n"),
    ("best_of other than n", C, comp(best_of=2), 400, "best_of"),
    ("stream string", C, comp(stream="true"), 400, "stream"),
    ("stream_options without stream", C, comp(stream_options={"include_usage": True}), 400,
     "stream_options"),
    ("stream_options not an object", C, comp(stream=True, stream_options=[1]), 400,
     "stream_options"),
    ("stream_options.include_usage string", C,
     comp(stream=True, stream_options={"include_usage": "y"}), 400, "stream_options.include_usage"),
    ("logprobs 21", C, comp(logprobs=21), 400, "logprobs"),
    ("logprobs bool", C, comp(logprobs=True), 400, "logprobs"),
    ("echo", C, comp(echo=True), 400, "echo"),
    ("suffix", C, comp(suffix="end"), 400, "suffix"),
    ("logit_bias", C, comp(logit_bias={"5": 10}), 400, "logit_bias"),
    ("response_format json_object", C, comp(response_format={"type": "json_object"}), 400,
     "response_format"),
    ("response_format string", C, comp(response_format="text"), 400, "response_format"),
    ("add_special_tokens string", C, comp(add_special_tokens="no"), 400, "add_special_tokens"),
    ("model empty string", C, comp(model=""), 404, "model"),
    ("model 1 MiB", C, comp(model="m" * (1 << 20)), 404, "model"),
    ("model invalid utf-8", C, comp(raw=BAD_UTF8, model="@BAD@"), 400, None),
    ("model lone surrogate", C, comp(model=LONE), 400, None),
    # /v1/chat/completions: messages
    ("chat messages empty", H, chat(messages=[]), 400, "messages"),
    ("chat message a string", H, chat(messages=["hi"]), 400, "messages"),
    ("chat role a number", H, chat(messages=[{"role": 5, "content": "hi"}]), 400, "messages"),
    ("chat role null", H, chat(messages=[{"role": None, "content": "hi"}]), 400, "messages"),
    ("chat role a list", H, chat(messages=[{"role": ["user"], "content": "hi"}]), 400, "messages"),
    ("chat content missing", H, chat(messages=[{"role": "user"}]), 400, "messages"),
    ("chat content null", H, chat(messages=user(None)), 400, "messages"),
    ("chat content object", H, chat(messages=user({"text": "hi"})), 400, "messages"),
    ("chat image part", H,
     chat(messages=user([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}])), 400,
     "messages"),
    ("chat text part without text", H, chat(messages=user([{"type": "text"}])), 400, "messages"),
    ("chat text part number", H, chat(messages=user([{"type": "text", "text": 5}])), 400,
     "messages"),
    ("chat part a string", H, chat(messages=user(["hi"])), 400, "messages"),
    ("chat content invalid utf-8", H, chat(raw=BAD_UTF8, messages=user("@BAD@")), 400, None),
    ("chat content lone surrogate", H, chat(messages=user("x" + LONE)), 400, None),
    ("chat role lone surrogate", H, chat(messages=[{"role": LONE, "content": "a"}]), 400, None),
    ("chat content 7 MiB over context", H, chat(messages=user("ab " * ((7 << 20) // 3))), 400,
     "messages"),
    ("chat extra field 65 deep", H, chat(raw=(b'"@X@"', nested(64).encode()),
                                         messages=user("hi", extra="@X@")), 400, None),
    ("chat tools 65 deep", H, chat(raw=(b'"@X@"', nested(64).encode()), tools="@X@"), 400, None),
    ("chat tools invalid utf-8", H,
     chat(raw=BAD_UTF8, tools=[{"type": "function", "function": {"name": "@BAD@"}}]), 400, None),
    # chat fields
    ("chat_template_kwargs a list", H, chat(chat_template_kwargs=[1]), 400, "chat_template_kwargs"),
    ("chat_template_kwargs 65 deep", H,
     chat(raw=(b'"@X@"', nested(64, objects=True).encode()), chat_template_kwargs="@X@"), 400,
     None),
    ("chat_template_kwargs replaces messages", H, chat(chat_template_kwargs={"messages": 5}), 400,
     "messages"),
    ("chat_template_kwargs lone surrogate key", H,
     chat(chat_template_kwargs={LONE: True}), 400, None),
    ("chat add_generation_prompt string", H, chat(add_generation_prompt="yes"), 400,
     "add_generation_prompt"),
    ("chat continue_final_message", H, chat(continue_final_message=True), 400,
     "continue_final_message"),
    ("chat add_special_tokens number", H, chat(add_special_tokens=0), 400, "add_special_tokens"),
    ("chat logprobs string", H, chat(logprobs="true"), 400, "logprobs"),
    ("chat logprobs integer", H, chat(logprobs=5), 400, "logprobs"),
    ("chat top_logprobs without logprobs", H, chat(top_logprobs=2), 400, "top_logprobs"),
    ("chat top_logprobs negative", H, chat(logprobs=True, top_logprobs=-1), 400, "top_logprobs"),
    ("chat n 129", H, chat(n=129), 400, "n"),
    ("chat max_tokens over context", H, chat(max_tokens=10**6), 400, "max_tokens"),
    ("chat stop_token_ids 65", H, chat(stop_token_ids=list(range(65))), 400, "stop_token_ids"),
    ("chat unknown model", H, chat(model="gpt-4o"), 404, "model"),
    # /tokenize
    ("tokenize prompt number", T, json.dumps({"prompt": 5}).encode(), 400, "prompt"),
    ("tokenize prompt token list", T, json.dumps({"prompt": [1, 2]}).encode(), 400, "prompt"),
    ("tokenize messages a string", T, json.dumps({"messages": "hi"}).encode(), 400, "messages"),
    ("tokenize message without role", T, json.dumps({"messages": [{"content": "hi"}]}).encode(),
     400, "messages"),
    ("tokenize add_special_tokens string", T,
     json.dumps({"prompt": "hi", "add_special_tokens": "no"}).encode(), 400, "add_special_tokens"),
    ("tokenize unknown model", T, json.dumps({"model": "x", "prompt": "hi"}).encode(), 404, "model"),
    ("tokenize model a list", T, json.dumps({"model": [MODEL_NAME], "prompt": "hi"}).encode(), 400,
     "model"),
    ("tokenize invalid utf-8", T, b'{"prompt": "\xff\xfe"}', 400, None),
    ("tokenize lone surrogate", T, json.dumps({"prompt": LONE}).encode(), 400, None),
    ("tokenize low surrogate first", T, b'{"prompt": "\\udc00\\ud800"}', 400, None),
    # /detokenize
    ("detokenize tokens missing", D, json.dumps({"model": MODEL_NAME}).encode(), 400, "tokens"),
    ("detokenize negative id", D, json.dumps({"tokens": [1, -1]}).encode(), 400, "tokens"),
    ("detokenize id beyond vocab", D, json.dumps({"tokens": [10**7]}).encode(), 400, "tokens"),
    ("detokenize id 2^64-1", D, json.dumps({"tokens": [2**64 - 1]}).encode(), 400, "tokens"),
    ("detokenize fractional id", D, json.dumps({"tokens": [1.5]}).encode(), 400, "tokens"),
    ("detokenize nested ids", D, json.dumps({"tokens": [[1]]}).encode(), 400, "tokens"),
    ("detokenize string ids", D, json.dumps({"tokens": ["1"]}).encode(), 400, "tokens"),
    ("detokenize model number", D, json.dumps({"model": 1, "tokens": [1]}).encode(), 400, "model"),
    ("detokenize unknown model", D, json.dumps({"model": "x", "tokens": [1]}).encode(), 404,
     "model"),
]


def check_healthy(server):
    assert requests.get(server.url + "/health", timeout=5).status_code == 200
    r = requests.post(server.url + "/v1/completions", json=OK_BODY, timeout=30)
    assert r.status_code == 200, r.text


def post_and_check(server, name, path, raw, status):
    """Posts `raw`; the reply must have `status` and an OpenAI error object. Returns the error."""
    data = raw if isinstance(raw, bytes) else raw.encode()
    assert len(data) < BODY_CAP, name
    r = requests.post(server.url + path, data=data, headers={"Content-Type": "application/json"},
                      timeout=60)
    assert r.status_code == status, f"{name}: {r.status_code} {r.text[:2000]}"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] is None or isinstance(err["param"], str)
    assert err["code"] is None or isinstance(err["code"], str)
    return err


@pytest.mark.parametrize("name,path,raw,status", CASES, ids=[c[0] for c in CASES])
def test_abuse_case(server, name, path, raw, status):
    post_and_check(server, name, path, raw, status)
    check_healthy(server)


@pytest.mark.parametrize("name,path,raw,status,param", FIELD_CASES,
                         ids=[c[0] for c in FIELD_CASES])
def test_field_case(server, name, path, raw, status, param):
    err = post_and_check(server, name, path, raw, status)
    assert err["param"] == param, err
    if status == 404:
        assert err["code"] == "model_not_found", err
    check_healthy(server)


def test_corpus_size():
    assert len(CASES) + len(FIELD_CASES) >= 100


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
