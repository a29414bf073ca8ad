"""The simulator's stream: clock, end of run, pacing, cooperative yielding, several streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from cfa.core.book import OrderBook
from cfa.core.types import BookDelta, BookSnapshot, OrderRequest, Side
from cfa.exchange.base import Event
from cfa.exchange.sim import DEFAULT_START_TS, SimClock, SimExchange


def test_clock_starts_where_asked_and_never_goes_back() -> None:
    c = SimClock(100.0)
    assert c.now() == 100.0
    c.advance_to(99.0)
    assert c.now() == 100.0
    c.advance_to(101.5)
    assert c.now() == 101.5
    ex = SimExchange.from_scenarios(["calm"], start_ts=1_800_000_000.0)
    assert ex.clock.now() == 1_800_000_000.0
    assert SimExchange.from_scenarios(["calm"]).clock.now() == DEFAULT_START_TS


async def test_clock_follows_the_events_and_the_stream_ends_at_duration() -> None:
    ex = SimExchange.from_scenarios(["calm", "regime-shift"], duration=30)
    last = ex.clock.now()
    n = 0
    async for ev in ex.stream(ex.tickers):
        n += 1
        if isinstance(ev, BookDelta):
            assert ev.ts == ex.clock.now() >= last
            last = ev.ts
    assert n > 1000
    assert ex.ended
    assert ex.clock.now() == DEFAULT_START_TS + 30
    assert [e async for e in ex.stream(ex.tickers)] == [  # a late stream: snapshots, then done
        await ex.get_orderbook(t) for t in ex.tickers
    ]


async def test_fast_stream_lets_other_tasks_run() -> None:
    ex = SimExchange.from_scenarios(["close-approach"], duration=60)
    ticks = 0
    stop = asyncio.Event()

    async def other() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    n = 0
    async for _ in ex.stream(ex.tickers):
        n += 1
    stop.set()
    await task
    assert n > 5000
    assert ticks >= n // 1000


async def test_speed_paces_against_wall_time() -> None:
    ex = SimExchange.from_scenarios(["calm"], duration=2.0, speed=10.0)
    t0 = time.monotonic()
    n = 0
    async for _ in ex.stream(ex.tickers):
        n += 1
    wall = time.monotonic() - t0
    assert n > 20
    assert 0.15 <= wall < 1.5  # two simulated seconds at ten times real time


async def test_one_stream_per_market_sees_the_same_events() -> None:
    names = ["calm", "informed-flow", "close-approach"]
    together = SimExchange.from_scenarios(names, seed=4, duration=60)
    apart = SimExchange.from_scenarios(names, seed=4, duration=60)
    combined = [e async for e in together.stream(together.tickers)]

    streams = [apart.stream([t]) for t in apart.tickers]
    # subscribe every stream (first event: its snapshot) before any of them advances the world
    firsts = [await anext(s) for s in streams]

    async def collect(first: Event, rest: AsyncIterator[Event]) -> list[Event]:
        return [first] + [e async for e in rest]

    per_market = await asyncio.gather(*(collect(f, s) for f, s in zip(firsts, streams)))
    for t, events in zip(apart.tickers, per_market, strict=True):
        assert isinstance(events[0], BookSnapshot)
        assert events == [e for e in combined if getattr(e, "ticker", None) == t]


async def test_an_order_placed_between_snapshots_is_counted_once() -> None:
    ex = SimExchange.from_scenarios(["calm", "regime-shift"], seed=2, duration=5)
    t2 = ex.tickers[1]
    events = ex.stream(ex.tickers)
    first = await anext(events)
    assert isinstance(first, BookSnapshot) and first.ticker == ex.tickers[0]
    bid = ex.market(t2).best_bid_price()
    assert bid is not None
    await ex.place_order(OrderRequest(t2, "between", Side.BID, bid, 700))
    books = {t: OrderBook(t) for t in ex.tickers}
    books[first.ticker].apply_snapshot(first)
    async for ev in events:
        if isinstance(ev, BookSnapshot):
            books[ev.ticker].apply_snapshot(ev)
        elif isinstance(ev, BookDelta):
            books[ev.ticker].apply_delta(ev)
    for t, book in books.items():
        venue = await ex.get_orderbook(t)
        assert (book.snapshot().yes, book.snapshot().no) == (venue.yes, venue.no)
