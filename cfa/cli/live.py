"""Rich rendering of a running session: the live table, the progress bar, the final summary."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cfa.cli.tables import add_ticker_column
from cfa.core.types import PRICE_SCALE, QTY_SCALE, Side
from cfa.runtime.session import MarketSummary, Session

if TYPE_CHECKING:
    from cfa.audit import AuditStore
    from cfa.audit.anchors import AnchorLog


def _px(p: int | None) -> str:
    return "-" if p is None else f"{p / PRICE_SCALE:.4f}".rstrip("0").rstrip(".")


def _short(text: str, width: int = 56) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _money(d: Decimal) -> str:
    return f"{d:+.2f}"


_LIVE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("state", "left", 7),
    ("mid", "right", 6),
    ("bid", "right", 6),
    ("ask", "right", 6),
    ("inv", "right", 5),
    ("fills", "right", 5),
    ("real $", "right", 7),
    ("mark $", "right", 7),
    ("γ", "right", 5),
    ("σ", "right", 7),
    ("last decision", "left", 0),
)
_NARROW_DROP = ("σ", "γ", "fills")
"""Columns the narrow table leaves out, in this order, while it does not fit the terminal."""


def live_table(session: Session, wide: bool = True, width: int | None = None) -> Table:
    """One row per market: mid, our quotes, inventory, PnL, γ, σ, state (+ last decision).

    Tickers always show whole. Given the terminal ``width``, the narrow table drops σ, γ and
    fills (in that order) while it would not fit, and the wide one narrows the last decision.
    """
    rows: list[dict[str, str]] = []
    for ticker, loop in session.loops.items():
        mp = session.params.get(ticker)
        bid, ask = loop.resting[Side.BID], loop.resting[Side.ASK]
        ts = session.states.effective(ticker)
        state = loop.state.value if ts.value == "ACTIVE" else ts.value
        note = "" if session.agents is None else session.agents.last_rationale.get(ticker, "")
        cells = [
            ticker,
            state,
            "-" if loop.mid is None else f"{loop.mid:.4f}",
            _px(bid.price if bid else None),
            _px(ask.price if ask else None),
            f"{loop.account.inventory / QTY_SCALE:+g}",
            str(loop.account.fills),
            _money(loop.account.realized),
            _money(loop.account.marked(loop.mid)),
            f"{mp.gamma:.3g}",
            f"{mp.sigma:.3g}",
            _short(note),
        ]
        rows.append(dict(zip(["market", *(c for c, _, _ in _LIVE_COLUMNS)], cells, strict=True)))
    cols = [c for c in _LIVE_COLUMNS if wide or c[0] not in ("real $", "last decision")]

    gap = 3 if wide else 2  # an edge or separator and the padding (collapsed when narrow)

    def need(c: tuple[str, str, int]) -> int:
        return max([c[2], len(c[0])] + [len(r[c[0]]) for r in rows]) + gap

    note_width = 48
    if width is not None:
        used = max([len("market")] + [len(t) for t in session.loops]) + gap
        fixed = [c for c in cols if c[0] != "last decision"]
        for name in _NARROW_DROP if not wide else ():
            if used + sum(need(c) for c in fixed) <= width:
                break
            fixed = [c for c in fixed if c[0] != name]
        used += sum(need(c) for c in fixed)
        cols = [c for c in cols if c in fixed or c[0] == "last decision"]
        note_width = max(min(note_width, width - used - gap), 13)
    t = Table(header_style="bold", pad_edge=False, box=box.SIMPLE_HEAD, collapse_padding=not wide)
    add_ticker_column(t, "market", session.loops)
    for col, justify, min_width in cols:
        last = col == "last decision"
        t.add_column(
            col,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis",
            min_width=min_width or None,
            max_width=note_width if last else None,
        )
    for r in rows:
        t.add_row(r["market"], *(r[c] for c, _, _ in cols))
    return t


class LiveView:
    """The table plus a progress bar over simulated (or wall) time."""

    def __init__(
        self, session: Session, start_ts: float, duration: float, width: int = 160
    ) -> None:
        self.session = session
        self.wide = width >= 140
        self.width = width
        self.start_ts = start_ts
        self.duration = duration
        self.progress = Progress(
            TextColumn("[bold]simulated"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[events]} events"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("run", total=duration, events=0)

    def render(self) -> RenderableType:
        s = self.session
        done = min(max(s.now - self.start_ts, 0.0), self.duration) if s.now else 0.0
        self.progress.update(self.task, completed=done, events=f"{s.events:,}")
        parts: list[RenderableType] = [live_table(s, self.wide, self.width)]
        if not self.wide and s.agents is not None and s.agents.last_rationale:
            notes = Table.grid(padding=(0, 1))
            longest = max(len(t) for t in s.agents.last_rationale)
            add_ticker_column(notes, "", s.agents.last_rationale, style="bold")
            notes.add_column(
                no_wrap=True, overflow="ellipsis", max_width=max(self.width - longest - 2, 10)
            )
            for ticker, text in s.agents.last_rationale.items():
                notes.add_row(ticker, text)
            parts.append(notes)
        parts.append(self.progress)
        return Group(*parts)


_SUMMARY_COLUMNS = (
    "market",
    "state",
    "fills",
    "volume",
    "fees $",
    "realised $",
    "marked $",
    "max |inv|",
)


def summary_table(rows: list[MarketSummary], width: int | None = None) -> Table:
    """The end-of-run figures per market and in total. Tickers always show whole; given the
    terminal ``width``, a table that would not fit with borders is drawn without them (and with
    the live table's shorter headers)."""
    cells: list[list[str]] = []
    tot_fees = tot_real = tot_mark = Decimal(0)
    for r in rows:
        cells.append(
            [
                r.ticker,
                r.state if r.error is None else f"{r.state}: {r.error}",
                str(r.fills),
                f"{r.volume:g}",
                f"{r.fees:.2f}",
                _money(r.realized_pnl),
                _money(r.marked_pnl),
                f"{r.max_abs_inventory:g}",
            ]
        )
        tot_fees += r.fees
        tot_real += r.realized_pnl
        tot_mark += r.marked_pnl
    total = [
        "total",
        "",
        str(sum(r.fills for r in rows)),
        f"{sum(r.volume for r in rows):g}",
        f"{tot_fees:.2f}",
        _money(tot_real),
        _money(tot_mark),
        "",
    ]
    # Bordered: each column costs its widest cell, two cells of padding and one of border.
    columns = list(zip(_SUMMARY_COLUMNS, *cells, total, strict=True))
    bordered = 1 + sum(max(len(c) for c in col) + 3 for col in columns)
    short = ("market", "state", "fills", "vol", "fees $", "real $", "mark $", "|inv|")
    keep = list(range(len(columns)))
    if width is not None and bordered > width:
        # Borderless with short headers; then drop the least needed columns until the rest
        # shows whole (tickers and numbers are never cut).
        columns = [(h, *col[1:]) for h, col in zip(short, columns, strict=True)]

        def need(idx: list[int]) -> int:
            return sum(max(len(c) for c in columns[k]) + 2 for k in idx)

        for drop in (3, 4, 5, 1):  # vol, fees, realised, state
            if need(keep) <= width:
                break
            keep.remove(drop)
        t = Table(
            title="Run summary",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
        )
    else:
        t = Table(title="Run summary", header_style="bold")
    add_ticker_column(t, columns[0][0], [r.ticker for r in rows] + ["total"])
    for k in keep[1:]:
        col = columns[k]
        t.add_column(
            col[0],
            justify="left" if k == 1 else "right",
            no_wrap=True,
            min_width=max(len(c) for c in col),
        )
    for row in [*cells, total]:
        if row is total:
            t.add_section()
        t.add_row(*(row[k] for k in keep))
    return t


def print_head(console: Console, store: AuditStore, anchor_log: AnchorLog | None) -> None:
    """The run's last line: the audit chain head (keep it as an anchor) and the anchor file."""
    head = store.head
    console.print(
        f"audit chain head {head.seq}:{head.hash}"
        + (
            f" · signed anchors {anchor_log.path} (key {anchor_log.key_id})"
            if anchor_log is not None
            else " · no signed anchors"
        ),
        soft_wrap=True,
        highlight=False,
    )
