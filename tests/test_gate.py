"""The risk gate: every limit, the trading states, and a 1,000-sequence fuzz with no breach."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.control.params import ParameterStore
from cfa.control.plane import ControlPlane
from cfa.control.tools import GOVERNANCE_TOOLS, MARKET_TOOLS, ParsedCall, parse_call
from cfa.core.types import QTY_SCALE, OrderRequest, Side, TradingState
from cfa.risk.gate import Deny, Exposure, RiskGate, collateral, dollars_at_risk
from cfa.risk.policy import load_policy
from cfa.risk.states import TradingStates

POLICY = load_policy("default")  # position 50, order 25, resting $100, at risk $200, band 0.15
GATE = RiskGate(POLICY)


def _req(side: Side, n: float, price: int = 5000) -> OrderRequest:
    return OrderRequest("T", "c1", side, price, round(n * QTY_SCALE))


def _x(position: float = 0, **kw: Any) -> Exposure:
    return Exposure(position=round(position * QTY_SCALE), mid=kw.pop("mid", 0.5), **kw)


def test_order_size_and_position_limits() -> None:
    assert GATE.check(_req(Side.BID, 25), _x(), TradingState.ACTIVE) is None
    assert GATE.check(_req(Side.BID, 26), _x(), TradingState.ACTIVE) is Deny.ORDER_SIZE
    assert GATE.check(_req(Side.BID, 0), _x(), TradingState.ACTIVE) is Deny.NON_POSITIVE_SIZE
    long40 = _x(40, resting_bid=5 * QTY_SCALE, avg_price=0.5)
    assert GATE.check(_req(Side.BID, 5), long40, TradingState.ACTIVE) is None
    assert GATE.check(_req(Side.BID, 6), long40, TradingState.ACTIVE) is Deny.POSITION_LIMIT
    assert GATE.check(_req(Side.ASK, 25), long40, TradingState.ACTIVE) is None


def test_price_band_mid_and_rate() -> None:
    assert GATE.check(_req(Side.BID, 1, 3400), _x(), TradingState.ACTIVE) is Deny.PRICE_BAND
    assert GATE.check(_req(Side.BID, 1, 3500), _x(), TradingState.ACTIVE) is None
    assert GATE.check(_req(Side.BID, 1), _x(mid=None), TradingState.ACTIVE) is Deny.NO_MID
    busy = _x(orders_last_min=POLICY.breakers.max_orders_per_min)
    assert GATE.check(_req(Side.BID, 1), busy, TradingState.ACTIVE) is Deny.ORDER_RATE


def test_exposure_limits() -> None:
    # $100 of resting collateral at most: 20 contracts bid at 0.50 = $10 on top of $95.
    assert (
        GATE.check(_req(Side.BID, 20), _x(ask_collateral=95.0), TradingState.ACTIVE)
        is Deny.RESTING_EXPOSURE
    )
    assert (
        GATE.check(_req(Side.BID, 10), _x(others_at_risk=996.0), TradingState.ACTIVE)
        is Deny.GROSS_EXPOSURE
    )
    assert (
        GATE.check(_req(Side.BID, 10), _x(event_others_at_risk=496.0), TradingState.ACTIVE)
        is Deny.EVENT_EXPOSURE
    )
    assert dollars_at_risk(10 * QTY_SCALE, 0.4, 2.0, 3.0) == 6.0  # long 10 @ .40 + $2 of bids
    assert dollars_at_risk(-10 * QTY_SCALE, 0.4, 2.0, 3.0) == 9.0  # short 10 @ .40 -> 6 + $3 asks
    assert collateral(Side.ASK, 7000, 10 * QTY_SCALE) == 3.0


def test_trading_states() -> None:
    long10 = _x(10, avg_price=0.5)
    assert GATE.check(_req(Side.ASK, 1), long10, TradingState.HALTED) is Deny.HALTED
    assert GATE.check(_req(Side.BID, 1), long10, TradingState.REDUCE_ONLY) is Deny.REDUCE_ONLY
    assert GATE.check(_req(Side.ASK, 10), long10, TradingState.REDUCE_ONLY) is None
    assert GATE.check(_req(Side.ASK, 11), long10, TradingState.REDUCE_ONLY) is Deny.REDUCE_ONLY
    assert GATE.check(_req(Side.ASK, 1), _x(), TradingState.REDUCE_ONLY) is Deny.REDUCE_ONLY


# -- fuzz: random sequences of tool calls, governance actions and orders ------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.05, 0.5, 1.0, 1.4, 2.0, 50.0, 60.0, 0.0002, 0.004, 0.006, 0.05]),
    st.integers(-5, 100),
)
op = st.one_of(
    st.tuples(st.just("tool"), st.sampled_from(sorted(MARKET_TOOLS)), numbers),
    st.tuples(
        st.just("gov"),
        st.sampled_from(["freeze", "unfreeze", "override", "halt", "resume", "reduce_only"]),
        numbers,
    ),
    st.tuples(
        st.just("order"),
        st.sampled_from([Side.BID, Side.ASK]),
        st.tuples(st.integers(100, 9900), st.integers(-100, 4000), st.booleans()),
    ),
    st.tuples(st.just("mid"), st.floats(0.02, 0.98), st.just(None)),
)


class World:
    """A market as the gate sees it: position, resting orders, states, parameters."""

    def __init__(self) -> None:
        self.params = ParameterStore(POLICY)
        self.params.add_market("M")
        self.states = TradingStates()
        self.applier = ControlPlane(self.params, self.states)
        self.position = 0
        self.avg = 0.0
        self.resting: list[tuple[Side, int, int]] = []
        self.mid = 0.5
        self.now = 0.0

    def exposure(self) -> Exposure:
        rb = sum(n for s, _, n in self.resting if s is Side.BID)
        ra = sum(n for s, _, n in self.resting if s is Side.ASK)
        bc = sum(collateral(s, p, n) for s, p, n in self.resting if s is Side.BID)
        ac = sum(collateral(s, p, n) for s, p, n in self.resting if s is Side.ASK)
        return Exposure(self.position, rb, ra, self.avg, bc, ac, self.mid)

    def check_invariants(self) -> None:
        mp = self.params.get("M")
        for p in ("gamma", "sigma"):
            b = getattr(POLICY.params, p)
            v = getattr(mp, p)
            assert math.isfinite(v) and b.min <= v <= b.max
        e = self.exposure()
        cap = POLICY.market.max_position * QTY_SCALE
        assert self.position + e.resting_bid <= cap
        assert self.position - e.resting_ask >= -cap


@settings(max_examples=1_000, deadline=None)
@given(st.lists(op, min_size=1, max_size=12))
def test_no_accepted_order_or_parameter_breaches_the_policy(ops: list[Any]) -> None:
    w = World()
    for kind, a, b in ops:
        w.now += 7.0
        if kind == "tool":
            args = {"value": b, "rationale": "fuzz", "reason": "fuzz"}
            fields = MARKET_TOOLS[a].model_fields
            parsed = parse_call(
                a, json.dumps({k: v for k, v in args.items() if k in fields}), MARKET_TOOLS
            )
            if isinstance(parsed, ParsedCall):
                w.applier.apply(parsed, source="agent:market:fuzz", now=w.now, market="M")
        elif kind == "gov":
            args = {
                "market": "M",
                "param": "gamma",
                "gamma": b,
                "sigma": None,
                "ttl_s": 60.0,
                "reason": "fuzz",
            }
            fields = GOVERNANCE_TOOLS[a].model_fields
            parsed = parse_call(a, {k: v for k, v in args.items() if k in fields}, GOVERNANCE_TOOLS)
            if isinstance(parsed, ParsedCall):
                w.applier.apply(parsed, source="person:fuzz", now=w.now)
            w.applier.expire(w.now)
        elif kind == "mid":
            w.mid = a
        else:
            price, count, fill = b
            state = w.states.effective("M")
            req = OrderRequest("M", "c", a, price, count)
            before = w.exposure()
            if GATE.check(req, before, state) is not None:
                continue
            # Accepted: it must respect every limit, with all resting orders filling.
            assert state is not TradingState.HALTED
            assert 0 < count <= POLICY.market.max_order_size * QTY_SCALE
            assert abs(price / 10_000 - w.mid) <= POLICY.price_band + 1e-9
            w.resting.append((a, price, count))
            after = w.exposure()
            assert (
                after.bid_collateral + after.ask_collateral
                <= POLICY.market.max_resting_exposure + 1e-6
            )
            if state is TradingState.ACTIVE:
                risk = dollars_at_risk(
                    w.position, w.avg, after.bid_collateral, after.ask_collateral
                )
                assert risk <= POLICY.market.max_dollars_at_risk + 1e-6
            if fill:  # the newest order fills completely
                side, p, n = w.resting.pop()
                q = w.position + side.sign * n
                if w.position == 0 or (w.position > 0) == (side.sign > 0):
                    w.avg = (w.avg * abs(w.position) + p / 10_000 * n) / abs(q) if q else 0.0
                elif q and (q > 0) != (w.position > 0):
                    w.avg = p / 10_000
                w.position = q
        w.check_invariants()
