#!/usr/bin/env python3
"""A bounded soak of a running `switchyard serve` on loopback: many concurrent SSE streams, slow
clients that never finish their request head, and a storm of clients that cancel after the first
bytes, all at once, while a prober times /health and /metrics. Prints the numbers and, with
--json, writes them; the integration test (tests/integration/python/test_soak.py) asserts on them.

  python3 scripts/soak.py --url http://127.0.0.1:8000 --pid PID --streams 2000 --slow 200 \
      --cancel 500 --max-tokens 16

Only the standard library: raw HTTP/1.1 over asyncio streams, so the client side holds thousands
of connections cheaply and measures the server, not an HTTP library.
"""

import argparse
import asyncio
import json
import os
import re
import time
from urllib.parse import urlparse


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def completion_request(host, model, max_tokens, stream, prompt_tokens, seed):
    # Token-id prompts skip tokenization, so the soak measures serving, not the tokenizer.
    body = json.dumps({"model": model, "prompt": [1 + (seed + i) % 200 for i in range(prompt_tokens)],
                       "max_tokens": max_tokens, "stream": stream, "ignore_eos": True,
                       "temperature": 0})
    return (f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    return int(head[9:12])


class Soak:
    def __init__(self, args):
        u = urlparse(args.url)
        self.host, self.port = u.hostname, u.port
        self.args = args
        self.heads = 0          # streams whose 200 head arrived
        self.done = 0           # streams that read to [DONE]
        self.cancelled = 0      # storm clients that left after the first bytes
        self.refused = {}       # status -> count, for streams that did not get 200
        self.broken = 0         # streams cut off before [DONE]
        self.slow_408 = 0       # slow-header clients answered 408
        self.slow_closed = 0    # slow-header clients closed without an answer
        self.probe_ms = []      # /health and /metrics latencies
        self.probe_failures = 0
        self.peak_rss = 0
        self.all_heads_rss = None
        self.stop_probing = False
        self.all_open = asyncio.Event()  # every stream's head arrived: all are open at once

    async def stream(self, i):
        req = completion_request(self.host, self.args.model, self.args.max_tokens, True,
                                 self.args.prompt_tokens, i)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(req)
            await writer.drain()
            status = await read_head(reader)
            if status != 200:
                self.refused[status] = self.refused.get(status, 0) + 1
                return
            self.heads += 1
            if self.heads == self.args.streams:
                if self.args.pid:
                    self.all_heads_rss = rss_bytes(self.args.pid)
                self.all_open.set()
            # Hold the connection until every stream is open, so they are concurrent for sure.
            await asyncio.wait_for(self.all_open.wait(), timeout=120)
            tail = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    self.broken += 1
                    return
                tail = (tail + chunk)[-64:]
                if b"data: [DONE]" in tail:
                    self.done += 1
                    return
        finally:
            writer.close()

    async def cancel(self, i):
        req = completion_request(self.host, self.args.model, 4096, True, self.args.prompt_tokens,
                                 10_000 + i)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(req)
        await writer.drain()
        try:
            await read_head(reader)
            await reader.read(1)
        finally:
            writer.close()
            self.cancelled += 1

    async def slow_header(self):
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(f"GET /health HTTP/1.1\r\nHost: {self.host}\r\nX-Slow: ".encode())
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(4096), timeout=self.args.slow_hold)
            if data.startswith(b"HTTP/1.1 408"):
                self.slow_408 += 1
            else:
                self.slow_closed += 1
        except asyncio.TimeoutError:
            pass
        finally:
            writer.close()

    async def probe_once(self, path):
        start = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n"
                         .encode())
            await writer.drain()
            status = await asyncio.wait_for(read_head(reader), timeout=5)
            await reader.read()
            writer.close()
            if status != 200:
                self.probe_failures += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            self.probe_failures += 1
        self.probe_ms.append((time.perf_counter() - start) * 1000)

    async def prober(self):
        while not self.stop_probing:
            await self.probe_once("/health")
            await self.probe_once("/metrics")
            if self.args.pid:
                rss = rss_bytes(self.args.pid)
                self.peak_rss = max(self.peak_rss, rss)
            await asyncio.sleep(0.1)

    async def run(self):
        prober = asyncio.create_task(self.prober())
        slow = [asyncio.create_task(self.slow_header()) for _ in range(self.args.slow)]
        streams = []
        for i in range(self.args.streams):  # connect in bursts, as a fleet of clients would
            streams.append(asyncio.create_task(self.stream(i)))
            if i % 200 == 199:
                await asyncio.sleep(0.01)
        storm = [asyncio.create_task(self.cancel(i)) for i in range(self.args.cancel)]
        results = await asyncio.gather(*streams, *storm, *slow, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        self.stop_probing = True
        await prober
        return errors


def metric(url, name):
    import urllib.request
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def settle(url, pid, baseline_fds, timeout=10):
    """Waits until nothing runs or waits and the server's descriptors are back near baseline."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        idle = (metric(url, "switchyard_num_requests_running") == 0 and
                metric(url, "switchyard_num_requests_waiting") == 0 and
                metric(url, "switchyard_kv_cache_blocks_used") == 0)
        if idle and (not pid or open_fds(pid) <= baseline_fds + 4):
            return True
        time.sleep(0.1)
    return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--pid", type=int, default=0, help="the server's pid (RSS and descriptors)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--streams", type=int, default=2000)
    p.add_argument("--slow", type=int, default=200, help="clients whose request head never ends")
    p.add_argument("--slow-hold", type=float, default=30, help="seconds a slow client waits")
    p.add_argument("--cancel", type=int, default=500, help="clients that leave after 1 byte")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--prompt-tokens", type=int, default=8)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    base_rss = rss_bytes(args.pid) if args.pid else 0
    base_fds = open_fds(args.pid) if args.pid else 0
    soak = Soak(args)
    start = time.time()
    errors = asyncio.run(soak.run())
    elapsed = time.time() - start
    settled = settle(args.url, args.pid, base_fds)
    after_rss = rss_bytes(args.pid) if args.pid else 0
    probes = sorted(soak.probe_ms)
    result = {
        "streams": args.streams, "slow_clients": args.slow, "cancel_storm": args.cancel,
        "max_tokens": args.max_tokens, "seconds": round(elapsed, 2),
        "streams_done": soak.done, "streams_broken": soak.broken, "refused": soak.refused,
        "cancelled": soak.cancelled, "slow_408": soak.slow_408, "slow_closed": soak.slow_closed,
        "client_errors": [repr(e) for e in errors[:5]], "num_client_errors": len(errors),
        "probes": len(probes), "probe_failures": soak.probe_failures,
        "probe_p50_ms": round(probes[len(probes) // 2], 2) if probes else None,
        "probe_max_ms": round(probes[-1], 2) if probes else None,
        "settled": settled,
        "baseline_rss_mb": round(base_rss / 2**20, 1), "peak_rss_mb": round(soak.peak_rss / 2**20, 1),
        "after_rss_mb": round(after_rss / 2**20, 1),
        # Server memory per open stream: RSS when all were open, over the baseline, per stream
        # (the connection, its parsed request, and the engine's queued request).
        "rss_per_open_stream": (round((soak.all_heads_rss - base_rss) / args.streams)
                                if soak.all_heads_rss else None),
        "baseline_fds": base_fds, "after_fds": open_fds(args.pid) if args.pid else 0,
    }
    for k, v in result.items():
        print(f"{k:24s} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
