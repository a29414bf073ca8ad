"""Order book: Kalshi's bid-only ladders, derived asks, sequence checks, own-order exclusion."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.book import BookSequenceError, OrderBook
from cfa.core.types import BookDelta, BookSnapshot, Outcome

# The documented REST example: YES bids 0.41/0.42, NO bids 0.45/0.56 -> YES ask = 1 - 0.56 = 0.44.
SNAP = BookSnapshot("T", 1, 0.0, ((4100, 1000), (4200, 1300)), ((4500, 2000), (5600, 1700)))


def _book() -> OrderBook:
    b = OrderBook("T")
    b.apply_snapshot(SNAP)
    return b


def test_derived_asks_mid_microprice_imbalance() -> None:
    b = _book()
    assert b.best_bid() == 4200 and b.best_ask() == 4400
    assert b.mid() == pytest.approx(0.43)
    # microprice = (0.42*17 + 0.44*13)/30
    assert b.microprice() == pytest.approx((0.42 * 17 + 0.44 * 13) / 30)
    assert b.imbalance(1) == pytest.approx((13 - 17) / 30)
    assert b.imbalance(5) == pytest.approx((23 - 37) / 60)
    assert b.asks(2) == [(4400, 1700), (5500, 2000)]
    assert b.bids(1) == [(4200, 1300)]


def test_deltas_update_best_and_remove_empty_levels() -> None:
    b = _book()
    b.apply_delta(BookDelta("T", 2, 1.0, Outcome.YES, 4300, 500))
    assert b.best_bid() == 4300
    b.apply_delta(BookDelta("T", 3, 2.0, Outcome.YES, 4300, -500))
    assert b.best_bid() == 4200 and 4300 not in b.yes
    b.apply_delta(BookDelta("T", 4, 3.0, Outcome.NO, 5600, -1700))
    assert b.best_ask() == 5500


def test_sequence_gap_and_negative_level_unsync_the_book() -> None:
    b = _book()
    with pytest.raises(BookSequenceError, match="expected seq 2"):
        b.apply_delta(BookDelta("T", 3, 1.0, Outcome.YES, 4300, 500))
    assert not b.synced
    with pytest.raises(BookSequenceError, match="before snapshot"):
        b.apply_delta(BookDelta("T", 4, 1.0, Outcome.YES, 4300, 500))
    b = _book()
    with pytest.raises(BookSequenceError, match="negative"):
        b.apply_delta(BookDelta("T", 2, 1.0, Outcome.YES, 4200, -5000))
    assert not b.synced


def test_own_orders_are_excluded_from_the_touch() -> None:
    b = _book()
    assert b.best_bid_excluding({4200: 1300}) == 4100
    assert b.best_bid_excluding({4200: 100}) == 4200
    assert b.best_ask_excluding({4400: 1700}) == 5500
    assert b.best_ask_excluding({}) == 4400


def test_empty_sides() -> None:
    b = OrderBook("T")
    b.apply_snapshot(BookSnapshot("T", 1, 0.0, (), ((5000, 100),)))
    assert b.best_bid() is None and b.mid() is None and b.microprice() is None
    assert b.imbalance() is None and b.best_ask() == 5000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([Outcome.YES, Outcome.NO]), st.integers(1, 99), st.integers(-500, 500)
        ),
        max_size=60,
    )
)
def test_incremental_best_matches_a_full_scan(moves: list[tuple[Outcome, int, int]]) -> None:
    b = _book()
    seq = 1
    for outcome, cents, delta in moves:
        ladder = b.yes if outcome is Outcome.YES else b.no
        price = cents * 100
        if ladder.get(price, 0) + delta < 0:
            delta = -ladder.get(price, 0)
        if delta == 0:
            continue
        seq += 1
        b.apply_delta(BookDelta("T", seq, float(seq), outcome, price, delta))
        assert b.best_bid() == (max(b.yes) if b.yes else None)
        assert b.best_ask() == (10_000 - max(b.no) if b.no else None)
        assert all(q > 0 for q in b.yes.values()) and all(q > 0 for q in b.no.values())
    assert b.snapshot().seq == seq


_levels = st.dictionaries(
    st.integers(1, 99).map(lambda c: c * 100), st.integers(1, 5000), max_size=8
)


@settings(max_examples=300, deadline=None)
@given(
    yes=_levels,
    no=_levels,
    own_bid=st.one_of(st.none(), st.tuples(st.integers(1, 99), st.integers(1, 6000))),
    own_ask=st.one_of(st.none(), st.tuples(st.integers(1, 99), st.integers(1, 6000))),
    pick=st.booleans(),
)
def test_others_touch_is_the_exclusion_of_our_orders(
    yes: dict[int, int],
    no: dict[int, int],
    own_bid: tuple[int, int] | None,
    own_ask: tuple[int, int] | None,
    pick: bool,
) -> None:
    """``others_touch`` (allocation-free) agrees with ``best_*_excluding`` and the level sizes
    less ours, wherever our orders rest: at the best (alone or sharing it), deeper, or off the
    book; an order larger than its level (a stale view) removes the level."""
    b = OrderBook("T")
    b.apply_snapshot(
        BookSnapshot("T", 1, 0.0, tuple(sorted(yes.items())), tuple(sorted(no.items())))
    )
    ob = None if own_bid is None else (own_bid[0] * 100, own_bid[1])
    oa = None if own_ask is None else (own_ask[0] * 100, own_ask[1])
    if pick and ob is not None and b.best_bid() is not None:
        ob = (b.best_bid(), ob[1])  # our bid at the best, where the exclusion matters most
    if pick and oa is not None and b.best_ask() is not None:
        oa = (b.best_ask(), oa[1])
    bb = b.best_bid() if ob is None else b.best_bid_excluding({ob[0]: ob[1]})
    ba = b.best_ask() if oa is None else b.best_ask_excluding({oa[0]: oa[1]})
    qb = 0 if bb is None else b.bid_size(bb) - (ob[1] if ob is not None and ob[0] == bb else 0)
    qa = 0 if ba is None else b.ask_size(ba) - (oa[1] if oa is not None and oa[0] == ba else 0)
    got = b.others_touch(
        None if ob is None else ob[0],
        0 if ob is None else ob[1],
        None if oa is None else oa[0],
        0 if oa is None else oa[1],
    )
    assert got == (bb, qb, ba, qa)
