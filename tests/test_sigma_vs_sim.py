"""The σ estimator against the simulator's true σ, in every scenario.

The simulator knows the volatility it draws the latent logit with: the regime's σ (times the
close-approach boost) plus news jumps at ``jump_rate`` with size σ ``jump_sigma``, whose
variance rate ``jump_rate·jump_sigma²`` is part of the risk a maker carries. The loop's
estimator, fed the book's mid once a second as the loop sees it, must land near it on every
grid; a one-second EWMA of squared returns (what cfa used before) is inflated by the bounce of
the mid between grid levels and fails this on the cent grids (and runs low on the deci-cent
grid, where the book smooths the truth over a few seconds).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cfa.core.book import OrderBook
from cfa.core.estimators import DecayedMean, LogitVolatility
from cfa.core.types import PRICE_SCALE, BookDelta, BookSnapshot
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange, known_scenarios, load_scenario
from cfa.risk.policy import load_policy

MINUTES = 40
SEEDS = (11, 12, 13, 14)


async def _ratios(name: str, seed: int) -> tuple[float, float]:
    """Median of estimate/truth after ten minutes: (two-scale estimator, one-second EWMA)."""
    w = load_policy("default").warmup
    est = LogitVolatility(
        interval=w.sigma_interval_s, horizon=w.sigma_horizon_s, half_life=w.sigma_half_life_s
    )
    one_second = DecayedMean(w.sigma_half_life_s)
    truth = DecayedMean(w.sigma_half_life_s)
    sc = load_scenario(name)
    jumps = sc.latent.jump_rate * sc.latent.jump_sigma**2
    ex = SimExchange([sc], seed=seed, start_ts=DEFAULT_START_TS, duration=MINUTES * 60.0)
    (ticker,) = ex.tickers
    market = ex.market(ticker)
    lat = market.latent
    book = OrderBook(ticker)
    nxt = DEFAULT_START_TS
    last: tuple[float, float] | None = None
    ours: list[float] = []
    naive: list[float] = []
    async for ev in ex.stream([ticker]):
        if type(ev) is BookSnapshot:
            book.apply_snapshot(ev)
        elif type(ev) is BookDelta:
            book.apply_delta(ev)
        else:
            continue
        if ev.ts < nxt:
            continue
        nxt = ev.ts + 1.0
        b, a = book.best_bid(), book.best_ask()
        if b is None or a is None or b >= a:
            continue
        mid = (b + a) / (2 * PRICE_SCALE)
        est.update(ev.ts, mid)
        x = math.log(mid / (1 - mid))
        if last is not None:
            one_second.add(ev.ts, (x - last[1]) ** 2 / (ev.ts - last[0]))
        last = (ev.ts, x)
        tau = market.info.close_ts - ev.ts
        boost = 1.0
        if sc.latent.close_vol_horizon > 0:
            boost = min(
                sc.latent.close_vol_cap, math.sqrt(max(sc.latent.close_vol_horizon / tau, 1))
            )
        truth.add(ev.ts, (lat.sigma * boost) ** 2 + jumps)
        if ev.ts - DEFAULT_START_TS >= 600 and est.warm:
            true_sigma = math.sqrt(truth.mean or 0.0)
            ours.append(est.sigma / true_sigma)
            naive.append(math.sqrt(one_second.mean or 0.0) / true_sigma)
    return float(np.median(ours)), float(np.median(naive))


SINGLE_MARKET = [n for n in known_scenarios() if load_scenario(n).event is None]
"""The scenarios of one market (an event scenario's legs share a latent process whose
per-leg σ is not one regime's number)."""


@pytest.mark.parametrize("name", SINGLE_MARKET)
async def test_sigma_estimate_tracks_the_true_sigma(name: str) -> None:
    results = [await _ratios(name, seed) for seed in SEEDS]
    ours = [r[0] for r in results]
    # typical runs land near the truth; a single 40-minute window can miss the rare jumps
    # that the true variance rate includes, so single seeds get a wider band
    assert 0.5 <= float(np.median(ours)) <= 1.6, (name, ours)
    assert all(0.25 <= r <= 2.5 for r in ours), (name, ours)
    if name in ("calm", "thin"):
        # the one-second estimate this replaced runs several times too high on the cent grid
        assert all(r[1] > 2.5 for r in results), (name, results)
    if name == "regime-shift":
        # ... and half too low on the deci-cent grid, where the book trails the truth
        assert all(r[1] < 0.5 for r in results), (name, results)


HISTORY_MINUTES = 60
HISTORY_SEEDS = (11, 12, 13)


async def _seed_vs_live(name: str, seed: int) -> tuple[float, float]:
    """(seed / live, seed / truth) at the end of an hour of the simulator.

    The seed is :meth:`LogitVolatility.seed` on the hour's 1-minute candle closes (the book's
    mid as of each minute's end, what Kalshi's candlesticks carry); the live estimate is the
    same estimator fed the mid once a second as the loop sees it over the same hour, with a
    half-life as long as the hour (the seed weighs the whole history equally, so that is the
    like-for-like live figure); the truth is the hour's mean true variance rate.
    """
    w = load_policy("default").warmup
    span = HISTORY_MINUTES * 60.0
    live = LogitVolatility(interval=w.sigma_interval_s, horizon=w.sigma_horizon_s, half_life=span)
    truth = DecayedMean(span)
    sc = load_scenario(name)
    jumps = sc.latent.jump_rate * sc.latent.jump_sigma**2
    ex = SimExchange([sc], seed=seed, start_ts=DEFAULT_START_TS, duration=span)
    (ticker,) = ex.tickers
    market = ex.market(ticker)
    book = OrderBook(ticker)
    nxt = DEFAULT_START_TS
    minute_end = DEFAULT_START_TS + 60.0
    mid: float | None = None
    closes: list[tuple[float, float]] = []
    async for ev in ex.stream([ticker]):
        if type(ev) is BookSnapshot:
            book.apply_snapshot(ev)
        elif type(ev) is BookDelta:
            book.apply_delta(ev)
        else:
            continue
        while ev.ts >= minute_end:  # the candle that ended before this event closed on `mid`
            if mid is not None:
                closes.append((minute_end, mid))
            minute_end += 60.0
        b, a = book.best_bid(), book.best_ask()
        mid = None if b is None or a is None or b >= a else (b + a) / (2 * PRICE_SCALE)
        if mid is None or ev.ts < nxt:
            continue
        nxt = ev.ts + 1.0
        live.update(ev.ts, mid)
        tau = market.info.close_ts - ev.ts
        boost = 1.0
        if sc.latent.close_vol_horizon > 0:
            boost = min(
                sc.latent.close_vol_cap, math.sqrt(max(sc.latent.close_vol_horizon / tau, 1))
            )
        truth.add(ev.ts, (market.latent.sigma * boost) ** 2 + jumps)
    seeded = LogitVolatility(
        interval=w.sigma_interval_s,
        horizon=w.sigma_horizon_s,
        half_life=w.sigma_half_life_s,
        min_samples=w.min_samples,
    )
    n = seeded.seed(closes)
    assert n >= w.min_samples and seeded.warm, (name, seed, n)
    return seeded.sigma / live.sigma, seeded.sigma / math.sqrt(truth.mean or 0.0)


@pytest.mark.parametrize("name", SINGLE_MARKET)
async def test_sigma_seeded_from_one_minute_candles_matches_the_live_estimate(name: str) -> None:
    """A warm start's σ (from an hour of 1-minute candles) lands where the live estimator
    lands on the same hour of the same process, and near the truth within the band the live
    estimator itself is held to above."""
    results = [await _seed_vs_live(name, seed) for seed in HISTORY_SEEDS]
    vs_live = [r[0] for r in results]
    vs_truth = [r[1] for r in results]
    print(
        name,
        "seed/live",
        [round(r, 2) for r in vs_live],
        "seed/truth",
        [round(r, 2) for r in vs_truth],
    )
    assert 0.5 <= float(np.median(vs_live)) <= 1.6, (name, vs_live)
    assert all(0.4 <= r <= 2.0 for r in vs_live), (name, vs_live)
    assert 0.5 <= float(np.median(vs_truth)) <= 1.6, (name, vs_truth)
