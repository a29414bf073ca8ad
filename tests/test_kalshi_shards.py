"""Kalshi exchange shards (issue 12): markets on shard 0 and shard 2 at once.

Follows Kalshi's docs (getting_started/exchange_sharding; orders/*-v2; order-groups/*;
portfolio/get-balance): every market carries ``exchange_index``; a write without a ticker or
index lands on shard 0 (a 404 for another shard's order); order groups and collateral are per
shard; batch cancels answer per item. The stand-in is checked against the docs first, then
the adapter trades both shards through it and must leave no orphan order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from kalshi_standin import StandIn, World
from kalshi_standin.fixtures import MARKETS, adapter, running_standin, signer

from cfa.core.events import EventKind, event_structures
from cfa.core.types import CfaValueError, MarketInfo, OrderRequest, OrderStatus, Side
from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.adapter import KalshiExchange
from cfa.exchange.kalshi.errors import KalshiError, KalshiInvalidOrder, KalshiNotFound
from cfa.exchange.kalshi.rest import ORDERS_V2, KalshiRest

T0 = MARKETS[0]
"""A shard-0 market (the default shard)."""
T2 = "KXBTC15M-26DEC311200-T50"
"""A crypto market on shard 2, as KXBTC15M is since 24 Aug 2026."""
ONE = 100


def shard_world(*, fund2: Decimal | None = Decimal(500)) -> World:
    w = World(seed=7)
    w.add_market(T0)
    w.add_market(T2, exchange_index=2)
    if fund2 is not None:
        w.fund(2, fund2)
    return w


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with running_standin(world=shard_world(), churn_interval=0.005) as s:
        yield s


@pytest.fixture
async def ex(standin: StandIn) -> AsyncIterator[KalshiExchange]:
    e = adapter(standin)
    await e.start()
    yield e
    await e.close()


@pytest.fixture
async def rest(standin: StandIn) -> AsyncIterator[KalshiRest]:
    r = KalshiRest(standin.base_url, signer(), timeout=1.0, retries=0)
    yield r
    await r.aclose()


def req(ticker: str, coid: str, side: Side = Side.BID, price: int = 4400, count: int = ONE):
    return OrderRequest(ticker, coid, side, price, count, post_only=True)


def order_body(ticker: str, coid: str, **kw: Any) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "client_order_id": coid,
        "side": "bid",
        "count": "1.00",
        "price": "0.4400",
        "time_in_force": "good_till_canceled",
        "self_trade_prevention_type": "taker_at_cross",
        "post_only": True,
        **kw,
    }


def resting(w: World) -> list[str]:
    return sorted(o.order_id for o in w.orders.values() if o.status == "resting")


# -- market metadata -------------------------------------------------------------------------


def test_parse_market_reads_exchange_index() -> None:
    w = shard_world()
    assert frames.parse_market(w.market_json(w.markets[T2])).exchange_index == 2
    assert frames.parse_market(w.market_json(w.markets[T0])).exchange_index == 0
    legacy = {k: v for k, v in w.market_json(w.markets[T0]).items() if k != "exchange_index"}
    assert frames.parse_market(legacy).exchange_index == 0
    assert frames.parse_market({**legacy, "exchange_index": None}).exchange_index == 0
    for bad in (-1, "2", True, 1.5):
        with pytest.raises(CfaValueError, match="exchange_index"):
            frames.parse_market({**legacy, "exchange_index": bad})


def test_market_info_defaults_to_shard_zero() -> None:
    info = MarketInfo("T", "E", "S", "title", (), close_ts=0.0)
    assert info.exchange_index == 0


# -- the stand-in follows Kalshi's routing rules -----------------------------------------------


async def test_standin_cancel_without_ticker_goes_to_shard_zero(
    standin: StandIn, rest: KalshiRest
) -> None:
    made = await rest.create_order(order_body(T2, "raw-1"))
    oid = made["order_id"]
    path = f"{ORDERS_V2}/{oid}"
    with pytest.raises(KalshiNotFound):  # no ticker, no index: shard 0, which has no such order
        await rest.request("DELETE", path, kind="cancel")
    with pytest.raises(KalshiNotFound):  # an explicit index wins over the ticker
        await rest.request(
            "DELETE", path, params={"market_ticker": T2, "exchange_index": 0}, kind="cancel"
        )
    assert resting(standin.world) == [oid]
    got = await rest.cancel_order(oid, T2)  # auto-routed by ticker
    assert got["order_id"] == oid and resting(standin.world) == []
    made = await rest.create_order(order_body(T2, "raw-2"))
    await rest.cancel_order(made["order_id"], T2, 2)  # explicit shard
    assert resting(standin.world) == []


async def test_standin_order_groups_are_shard_local(standin: StandIn, rest: KalshiRest) -> None:
    g0 = await rest.create_order_group(10)
    g2 = await rest.create_order_group(10, 2)
    with pytest.raises(KalshiNotFound):
        await rest.create_order(order_body(T2, "grp-1", order_group_id=g0))
    made = await rest.create_order(order_body(T2, "grp-2", order_group_id=g2))
    with pytest.raises(KalshiNotFound):  # delete defaults to shard 0
        await rest.delete_order_group(g2)
    await rest.delete_order_group(g2, 2)
    assert standin.world.orders[made["order_id"]].status == "canceled"
    assert set(standin.world.groups) == {g0}


async def test_standin_balance_breakdown(standin: StandIn, rest: KalshiRest) -> None:
    total = await rest.get_balance()
    assert Decimal(total["balance_dollars"]) == Decimal(10_500)
    assert total["balance_breakdown"] == [
        {"exchange_index": 0, "balance": "10000"},
        {"exchange_index": 2, "balance": "500"},
    ]
    assert Decimal((await rest.get_balance(2))["balance_dollars"]) == Decimal(500)


# -- the adapter trades two shards at once ------------------------------------------------------


async def test_markets_carry_their_shard(ex: KalshiExchange) -> None:
    infos = {m.ticker: m.exchange_index for m in await ex.get_markets([T0, T2])}
    assert infos == {T0: 0, T2: 2}
    assert (await ex.get_market(T2)).exchange_index == 2


@pytest.mark.parametrize("groups", [True, False], ids=["groups", "no-groups"])
async def test_two_shard_session_cancels_everything(standin: StandIn, groups: bool) -> None:
    w = standin.world
    ex = adapter(standin, order_group_limit=1000 if groups else None)
    await ex.start()
    a = await ex.place_order(req(T0, "cfa-s0-1"))
    b = await ex.place_order(req(T2, "cfa-s2-1"))
    c = await ex.place_order(req(T2, "cfa-s2-2", price=4300))
    assert {w.orders[o.order_id].ticker for o in (a, b, c)} == {T0, T2}

    if groups:  # one order group per shard, each order in its own shard's group
        assert set(ex.order_groups) == {0, 2}
        for o in (a, b, c):
            g = w.groups[w.orders[o.order_id].group or ""]
            assert g.exchange_index == w.markets[o.ticker].exchange_index
    else:
        assert w.groups == {}

    amended = await ex.amend_order(b.order_id, 4200, 2 * ONE)
    assert amended.price == 4200 and w.orders[b.order_id].price == 4200

    done = await ex.cancel_order(b.order_id)
    assert done.status is OrderStatus.CANCELED and w.orders[b.order_id].status == "canceled"

    gone = await ex.cancel_all()
    assert {o.order_id for o in gone} == {a.order_id, c.order_id}
    assert resting(w) == []  # no orphan on either shard
    assert ex.cancel_errors == []
    await ex.close()


async def test_batch_cancel_items_name_ticker_and_shard(
    standin: StandIn, ex: KalshiExchange
) -> None:
    seen: list[dict[str, Any]] = []
    orig = standin.world.batch_cancel

    def spy(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.extend(items)
        return orig(items)

    standin.world.batch_cancel = spy  # type: ignore[method-assign]
    await ex.place_order(req(T0, "cfa-b-0"))
    await ex.place_order(req(T2, "cfa-b-2"))
    await ex.cancel_all()
    assert sorted((i["market_ticker"], i["exchange_index"]) for i in seen) == sorted(
        [(T0, 0), (T2, 2)]
    )
    assert resting(standin.world) == []


async def test_kill_deletes_every_shards_group(standin: StandIn, ex: KalshiExchange) -> None:
    await ex.place_order(req(T0, "cfa-k-0"))
    await ex.place_order(req(T2, "cfa-k-2"))
    assert len(standin.world.groups) == 2
    await ex.kill()
    assert standin.world.groups == {} and ex.order_groups == {}
    assert resting(standin.world) == []


@pytest.mark.parametrize("groups", [True, False], ids=["groups", "no-groups"])
async def test_restart_cancels_leftovers_on_every_shard(standin: StandIn, groups: bool) -> None:
    first = adapter(standin, order_group_limit=1000 if groups else None)
    await first.start()
    await first.place_order(req(T0, "cfa-old-0"))
    await first.place_order(req(T2, "cfa-old-2"))
    await first.close()  # crashed: orders left behind on both shards

    second = adapter(standin)
    await second.start()
    assert {o.client_order_id for o in second.reconciliation.stale_canceled} == {
        "cfa-old-0",
        "cfa-old-2",
    }
    assert resting(standin.world) == []
    assert second.reconciliation.balances == {0: Decimal(10_000), 2: Decimal(500)}
    await second.close()


async def test_batch_cancel_item_errors_are_surfaced(standin: StandIn, ex: KalshiExchange) -> None:
    o = await ex.place_order(req(T2, "cfa-e-1"))
    standin.world.exchange_active = False  # every cancel item now answers exchange_paused
    try:
        with pytest.raises(KalshiError, match="exchange_paused") as info:
            await ex.cancel_all(rounds=2)
        assert info.value.code == "cancel_all_incomplete"
        assert ex.cancel_errors and all(f.order_id == o.order_id for f in ex.cancel_errors)
        assert ex.cancel_errors[0].exchange_index == 2
    finally:
        standin.world.exchange_active = True
    await ex.cancel_all()
    assert resting(standin.world) == []


async def test_shard_without_collateral_is_refused_before_sending() -> None:
    async with running_standin(world=shard_world(fund2=None), churn_interval=None) as s:
        ex = adapter(s)
        await ex.start()
        assert await ex.get_shard_balances() == {0: Decimal(10_000)}
        with pytest.raises(KalshiInvalidOrder, match="shard 2") as info:
            await ex.place_order(req(T2, "cfa-c-1"))
        assert info.value.code == "no_shard_collateral"
        assert s.world.creates == 0 and 2 not in ex.order_groups
        s.world.fund(2, Decimal(50))  # a transfer later fixes it: the check runs again
        placed = await ex.place_order(req(T2, "cfa-c-2"))
        assert placed.status is OrderStatus.RESTING
        assert await ex.get_shard_balances() == {0: Decimal(10_000), 2: Decimal(50)}
        assert await ex.get_balance() == Decimal(10_050)
        await ex.cancel_all()
        await ex.close()


async def test_short_shard_collateral_error_names_the_shard() -> None:
    async with running_standin(world=shard_world(fund2=Decimal("0.50")), churn_interval=None) as s:
        ex = adapter(s)
        await ex.start()
        # $10,000 on shard 0 does not pay for a shard-2 order: Kalshi checks per engine
        with pytest.raises(KalshiInvalidOrder, match="exchange shard 2") as info:
            await ex.place_order(req(T2, "cfa-short-1", count=2 * ONE))
        assert info.value.status == 400 and "balance" in str(info.value.kalshi_code)
        assert (await ex.place_order(req(T2, "cfa-short-2"))).status is OrderStatus.RESTING
        await ex.cancel_all()
        assert resting(s.world) == []
        await ex.close()


async def test_rest_amend_and_decrease_route_to_the_orders_shard(
    standin: StandIn, rest: KalshiRest
) -> None:
    oid = (await rest.create_order(order_body(T2, "ad-1", count="3.00")))["order_id"]
    amend = {"ticker": T2, "side": "bid", "price": "0.4300", "count": "3.00"}
    with pytest.raises(KalshiNotFound):  # sent to shard 0 explicitly
        await rest.amend_order(oid, {**amend, "exchange_index": 0})
    await rest.amend_order(oid, {**amend, "exchange_index": 2})
    assert standin.world.orders[oid].price == 4300
    with pytest.raises(KalshiNotFound):  # no ticker, no index: shard 0
        await rest.request("POST", f"{ORDERS_V2}/{oid}/decrease", json={"reduce_to": "1"})
    got = await rest.decrease_order(oid, reduce_to="1.00", market_ticker=T2, exchange_index=2)
    assert got["remaining_count"] == "1.00"
    with pytest.raises(ValueError, match="market_ticker"):
        await rest.cancel_order(oid, "")
    await rest.cancel_order(oid, T2, 2)
    assert resting(standin.world) == []


async def test_batch_create_routes_each_item_and_reports_item_errors(
    standin: StandIn, rest: KalshiRest
) -> None:
    out = await rest.batch_create(
        [
            order_body(T0, "bc-0", exchange_index=0),
            order_body(T2, "bc-2", exchange_index=2),
            order_body(T2, "bc-wrong", exchange_index=0),  # a shard-2 market sent to shard 0
        ]
    )
    assert [o.get("client_order_id") for o in out] == ["bc-0", "bc-2", "bc-wrong"]
    assert "error" not in out[0] and "error" not in out[1]
    assert out[2]["error"]["code"] == "market_not_found"
    with pytest.raises(ValueError, match="ticker"):
        await rest.batch_create([{"client_order_id": "no-ticker"}])


def test_recorded_market_metadata_keeps_its_shard() -> None:
    # Replays read the run's recorded markets: a shard-2 market must come back on shard 2.
    import asyncio
    import dataclasses

    from cfa.audit.records import market_from_dict, market_to_dict
    from cfa.exchange.sim import DEFAULT_START_TS, SimExchange

    ex = SimExchange.from_scenarios(["calm"], seed=1, start_ts=DEFAULT_START_TS, duration=60)
    (m,) = asyncio.run(ex.get_markets())
    m2 = dataclasses.replace(m, exchange_index=2)
    assert market_from_dict(market_to_dict(m2)) == m2
    old = market_to_dict(m)
    del old["exchange_index"]  # written before shards were recorded
    assert market_from_dict(old).exchange_index == 0


async def test_markets_of_a_mutually_exclusive_event_say_so() -> None:
    """Kalshi keeps ``mutually_exclusive`` on the event (``GET /events/{event_ticker}``): the
    adapter reads it there, once per event, so an exclusive set is one structure."""
    w = World()
    for leg in ("B40", "B42", "T44"):
        w.add_market(f"KXHIGHNY-26DEC31-{leg}")
    w.add_market("KXSTANDIN-26DEC31-T50")
    w.exclusive_events.add("KXHIGHNY-26DEC31")
    async with running_standin(world=w) as s:
        ex = adapter(s)
        infos = await ex.get_markets()
        await ex.close()
    flags = {m.ticker: m.mutually_exclusive for m in infos}
    assert flags == {
        "KXHIGHNY-26DEC31-B40": True,
        "KXHIGHNY-26DEC31-B42": True,
        "KXHIGHNY-26DEC31-T44": True,
        "KXSTANDIN-26DEC31-T50": False,
    }
    structures = event_structures(infos)
    assert structures["KXHIGHNY-26DEC31"].kind is EventKind.EXCLUSIVE
    assert structures["KXSTANDIN-26DEC31"].kind is EventKind.INDEPENDENT
