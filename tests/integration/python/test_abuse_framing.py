"""The abuse corpus at the HTTP layer, over raw sockets: bodies over the cap in every framing,
compressed bodies, conflicting or broken lengths, oversized heads, malformed request lines and
headers, unknown routes and methods, and the admin key. Each gets the documented status
(docs/serving.md) with an OpenAI error object, and the server answers /health after each."""

import gzip
import json
import socket
import zlib

import pytest

from conftest import ADMIN_KEY, MODEL_NAME

BODY = json.dumps({"model": MODEL_NAME, "prompt": "hi", "max_tokens": 2}).encode()
CAP = 8 << 20  # the default --max-body-bytes


def post(path="/v1/completions", body=BODY, headers=(), length=True):
    head = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json",
            "Connection: close", *headers]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def get(path, headers=()):
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: x", "Connection: close", *headers]) +
            "\r\n\r\n").encode()


def chunked(body, chunk=1 << 16, headers=()):
    head = ["POST /v1/completions HTTP/1.1", "Host: x", "Connection: close",
            "Transfer-Encoding: chunked", *headers]
    out = ("\r\n".join(head) + "\r\n\r\n").encode()
    for i in range(0, len(body), chunk):
        part = body[i:i + chunk]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


ADMIN = f"Authorization: Bearer {ADMIN_KEY}"

# (name, raw request, expected status)
CASES = [
    ("content-length over the cap, body never sent",
     b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n{", 413),
    ("content-length 10^18", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 1000000000000000000\r\n\r\n{", 413),
    ("chunked over the cap", chunked(b" " * (CAP + 1)), 413),
    ("chunked in tiny chunks over the cap", chunked(b" " * (CAP + 1), chunk=1 << 12), 413),
    ("chunked, valid", chunked(BODY), 200),
    ("chunked, bad chunk size", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    ("chunked, chunk longer than announced", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n", 400),
    ("no length: body to EOF", post(length=False), 411),
    ("gzip body", post(body=gzip.compress(BODY), headers=["Content-Encoding: gzip"]), 415),
    ("gzip bomb", post(body=gzip.compress(b" " * (64 << 20)), headers=["Content-Encoding: gzip"]),
     415),
    ("deflate body", post(body=zlib.compress(BODY), headers=["Content-Encoding: deflate"]), 415),
    ("br body", post(body=b"\x0b\x02\x80", headers=["Content-Encoding: br"]), 415),
    ("identity encoding is fine", post(headers=["Content-Encoding: identity"]), 200),
    ("content-length and chunked together",
     b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("two different content-lengths", post(headers=["Content-Length: 3"]), 400),
    ("negative content-length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: -5\r\n\r\n", 400),
    ("non-numeric content-length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: ten\r\n\r\n", 400),
    ("transfer-encoding other than chunked", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("one huge header", get("/health", [f"X-Big: {'a' * 20000}"]), 431),
    ("a thousand headers", get("/health", [f"X-H{i}: {'v' * 16}" for i in range(1000)]), 431),
    ("a 20 KB URL", get("/v1/" + "a" * 20000), 431),
    ("header without a colon", b"GET /health HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400),
    ("control character in a header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
     400),
    ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ("HTTP/2 request line", b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    ("HTTP/9.9 request line", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ("no version", b"GET /health\r\n\r\n", 400),
    ("space in the target", b"GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("expect something else", post(headers=["Expect: 200-ok"]), 417),
    ("expect 100-continue is fine", post(headers=["Expect: 100-continue"]), 200),
    ("unknown route", get("/v2/completions"), 404),
    ("path traversal", get("/../../etc/passwd"), 404),
    ("query on an unknown route", get("/nope?a=1&b=%ZZ"), 404),
    ("GET on a POST route", get("/v1/completions"), 405),
    ("DELETE on a route", b"DELETE /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
    ("made-up method", b"BREW /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
     b"Content-Length: 0\r\n\r\n", 405),
    ("admin without its key", get("/admin/placement"), 401),
    ("admin with a wrong key", get("/admin/placement", ["Authorization: Bearer nope"]), 401),
    ("admin with basic auth", get("/admin/routing", ["Authorization: Basic YWRtaW46YWRtaW4="]),
     401),
    ("admin POST without its key", post("/admin/placement", b"{}"), 401),
    ("admin with its key (one rank: no placement)", get("/admin/placement", [ADMIN]), 404),
    ("admin POST with its key, bad placement", post("/admin/placement", b"{", [ADMIN]), 404),
]


def exchange(url, raw, timeout=20):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused from the head: what it said is read below
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    return data


def status_and_body(data):
    data = data.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, head.decode(errors="replace"), body


def test_the_corpus_has_its_size():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name,raw,status", CASES, ids=[c[0] for c in CASES])
def test_abuse_framing(server, name, raw, status):
    got, head, body = status_and_body(exchange(server.url, raw))
    assert got == status, f"{name}: {head}\n{body[:300]!r}"
    if status >= 400:
        error = json.loads(body[body.index(b"{"):])["error"]
        assert error["message"] and "type" in error and "param" in error and "code" in error
    # The server is healthy after every case.
    got, head, _ = status_and_body(exchange(server.url, get("/health")))
    assert got == 200, head
