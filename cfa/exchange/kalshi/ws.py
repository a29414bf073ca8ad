"""Kalshi WebSocket feed: authenticated connect, subscriptions, sequence checks, resync, reconnect.

:class:`KalshiFeed` keeps one connection for a set of market tickers and hands the consumer the
frames that are safe to apply, in arrival order, through :meth:`KalshiFeed.get`:

* it subscribes ``fill`` and ``user_orders`` (all markets) and ``market_lifecycle_v2``,
  ``ticker``, ``trade`` and ``orderbook_delta`` (these tickers), and sets :attr:`ready` once
  every channel is acknowledged;
* ``seq`` is tracked per subscription (sid): duplicates (``seq`` ≤ last) are dropped; a gap on
  an orderbook sid marks every ticker of that sid *unsynced*, asks Kalshi for fresh snapshots
  (``update_subscription`` / ``get_snapshot``), and drops that sid's deltas until each
  ticker's snapshot arrives — so a consumer never sees a delta that does not follow what it
  has; a gap on another channel is counted and logged (trades cannot be recovered);
* a dropped connection (or a failed handshake) is retried with exponential backoff and
  jitter (``backoff`` … ``max_backoff`` seconds); after a reconnect every ticker starts
  unsynced and the consumer receives a ``{"type": "cfa_reconnected"}`` marker before the new
  snapshots, so it can reconcile what it may have missed over REST;
* heartbeats: the ``websockets`` library answers Kalshi's pings; the feed also pings every
  ``ping_interval`` seconds and treats a missing pong as a dropped connection.

Other markers: ``{"type": "cfa_gap", "sid", "channel", "tickers"}`` when a gap was found and
``{"type": "cfa_error", "error"}`` for a failed connection attempt or a subscription error.
``on_frame(frame, recv_ts)`` sees every decoded frame first (for recording).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from cfa.exchange.kalshi.auth import Signer

log = logging.getLogger(__name__)
_wire_log = logging.getLogger(f"{__name__}.wire")
_wire_log.setLevel(logging.INFO)
"""The websockets library's own logger: at DEBUG it would print the signed handshake headers,
so it is held at INFO whatever the root level is."""

PRIVATE_CHANNELS = ("fill", "user_orders")
"""Subscribed for all markets (the consumer filters)."""
MARKET_CHANNELS = ("market_lifecycle_v2", "ticker", "trade", "orderbook_delta")
"""Subscribed for the feed's tickers; ``orderbook_delta`` last, so everything else is live
by the time the first snapshot arrives."""
TERMINAL_ERRORS = {10, 17, 25}
"""Subscription error codes after which Kalshi expects a resubscribe."""


@dataclass
class FeedStats:
    """Health counters of a feed."""

    connects: int = 0
    reconnects: int = 0
    gaps: int = 0
    resync_requests: int = 0
    snapshots: int = 0
    dropped_deltas: int = 0
    duplicates: int = 0
    errors: int = 0


class KalshiFeed:
    """One authenticated WebSocket connection for ``tickers`` (see the module docstring).

    Use ``await start()``, then ``await get()`` in a loop (``None`` after :meth:`close`).
    """

    def __init__(
        self,
        url: str,
        signer: Signer,
        tickers: Sequence[str],
        *,
        private_channels: Sequence[str] = PRIVATE_CHANNELS,
        market_channels: Sequence[str] = MARKET_CHANNELS,
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 10.0,
        on_frame: Callable[[dict[str, Any], float], None] | None = None,
    ) -> None:
        self.url = url
        self.signer = signer
        self.tickers = list(dict.fromkeys(tickers))
        self.private_channels = list(private_channels)
        self.market_channels = list(market_channels)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.on_frame = on_frame
        self.stats = FeedStats()
        self.ready = asyncio.Event()
        """Set while every channel of the current connection is subscribed."""
        self.synced: set[str] = set()
        """Tickers whose book is in sequence since their last snapshot."""
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._sids: dict[int, str] = {}
        self._sid_tickers: dict[int, list[str]] = {}
        self._last: dict[int, int] = {}
        self._expected = 0
        self._next_id = 1
        self._pending_tickers: dict[int, list[str] | None] = {}
        self._sends: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"KalshiFeed(url={self.url!r}, tickers={self.tickers!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connection task (returns at once; wait on :attr:`ready` if needed)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kalshi-feed")

    async def close(self) -> None:
        """Close the connection and end :meth:`get` with ``None``. Idempotent."""
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._queue.put_nowait(None)

    async def get(self) -> dict[str, Any] | None:
        """The next frame (or marker) safe to apply; ``None`` once closed."""
        return await self._queue.get()

    def pending(self) -> int:
        """Frames received and not yet taken."""
        return self._queue.qsize()

    # -- connection loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff
        host = urlsplit(self.url).hostname or ""
        loopback = host in ("127.0.0.1", "localhost", "::1")
        while not self._closed:
            try:
                async with connect(
                    self.url,
                    additional_headers=self.signer.ws_headers(),
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_interval,
                    close_timeout=1.0,
                    max_queue=None,
                    max_size=2**24,
                    compression=None,
                    proxy=None if loopback else True,
                    logger=_wire_log,
                ) as ws:
                    self._ws = ws
                    self._reset()
                    self.stats.connects += 1
                    if self.stats.connects > 1:
                        self.stats.reconnects += 1
                        self._queue.put_nowait({"type": "cfa_reconnected"})
                    await self._subscribe(ws)
                    delay = self.backoff
                    async for raw in ws:
                        self._on_raw(raw)
            except asyncio.CancelledError:
                raise
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                if isinstance(exc, InvalidStatus):
                    reason = f"handshake refused: HTTP {exc.response.status_code}"
                else:
                    reason = type(exc).__name__
                if not self._closed:
                    log.warning("kalshi feed: connection lost (%s); retrying", reason)
                    self._queue.put_nowait({"type": "cfa_error", "error": reason})
            finally:
                self._ws = None
                self.ready.clear()
                self.synced.clear()
            if self._closed:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.max_backoff)

    def _reset(self) -> None:
        self._sids.clear()
        self._sid_tickers.clear()
        self._last.clear()
        self._pending_tickers.clear()
        self.synced.clear()
        self.ready.clear()
        self._expected = 0

    async def _subscribe(self, ws: ClientConnection) -> None:
        if self.private_channels:
            await self._send_subscribe(ws, self.private_channels, None)
        if self.market_channels and self.tickers:
            await self._send_subscribe(ws, self.market_channels, self.tickers)

    async def _send_subscribe(
        self, ws: ClientConnection, channels: Sequence[str], tickers: Sequence[str] | None
    ) -> None:
        cid = self._next_id
        self._next_id += 1
        params: dict[str, Any] = {"channels": list(channels)}
        if tickers:
            params["market_tickers"] = list(tickers)
        self._pending_tickers[cid] = list(tickers) if tickers else None
        self._expected += len(channels)
        await ws.send(json.dumps({"id": cid, "cmd": "subscribe", "params": params}))

    def _send(self, payload: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        task = asyncio.ensure_future(ws.send(json.dumps(payload)))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    # -- frames --------------------------------------------------------------------------------

    def _on_raw(self, raw: str | bytes) -> None:
        recv_ts = time.time()
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("kalshi feed: undecodable frame dropped")
            return
        if not isinstance(frame, dict):
            return
        if self.on_frame is not None:
            self.on_frame(frame, recv_ts)
        ftype = frame.get("type")
        if ftype == "subscribed":
            msg = frame.get("msg") or {}
            sid, channel = msg.get("sid"), msg.get("channel")
            if isinstance(sid, int) and isinstance(channel, str):
                self._sids[sid] = channel
                tickers = self._pending_tickers.get(frame.get("id", -1)) or []
                self._sid_tickers[sid] = list(tickers)
                if len(self._sids) >= self._expected:
                    self.ready.set()
            return
        sid, seq = frame.get("sid"), frame.get("seq")
        if isinstance(sid, int) and isinstance(seq, int):
            last = self._last.get(sid)
            if last is not None and seq <= last:
                self.stats.duplicates += 1
                return
            self._last[sid] = seq
            if last is not None and seq > last + 1:
                self._gap(sid, last, seq)
        if ftype == "orderbook_snapshot":
            ticker = (frame.get("msg") or {}).get("market_ticker")
            if isinstance(ticker, str):
                self.synced.add(ticker)
                self.stats.snapshots += 1
            self._queue.put_nowait(frame)
            return
        if ftype == "orderbook_delta":
            ticker = (frame.get("msg") or {}).get("market_ticker")
            if ticker in self.synced:
                self._queue.put_nowait(frame)
            else:
                self.stats.dropped_deltas += 1
            return
        if ftype == "error":
            self._on_error(frame)
            return
        if ftype in ("ok", "unsubscribed", "list_subscriptions"):
            return
        self._queue.put_nowait(frame)

    def _gap(self, sid: int, last: int, seq: int) -> None:
        channel = self._sids.get(sid, "?")
        self.stats.gaps += 1
        tickers = self._sid_tickers.get(sid) or list(self.tickers)
        log.warning("kalshi feed: %s sid %d seq gap %d -> %d", channel, sid, last, seq)
        self._queue.put_nowait(
            {"type": "cfa_gap", "sid": sid, "channel": channel, "tickers": list(tickers)}
        )
        if channel == "orderbook_delta":
            self._request_snapshots(sid, tickers)

    def _request_snapshots(self, sid: int, tickers: Sequence[str]) -> None:
        for t in tickers:
            self.synced.discard(t)
        self.stats.resync_requests += 1
        cid = self._next_id
        self._next_id += 1
        self._send(
            {
                "id": cid,
                "cmd": "update_subscription",
                "params": {
                    "sids": [sid],
                    "market_tickers": list(tickers),
                    "action": "get_snapshot",
                },
            }
        )

    def resync(self, ticker: str) -> None:
        """Drop ``ticker``'s deltas until a fresh snapshot arrives, and ask for one."""
        for sid, channel in self._sids.items():
            if channel == "orderbook_delta" and ticker in (self._sid_tickers.get(sid) or []):
                self._request_snapshots(sid, [ticker])
                return
        self.synced.discard(ticker)

    def _on_error(self, frame: dict[str, Any]) -> None:
        self.stats.errors += 1
        msg = frame.get("msg") or {}
        code = msg.get("code")
        sid = frame.get("sid")
        log.warning("kalshi feed: subscription error %s: %s", code, msg.get("msg"))
        self._queue.put_nowait({"type": "cfa_error", "error": f"ws error {code}: {msg.get('msg')}"})
        channel = self._sids.get(sid) if isinstance(sid, int) else None
        if channel == "orderbook_delta" or code in TERMINAL_ERRORS:
            # get_snapshot refused or the channel died: resubscribe the books from scratch
            tickers = self._sid_tickers.get(sid, self.tickers) if isinstance(sid, int) else []
            tickers = tickers or self.tickers
            for t in tickers:
                self.synced.discard(t)
            if isinstance(sid, int):
                self._sids.pop(sid, None)
                self._send({"id": self._next_id, "cmd": "unsubscribe", "params": {"sids": [sid]}})
                self._next_id += 1
            cid = self._next_id
            self._next_id += 1
            self._pending_tickers[cid] = list(tickers)
            self._expected = len(self._sids) + 1
            self._send(
                {
                    "id": cid,
                    "cmd": "subscribe",
                    "params": {"channels": ["orderbook_delta"], "market_tickers": list(tickers)},
                }
            )
