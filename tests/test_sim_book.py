"""The book rebuilt from the stream never goes negative, never crosses and matches the venue's."""

from __future__ import annotations

import contextlib
import random

import pytest

from cfa.core.book import OrderBook
from cfa.core.grid import PriceGrid
from cfa.core.types import (
    ONE_DOLLAR,
    BookDelta,
    BookSnapshot,
    Fill,
    Order,
    OrderRequest,
    Outcome,
    Settlement,
    Side,
)
from cfa.exchange.base import OrderNotFound, OrderRejected
from cfa.exchange.sim import SimExchange, known_scenarios


@pytest.mark.parametrize("name", known_scenarios())
async def test_rebuilt_book_is_sane_under_our_own_trading(name: str) -> None:
    ex = SimExchange.from_scenarios([name, name], seed=17, duration=400)
    rnd = random.Random(4)
    books = {t: OrderBook(t) for t in ex.tickers}
    grids = {t: PriceGrid(ex.market(t).info.price_ranges) for t in ex.tickers}
    seqs: dict[str, int] = {}
    ours: set[str] = set()
    n = 0
    async for ev in ex.stream(ex.tickers):
        n += 1
        if isinstance(ev, BookSnapshot):
            books[ev.ticker].apply_snapshot(ev)
            seqs[ev.ticker] = ev.seq
        elif isinstance(ev, BookDelta):
            assert ev.seq == seqs[ev.ticker] + 1
            seqs[ev.ticker] = ev.seq
            book = books[ev.ticker]
            book.apply_delta(ev)  # raises if a level would go negative
            leg_price = ev.price if ev.outcome is Outcome.YES else ONE_DOLLAR - ev.price
            assert grids[ev.ticker].is_valid(leg_price)
            b, a = book.best_bid(), book.best_ask()
            assert b is None or a is None or b < a, f"crossed: {b} >= {a} after {ev}"
            if ev.client_order_id is not None:
                assert ev.client_order_id in ours
        elif isinstance(ev, Fill | Order):
            assert ev.client_order_id in ours
        if n % 25 == 0:
            t = rnd.choice(ex.tickers)
            book = books[t]
            b, a = book.best_bid(), book.best_ask()
            if b is None or a is None:
                continue
            action = rnd.random()
            if action < 0.15:
                await ex.cancel_all(t)
            elif action < 0.25:
                orders = await ex.get_orders(t)
                if orders:
                    o = rnd.choice(orders)
                    with contextlib.suppress(OrderRejected, OrderNotFound):
                        await ex.amend_order(o.order_id, o.price, o.fill_count + 300)
            else:
                side = rnd.choice((Side.BID, Side.ASK))
                price = b if side is Side.BID else a
                post_only = rnd.random() < 0.8
                if not post_only:  # cross the spread
                    price = a if side is Side.BID else b
                cid = f"{t}-{n}"
                ours.add(cid)
                try:
                    await ex.place_order(
                        OrderRequest(t, cid, side, price, rnd.choice((100, 500, 2000)), post_only)
                    )
                except OrderRejected as exc:
                    assert exc.code in ("post_only_cross", "insufficient_balance")
    assert n > 1000
    for t in ex.tickers:
        venue = await ex.get_orderbook(t)
        mine = books[t].snapshot()
        assert (mine.seq, mine.yes, mine.no) == (venue.seq, venue.yes, venue.no)


async def test_book_after_close_is_empty_and_settlement_ends_the_stream() -> None:
    ex = SimExchange.from_scenarios(["close-approach"], seed=2)
    t = ex.tickers[0]
    ex.run_until(ex.market(t).info.close_ts - 5)
    book = OrderBook(t)
    last = None
    async for ev in ex.stream([t]):
        if isinstance(ev, BookSnapshot):
            book.apply_snapshot(ev)
        elif isinstance(ev, BookDelta):
            book.apply_delta(ev)
        last = ev
    assert isinstance(last, Settlement)
    assert book.yes == {} and book.no == {}
    assert ex.clock.now() == ex.market(t).settle_ts
