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

from cfa.audit import AuditReader, RunInfo, verify
from cfa.core.types import QTY_SCALE
from cfa.reports.charts import BUCKETS, OUTCOME_COLORS, market_charts, slug_of
from cfa.reports.decisions import DecisionRecord, fmt_ts, load_decisions
from cfa.reports.history import MarketWalker, run_markets, run_span_ms, walk

__all__ = ["build_report"]

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


def _money(d: Decimal | float) -> str:
    return f"{float(d):+.2f}"


def _market_section(
    reader: AuditReader,
    run: RunInfo,
    market: str,
    w: MarketWalker,
    decisions: Sequence[DecisionRecord],
    t0: float,
    t1: float,
) -> str:
    slug = slug_of(market)
    mine = [d for d in decisions if d.market == market]
    charts = market_charts(
        reader, run, market, w, decisions, t0, t1, link=lambda d: f"#d-{d.seq}", buckets=BUCKETS
    )
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
            f'<tr id="d-{d.seq}" data-seq="{d.seq}" data-outcome="{escape(d.outcome)}" '
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
            f'<tr><td class="t"><a href="#m-{escape(slug_of(m))}">'
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
