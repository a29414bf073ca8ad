"""The risk gate fails closed: prices outside the grid and NaN or infinite inputs are denied.

Regressions of issue 11 (a bid at −$0.05 was accepted; a NaN mid skipped the price band) and
hypothesis properties over arbitrary numbers, bounded to run in a few seconds.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.grid import STRUCTURES, PriceGrid
from cfa.core.types import PRICE_SCALE, QTY_SCALE, OrderRequest, Side, TradingState
from cfa.risk.gate import Deny, Exposure, RiskGate
from cfa.risk.policy import load_policy

POLICY = load_policy("default")  # position 50, order 25, band 0.15
GATE = RiskGate(POLICY)
GRIDS = {name: PriceGrid.from_structure(name) for name in STRUCTURES}
CENT = GRIDS["linear_cent"]
FLOAT_FIELDS = (
    "avg_price",
    "bid_collateral",
    "ask_collateral",
    "mid",
    "others_at_risk",
    "event_others_at_risk",
)
BAD = (math.nan, math.inf, -math.inf)


def _req(side: Side, n: float, price: Any = 5000) -> OrderRequest:
    """``n`` contracts (a non-finite ``n`` is passed through as the count)."""
    count = n * QTY_SCALE if math.isfinite(n) else n
    if math.isfinite(count) and count == int(count):
        count = int(count)
    return OrderRequest("T", "c1", side, price, count)  # type: ignore[arg-type]


def _x(position: float = 0, **kw: Any) -> Exposure:
    q = round(position * QTY_SCALE) if math.isfinite(position) else position
    return Exposure(position=q, mid=kw.pop("mid", 0.5), **kw)  # type: ignore[arg-type]


ACTIVE = TradingState.ACTIVE


# -- regressions -------------------------------------------------------------------------------


def test_prices_outside_the_range_are_denied() -> None:
    # a bid at -$0.05 with a mid at $0.05 passed the band check and was accepted
    assert GATE.check(_req(Side.BID, 1, -500), _x(mid=0.05), ACTIVE) is Deny.PRICE_RANGE
    assert GATE.check(_req(Side.BID, 1, -500), _x(mid=0.05), ACTIVE, CENT) is Deny.PRICE_RANGE
    assert GATE.check(_req(Side.ASK, 1, 10_500), _x(mid=0.95), ACTIVE) is Deny.PRICE_RANGE
    # the range's ends are not tradable: strictly inside the grid
    for p in (0, 10_000):
        assert GATE.check(_req(Side.BID, 1, p), _x(mid=0.5), ACTIVE, CENT) is Deny.PRICE_RANGE
        assert GATE.check(_req(Side.BID, 1, p), _x(mid=0.5), ACTIVE) is Deny.PRICE_RANGE
    assert GATE.check(_req(Side.BID, 1, 100), _x(mid=0.05), ACTIVE, CENT) is None
    assert GATE.check(_req(Side.ASK, 1, 9900), _x(mid=0.95), ACTIVE, CENT) is None
    # off the grid: $0.495 is a price on deci_cent, not on linear_cent
    assert GATE.check(_req(Side.BID, 1, 4950), _x(), ACTIVE, CENT) is Deny.OFF_GRID
    assert GATE.check(_req(Side.BID, 1, 4950), _x(), ACTIVE, GRIDS["deci_cent"]) is None


def test_nan_and_infinite_inputs_are_denied() -> None:
    # a NaN mid made |price - mid| > band false: the band was skipped and the order accepted
    assert GATE.check(_req(Side.BID, 1, 100), _x(mid=math.nan), ACTIVE) is Deny.NOT_FINITE
    for field in FLOAT_FIELDS:
        for bad in BAD:
            x = _x(**{field: bad})
            assert GATE.check(_req(Side.BID, 1), x, ACTIVE) is Deny.NOT_FINITE, (field, bad)
    for bad in BAD:
        assert GATE.check(_req(Side.BID, 1, bad), _x(), ACTIVE) is Deny.NOT_FINITE
        assert GATE.check(_req(Side.BID, bad), _x(), ACTIVE) is Deny.NOT_FINITE
        assert GATE.check(_req(Side.BID, 1), _x(position=bad), ACTIVE) is Deny.NOT_FINITE


def test_non_integer_units_and_unusable_mids_are_denied() -> None:
    assert GATE.check(_req(Side.BID, 1, 5000.0), _x(), ACTIVE) is Deny.OFF_GRID
    assert GATE.check(_req(Side.BID, 1.005), _x(), ACTIVE) is Deny.INVALID_SIZE
    assert GATE.check(OrderRequest("T", "c", Side.BID, 5000, True), _x(), ACTIVE) is (
        Deny.INVALID_SIZE
    )
    for mid in (0.0, 1.0, 1.2, -0.3):
        assert GATE.check(_req(Side.BID, 1, 5000), _x(mid=mid), ACTIVE) is Deny.NO_MID


# -- properties --------------------------------------------------------------------------------

anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**9), 10**9),
)
states = st.sampled_from(list(TradingState))
sides = st.sampled_from(list(Side))
grids = st.sampled_from([None, *GRIDS.values()])


@settings(max_examples=500, deadline=None)
@given(
    side=sides,
    price=st.integers(-20_000, 20_000),
    count=st.integers(-5_000, 5_000),
    state=st.sampled_from([TradingState.ACTIVE, TradingState.REDUCE_ONLY]),
    position=st.integers(-10_000, 10_000),
    field=st.sampled_from(FLOAT_FIELDS),
    bad=st.sampled_from(BAD),
    grid=grids,
)
def test_any_non_finite_input_is_denied_as_such(
    side: Side,
    price: int,
    count: int,
    state: TradingState,
    position: int,
    field: str,
    bad: float,
    grid: PriceGrid | None,
) -> None:
    x = Exposure(position=position, **{"mid": 0.5, field: bad})  # type: ignore[arg-type]
    req = OrderRequest("T", "c", side, price, count)
    assert GATE.check(req, x, state, grid) is Deny.NOT_FINITE


@settings(max_examples=1_500, deadline=None)
@given(
    side=sides,
    price=st.one_of(st.integers(-2_000, 12_000), anything),
    count=st.one_of(st.integers(-500, 3_000), anything, st.booleans()),
    state=states,
    position=st.one_of(st.integers(-6_000, 6_000), anything),
    resting=st.tuples(st.integers(0, 3_000), st.integers(0, 3_000)),
    floats=st.tuples(*[st.one_of(st.floats(0, 1), st.floats(0, 500), anything)] * 4),
    mid=st.one_of(st.none(), st.floats(0.01, 0.99), anything),
    orders_last_min=st.integers(0, 300),
    grid=grids,
)
def test_every_accepted_order_is_inside_every_limit(
    side: Side,
    price: Any,
    count: Any,
    state: TradingState,
    position: Any,
    resting: tuple[int, int],
    floats: tuple[Any, Any, Any, Any],
    mid: Any,
    orders_last_min: int,
    grid: PriceGrid | None,
) -> None:
    avg, bc, ac, others = floats
    x = Exposure(
        position=position,
        resting_bid=resting[0],
        resting_ask=resting[1],
        avg_price=avg,
        bid_collateral=bc,
        ask_collateral=ac,
        mid=mid,
        others_at_risk=others,
        orders_last_min=orders_last_min,
    )
    req = OrderRequest("T", "c", side, price, count)
    deny = GATE.check(req, x, state, grid)  # total: never raises
    if deny is not None:
        assert isinstance(deny, Deny)
        return
    # accepted: every input was a finite number of the right kind ...
    assert type(price) is int and type(count) is int
    for v in (position, avg, bc, ac, others, mid):
        assert v is not None and math.isfinite(v)
    # ... the price strictly inside the range, on the grid, within the band of a usable mid
    assert 0 < price < PRICE_SCALE
    if grid is not None:
        assert grid.lo <= price <= grid.hi and grid.is_valid(price)
    assert 0.0 < mid < 1.0 and abs(price / PRICE_SCALE - mid) <= POLICY.price_band + 1e-9
    # ... a size within the order limit, and the position limits or reduce-only respected
    assert state is not TradingState.HALTED
    assert 0 < count <= GATE.max_order
    if state is TradingState.REDUCE_ONLY:
        if side is Side.BID:
            assert position < 0 and resting[0] + count <= -position
        else:
            assert position > 0 and resting[1] + count <= position
    elif side is Side.BID:
        assert position + resting[0] + count <= GATE.max_position
    else:
        assert position - resting[1] - count >= -GATE.max_position


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_only_grid_prices_pass_on_each_structure(name: str) -> None:
    grid = GRIDS[name]
    accepted = [
        p
        for p in range(-100, PRICE_SCALE + 101)
        if GATE.check(_req(Side.BID, 1, p), _x(mid=p / PRICE_SCALE), ACTIVE, grid) is None
    ]
    assert accepted and all(grid.is_valid(p) for p in accepted)
    assert min(accepted) == grid.lo and max(accepted) == grid.hi
