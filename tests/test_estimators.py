"""Online estimators recover known parameters from synthetic series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfa.core.estimators import (
    FillRates,
    HoldingTime,
    LogitVolatility,
    Markouts,
    TradingIntensity,
)
from cfa.core.types import Side


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_logit_volatility_recovers_sigma() -> None:
    rng = np.random.default_rng(1)
    sigma = 0.004  # logit units per sqrt(second)
    est = LogitVolatility(interval=5.0, horizon=60.0, half_life=1e6, min_samples=30)
    x, t = 0.3, 0.0
    for _ in range(12000):
        # several events per second: only the first at least `interval` after a sample counts
        for _ in range(4):
            t += 0.25
            x += sigma * math.sqrt(0.25) * rng.standard_normal()
            est.update(t, _expit(x))
    assert est.warm
    assert est.sigma == pytest.approx(sigma, rel=0.15)


def test_logit_volatility_cancels_bid_ask_bounce() -> None:
    """Grid noise (the observed mid bouncing around the true one) inflates a one-scale
    estimate many times over; the two-scale estimate cancels it."""
    rng = np.random.default_rng(2)
    sigma = 0.002
    two_scale = LogitVolatility(interval=5.0, horizon=60.0, half_life=1e6)
    x, t = -0.3, 0.0
    observed = []
    for _ in range(40000):
        t += 1.0
        x += sigma * rng.standard_normal()
        noisy = x + 0.02 * rng.standard_normal()  # about half a cent of bounce at p = 0.43
        two_scale.update(t, _expit(noisy))
        observed.append(noisy)
    assert two_scale.sigma == pytest.approx(sigma, rel=0.2)
    one_second = math.sqrt(float(np.mean(np.diff(observed) ** 2)))  # squared 1 s returns
    assert one_second > 5 * sigma


def test_logit_volatility_first_return_does_not_dominate() -> None:
    # one large move in the first minute, then quiet: the estimate forgets it at the rate of
    # its half-life instead of keeping it as its starting point
    est = LogitVolatility(interval=5.0, horizon=60.0, half_life=300.0, min_samples=1)
    rng = np.random.default_rng(3)
    x, t = 0.0, 0.0
    for i in range(2000):
        t += 1.0
        x += (0.2 if i == 30 else 0.0) + 0.001 * rng.standard_normal()
        est.update(t, _expit(x))
    assert est.sigma < 0.002


def test_logit_volatility_prior_and_bad_mids() -> None:
    est = LogitVolatility(interval=1.0, horizon=3.0, min_samples=2, prior=0.01, prior_weight=5)
    assert est.sigma == pytest.approx(0.01)  # no data yet: the prior
    for i, mid in enumerate([0.5, float("nan"), 0.51, 1.0, 0.52, 0.5, 0.51, 0.5, 0.5]):
        est.update(float(i) * 2.0, mid)
    assert est.samples >= 2 and est.warm
    assert math.isfinite(est.sigma)
    with pytest.raises(ValueError):
        LogitVolatility(interval=5.0, horizon=5.0)


def test_fill_rates_per_quoted_minute_and_ageing() -> None:
    fr = FillRates(half_life=1e9, min_quoted=10.0)
    fr.mark(0.0, True, False)
    for t in (10.0, 20.0, 30.0):
        fr.on_fill(t, Side.BID)
    fr.mark(60.0, True, False)
    assert fr.per_minute(Side.BID) == pytest.approx(3.0)
    assert fr.per_minute(Side.ASK) is None  # never quoted
    assert fr.last_fill_t[Side.BID] == 30.0
    # with a real half-life, a side that stops being quoted ages out instead of freezing
    fr = FillRates(half_life=60.0, min_quoted=30.0)
    fr.mark(0.0, True, True)
    fr.on_fill(50.0, Side.BID)
    fr.mark(120.0, False, False)
    assert fr.per_minute(Side.BID) is not None
    fr.mark(600.0, False, False)
    assert fr.per_minute(Side.BID) is None
    assert fr.fills(Side.BID) < 0.01


def test_markouts_sign_horizons_and_ageing() -> None:
    m = Markouts(horizons=(5.0, 60.0), half_life=600.0, min_n=1.0)
    m.on_fill(0.0, Side.BID, 0.50, 1.0)
    m.on_fill(0.0, Side.ASK, 0.55, 3.0)
    m.on_mid(4.0, 0.60)
    assert m.average(5.0) is None
    m.on_mid(5.0, 0.52)
    # bid: +0.02 (1 contract), ask: -(0.52 - 0.55) = +0.03 (3 contracts): size-weighted 0.0275
    assert m.count[5.0] == 2 and m.average(5.0) == pytest.approx(0.0275)
    m.on_mid(60.0, 0.60)
    assert m.count[60.0] == 2 and m.average(60.0) is not None
    # an hour later the evidence has decayed below min_n: no stale number is quoted
    strict = Markouts(horizons=(5.0,), half_life=600.0, min_n=2.0)
    strict.on_fill(0.0, Side.BID, 0.5)
    strict.on_fill(1.0, Side.BID, 0.5)
    strict.on_mid(10.0, 0.49)
    assert strict.average(5.0, 10.0) == pytest.approx(-0.01)
    assert strict.n(5.0, 3610.0) < 2.0 and strict.average(5.0, 3610.0) is None


def test_holding_time_is_the_decay_time_of_the_position() -> None:
    # an AR(1) position with per-step persistence 0.95 on a 5 s grid decays in
    # -5/ln(0.95) = 97.5 s, however fast contracts turn over inside it
    rng = np.random.default_rng(4)
    h = HoldingTime(interval=5.0, half_life=1e9, min_samples=10)
    q, t = 0.0, 0.0
    for _ in range(20000):
        h.update(t, q)
        t += 5.0
        q = 0.95 * q + rng.normal(0.0, 5.0)
    assert h.seconds(t) == pytest.approx(-5.0 / math.log(0.95), rel=0.1)
    assert HoldingTime().seconds(0.0) is None
    flat = HoldingTime(interval=1.0, min_samples=1)
    for i in range(100):
        flat.update(float(i), 0.0)
    assert flat.seconds(100.0) is None  # never held a position


def test_trading_intensity_recovers_k() -> None:
    rng = np.random.default_rng(2)
    k_true, rate = 150.0, 2.0
    ti = TradingIntensity(window=2000.0, step=0.002, levels=15, min_trades=100)
    t = 0.0
    for _ in range(3000):
        t += rng.exponential(1 / rate)
        ti.on_trade(t, 0.5 + rng.exponential(1 / k_true), 0.5)
    fit = ti.fit(t)
    assert fit is not None
    A, k = fit
    assert k == pytest.approx(k_true, rel=0.2)
    assert pytest.approx(rate, rel=0.3) == A
    assert TradingIntensity().fit(0.0) is None
