"""The quoting core: hand-computed values, the sign convention, and properties on Kalshi grids."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cfa.core.grid import PriceGrid, maker_fee_per_contract
from cfa.core.quoting import (
    QuoteMarket,
    QuoteParams,
    glft_coefficients,
    glft_quotes,
    horizon_tau,
    optimal_spread,
    quote,
    reservation_price,
    sigma_price,
)
from cfa.core.types import PRICE_SCALE, QTY_SCALE, CfaValueError

GRIDS = {
    name: PriceGrid.from_structure(name)
    for name in ("linear_cent", "deci_cent", "tapered_deci_cent")
}

# -- the paper's formulas, hand-computed ---------------------------------------------------------


def test_reservation_price_hand_values() -> None:
    # r = s - q*gamma*sigma^2*tau
    assert reservation_price(100.0, 3.0, 0.1, 2.0, 0.5) == pytest.approx(100.0 - 3 * 0.1 * 4 * 0.5)
    assert reservation_price(100.0, -2.0, 0.1, 2.0, 1.0) == pytest.approx(100.8)
    assert reservation_price(0.5, 0.0, 7.0, 0.3, 10.0) == 0.5


def test_optimal_spread_hand_values() -> None:
    # gamma*sigma^2*tau + (2/gamma)*ln(1+gamma/k)
    assert optimal_spread(0.1, 2.0, 1.5, 1.0) == pytest.approx(0.4 + 20 * math.log(1 + 0.1 / 1.5))
    # The AS 2008 constant term at gamma = 0.1, k = 1.5: 1.2908 (tau = 0).
    assert optimal_spread(0.1, 2.0, 1.5, 0.0) == pytest.approx(1.2908, abs=1e-4)
    # Time-average of eq. 30 over [0, 1] is gamma*sigma^2/2 + constant term: 1.49 (published).
    avg = 0.1 * 4 / 2 + optimal_spread(0.1, 2.0, 1.5, 0.0)
    assert avg == pytest.approx(1.4908, abs=1e-4)


def test_glft_matches_reference_values() -> None:
    # models-and-results.md §2.2 table: sigma=2, A=140, k=1.5.
    for gamma, c1_ref, c2_ref, spread_ref in [
        (0.01, 0.6645, 0.0161, 1.3450),
        (0.1, 0.6454, 0.0517, 1.3425),
        (1.0, 0.5108, 0.1848, 1.2065),
    ]:
        c1, c2 = glft_coefficients(gamma, 2.0, 140.0, 1.5)
        assert c1 == pytest.approx(c1_ref, abs=1e-4)
        assert c2 == pytest.approx(c2_ref, abs=1e-4)
        bid, ask = glft_quotes(100.0, 0.0, gamma, 2.0, 140.0, 1.5)
        assert ask - bid == pytest.approx(spread_ref, abs=1e-4)
        # Spread independent of inventory; skew c2 per contract.
        bid3, ask3 = glft_quotes(100.0, 3.0, gamma, 2.0, 140.0, 1.5)
        assert ask3 - bid3 == pytest.approx(ask - bid)
        assert bid - bid3 == pytest.approx(3 * c2)


def test_bounded_price_mapping() -> None:
    assert sigma_price(0.5, 0.2) == pytest.approx(0.05)
    assert sigma_price(0.1, 0.2) == pytest.approx(0.018)
    assert horizon_tau(100.0, 3600.0) == 100.0
    assert horizon_tau(1e6, 3600.0) == 3600.0
    assert horizon_tau(-5.0, 3600.0) == 0.0


# -- the sign convention -------------------------------------------------------------------------

MARKET = QuoteMarket(GRIDS["deci_cent"])
PARAMS = QuoteParams(
    gamma=2.0, sigma=0.004, k=150.0, size=5 * QTY_SCALE, inventory_cap=10 * QTY_SCALE
)


def _q(inv_contracts: float, **kw: object) -> object:
    return quote(
        mid=0.5,
        inventory=round(inv_contracts * QTY_SCALE),
        time_to_close=3600.0,
        params=PARAMS,
        market=MARKET,
        **kw,
    )


def test_long_inventory_moves_both_quotes_down() -> None:
    flat, long = _q(0), _q(1)
    assert long.reservation < flat.reservation
    assert long.bid < flat.bid  # further from the mid
    assert long.ask < flat.ask  # closer to the mid
    assert abs(long.ask / PRICE_SCALE - 0.5) < abs(flat.ask / PRICE_SCALE - 0.5)


def test_short_inventory_moves_both_quotes_up() -> None:
    flat, short = _q(0), _q(-1)
    assert short.bid > flat.bid and short.ask > flat.ask


def test_flat_inventory_is_symmetric_before_rounding() -> None:
    flat = _q(0)
    assert flat.reservation == 0.5
    assert flat.bid is not None and flat.ask is not None
    assert 0.5 - flat.bid / PRICE_SCALE == pytest.approx(flat.ask / PRICE_SCALE - 0.5, abs=1e-3)


def test_hand_computed_kalshi_quote() -> None:
    # sigma_p = 0.25*0.004 = 0.001; tau = 3600; gamma*sigma_p^2*tau = 2*1e-6*3600 = 0.0072
    # half = (0.0072 + (2/2)*ln(1+2/150))/2 = 0.0102226; r = 0.5 at q = 0.
    # Deci-cent grid: bid 0.4897774 floors to 0.489, ask 0.5102226 ceils to 0.511.
    flat = _q(0)
    assert flat.half_spread == pytest.approx((0.0072 + math.log(1 + 2 / 150)) / 2)
    assert (flat.bid, flat.ask) == (4890, 5110)
    # q = +3: r = 0.5 - 3*0.0072 = 0.4784; bid 0.4681774 -> 0.468; the model ask 0.4886226
    # would sell below the mid, so it stops at the mid (plus the fee, 0 here): 0.500.
    long = _q(3)
    assert long.reservation == pytest.approx(0.4784)
    assert (long.bid, long.ask) == (4680, 5000)
    # q = +1: r = 0.4928, ask 0.5030226 -> 0.504 (above the mid: the model's own price)
    assert _q(1).ask == 5040


# -- grid, caps, fees, post-only ------------------------------------------------------------------


def test_inventory_cap_cuts_size_then_drops_the_side() -> None:
    near = _q(8)
    assert near.bid_size == 2 * QTY_SCALE and near.ask_size == PARAMS.size
    at_cap = _q(10)
    assert at_cap.bid is None and at_cap.bid_size == 0 and at_cap.ask is not None
    at_neg_cap = _q(-10)
    assert at_neg_cap.ask is None and at_neg_cap.bid is not None


def test_post_only_never_crosses() -> None:
    # A book with a tight touch inside our model quotes would be crossed without the guard.
    p = QuoteParams(gamma=1.0, sigma=0.001, k=50.0)
    q = quote(
        mid=0.5,
        inventory=0,
        time_to_close=60.0,
        params=p,
        market=MARKET,
        best_bid=5300,
        best_ask=5310,
    )
    assert q.bid is not None and q.bid < 5310
    assert q.ask is not None and q.ask > 5300


def test_maker_fee_floor_widens_the_spread() -> None:
    tight = QuoteParams(gamma=1.0, sigma=0.0, k=5000.0, size=100 * QTY_SCALE)
    no_fee = quote(mid=0.5, inventory=0, time_to_close=60.0, params=tight, market=MARKET)
    with_fee_market = QuoteMarket(GRIDS["deci_cent"], maker_rate=0.0175)
    fee = quote(mid=0.5, inventory=0, time_to_close=60.0, params=tight, market=with_fee_market)
    # 0.0175 * 0.25 = 0.004375 per contract (Kalshi's accumulator refunds the rounding)
    assert fee.half_spread == pytest.approx(0.004375)
    assert fee.ask - fee.bid > no_fee.ask - no_fee.bid
    assert (fee.ask - fee.bid) / PRICE_SCALE >= 2 * 0.004375 - 1e-12


def test_side_dropped_when_model_price_leaves_the_range() -> None:
    p = QuoteParams(gamma=2.0, sigma=0.05, k=100.0)
    q = quote(
        mid=0.02,
        inventory=0,
        time_to_close=3600.0,
        params=p,
        market=QuoteMarket(GRIDS["linear_cent"]),
    )
    assert q.bid is None  # the model bid is below $0.01
    assert q.ask is not None and q.ask >= 300


def test_bad_inputs_are_refused_with_a_name() -> None:
    with pytest.raises(CfaValueError, match="gamma"):
        QuoteParams(gamma=0.0, sigma=0.1, k=1.0)
    with pytest.raises(CfaValueError, match="sigma"):
        QuoteParams(gamma=1.0, sigma=float("nan"), k=1.0)
    with pytest.raises(CfaValueError, match="k"):
        QuoteParams(gamma=1.0, sigma=0.1, k=float("inf"))
    with pytest.raises(CfaValueError, match="mid"):
        quote(mid=float("nan"), inventory=0, time_to_close=1.0, params=PARAMS, market=MARKET)
    with pytest.raises(CfaValueError, match="mid"):
        quote(mid=1.0, inventory=0, time_to_close=1.0, params=PARAMS, market=MARKET)


# -- properties ---------------------------------------------------------------------------------

grid_names = st.sampled_from(sorted(GRIDS))
mids = st.floats(min_value=0.005, max_value=0.995)
gammas = st.floats(min_value=0.05, max_value=200.0)
sigmas = st.floats(min_value=0.0, max_value=0.05)
ks = st.floats(min_value=5.0, max_value=2000.0)
inventories = st.integers(min_value=-60 * QTY_SCALE, max_value=60 * QTY_SCALE)
taus = st.floats(min_value=0.0, max_value=7200.0)
models = st.sampled_from(["as", "glft"])
# The inputs of one quote, shared by the properties below.
quote_inputs = dict(
    name=grid_names,
    mid=mids,
    gamma=gammas,
    sigma=sigmas,
    k=ks,
    inv=inventories,
    tau=taus,
    model=models,
    fee=st.booleans(),
    data=st.data(),
)


@st.composite
def books(draw: st.DrawFn, grid: PriceGrid) -> tuple[int | None, int | None]:
    """An uncrossed touch on the grid, or an empty side."""
    bid = draw(st.none() | st.integers(grid.lo, grid.hi))
    ask = draw(st.none() | st.integers(grid.lo, grid.hi))
    if bid is not None:
        bid = grid.floor_units(bid)
    if ask is not None:
        ask = grid.ceil_units(ask)
    if bid is not None and ask is not None and bid >= ask:
        bid = None
    return bid, ask


@settings(max_examples=400, deadline=None)
@given(**quote_inputs)
def test_quote_invariants(
    name: str,
    mid: float,
    gamma: float,
    sigma: float,
    k: float,
    inv: int,
    tau: float,
    model: str,
    fee: bool,
    data: st.DataObject,
) -> None:
    grid = GRIDS[name]
    market = QuoteMarket(grid, maker_rate=0.0175 if fee else 0.0)
    params = QuoteParams(gamma=gamma, sigma=sigma, k=k, A=2.0, model=model)  # type: ignore[arg-type]
    best_bid, best_ask = data.draw(books(grid))
    q = quote(
        mid=mid,
        inventory=inv,
        time_to_close=tau,
        params=params,
        market=market,
        best_bid=best_bid,
        best_ask=best_ask,
    )
    for side in (q.bid, q.ask):
        if side is not None:
            assert grid.is_valid(side), (side, grid)
            assert grid.lo <= side <= grid.hi
    if q.bid is not None and q.ask is not None:
        assert q.bid < q.ask
        if fee:
            floor = maker_fee_per_contract(0.0175, mid)
            assert (q.ask - q.bid) / PRICE_SCALE >= 2 * floor - 1e-9
    if q.bid is not None and best_ask is not None:
        assert q.bid < best_ask
    if q.ask is not None and best_bid is not None:
        assert q.ask > best_bid
    assert 0 <= q.bid_size <= params.size and 0 <= q.ask_size <= params.size
    assert inv + q.bid_size <= params.inventory_cap or q.bid is None
    assert inv - q.ask_size >= -params.inventory_cap or q.ask is None


@settings(max_examples=300, deadline=None)
@given(
    name=grid_names,
    mid=mids,
    gamma=gammas,
    sigma=sigmas,
    k=ks,
    tau=taus,
    model=models,
    inv1=inventories,
    inv2=inventories,
)
def test_quotes_monotone_in_inventory(
    name: str,
    mid: float,
    gamma: float,
    sigma: float,
    k: float,
    tau: float,
    model: str,
    inv1: int,
    inv2: int,
) -> None:
    lo, hi = sorted((inv1, inv2))
    market = QuoteMarket(GRIDS[name])
    params = QuoteParams(gamma=gamma, sigma=sigma, k=k, A=2.0, inventory_cap=10**9, model=model)  # type: ignore[arg-type]
    a = quote(mid=mid, inventory=lo, time_to_close=tau, params=params, market=market)
    b = quote(mid=mid, inventory=hi, time_to_close=tau, params=params, market=market)
    assert b.reservation <= a.reservation + 1e-12
    if a.bid is not None and b.bid is not None:
        assert b.bid <= a.bid
    if a.ask is not None and b.ask is not None:
        assert b.ask <= a.ask
    # More inventory never brings back a bid the model dropped at the bottom of the range.
    if a.bid is None:
        assert b.bid is None


@settings(max_examples=300, deadline=None)
@given(mid=mids, g1=gammas, g2=gammas, sigma=sigmas, k=ks, tau=taus, inv=inventories)
def test_inventory_skew_monotone_in_gamma(
    mid: float, g1: float, g2: float, sigma: float, k: float, tau: float, inv: int
) -> None:
    lo, hi = sorted((g1, g2))
    market = QuoteMarket(GRIDS["deci_cent"])
    a = quote(
        mid=mid,
        inventory=inv,
        time_to_close=tau,
        params=QuoteParams(gamma=lo, sigma=sigma, k=k),
        market=market,
    )
    b = quote(
        mid=mid,
        inventory=inv,
        time_to_close=tau,
        params=QuoteParams(gamma=hi, sigma=sigma, k=k),
        market=market,
    )
    assert abs(b.reservation - mid) >= abs(a.reservation - mid) - 1e-12
    # The inventory risk term of the spread grows with gamma too.
    assert hi * b.sigma_p**2 * b.tau >= lo * a.sigma_p**2 * a.tau - 1e-15


@settings(max_examples=300, deadline=None)
@given(mid=mids, gamma=gammas, sigma=sigmas, k=ks, tau=taus, name=grid_names)
def test_symmetric_at_zero_inventory(
    mid: float, gamma: float, sigma: float, k: float, tau: float, name: str
) -> None:
    q = quote(
        mid=mid,
        inventory=0,
        time_to_close=tau,
        params=QuoteParams(gamma=gamma, sigma=sigma, k=k),
        market=QuoteMarket(GRIDS[name]),
    )
    assert q.reservation == mid
    assume(q.bid is not None and q.ask is not None)
    # Rounding moves each side outward by less than one local tick.
    grid = GRIDS[name]
    lo_gap = mid - q.bid / PRICE_SCALE - q.half_spread
    hi_gap = q.ask / PRICE_SCALE - mid - q.half_spread
    assert -1e-9 <= lo_gap < grid.tick_below(q.bid + 1) / PRICE_SCALE + 1e-9 or q.bid == grid.hi
    assert -1e-9 <= hi_gap < grid.tick_above(q.ask - 1) / PRICE_SCALE + 1e-9 or q.ask == grid.lo


@settings(max_examples=400, deadline=None)
@given(
    **quote_inputs,
    min_edge=st.floats(0.0, 0.02),
    queues=st.tuples(st.integers(0, 5000), st.integers(0, 5000)),
    holding=st.none() | st.floats(1.0, 10_000.0),
)
def test_edge_floor_and_queue_aware_placement(
    name: str,
    mid: float,
    gamma: float,
    sigma: float,
    k: float,
    inv: int,
    tau: float,
    model: str,
    fee: bool,
    min_edge: float,
    queues: tuple[int, int],
    holding: float | None,
    data: st.DataObject,
) -> None:
    """Every quoted side clears the fee plus the required edge against the reservation price
    and the fee against the mid (joining or improving never gives that up), never crosses the
    others' best, and moves to the touch only from within a tick of it."""
    grid = GRIDS[name]
    rate = 0.0175 if fee else 0.0
    market = QuoteMarket(grid, maker_rate=rate)
    params = QuoteParams(gamma=gamma, sigma=sigma, k=k, A=2.0, model=model)  # type: ignore[arg-type]
    best_bid, best_ask = data.draw(books(grid))
    q = quote(
        mid=mid,
        inventory=inv,
        time_to_close=tau,
        params=params,
        market=market,
        best_bid=best_bid,
        best_ask=best_ask,
        bid_queue=queues[0],
        ask_queue=queues[1],
        min_edge=min_edge,
        holding_s=holding,
    )
    f = rate * mid * (1 - mid)
    floor = f + min_edge
    eps = 1e-9
    if q.bid is not None:
        b = q.bid / PRICE_SCALE
        assert b <= q.reservation - floor + eps and b <= mid - f + eps
        if best_ask is not None:
            assert q.bid < best_ask
        if best_bid is not None and q.bid > best_bid:
            # above the others' best only by the model's own price or one improving tick
            up = grid.next_up(best_bid)
            model_bid = grid.floor_units((q.reservation - q.half_spread) * PRICE_SCALE)
            assert q.bid == up or (model_bid is not None and q.bid <= model_bid)
    if q.ask is not None:
        a = q.ask / PRICE_SCALE
        if q.bid is None or q.ask != grid.next_up(q.bid):  # not pushed up by a coarse grid
            assert a >= q.reservation + floor - eps and a >= mid + f - eps
        if best_bid is not None:
            assert q.ask > best_bid
    if holding is not None:
        assert q.tau <= holding + eps


# -- the other markets of the event ---------------------------------------------------------------


def test_cross_risk_is_inventory_held_elsewhere_in_the_event() -> None:
    """``cross_risk = Σ_{j≠i} Σ_ij q_j`` shifts the AS centre exactly as the same price risk
    held in this market would: one contract here is ``σ_p²`` of it."""
    sig_p = sigma_price(0.5, PARAMS.sigma)
    flat, long = _q(0), _q(3)
    via_sibling = _q(0, cross_risk=3 * sig_p * sig_p)
    assert via_sibling.reservation == pytest.approx(long.reservation, abs=1e-15)
    assert via_sibling.half_spread == flat.half_spread
    hedged = _q(3, cross_risk=-3 * sig_p * sig_p)  # short the same risk in a sibling
    assert hedged.reservation == pytest.approx(flat.reservation, abs=1e-15)


def test_cross_skew_moves_both_glft_quotes_by_its_dollars() -> None:
    params = QuoteParams(gamma=PARAMS.gamma, sigma=PARAMS.sigma, k=PARAMS.k, model="glft")
    args = dict(mid=0.5, inventory=0, time_to_close=3600.0, params=params, market=MARKET)
    base = quote(**args)  # type: ignore[arg-type]
    moved = quote(**args, cross_skew=0.004)  # type: ignore[arg-type]
    assert moved.reservation == pytest.approx(base.reservation - 0.004, abs=1e-15)
    assert moved.half_spread == base.half_spread


def test_zero_cross_terms_are_the_single_market_quote_exactly() -> None:
    for inv in (-4, 0, 2):
        assert _q(inv, cross_risk=0.0, cross_skew=0.0) == _q(inv)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_cross_terms_are_refused(bad: float) -> None:
    with pytest.raises(CfaValueError, match="cross_risk"):
        _q(1, cross_risk=bad)
    params = QuoteParams(gamma=PARAMS.gamma, sigma=PARAMS.sigma, k=PARAMS.k, model="glft")
    with pytest.raises(CfaValueError, match="cross_skew"):
        quote(
            mid=0.5, inventory=0, time_to_close=3600.0, params=params, market=MARKET, cross_skew=bad
        )
