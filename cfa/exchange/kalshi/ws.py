"""Kalshi WebSocket feed: authenticated connect, subscriptions, sequence checks, resync, reconnect.

:class:`KalshiFeed` keeps one connection for a set of market tickers and hands the consumer the
frames that are safe to apply, in arrival order, through :meth:`KalshiFeed.get`:

* it subscribes each channel with its own ``subscribe`` command: ``fill``, ``user_orders`` and
  ``market_lifecycle_v2`` for all markets (Kalshi's lifecycle channel takes no market filter
  and sends every market's events: the feed drops those of other markets before anything,
  ``on_frame`` included, sees them), ``ticker``, ``trade`` and ``orderbook_delta`` for these
  tickers; it sets :attr:`ready` once every channel is acknowledged;
* books are asked for with ``use_yes_price`` (constructor argument, default True: Kalshi will
  flip the default and then drop the legacy form). Frames do not say their form, so each
  orderbook subscription is read in the form it asked for, checked on every snapshot by
  :class:`~cfa.exchange.kalshi.frames.BookForms` (a snapshot that is crossed in the asked-for
  form and not in the other one switches that sid's form, counted in
  :attr:`FeedStats.form_switches`; a consumer with other evidence calls
  :meth:`KalshiFeed.switch_form`); the queued book frames carry the form as
  ``cfa_yes_price`` (``on_frame`` sees the frame unchanged);
* errors (Kalshi docs, asyncapi "Error Codes Reference"): an error answering one of our
  ``subscribe`` commands (matched by command id: such errors carry no sid) re-sends that
  channel's subscribe; a terminal channel error (:data:`TERMINAL_ERRORS`) on a subscription
  re-subscribes *that* channel with its own parameters; a terminal error that names neither a
  command nor a subscription reconnects (which re-subscribes everything);
* requests that go unanswered: a ``subscribe`` without its ``subscribed`` and a snapshot (on
  subscribe, on ``get_snapshot``) that does not come within ``request_timeout`` seconds are
  sent again, and after ``max_attempts`` sends the connection is dropped and re-made
  (:attr:`FeedStats.subscribe_timeouts`, ``snapshot_timeouts``, ``forced_reconnects``);
* ``seq`` is tracked per subscription (sid): duplicates (``seq`` ≤ last) are dropped; a gap on
  an orderbook sid marks every ticker of that sid *unsynced*, asks Kalshi for fresh snapshots
  (``update_subscription`` / ``get_snapshot``), and drops that sid's deltas until each
  ticker's snapshot arrives — so a consumer never sees a delta that does not follow what it
  has; a gap on another channel is counted and logged (trades cannot be recovered);
* a dropped connection (or a failed handshake) is retried with exponential backoff and
  jitter (``backoff`` … ``max_backoff`` seconds); after a reconnect every ticker starts
  unsynced and the consumer receives a ``{"type": "cfa_reconnected"}`` marker before the new
  snapshots, so it can reconcile what it may have missed over REST;
* heartbeats (docs: connection-keep-alive): Kalshi pings every 10 s with body ``heartbeat``;
  the ``websockets`` library answers each ping with a pong. The feed also pings every
  ``ping_interval`` seconds and treats a missing pong as a dropped connection.

Other markers: ``{"type": "cfa_gap", "sid", "channel", "tickers"}`` when a gap was found,
``{"type": "cfa_resubscribed", "channel"}`` once a channel subscribed again on a live
connection is back (what it carried meanwhile is lost: catch up over REST), and
``{"type": "cfa_error", "error"}`` for a failed connection attempt or a subscription error.
``on_frame(frame, recv_ts)`` sees every decoded frame first (for recording), except the
lifecycle frames of other markets.
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

from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.auth import Signer

log = logging.getLogger(__name__)
_wire_log = logging.getLogger(f"{__name__}.wire")
_wire_log.setLevel(logging.INFO)
"""The websockets library's own logger: at DEBUG it would print the signed handshake headers,
so it is held at INFO whatever the root level is."""

PRIVATE_CHANNELS = ("fill", "user_orders")
"""Subscribed for all markets (the consumer filters)."""
MARKET_CHANNELS = ("market_lifecycle_v2", "ticker", "trade", "orderbook_delta")
"""Subscribed for the feed's tickers (``market_lifecycle_v2`` without a filter: Kalshi does
not support one on it); ``orderbook_delta`` last, so everything else is live by the time the
first snapshot arrives."""
UNFILTERED_CHANNELS = frozenset({"fill", "user_orders", "market_lifecycle_v2"})
"""Channels subscribed without ``market_tickers``."""
LIFECYCLE_TYPES = frozenset({"market_lifecycle_v2", "event_lifecycle", "event_fee_update"})
"""Frame types of the lifecycle channel; only those naming one of the feed's markets pass."""
TERMINAL_ERRORS = {10, 17, 25}
"""Channel error codes after which Kalshi expects a resubscribe (10 channel error, 17 internal
error, 25 subscription buffer overflow)."""


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
    resubscribes: int = 0
    """Channels subscribed again after a terminal error or a refused subscribe."""
    subscribe_timeouts: int = 0
    snapshot_timeouts: int = 0
    forced_reconnects: int = 0
    """Connections the feed dropped itself (requests unanswered ``max_attempts`` times, or a
    terminal error naming no subscription)."""
    form_switches: int = 0
    """Snapshots whose pricing form was not the one asked for (see the module docstring)."""
    filtered: int = 0
    """Lifecycle frames of other markets, dropped."""
    stale_frames: int = 0
    """Frames of a subscription that was replaced, dropped."""


@dataclass
class _Sub:
    """One channel's subscription on the current connection."""

    channel: str
    params: dict[str, Any]
    cid: int = 0
    sid: int | None = None
    sent_at: float = 0.0
    attempts: int = 0
    resubscribed: bool = False
    """Subscribed again on a live connection (its frames in between are lost)."""


class KalshiFeed:
    """One authenticated WebSocket connection for ``tickers`` (see the module docstring).

    Use ``await start()``, then ``await get()`` in a loop (``None`` after :meth:`close`).
    ``request_timeout`` (seconds > 0) bounds the wait for a ``subscribed`` answer or a snapshot;
    ``max_attempts`` (>= 1) sends of one request before the connection is re-made.
    """

    def __init__(
        self,
        url: str,
        signer: Signer,
        tickers: Sequence[str],
        *,
        private_channels: Sequence[str] = PRIVATE_CHANNELS,
        market_channels: Sequence[str] = MARKET_CHANNELS,
        use_yes_price: bool = True,
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 10.0,
        request_timeout: float = 10.0,
        max_attempts: int = 3,
        on_frame: Callable[[dict[str, Any], float], None] | None = None,
    ) -> None:
        if not request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0 seconds, got {request_timeout!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self.url = url
        self.signer = signer
        self.tickers = list(dict.fromkeys(tickers))
        self._ticker_set = frozenset(self.tickers)
        self.private_channels = list(private_channels)
        self.market_channels = list(market_channels)
        self.use_yes_price = use_yes_price
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.request_timeout = request_timeout
        self.max_attempts = max_attempts
        self.on_frame = on_frame
        self.stats = FeedStats()
        self.ready = asyncio.Event()
        """Set while every channel of the current connection is subscribed."""
        self.synced: set[str] = set()
        """Tickers whose book is in sequence since their last snapshot."""
        self.unsynced_epoch = 0
        """Counts the times tickers left :attr:`synced` (a gap, a resync, a reconnect, a
        resubscribe): a consumer rescans which of its books are blind when it moves."""
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._subs: dict[str, _Sub] = {}
        self._by_cid: dict[int, str] = {}
        """Unanswered subscribe commands: command id → channel."""
        self._sids: dict[int, str] = {}
        self._sid_tickers: dict[int, list[str]] = {}
        self._last: dict[int, int] = {}
        self._forms = frames.BookForms(use_yes_price)
        self._awaiting: dict[str, tuple[float, int]] = {}
        """Tickers waiting for a snapshot: (monotonic time asked, sends so far)."""
        self._snap_cids: dict[int, list[str]] = {}
        self._next_id = 1
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

    def put(self, marker: dict[str, Any]) -> None:
        """Queue a marker of the consumer's own (``{"type": "cfa_..."}``) behind the frames
        received so far."""
        self._queue.put_nowait(marker)

    def pending(self) -> int:
        """Frames received and not yet taken."""
        return self._queue.qsize()

    # -- connection loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff
        host = urlsplit(self.url).hostname or ""
        loopback = host in ("127.0.0.1", "localhost", "::1")
        while not self._closed:
            watch: asyncio.Task[None] | None = None
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
                    watch = asyncio.create_task(self._watch(ws), name="kalshi-feed-watch")
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
                if watch is not None:
                    watch.cancel()
                self._ws = None
                self.ready.clear()
                self.synced.clear()
                self.unsynced_epoch += 1
            if self._closed:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.max_backoff)

    def _reset(self) -> None:
        self._subs.clear()
        self._by_cid.clear()
        self._sids.clear()
        self._sid_tickers.clear()
        self._last.clear()
        self._awaiting.clear()
        self._snap_cids.clear()
        self._forms = frames.BookForms(self.use_yes_price)
        self.synced.clear()
        self.unsynced_epoch += 1
        self.ready.clear()

    def _params(self, channel: str) -> dict[str, Any]:
        params: dict[str, Any] = {"channels": [channel]}
        if channel not in UNFILTERED_CHANNELS:
            params["market_tickers"] = list(self.tickers)
        if channel == "orderbook_delta":
            params["use_yes_price"] = self.use_yes_price
        return params

    async def _subscribe(self, ws: ClientConnection) -> None:
        channels = list(self.private_channels)
        if self.tickers:
            channels += self.market_channels
        for channel in dict.fromkeys(channels):
            self._subs[channel] = _Sub(channel, self._params(channel))
        for sub in list(self._subs.values()):
            await ws.send(json.dumps(self._subscribe_cmd(sub)))

    def _subscribe_cmd(self, sub: _Sub) -> dict[str, Any]:
        """Number a (re)send of ``sub``'s subscribe command and note what it waits for."""
        sub.cid = self._take_id()
        sub.sid = None
        sub.sent_at = time.monotonic()
        sub.attempts += 1
        self._by_cid[sub.cid] = sub.channel
        if sub.channel == "orderbook_delta":
            self.unsynced_epoch += 1
            for t in self.tickers:
                self.synced.discard(t)
                self._awaiting[t] = (sub.sent_at, self._awaiting.get(t, (0.0, 0))[1] + 1)
        return {"id": sub.cid, "cmd": "subscribe", "params": sub.params}

    def _take_id(self) -> int:
        cid = self._next_id
        self._next_id += 1
        return cid

    def _send(self, payload: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        task = asyncio.ensure_future(ws.send(json.dumps(payload)))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _drop(self, why: str) -> None:
        """Drop the connection (the run loop makes a new one, which re-subscribes all)."""
        self.stats.forced_reconnects += 1
        log.warning("kalshi feed: %s; reconnecting", why)
        self._queue.put_nowait({"type": "cfa_error", "error": why})
        ws = self._ws
        if ws is not None:
            task = asyncio.ensure_future(ws.close())
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    # -- unanswered requests -------------------------------------------------------------------

    async def _watch(self, ws: ClientConnection) -> None:
        """Every quarter ``request_timeout``: re-send what went unanswered, or reconnect."""
        step = min(self.request_timeout / 4, 1.0)
        while self._ws is ws:
            await asyncio.sleep(step)
            if self._ws is ws:
                self._check_timeouts(time.monotonic())

    def _check_timeouts(self, now: float) -> None:
        limit = self.request_timeout
        for sub in list(self._subs.values()):
            if sub.sid is None and now - sub.sent_at >= limit:
                self.stats.subscribe_timeouts += 1
                if sub.attempts >= self.max_attempts:
                    self._drop(f"no answer to subscribe {sub.channel} after {sub.attempts} tries")
                    return
                log.warning("kalshi feed: subscribe %s unanswered; sending again", sub.channel)
                self._by_cid.pop(sub.cid, None)
                self._send(self._subscribe_cmd(sub))
        book = self._subs.get("orderbook_delta")
        if book is None or book.sid is None:
            return  # the subscribe's own timeout covers the snapshots it brings
        late = [t for t, (at, _) in self._awaiting.items() if now - at >= limit]
        if not late:
            return
        self.stats.snapshot_timeouts += len(late)
        if max(self._awaiting[t][1] for t in late) >= self.max_attempts:
            self._drop(f"no snapshot for {late[0]} after {self.max_attempts} requests")
            return
        log.warning("kalshi feed: snapshots of %s late; asking again", ", ".join(late))
        self._request_snapshots(book.sid, late)

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
        ftype = frame.get("type")
        if ftype in LIFECYCLE_TYPES:
            msg = frame.get("msg")
            if not isinstance(msg, dict) or msg.get("market_ticker") not in self._ticker_set:
                self.stats.filtered += 1
                return  # another market's (or an event's) lifecycle: not ours to see
        if self.on_frame is not None:
            self.on_frame(frame, recv_ts)
        if ftype == "subscribed":
            self._on_subscribed(frame)
            return
        if ftype == "error":
            self._on_error(frame)
            return
        sid, seq = frame.get("sid"), frame.get("seq")
        if isinstance(sid, int) and sid not in self._sids:
            self.stats.stale_frames += 1
            return
        if isinstance(sid, int) and isinstance(seq, int):
            last = self._last.get(sid)
            if last is not None and seq <= last:
                self.stats.duplicates += 1
                return
            self._last[sid] = seq
            if last is not None and seq > last + 1:
                self._gap(sid, last, seq)
        if ftype in ("ok", "unsubscribed", "list_subscriptions"):
            return  # an ``ok`` to get_snapshot carries the sid's next seq (asyncapi okResponse)
        if ftype == "orderbook_snapshot":
            switches = self._forms.switches
            form = self._forms.of(frame)
            if self._forms.switches != switches:
                self.stats.form_switches += 1
                log.warning(
                    "kalshi feed: sid %s snapshot is in %s pricing, not the form asked for",
                    sid,
                    "yes-leg" if form else "legacy no-leg",
                )
            ticker = (frame.get("msg") or {}).get("market_ticker")
            if isinstance(ticker, str):
                self.synced.add(ticker)
                self._awaiting.pop(ticker, None)
                self.stats.snapshots += 1
            self._queue.put_nowait({**frame, "cfa_yes_price": form})
            return
        if ftype == "orderbook_delta":
            ticker = (frame.get("msg") or {}).get("market_ticker")
            if ticker in self.synced:
                self._queue.put_nowait({**frame, "cfa_yes_price": self._forms.of(frame)})
            else:
                self.stats.dropped_deltas += 1
            return
        self._queue.put_nowait(frame)

    def _on_subscribed(self, frame: dict[str, Any]) -> None:
        msg = frame.get("msg") or {}
        sid, channel = msg.get("sid"), msg.get("channel")
        if not isinstance(sid, int) or not isinstance(channel, str):
            return
        cid = frame.get("id")
        mine = self._by_cid.pop(cid, None) if isinstance(cid, int) else None
        sub = self._subs.get(mine or channel)
        late = mine is None and isinstance(cid, int) and sub is not None and sub.cid != cid
        if sub is None or sub.sid is not None or late:
            # an answer to a subscribe we have re-sent since: one subscription per channel
            self._send({"id": self._take_id(), "cmd": "unsubscribe", "params": {"sids": [sid]}})
            return
        if sub.resubscribed:
            sub.resubscribed = False
            # what the channel carried while it was down is lost: tell the consumer
            self._queue.put_nowait({"type": "cfa_resubscribed", "channel": sub.channel})
        sub.sid = sid
        sub.attempts = 0
        self._sids[sid] = sub.channel
        self._sid_tickers[sid] = list(sub.params.get("market_tickers") or [])
        if all(s.sid is not None for s in self._subs.values()):
            self.ready.set()

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
        now = time.monotonic()
        self.unsynced_epoch += 1
        for t in tickers:
            self.synced.discard(t)
            self._awaiting[t] = (now, self._awaiting.get(t, (0.0, 0))[1] + 1)
        self.stats.resync_requests += 1
        cid = self._take_id()
        self._snap_cids[cid] = list(tickers)
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
        self.unsynced_epoch += 1

    def switch_form(self, ticker: str) -> None:
        """``ticker``'s book is read in the wrong pricing form (the consumer has evidence the
        snapshot check could not see): read its subscription in the other form from now on and
        ask for a fresh snapshot (counted in :attr:`FeedStats.form_switches`)."""
        for sid, channel in self._sids.items():
            if channel == "orderbook_delta" and ticker in (self._sid_tickers.get(sid) or []):
                form = self._forms.switch(sid)
                self.stats.form_switches += 1
                log.warning(
                    "kalshi feed: sid %d taken to be in %s pricing from now on",
                    sid,
                    "yes-leg" if form else "legacy no-leg",
                )
                self._request_snapshots(sid, [ticker])
                return

    def _on_error(self, frame: dict[str, Any]) -> None:
        self.stats.errors += 1
        msg = frame.get("msg") or {}
        code = msg.get("code")
        cid, sid = frame.get("id"), frame.get("sid")
        log.warning("kalshi feed: error %s: %s", code, msg.get("msg"))
        self._queue.put_nowait({"type": "cfa_error", "error": f"ws error {code}: {msg.get('msg')}"})
        if isinstance(cid, int) and cid in self._by_cid:
            # our subscribe failed: such errors carry the command id and no sid
            self._resubscribe(self._by_cid.pop(cid))
            return
        if isinstance(cid, int) and cid in self._snap_cids:
            self._snap_cids.pop(cid)
            self._resubscribe("orderbook_delta")  # get_snapshot refused: books from scratch
            return
        channel = self._sids.get(sid) if isinstance(sid, int) else None
        if channel is not None:
            if code in TERMINAL_ERRORS:
                self._resubscribe(channel)
            return
        if code in TERMINAL_ERRORS:
            self._drop(f"terminal error {code} naming no subscription")

    def _resubscribe(self, channel: str) -> None:
        """Subscribe ``channel`` again with its own parameters (its old sid unsubscribed)."""
        sub = self._subs.get(channel)
        if sub is None:
            return
        if sub.attempts >= self.max_attempts and sub.sid is None:
            self._drop(f"subscribe {channel} failed {sub.attempts} times")
            return
        self.stats.resubscribes += 1
        sub.resubscribed = True
        self.ready.clear()
        old = sub.sid
        if old is not None:
            self._sids.pop(old, None)
            self._sid_tickers.pop(old, None)
            self._last.pop(old, None)
            self._send({"id": self._take_id(), "cmd": "unsubscribe", "params": {"sids": [old]}})
        self._by_cid.pop(sub.cid, None)
        self._send(self._subscribe_cmd(sub))
