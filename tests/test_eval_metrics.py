"""Run metrics against hand-computed small runs."""

from __future__ import annotations

import math

import pytest

from cfa.core.types import TradingState
from cfa.eval.metrics import FillPoint, Sample, SettlementPoint, Trace, compute_metrics

T0 = 1_000_000.0


def _s(t: float, mid: float | None, inv: float, marked: float, **kw: object) -> Sample:
    base: dict[str, object] = {
        "bid": None,
        "ask": None,
        "touch_bid": None,
        "touch_ask": None,
        "state": TradingState.ACTIVE,
    }
    base.update(kw)
    return Sample(T0 + t, mid, inv, marked, **base)  # type: ignore[arg-type]


def test_round_trip_decomposes_into_spread_inventory_and_fees() -> None:
    # Buy 10 @ 0.40 with the mid at 0.42 (edge 0.02 each), mid drifts to 0.45, sell 10 @ 0.47
    # with the mid at 0.45 (edge 0.02 each). Fees 0.05 + 0.05.
    # spread = 10*0.02 + 10*0.02 = 0.40; inventory = 10 * (0.45 - 0.42) = 0.30; fees 0.10.
    fills = [
        FillPoint(T0 + 10, +1, 0.40, 10, 0.05, 0.42),
        FillPoint(T0 + 70, -1, 0.47, 10, 0.05, 0.45),
    ]
    samples = [
        _s(0, 0.42, 0, 0.0, bid=0.40, ask=0.44, touch_bid=0.41, touch_ask=0.43),
        _s(30, 0.43, 10, 0.25, bid=0.40, ask=0.44, touch_bid=0.42, touch_ask=0.44),
        _s(60, 0.45, 10, 0.45, ask=0.47, touch_bid=0.44, touch_ask=0.46),
        _s(100, 0.45, 0, 0.60, state=TradingState.HALTED),
    ]
    tr = Trace(
        start=T0,
        end=T0 + 125,
        samples=samples,
        fills=fills,
        marked_pnl=0.60,
        realized_pnl=0.60,
        fees=0.10,
        max_abs_inventory=10,
        offered=40,
        events=123,
    )
    m = compute_metrics(tr)
    assert m.spread_pnl == pytest.approx(0.40)
    assert m.fees == pytest.approx(0.10)
    assert m.inventory_pnl == pytest.approx(0.30)
    assert m.spread_pnl + m.inventory_pnl + m.settlement_pnl - m.fees == pytest.approx(0.60)
    assert m.fills == 2 and m.contracts == 20 and m.fill_ratio == pytest.approx(0.5)
    # mark-outs: 5 s: bid fill at 10 -> first sample at >= 15 is t=30 mid 0.43: +0.03;
    # ask fill at 70 -> sample at t=100 mid 0.45: 0.47 - 0.45 = +0.02. Mean 0.025.
    mo = {x.horizon_s: x for x in m.markouts}
    assert mo[5.0].value == pytest.approx(0.025) and mo[5.0].n == 2
    # 60 s: bid at 10 -> t=70? samples at 100 (mid 0.45): +0.05; ask at 70 -> due 130 > end.
    assert mo[60.0].value == pytest.approx(0.05) and mo[60.0].n == 1
    assert mo[300.0].n == 0 and mo[300.0].value is None
    # quoting: both sides in 2 of 4 samples, any side in 3 of 4; halted 1 of 4
    assert m.time_quoted_both == 0.5 and m.time_quoted_any == 0.75 and m.time_halted == 0.25
    assert m.our_spread == pytest.approx(0.04)
    assert m.background_spread == pytest.approx(0.02)
    # at the touch: bid 0.40 vs 0.41 no, ask .44 vs .43 no; bid .40 vs .42 no, ask .44 vs .44
    # yes; ask .47 vs .46 no -> 1 of 5
    assert m.inside_share == pytest.approx(0.2)
    # equity at minute ends: t<=60 -> 0.45, t<=120 -> 0.60
    assert m.equity == [0.45, 0.6]
    steps = [0.45, 0.15]
    mean = sum(steps) / 2
    sd = math.sqrt(sum((x - mean) ** 2 for x in steps))
    assert m.sharpe == pytest.approx(mean / sd, rel=1e-5)
    assert m.max_drawdown == 0.0
    assert m.events == 123


def test_settlement_pnl_is_the_jump_from_the_last_mid() -> None:
    # Buy 5 @ 0.30 at mid 0.31, hold, the market settles YES at $1 with the last mid at 0.35.
    fills = [FillPoint(T0 + 1, +1, 0.30, 5, 0.02, 0.31)]
    samples = [_s(0, 0.31, 0, 0.0), _s(2, 0.33, 5, 0.13), _s(60, 0.35, 5, 0.23)]
    tr = Trace(
        start=T0,
        end=T0 + 180,
        samples=samples,
        fills=fills,
        settlement=SettlementPoint(T0 + 61, 1.0, 5, 0.35),
        marked_pnl=5 * 0.70 - 0.02,
        fees=0.02,
    )
    m = compute_metrics(tr)
    assert m.spread_pnl == pytest.approx(0.05)
    assert m.settlement_pnl == pytest.approx(5 * 0.65)
    assert m.inventory_pnl == pytest.approx(5 * 0.04)
    # after settlement every minute shows the final PnL
    assert m.equity == [pytest.approx(0.23), pytest.approx(3.48), pytest.approx(3.48)]
    # the 300 s mark-out resolves against the settlement value
    mo = {x.horizon_s: x for x in m.markouts}
    assert mo[300.0].value == pytest.approx(0.70)


def test_drawdown_and_empty_run() -> None:
    samples = [_s(0, 0.5, 0, 0.0), _s(1, 0.5, 1, 1.0), _s(2, 0.5, 1, -0.5), _s(3, 0.5, 1, 0.2)]
    m = compute_metrics(Trace(start=T0, end=T0 + 4, samples=samples, marked_pnl=0.2))
    assert m.max_drawdown == pytest.approx(1.5)
    empty = compute_metrics(Trace(start=T0, end=T0 + 4))
    assert empty.fills == 0 and empty.sharpe is None and empty.fill_ratio is None
    assert empty.time_quoted_both == 0.0 and empty.our_spread is None
