"""The random processes behind the simulator: regimes, jumps, close-time volatility, takers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from cfa.core.grid import PriceGrid
from cfa.core.types import PRICE_SCALE, Side, Trade
from cfa.exchange.sim import SimExchange, load_scenario
from cfa.exchange.sim.latent import CALM, VOLATILE, LatentProcess
from cfa.exchange.sim.liquidity import INFORMED, TAKER_BUY, TAKER_SELL, FlowModel
from cfa.exchange.sim.market import grid_prices
from cfa.exchange.sim.scenarios import LatentParams, RegimeParams


def latent(**kw: float) -> LatentProcess:
    params = LatentParams(
        p0=0.5,
        calm=RegimeParams(sigma=0.0, mean_duration=100.0),
        volatile=RegimeParams(sigma=0.0, mean_duration=50.0),
    )
    params = dataclasses.replace(params, **kw)  # type: ignore[arg-type]
    return LatentProcess(params, np.random.default_rng(1), 0.0, 1e9)


def test_regimes_switch_as_a_markov_chain() -> None:
    lp = latent()
    in_volatile = 0
    switches = 0
    last = lp.regime
    steps = 80_000
    for k in range(1, steps + 1):
        lp.to(float(k))
        in_volatile += lp.regime == VOLATILE
        switches += lp.regime != last
        last = lp.regime
    assert in_volatile / steps == pytest.approx(50 / 150, abs=0.05)
    assert switches == pytest.approx(80_000 / 75, rel=0.15)


def test_jumps_move_the_latent_at_their_rate() -> None:
    lp = latent(jump_rate=0.01, jump_sigma=0.5)
    xs = []
    for k in range(1, 100_001):
        lp.to(k * 0.1)
        xs.append(lp.x)
    moves = np.abs(np.diff(xs))
    jumps = moves[moves > 0]
    assert len(jumps) == pytest.approx(100, rel=0.3)  # 10,000 s at 0.01 per second
    assert float(np.std(np.diff(xs)[moves > 0])) == pytest.approx(0.5, rel=0.3)


def test_volatility_grows_into_the_close() -> None:
    lp = latent()
    lp = LatentProcess(
        dataclasses.replace(
            lp.params,
            calm=RegimeParams(0.01, 1e9),
            close_vol_horizon=1000.0,
            close_vol_cap=5.0,
        ),
        np.random.default_rng(2),
        0.0,
        2000.0,
    )
    boost = lp._boost(np.array([2000.0, 1000.0, 250.0, 10.0]))
    assert boost.tolist() == pytest.approx([1.0, 1.0, 2.0, 5.0])
    # and the path really is more variable near the close
    t = np.linspace(1.0, 1999.0, 20_000)
    x = lp.path(t, np.random.default_rng(3).standard_normal(len(t)))
    early = np.std(np.diff(x[:5000]))
    late = np.std(np.diff(x[-500:]))
    assert late > 3 * early


def flow(name: str) -> tuple[FlowModel, LatentProcess, dict[str, list[int] | list[float]]]:
    sc = load_scenario(name)
    prices = grid_prices(PriceGrid(sc.market.price_ranges))
    rng = np.random.default_rng(5)
    lp = LatentProcess(sc.latent, rng, 0.0, 1e9)
    fm = FlowModel(sc.book, sc.takers, prices, rng)
    tape, _ = fm.draw(lp, 0.0, 1e9, 200_000)
    return fm, lp, {"t": tape.t, "kind": tape.kind, "aux": tape.aux}


@pytest.mark.parametrize("name", ["calm", "informed-flow"])
def test_takers_reach_distance_delta_at_rate_a_exp_minus_k_delta(name: str) -> None:
    tape = flow(name)[2]
    sc = load_scenario(name)
    kind = np.array(tape["kind"])
    aux = np.array(tape["aux"], dtype=float) / PRICE_SCALE  # depth in dollars
    t = np.array(tape["t"])
    # one regime throughout is not guaranteed: compare against the realised mean activity
    takers = (kind == TAKER_BUY) | (kind == TAKER_SELL)
    informed = kind == INFORMED
    share = informed.sum() / (informed.sum() + takers.sum())
    assert share == pytest.approx(sc.takers.informed_share, abs=0.02)
    buys = kind == TAKER_BUY
    sells = kind == TAKER_SELL
    assert buys.sum() == pytest.approx(sells.sum(), rel=0.05)
    span = t[-1] - t[0]
    a_hat = buys.sum() / span  # buy takers per second
    k = sc.takers.k
    for delta in (0.0, 0.005, 0.01, 0.02):
        rate = (buys & (aux >= delta)).sum() / span
        assert rate == pytest.approx(a_hat * math.exp(-k * delta), rel=0.1), delta


async def test_informed_takers_are_adverse_to_makers() -> None:
    """Takers trade at better prices against the latent when a share of them is informed."""

    async def taker_edge(informed_share: float) -> float:
        sc = load_scenario("informed-flow")
        sc = dataclasses.replace(
            sc, takers=dataclasses.replace(sc.takers, informed_share=informed_share)
        )
        ex = SimExchange([sc], seed=8, duration=900)
        t = ex.tickers[0]
        edges = []
        async for ev in ex.stream([t]):
            if isinstance(ev, Trade):
                p = ex.latent_probability(t) * PRICE_SCALE
                sign = 1 if ev.taker_side is Side.BID else -1
                edges.append(sign * (p - ev.price))
        return float(np.mean(edges))

    # takers pay the spread on average, but informed ones gain on the lagging book:
    # a third of them informed lifts the takers' average edge by more than $0.0005
    uninformed = await taker_edge(0.0)
    assert uninformed < 0
    assert await taker_edge(0.35) > uninformed + 5


async def test_regime_shift_visits_both_regimes_within_an_hour() -> None:
    ex = SimExchange.from_scenarios(["regime-shift"], seed=1, duration=3600)
    m = ex.market(ex.tickers[0])
    seen = set()
    for k in range(1, 361):
        ex.run_until(ex.clock.now() + 10)
        seen.add(m.latent.regime)
    assert seen == {CALM, VOLATILE}
