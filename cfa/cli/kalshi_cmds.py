"""``cfa markets`` and ``cfa record``: Kalshi's open markets, and a recorder of its live feed.

Both read the connection from ``CFA_KALSHI_*`` (see :mod:`cfa.exchange.kalshi.settings`).
``markets`` uses public endpoints only and needs no key; ``record`` needs the key (the
WebSocket is authenticated) and fails with one line naming what is missing.

Recording format (NDJSON, one object per line), for offline replay:

* line 1: ``{"kind": "cfa-kalshi-recording", "version": 1, "started_ts", "ws_url",
  "markets": [Market JSON...]}``;
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead.")] = False,
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
    if as_json:
        for m in rows:
            typer.echo(json.dumps(m, sort_keys=True))
        return
    table = Table(title=f"Kalshi markets ({s.env}, {status}, by {sort})")
    for col in ("ticker", "title", "bid", "ask", "volume", "closes (UTC)"):
        table.add_column(col, overflow="fold")
    for m in rows:
        table.add_row(
            str(m.get("ticker")),
            str(m.get("title") or m.get("yes_sub_title") or ""),
            str(m.get("yes_bid_dollars", "")),
            str(m.get("yes_ask_dollars", "")),
            str(m.get("volume_fp", "")),
            str(m.get("close_time", "")),
        )
    Console().print(table)


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
            "markets": metas,
        }
        fh.write(json.dumps(header, sort_keys=True) + "\n")

        def write(frame: dict[str, Any], recv_ts: float) -> None:
            nonlocal count
            fh.write(json.dumps({"recv_ts": recv_ts, "frame": frame}, sort_keys=True) + "\n")
            count += 1

        feed = KalshiFeed(s.websocket_url, signer, tickers, on_frame=write)
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
