"""The run report: one self-contained HTML file with inline SVG plots and the decision table.

Everything is rebuilt from the audit store (:mod:`cfa.reports.history`): per market, the book
mid with our bid and ask and our fills, inventory, marked and realised PnL, γ and σ over time
with the agents' decisions as markers, and our fills as signed bars; then every decision of the
run in a table. Nothing is fetched: no scripts, fonts, images or styles from anywhere, so the
file opens offline. Series are downsampled (:func:`cfa.reports.svg.downsample`) so a one-hour,
three-market run gives a file of a few hundred kB.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any

from cfa.audit import AuditReader, RunInfo, verify
from cfa.core.types import QTY_SCALE
from cfa.reports.decisions import DecisionRecord, fmt_ts, load_decisions
from cfa.reports.history import MarketWalker, run_markets, run_span_ms, walk
from cfa.reports.svg import Chart, downsample

__all__ = ["OUTCOME_COLORS", "build_report"]

BUCKETS = 800
"""Time buckets per chart: each series keeps at most 4 points per bucket."""

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

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2328;
max-width:1180px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 4px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.meta td:first-child{color:#57606a}.muted{color:#57606a}
svg.chart{display:block;margin:4px 0 10px;max-width:980px}
svg .bg{fill:#fbfcfd;stroke:#d0d7de}svg .grid{stroke:#e6e9ec;stroke-width:1;fill:none}
svg text{font:10px system-ui,sans-serif;fill:#57606a}svg .yl{text-anchor:end}
svg .xl{text-anchor:middle}svg .ct{font-size:12px;font-weight:600;fill:#1f2328}
svg .lg{text-anchor:end;font-size:11px}
.ok{color:#1a7f37;font-weight:600}.bad{color:#d1242f;font-weight:600}
.pill{display:inline-block;padding:0 6px;border-radius:9px;color:#fff;font-size:11.5px}
td.why{max-width:420px}td.t{white-space:nowrap}
"""


def _slug(market: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in market)


def _money(d: Decimal | float) -> str:
    return f"{float(d):+.2f}"


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


def _market_section(
    reader: AuditReader,
    run: RunInfo,
    market: str,
    w: MarketWalker,
    decisions: Sequence[DecisionRecord],
    t0: float,
    t1: float,
) -> str:
    slug = _slug(market)
    mine = [d for d in decisions if d.market == market]
    gov = [d for d in decisions if d.agent == "governance"]

    def chart(title: str, key: str) -> Chart:
        return Chart(title, t0, t1, plot_id=f"{key}:{slug}")

    def ds(points: Sequence[tuple[float, float | None]]) -> list[tuple[float, float | None]]:
        return downsample(points, t0, t1, BUCKETS)

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
            )
        if gov:
            c.vlines(
                [d.ts_ms / 1000.0 for d in gov],
                "#cf222e",
                "governance",
                [_decision_title(d) for d in gov],
            )
        charts.append(c)
    # 6. fills as signed bars
    c6 = chart("Our fills (contracts: + bought, − sold)", "fills")
    c6.bars([(f.ts, f.count) for f in buys], "#1a7f37", "bought")
    c6.bars([(f.ts, -f.count) for f in sells], "#d1242f", "sold")
    charts.append(c6)

    s = w.snapshot()
    fees = sum((f.fee for f in w.fills), Decimal(0))
    head = (
        f'<h2 id="m-{escape(slug)}">{escape(market)}</h2>'
        f'<p class="muted">{len(w.fills)} fills · volume '
        f"{w.account.volume / QTY_SCALE:g} contracts · fees ${fees:.2f} · realised "
        f"{_money(s.realized)} · marked {_money(s.marked)} · final inventory "
        f"{s.inventory:+g} · max |inventory| {w.account.max_abs_inventory / QTY_SCALE:g} · "
        f"{len(mine)} decisions"
        + (f" · settled {escape(w.settled)}" if w.settled else "")
        + (f" · <b>{w.gaps} book sequence gaps</b>" if w.gaps else "")
        + "</p>"
    )
    return head + "".join(c.render() for c in charts)


def _decision_table(decisions: Sequence[DecisionRecord]) -> str:
    rows = []
    for d in decisions:
        color = OUTCOME_COLORS.get(d.outcome, "#57606a")
        model = f"{d.reasoner}/{d.model}" if d.model else d.reasoner
        lat = "" if d.latency_s is None else f"{d.latency_s * 1000:.0f} ms"
        tokens = "" if d.usage is None else str(d.usage.get("total_tokens", sum(d.usage.values())))
        rows.append(
            f'<tr data-seq="{d.seq}" data-outcome="{escape(d.outcome)}" '
            f'data-decision-id="{escape(d.decision_id or "")}">'
            f'<td class="n">{d.seq}</td><td>{fmt_ts(d.ts_ms, date=False)}</td>'
            f"<td>{escape(d.decision_id or '')}</td>"
            f'<td class="t">{escape(d.market or "(portfolio)")}</td>'
            f"<td>{escape(d.agent)}</td><td>{escape(model)}</td>"
            f'<td><span class="pill" style="background:{color}">{escape(d.outcome)}</span></td>'
            f"<td>{escape(', '.join(d.tools))}</td><td>{escape(d.change_text())}</td>"
            f'<td class="n">{lat}</td><td class="n">{tokens}</td>'
            f'<td class="why">{escape(d.rationale)}</td></tr>'
        )
    return (
        '<table id="decisions"><thead><tr><th>seq</th><th>time (UTC)</th><th>id</th>'
        "<th>market</th><th>agent</th><th>reasoner/model</th><th>outcome</th><th>tools</th>"
        "<th>change</th><th>latency</th><th>tokens</th><th>rationale</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _risk_table(reader: AuditReader, run_id: str, limit: int = 200) -> str:
    rows = list(reader.rows("risk_events", run_id=run_id, limit=limit + 1))
    if not rows:
        return '<p class="muted">none</p>'
    body = "".join(
        f'<tr><td class="n">{r["seq"]}</td><td>{fmt_ts(r["ts_ms"], date=False)}</td>'
        f'<td class="t">{escape(r["market"] or "(portfolio)")}</td><td>{escape(r["kind"])}</td>'
        f"<td>{escape(str(r.get('code') or ''))}</td><td>{escape(str(r.get('state') or ''))}</td>"
        "</tr>"
        for r in rows[:limit]
    )
    more = f'<p class="muted">first {limit} shown</p>' if len(rows) > limit else ""
    return (
        "<table><thead><tr><th>seq</th><th>time (UTC)</th><th>market</th><th>kind</th>"
        f"<th>code</th><th>state</th></tr></thead><tbody>{body}</tbody></table>{more}"
    )


def build_report(reader: AuditReader, run_id: str, *, check_chain: bool = True) -> str:
    """The HTML report of run ``run_id`` (see the module doc), as one string.

    ``check_chain`` verifies the whole file's hash chain and shows the result in the header.
    Raises :class:`cfa.audit.AuditError` for an unknown run.
    """
    run = reader.run(run_id)
    start_ms, end_ms = run_span_ms(reader, run)
    t0, t1 = start_ms / 1000.0, max(end_ms / 1000.0, start_ms / 1000.0 + 1.0)
    markets = run_markets(reader, run)
    walkers = walk(reader, run.run_id, markets, record=True) if markets else {}
    decisions = load_decisions(reader, run_id=run.run_id)
    cfg = run.config or {}

    meta: list[tuple[str, str]] = [
        ("run", run.run_id),
        ("from", f"{fmt_ts(start_ms)} UTC"),
        ("to", f"{fmt_ts(end_ms)} UTC" + ("" if run.ended_ms else " (no end row: unfinished)")),
        ("duration", f"{(end_ms - start_ms) / 60000:.1f} min"),
        (
            "exchange",
            str(cfg.get("exchange", "?")) + (" (paper trading)" if cfg.get("paper") else ""),
        ),
    ]
    if cfg.get("scenarios"):
        meta.append(("scenarios", ", ".join(map(str, cfg["scenarios"]))))
    if "seed" in cfg:
        meta.append(("seed", str(cfg["seed"])))
    reasoner = cfg.get("reasoner")
    if isinstance(reasoner, dict):
        meta.append(("reasoner", f"{reasoner.get('name')} {reasoner.get('model') or ''}".strip()))
    if isinstance(cfg.get("policy"), dict):
        meta.append(("policy", str(cfg["policy"].get("name", "?"))))
    meta.append(("audit store", reader.name))
    chain_html = ""
    if check_chain:
        res = verify(reader.target)
        chain_html = (
            f'<span class="ok">OK</span> — {res.rows:,} rows, head hash {res.head.hash[:16]}…'
            if res.ok and res.head is not None
            else f'<span class="bad">BROKEN</span> at seq {res.first_bad_seq}'
            f" ({escape(res.table or '?')}): {escape(res.reason)}"
        )
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d.outcome] = counts.get(d.outcome, 0) + 1

    summary_rows = []
    tot_real = tot_mark = Decimal(0)
    for m in markets:
        w = walkers.get(m) or MarketWalker(m)
        s = w.snapshot()
        fees = sum((f.fee for f in w.fills), Decimal(0)) if w.fills else w.account.fees
        tot_real += s.realized
        tot_mark += s.marked
        summary_rows.append(
            f'<tr><td class="t"><a href="#m-{escape(_slug(m))}">'
            f"{escape(m)}</a></td>"
            f'<td class="n">{w.account.fills}</td>'
            f'<td class="n">{w.account.volume / QTY_SCALE:g}</td>'
            f'<td class="n">{fees:.2f}</td><td class="n">{_money(s.realized)}</td>'
            f'<td class="n">{_money(s.marked)}</td><td class="n">{s.inventory:+g}</td>'
            f'<td class="n">{w.account.max_abs_inventory / QTY_SCALE:g}</td></tr>'
        )
    summary_rows.append(
        f'<tr><th>total</th><td></td><td></td><td></td><td class="n">{_money(tot_real)}</td>'
        f'<td class="n">{_money(tot_mark)}</td><td></td><td></td></tr>'
    )

    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>cfa report {escape(run.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>cfa run report · {escape(run.run_id)}</h1>",
        '<table class="meta">'
        + "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in meta)
        + (f"<tr><td>audit chain</td><td>{chain_html}</td></tr>" if chain_html else "")
        + "<tr><td>decisions</td><td>"
        + escape(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
        + "</td></tr></table>",
        "<h2>Markets</h2>",
        "<table><thead><tr><th>market</th><th>fills</th><th>volume</th><th>fees $</th>"
        "<th>realised $</th><th>marked $</th><th>inventory</th><th>max |inv|</th></tr></thead>"
        "<tbody>" + "".join(summary_rows) + "</tbody></table>",
        '<p class="muted">Rebuilt from the audit store: mid from the recorded book (our own '
        "orders taken out), quotes from the orders table, PnL from the fills table marked at "
        "that mid. Hover over markers for details.</p>",
    ]
    for m in markets:
        parts.append(
            _market_section(reader, run, m, walkers.get(m) or MarketWalker(m), decisions, t0, t1)
        )
    parts.append(f"<h2>Decisions ({len(decisions)})</h2>")
    parts.append(f'<div style="overflow-x:auto">{_decision_table(decisions)}</div>')
    parts.append("<h2>Risk events</h2>")
    parts.append(_risk_table(reader, run.run_id))
    parts.append(f'<p class="muted">Generated by cfa report at {generated}.</p></body></html>\n')
    return "".join(parts)
