"""The market loop's fast path against a scripted venue: failed cancels, reduce-only sizing,
breakers on a one-sided book (issue 11).

Each test drives one :class:`~cfa.runtime.loop.MarketLoop` of a :class:`Session` event by
event (no stream), on a venue whose every answer the test controls, and checks what rests on
the venue after each step.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from cfa.core.grid import PriceGrid
from cfa.core.types import (
    QTY_SCALE,
    BookSnapshot,
    Fill,
    MarketInfo,
    Order,
    OrderRequest,
    OrderStatus,
    Side,
    Trade,
    TradingState,
)
from cfa.exchange.base import ExchangeError, OrderNotFound
from cfa.risk.policy import Policy, load_policy
from cfa.runtime.loop import CANCEL_RETRY_S, LoopState, MarketLoop
from cfa.runtime.replay import MemorySink
from cfa.runtime.session import Session

T0 = 1_700_000_000.0
TICKER = "KXTEST-1"


def _policy(**changes: Any) -> Policy:
    """The default policy with ``a__b=value`` changes, warm-up after 1 s."""
    base = load_policy("default").model_dump()
    changes.setdefault("warmup__max_s", 1.0)
    for path, value in changes.items():
        d = base
        *head, last = path.split("__")
        for k in head:
            d = d[k]
        d[last] = value
    return Policy.model_validate(base)


class _Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t


class Venue:
    """A scripted exchange: orders rest until cancelled or filled; failures on request.

    ``fail_cancels``: that many ``cancel_order`` calls fail with a server error and leave the
    order resting. ``fail_cancel_all``: that many ``cancel_all`` calls fail. ``fail_places``:
    that many ``place_order`` calls fail.
    """

    def __init__(self, market: MarketInfo) -> None:
        self.clock = _Clock()
        self.market = market
        self.orders: dict[str, Order] = {}
        self.n = 0
        self.fail_cancels = 0
        self.fail_cancel_all = 0
        self.fail_places = 0
        self.calls: list[tuple[str, Any]] = []

    # -- what the test looks at
    def resting(self, side: Side | None = None) -> list[Order]:
        return [
            o
            for o in self.orders.values()
            if o.status is OrderStatus.RESTING and (side is None or o.side is side)
        ]

    def fill(self, o: Order, count: int, ts: float) -> Fill:
        """Fill ``count`` of resting order ``o`` (the venue's view follows); the loop's event."""
        cur = self.orders[o.order_id]
        left = cur.remaining_count - count
        self.orders[o.order_id] = Order(
            cur.order_id,
            cur.client_order_id,
            cur.ticker,
            cur.side,
            cur.price,
            cur.initial_count,
            left,
            cur.fill_count + count,
            OrderStatus.RESTING if left > 0 else OrderStatus.EXECUTED,
            ts,
        )
        self.n += 1
        return Fill(
            f"f{self.n}",
            cur.order_id,
            cur.client_order_id,
            cur.ticker,
            cur.side,
            cur.price,
            count,
            Decimal(0),
            False,
            ts,
            0,
        )

    # -- Exchange
    async def place_order(self, request: OrderRequest) -> Order:
        self.calls.append(("place", request))
        if self.fail_places > 0:
            self.fail_places -= 1
            raise ExchangeError("server error", code="internal")
        self.n += 1
        o = Order(
            f"o{self.n}",
            request.client_order_id,
            request.ticker,
            request.side,
            request.price,
            request.count,
            request.count,
            0,
            OrderStatus.RESTING,
            self.clock.t,
        )
        self.orders[o.order_id] = o
        return o

    async def amend_order(self, order_id: str, price: int, count: int) -> Order:
        self.calls.append(("amend", (order_id, price, count)))
        o = self.orders.get(order_id)
        if o is None or o.status is not OrderStatus.RESTING:
            raise OrderNotFound(f"order {order_id} is not resting", code="order_not_resting")
        new = Order(
            o.order_id,
            o.client_order_id,
            o.ticker,
            o.side,
            price,
            count,
            count - o.fill_count,
            o.fill_count,
            OrderStatus.RESTING,
            self.clock.t,
        )
        self.orders[order_id] = new
        return new

    def _cancelled(self, o: Order) -> Order:
        done = Order(
            o.order_id,
            o.client_order_id,
            o.ticker,
            o.side,
            o.price,
            o.initial_count,
            0,
            o.fill_count,
            OrderStatus.CANCELED,
            self.clock.t,
        )
        self.orders[o.order_id] = done
        return done

    async def cancel_order(self, order_id: str) -> Order:
        self.calls.append(("cancel", order_id))
        o = self.orders.get(order_id)
        if o is None or o.status is not OrderStatus.RESTING:
            raise OrderNotFound(f"order {order_id} is not resting", code="order_not_resting")
        if self.fail_cancels > 0:
            self.fail_cancels -= 1
            raise ExchangeError("server error", code="internal")
        return self._cancelled(o)

    async def cancel_all(self, ticker: str | None = None) -> list[Order]:
        self.calls.append(("cancel_all", ticker))
        if self.fail_cancel_all > 0:
            self.fail_cancel_all -= 1
            raise ExchangeError("server error", code="internal")
        return [self._cancelled(o) for o in self.resting()]

    async def get_orders(self, ticker: str | None = None, resting_only: bool = True) -> list[Order]:
        return self.resting()

    async def get_orderbook(self, ticker: str) -> BookSnapshot:
        raise ExchangeError("no book")


def _market(close_in: float = 7200.0) -> MarketInfo:
    return MarketInfo(
        ticker=TICKER,
        event_ticker="KXTEST",
        series_ticker="KXT",
        title="test",
        price_ranges=PriceGrid.from_structure("linear_cent").ranges,
        close_ts=T0 + close_in,
    )


def _book(seq: int, ts: float, bid: int | None = 4800, ask: int | None = 5200) -> BookSnapshot:
    """Others' book: 200 contracts at ``bid`` (YES) and at ``ask`` (a NO bid at 1 − ask)."""
    yes = () if bid is None else ((bid - 100, 20_000), (bid, 20_000))
    no = () if ask is None else ((10_000 - ask - 100, 20_000), (10_000 - ask, 20_000))
    return BookSnapshot(TICKER, seq, ts, yes, no)


class Rows(MemorySink):
    """An in-memory audit sink that reads back the trading-state changes."""

    def states(self) -> list[tuple[str, str, float]]:
        """``(state, source, ts)`` of every trading-state change, in order."""
        return [
            (r["state"], r["detail"]["source"], r["detail"]["ts"])
            for table, r in self.rows
            if table == "risk_events" and r["kind"] == "trading_state"
        ]


class Harness:
    """One market's loop in a session over a :class:`Venue`; ``step`` feeds it a book."""

    def __init__(self, policy: Policy | None = None, close_in: float = 7200.0) -> None:
        self.market = _market(close_in)
        self.venue = Venue(self.market)
        self.sink = Rows()
        self.session = Session(
            self.venue,  # type: ignore[arg-type]
            [self.market],
            policy or _policy(),
            self.sink,
            "run-fast-path",
        )
        self.loop: MarketLoop = self.session.loops[TICKER]
        self.t = T0
        self.seq = 0

    async def event(self, ev: Any) -> None:
        self.venue.clock.t = ev.ts
        self.session.now = ev.ts
        await self.loop.on_event(ev)
        self.assert_one_per_side()

    async def step(self, dt: float = 1.5, **book: int | None) -> None:
        self.t += dt
        self.seq += 1
        await self.event(_book(self.seq, self.t, **book))

    async def ready(self) -> None:
        """Warm up and quote both sides."""
        await self.step(0.0)
        await self.step()
        assert self.loop.state is LoopState.READY
        assert self.loop.resting[Side.BID] is not None and self.loop.resting[Side.ASK] is not None

    def assert_one_per_side(self) -> None:
        for side in Side:
            assert len(self.venue.resting(side)) <= 1, f"two {side} orders rest on the venue"

    def assert_loop_knows_the_venue(self) -> None:
        known = {o.order_id for o in self.loop.resting.values() if o is not None}
        assert {o.order_id for o in self.venue.resting()} <= known

    def set_state(self, state: TradingState) -> None:
        self.session.states.set(TICKER, state, source="person:test", reason="test")


# -- 1. a failed cancel keeps the order in the loop's view --------------------------------------


async def test_failed_cancel_keeps_the_order_and_blocks_a_second_one_on_its_side() -> None:
    h = Harness()
    await h.ready()
    bid, ask = h.loop.resting[Side.BID], h.loop.resting[Side.ASK]
    assert bid is not None and ask is not None
    # a halt: both cancels fail, and so does the venue-wide cancel (twice); the venue keeps both
    h.venue.fail_cancels = 2
    h.venue.fail_cancel_all = 2
    h.set_state(TradingState.HALTED)
    await h.step(0.1)
    assert {o.order_id for o in h.venue.resting()} == {bid.order_id, ask.order_id}
    assert h.loop.resting[Side.BID] == bid and h.loop.resting[Side.ASK] == ask
    # resumed before the retry: the old code had forgotten both and placed a second bid and ask
    h.set_state(TradingState.ACTIVE)
    await h.step(0.1)
    h.assert_loop_knows_the_venue()
    assert [c for c in h.venue.calls if c[0] == "place"][2:] == [], "placed while one may rest"
    # the retry (after CANCEL_RETRY_S) goes through; then the sides are quoted afresh at once
    await h.step(CANCEL_RETRY_S)
    assert not {bid.order_id, ask.order_id} & {o.order_id for o in h.venue.resting()}
    assert len(h.venue.resting(Side.BID)) == 1 and len(h.venue.resting(Side.ASK)) == 1
    h.assert_loop_knows_the_venue()
    kinds = [r["action"] for t, r in h.sink.rows if t == "orders"]
    assert kinds.count("cancel_failed") == 2


async def test_failed_cancels_retry_with_a_growing_backoff_until_confirmed() -> None:
    h = Harness()
    await h.ready()
    bid = h.loop.resting[Side.BID]
    assert bid is not None
    h.venue.fail_cancels = 10**6  # the venue never takes the cancel
    h.venue.fail_cancel_all = 10**6
    h.set_state(TradingState.HALTED)
    t_halt = h.t
    for _ in range(40):
        await h.step(0.25)
        h.assert_loop_knows_the_venue()
    cancels = [c for c in h.venue.calls if c == ("cancel", bid.order_id)]
    # 10 s of failures: retried, but backing off (0.5, 1, 2, 4 s ...), not on every event
    assert 3 <= len(cancels) <= 8, cancels
    assert h.loop.resting[Side.BID] is not None
    # the venue's order update confirms it cancelled: the slot frees at once
    h.venue.fail_cancels = 0
    gone = h.venue._cancelled(h.venue.orders[bid.order_id])
    await h.event(gone)
    assert h.loop.resting[Side.BID] is None
    assert h.t - t_halt >= 10.0


async def test_a_cancel_the_venue_cannot_find_frees_the_slot() -> None:
    h = Harness()
    await h.ready()
    bid = h.loop.resting[Side.BID]
    assert bid is not None
    h.venue._cancelled(h.venue.orders[bid.order_id])  # gone behind our back
    h.set_state(TradingState.REDUCE_ONLY)  # flat: the bid must go
    await h.step(0.1)
    assert h.loop.resting[Side.BID] is None


async def test_shutdown_leaves_nothing_resting_when_the_first_cancels_fail() -> None:
    h = Harness()
    await h.ready()
    h.venue.fail_cancels = 2  # both single cancels fail ...
    h.venue.fail_cancel_all = 1  # ... and the first venue-wide cancel too
    await h.session.shutdown()
    assert h.venue.resting() == []
    assert h.session.leftover_orders == 0
    assert h.loop.resting[Side.BID] is None and h.loop.resting[Side.ASK] is None


# -- 2. reduce-only flattens positions smaller than the quote size -------------------------------


async def _long(h: Harness, contracts: float) -> None:
    """Get a long position of ``contracts`` from a partial fill of our bid."""
    bid = h.loop.resting[Side.BID]
    assert bid is not None
    h.t += 0.01
    await h.event(h.venue.fill(bid, round(contracts * QTY_SCALE), h.t))


async def test_reduce_only_sizes_the_reducing_side_to_a_fractional_position() -> None:
    h = Harness()
    await h.ready()
    await _long(h, 1.9)
    assert h.loop.account.inventory == 190
    h.set_state(TradingState.REDUCE_ONLY)
    await h.step()
    asks = h.venue.resting(Side.ASK)
    assert h.venue.resting(Side.BID) == [], "no bid may rest under reduce-only when long"
    assert [o.remaining_count for o in asks] == [190], "the ask flattens the whole 1.9"
    # the ask fills: flat, nothing rests
    await h.event(h.venue.fill(asks[0], 190, h.t + 0.1))
    await h.step()
    assert h.loop.account.inventory == 0
    assert h.venue.resting() == []


async def test_reduce_only_never_rests_more_than_the_position_on_the_reducing_side() -> None:
    h = Harness()
    await h.ready()
    ask = h.loop.resting[Side.ASK]
    assert ask is not None
    h.t += 0.01
    await h.event(h.venue.fill(ask, 200, h.t))  # short 2
    assert h.loop.account.inventory == -200
    bid = h.loop.resting[Side.BID]
    assert bid is not None and bid.remaining_count > 200
    h.set_state(TradingState.REDUCE_ONLY)
    await h.step(0.1)  # same prices, young orders: the old code kept the whole bid
    bids = h.venue.resting(Side.BID)
    assert [o.remaining_count for o in bids] == [200]
    assert h.venue.resting(Side.ASK) == []
    # the whole bid fills: flat, not long (−2 had become +3 into settlement)
    await h.event(h.venue.fill(bids[0], 200, h.t + 0.1))
    assert h.loop.account.inventory == 0


async def test_reduce_only_on_a_one_sided_book_cuts_and_cancels_without_a_quote() -> None:
    h = Harness()
    await h.ready()
    await _long(h, 0.5)
    h.set_state(TradingState.REDUCE_ONLY)
    await h.step(0.1, ask=None)  # the asks vanish: no mid, no quote
    assert h.loop.mid is None
    assert h.venue.resting(Side.BID) == []
    assert [o.remaining_count for o in h.venue.resting(Side.ASK)] == [50]


# -- 4. breakers run whatever the book's shape ----------------------------------------------------


async def test_close_taper_runs_on_a_one_sided_book_approaching_close() -> None:
    close_in = 400.0
    h = Harness(_policy(close__reduce_only_s=120.0, close__halt_s=30.0), close_in=close_in)
    await h.ready()
    close = T0 + close_in
    while h.t < close - 200:
        await h.step(5.0)
    # one side of the book empties and stays empty into the close
    while h.t < close - 10:
        await h.step(0.7, ask=None)
    got = [(st, src, ts) for st, src, ts in h.sink.states() if src == "close_taper"]
    assert [(st, src) for st, src, _ in got] == [
        ("REDUCE_ONLY", "close_taper"),
        ("HALTED", "close_taper"),
    ]
    (_, _, t_reduce), (_, _, t_halt) = got
    assert close - 120.0 <= t_reduce < close - 120.0 + 1.0, close - t_reduce
    assert close - 30.0 <= t_halt < close - 30.0 + 1.0, close - t_halt
    assert h.venue.resting() == [], "HALTED cancels what rests, one-sided book or not"


async def test_close_taper_runs_on_trades_alone() -> None:
    """Breakers are fed every event, not only book updates."""
    close_in = 300.0
    h = Harness(_policy(close__reduce_only_s=120.0, close__halt_s=30.0), close_in=close_in)
    await h.ready()
    close = T0 + close_in
    n = 0
    while h.t < close - 100:
        h.t += 2.0
        n += 1
        await h.event(Trade(TICKER, f"t{n}", h.t, 5000, 100, Side.BID))
    assert ("REDUCE_ONLY", "close_taper") in [(s, src) for s, src, _ in h.sink.states()]
    assert h.venue.resting(Side.BID) == [] and h.venue.resting(Side.ASK) == []  # flat


async def test_market_loss_halts_on_a_one_sided_book() -> None:
    h = Harness(_policy(loss__market_loss=2.0))
    await h.ready()
    await _long(h, 10.0)  # long 10 at the bid
    for _ in range(3):
        await h.step(1.5, bid=500, ask=None)  # only a bid at $0.05 is left: marked −$4+
    assert ("HALTED", "breaker:market_loss") in [(s, src) for s, src, _ in h.sink.states()]
    assert h.session.states.market_state(TICKER) is TradingState.HALTED
    assert h.venue.resting() == []


async def test_daily_loss_halts_everything_through_the_portfolio() -> None:
    h = Harness(_policy(loss__daily_loss=2.0, loss__market_loss=1000.0))
    await h.ready()
    await _long(h, 10.0)
    for _ in range(3):
        await h.step(1.5, bid=500, ask=None)
    assert ("HALTED", "breaker:daily_loss") in [(s, src) for s, src, _ in h.sink.states()]
    assert h.session.states.global_state is TradingState.HALTED
    assert h.loop.portfolio.pnl < -2.0


async def test_error_breaker_halts_and_lifts_itself_after_a_quiet_minute() -> None:
    h = Harness(_policy(breakers__max_errors_per_min=3, breakers__error_cooldown_s=60.0))
    await h.step(0.0)
    h.venue.fail_places = 10**6
    await h.step()  # READY; both places fail
    for _ in range(4):
        await h.step(1.5)
    assert h.session.states.market_state(TICKER) is TradingState.HALTED
    halted_at = next(ts for s, src, ts in h.sink.states() if src == "breaker:error_rate")
    h.venue.fail_places = 0
    # a one-sided book for the whole cooldown: the lift must still come, on time
    while h.t < halted_at + 61.0:
        await h.step(0.5, ask=None)
    lifted = [(s, ts) for s, src, ts in h.sink.states() if src == "breaker:error_rate"]
    assert [s for s, _ in lifted] == ["HALTED", "ACTIVE"]
    assert lifted[1][1] - halted_at < 62.0
    await h.step()
    assert len(h.venue.resting(Side.BID)) == 1  # quoting again


async def test_the_breakers_cost_a_comparison_between_due_times() -> None:
    h = Harness()
    await h.ready()
    calls = 0
    original = h.loop._check_breakers

    def counted(t: float) -> bool:
        nonlocal calls
        calls += 1
        return original(t)

    h.loop._check_breakers = counted  # type: ignore[method-assign]
    for _ in range(100):
        await h.step(0.05)  # 5 s of events
    assert calls <= 6, calls  # once a second (the loss re-mark), not per event
    assert math.isfinite(h.loop._risk_due)
