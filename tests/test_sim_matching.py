"""Simulator matching: queue position, price-time priority, partial fills, fees, no self-trade.

These run on "quiet" copies of the shipped scenarios (no background flow), so the only things
that happen are what the test does; background counterparties come from
``SimExchange.background_order``.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from cfa.core.grid import maker_fee, net_fee, taker_fee, trade_fee
from cfa.core.types import (
    BookDelta,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Outcome,
    Side,
    Trade,
    notional,
)
from cfa.exchange.base import Event, OrderNotFound, OrderRejected
from cfa.exchange.records import make_delta, make_trade
from cfa.exchange.sim import SimExchange, load_scenario

ONE = 100


def quiet(name: str = "calm", **market: object) -> SimExchange:
    sc = load_scenario(name)
    sc = dataclasses.replace(
        sc,
        book=dataclasses.replace(sc.book, refresh_rate=0.0),
        takers=dataclasses.replace(sc.takers, rate=0.0),
        market=dataclasses.replace(sc.market, **market),  # type: ignore[arg-type]
    )
    return SimExchange([sc], seed=3)


def req(ex: SimExchange, cid: str, side: Side, price: int, count: int, **kw: bool) -> OrderRequest:
    return OrderRequest(ex.tickers[0], cid, side, price, count, **kw)


def test_fast_records_equal_normal_ones() -> None:
    args = ("T", 7, 1.5, Outcome.NO, 4300, -250, "c1")
    assert make_delta(*args) == BookDelta(*args)
    assert hash(make_delta(*args)) == hash(BookDelta(*args))
    assert repr(make_delta(*args)) == repr(BookDelta(*args))
    targs = ("T", "T-t1", 1.5, 4300, 100, Side.ASK)
    assert make_trade(*targs) == Trade(*targs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_delta(*args).seq = 3  # type: ignore[misc]


async def test_queue_behind_existing_size_then_partial_fill() -> None:
    ex = quiet()
    m = ex.market(ex.tickers[0])
    bid = m.best_bid_price()
    assert bid is not None
    ahead = m.bg_bid[m.idx_of[bid]]
    o = await ex.place_order(req(ex, "q1", Side.BID, bid, 10 * ONE))
    # a seller takes everything ahead of us but one unit: we do not fill
    assert await ex.background_order(ex.tickers[0], Side.ASK, bid, ahead - 1) == ahead - 1
    assert await ex.get_fills() == []
    # the next 6 contracts: 1 unit of background, then 5.99 contracts of ours
    await ex.background_order(ex.tickers[0], Side.ASK, bid, 6 * ONE)
    fills = await ex.get_fills()
    assert [f.count for f in fills] == [6 * ONE - 1]
    (now,) = await ex.get_orders()
    assert now.order_id == o.order_id
    assert now.status is OrderStatus.RESTING
    assert (now.fill_count, now.remaining_count) == (6 * ONE - 1, 4 * ONE + 1)
    assert m.bg_bid[m.idx_of[bid]] == 0
    book = await ex.get_orderbook(ex.tickers[0])
    assert dict(book.yes)[bid] == 4 * ONE + 1  # only our remainder is left at the level


async def test_price_time_priority_between_our_orders() -> None:
    ex = quiet()
    t = ex.tickers[0]
    m = ex.market(t)
    bid, ask = m.best_bid_price(), m.best_ask_price()
    assert bid is not None and ask is not None and ask - bid == 100
    first = await ex.place_order(req(ex, "p1", Side.BID, bid, 10 * ONE))
    second = await ex.place_order(req(ex, "p2", Side.BID, bid, 10 * ONE))
    # background size that arrives later queues behind both of ours
    await ex.background_order(t, Side.BID, bid, 50 * ONE)
    ahead = m.q_bid[m.idx_of[bid]][0].ahead
    await ex.background_order(t, Side.ASK, bid, ahead + 15 * ONE)
    by_order = {f.order_id: f.count for f in await ex.get_fills()}
    assert by_order == {first.order_id: 10 * ONE, second.order_id: 5 * ONE}
    (rest,) = await ex.get_orders()
    assert rest.order_id == second.order_id and rest.remaining_count == 5 * ONE


async def test_background_cancels_shrink_our_queue_proportionally() -> None:
    ex = quiet()
    m = ex.market(ex.tickers[0])
    bid = m.best_bid_price()
    assert bid is not None
    i = m.idx_of[bid]
    await ex.place_order(req(ex, "c1", Side.BID, bid, ONE))
    (o,) = m.q_bid[i]
    before = m.bg_bid[i]
    assert o.ahead == before
    m.bg_add(True, i, before, ex.clock.now())  # doubles the background, all behind us
    m.bg_cancel(True, i, before, ex.clock.now())  # cancels half of the background
    assert o.ahead == before // 2
    m.bg_cancel(True, i, m.bg_bid[i], ex.clock.now())
    assert o.ahead == 0


async def test_maker_fee_charged_only_where_the_series_charges_makers() -> None:
    for name, charges in (("calm", True), ("regime-shift", False)):
        ex = quiet(name)
        t = ex.tickers[0]
        m = ex.market(t)
        assert m.fee.charges_maker is charges
        bid = m.best_bid_price()
        assert bid is not None
        await ex.place_order(req(ex, "m1", Side.BID, bid, 20 * ONE))
        await ex.background_order(t, Side.ASK, bid, m.bg_bid[m.idx_of[bid]] + 20 * ONE)
        (fill,) = await ex.get_fills()
        assert not fill.is_taker
        # the first fill of an order pays the trade fee plus the balance's rounding to the cent
        revenue = -notional(bid, 20 * ONE)
        expected, _ = net_fee(
            revenue, trade_fee(m.fee, bid, 20 * ONE, is_taker=False), Decimal(0), Decimal("0.01")
        )
        assert fill.fee == expected
        if charges:
            assert fill.fee == maker_fee(m.fee, bid, 20 * ONE) > 0
        else:
            assert fill.fee < Decimal("0.01")  # no maker fee: at most the rounding
        assert await ex.get_balance() == Decimal(10_000) - notional(bid, 20 * ONE) - fill.fee


async def test_crossing_order_takes_liquidity_across_levels_and_pays_taker_fees() -> None:
    ex = quiet()
    t = ex.tickers[0]
    m = ex.market(t)
    ask = m.best_ask_price()
    assert ask is not None
    i = m.idx_of[ask]
    first_level = m.bg_ask[i]
    second_level = m.bg_ask[i + 1]
    limit = m.prices[i + 1]
    want = first_level + second_level // 2
    o = await ex.place_order(req(ex, "x1", Side.BID, limit, want, post_only=False))
    assert o.status is OrderStatus.EXECUTED and o.fill_count == want
    fills = await ex.get_fills()
    assert [(f.price, f.count, f.is_taker) for f in fills] == [
        (ask, first_level, True),
        (limit, want - first_level, True),
    ]
    # one order's fills share Kalshi's rounding accumulator
    acc = Decimal(0)
    expected = []
    for f in fills:
        fee, acc = net_fee(
            -notional(f.price, f.count),
            trade_fee(m.fee, f.price, f.count, is_taker=True),
            acc,
            Decimal("0.01"),
        )
        expected.append(fee)
    assert [f.fee for f in fills] == expected
    assert fills[0].fee == taker_fee(m.fee, fills[0].price, fills[0].count)
    assert m.best_ask_price() == limit
    # a bigger crossing order sweeps to its limit and rests the rest at its price
    big = await ex.place_order(req(ex, "x2", Side.BID, limit, 10 * want, post_only=False))
    assert big.status is OrderStatus.RESTING and 0 < big.fill_count < 10 * want
    assert m.best_bid_price() == limit
    assert m.best_ask_price() is not None and m.best_ask_price() > limit  # type: ignore[operator]


async def test_no_self_trade() -> None:
    ex = quiet()
    t = ex.tickers[0]
    m = ex.market(t)
    bid, ask = m.best_bid_price(), m.best_ask_price()
    assert bid is not None and ask is not None
    mine = await ex.place_order(req(ex, "s-ask", Side.ASK, ask, 5 * ONE))
    # post-only bid at our own ask: rejected
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req(ex, "s-po", Side.BID, ask, ONE))
    assert exc.value.code == "post_only_cross"
    # a taking bid trades the background ahead of our ask, then stops at our own order
    ahead = m.bg_ask[m.idx_of[ask]]
    taker = await ex.place_order(req(ex, "s-take", Side.BID, ask, ahead + 3 * ONE, post_only=False))
    assert taker.status is OrderStatus.CANCELED
    assert taker.fill_count == ahead
    assert all(f.order_id == taker.order_id for f in await ex.get_fills())
    (still,) = await ex.get_orders()
    assert still.order_id == mine.order_id and still.remaining_count == 5 * ONE
    # with only our ask at the level, a taking bid is cancelled without any fill
    blocked = await ex.place_order(req(ex, "s-none", Side.BID, ask, ONE, post_only=False))
    assert blocked.status is OrderStatus.CANCELED and blocked.fill_count == 0
    (pos,) = await ex.get_positions()
    assert pos.position == ahead


async def test_amend_keeps_priority_only_when_shrinking() -> None:
    ex = quiet()
    t = ex.tickers[0]
    m = ex.market(t)
    bid = m.best_bid_price()
    assert bid is not None
    i = m.idx_of[bid]
    o = await ex.place_order(req(ex, "a1", Side.BID, bid, 10 * ONE))
    (own,) = m.q_bid[i]
    await ex.background_order(t, Side.BID, bid, 7 * ONE)  # behind us
    ahead = own.ahead
    await ex.amend_order(o.order_id, bid, 6 * ONE)
    assert own.ahead == ahead, "shrinking keeps the queue position"
    grown = await ex.amend_order(o.order_id, bid, 8 * ONE)
    assert grown.remaining_count == 8 * ONE
    assert own.ahead == m.bg_bid[i], "growing goes to the back"
    lower = m.prices[i - 1]
    moved = await ex.amend_order(o.order_id, lower, 8 * ONE)
    assert moved.price == lower and own.ahead == m.bg_bid[i - 1]
    with pytest.raises(OrderRejected) as exc:
        await ex.amend_order(o.order_id, m.best_ask_price() or 0, 8 * ONE)
    assert exc.value.code == "post_only_cross"
    with pytest.raises(OrderRejected):
        await ex.amend_order(o.order_id, lower, 0)


async def test_amend_count_is_the_new_total_including_fills() -> None:
    ex = quiet()
    t = ex.tickers[0]
    m = ex.market(t)
    bid = m.best_bid_price()
    assert bid is not None
    o = await ex.place_order(req(ex, "t1", Side.BID, bid, 10 * ONE))
    await ex.background_order(t, Side.ASK, bid, m.bg_bid[m.idx_of[bid]] + 4 * ONE)
    amended = await ex.amend_order(o.order_id, bid, 7 * ONE)
    assert (amended.fill_count, amended.remaining_count) == (4 * ONE, 3 * ONE)
    with pytest.raises(OrderRejected) as exc:
        await ex.amend_order(o.order_id, bid, 4 * ONE)
    assert exc.value.code == "invalid_order_size"


async def test_own_events_published_in_kalshi_shape() -> None:
    ex = quiet()
    t = ex.tickers[0]
    m = ex.market(t)
    bid, ask = m.best_bid_price(), m.best_ask_price()
    assert bid is not None and ask is not None
    events = ex.stream([t])
    snap = await anext(events)
    o = await ex.place_order(req(ex, "e-ask", Side.ASK, ask, 3 * ONE))
    await ex.background_order(t, Side.BID, ask, m.bg_ask[m.idx_of[ask]] + ONE)
    got: list[Event] = []
    while len(got) < 7:  # placement: delta, order; the fill: 2 deltas, trade, fill, order
        got.append(await anext(events))
    await events.aclose()
    ours = [e for e in got if isinstance(e, BookDelta) and e.client_order_id == "e-ask"]
    # an ask rests as a NO bid at 1 - price; its fill removes size there
    assert [(e.outcome, e.price, e.delta) for e in ours] == [
        (Outcome.NO, 10_000 - ask, 3 * ONE),
        (Outcome.NO, 10_000 - ask, -ONE),
    ]
    seqs = [e.seq for e in got if isinstance(e, BookDelta)]
    assert seqs == list(range(snap.seq + 1, snap.seq + 1 + len(seqs)))  # type: ignore[union-attr]
    fills = [e for e in got if isinstance(e, Fill)]
    assert [(f.order_id, f.count, f.is_taker) for f in fills] == [(o.order_id, ONE, False)]
    assert fills[0].post_position == -ONE
    updates = [e for e in got if isinstance(e, Order)]
    assert [u.status for u in updates] == [OrderStatus.RESTING, OrderStatus.RESTING]
    assert updates[-1].fill_count == ONE
    trades = [e for e in got if isinstance(e, Trade)]
    assert trades and trades[0].taker_side is Side.BID and trades[0].price == ask


async def test_rejections() -> None:
    ex = quiet()
    t = ex.tickers[0]
    m = ex.market(t)
    bid = m.best_bid_price()
    assert bid is not None
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req(ex, "r0", Side.BID, bid, 0))
    assert exc.value.code == "invalid_order_size"
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req(ex, "r1", Side.ASK, bid + 500, ONE, reduce_only=True))
    assert exc.value.code == "reduce_only"
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req(ex, "r2", Side.BID, bid, 10_000_000 * ONE))
    assert exc.value.code == "insufficient_balance"
    with pytest.raises(OrderNotFound):
        await ex.amend_order("sim-o-nope", bid, ONE)


async def test_market_closed_rejects_and_cancels_resting_orders() -> None:
    ex = quiet(close_offset=60.0)
    t = ex.tickers[0]
    m = ex.market(t)
    bid = m.best_bid_price()
    assert bid is not None
    o = await ex.place_order(req(ex, "cl", Side.BID, bid, ONE))
    ex.run_until(ex.clock.now() + 61)
    assert m.closed and m.done
    (after,) = await ex.get_orders(t, resting_only=False)
    assert after.order_id == o.order_id and after.status is OrderStatus.CANCELED
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req(ex, "cl2", Side.BID, bid, ONE))
    assert exc.value.code == "market_closed"
    with pytest.raises(OrderNotFound):
        await ex.cancel_order(o.order_id)
    assert (await ex.get_orderbook(t)).yes == ()
    assert (await ex.get_market(t)).status == "finalized"
    assert await ex.get_markets() == []
