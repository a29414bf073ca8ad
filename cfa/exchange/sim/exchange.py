"""``SimExchange``: the embedded, seeded, Kalshi-shaped :class:`~cfa.exchange.base.Exchange`.

One simulated world: every market advances on one :class:`SimClock`, event by event, in time
order (ties broken by market order), whichever stream pulls. Streams pull: when a consumer
has drained its queue, the stream steps the market with the earliest next event and delivers
what it published. So the clock is at the time of the event the consumer just received, and an
order we place in reaction acts at that time (no latency is modelled).

Determinism: the background world depends only on ``seed``, the scenarios and the tickers;
our orders change the book (and so which takers fill us) but draw no random numbers. The same
seed and the same sequence of calls give identical events and fills. Nothing reads the wall
clock unless ``speed`` is set; then the streams pace themselves so that simulated time runs
``speed`` times as fast as wall time (``speed=1.0`` is real time), sleeping with
:func:`asyncio.sleep`. As fast as possible, a stream still yields to the event loop
(``asyncio.sleep(0)``) every :data:`YIELD_EVERY` events or steps.

Events: an event scenario (one with an ``event`` section: a strike ladder or a mutually
exclusive set, see :mod:`cfa.exchange.sim.event`) makes one market per leg, all driven by one
:class:`~cfa.exchange.sim.event.EventDriver`; several entries of the same event scenario make
distinct events (``-2``, ``-3`` on the event ticker, and so on every leg's ticker).

A stream ends once all its markets have settled, or when simulated time reaches
``start_ts + duration`` (the clock then reads exactly that time). A stream that joins late
starts with snapshots of the books as they are; several streams may run at once (one per
market, say) and each sees every event of its markets in order. Paced, the clock reads the
time of the last event between events (it does not interpolate wall time).

Orders: limit orders on the YES leg. A crossing order that is not post-only takes liquidity
at the resting prices (taker fee) and rests the rest; it never trades with our own resting
orders (Kalshi's ``taker_at_cross``: it is cancelled there, keeping earlier fills). A
``reduce_only`` order is cut down to the position it reduces. ``amend_order`` takes Kalshi's
total count (filled + resting); shrinking at the same price keeps the queue position, a new
price or a larger count goes to the back. At close every resting order is cancelled.
Placing again with a known client order id returns that order as it is now (even cancelled).

Order ids are ``sim-o00000001``…, fill ids ``sim-f00000001``…, trade ids ``<ticker>-t<n>``.
Reject codes: ``invalid_price`` (off the grid or outside the range), ``invalid_order_size``,
``post_only_cross``, ``market_closed``, ``reduce_only`` (nothing to reduce),
``insufficient_balance``. ``OrderNotFound`` for unknown order ids and for orders that are no
longer resting (code ``order_not_resting``). See :mod:`cfa.exchange.sim.matching` for the queue
model and :mod:`cfa.exchange.emulator.account` for cash, positions and PnL.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Collection, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from cfa.core.types import (
    BookSnapshot,
    MarketInfo,
    Outcome,
    Price,
    Qty,
    Side,
    Trade,
)
from cfa.exchange.base import (
    Clock,
    Event,
    MarketNotFound,
    OrderRejected,
)
from cfa.exchange.emulator.account import Account
from cfa.exchange.emulator.orders import OrderDesk, OwnOrder
from cfa.exchange.sim.clock import DEFAULT_START_TS, SimClock
from cfa.exchange.sim.event import EventDriver, LegView
from cfa.exchange.sim.market import SimMarket, market_seed
from cfa.exchange.sim.scenarios import Scenario, load_scenario

YIELD_EVERY = 256
"""A stream awaits ``asyncio.sleep(0)`` at least this often (events or simulation steps)."""

PACE_SLICE = 0.05
"""Longest single sleep of a paced stream, seconds (it then delivers what arrived meanwhile)."""

DEFAULT_CASH = Decimal(10_000)
"""Starting balance in dollars."""


def _fanout(queues: tuple[deque[Event], ...]) -> Callable[[Event], None]:
    def emit(ev: Event) -> None:
        for q in queues:
            q.append(ev)

    return emit


class SimExchange(OrderDesk):
    """The embedded simulator. Implements :class:`cfa.exchange.base.Exchange`.

    ``scenarios``: one market per entry (an event scenario: one per leg); several entries of
    the same scenario get distinct tickers (``…-2``, ``…-3``). ``seed`` (≥ 0) fixes the
    world. ``start_ts``: simulated start, epoch seconds. ``duration``: simulated seconds
    until the streams end (None: until every market has settled). ``speed``: None for as
    fast as possible, else the multiple of real time. ``cash``: starting balance in dollars.
    ``only``: the indices of the entries of ``scenarios`` to build (None: all of them). The
    others are skipped but still counted, so every built market has the ticker, event ticker
    and random stream it has in the whole list: a market's background events depend only on
    ``seed`` and its entry's place in ``scenarios``, never on which other markets share the
    exchange (a cluster run builds one exchange per actor this way, see
    :mod:`cfa.runtime.cluster`).
    """

    def __init__(
        self,
        scenarios: Sequence[Scenario],
        *,
        seed: int = 0,
        start_ts: float = DEFAULT_START_TS,
        duration: float | None = None,
        speed: float | None = None,
        cash: Decimal | int | str = DEFAULT_CASH,
        only: Collection[int] | None = None,
    ) -> None:
        if not scenarios:
            raise ValueError("SimExchange needs at least one scenario")
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if duration is not None and not duration >= 0:
            raise ValueError(f"duration must be non-negative, got {duration}")
        if only is not None:
            bad = sorted(i for i in only if not 0 <= i < len(scenarios))
            if bad:
                raise ValueError(
                    f"only: entry {bad[0]} is not one of the {len(scenarios)} scenario entries"
                )
            if not only:
                raise ValueError("only: no entry selected (SimExchange needs at least one)")
        self._clock = SimClock(start_ts)
        self.clock: Clock = self._clock
        """Simulated time (a :class:`SimClock`)."""
        self.seed = seed
        self._init_desk(Account(Decimal(cash)), "sim-o")
        self._markets: dict[str, SimMarket] = {}
        self._drivers: dict[str, EventDriver] = {}
        copies: dict[str, int] = {}
        for entry, sc in enumerate(scenarios):
            copy = copies.get(sc.name, 0)
            copies[sc.name] = copy + 1
            if only is not None and entry not in only:
                continue
            infos = sc.market_infos(start_ts, copy)
            for info in infos:
                if info.ticker in self._markets:
                    raise ValueError(f"two markets would share the ticker {info.ticker}")
            if sc.event is None:
                self._markets[infos[0].ticker] = SimMarket(
                    sc, infos[0], seed=seed, start_ts=start_ts, account=self.account
                )
                continue
            event_ticker = infos[0].event_ticker
            if event_ticker in self._drivers:
                raise ValueError(f"two events would share the ticker {event_ticker}")
            driver = EventDriver(
                sc.latent,
                sc.event,
                market_seed(seed, event_ticker),
                start_ts,
                infos[0].close_ts,
            )
            self._drivers[event_ticker] = driver
            for i, info in enumerate(infos):
                self._markets[info.ticker] = SimMarket(
                    sc.leg_scenario(i),
                    info,
                    seed=seed,
                    start_ts=start_ts,
                    account=self.account,
                    latent=driver.view(i),
                )
        self._list = list(self._markets.values())
        self._heap = [(m.next_t, i) for i, m in enumerate(self._list)]
        heapq.heapify(self._heap)
        self._end_ts = math.inf if duration is None else start_ts + duration
        self._ended = False
        self._done_count = 0
        self._speed = speed
        self._wall0: float | None = None
        self._sim0 = start_ts
        self._sinks: dict[str, list[deque[Event]]] = {}

    @classmethod
    def from_scenarios(
        cls,
        names: Sequence[str],
        *,
        seed: int = 0,
        start_ts: float = DEFAULT_START_TS,
        duration: float | None = None,
        speed: float | None = None,
        cash: Decimal | int | str = DEFAULT_CASH,
        only: Collection[int] | None = None,
    ) -> SimExchange:
        """Build from scenario names (or ``.yaml`` paths); unknown names raise ``ValueError``.
        ``only``: build these entries only (see the class doc)."""
        loaded: dict[str, Scenario] = {}
        for n in names:
            if n not in loaded:
                loaded[n] = load_scenario(n)
        return cls(
            [loaded[n] for n in names],
            seed=seed,
            start_ts=start_ts,
            duration=duration,
            speed=speed,
            cash=cash,
            only=only,
        )

    # -- simulator-only helpers --------------------------------------------------------------

    @property
    def tickers(self) -> list[str]:
        """Every market's ticker, in creation order."""
        return list(self._markets)

    @property
    def ended(self) -> bool:
        """True once simulated time reached the end (or every market settled)."""
        return self._ended

    @property
    def end_ts(self) -> float:
        """When the streams end (``inf`` without a duration)."""
        return self._end_ts

    def latent_probability(self, ticker: str) -> float:
        """The hidden "true" probability of YES now (for diagnostics and tests only).

        A leg of an event answers at the clock's time (at the close once past it), so that the
        legs' answers are of one instant (a ladder's non-increasing in the strike, an exclusive
        set's summing to 1); a single market answers as of the end of the batch of events it
        has drawn."""
        m = self._market(ticker)
        lat = m.latent
        if isinstance(lat, LegView):
            return lat.p_at(min(self._clock.t, lat.driver.close_ts))
        return m.latent_p

    @property
    def event_drivers(self) -> dict[str, EventDriver]:
        """The drivers of the run's multi-market events, by event ticker (for tests, tools)."""
        return dict(self._drivers)

    def result(self, ticker: str) -> Outcome | None:
        """The market's outcome once settled, else None."""
        return self._market(ticker).result

    def market(self, ticker: str) -> SimMarket:
        """The simulated market itself (for tests and tools)."""
        return self._market(ticker)

    def run_until(self, ts: float) -> None:
        """Advance the world, unpaced, through every event at or before ``ts``.

        Events go to the streams attached at the time (none: they are dropped, state is kept).
        Afterwards the clock reads ``ts``, or the end of the run if that comes first.
        """
        while not self._ended and self._heap[0][0] <= ts and self._step_once():
            pass
        self._clock.advance_to(min(ts, self._end_ts))

    async def background_order(self, ticker: str, side: Side, price: Price, count: Qty) -> Qty:
        """An anonymous participant's limit order at the current time: it trades with what it
        crosses (our resting orders included) and rests the rest. Returns the size traded.

        For tests and tools that need a controlled counterparty; the background flow itself
        does this through the same code path.
        """
        m = self._open_market(ticker)
        idx = self._index(m, price)
        if count <= 0:
            raise OrderRejected(f"count must be positive, got {count}", code="invalid_order_size")
        is_bid = Side(side) is Side.BID
        traded = 0
        if m.crosses(is_bid, idx):
            traded = m.sweep(is_bid, idx, count, self._clock.t, None)
        if count > traded:
            m.bg_add(is_bid, idx, count - traded, self._clock.t)
        return traded

    # -- the Exchange interface -----------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to open; idempotent."""

    async def close(self) -> None:
        """Nothing to release; idempotent. Resting orders stay (the runtime cancels first)."""

    async def get_markets(self, tickers: Sequence[str] | None = None) -> list[MarketInfo]:
        if tickers is None:
            return [m.info for m in self._list if not m.closed]
        return [self._market(t).info for t in tickers]

    async def get_market(self, ticker: str) -> MarketInfo:
        return self._market(ticker).info

    async def get_orderbook(self, ticker: str) -> BookSnapshot:
        return self._market(ticker).snapshot(self._clock.t)

    async def get_trades(self, ticker: str, limit: int = 100) -> list[Trade]:
        return self._market(ticker).recent_trades(limit)

    async def stream(self, tickers: Sequence[str]) -> AsyncGenerator[Event, None]:
        """Snapshots of ``tickers`` now, then every event of theirs as the world advances."""
        async for chunk in self.stream_chunks(tickers):
            for ev in chunk:
                yield ev

    async def stream_chunks(self, tickers: Sequence[str]) -> AsyncGenerator[Iterator[Event], None]:
        """:meth:`stream` in chunks (:func:`cfa.exchange.base.event_chunks`): the snapshots,
        then iterators that step the world lazily, one event at a time as the consumer asks,
        and end where the stream must await (every :data:`YIELD_EVERY` events or steps, or
        to pace). Exhaust each chunk before asking for the next."""
        markets = [self._market(t) for t in dict.fromkeys(tickers)]
        if not markets:
            return
        q: deque[Event] = deque()
        for m in markets:
            self._attach(m, q)
        try:
            # all snapshots first: an order placed while the consumer handles one of them must
            # show up as a delta after every snapshot, never inside a later one as well
            yield iter([m.snapshot(self._clock.t) for m in markets])
            seen_done = [-1]
            pause = [0.0]
            while True:
                pause[0] = 0.0
                yield self._pull(markets, q, seen_done, pause)
                if pause[0] < 0:
                    return
                await asyncio.sleep(pause[0])
        finally:
            for m in markets:
                self._detach(m, q)

    def _pull(
        self, markets: list[SimMarket], q: deque[Event], seen_done: list[int], pause: list[float]
    ) -> Iterator[Event]:
        """One chunk: deliver ``q``, stepping the market whose next event comes first when it
        is empty. Ends after ``YIELD_EVERY`` events or steps (``pause[0]`` 0), when pacing
        must wait (``pause[0]`` the seconds to sleep) or at the end (``pause[0]`` -1)."""
        heap, world, clock = self._heap, self._list, self._clock
        paced = self._speed is not None
        replace = heapq.heapreplace
        inf, end = math.inf, self._end_ts
        popleft = q.popleft
        n = 0
        while True:
            while q:
                yield popleft()
                n += 1
                if n >= YIELD_EVERY:
                    return
            if seen_done[0] != self._done_count:
                seen_done[0] = self._done_count
                if all(m.done for m in markets):
                    pause[0] = -1.0
                    return
            # step the market whose next event comes first (inlined: this is the hot loop)
            t, i = heap[0]
            if t > end or t == inf:  # the run is over (perhaps ended by another stream)
                self._finish(t)
                while q:
                    yield popleft()
                pause[0] = -1.0
                return
            if paced:
                wait = self._wall_wait(t)
                if wait > 0:  # in slices, so our own order events are not held back
                    pause[0] = min(wait, PACE_SLICE)
                    return
            if t > clock.t:
                clock.t = t
            m = world[i]
            m.step()
            t = m.next_t
            if t == inf:
                self._done_count += 1
            replace(heap, (t, i))
            n += 1
            if n >= YIELD_EVERY:
                return

    # -- the order desk's hooks (cfa.exchange.emulator.orders) ---------------------------------

    def _book(self, ticker: str) -> SimMarket:
        return self._market(ticker)

    def _open_book(self, ticker: str) -> SimMarket:
        return self._open_market(ticker)

    def _tickers(self) -> list[str]:
        return list(self._markets)

    def _price_index(self, book: SimMarket, price: Price) -> int:
        return self._index(book, price)

    def _crosses(
        self, book: SimMarket, side: Side, price: Price, idx: int, exclude: OwnOrder | None
    ) -> bool:
        # our other orders on the book count; ``exclude`` rests on the same side, so it never
        # changes the answer
        return book.crosses(side is Side.BID, idx)

    def _submit(self, book: SimMarket, o: OwnOrder) -> None:
        book.submit(o, self._clock.t)

    def _amend(self, book: SimMarket, o: OwnOrder, price: Price, idx: int, count: Qty) -> None:
        """Lowering the count at the same price keeps the queue position; a new price or a
        larger count goes to the back."""
        ts = self._clock.t
        if price == o.price:
            new_remaining = count - o.filled
            if new_remaining == o.remaining:
                return
            if new_remaining < o.remaining:
                book.reduce(o, o.remaining - new_remaining, ts)
                return
        book.replace(o, price, idx, count, ts)

    def _cancel(self, book: SimMarket, o: OwnOrder) -> None:
        book.cancel(o, self._clock.t)

    # -- internals ----------------------------------------------------------------------------

    def _market(self, ticker: str) -> SimMarket:
        m = self._markets.get(ticker)
        if m is None:
            raise MarketNotFound(f"no market {ticker!r}", code="market_not_found")
        return m

    def _open_market(self, ticker: str) -> SimMarket:
        m = self._market(ticker)
        if m.closed:
            raise OrderRejected(f"{ticker}: market is closed", code="market_closed")
        return m

    @staticmethod
    def _index(m: SimMarket, price: Price) -> int:
        idx = (
            m.idx_of.get(price) if isinstance(price, int) and not isinstance(price, bool) else None
        )
        if idx is None:
            raise OrderRejected(
                f"{m.ticker}: {price!r} is not a tradable price on {m.info.price_level_structure}",
                code="invalid_price",
            )
        return idx

    def _attach(self, m: SimMarket, q: deque[Event]) -> None:
        self._sinks.setdefault(m.ticker, []).append(q)
        self._rewire(m)

    def _detach(self, m: SimMarket, q: deque[Event]) -> None:
        sinks = self._sinks.get(m.ticker, [])
        for i, s in enumerate(sinks):
            if s is q:
                del sinks[i]
                break
        self._rewire(m)

    def _rewire(self, m: SimMarket) -> None:
        sinks = self._sinks.get(m.ticker, [])
        if not sinks:
            m.emit = None
        elif len(sinks) == 1:
            m.emit = sinks[0].append
        else:
            m.emit = _fanout(tuple(sinks))

    def _step_once(self) -> bool:
        """Process the world's next event (unpaced); False once the run has ended."""
        if self._ended:
            return False
        t, i = self._heap[0]
        if t > self._end_ts or t == math.inf:
            self._finish(t)
            return False
        self._clock.advance_to(t)
        m = self._list[i]
        m.step()
        t = m.next_t
        if t == math.inf:
            self._done_count += 1
        heapq.heapreplace(self._heap, (t, i))
        return True

    def _wall_wait(self, t: float) -> float:
        now = time.monotonic()
        if self._wall0 is None:
            self._wall0 = now
            self._sim0 = self._clock.t
        assert self._speed is not None
        return self._wall0 + (t - self._sim0) / self._speed - now

    def _finish(self, next_t: float) -> None:
        self._ended = True
        if math.inf not in (next_t, self._end_ts):
            self._clock.advance_to(self._end_ts)


if TYPE_CHECKING:  # mypy proves that SimExchange is an Exchange
    from cfa.exchange.base import Exchange

    def _is_exchange(ex: SimExchange) -> Exchange:
        return ex
