"""The Kalshi WebSocket feed against the stand-in: book pricing forms, channel errors, unanswered
requests, lifecycle filtering, pings and ticker frames, pauses and price-grid changes.

Every test ends with the stand-in's own order book checked: no order of ours left resting and
no client order id placed twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kalshi_standin import StandIn
from kalshi_standin.fixtures import MARKETS, adapter, make_world, running_standin

from cfa.audit import AuditStore
from cfa.core.book import OrderBook
from cfa.core.grid import PriceGrid
from cfa.core.types import (
    BLIND_BOOK,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketStatus,
    Order,
    OrderRequest,
    Side,
    parse_price,
    parse_qty,
)
from cfa.exchange.base import Event
from cfa.exchange.feed import KalshiFeedExchange
from cfa.exchange.replay import AuditReplayExchange
from cfa.risk.policy import Warmup, load_policy
from cfa.runtime.loop import LoopState
from cfa.runtime.replay import replay_exact
from cfa.runtime.runs import open_run

T = MARKETS[0]
ONE = 100


class Consumer:
    """Consumes a stream like the loop does; every book it holds is checked never crossed."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self.events = events
        self.books: dict[str, OrderBook] = {}
        self.seen: list[Event] = []

    async def until(self, pred: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        async def run() -> Event:
            async for ev in self.events:
                self.seen.append(ev)
                if isinstance(ev, BookSnapshot):
                    self.books.setdefault(ev.ticker, OrderBook(ev.ticker)).apply_snapshot(ev)
                elif isinstance(ev, BookDelta):
                    self.books[ev.ticker].apply_delta(ev)  # raises on any gap
                if isinstance(ev, BookSnapshot | BookDelta):
                    b = self.books[ev.ticker]
                    bid, ask = b.best_bid(), b.best_ask()
                    assert bid is None or ask is None or bid < ask, f"crossed book {bid}/{ask}"
                if pred(ev):
                    return ev
            raise AssertionError("stream ended")

        return await asyncio.wait_for(run(), timeout)

    async def close(self) -> None:
        await self.events.aclose()  # type: ignore[attr-defined]


def world_book(s: StandIn, ticker: str) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The stand-in's own book of ``ticker`` in cfa terms (NO bids at NO prices)."""
    yes, no = s.world.book_levels(s.world.markets[ticker])
    return tuple(tuple((parse_price(p), parse_qty(q)) for p, q in side) for side in (yes, no))


def bump(s: StandIn) -> None:
    """One book change in ``T``: a background taker sells one contract into the best bid."""
    s.world.taker(T, Side.ASK, 4000, ONE)


def assert_no_orphans(s: StandIn) -> None:
    resting = [o.order_id for o in s.world.orders.values() if o.status == "resting"]
    assert resting == [], f"orders left resting: {resting}"
    coids = [o.client_order_id for o in s.world.orders.values()]
    assert len(coids) == len(set(coids)) == s.world.creates, "an order was placed twice"


def subscribes(s: StandIn, channel: str) -> list[dict[str, Any]]:
    return [
        c["params"]
        for c in s.commands
        if c.get("cmd") == "subscribe" and channel in (c.get("params") or {}).get("channels", [])
    ]


@pytest.fixture
async def quiet() -> AsyncIterator[StandIn]:
    """A stand-in without background churn: the test moves the book itself."""
    async with running_standin(churn_interval=None) as s:
        yield s


# -- books in both pricing forms -------------------------------------------------------------


@pytest.mark.parametrize("form", ["honour", "flipped", "yes", "legacy"])
async def test_books_are_right_in_every_pricing_form(form: str) -> None:
    async with running_standin(churn_interval=None, book_form=form) as s:
        ex = adapter(s)
        await ex.start()
        c = Consumer(ex.stream([T]))
        try:
            await c.until(lambda ev: isinstance(ev, BookSnapshot))
            for _ in range(40):  # book changes on both legs
                s.world.churn()
            # our ask betters the book's (49¢): it rests as a NO bid at 52¢, a taker lifts part
            o = await ex.place_order(OrderRequest(T, "cfa-f-1", Side.ASK, 4800, 3 * ONE))
            s.world.taker(T, Side.BID, 4800, ONE)
            await c.until(lambda ev: isinstance(ev, Fill) and ev.order_id == o.order_id)
            await c.until(lambda ev: isinstance(ev, Order) and ev.order_id == o.order_id)
            snap = c.books[T].snapshot()
            assert (snap.yes, snap.no) == world_book(s, T)
            assert c.books[T].best_ask() == 4800  # our ask, on the YES leg
            assert c.books[T].ask_size(4800) == 2 * ONE
            stats = ex.feed_stats()[0]
            assert stats.form_switches == (1 if form == "legacy" else 0)
        finally:
            await c.close()
            await ex.cancel_all()
            await ex.close()
        params = subscribes(s, "orderbook_delta")
        assert params and all(p["use_yes_price"] is True for p in params)
        assert_no_orphans(s)


async def test_a_wrong_form_that_looks_sane_is_caught_by_the_ticker_channel() -> None:
    # a server that ignores use_yes_price, on a book far from 50¢ (YES bids 30-39¢, NO bids
    # 50-59¢): read in the asked-for YES-leg form it is not crossed, only wrong (ask 50¢, not
    # 41¢); the ticker channel's best ask gives it away and the feed switches and resyncs
    m = MARKETS[1]
    async with running_standin(churn_interval=None, book_form="legacy") as s:
        ex = adapter(s)
        await ex.start()
        c = Consumer(ex.stream([m]))
        try:
            await c.until(lambda ev: isinstance(ev, BookSnapshot))
            assert c.books[m].best_ask() == 5000  # wrong, but sane
            for _ in range(3):
                s.world.taker(m, Side.ASK, 3000, ONE)
            await c.until(lambda ev: isinstance(ev, BookSnapshot), 3.0)
            s.world.taker(m, Side.ASK, 3000, ONE)
            await c.until(lambda ev: isinstance(ev, BookDelta))
            snap = c.books[m].snapshot()
            assert (snap.yes, snap.no) == world_book(s, m) and c.books[m].best_ask() == 4100
            assert ex.feed_stats()[0].form_switches == 1
        finally:
            await c.close()
            await ex.close()
        assert_no_orphans(s)


# -- channel errors --------------------------------------------------------------------------


async def test_terminal_error_on_fill_resubscribes_fill_with_its_own_params(
    quiet: StandIn,
) -> None:
    ex = adapter(quiet)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        feed = ex._streams[0].feed
        await asyncio.wait_for(feed.ready.wait(), 2)
        assert quiet.channel_error("fill", code=10) == 1
        await asyncio.sleep(0.2)
        assert feed.stats.resubscribes == 1
        assert subscribes(quiet, "fill")[-1] == {"channels": ["fill"]}
        assert len(subscribes(quiet, "orderbook_delta")) == 1  # the books were left alone
        o = await ex.place_order(OrderRequest(T, "cfa-e-1", Side.BID, 4800, ONE))
        quiet.world.taker(T, Side.ASK, 4800, ONE)
        f = await c.until(lambda ev: isinstance(ev, Fill))
        assert isinstance(f, Fill) and f.order_id == o.order_id
        # a terminal error on the books: they come back from a fresh snapshot
        assert quiet.channel_error("orderbook_delta", code=25) == 1
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        bump(quiet)
        await c.until(lambda ev: isinstance(ev, BookDelta))
        assert subscribes(quiet, "orderbook_delta")[-1]["use_yes_price"] is True
        assert feed.stats.reconnects == 0
    finally:
        await c.close()
        await ex.cancel_all()
        await ex.close()
    assert len([e for e in c.seen if isinstance(e, Fill)]) == 1
    assert_no_orphans(quiet)


async def test_fill_made_while_the_fill_channel_was_down_is_caught_up(quiet: StandIn) -> None:
    ex = adapter(quiet, ws_request_timeout=0.3)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        feed = ex._streams[0].feed
        await asyncio.wait_for(feed.ready.wait(), 2)
        o = await ex.place_order(OrderRequest(T, "cfa-d-1", Side.BID, 4800, ONE))
        quiet.ignore("subscribe:fill", 1)  # the first resubscribe goes unanswered
        assert quiet.channel_error("fill", code=17) == 1
        await asyncio.sleep(0.05)
        quiet.world.taker(T, Side.ASK, 4800, ONE)  # no fill subscription: the frame is lost
        f = await c.until(lambda ev: isinstance(ev, Fill), 3.0)
        assert isinstance(f, Fill) and f.order_id == o.order_id and f.count == ONE
        assert feed.stats.subscribe_timeouts == 1 and feed.stats.reconnects == 0
        o2 = await ex.place_order(OrderRequest(T, "cfa-d-2", Side.BID, 4800, ONE))
        quiet.world.taker(T, Side.ASK, 4800, ONE)  # the channel is back: streamed as usual
        f2 = await c.until(lambda ev: isinstance(ev, Fill), 3.0)
        assert isinstance(f2, Fill) and f2.order_id == o2.order_id
    finally:
        await c.close()
        await ex.close()
    fills = [e.fill_id for e in c.seen if isinstance(e, Fill)]
    assert len(fills) == len(set(fills)) == 2
    assert_no_orphans(quiet)


async def test_refused_subscribes_are_retried_and_never_raise(quiet: StandIn) -> None:
    quiet.refuse_subscribe("orderbook_delta", code=17, times=2)
    quiet.refuse_subscribe("fill", code=10, times=1)
    ex = adapter(quiet)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        feed = ex._streams[0].feed
        await asyncio.wait_for(feed.ready.wait(), 2)
        assert feed.stats.resubscribes == 3 and feed.stats.reconnects == 0
        assert len(subscribes(quiet, "orderbook_delta")) == 3
        assert len(subscribes(quiet, "fill")) == 2
    finally:
        await c.close()
        await ex.close()
    # refused past max_attempts: the feed reconnects instead of giving up
    quiet.refuse_subscribe("trade", code=17, times=3)
    ex = adapter(quiet)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        await c.until(lambda ev: isinstance(ev, BookSnapshot), 5.0)  # the new connection's
        feed = ex._streams[0].feed
        await asyncio.wait_for(feed.ready.wait(), 2)
        assert feed.stats.forced_reconnects == 1 and feed.stats.reconnects == 1
    finally:
        await c.close()
        await ex.close()
    assert_no_orphans(quiet)


# -- unanswered requests ---------------------------------------------------------------------


async def test_unanswered_snapshot_and_subscribe_are_asked_again_then_reconnect(
    quiet: StandIn,
) -> None:
    quiet.ignore("subscribe:orderbook_delta", 1)
    ex = adapter(quiet, ws_request_timeout=0.3)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot), 3.0)
        feed = ex._streams[0].feed
        assert feed.stats.subscribe_timeouts == 1 and feed.stats.reconnects == 0
        # a gap whose get_snapshot goes unanswered once: asked again, no reconnect
        quiet.ignore("get_snapshot", 1)
        quiet.gap(T)
        bump(quiet)
        bump(quiet)
        await c.until(lambda ev: isinstance(ev, BookSnapshot), 3.0)
        assert feed.stats.snapshot_timeouts == 1 and feed.stats.reconnects == 0
        # never answered: after max_attempts requests the connection is made anew
        quiet.ignore("get_snapshot", 10)
        quiet.gap(T)
        bump(quiet)
        bump(quiet)
        await c.until(lambda ev: isinstance(ev, BookSnapshot), 5.0)
        assert feed.stats.forced_reconnects == 1 and feed.stats.reconnects == 1
        assert feed.stats.snapshot_timeouts >= 1 + feed.max_attempts
        bump(quiet)
        await c.until(lambda ev: isinstance(ev, BookDelta), 3.0)
        snap = c.books[T].snapshot()
        assert (snap.yes, snap.no) == world_book(quiet, T)
    finally:
        await c.close()
        await ex.close()
    assert_no_orphans(quiet)


async def test_refused_snapshot_request_resubscribes_the_books(quiet: StandIn) -> None:
    ex = adapter(quiet)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        quiet.refuse_snapshot(code=17)
        quiet.gap(T)
        bump(quiet)
        bump(quiet)
        await c.until(lambda ev: isinstance(ev, BookSnapshot), 3.0)
        bump(quiet)
        await c.until(lambda ev: isinstance(ev, BookDelta), 3.0)
        feed = ex._streams[0].feed
        assert feed.stats.resubscribes == 1 and feed.stats.reconnects == 0
        assert len(subscribes(quiet, "orderbook_delta")) == 2
        snap = c.books[T].snapshot()
        assert (snap.yes, snap.no) == world_book(quiet, T)
    finally:
        await c.close()
        await ex.close()
    assert_no_orphans(quiet)


# -- lifecycle, pings, ticker frames ---------------------------------------------------------


async def test_other_markets_lifecycle_is_dropped_before_recording(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world()
    other = "KXOTHER-26DEC31-T10"
    world.add_market(other)
    recorded: list[dict[str, Any]] = []
    async with running_standin(world=world, churn_interval=0.005, ping_interval=0.05) as s:
        ex = adapter(s, on_frame=lambda f, _ts: recorded.append(f))
        await ex.start()
        c = Consumer(ex.stream([T]))
        caplog.set_level(logging.WARNING, logger="cfa.exchange.kalshi")
        try:
            await c.until(lambda ev: isinstance(ev, BookSnapshot))
            s.world.deactivate(other)
            s.world.activate(other)
            s.world.set_grid(other, "deci_cent")
            s.world.deactivate(MARKETS[1])  # in the world, not in this stream
            s.world.deactivate(T)
            ev = await c.until(lambda ev: isinstance(ev, MarketStatus))
            assert isinstance(ev, MarketStatus) and ev.ticker == T and ev.active is False
            s.world.activate(T)
            ev = await c.until(lambda ev: isinstance(ev, MarketStatus))
            assert isinstance(ev, MarketStatus) and ev.active is True and ev.reason == "activated"
            await asyncio.sleep(0.4)  # several heartbeats, and ticker frames with the churn
            c.seen.clear()
            await c.until(lambda ev: isinstance(ev, BookDelta))
            feed = ex._streams[0].feed
            assert feed.stats.filtered == 4 and feed.stats.reconnects == 0
        finally:
            await c.close()
            await ex.close()
        assert s.pongs >= 4, "the client answers the server's heartbeat pings"
        assert s.ws_connections == 1
        assert_no_orphans(s)
    lifecycle = [f for f in recorded if f.get("type") == "market_lifecycle_v2"]
    assert [f["msg"]["market_ticker"] for f in lifecycle] == [T, T]
    assert all(f["msg"].get("market_ticker") in (None, T) for f in recorded if "msg" in f)
    assert any(f.get("type") == "ticker" for f in recorded), "the stand-in sends ticker frames"
    assert "malformed" not in caplog.text
    assert subscribes(s, "market_lifecycle_v2") == [{"channels": ["market_lifecycle_v2"]}]


async def test_price_grid_change_carries_the_new_market(quiet: StandIn) -> None:
    ex = adapter(quiet)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        assert (await ex.get_market(T)).price_level_structure == "linear_cent"
        quiet.world.set_grid(T, "deci_cent")
        ev = await c.until(lambda ev: isinstance(ev, MarketStatus))
        assert isinstance(ev, MarketStatus) and ev.market is not None and ev.active
        assert ev.market.price_level_structure == "deci_cent"
        assert min(r.step for r in ev.market.price_ranges) == 10  # $0.001
    finally:
        await c.close()
        await ex.close()
    assert_no_orphans(quiet)


async def test_exchange_pause_is_seen_in_the_exchange_status(quiet: StandIn) -> None:
    ex = adapter(quiet, status_interval=0.05)
    await ex.start()
    c = Consumer(ex.stream([T]))
    try:
        await c.until(lambda ev: isinstance(ev, BookSnapshot))
        quiet.world.pause()
        ev = await c.until(lambda ev: isinstance(ev, MarketStatus))
        assert isinstance(ev, MarketStatus) and not ev.active and ev.reason == "trading_paused"
        quiet.world.resume()
        ev = await c.until(lambda ev: isinstance(ev, MarketStatus))
        assert isinstance(ev, MarketStatus) and ev.active and ev.reason == "exchange_resumed"
    finally:
        await c.close()
        await ex.close()
    assert_no_orphans(quiet)


async def test_a_pause_in_force_at_start_is_emitted_before_anything_else(quiet: StandIn) -> None:
    quiet.world.pause()
    quiet.world.deactivate(MARKETS[1])
    ex = adapter(quiet, status_interval=None)
    await ex.start()
    assert (await ex.get_market(MARKETS[1])).status == "inactive"
    c = Consumer(ex.stream([T, MARKETS[1]]))
    try:
        first: dict[str, list[Event]] = {T: [], MARKETS[1]: []}
        while any(len(v) < 2 for v in first.values()):
            ev = await c.until(lambda _: True)
            if len(first[ev.ticker]) < 2:
                first[ev.ticker].append(ev)
        for t in (T, MARKETS[1]):
            snap, status = first[t]
            assert isinstance(snap, BookSnapshot) and isinstance(status, MarketStatus)
            assert status.active is False and status.reason == "trading_paused"
        quiet.world.resume()
        await ex._queue_status(ex._streams[0].feed)  # what the poller does
        ev = await c.until(lambda ev: isinstance(ev, MarketStatus))
        assert isinstance(ev, MarketStatus) and (ev.ticker, ev.active) == (T, True)
        quiet.world.activate(MARKETS[1])  # the other market opens only with its own event
        ev = await c.until(lambda ev: isinstance(ev, MarketStatus))
        assert isinstance(ev, MarketStatus) and (ev.ticker, ev.active) == (MARKETS[1], True)
    finally:
        await c.close()
        await ex.close()
    assert_no_orphans(quiet)


# -- the market loop through pauses and a grid change ----------------------------------------


async def _eventually(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


def _ours_resting(s: StandIn) -> list[str]:
    return [
        o.order_id
        for o in s.world.orders.values()
        if o.status == "resting" and o.ticker == T and o.client_order_id.startswith("cfa-")
    ]


async def test_loop_pauses_keeps_its_state_reconciles_and_quotes_the_new_grid(
    tmp_path: Path,
) -> None:
    db = tmp_path / "live.db"
    base = load_policy("default")
    quoting = base.quoting.model_copy(update={"min_order_age_s": 0.05, "min_requote_s": 0.05})
    policy = base.model_copy(
        update={"warmup": Warmup(min_samples=1, max_s=0.2), "quoting": quoting}
    )
    async with running_standin(churn_interval=0.003) as s:
        ex = adapter(s, status_interval=0.05)
        store = AuditStore.open(db)
        session = await open_run(ex, store, policy, {"policy": policy.model_dump(mode="json")}, [T])
        loop = session.loops[T]
        task = asyncio.create_task(session.run(govern=False))

        def holds_what_rests() -> bool:
            """Two orders rest and the loop has the venue's answer for both (stopping the
            session with a placement in flight would lose that placement's audit row)."""
            ours = set(_ours_resting(s))
            return len(ours) == 2 and {o.order_id for o in loop.resting.values() if o} == ours

        try:
            await _eventually(
                lambda: loop.state is LoopState.READY and len(_ours_resting(s)) == 2, what="quotes"
            )
            # a market pause: no order call, state kept, resting orders stay at the venue
            s.world.deactivate(T)
            await _eventually(lambda: loop.paused == "deactivated", what="pause")
            calls = len(s.requests)
            held = sorted(_ours_resting(s))
            kept = (loop.vol, loop.intensity, loop.account.inventory, session.params.get(T))
            touch = loop.touch
            for p in (4700, 4600, 4500):  # others cancel their best bids: the mid moves down
                s.world.pull(T, "yes", p)
            await _eventually(lambda: loop.touch != touch, what="the touch to move")
            await asyncio.sleep(0.2)  # past the minimum order age: a live loop would move
            s.world.pull(T, "yes", 4400)
            await _eventually(lambda: loop.touch[0] == 4300, what="the touch to move again")
            await asyncio.sleep(0.1)
            writes = [r for r in s.requests[calls:] if r[1].startswith("/portfolio/events/orders")]
            assert writes == [] and sorted(_ours_resting(s)) == held, "no order call while paused"
            assert loop.state is LoopState.READY and loop.book.synced
            assert (loop.vol, loop.intensity, loop.account.inventory, session.params.get(T)) == kept
            # reactivation: the venue cancelled everything; the loop confirms and quotes anew
            s.world.activate(T)
            await _eventually(
                lambda: loop.paused is None and len(_ours_resting(s)) == 2, what="requote"
            )
            assert not set(_ours_resting(s)) & set(held)
            await _eventually(holds_what_rests, what="the loop to hold what rests")
            # a finer grid: the loop's grid follows before its next quote
            s.world.set_grid(T, "deci_cent")
            await _eventually(lambda: loop.qm.grid == PriceGrid.from_structure("deci_cent"))
            assert loop.intensity.step == 0.001
            assert loop.market.price_level_structure == "deci_cent"
            # an exchange-wide trading pause (orders are sent with cancel_order_on_pause)
            s.world.pause()
            await _eventually(lambda: loop.paused == "trading_paused", what="trading pause")
            assert _ours_resting(s) == []
            # the venue cannot say what rests at first: the loop stays paused and asks again
            s.inject("GET", r"^/portfolio/orders$", "500", times=ex.rest.retries + 1)
            s.world.resume()
            await _eventually(
                lambda: loop.paused is not None and loop.paused.startswith("reconciling"),
                what="a reconcile that failed",
            )
            assert _ours_resting(s) == []
            await _eventually(lambda: loop.paused is None and holds_what_rests(), what="resume")
            failed = [f for f in s.faults.fired if f == "500 GET /portfolio/orders"]
            assert len(failed) == ex.rest.retries + 1  # all spent on the first reconcile
            assert loop.state is LoopState.READY and loop.error is None
        finally:
            session.stop.set()
            await asyncio.wait_for(task, 10)
            await ex.close()
            store.close()
        assert_no_orphans(s)
    with sqlite3.connect(db) as c:
        codes = [
            r[0]
            for r in c.execute(
                "select code from risk_events where kind = 'market_status' order by seq"
            )
        ]
    assert codes == [
        "paused",
        "reactivated",
        "reconciled",
        "price_grid",
        "paused",
        "reactivated",
        "reconciled",
    ]
    # the audit replay reproduces the pauses: the replayed loop records the same transitions
    report = await replay_exact(db, session.run_id)
    assert report.ok and report.compared > 0, report.mismatches
    replayed = AuditReplayExchange(db, session.run_id, [loop.market])
    kinds = [
        ev.active
        for ev in [e async for e in replayed.stream([T])]
        if isinstance(ev, MarketStatus) and ev.market is None
    ]
    assert kinds == [False, True, False, True]


async def test_loop_cancels_and_waits_while_its_book_is_blind(tmp_path: Path) -> None:
    """A sequence gap whose snapshot request goes unanswered: the loop cancels its resting
    orders at once (the venue still trades), places nothing on the stale book, and quotes
    again once the re-asked snapshot arrives."""
    db = tmp_path / "blind.db"
    base = load_policy("default")
    quoting = base.quoting.model_copy(update={"min_order_age_s": 0.05, "min_requote_s": 0.05})
    policy = base.model_copy(
        update={"warmup": Warmup(min_samples=1, max_s=0.2), "quoting": quoting}
    )
    async with running_standin(churn_interval=0.003) as s:
        ex = adapter(s, ws_request_timeout=0.6)
        store = AuditStore.open(db)
        session = await open_run(ex, store, policy, {"policy": policy.model_dump(mode="json")}, [T])
        loop = session.loops[T]
        task = asyncio.create_task(session.run(govern=False))
        try:
            await _eventually(
                lambda: loop.state is LoopState.READY and len(_ours_resting(s)) == 2, what="quotes"
            )
            s.ignore("get_snapshot")
            s.gap(T)
            await _eventually(lambda: loop.paused == BLIND_BOOK, what="a blind book")
            await _eventually(lambda: _ours_resting(s) == [], what="the cancels")
            calls = len(s.requests)
            await asyncio.sleep(0.3)  # blind: the first snapshot request is never answered
            assert loop.paused == BLIND_BOOK
            creates = [r for r in s.requests[calls:] if r[0] == "POST"]
            assert creates == [] and _ours_resting(s) == [], "nothing placed on a stale book"
            await _eventually(
                lambda: loop.paused is None and len(_ours_resting(s)) == 2, what="requote"
            )
            assert ex.feed_stats()[0].snapshot_timeouts >= 1
        finally:
            session.stop.set()
            await asyncio.wait_for(task, 10)
            await ex.close()
            store.close()
        assert_no_orphans(s)
    with sqlite3.connect(db) as c:
        codes = [
            r[0]
            for r in c.execute(
                "select code from risk_events where kind = 'market_status' order by seq"
            )
        ]
        cancels = c.execute(
            "select count(*) from orders where action = 'cancel' and reason = ?", (BLIND_BOOK,)
        ).fetchone()[0]
    assert codes[:3] == ["paused", "reactivated", "reconciled"], codes
    assert cancels == 2
    report = await replay_exact(db, session.run_id)
    assert report.ok and report.compared > 0, report.mismatches


# -- recordings keep their form ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header_yes", "no_levels"),
    [
        (True, [["0.4900", "7.00"], ["0.5800", "3.00"]]),  # asked for and served in YES-leg
        (False, [["0.4200", "3.00"], ["0.5100", "7.00"]]),  # an older recording: legacy
        (True, [["0.4200", "3.00"], ["0.5100", "7.00"]]),  # asked for, a server that ignored it
    ],
)
async def test_feed_replay_reads_a_recording_in_its_book_form(
    tmp_path: Path, header_yes: bool, no_levels: list[list[str]]
) -> None:
    market = {
        "ticker": "KXREC-26DEC31-T1",
        "event_ticker": "KXREC-26DEC31",
        "close_time": "2026-12-31T00:00:00Z",
        "price_level_structure": "linear_cent",
    }
    head: dict[str, Any] = {"kind": "cfa-kalshi-recording", "version": 1, "markets": [market]}
    if header_yes:
        head["use_yes_price"] = True
    msg = {
        "market_ticker": market["ticker"],
        "market_id": "id",
        "yes_dollars_fp": [["0.4000", "5.00"], ["0.4700", "9.00"]],
        "no_dollars_fp": no_levels,
    }
    yes_form = no_levels[0][0] == "0.4900"
    delta_price = "0.4900" if yes_form else "0.5100"  # the NO level at 51¢ NO / 49¢ YES
    lines = [
        head,
        {"recv_ts": 1.0, "frame": {"type": "subscribed", "id": 1, "msg": {"sid": 2}}},
        {"recv_ts": 1.0, "frame": {"type": "orderbook_snapshot", "sid": 2, "seq": 1, "msg": msg}},
        {
            "recv_ts": 2.0,
            "frame": {
                "type": "orderbook_delta",
                "sid": 2,
                "seq": 2,
                "msg": {
                    "market_ticker": market["ticker"],
                    "market_id": "id",
                    "price_dollars": delta_price,
                    "delta_fp": "-2.00",
                    "side": "no",
                },
            },
        },
    ]
    path = tmp_path / "rec.ndjson"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    feed = KalshiFeedExchange(path)
    events = [ev async for ev in feed.stream([market["ticker"]])]
    book = OrderBook(market["ticker"])
    for ev in events:
        if isinstance(ev, BookSnapshot):
            book.apply_snapshot(ev)
        elif isinstance(ev, BookDelta):
            book.apply_delta(ev)
    assert book.snapshot().no == ((4200, 300), (5100, 500))
    assert (book.best_bid(), book.best_ask()) == (4700, 4900)
