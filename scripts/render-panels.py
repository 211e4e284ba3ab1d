#!/usr/bin/env python3
"""Renders a Grafana dashboard's time-series panels to SVG without Grafana: each panel's queries
run as range queries against a Prometheus (template variables substituted), and each series is
drawn as a line. Standard library only. For docs images and quick looks at a test run.

  scripts/render-panels.py --prometheus http://127.0.0.1:9090 \\
      --dashboard deploy/grafana/switchyard-serving.json --var model_name=tiny \\
      --var instance=127.0.0.1:8000 --minutes 5 --out docs/images [--panel "KV cache usage"]
"""

import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 32, 56
COLORS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0"]
UNITS = {"s": "s", "percentunit": "", "reqps": "req/s"}


def substitute(expr, variables):
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return expr


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        return json.load(r)["data"]["result"]


def legend(fmt, labels):
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def nice_max(v):
    if v <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(v))
    for f in (1, 2, 2.5, 5, 10):
        if v <= f * magnitude:
            return f * magnitude
    return 10 * magnitude


def render(title, unit, series, start, end):
    """series: [(name, [(t, value)])] -> SVG text."""
    values = [v for _, points in series for _, v in points if math.isfinite(v)]
    y_max = nice_max(max(values) if values else 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t):
        return LEFT + (t - start) / max(end - start, 1e-9) * plot_w

    def y(v):
        return TOP + plot_h - v / y_max * plot_h

    def label(v):
        if unit == "percentunit":
            return f"{v * 100:.0f}%"
        text = f"{v:.3g}"
        return text + UNITS.get(unit, "")

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#181b1f"/>',
           f'<text x="{LEFT}" y="20" fill="#ccccdc" font-size="13">{escape(title)}</text>']
    for i in range(5):
        v = y_max * i / 4
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#2c3235"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" fill="#8e8e8e" '
                   f'text-anchor="end">{escape(label(v))}</text>')
    for i in range(5):
        t = start + (end - start) * i / 4
        out.append(f'<text x="{x(t):.1f}" y="{TOP + plot_h + 16}" fill="#8e8e8e" '
                   f'text-anchor="middle">{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    for i, (name, points) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path, pen_down = [], False
        for t, v in points:
            if not math.isfinite(v):
                pen_down = False
                continue
            path.append(f'{"L" if pen_down else "M"}{x(t):.1f},{y(v):.1f}')
            pen_down = True
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" '
                   f'stroke-width="1.5"><title>{escape(name)}</title></path>')
        lx = LEFT + (i % 4) * (plot_w // 4)
        ly = HEIGHT - 22 + (i // 4) * 14
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly - 3}" fill="#ccccdc">{escape(name[:28])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def panels(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboard", required=True, type=Path)
    ap.add_argument("--var", action="append", default=[], help="NAME=VALUE, repeatable")
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--rate-interval", default="1m", help="what $__rate_interval stands for")
    ap.add_argument("--panel", action="append", help="panel titles to render (default: all)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    variables = dict(v.split("=", 1) for v in args.var)
    variables["__rate_interval"] = args.rate_interval
    dashboard = json.loads(args.dashboard.read_text())
    end = time.time()
    start = end - args.minutes * 60
    step = max(1.0, (end - start) / 300)
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for p in panels(dashboard):
        if p["type"] != "timeseries" or (args.panel and p["title"] not in args.panel):
            continue
        series = []
        for t in p["targets"]:
            for r in query_range(args.prometheus, substitute(t["expr"], variables), start, end,
                                 step):
                points = [(float(ts), float(v)) for ts, v in r["values"]]
                series.append((legend(t.get("legendFormat", ""), r["metric"]), points))
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        path = args.out / f"{slug(dashboard['title'])}-{slug(p['title'])}.svg"
        path.write_text(render(p["title"], unit, series, start, end))
        print(path)
        written += 1
    if written == 0:
        sys.exit("no time-series panel matched")


if __name__ == "__main__":
    main()
