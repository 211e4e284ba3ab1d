"""`switchyard bench` against the real server: every request completes, token counts add up
with what the server itself counted (from /metrics), and the JSON report has every field."""

import json
import subprocess

from conftest import BIN


def test_bench_reports_consistent_numbers(server, tmp_path):
    gen_before = server.metric("switchyard_generation_tokens_total")
    out = tmp_path / "bench.json"
    r = subprocess.run([BIN, "bench", "--url", server.url, "--concurrency", "4", "--num-prompts",
                        "12", "--input-len", "32", "--output-len", "8", "--vocab-size", "1000",
                        "--result-json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    report = json.loads(out.read_text())
    assert report["completed"] == 12 and report["failed"] == 0
    assert report["total_output_tokens"] == 96
    assert report["total_input_tokens"] == 12 * 32
    assert server.metric("switchyard_generation_tokens_total") - gen_before == 96
    for key in ("ttft", "tpot", "itl", "e2el"):
        assert report[f"mean_{key}_ms"] > 0
        assert report[f"p99_{key}_ms"] >= report[f"median_{key}_ms"] > 0
    assert report["output_throughput"] > 0 and report["request_throughput"] > 0
    assert "TTFT" in r.stdout or "Time to First Token" in r.stdout
