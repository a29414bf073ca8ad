"""Settlement: the market resolves at close, pays $1 per winning contract, and cash is right."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from cfa.core.types import (
    Order,
    OrderRequest,
    OrderStatus,
    Outcome,
    Settlement,
    Side,
    notional,
)
from cfa.exchange.sim import SimExchange, load_scenario

ONE = 100


def short_lived(p0: float, seed: int, close_offset: float = 120.0) -> SimExchange:
    """close-approach, closing after two minutes, latent pinned near ``p0``."""
    sc = load_scenario("close-approach")
    calm = dataclasses.replace(sc.latent.calm, sigma=1e-6)
    sc = dataclasses.replace(
        sc,
        market=dataclasses.replace(sc.market, close_offset=close_offset),
        latent=dataclasses.replace(
            sc.latent, p0=p0, calm=calm, volatile=calm, jump_rate=0.0, close_vol_horizon=0.0
        ),
    )
    return SimExchange([sc], seed=seed)


async def buy_and_hold(ex: SimExchange, side: Side, count: int) -> tuple[Decimal, Decimal]:
    """Take ``count`` on ``side`` now; return (notional paid or received, fees)."""
    t = ex.tickers[0]
    m = ex.market(t)
    price = m.best_ask_price() if side is Side.BID else m.best_bid_price()
    assert price is not None
    o = await ex.place_order(OrderRequest(t, f"hold-{side}", side, price, count, post_only=False))
    assert o.status is OrderStatus.EXECUTED
    fills = await ex.get_fills(t)
    return sum((notional(f.price, f.count) for f in fills), Decimal(0)), sum(
        (f.fee for f in fills), Decimal(0)
    )


@pytest.mark.parametrize(("p0", "result"), [(0.995, Outcome.YES), (0.005, Outcome.NO)])
async def test_long_yes_settles_at_one_or_zero(p0: float, result: Outcome) -> None:
    ex = short_lived(p0, seed=6)
    t = ex.tickers[0]
    cash0 = await ex.get_balance()
    paid, fees = await buy_and_hold(ex, Side.BID, 10 * ONE)
    # an order far from the book, on the side away from the latent price: it never fills
    far = (Side.BID, ex.market(t).prices[0]) if p0 > 0.5 else (Side.ASK, ex.market(t).prices[-1])
    resting = await ex.place_order(OrderRequest(t, "left-over", *far, ONE))
    events = [e async for e in ex.stream([t])]
    settlement = events[-1]
    assert settlement == Settlement(t, result, ex.market(t).info.close_ts)
    assert ex.result(t) is result
    # the resting order was cancelled at the close, before the settlement
    cancels = [e for e in events if isinstance(e, Order) and e.order_id == resting.order_id]
    assert cancels[-1].status is OrderStatus.CANCELED
    payout = Decimal(10) if result is Outcome.YES else Decimal(0)
    assert await ex.get_balance() == cash0 - paid - fees + payout
    (pos,) = await ex.get_positions()
    assert pos.position == 0
    assert pos.realized_pnl == payout - paid
    assert pos.fees_paid == fees


@pytest.mark.parametrize(("p0", "result"), [(0.995, Outcome.YES), (0.005, Outcome.NO)])
async def test_short_yes_settles_with_no_collateral(p0: float, result: Outcome) -> None:
    ex = short_lived(p0, seed=6)
    t = ex.tickers[0]
    cash0 = await ex.get_balance()
    received, fees = await buy_and_hold(ex, Side.ASK, 10 * ONE)
    # selling YES = buying NO at 1 - p: the collateral 10 - received leaves the balance
    assert await ex.get_balance() == cash0 - (Decimal(10) - received) - fees
    (pos,) = await ex.get_positions()
    assert pos.position == -10 * ONE
    [e async for e in ex.stream([t])]
    assert ex.result(t) is result
    no_payout = Decimal(10) if result is Outcome.NO else Decimal(0)
    assert await ex.get_balance() == cash0 - (Decimal(10) - received) - fees + no_payout
    # equivalently: PnL = proceeds of the YES sale - YES value at settlement - fees
    yes_value = Decimal(10) - no_payout
    assert await ex.get_balance() - cash0 == received - yes_value - fees
    (pos,) = await ex.get_positions()
    assert pos.position == 0 and pos.realized_pnl == received - yes_value


async def test_outcome_follows_latent_probability() -> None:
    """Over many seeds, markets pinned at p resolve YES about p of the time."""
    yes = 0
    runs = 60
    for seed in range(runs):
        ex = short_lived(0.7, seed=seed, close_offset=1.0)
        ex.run_until(ex.clock.now() + 2)
        yes += ex.result(ex.tickers[0]) is Outcome.YES
    assert 0.5 < yes / runs < 0.87


async def test_close_approach_settles_within_the_hour() -> None:
    ex = SimExchange.from_scenarios(["close-approach"], seed=3, duration=3600)
    t = ex.tickers[0]
    ex.run_until(ex.clock.now() + 3600)
    info = await ex.get_market(t)
    assert info.close_ts - 3600 < ex.market(t).settle_ts <= ex.end_ts
    assert ex.result(t) in (Outcome.YES, Outcome.NO)
    assert info.status == "finalized"
