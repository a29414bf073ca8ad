"""Rich rendering of a running session: the live table, the progress bar, the final summary."""

from __future__ import annotations

from decimal import Decimal

from rich import box
from rich.console import Group, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cfa.core.types import PRICE_SCALE, QTY_SCALE, Side
from cfa.runtime.session import MarketSummary, Session


def _px(p: int | None) -> str:
    return "-" if p is None else f"{p / PRICE_SCALE:.4f}".rstrip("0").rstrip(".")


def _short(text: str, width: int = 56) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _money(d: Decimal) -> str:
    return f"{d:+.2f}"


def live_table(session: Session, wide: bool = True) -> Table:
    """One row per market: mid, our quotes, inventory, PnL, γ, σ, state (+ last decision)."""
    t = Table(header_style="bold", pad_edge=False, box=box.SIMPLE_HEAD, collapse_padding=not wide)
    for col, justify, width in [
        ("market", "left", 12),
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
    ]:
        if not wide and col in ("real $", "last decision"):
            continue
        last = col == "last decision"
        t.add_column(
            col,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            overflow="ellipsis",
            min_width=width or None,
            max_width=48 if last else ((28 if wide else 20) if col == "market" else None),
        )
    for ticker, loop in session.loops.items():
        mp = session.params.get(ticker)
        bid, ask = loop.resting[Side.BID], loop.resting[Side.ASK]
        ts = session.states.effective(ticker)
        state = loop.state.value if ts.value == "ACTIVE" else ts.value
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
            _short("" if session.agents is None else session.agents.last_rationale.get(ticker, "")),
        ]
        t.add_row(*(cells if wide else cells[:7] + cells[8:-1]))
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
        parts: list[RenderableType] = [live_table(s, self.wide)]
        if not self.wide and s.agents is not None and s.agents.last_rationale:
            notes = Table.grid(padding=(0, 1))
            notes.add_column(no_wrap=True, style="bold")
            notes.add_column(no_wrap=True, overflow="ellipsis", max_width=self.width - 20)
            for ticker, text in s.agents.last_rationale.items():
                notes.add_row(ticker[:18], text)
            parts.append(notes)
        parts.append(self.progress)
        return Group(*parts)


def summary_table(rows: list[MarketSummary]) -> Table:
    t = Table(title="Run summary", header_style="bold")
    for col in (
        "market",
        "state",
        "fills",
        "volume",
        "fees $",
        "realised $",
        "marked $",
        "max |inv|",
    ):
        t.add_column(col, justify="left" if col in ("market", "state") else "right")
    tot_fees = tot_real = tot_mark = Decimal(0)
    for r in rows:
        t.add_row(
            r.ticker,
            r.state if r.error is None else f"{r.state}: {r.error}",
            str(r.fills),
            f"{r.volume:g}",
            f"{r.fees:.2f}",
            _money(r.realized_pnl),
            _money(r.marked_pnl),
            f"{r.max_abs_inventory:g}",
        )
        tot_fees += r.fees
        tot_real += r.realized_pnl
        tot_mark += r.marked_pnl
    t.add_section()
    t.add_row(
        "total",
        "",
        str(sum(r.fills for r in rows)),
        f"{sum(r.volume for r in rows):g}",
        f"{tot_fees:.2f}",
        _money(tot_real),
        _money(tot_mark),
        "",
    )
    return t
