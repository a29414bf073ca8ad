"""Market signals (cfa.core.signals): hand-computed cases and property tests."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.signals import VPIN, OrderFlowImbalance, RefillDetector, TradeMomentum
from cfa.core.types import QTY_SCALE, Side

NAN, INF = float("nan"), float("inf")

# -- reference implementations (brute force, straight from the formulas) -----------------------


def ofi_terms(touches: list[tuple[float, int | None, int, int | None, int]]) -> list[float]:
    """e_n for each touch after the first; empty sides as ∓inf with size 0."""
    out: list[float] = []
    prev = None
    for _, b, qb, a, qa in touches:
        pb = -math.inf if b is None or qb == 0 else b
        pa = math.inf if a is None or qa == 0 else a
        qb = 0 if b is None else qb
        qa = 0 if a is None else qa
        if prev is not None:
            pb0, qb0, pa0, qa0 = prev
            e = (qb if pb >= pb0 else 0) - (qb0 if pb <= pb0 else 0)
            e += -(qa if pa <= pa0 else 0) + (qa0 if pa >= pa0 else 0)
            out.append(e)
        prev = (pb, qb, pa, qa)
    return out


def vpin_reference(trades: list[tuple[int, bool]], bucket: int, n: int) -> float | None:
    """Expand trades into unit volumes, cut into buckets, average the last n imbalances."""
    units = [1 if buy else -1 for count, buy in trades for _ in range(count)]
    full = len(units) // bucket
    if full < n:
        return None
    imbs = [abs(sum(units[i * bucket : (i + 1) * bucket])) for i in range(full)]
    return sum(imbs[-n:]) / (n * bucket)


# -- OFI ------------------------------------------------------------------------------------------


HAND_TOUCHES: list[tuple[float, int | None, int, int | None, int]] = [
    (1.0, 5000, 1000, 5100, 800),  # first touch: no term
    (2.0, 5000, 1500, 5100, 800),  # bid +500 at the same price: +500
    (3.0, 5010, 200, 5100, 600),  # bid up (+200 new queue), ask −200 same price: +200 +200
    (4.0, 5000, 700, 5090, 300),  # bid down (−200 old queue), ask down (−300 new queue)
    (5.0, None, 0, 5090, 300),  # bid empties: −700
    (6.0, 4990, 400, None, 0),  # bid reappears (+400), ask empties (+300 old queue)
]


def test_ofi_hand_sequence() -> None:
    ofi = OrderFlowImbalance(window_s=60.0)
    for tch in HAND_TOUCHES:
        ofi.update(*tch)
    # +500 + 400 − 500 − 700 + 700 = +400 count units = 4 contracts
    assert ofi.value(6.0) == pytest.approx(4.0)
    assert ofi.samples == 5
    assert ofi_terms(HAND_TOUCHES) == [500, 400, -500, -700, 700]
    # mean depth over the 5 terms: (2300 + 800 + 1000 + 300 + 400) / 5 / 2 count units
    assert ofi.mean_depth(6.0) == pytest.approx(4800 / 10 / QTY_SCALE)
    assert ofi.normalized(6.0) == pytest.approx(4.0 / 4.8)
    # the window drops terms at or before now − 60 s: at t = 63.5, only t = 4, 5, 6 remain
    assert ofi.value(63.5) == pytest.approx((-500 - 700 + 700) / QTY_SCALE)
    assert ofi.samples == 3


def test_ofi_none_until_two_touches_then_quiet_is_zero() -> None:
    ofi = OrderFlowImbalance(window_s=10.0)
    assert ofi.value(1.0) is None and ofi.normalized(1.0) is None
    ofi.update(1.0, 5000, 100, 5100, 100)
    assert ofi.value(1.0) is None
    ofi.update(2.0, 5000, 300, 5100, 100)
    assert ofi.value(2.0) == pytest.approx(2.0)
    assert ofi.value(100.0) == 0.0 and ofi.samples == 0
    assert ofi.mean_depth(100.0) == pytest.approx(2.0)  # the standing touch: (3 + 1) / 2
    assert ofi.normalized(100.0) == 0.0


def test_ofi_size_changes_at_same_price() -> None:
    bid_up = OrderFlowImbalance()
    bid_up.update(1.0, 5000, 1000, 5100, 1000)
    bid_up.update(2.0, 5000, 1600, 5100, 1000)
    ask_up = OrderFlowImbalance()
    ask_up.update(1.0, 5000, 1000, 5100, 1000)
    ask_up.update(2.0, 5000, 1000, 5100, 1600)
    v_bid, v_ask = bid_up.value(2.0), ask_up.value(2.0)
    assert v_bid is not None and v_ask is not None
    assert v_bid == pytest.approx(6.0) and v_ask == pytest.approx(-6.0)
    n_bid, n_ask = bid_up.normalized(2.0), ask_up.normalized(2.0)
    assert n_bid is not None and n_ask is not None and n_bid > 0 > n_ask


def test_ofi_zero_depth_normalized_is_none() -> None:
    ofi = OrderFlowImbalance()
    ofi.update(1.0, None, 0, None, 0)
    ofi.update(2.0, None, 0, None, 0)
    assert ofi.value(2.0) == 0.0
    assert ofi.normalized(2.0) is None


def test_ofi_rejects_bad_inputs_without_changing_state() -> None:
    ofi = OrderFlowImbalance()
    ofi.update(1.0, 5000, 100, 5100, 100)
    ofi.update(2.0, 5000, 300, 5100, 100)
    before = (ofi.value(2.0), ofi.samples, ofi.mean_depth(2.0))
    for bad in (
        (NAN, 5000, 900, 5100, 100),
        (INF, 5000, 900, 5100, 100),
        (0.0, 5000, 900, 5100, 100),
        (-1.0, 5000, 900, 5100, 100),
        (1.5, 5000, 900, 5100, 100),  # earlier than the last update
        (3.0, NAN, 900, 5100, 100),
        (3.0, 5000, NAN, 5100, 100),
        (3.0, 5000, 900, INF, 100),
        (3.0, 5000, 900, 5100, -5),
        (3.0, -10, 900, 5100, 100),
    ):
        ofi.update(*bad)
    assert (ofi.value(2.0), ofi.samples, ofi.mean_depth(2.0)) == before
    assert ofi.value(NAN) is None and ofi.normalized(INF) is None
    ofi.update(3.0, 5000, 300, 5100, 50)
    assert ofi.value(3.0) == pytest.approx(2.5)  # continues from the t = 2 touch


price_st = st.one_of(st.none(), st.integers(4900, 5100))
size_st = st.integers(0, 5000)
touch_st = st.tuples(
    st.floats(0.0, 20.0, allow_nan=False), price_st, size_st, price_st, size_st
).map(lambda x: (x[0], x[1], x[2], x[3], x[4]))


Touch = tuple[float, int | None, int, int | None, int]


def _touch_stream(raw: list[Touch]) -> list[Touch]:
    t = 1.0
    out = []
    for dt, b, qb, a, qa in raw:
        t += dt
        out.append((t, b, qb, a, qa))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(touch_st, min_size=2, max_size=60), st.floats(5.0, 200.0))
def test_ofi_matches_reference_and_is_bounded(raw: list[Touch], window: float) -> None:
    touches = _touch_stream(raw)
    ofi = OrderFlowImbalance(window_s=window)
    for tch in touches:
        ofi.update(*tch)
    now = touches[-1][0]
    terms = ofi_terms(touches)
    times = [tch[0] for tch in touches[1:]]
    expected = sum(e for e, t in zip(terms, times, strict=True) if t > now - window)
    assert ofi.value(now) == pytest.approx(expected / QTY_SCALE)
    assert ofi.samples == sum(1 for t in times if t > now - window)
    n = ofi.normalized(now)
    assert n is None or -1.0 <= n <= 1.0
    # scale-free: every size ×7 leaves the normalised value unchanged
    scaled = OrderFlowImbalance(window_s=window)
    for t, b, qb, a, qa in touches:
        scaled.update(t, b, 7 * qb, a, 7 * qa)
    n7 = scaled.normalized(now)
    assert (n is None and n7 is None) or (n is not None and n7 == pytest.approx(n))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(touch_st, min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 30), st.sampled_from([NAN, INF, -INF, -1.0, 0.0]))),
)
def test_ofi_bad_inputs_are_invisible(raw: list[Touch], bad: list[tuple[int, float]]) -> None:
    touches = _touch_stream(raw)
    clean, dirty = OrderFlowImbalance(30.0), OrderFlowImbalance(30.0)
    bad_at = {i: v for i, v in bad}
    for i, tch in enumerate(touches):
        if i in bad_at:
            v = bad_at[i]
            dirty.update(v, 5000, 100, 5100, 100)
            if v != 0.0:  # a zero size or price is valid; NaN, ±inf and negatives are not
                dirty.update(tch[0], 5000, v, 5100, 100)  # type: ignore[arg-type]
                dirty.update(tch[0], 5000, 100, v, 100)  # type: ignore[arg-type]
        clean.update(*tch)
        dirty.update(*tch)
    now = touches[-1][0]
    assert dirty.value(now) == clean.value(now) and dirty.samples == clean.samples
    assert dirty.normalized(now) == clean.normalized(now)


# -- trade momentum -------------------------------------------------------------------------------


def test_momentum_sign_follows_flow() -> None:
    m = TradeMomentum(half_life_s=30.0)
    assert m.value(1.0) is None
    for i in range(5):
        m.on_trade(1.0 + i, 1000, Side.BID)
    assert m.value(6.0) == pytest.approx(1.0)
    s = TradeMomentum(half_life_s=30.0)
    for i in range(5):
        s.on_trade(1.0 + i, 1000, Side.ASK)
    assert s.value(6.0) == pytest.approx(-1.0)
    m.on_trade(7.0, 2000, Side.ASK)
    v = m.value(7.0)
    assert v is not None and 0.0 < v < 1.0


def test_momentum_decays_by_half_in_one_half_life() -> None:
    h = 30.0
    m = TradeMomentum(half_life_s=h)
    m.on_trade(10.0, 1000, Side.BID)  # 10 contracts bought
    assert m.signed_volume(10.0) == pytest.approx(10.0)
    assert m.signed_volume(10.0 + h) == pytest.approx(5.0)
    assert m.volume(10.0 + 2 * h) == pytest.approx(2.5)
    # an equal sell one half-life later: (10/2 − 10) / (10/2 + 10) = −1/3
    m.on_trade(10.0 + h, 1000, Side.ASK)
    assert m.value(10.0 + h) == pytest.approx(-1.0 / 3.0)
    assert m.window_s == h and m.samples == 2


def test_momentum_goes_stale() -> None:
    m = TradeMomentum(half_life_s=10.0)
    m.on_trade(5.0, 100, Side.BID)
    assert m.value(44.0) == pytest.approx(1.0) and m.samples == 1
    assert m.value(45.0) is None and m.samples == 0  # 4 half-lives: no trade informs it


def test_momentum_rejects_bad_inputs() -> None:
    m = TradeMomentum()
    m.on_trade(5.0, 300, Side.BID)
    m.on_trade(6.0, 100, Side.ASK)
    before = (m.value(6.0), m.signed_volume(6.0), m.volume(6.0), m.samples)
    for t, c in ((NAN, 100), (INF, 100), (0.0, 100), (-3.0, 100), (5.5, 100), (7.0, NAN)):
        m.on_trade(t, c, Side.ASK)  # type: ignore[arg-type]
    m.on_trade(7.0, 0, Side.ASK)
    m.on_trade(7.0, -100, Side.ASK)
    m.on_trade(7.0, INF, Side.ASK)  # type: ignore[arg-type]
    assert (m.value(6.0), m.signed_volume(6.0), m.volume(6.0), m.samples) == before
    assert m.value(NAN) is None


trade_st = st.tuples(
    st.floats(0.0, 30.0, allow_nan=False), st.integers(1, 10_000), st.sampled_from(list(Side))
)


@settings(max_examples=150, deadline=None)
@given(st.lists(trade_st, min_size=1, max_size=80), st.floats(1.0, 120.0))
def test_momentum_matches_reference_and_is_bounded(
    trades: list[tuple[float, int, Side]], h: float
) -> None:
    m = TradeMomentum(half_life_s=h)
    t = 1.0
    rows = []
    for dt, c, side in trades:
        t += dt
        m.on_trade(t, c, side)
        rows.append((t, c, side.sign))
    now = t + 1.0
    w = [2.0 ** (-(now - ti) / h) for ti, _, _ in rows]
    s = sum(wi * c * sg for wi, (_, c, sg) in zip(w, rows, strict=True))
    v = sum(wi * c for wi, (_, c, _) in zip(w, rows, strict=True))
    assert m.signed_volume(now) == pytest.approx(s / QTY_SCALE, rel=1e-9, abs=1e-12)
    assert m.volume(now) == pytest.approx(v / QTY_SCALE, rel=1e-9)
    val = m.value(now)
    if any(now - ti < 4 * h for ti, _, _ in rows):
        assert val is not None and -1.0 <= val <= 1.0
        assert val == pytest.approx(s / v, abs=1e-9)
    else:
        assert val is None


# -- VPIN -----------------------------------------------------------------------------------------


def test_vpin_one_sided_flow_is_one() -> None:
    v = VPIN(bucket_contracts=10.0, buckets=5)
    for i in range(60):
        v.on_trade(1.0 + i, 100, Side.BID)  # 1 contract each
    assert v.value() == pytest.approx(1.0)
    assert v.samples == 5 and v.buckets_filled == 6


def test_vpin_alternating_equal_trades_is_zero() -> None:
    v = VPIN(bucket_contracts=10.0, buckets=5)
    for i in range(100):
        v.on_trade(1.0 + i, 100, Side.BID if i % 2 == 0 else Side.ASK)
    assert v.value() == pytest.approx(0.0)
    assert v.window_s == pytest.approx(49.0)  # buckets 6–10: trades 50–99 at t = 51 … 100


def test_vpin_splits_an_overflowing_trade() -> None:
    v = VPIN(bucket_contracts=10.0, buckets=2)
    v.on_trade(1.0, 600, Side.BID)  # bucket 1: buy 6
    assert v.value() is None and v.open_fraction == pytest.approx(0.6)
    v.on_trade(2.0, 600, Side.ASK)  # bucket 1 full (buy 6, sell 4: |2|); bucket 2: sell 2
    assert v.samples == 1 and v.value() is None
    assert v.open_fraction == pytest.approx(0.2)
    v.on_trade(3.0, 800, Side.BID)  # bucket 2 full (sell 2, buy 8: |6|)
    assert v.value() == pytest.approx((2 + 6) / (2 * 10))
    assert v.window_s == pytest.approx(2.0) and v.open_fraction == 0.0
    v.on_trade(4.0, 2500, Side.ASK)  # two whole sell buckets (|10| each) and 5 left open
    assert v.value() == pytest.approx(1.0)
    assert v.buckets_filled == 4 and v.open_fraction == pytest.approx(0.5)


def test_vpin_huge_trade_is_bounded_work() -> None:
    v = VPIN(bucket_contracts=0.01, buckets=3)
    v.on_trade(1.0, 10**9, Side.ASK)  # a billion buckets, materialises only 3
    assert v.value() == 1.0 and v.samples == 3 and v.buckets_filled == 10**9


def test_vpin_rejects_bad_inputs() -> None:
    v = VPIN(bucket_contracts=1.0, buckets=2)
    v.on_trade(1.0, 150, Side.BID)
    v.on_trade(2.0, 150, Side.ASK)
    before = (v.value(), v.samples, v.open_fraction, v.buckets_filled)
    for t, c in ((NAN, 100), (INF, 100), (0.0, 100), (-1.0, 100), (1.5, 100), (3.0, NAN)):
        v.on_trade(t, c, Side.BID)  # type: ignore[arg-type]
    v.on_trade(3.0, 0, Side.BID)
    v.on_trade(3.0, -50, Side.BID)
    assert (v.value(), v.samples, v.open_fraction, v.buckets_filled) == before
    with pytest.raises(ValueError):
        VPIN(bucket_contracts=0.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 400), st.booleans()), min_size=1, max_size=60),
    st.integers(1, 300),
    st.integers(1, 6),
)
def test_vpin_matches_reference_and_is_in_unit_interval(
    trades: list[tuple[int, bool]], bucket: int, n: int
) -> None:
    v = VPIN(bucket_contracts=bucket / QTY_SCALE, buckets=n)
    for i, (c, buy) in enumerate(trades):
        v.on_trade(1.0 + i, c, Side.BID if buy else Side.ASK)
    ref = vpin_reference(trades, bucket, n)
    got = v.value()
    if ref is None:
        assert got is None
    else:
        assert got is not None and 0.0 <= got <= 1.0
        assert got == pytest.approx(ref)
    assert v.buckets_filled == sum(c for c, _ in trades) // bucket


# -- refills --------------------------------------------------------------------------------------


def iceberg_ask(det: RefillDetector, t0: float, times: int, *, delta_first: bool = False) -> float:
    """An ask iceberg at $0.51: 10 shown, lifted, gone (touch to $0.52), back 1 s later."""
    t = t0
    det.on_touch(t, 5000, 800, 5100, 1000)
    for _ in range(times):
        t += 1.0
        if delta_first:
            det.on_touch(t, 5000, 800, 5200, 500)
            det.on_trade(t, 5100, 1000, Side.BID)
        else:
            det.on_trade(t, 5100, 1000, Side.BID)
            det.on_touch(t, 5000, 800, 5200, 500)
        t += 1.0
        det.on_touch(t, 5000, 800, 5100, 1000)
    return t


def test_refill_scripted_iceberg_counted_three_times() -> None:
    det = RefillDetector(window_s=120.0, refill_s=5.0, min_fraction=0.5)
    t = iceberg_ask(det, 1.0, 3)
    view = det.view(t)
    assert view.ask.refills == 3 and view.ask.price == 5100 and view.ask.touch_trades == 3
    assert view.bid.refills == 0 and view.bid.price is None
    assert view.ask.window_s == 120.0 and det.samples == 3
    assert view.side(Side.ASK) is view.ask


def test_refill_counted_when_the_delta_arrives_before_the_trade() -> None:
    det = RefillDetector()
    t = iceberg_ask(det, 1.0, 3, delta_first=True)
    assert det.view(t).ask.refills == 3


def test_refill_bid_side_from_taker_sells() -> None:
    det = RefillDetector()
    det.on_touch(1.0, 4900, 2000, 5100, 500)
    det.on_trade(2.0, 4900, 1500, Side.ASK)  # a taker sold YES into the bid
    det.on_touch(2.0, 4900, 500, 5100, 500)  # 20 → 5: depleted (≤ 50 %)
    det.on_touch(3.0, 4900, 1200, 5100, 500)  # back with ≥ 50 % of 20
    v = det.view(3.0)
    assert v.bid.refills == 1 and v.bid.price == 4900 and v.ask.refills == 0


def test_level_that_does_not_come_back_is_not_counted() -> None:
    det = RefillDetector(refill_s=5.0)
    det.on_touch(1.0, 5000, 800, 5100, 1000)
    det.on_trade(2.0, 5100, 1000, Side.BID)
    det.on_touch(2.0, 5000, 800, 5200, 500)
    det.on_touch(4.0, 5000, 800, 5200, 700)
    det.on_touch(7.5, 5000, 800, 5100, 1000)  # back, but 5.5 s after the trade: too late
    det.on_trade(10.0, 5100, 1000, Side.BID)
    det.on_touch(10.0, 5000, 800, 5200, 500)
    det.on_touch(11.0, 5000, 800, 5100, 300)  # back with 3 < 50 % of 10
    assert det.view(12.0).ask.refills == 0
    assert det.view(12.0).ask.touch_trades == 2


def test_trade_without_visible_depletion_is_not_a_refill() -> None:
    """E.g. a trade against our own order: the touch without our orders does not change."""
    det = RefillDetector()
    det.on_touch(1.0, 5000, 800, 5100, 1000)
    det.on_trade(2.0, 5100, 1000, Side.BID)
    det.on_touch(2.5, 5000, 900, 5100, 1000)
    det.on_touch(3.0, 5000, 800, 5100, 1000)
    assert det.view(3.0).ask.refills == 0
    det.on_trade(4.0, 5300, 100, Side.BID)  # not at the touch: ignored
    assert det.view(4.0).ask.touch_trades == 1


def test_refills_leave_the_window_and_price_is_the_mode() -> None:
    det = RefillDetector(window_s=60.0)
    t = iceberg_ask(det, 1.0, 2)  # two at 5100, by t = 5
    # one at 5150 later
    det.on_touch(30.0, 5000, 800, 5150, 1000)
    det.on_trade(31.0, 5150, 1000, Side.BID)
    det.on_touch(31.0, 5000, 800, 5200, 500)
    det.on_touch(32.0, 5000, 800, 5150, 900)
    v = det.view(32.0)
    assert v.ask.refills == 3 and v.ask.price == 5100
    v = det.view(t + 60.0)  # the two early ones (at t = 3 and 5) are out
    assert v.ask.refills == 1 and v.ask.price == 5150
    assert det.view(200.0).ask.refills == 0 and det.view(200.0).ask.price is None


def test_refill_rejects_bad_inputs() -> None:
    clean, dirty = RefillDetector(), RefillDetector()
    for det in (clean, dirty):
        det.on_touch(1.0, 5000, 800, 5100, 1000)
        det.on_trade(2.0, 5100, 1000, Side.BID)
    for bad in (NAN, INF, 0.0, -1.0):
        dirty.on_touch(bad, 5000, 800, 5200, 500)
        dirty.on_trade(bad, 5100, 1000, Side.BID)
    dirty.on_touch(2.0, 5000, NAN, 5200, 500)  # type: ignore[arg-type]
    dirty.on_touch(2.0, 5000, 800, INF, 500)  # type: ignore[arg-type]
    dirty.on_touch(2.0, 5000, 800, 5200, -1)
    dirty.on_trade(2.0, NAN, 1000, Side.BID)  # type: ignore[arg-type]
    dirty.on_trade(2.0, 5100, INF, Side.BID)  # type: ignore[arg-type]
    dirty.on_trade(1.5, 5100, 1000, Side.BID)  # earlier than the last trade
    for det in (clean, dirty):
        det.on_touch(2.0, 5000, 800, 5200, 500)
        det.on_touch(3.0, 5000, 800, 5100, 1000)
    assert dirty.view(3.0) == clean.view(3.0)
    assert clean.view(3.0).ask.refills == 1
    assert dirty.view(NAN).ask.refills == 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("touch"), st.floats(0.0, 3.0), price_st, size_st, price_st, size_st),
            st.tuples(
                st.just("trade"),
                st.floats(0.0, 3.0),
                st.integers(4900, 5100),
                st.integers(1, 3000),
                st.sampled_from(list(Side)),
            ),
        ),
        max_size=80,
    )
)
def test_refill_counts_are_consistent(events: list[tuple[Any, ...]]) -> None:
    det = RefillDetector(window_s=30.0, refill_s=4.0)
    t = 1.0
    for ev in events:
        t += ev[1]
        if ev[0] == "touch":
            det.on_touch(t, *ev[2:])
        else:
            det.on_trade(t, *ev[2:])
        v = det.view(t)
        for s in (v.bid, v.ask):
            assert s.refills >= 0 and s.touch_trades >= 0
            assert (s.price is None) == (s.refills == 0)
        assert det.samples == v.bid.touch_trades + v.ask.touch_trades
