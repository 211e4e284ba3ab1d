"""A bounded soak on loopback (scripts/soak.py): 2,000 concurrent SSE streams, 200 clients whose
request head never ends and a storm of 500 clients that leave after the first byte, all at once.
Throughout, /health and /metrics answer within 1 s; afterwards nothing runs or waits, no KV block
is held, the server's descriptors are back to where they were, and a second round does not grow its
memory."""

import sys

import pytest

from conftest import ROOT, Server

sys.path.insert(0, str(ROOT / "scripts"))
import soak  # noqa: E402

pytestmark = pytest.mark.multiprocess  # it loads the machine: run it alone


@pytest.fixture(scope="module")
def soak_server(model_dir, tmp_path_factory):
    s = Server(model_dir, tmp_path_factory.mktemp("log") / "soak.log", grpc=False,
               extra_args=["--max-queued-requests", "4096", "--max-num-seqs", "256",
                           "--max-num-batched-tokens", "2048", "--header-timeout", "3",
                           "--disable-access-log"])
    yield s
    assert s.stop() == 0, s.log_tail()


def run_soak(server):
    r = soak.main(["--url", server.url, "--pid", str(server.proc.pid),
                   "--streams", "2000", "--slow", "200", "--slow-hold", "30", "--cancel", "500",
                   "--max-tokens", "8"])
    assert r["num_client_errors"] == 0, r["client_errors"]
    assert r["streams_done"] == 2000 and r["streams_broken"] == 0 and not r["refused"], r
    assert r["cancelled"] == 500
    # The head deadline (3 s) answered every slow client with 408 while the streams ran.
    assert r["slow_408"] == 200, r
    assert r["probe_failures"] == 0 and r["probe_max_ms"] < 1000, r
    assert r["settled"], r  # 0 running, 0 waiting, 0 KV blocks, descriptors back to baseline
    return r


def test_soak(soak_server):
    first = run_soak(soak_server)
    # The allocator keeps what the first round used; a second round must reuse it, not grow.
    second = run_soak(soak_server)
    assert second["after_rss_mb"] < first["after_rss_mb"] + 16, (first, second)
