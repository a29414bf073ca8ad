"""Kalshi order writes against the stand-in, to the August 2026 docs: idempotent creates (client
order ids unique among open orders only), V2 amend counts and ids, amends that never cross,
post-only crosses both ways, and batches that fit the tier's write bucket.

Every test on the stand-in ends by checking its state: no duplicate order, no orphan."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kalshi_standin import StandIn
from kalshi_standin.fixtures import MARKETS, adapter, running_standin
from kalshi_standin.server import Buckets, request_cost
from kalshi_standin.world import ApiError, Maker

from cfa.audit import AuditStore
from cfa.core.types import ONE_DOLLAR, BookSnapshot, OrderRequest, OrderStatus, Side
from cfa.exchange.base import OrderRejected
from cfa.exchange.kalshi.adapter import KalshiExchange
from cfa.exchange.kalshi.errors import KalshiInvalidOrder, KalshiRateLimited, KalshiServerError
from cfa.exchange.kalshi.ratelimit import Budget
from cfa.risk.policy import load_policy
from cfa.runtime.session import Session

T = MARKETS[0]
T2 = "KXBTC15M-26DEC311700-00"
"""A crypto market (exchange shard 2)."""
ONE = 100
BEST_BID = 4700  # the stand-in's touch for T: yes_band top
BEST_ASK = ONE_DOLLAR - 5100  # 1 - no_band top


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with running_standin(churn_interval=None) as s:  # a still book: prices are exact
        yield s


@pytest.fixture
async def ex(standin: StandIn) -> AsyncIterator[KalshiExchange]:
    e = adapter(standin)
    await e.start()
    yield e
    await e.close()


def req(
    coid: str, price: int = 4400, count: int = ONE, side: Side = Side.BID, **kw: Any
) -> OrderRequest:
    return OrderRequest(T, coid, side, price, count, **kw)


def resting(s: StandIn) -> list[str]:
    return sorted(o.order_id for o in s.world.orders.values() if o.status == "resting")


def by_coid(s: StandIn, coid: str) -> list[Any]:
    return [o for o in s.world.orders.values() if o.client_order_id == coid]


def lookups(s: StandIn) -> int:
    return s.requests.count(("GET", "/portfolio/orders"))


# -- idempotent creates ------------------------------------------------------------------------


async def test_standin_client_ids_unique_among_open_orders_only(standin: StandIn) -> None:
    w = standin.world
    body = {"ticker": T, "side": "bid", "count": "1", "price": "0.4400"}
    body |= {"time_in_force": "good_till_canceled", "client_order_id": "reuse-1"}
    first = w.create(body)
    with pytest.raises(ApiError) as exc:  # open: a duplicate
        w.create(body)
    assert exc.value.status == 409
    w.cancel(first["order_id"])
    again = w.create(body)  # finished: the id may be used again, no 409
    assert again["order_id"] != first["order_id"] and w.creates == 2
    assert resting(standin) == [again["order_id"]]


async def test_create_that_fills_and_loses_its_answer_is_not_placed_again(
    standin: StandIn, ex: KalshiExchange
) -> None:
    # a crossing (not post-only) create executes at once, so its id is free again: a blind
    # resend would be accepted without any 409 and buy a second time
    standin.inject("POST", r"^/portfolio/events/orders$", "timeout_after", delay=1.5)
    o = await ex.place_order(req("cfa-o-1", price=BEST_ASK, post_only=False))
    assert o.status is OrderStatus.EXECUTED and o.fill_count == ONE
    assert standin.world.creates == 1 and len(by_coid(standin, "cfa-o-1")) == 1
    assert standin.requests.count(("POST", "/portfolio/events/orders")) == 1
    assert sum(p.position for p in standin.world.account.positions.values()) == ONE
    assert resting(standin) == []


@pytest.mark.parametrize("kind", ["500_after", "503_after", "drop_after"])
async def test_create_landed_then_5xx_or_dropped_is_found_not_resent(
    standin: StandIn, ex: KalshiExchange, kind: str
) -> None:
    standin.inject("POST", r"^/portfolio/events/orders$", kind)
    o = await ex.place_order(req(f"cfa-o-{kind}"))
    assert o.status is OrderStatus.RESTING and o.client_order_id == f"cfa-o-{kind}"
    assert standin.world.creates == 1 and resting(standin) == [o.order_id]
    assert standin.requests.count(("POST", "/portfolio/events/orders")) == 1
    assert lookups(standin) >= 1


async def test_create_not_landed_is_looked_up_then_resent_once(
    standin: StandIn, ex: KalshiExchange
) -> None:
    standin.inject("POST", r"^/portfolio/events/orders$", "drop")
    standin.inject("POST", r"^/portfolio/events/orders$", "500")
    before = lookups(standin)
    o = await ex.place_order(req("cfa-o-2"))
    assert standin.requests.count(("POST", "/portfolio/events/orders")) == 3
    # looked up after each failure, before resending (each look-up: resting + recent orders)
    assert lookups(standin) - before == 2 * 2
    assert standin.world.creates == 1 and resting(standin) == [o.order_id]


async def test_create_429_every_time_is_looked_up_and_raised(
    standin: StandIn, ex: KalshiExchange
) -> None:
    standin.inject("POST", r"^/portfolio/events/orders$", "429", times=10)
    before = lookups(standin)
    with pytest.raises(KalshiRateLimited):
        await ex.place_order(req("cfa-o-3"))
    assert lookups(standin) - before == 2 * (1 + ex.rest.retries)
    assert standin.world.creates == 0 and resting(standin) == []


async def test_clear_refusal_is_raised_without_lookup_or_resend(
    standin: StandIn, ex: KalshiExchange
) -> None:
    before = lookups(standin)
    with pytest.raises(KalshiInvalidOrder) as exc:
        await ex.place_order(req("cfa-o-4", price=4450))  # off the cent grid
    assert exc.value.code == "invalid_price" and exc.value.status == 400
    assert lookups(standin) == before
    assert standin.requests.count(("POST", "/portfolio/events/orders")) == 1
    assert standin.world.creates == 0 and resting(standin) == []


async def test_paused_trading_is_a_clear_refusal(standin: StandIn, ex: KalshiExchange) -> None:
    standin.world.pause()
    before = lookups(standin)
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req("cfa-o-p"))
    assert exc.value.code == "trading_paused" and lookups(standin) == before
    assert standin.requests.count(("POST", "/portfolio/events/orders")) == 1
    standin.world.resume()
    assert standin.world.creates == 0 and resting(standin) == []


async def test_409_from_a_restarted_process_returns_the_open_order(standin: StandIn) -> None:
    first = adapter(standin)
    await first.start()
    o = await first.place_order(req("cfa-o-5"))
    await first.close()
    other = adapter(standin, cancel_stale=False)
    await other.start()
    again = await other.place_order(req("cfa-o-5"))  # the open order answers 409
    assert again.order_id == o.order_id and standin.world.creates == 1
    assert resting(standin) == [o.order_id]
    await other.close()


async def test_lookup_ignores_an_old_finished_order_with_the_same_id(
    standin: StandIn, ex: KalshiExchange
) -> None:
    old = standin.world.create(
        {
            "ticker": T,
            "side": "bid",
            "count": "1",
            "price": "0.4300",
            "time_in_force": "good_till_canceled",
            "client_order_id": "cfa-o-6",
        }
    )
    standin.world.cancel(old["order_id"])
    standin.world.orders[old["order_id"]].created = time.time() - 3600  # long finished
    standin.inject("POST", r"^/portfolio/events/orders$", "timeout", delay=1.5)
    o = await ex.place_order(req("cfa-o-6"))
    assert o.order_id != old["order_id"] and o.status is OrderStatus.RESTING
    assert standin.world.creates == 2 and resting(standin) == [o.order_id]


# -- post-only crosses ---------------------------------------------------------------------------


async def test_post_only_cross_accepted_then_cancelled_is_post_only_cross(
    standin: StandIn, ex: KalshiExchange
) -> None:
    standin.world.post_only_cross = "cancel"
    with pytest.raises(OrderRejected) as exc:
        await ex.place_order(req("cfa-po-1", price=BEST_ASK))
    assert exc.value.code == "post_only_cross"
    (o,) = by_coid(standin, "cfa-po-1")
    assert o.status == "canceled" and o.last_update_reason == "PostOnlyCrossCancel"
    assert o.filled == 0 and resting(standin) == []
    raw = await ex.rest.get_order(o.order_id)
    assert raw["last_update_reason"] == "PostOnlyCrossCancel"
    # nothing rests: the side quotes again at a price that does not cross
    again = await ex.place_order(req("cfa-po-2", price=BEST_ASK - 100))
    assert again.status is OrderStatus.RESTING and resting(standin) == [again.order_id]


# -- V2 amend ------------------------------------------------------------------------------------


async def test_standin_amend_answer_has_per_amend_fills_and_charges_taker_fees(
    standin: StandIn, ex: KalshiExchange
) -> None:
    o = await ex.place_order(req("cfa-am-1", price=4800, count=5 * ONE))
    standin.world.taker(T, Side.ASK, 4800, 3 * ONE)  # 3 filled as maker, 2 rest
    w = standin.world.orders[o.order_id]
    assert (w.filled, w.remaining) == (3 * ONE, 2 * ONE)
    same = await ex.rest.amend_order(
        o.order_id, {"ticker": T, "side": "bid", "price": "0.4800", "count": "5.00"}
    )
    assert same["fill_count"] is None and same["remaining_count"] is None  # nothing changed
    # to the ask, total 7: 4 more wanted; they trade as taker (V2 amend has no post-only)
    resp = await ex.rest.amend_order(
        o.order_id,
        {"ticker": T, "side": "bid", "price": f"{BEST_ASK / ONE_DOLLAR:.4f}", "count": "7.00"},
    )
    assert resp["fill_count"] == "4.00"  # what this amend filled, not the 7.00 total
    assert resp["remaining_count"] == "0.00"
    assert resp["average_fill_price"] == f"{BEST_ASK / ONE_DOLLAR:.4f}"
    assert w.filled == 7 * ONE and w.status == "executed" and w.taker_fees > 0
    assert float(resp["average_fee_paid"]) > 0
    assert resting(standin) == [] and standin.world.creates == 1


async def test_amend_adds_its_fills_to_the_previous_total(
    standin: StandIn, ex: KalshiExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    o = await ex.place_order(req("cfa-am-2", price=4800, count=5 * ONE))
    standin.world.taker(T, Side.ASK, 4800, 3 * ONE)
    (cur,) = await ex.get_orders(T)  # our view: 3 filled, 2 resting
    assert cur.fill_count == 3 * ONE
    # a size change: nothing crosses, the answer carries fill 0 and the new resting count
    down = await ex.amend_order(o.order_id, 4800, cur.fill_count + ONE)
    assert (down.fill_count, down.remaining_count) == (3 * ONE, ONE)
    assert down.order_id == o.order_id and down.status is OrderStatus.RESTING

    # the book moves after the cross check (simulated by skipping the check): the amend takes
    # 2 contracts; the total is 3 + 2 = 5, not the answer's 2 (nor the stand-in's old 500/200)
    async def no_book(*_: Any) -> None:
        return None

    monkeypatch.setattr(ex, "_opposite_best", no_book)
    up = await ex.amend_order(o.order_id, BEST_ASK, down.fill_count + 2 * ONE)
    w = standin.world.orders[o.order_id]
    assert up.order_id == o.order_id and up.fill_count == w.filled == 5 * ONE
    assert up.remaining_count == 0 and up.status is OrderStatus.EXECUTED
    assert resting(standin) == [] and standin.world.creates == 1


async def test_amend_answer_describing_another_order_is_reconciled_by_get(
    standin: StandIn, ex: KalshiExchange
) -> None:
    a = await ex.place_order(req("cfa-am-a", price=4500, count=4 * ONE))
    b = await ex.place_order(req("cfa-am-b", price=4400, count=9 * ONE))
    standin.inject("POST", r"/amend$", "misdescribe")
    done = await ex.amend_order(a.order_id, 4500, 2 * ONE)
    assert any(f.startswith("misdescribe") for f in standin.faults.fired)
    assert done.order_id == a.order_id and done.client_order_id == "cfa-am-a"
    assert (done.remaining_count, done.fill_count) == (2 * ONE, 0)
    assert ex._orders[b.order_id].remaining_count == 9 * ONE  # b's record left alone
    assert standin.world.orders[a.order_id].remaining == 2 * ONE
    assert resting(standin) == sorted([a.order_id, b.order_id])


async def test_cancel_answer_describing_another_order_cancels_ours_only(
    standin: StandIn, ex: KalshiExchange
) -> None:
    a = await ex.place_order(req("cfa-cx-a", price=4500))
    b = await ex.place_order(req("cfa-cx-b", price=4400))
    standin.inject("DELETE", r"^/portfolio/events/orders/", "misdescribe")
    done = await ex.cancel_order(a.order_id)
    assert any(f.startswith("misdescribe DELETE") for f in standin.faults.fired)
    assert done.order_id == a.order_id and done.status is OrderStatus.CANCELED
    assert ex._orders[b.order_id].status is OrderStatus.RESTING
    assert resting(standin) == [b.order_id]


async def test_crossing_amend_is_refused_unsent_with_post_only_cross(
    standin: StandIn, ex: KalshiExchange
) -> None:
    bid = await ex.place_order(req("cfa-x-1", price=4600))
    ask = await ex.place_order(req("cfa-x-2", price=5200, side=Side.ASK))
    for oid, price in ((bid.order_id, BEST_ASK), (ask.order_id, BEST_BID)):
        with pytest.raises(KalshiInvalidOrder) as exc:
            await ex.amend_order(oid, price, ONE)
        assert isinstance(exc.value, OrderRejected) and exc.value.code == "post_only_cross"
    assert not any(p.endswith("/amend") for _, p in standin.requests)
    assert standin.world.orders[bid.order_id].price == 4600
    assert standin.world.orders[ask.order_id].price == 5200
    assert all(o.filled == 0 for o in standin.world.orders.values())
    # one tick inside the touch is fine
    moved = await ex.amend_order(bid.order_id, BEST_ASK - 100, ONE)
    assert moved.price == BEST_ASK - 100 and moved.status is OrderStatus.RESTING
    assert resting(standin) == sorted([bid.order_id, ask.order_id])


async def test_crossing_amend_checked_on_the_streamed_book(
    standin: StandIn, ex: KalshiExchange
) -> None:
    o = await ex.place_order(req("cfa-x-3", price=4600))
    stream = ex.stream([T])
    first = await asyncio.wait_for(anext(stream), 5)
    assert isinstance(first, BookSnapshot)
    books = standin.requests.count(("GET", f"/markets/{T}/orderbook"))
    with pytest.raises(KalshiInvalidOrder):
        await ex.amend_order(o.order_id, BEST_ASK, ONE)
    assert standin.requests.count(("GET", f"/markets/{T}/orderbook")) == books
    await stream.aclose()
    assert resting(standin) == [o.order_id]


# -- rate limits ---------------------------------------------------------------------------------


def test_standin_bills_what_the_docs_say() -> None:
    items = {"orders": [{}] * 25}
    assert request_cost("POST", "/portfolio/events/orders/batched", {}, items) == ("write", 250)
    assert request_cost("DELETE", "/portfolio/events/orders/batched", {}, items) == ("write", 50)
    assert request_cost("POST", "/portfolio/events/orders", {}, {"exchange_index": 0}) == (
        "write",
        10,
    )
    # a single write naming shard 2 bills shard 2's own bucket; batches never do
    assert request_cost("POST", "/portfolio/events/orders", {}, {"exchange_index": 2}) == (
        "write:2",
        10,
    )
    assert request_cost("DELETE", "/portfolio/events/orders/o-1", {"exchange_index": "2"}, {}) == (
        "write:2",
        2,
    )
    assert request_cost("GET", "/portfolio/orders", {}, {}) == ("read", 10)
    t = [0.0]
    b = Buckets("basic", clock=lambda: t[0])
    assert b.take("write", 100) and not b.take("write", 2) and b.take("write:2", 100)
    t[0] = 0.05  # +5 tokens at 100/s
    assert b.take("write", 2) and not b.take("write", 10)
    assert b.refused == 2 and b.caps == {"read": 400, "write": 100}
    assert Buckets("premier").caps == {"read": 1000, "write": 2000}


async def test_batch_create_is_split_to_fit_the_basic_write_bucket() -> None:
    async with running_standin(churn_interval=None, tier="basic") as s:
        e = adapter(s, budget=Budget.tier("basic"))
        sizes: list[int] = []
        orig = s.world.batch_create

        def spy(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
            sizes.append(len(orders))
            return orig(orders)

        s.world.batch_create = spy  # type: ignore[method-assign]
        orders = [
            {
                "ticker": T,
                "client_order_id": f"cfa-b-{i}",
                "side": "bid",
                "count": "1",
                "price": f"{(3000 + 100 * (i % 10)) / ONE_DOLLAR:.4f}",
                "time_in_force": "good_till_canceled",
                "self_trade_prevention_type": "taker_at_cross",
                "post_only": True,
            }
            for i in range(20)
        ]
        out = await e.rest.batch_create(orders)
        # basic: 100 tokens at most, 20 kept for cancels, 10 per order -> 8 a batch
        assert sizes == [8, 8, 4] and len(out) == 20
        assert all("error" not in r for r in out)
        assert s.buckets is not None and s.buckets.refused == 0
        assert len(resting(s)) == 20 and s.world.creates == 20
        # and the server side: one batch that cannot fit is a 429 with the docs' body
        with pytest.raises(KalshiRateLimited) as exc:
            await e.rest.request(
                "POST",
                "/portfolio/events/orders/batched",
                json={"orders": orders[:11]},
                kind="write",
                cost=10,
                retry=False,
            )
        assert "too many requests" in str(exc.value) and s.world.creates == 20
        await e.cancel_all()
        assert resting(s) == []
        await e.close()


async def test_orders_on_two_shards_use_both_write_budgets() -> None:
    """Against the stand-in's Basic-tier buckets (per-shard for single writes, as documented):
    eight creates on shard 0 and eight on shard 2 go out at once, with no wait and no 429 —
    sixteen on one bucket would have to wait for it to refill."""
    async with running_standin(churn_interval=None, tier="basic") as s:
        s.world.add_market(T2, exchange_index=2)
        s.world.fund(2, Decimal(1_000))
        e = adapter(s, budget=Budget.tier("basic"), order_group_limit=None)
        await e.start()
        await e.get_markets([T, T2])
        waited = e.limiter.waited_s
        for i in range(8):
            for t in (T, T2):
                coid = f"cfa-s{s.world.markets[t].exchange_index}-{i}"
                await e.place_order(OrderRequest(t, coid, Side.BID, 3000 + 100 * i, ONE))
        assert e.limiter.waited_s == waited, "a shard's writes waited on another's bucket"
        assert s.buckets is not None and s.buckets.refused == 0
        assert {s.world.markets[o.ticker].exchange_index for o in s.world.orders.values()} == {
            0,
            2,
        }
        await e.cancel_all()
        assert resting(s) == []
        await e.close()


async def test_cancel_all_batches_fit_the_write_bucket() -> None:
    async with running_standin(churn_interval=None, tier="basic") as s:
        # a tight client budget (20-token bucket): 10 cancels a batch
        e = adapter(s, budget=Budget(write_rate=100, write_burst_s=0.2), order_group_limit=None)
        await e.start()
        for i in range(25):
            s.world.create(
                {
                    "ticker": T,
                    "client_order_id": f"cfa-c-{i}",
                    "side": "bid",
                    "count": "1",
                    "price": f"{(3000 + 100 * (i % 10)) / ONE_DOLLAR:.4f}",
                    "time_in_force": "good_till_canceled",
                }
            )
        sizes: list[int] = []
        orig = s.world.batch_cancel

        def spy(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            sizes.append(len(items))
            return orig(items)

        s.world.batch_cancel = spy  # type: ignore[method-assign]
        gone = await e.cancel_all()
        assert len(gone) == 25 and sizes == [10, 10, 5]
        assert resting(s) == [] and s.buckets is not None and s.buckets.refused == 0
        await e.close()


async def test_single_creates_at_the_basic_tier_never_429() -> None:
    async with running_standin(churn_interval=None, tier="basic") as s:
        e = adapter(s, budget=Budget.tier("basic"))
        await e.start()
        t0 = time.monotonic()
        for i in range(12):
            await e.place_order(req(f"cfa-s-{i}", price=3000 + 100 * (i % 10)))
        assert s.buckets is not None and s.buckets.refused == 0
        assert time.monotonic() - t0 < 5
        assert len(resting(s)) == 12 and s.world.creates == 12
        await e.cancel_all()
        assert resting(s) == []
        await e.close()


# -- the market loop on these answers --------------------------------------------------------------


class LoopRun:
    """The market loop of ``T`` quoting the stand-in through ``ex`` for about three seconds
    while the touch moves; after every event it measures how long an order of ours rested
    unknown to the loop, or two of ours on one side (``worst``, seconds)."""

    def __init__(self, tmp_path: Path, s: StandIn, ex: KalshiExchange) -> None:
        text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
        fast = re.sub(r"max_s: \d+", "max_s: 0.3", text)
        (tmp_path / "fast.yaml").write_text(re.sub(r"min_samples: \d+", "min_samples: 1", fast))
        self.tmp_path, self.s, self.ex = tmp_path, s, ex
        self.worst = 0.0
        self.checks = 0

    async def run(self) -> None:
        s, ex = self.s, self.ex
        markets = await ex.get_markets([T])
        store = AuditStore.open(self.tmp_path / "run.db")
        policy = load_policy(self.tmp_path / "fast.yaml")
        session = Session(ex, markets, policy, store, store.start_run({"t": 1}))
        loop = session.loops[T]
        since: float | None = None
        original = loop.feed  # what the session calls for each event

        def checked(ev: Any) -> Any:
            return check_after(original(ev))

        async def check_after(pending: Any) -> None:
            nonlocal since
            if pending is not None:
                await pending
            self.checks += 1
            live = [o for o in s.world.orders.values() if o.status == "resting"]
            known = {o.order_id for o in loop.resting.values() if o is not None}
            sides = [o.side for o in live]
            unknown = {o.order_id for o in live} - known - set(loop._pending)
            if unknown or max(sides.count(Side.BID), sides.count(Side.ASK), 0) > 1:
                since = since if since is not None else time.monotonic()
                self.worst = max(self.worst, time.monotonic() - since)
            else:
                since = None

        loop.feed = checked  # type: ignore[method-assign]

        async def move_then_stop() -> None:
            # move the touch a cent in and out, one side at a time (never locking the book),
            # so that quotes move
            w, m = s.world, s.world.markets[T]
            for i in range(20):
                await asyncio.sleep(0.15)
                leg, ladder, top = ("yes", m.yes, 4700) if i % 4 < 2 else ("no", m.no, 5100)
                p = top + 100
                if i % 2 == 0:
                    ladder.setdefault(p, []).append(Maker(500))
                    w._delta(m, leg, p, 500, None)
                else:
                    left = sum(mk.size for mk in ladder.pop(p, []) if mk.order is None)
                    if left:
                        w._delta(m, leg, p, -left, None)
            session.stop.set()

        stopper = asyncio.create_task(move_then_stop())
        await session.run(govern=False)
        await stopper
        store.close()


async def test_loop_on_refused_amends_and_lost_create_answers(tmp_path: Path) -> None:
    """The loop quoting the stand-in while every other amend towards the book is refused as
    crossing and creates lose their answers after landing: the refused order keeps its slot
    (no order rests unknown to the loop), the side is quoted again, no side ever has two of
    our orders resting for long, and nothing is left resting after shutdown."""
    async with running_standin(churn_interval=0.002) as s:
        ex = adapter(s)
        await ex.start()
        real_best = ex._opposite_best
        calls = 0

        async def every_other_across(ticker: str, side: Side) -> int | None:
            nonlocal calls
            calls += 1
            if calls % 2:
                return 1 if side is Side.BID else ONE_DOLLAR - 1  # any move is across
            return await real_best(ticker, side)

        ex._opposite_best = every_other_across  # type: ignore[method-assign]
        outcomes: list[tuple[str, str]] = []
        real_amend = ex.amend_order

        async def amend(order_id: str, price: int, count: int) -> Any:
            try:
                o = await real_amend(order_id, price, count)
            except OrderRejected as exc:
                outcomes.append(("refused", str(exc.code)))
                raise
            outcomes.append(("amended", o.order_id))
            return o

        ex.amend_order = amend  # type: ignore[method-assign]
        s.inject("POST", r"^/portfolio/events/orders$", "500_after", times=1)
        s.inject("POST", r"^/portfolio/events/orders$", "drop_after", times=1)
        run = LoopRun(tmp_path, s, ex)
        await run.run()
        refused = [i for i, (what, _) in enumerate(outcomes) if what == "refused"]
        assert refused, "some amend was refused as crossing"
        assert all(code == "post_only_cross" for what, code in outcomes if what == "refused")
        assert any(what == "amended" for what, _ in outcomes[refused[0] :]), "quoted again"
        assert s.faults.http[0].times == 0 and s.faults.http[1].times == 0  # faults fired
        assert s.world.creates == len({o.client_order_id for o in s.world.orders.values()})
        assert run.checks > 0, "the check ran after the loop's events"
        assert run.worst < 1.0, f"an order rested unknown or doubled for {run.worst:.2f}s"
        assert resting(s) == [], "no orphan after shutdown"
        await ex.close()


async def test_loop_adopts_or_cancels_a_create_that_failed_yet_landed(tmp_path: Path) -> None:
    """A create whose failure the adapter could not resolve (answer lost, look-up failed too)
    but which had landed: the venue's order update brings it to the loop, which adopts it or
    cancels it — it never rests unknown, and nothing is left after shutdown."""
    async with running_standin(churn_interval=0.002) as s:
        ex = adapter(s)
        await ex.start()
        real_place = ex.place_order
        landed: list[str] = []

        async def place(request: OrderRequest) -> Any:
            o = await real_place(request)
            if len(landed) < 2:
                landed.append(o.order_id)
                raise KalshiServerError("answer lost, look-up failed", code="create_unconfirmed")
            return o

        ex.place_order = place  # type: ignore[method-assign]
        run = LoopRun(tmp_path, s, ex)
        await run.run()
        assert len(landed) == 2
        assert run.checks > 0, "the check ran after the loop's events"
        assert run.worst < 1.0, f"an order rested unknown or doubled for {run.worst:.2f}s"
        assert resting(s) == [], "no orphan after shutdown"
        await ex.close()


async def test_start_sizes_the_limiter_to_the_account_tier(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_standin(churn_interval=None, tier="premier") as s:
        e = adapter(s)  # no budget given: read from GET /account/limits
        assert e.limiter.write.capacity == 100  # Basic until it knows
        await e.start()
        assert ("GET", "/account/limits") in s.requests
        assert (e.limiter.read.capacity, e.limiter.write.capacity) == (1000, 2000)
        assert e.limiter.write.rate == 1000 and e.limiter.max_batch("write", 10) == 160
        await e.close()
        pinned = adapter(s, budget=Budget.tier("basic"))  # an explicit budget is kept
        await pinned.start()
        assert pinned.limiter.write.capacity == 100
        await pinned.close()
    async with running_standin(churn_interval=None) as s:
        s.inject("GET", r"^/account/limits$", "500", times=10)
        e = adapter(s, retries=1)
        await e.start()
        assert e.limiter.write.capacity == 100  # unreadable: the Basic budget stays
        assert "account limits unreadable" in caplog.text
        await e.close()
