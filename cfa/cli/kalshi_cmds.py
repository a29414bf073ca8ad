"""``cfa markets`` and ``cfa record``: Kalshi's open markets, and a recorder of its live feed.

Both read the connection from ``CFA_KALSHI_*`` (see :mod:`cfa.exchange.kalshi.settings`).
``markets`` uses public endpoints only and needs no key; ``record`` needs the key (the
WebSocket is authenticated) and fails with one line naming what is missing.

Recording format (NDJSON, one object per line), for offline replay:

* line 1: ``{"kind": "cfa-kalshi-recording", "version": 1, "started_ts", "ws_url",
  "use_yes_price", "markets": [Market JSON...]}`` (``use_yes_price``: the book form the
  subscription asked for; frames do not say theirs);
* then one ``{"recv_ts": <epoch s>, "frame": <Kalshi frame, unchanged>}`` per WebSocket frame
  received (subscription replies included), in arrival order —
  :func:`cfa.exchange.kalshi.frames.parse_frame` reads them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cfa.cli.options import fail, parse_duration
from cfa.cli.tables import add_ticker_column
from cfa.core.grid import PriceGrid
from cfa.core.types import CfaValueError, MarketInfo
from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.auth import load_signer
from cfa.exchange.kalshi.errors import KalshiError
from cfa.exchange.kalshi.rest import KalshiRest
from cfa.exchange.kalshi.settings import KalshiSettings, load_settings
from cfa.exchange.kalshi.ws import KalshiFeed

_SORTS = ("volume", "close")


def _settings(env_file: Path | None) -> KalshiSettings:
    try:
        return load_settings(env_file)
    except Exception as exc:  # pydantic validation: name the bad setting, nothing else
        raise fail(f"Kalshi settings: {str(exc).splitlines()[0]}") from None


def markets(
    series: Annotated[str | None, typer.Option(help="Only this series ticker.")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event ticker.")] = None,
    status: Annotated[
        str, typer.Option(help="Market status filter: unopened, open, paused, closed, settled.")
    ] = "open",
    sort: Annotated[str, typer.Option(help="Sort by volume (desc) or close (soonest first).")] = (
        "volume"
    ),
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows to show.")] = 50,
    env_file: Annotated[
        Path | None, typer.Option(help="A KEY=value file with CFA_KALSHI_* settings.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of the markets instead.")
    ] = False,
) -> None:
    """List Kalshi markets (public data; no key needed)."""
    if sort not in _SORTS:
        raise fail(f"--sort: use one of {', '.join(_SORTS)}, got {sort!r}")
    if status not in ("unopened", "open", "paused", "closed", "settled"):
        raise fail(f"--status: unknown status {status!r}")
    s = _settings(env_file)

    async def fetch() -> list[dict[str, Any]]:
        rest = KalshiRest(s.rest_url, None)
        try:
            return await rest.get_markets(
                status=status, series_ticker=series, event_ticker=event, max_items=10_000
            )
        finally:
            await rest.aclose()

    try:
        rows = asyncio.run(fetch())
    except KalshiError as exc:
        raise fail(str(exc)) from None
    if sort == "volume":
        rows.sort(key=lambda m: -float(m.get("volume_fp") or 0))
    else:
        rows.sort(key=lambda m: str(m.get("close_time") or ""))
    rows = rows[:limit]
    listed = [_market_row(m) for m in rows]
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    table = Table(title=f"Kalshi markets ({s.env}, {status}, by {sort})")
    add_ticker_column(table, "ticker", [r["ticker"] for r in listed])
    table.add_column("title", overflow="fold")
    for col in ("bid", "ask", "volume"):
        table.add_column(col, justify="right", no_wrap=True)
    console = Console()
    if console.width >= 100:
        table.add_column("closes (UTC)", no_wrap=True)
    else:  # date over time, so the title is the column that gives way
        table.add_column("closes (UTC)", width=10)
    for r in listed:
        closes = r["close_time"] or ""
        if r["close_ts"] is not None:  # date and time on two lines when the column is narrow
            closes = datetime.fromtimestamp(r["close_ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            r["ticker"], r["title"], r["bid"] or "", r["ask"] or "", r["volume"] or "", closes
        )
    console.print(table)


def _iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _market_row(m: dict[str, Any]) -> dict[str, Any]:
    """One market as ``cfa markets`` shows it (the table's cells, and ``--json``'s objects).

    Prices are the YES leg's best bid/ask in dollars and volume in contracts, as Kalshi's exact
    decimal strings (``None`` when Kalshi left them out); ``close_time`` is ISO-8601 UTC and
    ``close_ts`` the same instant in epoch seconds; the grid is ``price_level_structure`` (a
    Kalshi name, or ``custom``) and ``price_ranges`` (``[{start, end, step}]`` in dollars).
    A market Kalshi describes too poorly to parse keeps its raw fields (``close_ts`` ``None``).
    """
    info: MarketInfo | None
    try:
        info = frames.parse_market(m)
    except CfaValueError:
        info = None

    def text(key: str) -> str | None:
        v = m.get(key)
        return None if v is None else str(v)

    row: dict[str, Any] = {
        "ticker": str(m.get("ticker")),
        "event_ticker": info.event_ticker if info else text("event_ticker"),
        "series_ticker": info.series_ticker if info else text("series_ticker"),
        "title": str(m.get("title") or m.get("yes_sub_title") or ""),
        "status": text("status"),
        "bid": text("yes_bid_dollars"),
        "ask": text("yes_ask_dollars"),
        "volume": text("volume_fp"),
        "close_time": _iso_utc(info.close_ts) if info else text("close_time"),
        "close_ts": info.close_ts if info else None,
        "price_level_structure": (
            info.price_level_structure if info else text("price_level_structure")
        ),
        "price_ranges": (
            PriceGrid(info.price_ranges).as_price_ranges() if info else m.get("price_ranges")
        ),
    }
    index = getattr(info, "exchange_index", None)  # a MarketInfo field on newer cfa versions
    if index is None:
        index = m.get("exchange_index")
    if index is not None:
        row["exchange_index"] = index
    return row


def record(
    market: Annotated[
        list[str], typer.Option("--market", "-m", help="Market ticker; repeat for more.")
    ],
    duration: Annotated[str, typer.Option(help="How long to record: 90s, 15m, 1h.")] = "1h",
    out: Annotated[Path, typer.Option(help="NDJSON file to write.")] = Path("kalshi-feed.ndjson"),
    env_file: Annotated[
        Path | None, typer.Option(help="A KEY=value file with CFA_KALSHI_* settings.")
    ] = None,
) -> None:
    """Record Kalshi's live WebSocket feed for these markets to an NDJSON file."""
    seconds = parse_duration(duration)
    s = _settings(env_file)
    try:
        signer = load_signer(s)
    except KalshiError as exc:
        raise fail(str(exc)) from None
    try:
        count = asyncio.run(_record(s, signer, list(dict.fromkeys(market)), seconds, out))
    except KalshiError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"--out {out}: {exc.strerror or exc}") from None
    typer.echo(f"recorded {count} frames from {len(market)} market(s) to {out}")


async def _record(
    s: KalshiSettings, signer: Any, tickers: list[str], seconds: float, out: Path
) -> int:
    rest = KalshiRest(s.rest_url, signer)
    try:
        metas = await rest.get_markets(tickers=tickers)
    finally:
        await rest.aclose()
    found = {m.get("ticker") for m in metas}
    missing = [t for t in tickers if t not in found]
    if missing:
        raise KalshiError(f"no market {missing[0]!r}", code="market_not_found")
    count = 0
    with out.open("w", encoding="utf-8") as fh:
        header = {
            "kind": "cfa-kalshi-recording",
            "version": 1,
            "started_ts": time.time(),
            "started": datetime.now(UTC).isoformat(),
            "ws_url": s.websocket_url,
            "use_yes_price": True,
            "markets": metas,
        }
        fh.write(json.dumps(header, sort_keys=True) + "\n")

        def write(frame: dict[str, Any], recv_ts: float) -> None:
            nonlocal count
            fh.write(json.dumps({"recv_ts": recv_ts, "frame": frame}, sort_keys=True) + "\n")
            count += 1

        feed = KalshiFeed(
            s.websocket_url, signer, tickers, use_yes_price=header["use_yes_price"], on_frame=write
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await feed.start()

        async def drain() -> None:
            while await feed.get() is not None:
                pass

        drainer = asyncio.create_task(drain())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), seconds)
        finally:
            await feed.close()
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
    return count
