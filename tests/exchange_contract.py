"""The Exchange contract: behaviour every :class:`cfa.exchange.base.Exchange` must show.

Reuse it for any implementation (simulator, Kalshi adapter against its stand-in, replay) by
subclassing :class:`ExchangeContract` in a test module and providing one fixture::

    @pytest.fixture
    async def exchange_factory():
        made = []

        async def make() -> Exchange:
            ex = MyExchange(...)
            await ex.start()
            made.append(ex)
            return ex

        yield make
        for ex in made:
            await ex.close()

    class TestMyExchangeContract(ExchangeContract):
        pass

The factory returns a *started* exchange with at least one open market whose book has both
sides, enough depth for a one-contract order to trade, and a balance that can pay for it. Every
call to the factory returns a fresh exchange (no orders, no fills). Venues whose events arrive
slowly can raise :attr:`ExchangeContract.event_timeout`.

What it pins: market metadata; a snapshot first, then deltas whose ``seq`` increases by one;
place / amend / cancel / cancel-all; idempotent client order ids; post-only crosses and
off-grid prices rejected with their codes; own orders published in the book with their
client order id; own order updates; fills as events and in ``get_fills``; positions that
follow fills; a balance that moves by fill notional and fees.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest

from cfa.core.book import OrderBook
from cfa.core.grid import PriceGrid, net_fee, trade_fee
from cfa.core.types import (
    ONE_DOLLAR,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketInfo,
    Order,
    OrderRequest,
    OrderStatus,
    Side,
    notional,
)
from cfa.exchange.base import (
    Event,
    Exchange,
    MarketNotFound,
    OrderNotFound,
    OrderRejected,
)

ExchangeFactory = Callable[[], Awaitable[Exchange]]

ONE = 100
"""One contract in count units."""

_ids = itertools.count(1)


def coid(tag: str = "c") -> str:
    """A fresh client order id."""
    return f"contract-{tag}-{next(_ids)}"


async def open_market(ex: Exchange) -> tuple[MarketInfo, PriceGrid, BookSnapshot]:
    """The first open market with a two-sided book, its grid and its book."""
    for info in await ex.get_markets():
        book = await ex.get_orderbook(info.ticker)
        if book.yes and book.no:
            return info, PriceGrid(info.price_ranges), book
    pytest.fail("the exchange has no open market with a two-sided book")


def touch(book: BookSnapshot) -> tuple[int, int]:
    """(best YES bid, best YES ask) of a snapshot."""
    return book.yes[-1][0], ONE_DOLLAR - book.no[-1][0]


def passive_bid(grid: PriceGrid, book: BookSnapshot, ticks: int = 3) -> int:
    """A bid price ``ticks`` grid steps below the best bid (or the lowest price)."""
    p = touch(book)[0]
    for _ in range(ticks):
        q = grid.next_down(p)
        if q is None:
            break
        p = q
    return p


async def next_matching(
    events: AsyncIterator[Event],
    pred: Callable[[Event], bool],
    timeout: float,
    limit: int,
) -> Event:
    """The first event satisfying ``pred`` within ``limit`` events and ``timeout`` seconds."""

    async def scan() -> Event:
        n = 0
        async for ev in events:
            if pred(ev):
                return ev
            n += 1
            if n >= limit:
                break
        pytest.fail(f"no matching event within {limit} events")

    return await asyncio.wait_for(scan(), timeout)


async def close_stream(events: AsyncIterator[Event]) -> None:
    """Close a stream early (async generators have ``aclose``; other iterators may not)."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class ExchangeContract:
    """Contract tests; subclass in a module that defines the ``exchange_factory`` fixture."""

    event_timeout: float = 10.0
    """Seconds to wait for an expected event."""
    max_events: int = 200_000
    """Events to scan for an expected event before failing."""

    # -- metadata ------------------------------------------------------------------------------

    async def test_markets_and_metadata(self, exchange_factory: ExchangeFactory) -> None:
        ex = await exchange_factory()
        markets = await ex.get_markets()
        assert markets, "no open markets"
        now = ex.clock.now()
        for info in markets:
            assert isinstance(info, MarketInfo)
            assert info.ticker and info.event_ticker and info.series_ticker and info.title
            assert info.ticker.startswith(info.series_ticker)
            grid = PriceGrid(info.price_ranges)  # valid Kalshi price_ranges
            assert 0 < grid.lo < grid.hi < ONE_DOLLAR
            assert info.close_ts > now
            assert info.open_ts <= now
            assert info.fee.fee_type
            assert info.status == "active"
            assert await ex.get_market(info.ticker) == info
        tickers = [m.ticker for m in markets]
        assert [m.ticker for m in await ex.get_markets(tickers[:1])] == tickers[:1]
        with pytest.raises(MarketNotFound):
            await ex.get_market("NO-SUCH-MARKET")

    async def test_orderbook_shape(self, exchange_factory: ExchangeFactory) -> None:
        ex = await exchange_factory()
        info, grid, book = await open_market(ex)
        assert book.ticker == info.ticker
        for ladder in (book.yes, book.no):
            prices = [p for p, _ in ladder]
            assert prices == sorted(prices), "ladders ascend"
            assert len(set(prices)) == len(prices)
            assert all(q > 0 for _, q in ladder)
            assert all(grid.is_valid(p) for p in prices), "levels sit on the grid"
        bid, ask = touch(book)
        assert bid < ask, "the book is not crossed"

    # -- stream --------------------------------------------------------------------------------

    async def test_snapshot_then_deltas_in_sequence(
        self, exchange_factory: ExchangeFactory
    ) -> None:
        ex = await exchange_factory()
        info, _, _ = await open_market(ex)
        events = ex.stream([info.ticker])
        first = await asyncio.wait_for(anext(events), self.event_timeout)
        assert isinstance(first, BookSnapshot) and first.ticker == info.ticker
        book = OrderBook(info.ticker)
        book.apply_snapshot(first)
        seq = first.seq
        deltas = 0

        async def consume() -> None:
            nonlocal seq, deltas
            async for ev in events:
                if isinstance(ev, BookSnapshot):
                    book.apply_snapshot(ev)  # a resync restarts the count
                    seq = ev.seq
                elif isinstance(ev, BookDelta):
                    assert ev.ticker == info.ticker
                    assert ev.seq == seq + 1, f"gap: {seq} -> {ev.seq}"
                    seq = ev.seq
                    book.apply_delta(ev)  # raises on a negative level
                    b, a = book.best_bid(), book.best_ask()
                    assert b is None or a is None or b < a, f"crossed book {b} >= {a}"
                    deltas += 1
                    if deltas >= 300:
                        return

        await asyncio.wait_for(consume(), self.event_timeout)
        await close_stream(events)

    async def test_own_orders_are_published_in_the_book(
        self, exchange_factory: ExchangeFactory
    ) -> None:
        ex = await exchange_factory()
        info, grid, book = await open_market(ex)
        events = ex.stream([info.ticker])
        await anext(events)
        cid = coid("pub")
        price = passive_bid(grid, book)
        order = await ex.place_order(OrderRequest(info.ticker, cid, Side.BID, price, 2 * ONE))

        def ours(ev: Event) -> bool:
            return isinstance(ev, BookDelta) and ev.client_order_id == cid

        placed = await next_matching(events, ours, self.event_timeout, self.max_events)
        assert isinstance(placed, BookDelta)
        assert (placed.price, placed.delta) == (price, 2 * ONE)
        update = await next_matching(
            events,
            lambda ev: isinstance(ev, Order) and ev.order_id == order.order_id,
            self.event_timeout,
            self.max_events,
        )
        assert isinstance(update, Order) and update.status is OrderStatus.RESTING
        await ex.cancel_order(order.order_id)
        removed = await next_matching(events, ours, self.event_timeout, self.max_events)
        assert isinstance(removed, BookDelta) and removed.delta == -2 * ONE
        await close_stream(events)

    # -- orders --------------------------------------------------------------------------------

    async def test_place_amend_cancel(self, exchange_factory: ExchangeFactory) -> None:
        ex = await exchange_factory()
        info, grid, book = await open_market(ex)
        price = passive_bid(grid, book)
        order = await ex.place_order(
            OrderRequest(info.ticker, coid("pac"), Side.BID, price, 3 * ONE)
        )
        assert order.status is OrderStatus.RESTING
        assert (order.price, order.initial_count, order.remaining_count, order.fill_count) == (
            price,
            3 * ONE,
            3 * ONE,
            0,
        )
        assert [o.order_id for o in await ex.get_orders(info.ticker)] == [order.order_id]

        lower = grid.next_down(price) or price
        amended = await ex.amend_order(order.order_id, lower, 5 * ONE)
        assert amended.order_id == order.order_id
        assert (amended.price, amended.remaining_count) == (lower, 5 * ONE)
        smaller = await ex.amend_order(order.order_id, lower, 2 * ONE)
        assert smaller.remaining_count == 2 * ONE

        canceled = await ex.cancel_order(order.order_id)
        assert canceled.status is OrderStatus.CANCELED
        assert await ex.get_orders(info.ticker) == []
        everything = await ex.get_orders(info.ticker, resting_only=False)
        assert [o.status for o in everything] == [OrderStatus.CANCELED]
        with pytest.raises(OrderNotFound):
            await ex.cancel_order(order.order_id)
        with pytest.raises(OrderNotFound):
            await ex.cancel_order("no-such-order")
        with pytest.raises(OrderNotFound):
            await ex.amend_order("no-such-order", price, ONE)

    async def test_cancel_all(self, exchange_factory: ExchangeFactory) -> None:
        ex = await exchange_factory()
        info, grid, book = await open_market(ex)
        price = passive_bid(grid, book)
        ids = set()
        for ticks in (3, 4, 5):
            o = await ex.place_order(
                OrderRequest(
                    info.ticker, coid("all"), Side.BID, passive_bid(grid, book, ticks), ONE
                )
            )
            ids.add(o.order_id)
        canceled = await ex.cancel_all(info.ticker)
        assert {o.order_id for o in canceled} == ids
        assert all(o.status is OrderStatus.CANCELED for o in canceled)
        assert await ex.get_orders(info.ticker) == []
        o = await ex.place_order(OrderRequest(info.ticker, coid("all"), Side.BID, price, ONE))
        assert [x.order_id for x in await ex.cancel_all()] == [o.order_id]
        assert await ex.cancel_all() == []

    async def test_client_order_id_is_idempotent(self, exchange_factory: ExchangeFactory) -> None:
        ex = await exchange_factory()
        info, grid, book = await open_market(ex)
        req = OrderRequest(info.ticker, coid("idem"), Side.BID, passive_bid(grid, book), ONE)
        first = await ex.place_order(req)
        again = await ex.place_order(req)
        assert again.order_id == first.order_id
        assert len(await ex.get_orders(info.ticker)) == 1
        await ex.cancel_order(first.order_id)
        # still the same order (now cancelled), never a new one
        third = await ex.place_order(req)
        assert third.order_id == first.order_id
        assert await ex.get_orders(info.ticker) == []

    async def test_post_only_cross_is_rejected(self, exchange_factory: ExchangeFactory) -> None:
        ex = await exchange_factory()
        info, _, book = await open_market(ex)
        bid, ask = touch(book)
        with pytest.raises(OrderRejected) as exc:
            await ex.place_order(OrderRequest(info.ticker, coid("po"), Side.BID, ask, ONE))
        assert exc.value.code == "post_only_cross"
        with pytest.raises(OrderRejected) as exc:
            await ex.place_order(OrderRequest(info.ticker, coid("po"), Side.ASK, bid, ONE))
        assert exc.value.code == "post_only_cross"
        assert await ex.get_orders(info.ticker) == []

    async def test_off_grid_and_out_of_range_prices_are_rejected(
        self, exchange_factory: ExchangeFactory
    ) -> None:
        ex = await exchange_factory()
        info, grid, book = await open_market(ex)
        base = passive_bid(grid, book)
        off = base + 1
        assert not grid.is_valid(off)
        for price in (off, 0, ONE_DOLLAR, -100, ONE_DOLLAR + 100):
            with pytest.raises(OrderRejected) as exc:
                await ex.place_order(OrderRequest(info.ticker, coid("grid"), Side.BID, price, ONE))
            assert exc.value.code == "invalid_price", price
        o = await ex.place_order(OrderRequest(info.ticker, coid("grid"), Side.BID, base, ONE))
        with pytest.raises(OrderRejected) as exc:
            await ex.amend_order(o.order_id, off, ONE)
        assert exc.value.code == "invalid_price"

    # -- fills, positions, balance -------------------------------------------------------------

    async def test_fills_positions_and_balance(self, exchange_factory: ExchangeFactory) -> None:
        ex = await exchange_factory()
        info, _, book = await open_market(ex)
        t = info.ticker
        cash0 = await ex.get_balance()
        assert isinstance(cash0, Decimal) and cash0 > 0
        events = ex.stream([t])
        await anext(events)

        _, ask = touch(book)
        buy = await ex.place_order(
            OrderRequest(t, coid("buy"), Side.BID, ask, ONE, post_only=False)
        )
        fill = await next_matching(
            events,
            lambda ev: isinstance(ev, Fill) and ev.order_id == buy.order_id,
            self.event_timeout,
            self.max_events,
        )
        assert isinstance(fill, Fill)
        assert fill.ticker == t and fill.side is Side.BID and fill.is_taker
        assert fill.price <= ask and 0 < fill.count <= ONE
        # Kalshi's fee rounding (getting_started/fee_rounding): the trade fee plus the rounding of
        # the balance to the cent, for the first fill of an order
        first, _ = net_fee(
            -notional(fill.price, fill.count),
            trade_fee(info.fee, fill.price, fill.count, is_taker=True),
            Decimal(0),
            Decimal("0.01"),
        )
        assert fill.fee == first
        assert fill.post_position == fill.count

        fills = [f for f in await ex.get_fills(t) if f.order_id == buy.order_id]
        assert fill in fills
        bought = sum(f.count for f in fills)
        cost = sum(notional(f.price, f.count) for f in fills)
        fees = sum((f.fee for f in fills), Decimal(0))
        positions = {p.ticker: p for p in await ex.get_positions()}
        assert positions[t].position == bought
        assert positions[t].fees_paid == fees
        assert await ex.get_balance() == cash0 - cost - fees

        # sell it back: the position returns to flat and the balance by proceeds minus fees
        cash1 = await ex.get_balance()
        now = await ex.get_orderbook(t)
        bid, _ = touch(now)
        sell = await ex.place_order(
            OrderRequest(t, coid("sell"), Side.ASK, bid, bought, post_only=False)
        )
        assert sell.fill_count == bought
        sold = [f for f in await ex.get_fills(t) if f.order_id == sell.order_id]
        assert sum(f.count for f in sold) == bought
        proceeds = sum(notional(f.price, f.count) for f in sold)
        fees2 = sum((f.fee for f in sold), Decimal(0))
        positions = {p.ticker: p for p in await ex.get_positions()}
        assert positions[t].position == 0
        assert await ex.get_balance() == cash1 + proceeds - fees2
        assert positions[t].realized_pnl == proceeds - cost
        await close_stream(events)
