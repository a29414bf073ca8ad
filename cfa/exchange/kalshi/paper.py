"""Paper trading on Kalshi: live market data, fills from the venue emulator, no order sent.

:class:`PaperExchange` is a :class:`cfa.exchange.emulator.book.BookEmulator` fed by Kalshi's
live market data — market metadata and books over REST, book deltas and public trades over the
WebSocket — through the Kalshi adapter's market-data side (:class:`KalshiExchange`'s
``get_markets``, ``get_market``, ``get_orderbook``, ``get_trades`` and ``stream``). Our orders
rest in the emulator and fill by its named fill model (:mod:`cfa.exchange.emulator.fills`,
default ``through``) against the live book and prints, with Kalshi's fees, in a paper account
(:class:`~cfa.exchange.emulator.account.Account`, $10,000 unless told otherwise).

**No order ever reaches Kalshi, by construction.** The paper exchange never calls an order,
portfolio or order-group method of the adapter, never calls its ``start`` (which reconciles
and creates an order group), and the adapter it holds is built with an *unsigned* REST session:
every authenticated REST call (orders, portfolio) fails locally with ``no_credentials`` before
a request is sent. The API key, when there is one, signs only the WebSocket handshake.

**What needs a key** (Kalshi's docs, ``getting_started/quick_start_websockets.md``,
``websockets/websocket-connection.md``): REST market data (markets, series, order books,
trades) is public. The WebSocket needs an authenticated handshake even for public channels, and
``orderbook_delta`` is one of its private channels. So:

* with ``CFA_KALSHI_KEY_ID`` and ``CFA_KALSHI_PRIVATE_KEY_PATH`` set, the book streams over the
  WebSocket (snapshots, deltas, trades, lifecycle), as for live trading;
* without them, the exchange *polls* the public REST order book and trades of each market
  every ``poll_interval`` seconds (at least :func:`poll_floor` for the number of markets, so
  the polling uses at most half of Kalshi's Basic read budget), and streams the differences as
  book deltas. Fills are then only as fine as the polling: a move that comes and goes between
  two polls is never seen.

Streams: one per set of markets, several at once (each market in at most one). Events of the
feed come out re-numbered per market (a snapshot, then deltas one ``seq`` apart), with our own
order updates, fills and book deltas (our ``client_order_id``) interleaved at the moment they
happen. Fills and order updates of the real Kalshi account, if the key has any, are ignored:
they are not this paper account's. The clock is the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, cast

from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    Fill,
    MarketInfo,
    MarketStatus,
    Order,
    OrderRequest,
    Outcome,
    Price,
    Qty,
    Settlement,
    Trade,
)
from cfa.exchange.base import Clock, Event, ExchangeError
from cfa.exchange.emulator.account import Account
from cfa.exchange.emulator.book import BookEmulator
from cfa.exchange.history import MarketHistory
from cfa.exchange.kalshi.adapter import KalshiExchange
from cfa.exchange.kalshi.auth import Signer, load_signer
from cfa.exchange.kalshi.ratelimit import DEFAULT_COST, Budget
from cfa.exchange.kalshi.settings import KalshiSettings

DEFAULT_CASH = Decimal(10_000)
"""Starting paper balance in dollars."""

DEFAULT_POLL_INTERVAL = 1.0
"""Seconds between two polls of a market's public REST book (keyless paper trading)."""

POLL_READ_SHARE = 0.5
"""Most of Kalshi's Basic-tier read budget the keyless polling may use."""

KEY_HELP = (
    "paper trading needs no key for REST market data, but Kalshi's WebSocket requires an "
    "authenticated connection even for public data: without CFA_KALSHI_KEY_ID and "
    "CFA_KALSHI_PRIVATE_KEY_PATH the book is polled over public REST instead (coarser fills)"
)
"""One sentence on what paper trading needs a key for (CLI help and messages)."""


def poll_floor(markets: int) -> float:
    """The shortest poll interval, seconds, for ``markets`` markets: each poll costs two reads
    (book and trades), and the polling stays within :data:`POLL_READ_SHARE` of the Basic read
    budget."""
    per_s = Budget().read_rate * POLL_READ_SHARE / DEFAULT_COST
    return 2 * max(markets, 1) / per_s


class MarketData(Protocol):
    """The read-only side of a Kalshi connection that paper trading uses (and nothing else)."""

    clock: Clock

    async def get_markets(self, tickers: Sequence[str] | None = None) -> list[MarketInfo]: ...

    async def get_market(self, ticker: str) -> MarketInfo: ...

    async def get_orderbook(self, ticker: str) -> BookSnapshot: ...

    async def get_trades(self, ticker: str, limit: int = 100) -> list[Trade]: ...

    def stream(self, tickers: Sequence[str]) -> AsyncIterator[Event]: ...

    async def get_history(self, market: MarketInfo, window_s: float) -> MarketHistory: ...

    async def close(self) -> None: ...


def market_data(rest_url: str, ws_url: str, signer: Signer | None, **kw: Any) -> KalshiExchange:
    """A Kalshi adapter for market data only: its REST session is unsigned (any order or
    portfolio call fails locally with ``no_credentials``); ``signer`` signs only the WebSocket
    handshake (None: no WebSocket, poll instead). ``kw`` go to :class:`KalshiExchange`."""
    kw.setdefault("order_group_limit", None)
    data = KalshiExchange(rest_url, ws_url, cast(Signer, None), **kw)
    data.signer = cast(Signer, signer)  # read by the WebSocket feed only
    return data


class PaperExchange(BookEmulator):
    """Paper trading on live Kalshi market data (see the module doc). Implements
    :class:`cfa.exchange.base.Exchange`.

    ``data``: the market-data side (:func:`market_data`). ``websocket``: stream the book over
    the WebSocket (needs the key) rather than poll REST. ``fill_model``: ``through`` (default),
    ``touch`` or ``queue``. ``cash``: the paper balance, dollars. ``poll_interval``: seconds
    between REST polls of each market without a key (raised to :func:`poll_floor`).
    """

    paper = True
    """Marks a paper venue (the run's audit config says ``paper: true``)."""

    def __init__(
        self,
        data: MarketData,
        *,
        websocket: bool,
        fill_model: str = "through",
        cash: Decimal | int | str = DEFAULT_CASH,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive seconds, got {poll_interval}")
        self._data = data
        self.clock: Clock = data.clock
        self.websocket = websocket
        self.poll_interval = poll_interval
        self._init_emulator(
            fill_model_name=fill_model,
            cash=Account(Decimal(cash)),
            order_prefix="paper-o",
            fill_prefix="paper-f",
        )
        self._sinks: list[tuple[frozenset[str], deque[Event], asyncio.Event]] = []

    @classmethod
    def connect(
        cls,
        rest_url: str,
        ws_url: str,
        signer: Signer | None,
        *,
        timeout: float = 5.0,
        ws_backoff: float = 0.05,
        **kw: Any,
    ) -> PaperExchange:
        """Paper trading against Kalshi at these URLs; ``signer`` None polls REST (module doc).
        ``kw`` go to the constructor."""
        data = market_data(rest_url, ws_url, signer, timeout=timeout, ws_backoff=ws_backoff)
        return cls(data, websocket=signer is not None, **kw)

    @classmethod
    def from_settings(cls, settings: KalshiSettings | None = None, **kw: Any) -> PaperExchange:
        """From ``CFA_KALSHI_*`` settings: the key when both key settings are set (a key that
        is set but unreadable is an error), else keyless polling."""
        s = settings or KalshiSettings()
        signer = None if s.missing() else load_signer(s)
        return cls.connect(s.rest_url, s.websocket_url, signer, **kw)

    def __repr__(self) -> str:
        mode = "websocket" if self.websocket else f"polling every {self.poll_interval:g}s"
        return f"PaperExchange({mode}, fill_model={self.fill_model!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to reconcile: the paper account starts flat, with no orders. Idempotent."""

    async def close(self) -> None:
        """Close the market-data connections. Resting paper orders stay (the runtime cancels)."""
        await self._data.close()

    # -- market data ---------------------------------------------------------------------------

    async def get_markets(self, tickers: Sequence[str] | None = None) -> list[MarketInfo]:
        """Markets from Kalshi's public REST (all open ones when ``tickers`` is None)."""
        infos = await self._data.get_markets(tickers)
        for info in infos:
            self._add_market(info)
        return [self._market(i.ticker).info for i in infos]

    async def get_market(self, ticker: str) -> MarketInfo:
        m = self._markets.get(ticker)
        if m is None:
            m = self._add_market(await self._data.get_market(ticker))
        return m.info

    async def get_orderbook(self, ticker: str) -> BookSnapshot:
        """The live book plus our resting paper orders. Before the market streams, from public
        REST (``seq`` 0), which also becomes the book our orders are checked against."""
        await self.get_market(ticker)
        m = self._market(ticker)
        if not m.started:
            m.book.apply_snapshot(await self._data.get_orderbook(ticker))
        return self._merged(m, m.out_seq)

    async def get_trades(self, ticker: str, limit: int = 100) -> list[Trade]:
        """Recent public trades from Kalshi's REST, newest last."""
        return await self._data.get_trades(ticker, limit)

    async def get_history(self, market: MarketInfo, window_s: float) -> MarketHistory:
        """The market's recent candlesticks and trades from Kalshi's public REST (no key): the
        warm start (:mod:`cfa.runtime.warmstart`) seeds σ and k from it as on a live run."""
        return await self._data.get_history(market, window_s)

    async def stream(self, tickers: Sequence[str]) -> AsyncGenerator[Event, None]:
        """Live events of ``tickers`` with our paper orders and fills (module doc)."""
        want = list(dict.fromkeys(tickers))
        if not want:
            return
        busy = [t for t in want for s in self._sinks if t in s[0]]
        if busy:
            raise ExchangeError(f"{busy[0]} is already streamed", code="stream_busy")
        for t in want:
            await self.get_market(t)
        q: deque[Event] = deque()
        wake = asyncio.Event()
        sink = (frozenset(want), q, wake)
        self._sinks.append(sink)
        source = self._data.stream(want) if self.websocket else self._poll(want)
        pump = asyncio.create_task(self._pump(source))
        try:
            while True:
                while q:
                    yield q.popleft()
                if pump.done():
                    pump.result()  # the feed's error, if it failed
                    self._dispatch()
                    while q:
                        yield q.popleft()
                    return
                wake.clear()
                waiter = asyncio.create_task(wake.wait())
                await asyncio.wait({waiter, pump}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            self._sinks.remove(sink)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    # -- orders: the emulator's, plus waking the streams -----------------------------------------

    async def place_order(self, request: OrderRequest) -> Order:
        try:
            return await super().place_order(request)
        finally:
            self._dispatch()

    async def amend_order(self, order_id: str, price: Price, count: Qty) -> Order:
        try:
            return await super().amend_order(order_id, price, count)
        finally:
            self._dispatch()

    async def cancel_order(self, order_id: str) -> Order:
        try:
            return await super().cancel_order(order_id)
        finally:
            self._dispatch()

    async def cancel_all(self, ticker: str | None = None) -> list[Order]:
        try:
            return await super().cancel_all(ticker)
        finally:
            self._dispatch()

    # -- internals -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand the emulator's queued events to the streams of their markets."""
        pending = self._pending
        while pending:
            ev = pending.popleft()
            for tickers, q, wake in self._sinks:
                if ev.ticker in tickers:
                    q.append(ev)
                    wake.set()

    async def _pump(self, source: AsyncIterator[Event]) -> None:
        """Feed the source's market data into the emulator, event by event."""
        try:
            async for ev in source:
                self._on_feed(ev)
                self._dispatch()
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def _on_feed(self, ev: Event) -> None:
        m = self._markets.get(ev.ticker)
        if m is None or isinstance(ev, Fill | Order):
            return  # not a market we trade, or the real account's own activity
        now = self.clock.now()
        self._close_if_due(m, now)
        if isinstance(ev, BookSnapshot):
            self._on_snapshot(m, ev, now)
        elif isinstance(ev, BookDelta):
            self._on_delta(m, ev, now)
        elif isinstance(ev, Trade):
            m.trades.append(ev)
            self._pending.append(ev)
            self._on_print(m, ev.price, ev.count, now)
        elif isinstance(ev, Settlement):
            if m.settled is None:
                m.settled = ev.result
                for o in self._orders_in(m):
                    self._cancel(m, o)
                self.account.settle(ev.ticker, ev.result is Outcome.YES)
                self._pending.append(ev)
        else:  # other market events (lifecycle) pass through unchanged
            if isinstance(ev, MarketStatus) and ev.active and ev.reason == "activated":
                for o in self._orders_in(m):  # Kalshi cancels every resting order then
                    self._cancel(m, o)
            self._pending.append(ev)

    async def _poll(self, tickers: Sequence[str]) -> AsyncGenerator[Event, None]:
        """Keyless source: the public REST book and trades of each market, polled; the book's
        changes as deltas (module doc)."""
        interval = max(self.poll_interval, poll_floor(len(tickers)))
        books: dict[str, dict[tuple[Outcome, Price], Qty]] = {}
        seqs: dict[str, int] = {}
        seen: dict[str, deque[str]] = {t: deque(maxlen=1000) for t in tickers}
        while True:
            for t in tickers:
                snap = await self._data.get_orderbook(t)
                levels = {(Outcome.YES, p): q for p, q in snap.yes if q > 0}
                levels.update({(Outcome.NO, p): q for p, q in snap.no if q > 0})
                before = books.get(t)
                books[t] = levels
                if before is None:
                    seqs[t] = 1
                    yield BookSnapshot(t, 1, snap.ts, snap.yes, snap.no)
                else:
                    for key in sorted(set(before) | set(levels), key=lambda k: (k[0].value, k[1])):
                        change = levels.get(key, 0) - before.get(key, 0)
                        if change:
                            seqs[t] += 1
                            yield BookDelta(t, seqs[t], snap.ts, key[0], key[1], change, None)
                trades = await self._data.get_trades(t, 100)
                fresh = [tr for tr in trades if tr.trade_id not in seen[t]]
                seen[t].extend(tr.trade_id for tr in fresh)
                if before is not None:  # the first poll's trades are history
                    for tr in fresh:
                        yield tr
            await asyncio.sleep(interval)


if TYPE_CHECKING:  # mypy proves that the paper venue is an Exchange
    from cfa.exchange.base import Exchange

    def _is_exchange(ex: PaperExchange) -> Exchange:
        return ex
