"""The charts of a run, as data: what the HTML report draws as SVG and the console draws live.

Per market (rebuilt by :mod:`cfa.reports.history`): the book mid with our bid and ask and our
fills; inventory; marked and realised PnL; γ and σ over time with the agents' decisions as
vertical markers (each linking to the decision: an anchor in the report, a page in the
console); our fills as signed bars. :func:`market_charts` returns :class:`cfa.reports.svg.Chart`
objects (``render()`` → SVG, ``as_dict()`` → JSON); :func:`run_charts` the JSON of a whole run
for ``cfa console`` (``static/plots.js`` draws it with zoom on time).

Units: time in epoch seconds (UTC), prices in dollars per YES contract, sizes in contracts,
PnL in dollars, γ in 1/dollar, σ in logit units per √second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cfa.audit import AuditReader, RunInfo
from cfa.reports.decisions import DecisionRecord, fmt_ts, load_decisions
from cfa.reports.history import MarketWalker, run_markets, run_span_ms, walk
from cfa.reports.svg import Chart, downsample

__all__ = ["BUCKETS", "OUTCOME_COLORS", "market_charts", "run_charts"]

BUCKETS = 800
"""Time buckets per chart in the report: each series keeps at most 4 points per bucket."""

LIVE_BUCKETS = 4000
"""Buckets of the console's charts: finer, so zooming in on time still shows detail."""

OUTCOME_COLORS = {
    "applied": "#1f6feb",
    "keep": "#8b949e",
    "rejected": "#d1242f",
    "abstain": "#e16f24",
    "escalate": "#8250df",
    "pending_approval": "#bf8700",
    "approved": "#1a7f37",
    "denied": "#82071e",
    "no_action": "#b7bdc4",
}

Link = Callable[[DecisionRecord], str | None]
"""Where a decision marker links to (None: no link)."""


def _params_series(
    reader: AuditReader, run: RunInfo, market: str, param: str, t0: float
) -> list[tuple[float, float | None]]:
    rows = [
        r
        for r in reader.rows("param_changes", run_id=run.run_id, market=market)
        if r["param"] == param
    ]
    pts: list[tuple[float, float | None]] = []
    first: float | None = None
    if rows and rows[0]["old"] is not None:
        first = float(rows[0]["old"])
    else:
        try:
            first = float(run.config["policy"]["params"][param]["default"])
        except (KeyError, TypeError, ValueError):
            first = None
    if first is not None:
        pts.append((t0, first))
    for r in rows:
        ts = (r.get("payload") or {}).get("ts")
        pts.append((float(ts) if ts is not None else r["ts_ms"] / 1000.0, float(r["new"])))
    return pts


def _decision_title(d: DecisionRecord) -> str:
    change = d.change_text()
    return (
        f"{fmt_ts(d.ts_ms, date=False)} #{d.seq} {d.agent} {d.outcome}"
        f"{' · ' + change if change else ''}\n{d.rationale[:300]}"
    )


def market_charts(
    reader: AuditReader,
    run: RunInfo,
    market: str,
    w: MarketWalker,
    decisions: Sequence[DecisionRecord],
    t0: float,
    t1: float,
    *,
    link: Link | None = None,
    buckets: int = BUCKETS,
) -> list[Chart]:
    """The six charts of ``market`` over ``[t0, t1]`` from its replayed walker ``w`` (recorded
    series) and the run's ``decisions`` (the market's own and the governance agent's become
    markers on the γ and σ charts, linking where ``link`` says)."""
    slug = slug_of(market)
    mine = [d for d in decisions if d.market == market]
    gov = [d for d in decisions if d.agent == "governance"]

    def chart(title: str, key: str) -> Chart:
        return Chart(title, t0, t1, plot_id=f"{key}:{slug}")

    def ds(points: Sequence[tuple[float, float | None]]) -> list[tuple[float, float | None]]:
        return downsample(points, t0, t1, buckets)

    def links(ds_: Sequence[DecisionRecord]) -> list[str | None] | None:
        return None if link is None else [link(d) for d in ds_]

    # 1. mid, our quotes, fills
    c1 = chart("Mid and our quotes ($ per YES contract)", "quotes")
    c1.line(ds(w.mids), "#57606a", "mid", width=1.2)
    c1.line(ds(w.bids), "#1a7f37", "our bid", step=True, width=1.0)
    c1.line(ds(w.asks), "#d1242f", "our ask", step=True, width=1.0)
    buys = [f for f in w.fills if f.side == "bid"]
    sells = [f for f in w.fills if f.side == "ask"]

    def ftitle(f: Any) -> str:
        verb = "bought" if f.side == "bid" else "sold"
        return (
            f"{fmt_ts(f.ts * 1000, date=False)} {verb} {f.count:g} @ {f.price:.4f}"
            f" (fee {f.fee}) → inventory {f.inventory_after:+g}"
        )

    c1.markers(
        [(f.ts, f.price) for f in buys],
        "#1a7f37",
        "we bought",
        shape="up",
        titles=[ftitle(f) for f in buys],
    )
    c1.markers(
        [(f.ts, f.price) for f in sells],
        "#d1242f",
        "we sold",
        shape="down",
        titles=[ftitle(f) for f in sells],
    )
    # 2. inventory
    c2 = chart("Inventory (YES contracts)", "inventory")
    c2.line(ds([(t0, 0.0), *w.inventory]), "#8250df", "inventory", step=True)
    # 3. PnL
    c3 = chart("PnL ($): marked at the mid, and realised", "pnl")
    c3.line(ds([(t0, 0.0), *w.pnl]), "#1f6feb", "marked")
    c3.line(ds([(t0, 0.0), *w.realized]), "#8b949e", "realised", step=True, dash="4,3")
    # 4-5. gamma and sigma with decision markers
    charts = [c1, c2, c3]
    for param, label in (("gamma", "γ risk aversion (1/$)"), ("sigma", "σ volatility (logit/√s)")):
        c = chart(f"{label} with decisions", param)
        c.line(_params_series(reader, run, market, param, t0), "#0a3069", param, step=True)
        by_outcome: dict[str, list[DecisionRecord]] = {}
        for d in mine:
            by_outcome.setdefault(d.outcome, []).append(d)
        for outcome, ds_ in sorted(by_outcome.items()):
            c.vlines(
                [d.ts_ms / 1000.0 for d in ds_],
                OUTCOME_COLORS.get(outcome, "#57606a"),
                outcome,
                [_decision_title(d) for d in ds_],
                links(ds_),
            )
        if gov:
            c.vlines(
                [d.ts_ms / 1000.0 for d in gov],
                "#cf222e",
                "governance",
                [_decision_title(d) for d in gov],
                links(gov),
            )
        charts.append(c)
    # 6. fills as signed bars
    c6 = chart("Our fills (contracts: + bought, − sold)", "fills")
    c6.bars([(f.ts, f.count) for f in buys], "#1a7f37", "bought")
    c6.bars([(f.ts, -f.count) for f in sells], "#d1242f", "sold")
    charts.append(c6)
    return charts


def slug_of(market: str) -> str:
    """``market`` with every character but letters, digits, ``-_.`` replaced by ``_`` (ids)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in market)


def run_charts(
    reader: AuditReader, run_id: str, *, link: Link | None = None, buckets: int = LIVE_BUCKETS
) -> dict[str, Any]:
    """Every market's charts of run ``run_id`` as JSON: ``run_id``, ``t0``/``t1`` (epoch s, the
    run's span so far), ``markets`` (each ``market``, ``fills``, ``decisions`` and ``charts``,
    :meth:`Chart.as_dict`). Replays the whole run (:func:`walk`): seconds for a long run.
    Raises :class:`cfa.audit.AuditError` for an unknown run."""
    run = reader.run(run_id)
    start_ms, end_ms = run_span_ms(reader, run)
    t0, t1 = start_ms / 1000.0, max(end_ms / 1000.0, start_ms / 1000.0 + 1.0)
    markets = run_markets(reader, run)
    walkers = walk(reader, run.run_id, markets, record=True) if markets else {}
    decisions = load_decisions(reader, run_id=run.run_id)
    out = []
    for m in markets:
        w = walkers.get(m) or MarketWalker(m, record=True)
        charts = market_charts(reader, run, m, w, decisions, t0, t1, link=link, buckets=buckets)
        out.append(
            {
                "market": m,
                "slug": slug_of(m),
                "fills": len(w.fills),
                "decisions": sum(1 for d in decisions if d.market == m),
                "charts": [c.as_dict() for c in charts],
            }
        )
    return {
        "run_id": run.run_id,
        "t0": t0,
        "t1": t1,
        "ended": run.ended_ms is not None,
        "markets": out,
    }
