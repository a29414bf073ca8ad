"""Run the default quoting loop with heuristic agents over each recorded KXBTC15M window.

Usage::

    .venv/bin/python tools/replay_captures.py                    # every window, plain table
    .venv/bin/python tools/replay_captures.py --markdown         # the table as markdown
    .venv/bin/python tools/replay_captures.py --frames /tmp/kx   # reuse converted frames
    .venv/bin/python tools/replay_captures.py --fill-model touch --dataset <name>

Each capture window is converted (:func:`cfa.exchange.feed.write_feed`) into a temporary
directory outside the repository (or read from ``--frames`` when already converted there), then
replayed through :class:`cfa.exchange.feed.KalshiFeedExchange` by a :class:`Session` with the
``default`` risk policy and the :class:`HeuristicReasoner` market and governance agents, writing
to a throwaway audit store. Printed per window and market: events the loop consumed, our fills,
volume (contracts), fees, realised and marked PnL (dollars) and the largest |inventory|
(contracts); then how far the recording can be trusted (:meth:`KalshiFeedExchange.health`):
data holes (sequence gaps, plus snapshots whose book differs from the one rebuilt from deltas),
resyncs (snapshots after the market's first, Kalshi's post-close one included), the seconds the
market was blind (a gap open: no quotes until a snapshot), and ticker agreement: the share of
the recorded ``ticker`` updates whose best bid and ask equal the replayed book's (``tk =``) and
lie within $0.01 of it (``tk ±1¢``), checked as each arrived; and the wall time.

The fill assumption is the exchange's (see :mod:`cfa.exchange.feed`): by default (``through``) a
resting order fills, in full at its price as a maker, only when the recording trades *through*
it — the best opposite price moves strictly past it, or a print (``ticker`` volume) happens
strictly beyond it; ``--fill-model touch`` or ``queue`` pick the other models of
:mod:`cfa.exchange.emulator.fills`. Results
are not settled (no result is known for these windows): open positions are marked to the last
two-sided recorded mid.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfa.agents.reasoners.heuristic import HeuristicReasoner  # noqa: E402
from cfa.audit import AuditStore  # noqa: E402
from cfa.exchange.captures import list_datasets  # noqa: E402
from cfa.exchange.feed import FILL_MODELS, KalshiFeedExchange, write_feed  # noqa: E402
from cfa.risk.policy import CloseTaper, load_policy  # noqa: E402
from cfa.runtime.session import Session  # noqa: E402


@dataclass(frozen=True, slots=True)
class Row:
    """One market of one replayed window. Money in dollars, sizes in contracts."""

    window: str
    ticker: str
    events: int
    fills: int
    volume: float
    fees: Decimal
    realized_pnl: Decimal
    marked_pnl: Decimal
    max_abs_inventory: float
    holes: int
    gaps: int
    jumps: int
    resyncs: int
    blind_s: float
    ticker_checked: int
    ticker_exact: float | None
    ticker_near: float | None
    state: str
    leftover_orders: int
    seconds: float


async def replay_file(
    frames: Path,
    db: Path,
    *,
    fill_model: str = "through",
    policy: str = "default",
    agents: bool = True,
    window: str | None = None,
    close_taper: tuple[float, float] | None = None,
) -> tuple[list[Row], KalshiFeedExchange, Session]:
    """Replay one frames file with the loop (and heuristic agents); one row per market.

    ``close_taper``: (reduce-only, halt) seconds before close, replacing the policy's.
    """
    t0 = time.perf_counter()
    ex = KalshiFeedExchange(frames, fill_model=fill_model)
    await ex.start()
    markets = await ex.get_markets()
    store = AuditStore.open(db)
    run_id = store.start_run({"replay": frames.name, "fill_model": fill_model})
    pol = load_policy(policy)
    if close_taper is not None:
        taper = CloseTaper(reduce_only_s=close_taper[0], halt_s=close_taper[1])
        pol = pol.model_copy(update={"close": taper})
    session = Session(ex, markets, pol, store, run_id)
    if agents:
        session.attach_agents(HeuristicReasoner())
    summaries = await session.run(govern=False)
    store.end_run(run_id, {"markets": [s.as_dict() for s in summaries]})
    store.close()
    await ex.close()
    seconds = time.perf_counter() - t0
    rows = []
    for s in summaries:
        p = ex.pnl(s.ticker)
        h = ex.health(s.ticker)
        rows.append(
            Row(
                window=window or frames.name.split(".")[0],
                ticker=s.ticker,
                events=s.events,
                fills=p.fills,
                volume=p.volume,
                fees=p.fees,
                realized_pnl=p.realized_pnl,
                marked_pnl=p.marked_pnl,
                max_abs_inventory=p.max_abs_position,
                holes=h.holes,
                gaps=h.gaps,
                jumps=h.jumps,
                resyncs=h.resyncs,
                blind_s=h.blind_s,
                ticker_checked=h.ticker_checked,
                ticker_exact=h.ticker_exact_share,
                ticker_near=h.ticker_near_share,
                state=s.state,
                leftover_orders=session.leftover_orders,
                seconds=seconds,
            )
        )
    return rows, ex, session


_HEAD = (
    "window",
    "market",
    "events",
    "fills",
    "volume",
    "fees $",
    "realised $",
    "marked $",
    "max|inv|",
    "holes",
    "resyncs",
    "blind s",
    "tk =",
    "tk ±1¢",
)


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _cells(r: Row) -> tuple[str, ...]:
    short = r.window.removeprefix("rv600_next_evidence_shadow_")
    return (
        short,
        r.ticker,
        str(r.events),
        str(r.fills),
        f"{r.volume:g}",
        f"{r.fees:.2f}",
        f"{r.realized_pnl:.2f}",
        f"{r.marked_pnl:.2f}",
        f"{r.max_abs_inventory:g}",
        str(r.holes) if not r.jumps else f"{r.holes} ({r.jumps} jumps)",
        str(r.resyncs),
        f"{r.blind_s:.1f}",
        _share(r.ticker_exact),
        _share(r.ticker_near),
    )


def render(rows: list[Row], markdown: bool) -> str:
    """The rows as an aligned text table, or as a markdown table."""
    cells = [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(_HEAD) + " |", "|" + "|".join("---" for _ in _HEAD) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_HEAD)]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*_HEAD)] + [fmt.format(*c) for c in cells])


async def run(args: argparse.Namespace) -> list[Row]:
    datasets = list_datasets(args.root)
    if args.dataset:
        datasets = [d for d in datasets if d.name in set(args.dataset)]
    if not datasets:
        raise FileNotFoundError("no capture datasets found (is ../shared/data/kalshi there?)")
    work = Path(tempfile.mkdtemp(prefix="cfa-replay-"))
    frames_dir = args.frames or work
    rows: list[Row] = []
    for ds in datasets:
        frames = frames_dir / f"{ds.name}.jsonl"
        if not frames.is_file():
            write_feed(ds, frames)
        got, _, _ = await replay_file(
            frames,
            work / f"{ds.name}.db",
            fill_model=args.fill_model,
            agents=not args.no_agents,
            window=ds.name,
            close_taper=args.close_taper,
            policy=args.policy,
        )
        for r in got:
            print(
                f"# {r.window} {r.ticker}: {r.events} events, {r.fills} fills, "
                f"state {r.state}, {r.leftover_orders} left resting, {r.seconds:.1f}s",
                file=sys.stderr,
            )
        rows.extend(got)
    return rows


def _taper(text: str) -> tuple[float, float]:
    try:
        r, h = (float(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected REDUCE_S,HALT_S, e.g. 120,30") from exc
    if not 0 <= h <= r:
        raise argparse.ArgumentTypeError("need 0 <= HALT_S <= REDUCE_S")
    return r, h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--frames", type=Path, help="directory with converted <dataset>.jsonl files")
    ap.add_argument("--dataset", action="append", help="dataset name (repeatable; default: all)")
    ap.add_argument("--root", type=Path, help="captures directory (default: the shared data)")
    ap.add_argument("--fill-model", choices=FILL_MODELS, default="through")
    ap.add_argument("--no-agents", action="store_true", help="quoting loop only, no agents")
    ap.add_argument("--policy", default="default", help="policy name or YAML file (default)")
    ap.add_argument(
        "--close-taper",
        type=_taper,
        metavar="REDUCE_S,HALT_S",
        help="replace the policy's close taper (the default policy is reduce-only for the last "
        "900 s: all of a 15-minute market's life), e.g. 120,30",
    )
    args = ap.parse_args(argv)
    try:
        rows = asyncio.run(run(args))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(rows, args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
