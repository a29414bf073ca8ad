"""Event-level risk (issue 14): worst-case loss over an event's outcomes, the gate's
``event_worst_loss`` limit, the portfolio's per-outcome totals, reduce-only per event."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from cfa.core.events import EventKind, EventStructure
from cfa.core.types import QTY_SCALE, CfaValueError, OrderRequest, Side, TradingState
from cfa.risk.event_risk import (
    EVENT_BREAKER_SOURCE,
    Leg,
    event_breaker,
    leg_losses,
    outcome_losses,
    worst_case_loss,
)
from cfa.risk.gate import Deny, Exposure, RiskGate, collateral, dollars_at_risk
from cfa.risk.policy import Policy, load_policy
from cfa.risk.portfolio import Portfolio
from cfa.risk.states import TradingStates

POLICY = load_policy("default")  # max_event_worst_loss 300, reduce-only at 0.9, resume below 0.7
GATE = RiskGate(POLICY)
ACTIVE, REDUCE_ONLY, HALTED = TradingState.ACTIVE, TradingState.REDUCE_ONLY, TradingState.HALTED
PROPS = settings(max_examples=200, deadline=None)


def _n(contracts: float) -> int:
    return round(contracts * QTY_SCALE)


def _ladder(*strikes: float, event: str = "BTC") -> EventStructure:
    return EventStructure(
        event, EventKind.LADDER, tuple(f"K{s:g}" for s in strikes), strikes=tuple(strikes)
    )


def _exclusive(n: int, exhaustive: bool = True, event: str = "WIN") -> EventStructure:
    return EventStructure(
        event, EventKind.EXCLUSIVE, tuple(f"M{i}" for i in range(n)), exhaustive=exhaustive
    )


def _policy(**portfolio: Any) -> Policy:
    """The default policy with every other limit out of the way and these portfolio keys."""
    d = POLICY.model_dump()
    d["market"].update(
        max_position=1e6, max_order_size=1e6, max_resting_exposure=1e9, max_dollars_at_risk=1e9
    )
    d["portfolio"].update(max_gross_exposure=1e9, max_event_exposure=1e9, **portfolio)
    d["price_band"] = 1.0
    return Policy.model_validate(d)


# -- legs ----------------------------------------------------------------------------------------


def test_leg_losses_by_hand() -> None:
    # long 10 YES at 0.40: loses 4 if NO, gains 6 if YES
    assert leg_losses(_n(10), 0.4, 0.0, 0.0) == pytest.approx((-6.0, 4.0))
    # short 10 YES sold at 0.40: loses 6 if YES, gains 4 if NO
    assert leg_losses(_n(-10), 0.4, 0.0, 0.0) == pytest.approx((6.0, -4.0))
    # resting orders count only where they hurt: asks on YES, bids on NO
    assert leg_losses(0, 0.0, 2.0, 3.0) == (3.0, 2.0)
    # long 10 at 0.40 with $9 of resting asks: the long's gain on YES pays for 6 of the asks
    yes, no = leg_losses(_n(10), 0.4, 0.0, 9.0)
    assert (yes, no) == pytest.approx((3.0, 4.0))
    assert dollars_at_risk(_n(10), 0.4, 0.0, 9.0) == 9.0  # the old figure ignores that


legs_in = st.tuples(
    st.integers(-200 * QTY_SCALE, 200 * QTY_SCALE),
    st.floats(0.0, 1.0),
    st.floats(0.0, 100.0),
    st.floats(0.0, 100.0),
)


@PROPS
@given(legs_in)
def test_leg_is_never_looser_than_dollars_at_risk(args: tuple[int, float, float, float]) -> None:
    pos, c, bc, ac = args
    yes, no = leg_losses(pos, c, bc, ac)
    dar = dollars_at_risk(pos, c, bc, ac)
    assert max(yes, no) <= dar + 1e-9
    assert max(yes, no) >= -1e-9  # one market alone cannot be a sure profit
    q = pos / QTY_SCALE
    # the docstring's rule: equal unless the position's winning side carries the larger term
    if q >= 0:
        expected = dar - min(q * (1 - c), max(0.0, ac - q * c - bc))
    else:
        expected = dar - min(-q * c, max(0.0, bc + q * (1 - c) - ac))
    assert max(yes, no) == pytest.approx(expected, abs=1e-9)
    if q == 0 or (q > 0 and ac == 0) or (q < 0 and bc == 0):  # one side at risk: they agree
        assert max(yes, no) == pytest.approx(dar, abs=1e-9)


# -- hand-computed events --------------------------------------------------------------------


def test_yes_above_98k_and_no_above_97k_both_lose_between_the_strikes() -> None:
    # YES "above 98k" (10 @ 0.40) and NO "above 97k" (10 YES sold @ 0.55): each pays on its
    # own side, and an underlying between 97k and 98k is a loss on both, so nothing offsets.
    ladder = _ladder(97_000, 98_000)
    legs = {"K98000": leg_losses(_n(10), 0.40, 0, 0), "K97000": leg_losses(_n(-10), 0.55, 0, 0)}
    below, between, above = outcome_losses(ladder, legs)
    assert (below, between, above) == pytest.approx((-1.5, 8.5, -1.5))
    assert worst_case_loss(ladder, legs) == pytest.approx(8.5)
    dar = dollars_at_risk(_n(10), 0.40, 0, 0) + dollars_at_risk(_n(-10), 0.55, 0, 0)
    assert dar == pytest.approx(8.5)


def test_yes_above_97k_and_no_above_98k_lose_at_most_one_leg() -> None:
    # The other way round at most one leg loses and the other pays: nearly flat.
    ladder = _ladder(97_000, 98_000)
    legs = {"K97000": leg_losses(_n(10), 0.55, 0, 0), "K98000": leg_losses(_n(-10), 0.40, 0, 0)}
    assert outcome_losses(ladder, legs) == pytest.approx((1.5, -8.5, 1.5))
    assert worst_case_loss(ladder, legs) == pytest.approx(1.5)
    assert dollars_at_risk(_n(10), 0.55, 0, 0) + dollars_at_risk(_n(-10), 0.40, 0, 0) == 11.5


def test_yes_on_three_neighbouring_strikes_is_one_bet() -> None:
    ladder = _ladder(97_000, 98_000, 99_000)
    legs = {t: leg_losses(_n(10), 0.5, 0, 0) for t in ladder.tickers}
    assert outcome_losses(ladder, legs) == pytest.approx((15.0, 5.0, -5.0, -15.0))
    assert worst_case_loss(ladder, legs) == pytest.approx(15.0)  # all three lose together


def test_one_of_every_outcome_of_an_exhaustive_set_costs_only_the_premium() -> None:
    ex = _exclusive(3)
    prices = (0.30, 0.35, 0.40)  # 1.05 a set
    legs = {t: leg_losses(_n(10), p, 0, 0) for t, p in zip(ex.tickers, prices, strict=True)}
    assert outcome_losses(ex, legs) == pytest.approx((0.5, 0.5, 0.5))
    assert worst_case_loss(ex, legs) == pytest.approx(10 * (sum(prices) - 1))
    cheap = {t: leg_losses(_n(10), p - 0.05, 0, 0) for t, p in zip(ex.tickers, prices, strict=True)}
    assert worst_case_loss(ex, cheap) == pytest.approx(-1.0)  # 0.90 a set: a sure $1 profit
    # not exhaustive: "none of them" is an outcome, and every leg loses on it
    open_set = _exclusive(3, exhaustive=False)
    assert outcome_losses(open_set, legs)[-1] == pytest.approx(10.5)
    assert worst_case_loss(open_set, legs) == pytest.approx(10.5)


def test_missing_markets_count_zero_and_bad_legs_are_refused() -> None:
    ladder = _ladder(1, 2, 3)
    assert outcome_losses(ladder, {"K2": (1.0, 2.0)}) == (2.0, 2.0, 1.0, 1.0)
    assert outcome_losses(ladder, {}) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(CfaValueError, match="K9 is not one of event BTC"):
        outcome_losses(ladder, {"K9": (1.0, 2.0)})
    for bad in (math.nan, math.inf):
        with pytest.raises(CfaValueError, match="finite"):
            worst_case_loss(ladder, {"K1": (bad, 0.0)})
        with pytest.raises(CfaValueError, match="finite"):
            worst_case_loss(EventStructure("E", EventKind.INDEPENDENT, ("A",)), {"A": (0, bad)})
    with pytest.raises(CfaValueError, match="independent"):
        outcome_losses(EventStructure("E", EventKind.INDEPENDENT, ("A", "B")), {})


# -- properties: worst case against the sum of dollars at risk -------------------------------

kinds = st.sampled_from(["ladder", "exclusive", "open", "independent"])


def _structure(kind: str, n: int) -> EventStructure:
    if kind == "ladder":
        return _ladder(*range(1, n + 1))
    if kind == "independent":
        return EventStructure("IND", EventKind.INDEPENDENT, tuple(f"I{i}" for i in range(n)))
    return _exclusive(n, exhaustive=kind == "exclusive")


@PROPS
@given(kinds, st.lists(legs_in, min_size=1, max_size=8))
def test_worst_case_is_at_most_the_sum_of_dollars_at_risk(
    kind: str, markets: list[tuple[int, float, float, float]]
) -> None:
    s = _structure(kind, len(markets))
    legs = {t: leg_losses(*m) for t, m in zip(s.tickers, markets, strict=True)}
    total_dar = sum(dollars_at_risk(*m) for m in markets)
    worst = worst_case_loss(s, legs)
    assert worst <= total_dar + 1e-6
    per_market = sum(max(leg) for leg in legs.values())
    if kind == "independent":
        assert worst == pytest.approx(per_market, abs=1e-6)
    else:
        assert worst == pytest.approx(max(outcome_losses(s, legs)))
        assert worst <= per_market + 1e-6


@PROPS
@given(st.lists(st.tuples(st.integers(-200, 200), st.floats(0.0, 1.0)), min_size=1, max_size=8))
def test_independent_worst_case_equals_the_sum_of_dollars_at_risk(
    positions: list[tuple[int, float]],
) -> None:
    # positions without resting orders: each market's leg agrees with its dollars at risk
    s = _structure("independent", len(positions))
    legs = {t: leg_losses(_n(q), c, 0, 0) for t, (q, c) in zip(s.tickers, positions, strict=True)}
    expected = sum(dollars_at_risk(_n(q), c, 0, 0) for q, c in positions)
    assert worst_case_loss(s, legs) == pytest.approx(expected, abs=1e-6)


# -- the gate ------------------------------------------------------------------------------------


def _req(side: Side, n: float, price: int = 5000) -> OrderRequest:
    return OrderRequest("K98", "c1", side, price, _n(n))


def _x(
    others: tuple[float, ...], yes: tuple[bool, ...], position: float = 0, **kw: Any
) -> Exposure:
    return Exposure(
        position=_n(position),
        mid=kw.pop("mid", 0.5),
        event_others_by_outcome=others,
        event_yes=yes,
        **kw,
    )


LADDER_TOP = (False, False, True)  # the upper rung of a two-strike ladder: YES only above both


def test_gate_denies_the_risk_increasing_order_over_the_limit() -> None:
    x = _x((290.0, 0.0, -100.0), LADDER_TOP)
    # a bid adds to the NO outcomes: 290 + 12.5 on "below both" > 300
    assert GATE.check(_req(Side.BID, 25), x, ACTIVE) is Deny.EVENT_WORST_LOSS
    assert GATE.check(_req(Side.BID, 20), x, ACTIVE) is None  # 290 + 10: at the limit, not over
    # an ask adds to the YES outcome only (-100 + 12.5): no change to the worst case
    assert GATE.check(_req(Side.ASK, 25), x, ACTIVE) is None


def test_gate_allows_a_hedge_above_the_limit() -> None:
    over = _x((310.0, 0.0, -100.0), LADDER_TOP)
    assert GATE.check(_req(Side.ASK, 25), over, ACTIVE) is None
    assert GATE.check(_req(Side.BID, 1), over, ACTIVE) is Deny.EVENT_WORST_LOSS
    # ... unless another limit denies it
    assert (
        GATE.check(_req(Side.ASK, 25), _x((310.0, 0.0, -100.0), LADDER_TOP, mid=0.8), ACTIVE)
        is Deny.PRICE_BAND
    )
    # long 20 @ 0.5 in this market already: the ask's YES loss (-10 + 12.5 - 100) stays below
    long20 = _x((310.0, 0.0, -100.0), LADDER_TOP, position=20, avg_price=0.5)
    assert GATE.check(_req(Side.ASK, 25), long20, ACTIVE) is None


def test_gate_skips_the_event_check_in_reduce_only_and_without_the_fields() -> None:
    over = _x((310.0, 0.0, -100.0), LADDER_TOP, position=-10, avg_price=0.5)
    assert GATE.check(_req(Side.BID, 10), over, REDUCE_ONLY) is None
    assert GATE.check(_req(Side.BID, 10), over, ACTIVE) is Deny.EVENT_WORST_LOSS
    assert GATE.check(_req(Side.BID, 10), _x((), ()), ACTIVE) is None  # old behaviour


def test_gate_refuses_bad_event_fields() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        x = _x((0.0, bad, 0.0), LADDER_TOP)
        assert GATE.check(_req(Side.ASK, 1), x, ACTIVE) is Deny.NOT_FINITE
    assert GATE.check(_req(Side.ASK, 1), _x((1e308, 1e308), (True, False)), ACTIVE) is (
        Deny.NOT_FINITE
    )
    assert GATE.check(_req(Side.ASK, 1), _x((0.0, 0.0), LADDER_TOP), ACTIVE) is Deny.EVENT_SHAPE
    assert GATE.check(_req(Side.ASK, 1), _x((), (True,)), ACTIVE) is Deny.EVENT_SHAPE


TIGHT = _policy(max_event_worst_loss=20.0)
TIGHT_GATE = RiskGate(TIGHT)
prices = st.integers(100, 9900).map(lambda p: p - p % 100)


@PROPS
@given(
    kinds,
    st.integers(1, 6),
    st.data(),
    st.sampled_from([Side.BID, Side.ASK]),
    st.integers(1, 40),
    prices,
)
def test_gate_denies_exactly_the_orders_that_raise_the_worst_case_over_the_limit(
    kind: str, n: int, data: st.DataObject, side: Side, count: int, price: int
) -> None:
    s = _structure(kind, n)
    pf = Portfolio()
    pf.set_structures([s])
    legs: dict[str, Leg] = {}
    for t in s.tickers:
        leg = leg_losses(*data.draw(legs_in, label=t))
        legs[t] = (leg[0] / 10, leg[1] / 10)  # around the $20 limit
        pf.update_legs(t, s.event_ticker, *legs[t])
    me = s.tickers[data.draw(st.integers(0, n - 1), label="me")]
    pos = data.draw(st.integers(-20, 20), label="position")
    c = data.draw(st.floats(0.01, 0.99), label="avg price")
    bc, ac = data.draw(st.floats(0.0, 10.0), label="bids"), data.draw(st.floats(0.0, 10.0))
    mine = leg_losses(_n(pos), c, bc, ac)
    pf.update_legs(me, s.event_ticker, *mine)
    new = collateral(side, price, _n(count))
    after_leg = (mine[0], mine[1] + new) if side is Side.BID else (mine[0] + new, mine[1])
    before = worst_case_loss(s, {**legs, me: mine})
    after = worst_case_loss(s, {**legs, me: after_leg})
    assume(abs(after - 20.0) > 1e-6 and (after - before > 1e-6 or after - before < 1e-12))
    others, yes = pf.event_outcome_others(me)
    x = Exposure(
        position=_n(pos),
        avg_price=c,
        bid_collateral=bc,
        ask_collateral=ac,
        mid=price / 10_000,
        event_others_by_outcome=others,
        event_yes=yes,
    )
    got = TIGHT_GATE.check(OrderRequest(me, "c", side, price, _n(count)), x, ACTIVE)
    raises = after > 20.0 and after > before + 1e-6
    event("raises the worst case over the limit" if raises else "allowed")
    event("hedge above the limit" if before > 20.0 and not raises else "other")
    assert got is (Deny.EVENT_WORST_LOSS if raises else None), (before, after)


# -- the portfolio -------------------------------------------------------------------------------


def test_portfolio_by_hand() -> None:
    pf = Portfolio()
    ladder = _ladder(97_000, 98_000)
    pf.set_structures([ladder])
    assert pf.event_of("K97000") == "BTC" and pf.event_of("X") is None
    assert pf.event_worst_loss("BTC") == 0.0
    assert pf.event_outcome_losses("BTC") == (0.0, 0.0, 0.0)
    pf.update_legs("K97000", "BTC", *leg_losses(_n(10), 0.55, 0, 0))
    pf.update_legs("K98000", "BTC", *leg_losses(_n(-10), 0.40, 0, 0))
    assert pf.event_outcome_losses("BTC") == pytest.approx((1.5, -8.5, 1.5))
    assert pf.event_worst_loss("BTC") == pytest.approx(1.5)
    others, yes = pf.event_outcome_others("K98000")
    assert yes == (False, False, True)
    assert others == pytest.approx((5.5, -4.5, -4.5))  # K97000's leg per outcome
    # an unregistered event: independent, Σ max(yes, no)
    pf.update_legs("A", "OTHER", 3.0, -1.0)
    pf.update_legs("B", "OTHER", -2.0, 4.0)
    assert pf.event_worst_loss("OTHER") == pytest.approx(7.0)
    assert pf.event_outcome_others("A") == ((4.0, 4.0), (True, False))
    assert pf.event_outcome_others("nobody") == ((0.0, 0.0), (True, False))
    assert pf.event_outcome_losses("OTHER") == ()


def test_portfolio_cache_follows_updates() -> None:
    pf = Portfolio()
    pf.set_structures([_exclusive(2)])
    pf.update_legs("M0", "WIN", 1.0, 2.0)
    first = pf.event_outcome_others("M1")
    assert first == ((1.0, 2.0), (False, True))
    assert pf.event_outcome_others("M1")[0] is first[0]  # cached until the event changes
    pf.update_legs("M0", "WIN", 5.0, 0.0)
    assert pf.event_outcome_others("M1") == ((5.0, 0.0), (False, True))
    assert pf.update_legs("M1", "WIN", 7.0, 7.0)  # its own leg does not enter its others
    assert not pf.update_legs("M1", "WIN", 7.0, 7.0)  # unchanged
    assert pf.event_outcome_others("M1") == ((5.0, 0.0), (False, True))
    assert pf.event_outcome_others("M0") == ((7.0, 7.0), (True, False))


def test_portfolio_refuses_bad_input() -> None:
    pf = Portfolio()
    pf.set_structures([_ladder(1, 2)])
    with pytest.raises(CfaValueError, match="K1 belongs to event BTC, not X"):
        pf.update_legs("K1", "X", 0.0, 0.0)
    with pytest.raises(CfaValueError, match="not one of the registered event BTC"):
        pf.update_legs("Z", "BTC", 0.0, 0.0)
    with pytest.raises(CfaValueError, match="finite"):
        pf.update_legs("K1", "BTC", math.nan, 0.0)
    with pytest.raises(CfaValueError, match="two events"):
        pf.set_structures([EventStructure("E2", EventKind.INDEPENDENT, ("K1",))])
    pf.update_legs("Q", "E3", 1.0, 1.0)
    with pytest.raises(CfaValueError, match="omits it"):
        pf.set_structures([EventStructure("E3", EventKind.INDEPENDENT, ("R",))])


ops = st.lists(
    st.tuples(st.integers(0, 9), st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=60
)


@PROPS
@given(ops, st.booleans())
def test_incremental_portfolio_matches_a_from_scratch_computation(
    updates: list[tuple[int, float, float]], register_late: bool
) -> None:
    # markets 0-2 a ladder, 3-5 an exclusive set, 6-7 an independent event, 8-9 unregistered
    ladder = EventStructure("L", EventKind.LADDER, ("m0", "m1", "m2"), strikes=(1.0, 2.0, 3.0))
    excl = EventStructure("X", EventKind.EXCLUSIVE, ("m3", "m4", "m5"), exhaustive=False)
    ind = EventStructure("I", EventKind.INDEPENDENT, ("m6", "m7"))
    structures = {"L": ladder, "X": excl, "I": ind}
    event = {f"m{i}": e for e, s in structures.items() for i in range(10) if f"m{i}" in s.tickers}
    event.update(m8="U", m9="U")
    pf = Portfolio()
    if not register_late:
        pf.set_structures(structures.values())
    legs: dict[str, Leg] = {}
    held: dict[str, Leg] = {}
    for k, (i, yes, no) in enumerate(updates):
        t = f"m{i}"
        pf.update_legs(t, event[t], yes, no)
        legs[t] = (yes, no)
        if k % 3 == 0:  # the positions change less often than the orders
            pf.update_position_legs(t, event[t], no, yes)
            held[t] = (no, yes)
        if register_late and k == len(updates) // 2:
            pf.set_structures(structures.values())
        pf.event_outcome_others(t)  # fill the cache, so later updates must invalidate it
    if register_late and len(updates) < 2:
        pf.set_structures(structures.values())
    unreg = EventStructure("U", EventKind.INDEPENDENT, ("m8", "m9"))
    for ev, s in {**structures, "U": unreg}.items():
        mine = {t: leg for t, leg in legs.items() if t in s.tickers}
        assert pf.event_worst_loss(ev) == pytest.approx(worst_case_loss(s, mine), abs=1e-9)
        mine_held = {t: leg for t, leg in held.items() if t in s.tickers}
        assert pf.event_position_worst_loss(ev) == pytest.approx(
            worst_case_loss(s, mine_held) if mine_held else 0.0, abs=1e-9
        )
        for t in s.tickers:
            if ev == "U" and t not in legs:
                continue  # an unregistered market that never reported: its event is unknown
            others, flags = pf.event_outcome_others(t)
            if s.kind is EventKind.INDEPENDENT:
                rest = {u: leg for u, leg in mine.items() if u != t}
                expected: tuple[float, ...] = (worst_case_loss(s, rest),) * 2
                assert flags == (True, False)
            else:
                expected = outcome_losses(s, {u: leg for u, leg in mine.items() if u != t})
                assert flags == tuple(o[s.index(t)] for o in s.outcomes())
                assert pf.event_outcome_losses(ev) == pytest.approx(
                    outcome_losses(s, mine), abs=1e-9
                )
            assert others == pytest.approx(expected, abs=1e-9)


# -- trading states per event --------------------------------------------------------------------


def test_event_reduce_only_holds_and_lifts_like_market_holds() -> None:
    calls: list[tuple[str | None, TradingState, str]] = []
    s = TradingStates(on_change=lambda scope, old, new, src, why: calls.append((scope, new, src)))
    s.register("K1", "BTC")
    s.register("K2", "BTC")
    s.register("K1", "BTC")  # again: nothing
    v = s.version
    assert s.set_event("BTC", REDUCE_ONLY, source=EVENT_BREAKER_SOURCE, reason="near limit")
    assert s.version == v + 1
    assert calls[-1] == ("event:BTC", REDUCE_ONLY, EVENT_BREAKER_SOURCE)
    assert s.effective("K1") is REDUCE_ONLY and s.effective("K2") is REDUCE_ONLY
    assert s.market_state("K1") is ACTIVE and s.event_state("BTC") is REDUCE_ONLY
    # the governance agent may not lift a breaker's hold; a person may
    gov = "agent:governance:heuristic"
    assert s.event_blocking("BTC", gov, ACTIVE) == [EVENT_BREAKER_SOURCE]
    assert not s.set_event("BTC", ACTIVE, source=gov, reason="try")
    assert s.event_state("BTC") is REDUCE_ONLY
    # a person's halt on top; the breaker lifting its own leaves the person's in place
    assert s.set_event("BTC", HALTED, source="person:alice", reason="look first")
    assert not s.set_event("BTC", ACTIVE, source=EVENT_BREAKER_SOURCE, reason="back under")
    assert s.event_holds("BTC") == {"person:alice": HALTED}
    assert s.effective("K2") is HALTED
    # a market-scope lift does not touch the event's holds
    s.set("K2", ACTIVE, source="person:bob", reason="all clear")
    assert s.effective("K2") is HALTED
    assert s.set_event("BTC", ACTIVE, source="person:bob", reason="all clear")
    assert s.effective("K1") is ACTIVE and s.event_holds("BTC") == {}
    assert s.snapshot() == {"*": "ACTIVE", "event:BTC": "ACTIVE"}
    # an event ticker equal to a market ticker stays apart
    s.register("BTC", "BTC")
    s.set("BTC", HALTED, source="person:bob", reason="market")
    assert s.event_state("BTC") is ACTIVE and s.effective("K1") is ACTIVE
    assert s.snapshot()["BTC"] == "HALTED" and s.snapshot()["event:BTC"] == "ACTIVE"
    assert calls[-1][0] == "BTC"


def test_register_after_an_event_state_and_conflicts() -> None:
    s = TradingStates()
    s.set_event("E", REDUCE_ONLY, source="person:a", reason="r")
    assert s.effective("K") is ACTIVE
    v = s.version
    s.register("K", "E")
    assert s.effective("K") is REDUCE_ONLY and s.event_of("K") == "E"
    assert s.version == v + 1  # the market's effective state moved
    s.register("L", "F")
    assert s.version == v + 1 and s.effective("L") is ACTIVE
    with pytest.raises(CfaValueError, match="already in event E"):
        s.register("K", "F")


states_ = st.sampled_from([ACTIVE, REDUCE_ONLY, HALTED])
RANK = {ACTIVE: 0, REDUCE_ONLY: 1, HALTED: 2}


@PROPS
@given(st.lists(st.tuples(st.sampled_from(["g", "e", "m", "m2"]), states_), max_size=20))
def test_effective_is_the_most_restrictive_of_global_event_and_market(
    changes: list[tuple[str, TradingState]],
) -> None:
    s = TradingStates()
    s.register("M", "E")
    s.register("M2", "E")
    for scope, state in changes:
        if scope == "g":
            s.set(None, state, source="person:a", reason="r")
        elif scope == "e":
            s.set_event("E", state, source="person:a", reason="r")
        else:
            s.set(scope.upper(), state, source="person:a", reason="r")
    for m in ("M", "M2"):
        want = max((s.global_state, s.event_state("E"), s.market_state(m)), key=RANK.__getitem__)
        assert s.effective(m) is want
    assert s.effective("unregistered") is s.global_state


# -- the event breaker and the policy ------------------------------------------------------------


def test_event_breaker_hysteresis() -> None:
    lim = POLICY.portfolio.max_event_worst_loss
    assert lim == 300.0
    assert event_breaker(269.0, lim, ACTIVE, POLICY) is None
    assert event_breaker(270.0, lim, ACTIVE, POLICY) is REDUCE_ONLY  # 0.9 of the limit
    assert event_breaker(math.nan, lim, ACTIVE, POLICY) is REDUCE_ONLY  # fails closed
    assert event_breaker(250.0, lim, REDUCE_ONLY, POLICY) is None  # held until below 0.7
    assert event_breaker(209.0, lim, REDUCE_ONLY, POLICY) is ACTIVE
    assert event_breaker(100.0, lim, ACTIVE, POLICY) is None
    assert event_breaker(-5.0, lim, HALTED, POLICY) is ACTIVE


def test_event_breaker_with_the_portfolio_and_states() -> None:
    # the loop's wiring: after a position change, recompute and apply the breaker's hold
    pf, s = Portfolio(), TradingStates()
    ladder = _ladder(97_000, 98_000, 99_000)
    pf.set_structures([ladder])
    for t in ladder.tickers:
        s.register(t, "BTC")
    lim = POLICY.portfolio.max_event_worst_loss
    seen = []
    for q in (100, 200, 180, 150, 130, 0):  # YES on all three at 0.5: worst = 1.5·q
        # in REDUCE_ONLY the loops cancel their bids: the breaker reads the positions alone
        bids = 0.0 if s.effective("K98000") is REDUCE_ONLY else 30.0
        for t in ladder.tickers:
            pf.update_legs(t, "BTC", *leg_losses(_n(q), 0.5, bids, 0))
            pf.update_position_legs(t, "BTC", *leg_losses(_n(q), 0.5, 0, 0))
        assert pf.event_position_worst_loss("BTC") == pytest.approx(1.5 * q)
        assert pf.event_worst_loss("BTC") == pytest.approx(1.5 * q + 3 * bids)
        hold = s.event_holds("BTC").get(EVENT_BREAKER_SOURCE, ACTIVE)
        new = event_breaker(pf.event_position_worst_loss("BTC"), lim, hold, POLICY)
        if new is not None:
            s.set_event("BTC", new, source=EVENT_BREAKER_SOURCE, reason="event worst loss")
        seen.append(s.effective("K98000"))
    assert seen == [ACTIVE, REDUCE_ONLY, REDUCE_ONLY, REDUCE_ONLY, ACTIVE, ACTIVE]


def test_policy_event_keys() -> None:
    conservative = load_policy("conservative").portfolio
    assert conservative.max_event_worst_loss == 90.0
    assert (conservative.event_reduce_only_at, conservative.event_resume_below) == (0.9, 0.7)
    with pytest.raises(ValueError, match="event_resume_below must be less"):
        _policy(event_resume_below=0.9, event_reduce_only_at=0.9)
    with pytest.raises(ValueError, match="max_event_worst_loss"):
        _policy(max_event_worst_loss=0.0)
    with pytest.raises(ValueError, match="max_event_worst_loss"):
        _policy(max_event_worst_loss=math.inf)
    with pytest.raises(ValueError, match="event_reduce_only_at"):
        _policy(event_reduce_only_at=1.5)
