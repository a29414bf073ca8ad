"""Event structures read off market metadata (:mod:`cfa.core.events`)."""

from __future__ import annotations

import dataclasses

import pytest

from cfa.core.events import EventKind, EventStructure, event_structures
from cfa.core.types import CfaValueError, MarketInfo, PriceRange


def market(ticker: str, event: str = "EV", **kw: object) -> MarketInfo:
    base = MarketInfo(ticker, event, "S", ticker, (PriceRange(100, 9900, 100),), 1e9)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_a_ladder_is_ordered_by_strike_and_has_n_plus_one_outcomes() -> None:
    ms = [
        market("EV-T98", strike_type="greater", floor_strike=98.0),
        market("EV-T97", strike_type="greater", floor_strike=97.0),
        market("EV-T99", strike_type="greater_or_equal", floor_strike=99.0),
    ]
    (s,) = event_structures(ms).values()
    assert s.kind is EventKind.LADDER and s.tickers == ("EV-T97", "EV-T98", "EV-T99")
    assert s.strikes == (97.0, 98.0, 99.0)
    assert s.outcomes() == (
        (False, False, False),
        (True, False, False),
        (True, True, False),
        (True, True, True),
    )


def test_an_exclusive_set_has_one_yes_per_outcome_and_none_when_not_exhaustive() -> None:
    ms = [market(t, mutually_exclusive=True, exhaustive=True) for t in "XYZ"]
    (s,) = event_structures(ms).values()
    assert s.kind is EventKind.EXCLUSIVE and s.exhaustive
    assert s.outcomes() == ((True, False, False), (False, True, False), (False, False, True))
    ms = [market(t, mutually_exclusive=True) for t in "XY"]
    (s,) = event_structures(ms).values()
    assert not s.exhaustive and s.outcomes()[-1] == (False, False)


def test_anything_else_is_independent_per_event() -> None:
    ms = [
        market("A", strike_type="greater", floor_strike=1.0),
        market("B", "OTHER", strike_type="greater", floor_strike=1.0),
        market("C", "OTHER", strike_type="between", floor_strike=2.0),
    ]
    got = event_structures(ms)
    assert {k: v.kind for k, v in got.items()} == {
        "EV": EventKind.INDEPENDENT,
        "OTHER": EventKind.INDEPENDENT,
    }
    with pytest.raises(CfaValueError, match="independent"):
        got["EV"].outcomes()


def test_bad_structures_are_refused_by_name() -> None:
    with pytest.raises(CfaValueError, match="ascend"):
        EventStructure("E", EventKind.LADDER, ("A", "B"), strikes=(2.0, 1.0))
    with pytest.raises(CfaValueError, match="one strike per market"):
        EventStructure("E", EventKind.LADDER, ("A", "B"), strikes=(1.0,))
    with pytest.raises(CfaValueError, match="twice"):
        EventStructure("E", EventKind.EXCLUSIVE, ("A", "A"))


def test_above_markets_on_several_subjects_are_not_one_ladder() -> None:
    ms = [
        market("EV-BOS3", strike_type="greater", floor_strike=3.0),
        market("EV-NYK5", strike_type="greater", floor_strike=5.0),
    ]
    (s,) = event_structures(ms).values()
    assert s.kind is EventKind.INDEPENDENT
    ms = [
        market("EV-T96499.99", strike_type="greater", floor_strike=96499.99),
        market("EV-T98999.99", strike_type="greater", floor_strike=98999.99),
    ]
    (s,) = event_structures(ms).values()
    assert s.kind is EventKind.LADDER


def test_one_market_marked_exclusive_is_not_a_set() -> None:
    (s,) = event_structures([market("A", mutually_exclusive=True, exhaustive=True)]).values()
    assert s.kind is EventKind.INDEPENDENT
