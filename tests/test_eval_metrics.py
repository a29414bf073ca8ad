"""Run metrics against hand-computed small runs."""

from __future__ import annotations

import math

import pytest

from cfa.core.events import EventKind, EventStructure
from cfa.core.types import TradingState
from cfa.eval.metrics import (
    FillPoint,
    Sample,
    SettlementPoint,
    Trace,
    compute_event_metrics,
    compute_metrics,
    worst_case_losses,
)

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


# -- an event's markets together ------------------------------------------------------------------


def _ladder() -> EventStructure:
    return EventStructure("EV", EventKind.LADDER, ("K97", "K98", "K99"), strikes=(97, 98, 99))


def _trace(samples: list[Sample], marked: float, **kw: object) -> Trace:
    return Trace(start=T0, end=T0 + 120, samples=samples, marked_pnl=marked, **kw)  # type: ignore[arg-type]


def test_worst_case_loss_of_one_market_is_its_worse_side() -> None:
    # long 10 at mid 0.30: NO loses 3.00; short 4 at mid 0.75: YES loses 4 * 0.25 = 1.00
    long = _trace([_s(0, 0.30, 10, 0.0)], 0.0)
    short = _trace([_s(0, 0.75, -4, 0.0)], 0.0)
    assert worst_case_losses({"a": long}) == [pytest.approx(3.0)]
    assert worst_case_losses({"a": short}) == [pytest.approx(1.0)]
    m = compute_metrics(long)
    assert m.worst_case_loss_peak == pytest.approx(3.0) and m.markets == 1


def test_ladder_worst_case_nets_a_strike_against_its_neighbour() -> None:
    # YES 10 on "above 98" (mid 0.5) and NO 10 on "above 97" (mid 0.6): of the four intervals
    # the underlying can end in, only "between 97 and 98" loses on both:
    # q97*(m97 - 1) + q98*(m98 - 0) = -10*(0.6 - 1) + 10*0.5 = 9; below 97 or above 98: -1.
    trs = {
        "K97": _trace([_s(0, 0.6, -10, 0.0)], 0.0),
        "K98": _trace([_s(0, 0.5, 10, 0.0)], 0.0),
        "K99": _trace([_s(0, 0.3, 0, 0.0)], 0.0),
    }
    assert worst_case_losses(trs, _ladder()) == [pytest.approx(9.0)]
    # Longs on three neighbouring strikes are one bet: all NO loses every mid.
    trs = {
        "K97": _trace([_s(0, 0.6, 10, 0.0)], 0.0),
        "K98": _trace([_s(0, 0.5, 10, 0.0)], 0.0),
        "K99": _trace([_s(0, 0.3, 10, 0.0)], 0.0),
    }
    assert worst_case_losses(trs, _ladder()) == [pytest.approx(14.0)]
    assert worst_case_losses(trs) == [pytest.approx(14.0)]  # independent: the sum of sides


def test_one_of_every_exclusive_outcome_has_no_worst_case_loss_beyond_the_marks() -> None:
    s = EventStructure("EX", EventKind.EXCLUSIVE, ("A", "B"))
    trs = {"A": _trace([_s(0, 0.4, 5, 0.0)], 0.0), "B": _trace([_s(0, 0.6, 5, 0.0)], 0.0)}
    # A wins: 5*(0.4-1) + 5*0.6 = 0; B wins: 5*0.4 + 5*(0.6-1) = 0
    assert worst_case_losses(trs, s) == [pytest.approx(0.0)]


def test_event_metrics_sum_money_and_take_the_event_worst_case() -> None:
    a = _trace(
        [_s(0, 0.6, -10, 0.0), _s(60, 0.6, -10, -1.0)],
        -1.0,
        fills=[FillPoint(T0 + 1, -1, 0.61, 10, 0.02, 0.6)],
        fees=0.02,
        offered=20,
        events=50,
        max_abs_inventory=10,
    )
    b = _trace(
        [_s(0, 0.5, 10, 0.0), _s(60, 0.5, 10, 2.0)],
        2.0,
        fills=[FillPoint(T0 + 2, +1, 0.49, 10, 0.03, 0.5)],
        fees=0.03,
        offered=30,
        events=70,
        max_abs_inventory=12,
    )
    m = compute_event_metrics({"K97": a, "K98": b}, _ladder())
    assert m.markets == 2
    assert m.marked_pnl == pytest.approx(1.0) and m.fees == pytest.approx(0.05)
    assert m.fills == 2 and m.contracts == 20 and m.offered_contracts == 50
    assert m.events == 120 and m.max_abs_inventory == 12
    assert m.spread_pnl == pytest.approx(0.1 + 0.1)
    assert m.worst_case_loss_peak == pytest.approx(9.0)
    assert m.equity == [pytest.approx(1.0), pytest.approx(1.0)]
