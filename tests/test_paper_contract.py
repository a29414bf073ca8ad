"""Paper trading (PaperExchange) against the Kalshi stand-in: the Exchange contract, and no
order ever reaching Kalshi.

Two modes: with a key the book streams over the stand-in's WebSocket (the contract suite runs
on it); without a key it is polled over public REST (checked below on its own: the polling is
bounded by the read budget, too slow for the contract's 300-delta test in seconds). After every
test the stand-in must have received no request under ``/portfolio`` (orders, fills,
positions, balance, order groups) and hold no order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from exchange_contract import ExchangeContract, ExchangeFactory
from kalshi_standin import StandIn
from kalshi_standin.fixtures import MARKETS, make_world, running_standin, signer

from cfa.core.book import OrderBook
from cfa.core.types import BookDelta, BookSnapshot, Fill, OrderRequest, Side
from cfa.exchange.base import Exchange
from cfa.exchange.kalshi.errors import KalshiAuthError
from cfa.exchange.kalshi.paper import PaperExchange, poll_floor


def assert_no_orders_sent(s: StandIn) -> None:
    private = [r for r in s.requests if r[1].startswith("/portfolio")]
    assert private == [], f"paper trading called private endpoints: {private[:5]}"
    assert not s.world.orders, "an order reached the stand-in"


@pytest.fixture
async def exchange_factory() -> AsyncIterator[ExchangeFactory]:
    made: list[tuple[PaperExchange, StandIn]] = []
    servers = []

    async def make() -> Exchange:
        cm = running_standin(world=make_world(), churn_batch=4)
        s = await cm.__aenter__()
        servers.append(cm)
        ex = PaperExchange.connect(s.base_url, s.ws_url, signer(), timeout=1.0, ws_backoff=0.02)
        await ex.start()
        made.append((ex, s))
        return ex

    yield make
    for ex, s in made:
        await ex.close()
        assert_no_orders_sent(s)
    for cm in servers:
        await cm.__aexit__(None, None, None)


class TestPaperContract(ExchangeContract):
    pass


async def test_the_paper_venue_cannot_send_an_order() -> None:
    async with running_standin(world=make_world()) as s:
        ex = PaperExchange.connect(s.base_url, s.ws_url, signer(), timeout=1.0)
        try:
            # the adapter underneath has an unsigned REST session: an order fails locally
            with pytest.raises(KalshiAuthError) as exc:
                await ex._data.rest.create_order(  # type: ignore[attr-defined]
                    {"ticker": MARKETS[0], "client_order_id": "x"}
                )
            assert exc.value.code == "no_credentials"
        finally:
            await ex.close()
        assert_no_orders_sent(s)
        assert not any(r[1].startswith("/portfolio") for r in s.requests)


async def test_keyless_paper_polls_public_rest() -> None:
    async with running_standin(world=make_world(), churn_batch=8) as s:
        ex = PaperExchange.connect(s.base_url, s.ws_url, None, timeout=1.0, poll_interval=0.01)
        assert ex.poll_interval == 0.01 and not ex.websocket
        t = MARKETS[0]
        try:
            events = ex.stream([t])
            first = await asyncio.wait_for(anext(events), 5)
            assert isinstance(first, BookSnapshot) and first.seq == 1
            book = OrderBook(t)
            book.apply_snapshot(first)
            # a crossing paper order takes the polled book's liquidity as a taker
            ask = book.best_ask()
            assert ask is not None
            buy = await ex.place_order(OrderRequest(t, "p1", Side.BID, ask, 100, post_only=False))
            assert buy.fill_count > 0
            fills: list[Fill] = []
            deltas = 0
            t0 = asyncio.get_running_loop().time()

            async def consume() -> None:
                nonlocal deltas
                async for ev in events:
                    if isinstance(ev, BookDelta):
                        book.apply_delta(ev)  # one seq apart, never negative
                        deltas += ev.client_order_id is None
                    elif isinstance(ev, Fill):
                        fills.append(ev)
                    if fills and deltas >= 10:
                        return

            await asyncio.wait_for(consume(), 10)
            took = asyncio.get_running_loop().time() - t0
            assert fills and fills[0].order_id == buy.order_id and fills[0].is_taker
            await events.aclose()  # type: ignore[attr-defined]
        finally:
            await ex.close()
        assert s.ws_connections == 0, "keyless paper trading opened a WebSocket"
        assert_no_orders_sent(s)
        # the poll interval was raised to the read-budget floor: two reads per poll
        books = [r for r in s.requests if r[1].endswith("/orderbook")]
        assert len(books) <= took / poll_floor(1) + 3


async def test_a_resting_paper_order_fills_on_a_live_print_through_it() -> None:
    async with running_standin(world=make_world(), churn_interval=None) as s:
        ex = PaperExchange.connect(s.base_url, s.ws_url, signer(), timeout=1.0, ws_backoff=0.02)
        t = MARKETS[0]
        try:
            events = ex.stream([t])
            first = await asyncio.wait_for(anext(events), 5)
            assert isinstance(first, BookSnapshot)
            bid = first.yes[-1][0] - 300  # three cents below the best bid: nobody trades there
            o = await ex.place_order(OrderRequest(t, "rest-1", Side.BID, bid, 100))
            # someone else sells 2 contracts one cent below our bid at Kalshi: a print through us
            s.world._trade(s.world.markets[t], Side.ASK, bid - 100, 200, None, None)

            async def fill() -> Fill:
                async for ev in events:
                    if isinstance(ev, Fill):
                        return ev
                raise AssertionError("stream ended")

            f = await asyncio.wait_for(fill(), 5)
            assert (f.order_id, f.price, f.count, f.is_taker) == (o.order_id, bid, 100, False)
            assert [p.position for p in await ex.get_positions()] == [100]
            assert await ex.get_orders(t) == []
            await events.aclose()  # type: ignore[attr-defined]
        finally:
            await ex.close()
        assert_no_orders_sent(s)
