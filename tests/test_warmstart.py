"""Warm start from history: the seeding functions, the Kalshi fetch on the stand-in, the loop.

The core parts (:meth:`LogitVolatility.seed`, :func:`fit_intensity`, :func:`trade_depths`) are
checked on synthetic series with known parameters; the fetch and :func:`seed_loop` on the
stand-in over real HTTP; the recorded 1-minute candles of real Kalshi markets parse and seed.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kalshi_standin.fixtures import MARKETS, adapter, make_world, running_standin

from cfa.audit import AuditStore
from cfa.core.estimators import LogitVolatility, TradingIntensity, fit_intensity, trade_depths
from cfa.core.types import CfaValueError
from cfa.exchange.kalshi.history import fetch_history, parse_candle
from cfa.risk.policy import load_policy
from cfa.runtime.loop import LoopState
from cfa.runtime.session import Session
from cfa.runtime.warmstart import seed_loop, warm_start

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "kalshi"


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _walk(sigma: float, seconds: int, every: int, seed: int, noise: float = 0.0):
    """(t, mid) every ``every`` s of a logit random walk with ``sigma`` per √s, around 0.45;
    ``noise``: uniform dollars added to each observed mid (a grid's bounce)."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(0.0, sigma, seconds)) - 0.2
    pts = []
    for t in range(0, seconds, every):
        pts.append((1_000_000.0 + t, _expit(float(x[t])) + rng.uniform(-noise, noise)))
    return pts


# -- σ seed --------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    sigma=st.floats(0.001, 0.01),
    seed=st.integers(0, 10_000),
)
def test_seed_recovers_sigma_from_one_minute_points(sigma: float, seed: int) -> None:
    est = LogitVolatility(interval=5.0, horizon=120.0, half_life=600.0, min_samples=12)
    n = est.seed(_walk(sigma, 4 * 3600, 60, seed))
    assert n >= 200 and est.warm and est.samples == 0
    # four hours weighted equally: the seed's spread is about a tenth of σ
    assert 0.65 * sigma <= est.sigma <= 1.5 * sigma


def test_seed_cancels_the_bounce_of_the_grid() -> None:
    """Half a cent of bounce on a 1-minute mid: the two-scale seed stays near the truth (a
    one-scale 1-minute variance would run well above it), over many independent histories."""
    sigma = 0.002
    ratios, naive = [], []
    for seed in range(30):
        pts = _walk(sigma, 7200, 60, seed, noise=0.005)
        est = LogitVolatility(interval=5.0, horizon=120.0, half_life=600.0)
        est.seed(pts)
        ratios.append(est.sigma / sigma)
        x = [math.log(m / (1 - m)) for _, m in pts]
        naive.append(math.sqrt(float(np.mean(np.diff(x) ** 2)) / 60.0) / sigma)
    assert 0.7 <= float(np.median(ratios)) <= 1.3, ratios
    assert float(np.median(naive)) > 1.4, naive


def test_seed_contract() -> None:
    est = LogitVolatility(interval=5.0, horizon=120.0, min_samples=12)
    assert est.seed([]) == 0 and not est.warm and est.sigma == 0.0
    assert est.seed([(0.0, 0.5), (60.0, 0.0), (120.0, 1.2)]) == 0  # invalid mids are skipped
    with pytest.raises(ValueError, match="non-decreasing"):
        est.seed([(120.0, 0.5), (60.0, 0.5), (180.0, 0.5)])
    est.seed(_walk(0.004, 7200, 60, 1))
    seeded = est.sigma
    assert est.warm and seeded > 0
    assert est.seed([]) == 0 and not est.warm, "a second call replaces the seed"
    est.update(1.0, 0.5)
    with pytest.raises(ValueError, match="before the first live update"):
        est.seed(_walk(0.004, 7200, 60, 1))


def test_live_evidence_takes_over_from_the_seed() -> None:
    """Seeded at σ=0.008, then a live σ of 0.002: an hour of live samples every second leaves
    the estimate near the live σ (the seed's weight decays with the half-life)."""
    est = LogitVolatility(interval=5.0, horizon=120.0, half_life=600.0)
    hist = _walk(0.008, 7200, 60, 3)
    est.seed(hist)
    before = est.sigma
    assert before > 0.005
    rng = np.random.default_rng(4)
    x = math.log(hist[-1][1] / (1 - hist[-1][1]))
    t0 = hist[-1][0]
    for i in range(1, 3600):
        x += rng.normal(0.0, 0.002)
        est.update(t0 + i, _expit(x))
    assert est.samples > 600
    assert 0.0014 <= est.sigma <= 0.003, est.sigma


# -- intensity from history ------------------------------------------------------------------


def test_fit_intensity_recovers_k_and_matches_the_live_fit() -> None:
    rng = np.random.default_rng(7)
    k_true, span = 80.0, 3600.0
    depths = rng.exponential(1 / k_true, 2000)
    fit = fit_intensity(list(depths), span, 0.01)
    assert fit is not None
    A, k = fit
    assert 0.7 * k_true <= k <= 1.3 * k_true
    assert 0.3 <= A <= 1.0  # 2000 trades/hour reach depth 0: 0.56/s
    live = TradingIntensity(window=span, step=0.01)
    for i, d in enumerate(depths):
        live.on_trade(i * span / len(depths), 0.5 + d, 0.5)
    assert live.fit(span - 1) == pytest.approx(fit)
    assert fit_intensity(list(depths[:10]), span, 0.01) is None
    with pytest.raises(ValueError, match="positive"):
        fit_intensity(list(depths), 0.0, 0.01)


@settings(max_examples=50, deadline=None)
@given(
    mids=st.lists(st.floats(0.05, 0.95), min_size=1, max_size=20),
    trades=st.lists(st.tuples(st.floats(-100.0, 1300.0), st.floats(0.01, 0.99)), max_size=40),
)
def test_trade_depths_use_the_last_mid_at_or_before_the_trade(
    mids: list[float], trades: list[tuple[float, float]]
) -> None:
    points = [(60.0 * i, m) for i, m in enumerate(mids)]
    trades = sorted(trades)
    got = trade_depths(trades, points)
    want = []
    for t, p in trades:
        before = [m for ts, m in points if ts <= t]
        if before:
            want.append(abs(p - before[-1]))
    assert got == pytest.approx(want)


# -- the Kalshi fetch on the stand-in ---------------------------------------------------------


def test_parse_candle_names_what_is_wrong() -> None:
    ok = {
        "end_period_ts": 1_800_000_060,
        "yes_bid": {"close_dollars": "0.4100"},
        "yes_ask": {"close_dollars": "1.0000"},
        "price": {},
        "volume_fp": "3.50",
        "open_interest_fp": "0.00",
    }
    c = parse_candle(ok, 60.0)
    assert (c.bid, c.ask, c.volume, c.mid) == (4100, None, 350, None)  # $1 ask: empty side
    with pytest.raises(CfaValueError, match="end_period_ts"):
        parse_candle({**ok, "end_period_ts": "soon"}, 60.0)
    with pytest.raises(CfaValueError, match=r"yes_bid\.close_dollars"):
        parse_candle({**ok, "yes_bid": {"close_dollars": "0.41234"}}, 60.0)


async def test_fetch_history_is_bounded_and_follows_the_docs() -> None:
    w = make_world()
    w.add_history(MARKETS[0], minutes=120, trades_per_min=6.0)
    async with running_standin(world=w, churn_interval=None) as s:
        ex = adapter(s)
        a, b = await ex.get_markets(list(MARKETS))
        s.requests.clear()
        h = await ex.get_history(a, 7200)
        assert h.requests == 2 and len(s.requests) == 2
        assert s.requests[0] == (
            "GET",
            f"/series/{a.series_ticker}/markets/{a.ticker}/candlesticks",
        )
        # the window moves with the clock: a minute boundary between the two may drop one
        expected = [c for c in w.candles[a.ticker] if h.start_ts <= c["end_period_ts"] <= h.end_ts]
        assert len(h.candles) == len(h.mids()) == len(expected) >= 119
        assert h.candles[-1].end_ts == w.candles[a.ticker][-1]["end_period_ts"]
        in_window = [
            t
            for t in w.trades
            if t["ticker"] == a.ticker and h.start_ts * 1000 <= t["ts_ms"] <= h.end_ts * 1000
        ]
        assert h.trades_complete and len(h.trades) == len(in_window) > 600
        assert all(x.ts <= y.ts for x, y in zip(h.trades, h.trades[1:], strict=False))
        # the cap: pages of 100, stopped at 250 with pages left
        items, complete, pages = await ex.rest.get_trade_history(
            a.ticker, min_ts=int(h.start_ts), max_ts=int(h.end_ts), max_items=250, page_size=100
        )
        assert len(items) == 250 and not complete and pages == 3
        assert items[0]["created_time"] >= items[-1]["created_time"], "newest first"
        short = await fetch_history(ex.rest, a, h.end_ts, window_s=600, max_trades=50)
        assert (
            len(short.candles) in (9, 10) and len(short.trades) == 50 and not short.trades_complete
        )
        assert short.trades_since() == short.trades[0].ts > short.start_ts
        empty = await ex.get_history(b, 7200)
        assert empty.candles == () and empty.trades == () and empty.mids() == []
        with pytest.raises(ValueError, match="window_s"):
            await ex.get_history(a, 0)
        await ex.close()


async def test_seed_loop_on_the_standin_history(tmp_path: Path) -> None:
    """σ and k seeded from the stand-in's history: σ near the walk's, k near the depth law's,
    both audited; a market without history and one whose fetch fails stay cold and say why."""
    w = make_world()
    w.add_history(MARKETS[0], sigma=0.004, k=60.0, trades_per_min=10.0)
    async with running_standin(world=w, churn_interval=None) as s:
        ex = adapter(s, retries=0)
        infos = await ex.get_markets(list(MARKETS))
        store = AuditStore.open(tmp_path / "w.db")
        run_id = store.start_run({"exchange": "kalshi-standin"})
        session = Session(ex, infos, load_policy("default"), store, run_id)
        warm, cold = session.loops[MARKETS[0]], session.loops[MARKETS[1]]
        await warm_start(ex, session.loops.values(), ex.clock.now())
        assert warm.vol.warm and warm.warm_start is not None and not cold.vol.warm
        assert 0.002 <= warm.vol.sigma <= 0.008, warm.vol.sigma
        assert 30.0 <= session.params.get(MARKETS[0]).k <= 120.0
        s.inject("GET", "/candlesticks", "500")
        fresh = Session(ex, infos[:1], load_policy("default"), store, run_id)
        await warm_start(ex, fresh.loops.values(), ex.clock.now())
        assert not fresh.loops[MARKETS[0]].vol.warm
        store.close()
        await ex.close()
    with sqlite3.connect(tmp_path / "w.db") as c:
        rows = c.execute(
            "select market, code, detail from risk_events where kind = 'warm_start' order by seq"
        ).fetchall()
        changes = c.execute(
            "select market, param, source, reason from param_changes order by seq"
        ).fetchall()
    by = [(m, code, json.loads(d)) for m, code, d in rows]
    assert len(by) == 3
    seeded = next(d for m, c, d in by if m == MARKETS[0] and c == "seeded")
    assert seeded["used"] and seeded["candles"] >= 119 and seeded["requests"] == 2
    assert seeded["sigma"]["long_returns"] >= 100 and seeded["k"]["used"]
    nohist = next(d for m, c, d in by if m == MARKETS[1])
    assert not nohist["used"] and "no candle" in nohist["sigma"]["why"]
    failed = [d for m, c, d in by if m == MARKETS[0] and c == "cold"]
    assert len(failed) == 1 and failed[0]["error"].startswith("KalshiServerError"), failed
    assert [(m, p, src) for m, p, src, _ in changes] == [(MARKETS[0], "k", "warmup")]
    assert "REST trades" in changes[0][3]


async def test_too_little_history_leaves_the_cold_path(tmp_path: Path) -> None:
    w = make_world()
    w.add_history(MARKETS[0], minutes=8, trades_per_min=1.0)
    async with running_standin(world=w, churn_interval=None) as s:
        ex = adapter(s)
        infos = await ex.get_markets([MARKETS[0]])
        store = AuditStore.open(tmp_path / "t.db")
        session = Session(ex, infos, load_policy("default"), store, store.start_run({}))
        loop = session.loops[MARKETS[0]]
        h = await ex.get_history(infos[0], 7200)
        assert not seed_loop(loop, h)
        assert not loop.vol.warm and loop.vol.seeded_samples == 0 and loop.warm_start is None
        assert loop.state is LoopState.WARMING
        store.close()
        await ex.close()


@pytest.mark.data
def test_real_kalshi_one_minute_candles_seed_sigma() -> None:
    path = DATA / "kalshi_cockpit_fixtures" / "candlesticks_mlb.json"
    if not path.is_file():
        pytest.skip(f"recorded Kalshi data not found at {path}")
    markets = json.loads(path.read_text())["markets"]
    for ticker, m in markets.items():
        candles = [parse_candle(c, 60.0) for c in m["candlesticks"]]
        mids = [(c.end_ts, c.mid) for c in candles if c.mid is not None]
        assert len(mids) >= 10, ticker
        est = LogitVolatility(interval=5.0, horizon=120.0, half_life=600.0, min_samples=12)
        n = est.seed(mids)
        # 16 minutes of a pre-game baseball market: a dozen long returns, a small σ
        assert n >= 12 and est.warm, (ticker, n)
        assert 0.0 <= est.sigma < 0.02, (ticker, est.sigma)


async def test_a_fetch_that_hangs_starts_cold_in_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cfa.runtime.warmstart as ws

    monkeypatch.setattr(ws, "FETCH_TIMEOUT_S", 0.3)
    w = make_world()
    w.add_history(MARKETS[0])
    async with running_standin(world=w, churn_interval=None) as s:
        ex = adapter(s, retries=0, timeout=5.0)
        infos = await ex.get_markets([MARKETS[0]])
        store = AuditStore.open(tmp_path / "h.db")
        session = Session(ex, infos, load_policy("default"), store, store.start_run({}))
        s.inject("GET", "/candlesticks", "timeout", delay=1.0)
        t0 = asyncio.get_running_loop().time()
        await warm_start(ex, session.loops.values(), ex.clock.now())
        assert asyncio.get_running_loop().time() - t0 < 0.9
        assert not session.loops[MARKETS[0]].vol.warm
        store.close()
        await ex.close()
    with sqlite3.connect(tmp_path / "h.db") as c:
        (code, detail) = c.execute(
            "select code, detail from risk_events where kind = 'warm_start'"
        ).fetchone()
    assert code == "cold" and "timed out after 0.3s" in json.loads(detail)["error"]
