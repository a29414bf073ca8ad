"""``cfa report``: one self-contained HTML file with a plot of each kind per market and the
decision table of the run; the history it plots agrees with the run's own summary."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import typer
from sim_run import record_sim_run
from typer.testing import CliRunner

from cfa.audit import AuditReader
from cfa.cli.report import report
from cfa.reports.history import walk
from cfa.reports.svg import downsample

runner = CliRunner()
app = typer.Typer()
app.command()(report)

PLOTS = ("quotes", "inventory", "pnl", "gamma", "sigma", "fills")


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("report") / "run.db"
    run_id = asyncio.run(record_sim_run(db, ["calm", "informed-flow"], 420.0, "report"))
    return db, run_id


class _Doc(HTMLParser):
    """Collects the SVG charts (plot id -> path d attributes), URLs and decision-table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: dict[str, list[str]] = {}
        self.urls: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.tags: set[str] = set()
        self._plot: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        for k in ("src", "href", "xlink:href", "action"):
            if k in a:
                self.urls.append(a[k])
        if tag == "svg":
            self._plot = a.get("data-plot", "")
            self.plots[self._plot] = []
        elif tag == "path" and self._plot is not None:
            self.plots[self._plot].append(a.get("d", ""))
        elif tag == "tr" and "data-seq" in a:
            self.rows.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._plot = None


def test_report_is_self_contained_with_plots_and_decisions(
    run_db: tuple[Path, str], tmp_path: Path
) -> None:
    db, run_id = run_db
    out = tmp_path / "report.html"
    res = runner.invoke(app, [run_id, "--out", str(out), "--db", str(db)])
    assert res.exit_code == 0, res.output
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert 10_000 < len(html) < 3_000_000
    doc = _Doc()
    doc.feed(html)
    doc.close()
    # Nothing fetched: no external URL anywhere, no script or stylesheet links, no images.
    assert "http://" not in html and "https://" not in html
    assert all(u.startswith("#") for u in doc.urls), doc.urls
    assert not {"script", "link", "img", "iframe"} & doc.tags
    # Every market has each plot, drawn with paths; the series plots carry real lines.
    with sqlite3.connect(db) as c:
        summary = json.loads(c.execute("SELECT payload FROM runs WHERE kind = 'end'").fetchone()[0])
        decisions = c.execute("SELECT seq, outcome FROM decisions ORDER BY seq").fetchall()
        filled = {m for (m,) in c.execute("SELECT DISTINCT market FROM fills")}
    markets = [m["ticker"] for m in summary["markets"]]
    assert len(markets) == 2 and filled
    for m in markets:
        for kind in PLOTS:
            paths = doc.plots.get(f"{kind}:{m}")
            assert paths, f"no {kind} plot for {m}"
            drawn = [d for d in paths if d.count("L") + d.count("H") + d.count("V") >= 1]
            assert drawn, f"{kind} plot of {m} draws nothing"
        quotes = doc.plots[f"quotes:{m}"]
        assert max(d.count("L") for d in quotes) > 50, "the mid line has points"
    for m in filled:
        assert sum(d.count("V") for d in doc.plots[f"fills:{m}"]) > 0
    # The decision table is the run's decisions, in order, with their outcomes.
    assert [(int(r["data-seq"]), r["data-outcome"]) for r in doc.rows] == [
        tuple(d) for d in decisions
    ]
    assert run_id in html and "OK" in html


def test_history_matches_the_runs_own_summary(run_db: tuple[Path, str]) -> None:
    db, run_id = run_db
    with AuditReader.open(db) as reader:
        run = reader.run(run_id)
        walkers = walk(reader, run_id)
    assert run.summary is not None
    for m in run.summary["markets"]:
        s = walkers[m["ticker"]].snapshot()
        assert s.fills == m["fills"]
        assert s.inventory == pytest.approx(m["inventory"])
        assert s.realized == Decimal(m["realized_pnl"])
        assert abs(s.marked - Decimal(m["marked_pnl"])) < Decimal("0.0001")


def test_unknown_run_and_bad_paths_are_one_line(run_db: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = run_db
    cases: list[list[str]] = [
        ["nope", "--db", str(db), "--out", str(tmp_path / "r.html")],
        ["latest", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path / "r.html")],
        ["latest", "--db", str(db), "--out", str(tmp_path / "no" / "r.html")],
    ]
    for args in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output


def test_downsample_keeps_extremes_and_gaps() -> None:
    pts: list[tuple[float, Any]] = [(float(i), float(i % 100)) for i in range(100_000)]
    pts[50_000] = (50_000.0, None)
    pts[70_000] = (70_000.0, 1e6)
    out = downsample(pts, 0.0, 100_000.0, 500)
    assert len(out) <= 4 * 500 + 1
    assert (70_000.0, 1e6) in out and (50_000.0, None) in out
    assert [t for t, _ in out] == sorted(t for t, _ in out)
    assert min(v for _, v in out if v is not None) == 0.0


def test_decision_markers_link_to_the_decision_and_charts_are_data(
    run_db: tuple[Path, str], tmp_path: Path
) -> None:
    from cfa.reports.charts import run_charts

    db, run_id = run_db
    out = tmp_path / "report.html"
    assert runner.invoke(app, [run_id, "--out", str(out), "--db", str(db)]).exit_code == 0
    doc = _Doc()
    doc.feed(out.read_text(encoding="utf-8"))
    rows = {f"#d-{r['data-seq']}" for r in doc.rows}
    links = [u for u in doc.urls if u.startswith("#d-")]
    assert links and set(links) <= rows, "every decision marker links to its table row"
    with AuditReader.open(db) as reader:
        data = run_charts(reader, run_id, link=lambda d: f"/decisions/{d.seq}")
        gov = sum(1 for r in reader.rows("decisions", run_id=run_id) if r["agent"] == "governance")
    data = json.loads(json.dumps(data, allow_nan=False))  # plain JSON, no NaN
    assert data["run_id"] == run_id and data["t1"] > data["t0"]
    assert len(data["markets"]) == 2 and all(m["decisions"] > 0 for m in data["markets"])
    for m in data["markets"]:
        kinds = [c["id"].split(":")[0] for c in m["charts"]]
        assert kinds == list(PLOTS)
        for c in m["charts"]:
            for s in c["series"]:
                ts = [p[0] for p in s["points"]]
                assert ts == sorted(ts) and all(data["t0"] <= t <= data["t1"] for t in ts)
        marks = [
            s
            for c in m["charts"]
            if c["id"].startswith("gamma:")
            for s in c["series"]
            if s["kind"] == "vlines"
        ]
        assert sum(len(s["points"]) for s in marks) == m["decisions"] + gov  # its own, gov's
        assert all(link.startswith("/decisions/") for s in marks for link in s["links"])
