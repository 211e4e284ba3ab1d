"""deploy/ end to end: a real Prometheus (Debian's `prometheus`) loads deploy/prometheus's rule
files and scrapes a real `switchyard serve --ep-size 2` (two rank processes, live rebalancing on)
while `switchyard bench` loads it. Then every recording rule, and every query of every panel of
every dashboard in deploy/grafana (template variables resolved as Grafana resolves them), is
evaluated through the Prometheus HTTP API and must return data; every metric name they mention
must be one the server exports (or a recording rule)."""

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import time
from pathlib import Path

import pytest
import requests

from conftest import ADMIN, BIN, MODEL_NAME, Server, free_port

pytestmark = pytest.mark.multiprocess
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
RULE_FILES = [DEPLOY / "prometheus" / "recording_rules.yml", DEPLOY / "prometheus" / "alerts.yml"]
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
RENDER = DEPLOY.parent / "scripts" / "render-panels.py"
# What Grafana's $__rate_interval would be; long enough to cover the whole bench run.
RATE_INTERVAL = "1m"
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")


def metric_names(expr):
    """Metric names an expression mentions: identifiers outside string literals that name one of
    ours, vLLM's or a recording rule (the other identifiers are functions, labels, keywords)."""
    return {n for n in NAME.findall(STRING.sub('""', expr))
            if "switchyard" in n or n.startswith("vllm:") or n == "up"}


def query(prom, expr):
    r = requests.get(prom + "/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, f"{expr}: {r.text}"
    return r.json()["data"]["result"]


@pytest.fixture(scope="module")
def ep_server(model_dir, tmp_path_factory):
    s = Server(model_dir, tmp_path_factory.mktemp("log") / "monitoring.log", grpc=False,
               threads=1, extra_args=["--ep-size", "2", "--expert-slots-per-rank", "5",
                                      "--rebalance-interval", "1", "--rebalance-min-gain", "0"])
    yield s
    assert s.stop() == 0, s.log_tail()


@pytest.fixture(scope="module")
def prometheus(ep_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{", ".join(json.dumps(str(f)) for f in RULE_FILES)}]
scrape_configs:
  - job_name: switchyard
    static_configs:
      - targets: ["127.0.0.1:{ep_server.port}"]
""")
    log = open(tmp / "prom.log", "w")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        assert proc.poll() is None, (tmp / "prom.log").read_text()
        try:
            if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.time() < deadline, "prometheus not ready in 30 s"
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def loaded(ep_server, prometheus, tmp_path_factory):
    """Runs the bench against the server, then waits for a scrape and a rule evaluation after it.
    Returns the names of the samples the server exports."""
    deadline = time.time() + 20
    while not query(prometheus, "switchyard_request_success_total"):  # a scrape before the load
        assert time.time() < deadline, "prometheus did not scrape the server"
        time.sleep(0.2)
    # About 5 s of Poisson arrivals, so that several scrapes see the load.
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    r = subprocess.run([BIN, "bench", "--url", ep_server.url, "--request-rate", "8",
                        "--max-concurrency", "4", "--num-prompts", "40", "--input-len", "24",
                        "--output-len", "8", "--vocab-size", "1000", "--result-json", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads(out.read_text())["completed"] == 40
    # Every request's end has been scraped, and the rules evaluated over it.
    done = ep_server.metric("switchyard_request_success_total")
    deadline = time.time() + 20
    while not query(prometheus, f"sum(switchyard_request_success_total) >= {done}") or not query(
            prometheus, "model_instance:switchyard_request_success:rate1m > 0"):
        assert time.time() < deadline, "prometheus did not catch up with the bench"
        time.sleep(0.5)
    return {name for name, _, _ in ep_server.metrics()}


def rules(prom):
    groups = requests.get(prom + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    return [rule for g in groups for rule in g["rules"]]


def resolve_variables(prom, dashboard, ep_server):
    """Grafana's template variables: each label_values() query is run in order (later ones use
    the earlier values), and the first value is taken; the data source is Prometheus itself."""
    values = {"__rate_interval": RATE_INTERVAL}
    for v in dashboard["templating"]["list"]:
        if v["type"] == "datasource":
            assert v["query"] == "prometheus"
            continue
        assert v["type"] == "query", v["name"]
        m = LABEL_VALUES.match(substitute(v["query"]["query"], values))
        assert m, v["query"]
        r = requests.get(prom + "/api/v1/series", params={"match[]": m.group(1)}, timeout=10)
        found = sorted({s[m.group(2)] for s in r.json()["data"] if m.group(2) in s})
        assert found, f"variable {v['name']}: {v['query']['query']} found nothing"
        values[v["name"]] = found[0]
    assert values["model_name"] == MODEL_NAME
    assert values["instance"] == f"127.0.0.1:{ep_server.port}"
    return values


def substitute(expr, values):
    # Longest names first, so that $instance is not taken for a prefix of another name.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr


def panels(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def test_recording_rules_and_alerts_evaluate(prometheus, loaded):
    all_rules = rules(prometheus)
    recorded = {r["name"] for r in all_rules if r["type"] == "recording"}
    assert len(recorded) >= 10 and any(r["type"] == "alerting" for r in all_rules)
    for rule in all_rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        for name in metric_names(rule["query"]):
            assert name in loaded or name in recorded or name == "up", \
                f"{rule['name']} uses {name}, which the server does not export"
        if rule["type"] == "recording":
            assert query(prometheus, rule["query"]), f"{rule['name']}: {rule['query']} no data"
            assert query(prometheus, rule["name"]), f"{rule['name']} recorded nothing"
            assert any(r["value"][1] != "NaN" for r in query(prometheus, rule["name"])), \
                f"{rule['name']} is NaN (no observations in the window)"
    # A healthy, balanced-enough server under load fires none of the critical alerts.
    firing = [a["labels"]["alertname"] for a in
              requests.get(prometheus + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
              if a["state"] == "firing" and a["labels"].get("severity") == "critical"]
    assert not firing, firing


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_panel_returns_data(prometheus, loaded, ep_server, path):
    dashboard = json.loads(path.read_text())
    values = resolve_variables(prometheus, dashboard, ep_server)
    recorded = {r["name"] for r in rules(prometheus) if r["type"] == "recording"}
    checked = 0
    for p in panels(dashboard):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            for name in metric_names(t["expr"]):
                assert name in loaded or name in recorded, \
                    f"panel {p['title']!r} uses {name}, which the server does not export"
            expr = substitute(t["expr"], values)
            assert "$" not in expr, f"panel {p['title']!r}: unresolved variable in {expr}"
            result = query(prometheus, expr)
            assert result, f"panel {p['title']!r}: {expr} returned no data"
            assert any(r["value"][1] != "NaN" for r in result), \
                f"panel {p['title']!r}: {expr} is NaN (no observations in the window)"
            checked += 1
    assert checked >= 10


def test_placement_series_match_admin_placement(prometheus, loaded, ep_server):
    """The placement gauges are the placement the server serves (GET /admin/placement); read
    between two equal placements, since live rebalancing may move experts meanwhile."""
    for _ in range(20):
        before = requests.get(ep_server.url + "/admin/placement", headers=ADMIN, timeout=5).json()
        samples = ep_server.metrics()
        if requests.get(ep_server.url + "/admin/placement", headers=ADMIN, timeout=5).json() == before:
            break
    got = {(ls["layer"], ls["rank"], ls["slot"]): v for n, ls, v in samples
           if n == "switchyard_ep_placement_expert"}
    want = {(str(layer["layer"]), str(rank), str(slot)): expert
            for layer in before["layers"] for rank, slots in enumerate(layer["slots"])
            for slot, expert in enumerate(slots)}
    assert got == want


def test_render_panels_draws_every_series(prometheus, loaded, ep_server, tmp_path):
    """scripts/render-panels.py: one SVG per time-series panel, one line per series returned."""
    dashboard = DEPLOY / "grafana" / "switchyard-serving.json"
    r = subprocess.run([sys.executable, str(RENDER), "--prometheus", prometheus, "--dashboard",
                        str(dashboard), "--var", f"model_name={MODEL_NAME}", "--var",
                        f"instance=127.0.0.1:{ep_server.port}", "--minutes", "1",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    timeseries = [p for p in json.loads(dashboard.read_text())["panels"]
                  if p["type"] == "timeseries"]
    svgs = sorted(tmp_path.glob("*.svg"))
    assert len(svgs) == len(timeseries) == len(r.stdout.split())
    ns = "{http://www.w3.org/2000/svg}"
    for svg in svgs:
        lines = [p for p in ET.parse(svg).getroot().iter(ns + "path")]
        assert lines, svg.name
        # Every line has at least two points (a scrape every second over the bench).
        assert all(p.get("d").count("L") >= 1 for p in lines), svg.name
