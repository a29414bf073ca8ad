"""Every injected fault survived: 429, 5xx, timeouts, dropped WebSocket, sequence gaps, a paused
exchange, post-only crosses, a restart with orphans — no crash, no duplicate, no orphan, and a
fresh snapshot after each gap. Also: REST shapes and the key never in logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from kalshi_standin import StandIn, test_key
from kalshi_standin.fixtures import MARKETS, adapter, running_standin

from cfa.core.book import OrderBook
from cfa.core.types import (
    BLIND_BOOK,
    ONE_DOLLAR,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketStatus,
    Order,
    OrderRequest,
    OrderStatus,
    Side,
)
from cfa.exchange.base import Event, OrderRejected
from cfa.exchange.kalshi.adapter import KalshiExchange
from cfa.exchange.kalshi.errors import (
    KalshiAuthError,
    KalshiExchangePaused,
    KalshiRateLimited,
)
from cfa.exchange.kalshi.ratelimit import RateLimiter
from cfa.exchange.kalshi.rest import KalshiRest

T = MARKETS[0]
ONE = 100


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with running_standin(churn_interval=0.002) as s:
        yield s


@pytest.fixture
async def ex(standin: StandIn) -> AsyncIterator[KalshiExchange]:
    e = adapter(standin)
    await e.start()
    yield e
    await e.close()


def req(coid: str, side: Side = Side.BID, price: int = 4400, count: int = ONE, **kw: Any):
    return OrderRequest(T, coid, side, price, count, **kw)


class Consumer:
    """Consumes a stream like the loop: applies snapshots, checks every delta's seq."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self.events = events
        self.books: dict[str, OrderBook] = {}
        self.snapshots = 0
        self.deltas = 0
        self.seen: list[Event] = []

    async def until(self, pred, timeout: float = 5.0) -> Event:
        async def run() -> Event:
            async for ev in self.events:
                self.seen.append(ev)
                if isinstance(ev, BookSnapshot):
                    self.books.setdefault(ev.ticker, OrderBook(ev.ticker)).apply_snapshot(ev)
                    self.snapshots += 1
                elif isinstance(ev, BookDelta):
                    self.books[ev.ticker].apply_delta(ev)  # raises on any gap
                    self.deltas += 1
                if pred(ev):
                    return ev
            raise AssertionError("stream ended")

        return await asyncio.wait_for(run(), timeout)


# -- REST faults -----------------------------------------------------------------------------


async def test_429_and_5xx_are_retried_without_duplicates(
    standin: StandIn, ex: KalshiExchange
) -> None:
    standin.inject("POST", r"^/portfolio/events/orders$", "429")
    standin.inject("POST", r"^/portfolio/events/orders$", "503")
    standin.inject("GET", r"^/markets/", "500", times=2)
    o = await ex.place_order(req("cfa-t-1"))
    assert o.status is OrderStatus.RESTING
    assert standin.world.creates == 1
    book = await ex.get_orderbook(T)
    assert book.yes and book.no
    assert sum(1 for f in standin.faults.fired if f.startswith(("429", "503", "500"))) == 4
    assert ex.rest.retried >= 4
    # out of retries: the 429 surfaces typed, with Kalshi's body
    standin.inject("GET", r"^/portfolio/balance$", "429", times=10)
    with pytest.raises(KalshiRateLimited) as exc:
        await ex.get_balance()
    assert exc.value.status == 429 and "too many requests" in str(exc.value)


async def test_create_timeout_after_landing_is_not_duplicated(
    standin: StandIn, ex: KalshiExchange
) -> None:
    # the create lands but its answer never arrives in time; the retry (same client order
    # id) meets 409, and the adapter finds the order by its client order id
    standin.inject("POST", r"^/portfolio/events/orders$", "timeout_after", delay=1.5)
    o = await ex.place_order(req("cfa-t-2"))
    assert standin.world.creates == 1
    assert [x.order_id for x in await ex.get_orders(T)] == [o.order_id]
    # a fresh adapter (a restarted process) retrying the same id gets the same order
    other = adapter(standin)
    again = await other.place_order(req("cfa-t-2"))
    assert again.order_id == o.order_id and standin.world.creates == 1
    await other.close()


async def test_create_timeout_before_landing_retries_once(
    standin: StandIn, ex: KalshiExchange
) -> None:
    standin.inject("POST", r"^/portfolio/events/orders$", "timeout", delay=1.5)
    o = await ex.place_order(req("cfa-t-3"))
    assert o.status is OrderStatus.RESTING and standin.world.creates == 1


async def test_cancel_timeout_after_landing_reports_canceled(
    standin: StandIn, ex: KalshiExchange
) -> None:
    o = await ex.place_order(req("cfa-t-4"))
    standin.inject("DELETE", r"^/portfolio/events/orders/", "timeout_after", delay=1.5)
    done = await ex.cancel_order(o.order_id)
    assert done.status is OrderStatus.CANCELED
    assert await ex.get_orders(T) == []


async def test_paused_exchange_rejects_and_pulls_cancel_on_pause_orders(
    standin: StandIn, ex: KalshiExchange
) -> None:
    o = await ex.place_order(req("cfa-t-5"))
    standin.world.pause()
    status = await ex.rest.get_exchange_status()
    assert status["trading_active"] is False
    with pytest.raises(KalshiExchangePaused) as exc:
        await ex.place_order(req("cfa-t-6"))
    assert isinstance(exc.value, OrderRejected) and exc.value.code == "trading_paused"
    # cancel_order_on_pause: Kalshi pulled our order itself
    assert await ex.get_orders(T) == []
    assert (await ex.rest.get_order(o.order_id))["status"] == "canceled"
    standin.world.resume()
    assert (await ex.place_order(req("cfa-t-7"))).status is OrderStatus.RESTING


async def test_post_only_cross_rejected_with_kalshi_code(ex: KalshiExchange) -> None:
    book = await ex.get_orderbook(T)
    ask = ONE_DOLLAR - book.no[-1][0]
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req("cfa-t-8", price=ask))
    assert exc.value.code == "post_only_cross"
    assert getattr(exc.value, "kalshi_code", None) == "invalid_order"


async def test_bad_signature_is_an_auth_error(standin: StandIn) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from cfa.exchange.kalshi.auth import Signer

    wrong = Signer("0f6e1c2a-5b7d-4c1e-9a3b-standin00001", rsa.generate_private_key(65537, 2048))
    e = KalshiExchange(standin.base_url, standin.ws_url, wrong, timeout=1.0)
    with pytest.raises(KalshiAuthError) as exc:
        await e.get_balance()
    assert exc.value.code == "authentication_error" and exc.value.status == 401
    assert standin.auth_failures == 1  # auth errors are not retried
    await e.close()


# -- restart, orphans, kill switch -----------------------------------------------------------


async def test_restart_cancels_cfa_orphans_and_leaves_unknown_orders(standin: StandIn) -> None:
    first = adapter(standin)
    await first.start()
    await first.place_order(req("cfa-old-1", price=4300))
    await first.place_order(req("cfa-old-2", price=4200))
    await first.close()  # crash: nothing cancelled
    manual = adapter(standin, order_group_limit=None)
    foreign = await manual.place_order(req("by-hand-1", price=4100))
    await manual.close()

    second = adapter(standin)
    await second.start()
    rec = second.reconciliation
    assert {o.client_order_id for o in rec.stale_canceled} == {"cfa-old-1", "cfa-old-2"}
    assert [o.order_id for o in rec.unknown] == [foreign.order_id]
    resting = await second.get_orders(T)
    assert [o.order_id for o in resting] == [foreign.order_id]  # no orphan left
    await second.place_order(req("cfa-new-1", price=4000))
    gone = await second.cancel_all()
    assert [o.client_order_id for o in gone] == ["cfa-new-1"]
    assert [o.order_id for o in await second.get_orders(T)] == [foreign.order_id]
    await second.close()


async def test_order_group_kill_switch(standin: StandIn, ex: KalshiExchange) -> None:
    assert ex.order_group_id is not None
    for i, p in enumerate((4300, 4200, 4100)):
        await ex.place_order(req(f"cfa-k-{i}", price=p))
    assert all(o.cancel_on_pause for o in standin.world.orders.values())
    assert {o.group for o in standin.world.orders.values()} == {ex.order_group_id}
    await ex.kill()
    assert await ex.get_orders(None) == []
    assert ex.order_group_id is None


# -- WebSocket faults ------------------------------------------------------------------------


async def test_sequence_gap_resyncs_from_a_fresh_snapshot(
    standin: StandIn, ex: KalshiExchange
) -> None:
    c = Consumer(ex.stream([T]))
    await c.until(lambda ev: isinstance(ev, BookSnapshot))
    await c.until(lambda ev: isinstance(ev, BookDelta))
    for _ in range(3):
        standin.gap(T)
        before = c.snapshots
        await c.until(lambda ev, b=before: isinstance(ev, BookSnapshot) and c.snapshots > b)
        await c.until(lambda ev: isinstance(ev, BookDelta))
    for _ in range(50):  # the answers to get_snapshot consume seqs too: no gap follows them
        await c.until(lambda ev: isinstance(ev, BookDelta))
    stats = ex.feed_stats()[0]
    assert stats.gaps == 3 and stats.resync_requests == 3, stats

    # each gap blinds the book until its fresh snapshot: paused (BLIND_BOOK), snapshot, open
    def mark(ev: Event) -> str:
        if isinstance(ev, BookSnapshot):
            return "snap"
        assert isinstance(ev, MarketStatus)
        return "blind" if ev.reason == BLIND_BOOK and not ev.active else ev.reason

    marks = [mark(ev) for ev in c.seen if isinstance(ev, MarketStatus | BookSnapshot)]
    assert marks == ["snap", *["blind", "snap", "book_resynced"] * 3], marks
    first_blind = next(i for i, ev in enumerate(c.seen) if isinstance(ev, MarketStatus))
    resnap = next(
        i for i, ev in enumerate(c.seen) if i > first_blind and isinstance(ev, BookSnapshot)
    )
    assert not any(isinstance(ev, BookDelta) for ev in c.seen[first_blind:resnap])
    # the consumer's book equals the exchange's after the resyncs (quiesce the churn first)
    standin.churn_interval = None
    await c.events.aclose()  # type: ignore[attr-defined]


async def test_dropped_websocket_reconnects_resyncs_and_catches_up_fills(
    standin: StandIn, ex: KalshiExchange
) -> None:
    c = Consumer(ex.stream([T]))
    await c.until(lambda ev: isinstance(ev, BookSnapshot))
    o = await ex.place_order(req("cfa-ws-1", price=4400, count=2 * ONE))
    await c.until(lambda ev: isinstance(ev, Order) and ev.order_id == o.order_id)
    assert await standin.drop_websockets() == 1
    # while disconnected, a taker hits our bid: the fill frame is lost with the connection
    standin.world.taker(T, Side.ASK, 4400, 10_000)
    fill = await c.until(lambda ev: isinstance(ev, Fill) and ev.order_id == o.order_id, 8.0)
    assert isinstance(fill, Fill) and fill.count > 0
    await c.until(lambda ev: isinstance(ev, BookSnapshot) and c.snapshots >= 2, 8.0)
    await c.until(lambda ev: isinstance(ev, BookDelta))
    stats = ex.feed_stats()[0]
    assert stats.reconnects >= 1
    fills = [f for f in c.seen if isinstance(f, Fill)]
    assert len({f.fill_id for f in fills}) == len(fills), "no fill emitted twice"
    await c.events.aclose()  # type: ignore[attr-defined]


async def test_maker_fill_from_taker_hook_streams(standin: StandIn, ex: KalshiExchange) -> None:
    c = Consumer(ex.stream([T]))
    await c.until(lambda ev: isinstance(ev, BookSnapshot))
    book = c.books[T]
    bid = book.best_bid()
    assert bid is not None
    o = await ex.place_order(req("cfa-mk-1", price=bid + 100))  # improve the bid by a cent
    await c.until(lambda ev: isinstance(ev, BookDelta) and ev.client_order_id == "cfa-mk-1")
    standin.world.taker(T, Side.ASK, bid + 100, ONE)
    f = await c.until(lambda ev: isinstance(ev, Fill))
    assert isinstance(f, Fill) and not f.is_taker and f.order_id == o.order_id
    assert f.side is Side.BID and f.post_position == ONE and f.client_order_id == "cfa-mk-1"
    await c.events.aclose()  # type: ignore[attr-defined]


# -- REST shapes -----------------------------------------------------------------------------


async def test_rest_shapes_pagination_and_legacy_orderbook() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        path = request.url.path
        if path.endswith("/markets"):
            cursor = request.url.params.get("cursor")
            if not cursor:
                return httpx.Response(200, json={"markets": [{"ticker": "A"}], "cursor": "EhIK"})
            return httpx.Response(200, json={"markets": [{"ticker": "B"}], "cursor": ""})
        if path.endswith("/orderbook"):
            return httpx.Response(
                200,
                json={
                    "orderbook": {
                        "no": None,
                        "no_dollars": None,
                        "yes": [[42, 13]],
                        "yes_dollars": [["0.4200", 13]],
                    }
                },
            )
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "nope"}})

    rest = KalshiRest(
        "https://h/trade-api/v2",
        None,
        limiter=RateLimiter(),
        transport=httpx.MockTransport(handler),
    )
    ms = await rest.get_markets(status="open", series_ticker="KX")
    assert [m["ticker"] for m in ms] == ["A", "B"]
    assert calls[0].url.params["status"] == "open" and calls[1].url.params["cursor"] == "EhIK"
    book = await rest.get_orderbook("A")
    assert book == {"yes_dollars": [["0.4200", 13]], "no_dollars": []}
    await rest.aclose()


async def test_v2_order_request_shape(standin: StandIn, ex: KalshiExchange) -> None:
    seen: list[dict[str, Any]] = []
    orig = standin.world.create

    def spy(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return orig(body)

    standin.world.create = spy  # type: ignore[method-assign]
    await ex.place_order(req("cfa-shape-1", side=Side.ASK, price=5500, count=250))
    body = seen[0]
    assert body["side"] == "ask" and body["price"] == "0.5500" and body["count"] == "2.50"
    assert body["time_in_force"] == "good_till_canceled"
    assert body["self_trade_prevention_type"] == "taker_at_cross"
    assert body["post_only"] is True and body["cancel_order_on_pause"] is True
    assert body["order_group_id"] == ex.order_group_id
    assert ("POST", "/portfolio/events/orders") in standin.requests


# -- secrets ---------------------------------------------------------------------------------


async def test_private_key_never_reaches_logs_or_reprs(
    standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    e = adapter(standin)
    await e.start()
    standin.inject("GET", r"^/portfolio/orders$", "500")
    o = await e.place_order(req("cfa-sec-1"))
    await e.amend_order(o.order_id, 4300, 2 * ONE)
    await e.cancel_all()
    s = e.stream([T])
    await asyncio.wait_for(anext(s), 5)
    await standin.drop_websockets()
    await asyncio.sleep(0.2)
    await s.aclose()
    await e.close()
    pem = (
        test_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    lines = [line for line in pem.splitlines() if "-----" not in line]
    d = str(test_key().private_numbers().d)
    texts = [caplog.text, repr(e), repr(e.rest), repr(e.signer), str(e.__dict__)]
    for text in texts:
        for frag in lines[1:5]:
            assert frag not in text
        assert d[:40] not in text
    assert "KALSHI-ACCESS-SIGNATURE" not in caplog.text
