"""The eval HTML report: one self-contained document, escaped, one SVG per plot."""

from __future__ import annotations

import math
import re

from eval_jobs import make_result

from cfa.eval.report import render_report
from cfa.eval.stats import summarize

BASE = "static-as"
HOSTILE = '<script>alert("x")</script>&\'"'
HOSTILE_ST = "agents:scripted:<img src=x onerror=alert(1)>"


def _results(scenarios: list[str], strategies: list[str], n: int = 6) -> list:
    out = []
    for k, sc in enumerate(scenarios):
        for j, st in enumerate(strategies):
            for seed in range(n):
                pnl = 2.0 * j - 1.0 + math.sin(seed + k)
                equity = [pnl * (m + 1) / 5 + 0.1 * math.cos(m * seed) for m in range(5)]
                out.append(make_result(sc, st, seed, pnl, equity=equity))
    return out


def test_report_renders_self_contained() -> None:
    res = _results(["calm", "regime-shift"], [BASE, "naive", "agents:heuristic"])
    res.append(make_result("calm", "naive", 99, None))  # an errored run is listed
    html = render_report(summarize(res, BASE), res, "eval: smoke")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<title>eval: smoke</title>" in html
    # nothing fetched: no scripts, no external references of any kind
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)\s*=|url\(|@import|<link""", html, re.I)
    # three plots per scenario, each one <svg>
    assert html.count("<svg") == 3 * 2 == html.count("</svg>")
    for kind in ("pnl", "pairs", "equity"):
        for sc in ("calm", "regime-shift"):
            assert f'data-plot="{kind}-{sc}"' in html
    assert "Summary" in html and "Targets" in html
    assert "Errored runs (1)" in html and "RuntimeError: it broke" in html
    # the table carries the numbers and the pooled rows
    assert "agents:heuristic" in html and ">all<" in html


def test_report_escapes_hostile_names() -> None:
    res = _results([HOSTILE], [BASE, HOSTILE_ST])
    bad = make_result(HOSTILE, BASE, 42, None)
    bad = bad.model_copy(update={"error": "ValueError: <b onmouseover=alert(2)>x</b>"})
    res.append(bad)
    html = render_report(summarize(res, BASE), res, f"title {HOSTILE}")
    assert "<script" not in html.lower()
    assert "<img" not in html and "<b " not in html
    assert "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")  # only as text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;&quot;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("<svg") == 3


def test_report_without_successful_runs_or_baseline() -> None:
    res = [make_result("calm", "naive", s, None) for s in range(3)]
    res += [make_result("informed-flow", "naive", s, 1.0 + s) for s in range(3)]
    html = render_report(summarize(res, BASE), res, "degenerate")
    assert html.count("<svg") == 3 * 2  # empty plots say so instead of vanishing
    assert "no successful runs" in html
    assert "no paired runs against static-as" in html
    assert "n/a" in html  # targets not measurable
