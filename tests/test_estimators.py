"""Online estimators recover known parameters from synthetic series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfa.core.estimators import FillRates, LogitVolatility, Markouts, TradingIntensity
from cfa.core.types import Side


def test_logit_volatility_recovers_sigma() -> None:
    rng = np.random.default_rng(1)
    sigma = 0.004  # logit units per sqrt(second)
    est = LogitVolatility(interval=1.0, half_life=600.0, min_samples=30)
    x, t = 0.3, 0.0
    for _ in range(3000):
        # several events per second: only the last in each interval counts
        for _ in range(4):
            t += 0.25
            x += sigma * math.sqrt(0.25) * rng.standard_normal()
            est.update(t, 1.0 / (1.0 + math.exp(-x)))
    assert est.warm
    assert est.sigma == pytest.approx(sigma, rel=0.15)


def test_logit_volatility_warmup_and_bad_mids() -> None:
    est = LogitVolatility(min_samples=3)
    for i, mid in enumerate([0.5, float("nan"), 0.51, 1.0, 0.52, 0.5]):
        est.update(float(i) * 2.0, mid)
    assert est.samples == 3 and est.warm
    assert math.isfinite(est.sigma)


def test_fill_rates_per_quoted_minute() -> None:
    fr = FillRates(half_life=1e9)
    fr.mark(0.0, True, False)
    for t in (10.0, 20.0, 30.0):
        fr.on_fill(t, Side.BID)
    fr.mark(60.0, True, False)
    assert fr.per_minute(Side.BID) == pytest.approx(3.0)
    assert fr.per_minute(Side.ASK) is None  # never quoted
    assert fr.last_fill_t[Side.BID] == 30.0


def test_markouts_sign_and_horizons() -> None:
    m = Markouts(horizons=(5.0, 60.0))
    m.on_fill(0.0, Side.BID, 0.50)
    m.on_fill(0.0, Side.ASK, 0.55)
    m.on_mid(4.0, 0.60)
    assert m.average(5.0) is None
    m.on_mid(5.0, 0.52)
    # bid: +0.02, ask: -(0.52 - 0.55) = +0.03 -> EW average between them
    assert m.count[5.0] == 2 and 0.02 <= (m.average(5.0) or 0) <= 0.03
    m.on_mid(60.0, 0.60)
    assert m.count[60.0] == 2 and m.average(60.0) is not None


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
