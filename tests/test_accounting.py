"""Position accounting: average-cost realised PnL, fees, settlement, marked PnL."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.types import Fill, Side
from cfa.runtime.accounting import Book


def _fill(side: Side, price: int, count: int, fee: str = "0") -> Fill:
    return Fill("f", "o", "c", "T", side, price, count, Decimal(fee), False, 0.0, 0)


def test_round_trip_realises_the_spread_minus_fees() -> None:
    b = Book()
    b.on_fill(_fill(Side.BID, 4800, 1000, "0.05"))  # buy 10 @ 0.48
    b.on_fill(_fill(Side.ASK, 5200, 1000, "0.05"))  # sell 10 @ 0.52
    assert b.inventory == 0
    assert b.realized == Decimal("0.30")  # 10 * 0.04 - 0.10
    assert b.cash == Decimal("0.40")
    assert b.marked(0.5) == Decimal("0.30")
    assert b.max_abs_inventory == 1000 and b.fills == 2 and b.volume == 2000


def test_flip_through_zero_and_settle() -> None:
    b = Book()
    b.on_fill(_fill(Side.ASK, 6000, 500))  # short 5 @ 0.60
    b.on_fill(_fill(Side.BID, 5000, 800))  # cover 5 (+0.50), long 3 @ 0.50
    assert b.inventory == 300 and b.realized == Decimal("0.5") and b.avg_price == Decimal("0.5")
    payout = b.settle(yes_wins=True)
    assert payout == Decimal(3) and b.inventory == 0
    assert b.realized == Decimal("2.0")  # 0.5 + 3 * (1 - 0.5)
    # cash: +3.00 - 4.00 + 3.00 = 2.00 == realised (no fees)
    assert b.cash == b.realized


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([Side.BID, Side.ASK]), st.integers(100, 9900), st.integers(1, 2000)
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_realised_equals_cash_after_settlement(
    fills: list[tuple[Side, int, int]], yes: bool
) -> None:
    b = Book()
    for side, price, count in fills:
        b.on_fill(_fill(side, price, count, "0.01"))
    b.settle(yes)
    assert abs(b.realized - (b.cash - b.fees)) < Decimal("1e-12")
