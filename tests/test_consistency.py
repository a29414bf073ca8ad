"""Cross-market consistency signals over an event's books (:mod:`cfa.core.consistency`)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cfa.core.consistency import (
    EXCLUSIVE_ASKS_BELOW_ONE,
    EXCLUSIVE_BIDS_ABOVE_ONE,
    LADDER_MIDS_NOT_MONOTONE,
    LADDER_NOT_MONOTONE,
    Quote,
    check_event,
    taker_fee_per_contract,
)
from cfa.core.events import EventKind, EventStructure
from cfa.core.types import PRICE_SCALE, CfaValueError, FeeSchedule

TOP = PRICE_SCALE - 1  # highest valid price, $0.9999


def ladder(n: int) -> EventStructure:
    tickers = tuple(f"KXBTCD-T{97 + i}" for i in range(n))
    return EventStructure(
        "KXBTCD", EventKind.LADDER, tickers, tuple(97_000.0 + i for i in range(n))
    )


def exclusive(n: int, *, exhaustive: bool = True) -> EventStructure:
    tickers = tuple(f"KXHIGHNY-B{i}" for i in range(n))
    return EventStructure("KXHIGHNY", EventKind.EXCLUSIVE, tickers, exhaustive=exhaustive)


def usd(units: int) -> Decimal:
    return Decimal(units) / PRICE_SCALE


# -- hand-built books ---------------------------------------------------------------------------


def test_a_higher_strike_bid_above_a_lower_strike_ask_is_flagged_with_its_amount() -> None:
    s = ladder(3)
    a, b, c = s.tickers
    books: dict[str, Quote] = {a: (6000, 6100), b: (6300, 6400), c: (3000, 3100)}
    (v,) = check_event(s, books)
    assert v.kind == LADDER_NOT_MONOTONE
    assert v.tickers == (a, b)
    assert v.amount == Decimal("0.02") and v.fees == 0 and v.net == Decimal("0.02")
    assert a in v.message and b in v.message and "0.02" in v.message


def test_ladder_pairs_beyond_neighbours_are_checked() -> None:
    s = ladder(3)
    a, b, c = s.tickers
    # c's bid is above both a's and b's asks: two riskless spreads, reported lower strike first.
    books: dict[str, Quote] = {a: (5000, 5200), b: (4000, 4200), c: (5500, 5600)}
    got = [(v.kind, v.tickers, v.amount) for v in check_event(s, books)]
    assert got == [
        (LADDER_NOT_MONOTONE, (a, c), Decimal("0.03")),
        (LADDER_NOT_MONOTONE, (b, c), Decimal("0.13")),
    ]


def test_a_consistent_ladder_with_empty_sides_and_missing_books_flags_nothing() -> None:
    s = ladder(4)
    a, b, c, _ = s.tickers  # the fourth has no book at all
    books: dict[str, Quote] = {a: (None, 8000), b: (7900, None), c: (None, None)}
    assert check_event(s, books) == []
    # an unrelated ticker in the mapping is ignored
    assert check_event(s, {**books, "OTHER": (9000, 9100)}) == []


def test_the_soft_mid_check_is_off_by_default_and_respects_its_tolerance() -> None:
    s = ladder(2)
    a, b = s.tickers
    # a: bid 0.40 ask 0.60 (mid 0.50); b: bid 0.45 ask 0.56 (mid 0.505): no riskless spread
    books: dict[str, Quote] = {a: (4000, 6000), b: (4500, 5600)}
    assert check_event(s, books) == []
    (v,) = check_event(s, books, mid_tolerance=0)
    assert v.kind == LADDER_MIDS_NOT_MONOTONE and v.tickers == (a, b)
    assert v.amount == Decimal("0.005") and v.fees == 0
    assert check_event(s, books, mid_tolerance=49) != []
    assert check_event(s, books, mid_tolerance=50) == []


def test_a_hard_ladder_violation_is_not_repeated_as_a_soft_one() -> None:
    s = ladder(2)
    a, b = s.tickers
    books: dict[str, Quote] = {a: (4000, 4100), b: (4200, 4300)}
    assert [v.kind for v in check_event(s, books, mid_tolerance=0)] == [LADDER_NOT_MONOTONE]


def test_exclusive_asks_below_one_are_flagged_only_for_an_exhaustive_set() -> None:
    books: dict[str, Quote] = {"KXHIGHNY-B0": (2000, 2400), "KXHIGHNY-B1": (4500, 4700)}
    books["KXHIGHNY-B2"] = (2500, 2800)  # asks sum to $0.99, bids to $0.90
    (v,) = check_event(exclusive(3), books)
    assert v.kind == EXCLUSIVE_ASKS_BELOW_ONE
    assert v.tickers == exclusive(3).tickers
    assert v.amount == Decimal("0.01")
    assert "0.99" in v.message
    assert check_event(exclusive(3, exhaustive=False), books) == []


def test_exclusive_bids_above_one_are_flagged_even_when_not_exhaustive() -> None:
    books: dict[str, Quote] = {
        "KXHIGHNY-B0": (3000, 3200),
        "KXHIGHNY-B1": (4000, 4200),
        "KXHIGHNY-B2": (3300, 3500),
    }  # bids sum to $1.03
    for s in (exclusive(3), exclusive(3, exhaustive=False)):
        (v,) = check_event(s, books)
        assert v.kind == EXCLUSIVE_BIDS_ABOVE_ONE and v.amount == Decimal("0.03")


def test_an_exclusive_set_with_a_missing_side_is_skipped_for_that_side() -> None:
    # asks would sum to $0.95 and bids to $1.10, but each sum misses a leg
    books: dict[str, Quote] = {"KXHIGHNY-B0": (5000, None), "KXHIGHNY-B1": (6000, 6500)}
    books["KXHIGHNY-B0"] = (None, 3000)
    books["KXHIGHNY-B1"] = (6000, None)
    assert check_event(exclusive(2), books) == []
    books = {"KXHIGHNY-B0": (5000, None), "KXHIGHNY-B1": (6000, 6500)}  # bids sum to $1.10
    (v,) = check_event(exclusive(2), books)
    assert v.kind == EXCLUSIVE_BIDS_ABOVE_ONE and v.amount == Decimal("0.10")


def test_independent_markets_have_no_checks() -> None:
    s = EventStructure("EV", EventKind.INDEPENDENT, ("A", "B"))
    assert check_event(s, {"A": (9000, 9100), "B": (100, 200)}) == []


def test_taker_fees_hide_a_violation_smaller_than_them() -> None:
    s = ladder(2)
    a, b = s.tickers
    fee = taker_fee_per_contract(FeeSchedule())
    assert fee(5000) == Decimal("0.0175")  # 0.07 · 0.5 · 0.5
    assert fee(5300) == Decimal("0.0175")  # 0.07 · 0.53 · 0.47 = 0.017437 → up to $0.0001
    # 3 cents of riskless spread against 3.5 cents of taker fees: not money
    assert check_event(s, {a: (4900, 5000), b: (5300, 5400)}, fee_per_contract=fee) == []
    # 5 cents against 0.0175 + 0.0174 (0.07 · 0.55 · 0.45 = 0.017325): flagged, fees recorded
    (v,) = check_event(s, {a: (4900, 5000), b: (5500, 5600)}, fee_per_contract=fee)
    assert v.amount == Decimal("0.05") and v.fees == Decimal("0.0349")
    assert v.net == Decimal("0.0151")


def test_a_flat_allowance_must_be_strictly_exceeded() -> None:
    s = ladder(2)
    a, b = s.tickers
    books: dict[str, Quote] = {a: (4900, 5000), b: (5200, 5300)}  # 2 cents
    assert check_event(s, books, fee_allowance=Decimal("0.02")) == []
    (v,) = check_event(s, books, fee_allowance=Decimal("0.0199"))
    assert v.fees == Decimal("0.0199")


def test_exclusive_fees_count_every_leg() -> None:
    books: dict[str, Quote] = {"KXHIGHNY-B0": (1000, 2000), "KXHIGHNY-B1": (7000, 7900)}
    s = exclusive(2)  # asks sum to $0.99
    (v,) = check_event(s, books, fee_per_contract=lambda p: Decimal("0.004"))
    assert v.fees == Decimal("0.008")
    assert check_event(s, books, fee_per_contract=lambda p: Decimal("0.005")) == []


@pytest.mark.parametrize(
    ("books", "match"),
    [
        ({"KXBTCD-T97": (0.5, 6000)}, "integer price units"),
        ({"KXBTCD-T97": (float("nan"), 6000)}, "integer price units"),
        ({"KXBTCD-T97": (True, 6000)}, "integer price units"),
        ({"KXBTCD-T97": (0, 6000)}, "outside 1..9999"),
        ({"KXBTCD-T97": (5000, PRICE_SCALE)}, "outside 1..9999"),
        ({"KXBTCD-T97": (6000, 6000)}, "crossed or locked"),
        ({"KXBTCD-T97": (6100, 6000)}, "crossed or locked"),
        ({"KXBTCD-T97": (6000,)}, "expected \\(best_bid, best_ask\\)"),
    ],
)
def test_malformed_books_are_refused_by_ticker(books: dict[str, Quote], match: str) -> None:
    with pytest.raises(CfaValueError, match=match) as exc:
        check_event(ladder(2), books)
    assert "KXBTCD-T97" in str(exc.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fee_allowance": Decimal(-1)}, "fee_allowance"),
        ({"fee_allowance": Decimal("NaN")}, "fee_allowance"),
        ({"fee_allowance": Decimal("Infinity")}, "fee_allowance"),
        ({"fee_allowance": 0.01}, "fee_allowance"),
        ({"mid_tolerance": -1}, "mid_tolerance"),
        ({"mid_tolerance": 1.5}, "mid_tolerance"),
        ({"fee_per_contract": lambda p: 0.01}, "fee_per_contract"),
        ({"fee_per_contract": lambda p: Decimal("NaN")}, "fee_per_contract"),
        ({"fee_per_contract": lambda p: Decimal(-1)}, "fee_per_contract"),
    ],
)
def test_bad_options_are_refused_by_name(kwargs: dict[str, object], match: str) -> None:
    s = ladder(2)
    books: dict[str, Quote] = {s.tickers[0]: (4000, 4100), s.tickers[1]: (4200, 4300)}
    with pytest.raises(CfaValueError, match=match):
        check_event(s, books, **kwargs)  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------------


@st.composite
def consistent_ladder(draw: st.DrawFn) -> tuple[EventStructure, dict[str, Quote]]:
    """Strictly descending asks (all present) and any bids below their own asks."""
    n = draw(st.integers(2, 6))
    asks = sorted(draw(st.sets(st.integers(2, TOP), min_size=n, max_size=n)), reverse=True)
    bids = [draw(st.none() | st.integers(1, a - 1)) for a in asks]
    s = ladder(n)
    return s, {t: (b, a) for t, b, a in zip(s.tickers, bids, asks, strict=True)}


@settings(max_examples=200, deadline=None)
@given(consistent_ladder(), st.booleans())
def test_a_consistent_ladder_never_flags(
    case: tuple[EventStructure, dict[str, Quote]], drop_asks: bool
) -> None:
    s, books = case
    assert check_event(s, books) == []
    if drop_asks:  # fewer quotes can only remove violations
        books = {t: (b, None) for t, (b, _) in books.items()}
        assert check_event(s, books) == []


@settings(max_examples=200, deadline=None)
@given(consistent_ladder(), st.data())
def test_lifting_one_bid_past_its_neighbours_ask_flags_exactly_that_pair(
    case: tuple[EventStructure, dict[str, Quote]], data: st.DataObject
) -> None:
    s, books = case
    j = data.draw(st.integers(1, s.n - 1), label="leg")
    lower_ask = books[s.tickers[j - 1]][1]
    assert lower_ask is not None
    # no higher than the ask two rungs down, so only the neighbour is crossed
    ceiling = books[s.tickers[j - 2]][1] if j >= 2 else TOP - 1
    assert ceiling is not None
    ceiling = min(ceiling, TOP - 1)
    assume(lower_ask < ceiling)
    d = data.draw(st.integers(1, ceiling - lower_ask), label="by")
    new_bid = lower_ask + d
    own_ask = books[s.tickers[j]][1]
    assert own_ask is not None
    books = {**books, s.tickers[j]: (new_bid, max(own_ask, new_bid + 1))}
    (v,) = check_event(s, books)
    assert v.kind == LADDER_NOT_MONOTONE
    assert v.tickers == (s.tickers[j - 1], s.tickers[j])
    assert v.amount == usd(d) and v.fees == 0


@st.composite
def fair_set(draw: st.DrawFn, minimum: int = 1) -> list[int]:
    """2–6 fair prices in price units, each ≥ ``minimum``, summing to exactly $1."""
    n = draw(st.integers(2, 6))
    cuts = sorted(draw(st.sets(st.integers(1, PRICE_SCALE - 1), min_size=n - 1, max_size=n - 1)))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, PRICE_SCALE], strict=True)]
    assume(min(parts) >= minimum)
    return parts


@settings(max_examples=200, deadline=None)
@given(fair_set(), st.data(), st.booleans())
def test_a_consistent_exclusive_book_never_flags(
    fair: list[int], data: st.DataObject, exhaustive: bool
) -> None:
    s = exclusive(len(fair), exhaustive=exhaustive)
    books: dict[str, Quote] = {}
    for t, p in zip(s.tickers, fair, strict=True):
        below = data.draw(st.integers(0, 500))
        above = data.draw(st.integers(1, 500))
        bid = p - below if p - below >= 1 else None
        ask = p + above if p + above <= TOP else None
        books[t] = (bid, ask)
    assert check_event(s, books) == []


@settings(max_examples=200, deadline=None)
@given(fair_set(minimum=3), st.data())
def test_asks_summing_below_one_flag_by_exactly_the_shortfall(
    fair: list[int], data: st.DataObject
) -> None:
    s = exclusive(len(fair))
    k = data.draw(st.integers(0, len(fair) - 1), label="leg")
    d = data.draw(st.integers(1, fair[k] - 2), label="by")
    asks = list(fair)
    asks[k] -= d  # the asks now sum to $1 − d; every bid one unit below its ask
    books: dict[str, Quote] = {t: (a - 1, a) for t, a in zip(s.tickers, asks, strict=True)}
    (v,) = check_event(s, books)
    assert v.kind == EXCLUSIVE_ASKS_BELOW_ONE and v.amount == usd(d)
    assert check_event(exclusive(len(fair), exhaustive=False), books) == []


@settings(max_examples=200, deadline=None)
@given(fair_set(), st.data(), st.booleans())
def test_bids_summing_above_one_flag_by_exactly_the_excess(
    fair: list[int], data: st.DataObject, exhaustive: bool
) -> None:
    s = exclusive(len(fair), exhaustive=exhaustive)
    k = data.draw(st.integers(0, len(fair) - 1), label="leg")
    assume(fair[k] <= TOP - 2)
    d = data.draw(st.integers(1, TOP - 1 - fair[k]), label="by")
    bids = list(fair)
    bids[k] += d  # the bids now sum to $1 + d; every ask one unit above its bid
    # (or empty at the top of the range)
    books: dict[str, Quote] = {
        t: (b, b + 1 if b < TOP else None) for t, b in zip(s.tickers, bids, strict=True)
    }
    (v,) = check_event(s, books)
    assert v.kind == EXCLUSIVE_BIDS_ABOVE_ONE and v.amount == usd(d)


@st.composite
def any_quote(draw: st.DrawFn) -> Quote:
    bid = draw(st.none() | st.integers(1, TOP - 1))
    ask = draw(st.none() | st.integers((bid or 0) + 1, TOP))
    return (bid, ask)


def brute_force_ladder(
    s: EventStructure, books: dict[str, Quote], fee: Decimal, tolerance: int | None
) -> list[tuple[str, tuple[str, ...], Decimal, Decimal]]:
    """Every pair i < j checked directly: the definition the pruned scan must agree with."""
    out: list[tuple[str, tuple[str, ...], Decimal, Decimal]] = []
    for i in range(s.n):
        for j in range(i + 1, s.n):
            (bl, al), (bh, ah) = books[s.tickers[i]], books[s.tickers[j]]
            pair = (s.tickers[i], s.tickers[j])
            if al is not None and bh is not None and usd(bh - al) > 2 * fee:
                out.append((LADDER_NOT_MONOTONE, pair, usd(bh - al), 2 * fee))
            elif tolerance is not None and None not in (bl, al, bh, ah):
                gap = Decimal(bh + ah - bl - al) / 2  # type: ignore[operator]
                if gap > tolerance:
                    out.append((LADDER_MIDS_NOT_MONOTONE, pair, gap / PRICE_SCALE, Decimal(0)))
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(any_quote(), min_size=2, max_size=8),
    st.sampled_from([Decimal(0), Decimal("0.0001"), Decimal("0.01")]),
    st.none() | st.integers(0, 300),
)
def test_the_ladder_scan_finds_every_pair_the_definition_does(
    quotes: list[Quote], fee: Decimal, tolerance: int | None
) -> None:
    s = ladder(len(quotes))
    books = dict(zip(s.tickers, quotes, strict=True))
    got = [
        (v.kind, v.tickers, v.amount, v.fees)
        for v in check_event(s, books, fee_per_contract=lambda p: fee, mid_tolerance=tolerance)
    ]
    assert got == brute_force_ladder(s, books, fee, tolerance)
