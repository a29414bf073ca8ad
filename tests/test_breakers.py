"""The breakers as plain objects: time and numbers in, a trip (or nothing) out."""

from __future__ import annotations

import math

from cfa.core.types import TradingState
from cfa.risk.breakers import (
    CloseTaper,
    DeadFeed,
    Drawdown,
    ErrorRate,
    LossLimit,
    MarketBreakers,
    PortfolioBreakers,
    Trip,
)
from cfa.risk.policy import load_policy
from cfa.risk.portfolio import Portfolio

ACTIVE, REDUCE_ONLY, HALTED = TradingState.ACTIVE, TradingState.REDUCE_ONLY, TradingState.HALTED
POLICY = load_policy("default")  # market loss 40, daily 100, drawdown 60, 10 errors/min, 60 s


def test_loss_limit() -> None:
    b = LossLimit(40.0, "breaker:market_loss", "marked PnL")
    assert b.check(-40.0, ACTIVE) is None
    assert b.check(-40.01, ACTIVE) == Trip(
        HALTED, "breaker:market_loss", "marked PnL -40.01 below -40"
    )
    assert b.check(-50.0, HALTED) is None  # already halted: nothing to do
    assert b.check(-50.0, REDUCE_ONLY) is not None
    assert b.check(math.nan, ACTIVE) is not None  # a broken mark fails closed


def test_drawdown_follows_the_peak() -> None:
    d = Drawdown(60.0)
    assert d.check(-59.0, ACTIVE) is None  # the peak starts at 0
    assert d.check(-61.0, ACTIVE) is not None
    d = Drawdown(60.0)
    for pnl in (10.0, 50.0, 30.0):
        assert d.check(pnl, ACTIVE) is None
    assert d.peak == 50.0
    trip = d.check(-10.5, ACTIVE)
    assert trip is not None and trip.source == "breaker:drawdown"
    assert trip.reason == "portfolio marked PnL -10.50 is 60.50 below its peak 50.00"
    assert d.check(100.0, HALTED) is None and d.peak == 100.0  # the peak moves while halted


def test_portfolio_breakers_check_the_daily_loss_first() -> None:
    p = PortfolioBreakers(POLICY)
    trip = p.check(-101.0, ACTIVE)
    assert trip is not None and trip.source == "breaker:daily_loss"
    assert trip.reason == "portfolio marked PnL -101.00 below -100"
    assert p.check(-101.0, HALTED) is None


def test_close_taper_steps_and_never_loosens() -> None:
    c = CloseTaper(close_ts=1000.0, reduce_only_s=120.0, halt_s=30.0)
    assert c.check(879.9, ACTIVE) is None
    assert c.next_due(500.0) == 880.0
    assert c.check(880.0, ACTIVE) == Trip(REDUCE_ONLY, "close_taper", "120s to close <= 120s")
    assert c.check(900.0, REDUCE_ONLY) is None
    assert c.check(900.0, HALTED) is None  # a halt stays a halt
    assert c.next_due(900.0) == 970.0
    assert c.check(970.0, REDUCE_ONLY) == Trip(HALTED, "close_taper", "30s to close <= 30s")
    assert c.check(980.0, ACTIVE) is not None  # resumed inside the window: tapered again
    assert c.next_due(980.0) == math.inf


def test_error_rate_trips_and_lifts_only_its_own_halt() -> None:
    e = ErrorRate(max_per_min=3, cooldown_s=60.0)
    assert [e.on_error(t, "boom") for t in (0.0, 1.0, 2.0)] == [None, None, None]
    trip = e.on_error(3.0, "boom")
    assert trip == Trip(
        HALTED, "breaker:error_rate", "more than 3 exchange errors in a minute; last: boom"
    )
    e.halted(3.0)
    assert e.lift_due == 63.0
    assert e.lift(62.9, HALTED) is None
    e.on_error(30.0, "again")  # a new error restarts the cooldown
    assert e.lift_due == 90.0
    assert e.lift(89.0, HALTED) is None
    assert e.lift(90.0, HALTED) == Trip(ACTIVE, "breaker:error_rate", "no exchange error for 60s")
    assert e.lift_due == math.inf and e.lift(200.0, HALTED) is None
    # errors older than a minute no longer count
    assert e.recent(200.0) == 0 and e.on_error(200.0, "x") is None
    # someone else changed the state meanwhile: the breaker forgets its halt
    e2 = ErrorRate(max_per_min=0, cooldown_s=10.0)
    assert e2.on_error(0.0, "x") is not None
    e2.halted(0.0)
    assert e2.lift(5.0, ACTIVE) is None
    assert e2.lift(50.0, HALTED) is None  # a later halt is not the breaker's to lift


def test_dead_feed_trips_on_silence_and_lifts_when_events_flow() -> None:
    f = DeadFeed(stale_after_s=15.0)
    assert f.check(100.0, ACTIVE) is None  # no event yet: nothing to call dead
    assert f.on_event(100.0, ACTIVE) is None
    assert f.check(115.0, ACTIVE) is None
    trip = f.check(115.5, ACTIVE)
    assert trip == Trip(HALTED, "feed_watchdog", "no event for 15.5s")
    assert f.check(200.0, HALTED) is None  # trips once
    assert f.on_event(201.0, HALTED) == Trip(ACTIVE, "feed_watchdog", "events flow again")
    assert f.on_event(202.0, HALTED) is None  # only its own trip is lifted
    g = DeadFeed(stale_after_s=1.0)
    g.on_event(0.0, ACTIVE)
    assert g.check(5.0, HALTED) is None  # halted by someone else: not the feed's halt


def test_market_breakers_from_a_policy() -> None:
    m = MarketBreakers(POLICY, close_ts=10_000.0)
    assert m.market_loss.limit == 40.0 and m.error_rate.max_per_min == 10
    assert m.taper.reduce_at == 10_000.0 - 900.0 and m.taper.halt_at == 10_000.0 - 120.0
    assert m.next_due(0.0) == 9100.0


def test_portfolio_sums_pnl_incrementally_and_runs_its_breakers() -> None:
    p = Portfolio()
    assert p.check_loss(ACTIVE) is None  # not armed
    p.arm(POLICY)
    breakers = p.breakers
    p.arm(POLICY)  # the first arm wins: the drawdown's peak is not reset by a second loop
    assert p.breakers is breakers and p.feed is not None
    p.report_pnl("A", 30.0)
    p.report_pnl("B", -20.0)
    p.report_pnl("A", 10.0)
    assert p.pnl == -10.0
    assert p.check_loss(ACTIVE) is None
    p.report_pnl("B", -111.0)
    trip = p.check_loss(ACTIVE)
    assert trip is not None and trip.source == "breaker:daily_loss"
