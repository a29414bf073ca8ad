"""The risk gate: size, position counting resting orders, trading states; fuzzed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.types import QTY_SCALE, OrderRequest, Side, TradingState
from cfa.risk.gate import Deny, Exposure, RiskGate
from cfa.risk.policy import load_policy

POLICY = load_policy("default")  # max_position 50, max_order_size 25
GATE = RiskGate(POLICY)


def _req(side: Side, n: float) -> OrderRequest:
    return OrderRequest("T", "c1", side, 5000, round(n * QTY_SCALE))


def test_order_size_and_position_limits() -> None:
    flat = Exposure(0, 0, 0)
    assert GATE.check(_req(Side.BID, 25), flat, TradingState.ACTIVE) is None
    assert GATE.check(_req(Side.BID, 26), flat, TradingState.ACTIVE) is Deny.ORDER_SIZE
    assert GATE.check(_req(Side.BID, 0), flat, TradingState.ACTIVE) is Deny.NON_POSITIVE_SIZE
    long40 = Exposure(40 * QTY_SCALE, 5 * QTY_SCALE, 0)
    assert GATE.check(_req(Side.BID, 5), long40, TradingState.ACTIVE) is None
    assert GATE.check(_req(Side.BID, 6), long40, TradingState.ACTIVE) is Deny.POSITION_LIMIT
    assert GATE.check(_req(Side.ASK, 25), long40, TradingState.ACTIVE) is None


def test_trading_states() -> None:
    long10 = Exposure(10 * QTY_SCALE, 0, 0)
    assert GATE.check(_req(Side.ASK, 1), long10, TradingState.HALTED) is Deny.HALTED
    assert GATE.check(_req(Side.BID, 1), long10, TradingState.REDUCE_ONLY) is Deny.REDUCE_ONLY
    assert GATE.check(_req(Side.ASK, 10), long10, TradingState.REDUCE_ONLY) is None
    assert GATE.check(_req(Side.ASK, 11), long10, TradingState.REDUCE_ONLY) is Deny.REDUCE_ONLY
    assert (
        GATE.check(_req(Side.ASK, 1), Exposure(0, 0, 0), TradingState.REDUCE_ONLY)
        is Deny.REDUCE_ONLY
    )


@settings(max_examples=2000, deadline=None)
@given(
    side=st.sampled_from([Side.BID, Side.ASK]),
    count=st.integers(-100, 60 * QTY_SCALE),
    pos=st.integers(-80 * QTY_SCALE, 80 * QTY_SCALE),
    rb=st.integers(0, 60 * QTY_SCALE),
    ra=st.integers(0, 60 * QTY_SCALE),
    state=st.sampled_from(list(TradingState)),
)
def test_accepted_orders_never_breach(
    side: Side, count: int, pos: int, rb: int, ra: int, state: TradingState
) -> None:
    req = OrderRequest("T", "c", side, 5000, count)
    verdict = GATE.check(req, Exposure(pos, rb, ra), state)
    if verdict is not None:
        return
    cap = 50 * QTY_SCALE
    assert 0 < count <= 25 * QTY_SCALE
    assert state is not TradingState.HALTED
    if state is TradingState.REDUCE_ONLY:
        # the worst case, all resting same-side orders filling, never crosses zero
        if side is Side.BID:
            assert pos < 0 and pos + rb + count <= 0
        else:
            assert pos > 0 and pos - ra - count >= 0
    elif side is Side.BID:
        assert pos + rb + count <= cap
    else:
        assert pos - ra - count >= -cap
