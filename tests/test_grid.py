"""Price grids from Kalshi price_ranges, exact rounding, and Kalshi fees."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.grid import (
    PriceGrid,
    maker_fee,
    maker_fee_per_contract,
    net_fee,
    taker_fee,
    trade_fee,
)
from cfa.core.types import (
    QTY_SCALE,
    CfaValueError,
    FeeSchedule,
    format_price,
    format_qty,
    parse_price,
    parse_qty,
)

TAPERED = PriceGrid.from_structure("tapered_deci_cent")
LINEAR = PriceGrid.from_structure("linear_cent")
DECI = PriceGrid.from_structure("deci_cent")


def test_price_and_count_parsing_is_exact() -> None:
    assert parse_price("0.5600") == 5600
    assert parse_price("0.056") == 560
    assert parse_price("0.560000") == 5600
    assert format_price(5600) == "0.5600"
    assert parse_qty("58.30") == 5830
    assert parse_qty("-54.00") == -5400
    assert format_qty(1000) == "10.00"
    for bad, what in [
        ("0.00005", "finer"),
        ("1.5", "outside"),
        ("abc", "not a number"),
        ("NaN", "finite"),
    ]:
        with pytest.raises(CfaValueError, match=what):
            parse_price(bad, "yes_bid_dollars")
    with pytest.raises(CfaValueError, match="delta_fp"):
        parse_qty("1.005", "delta_fp")


def test_grid_from_recorded_price_ranges() -> None:
    g = PriceGrid.from_price_ranges([{"end": "1.0000", "start": "0.0000", "step": "0.0010"}])
    assert g == DECI
    assert (g.lo, g.hi) == (10, 9990)
    assert g.as_price_ranges() == [{"start": "0.0000", "end": "1.0000", "step": "0.0010"}]


def test_linear_cent_is_one_to_99_cents() -> None:
    assert (LINEAR.lo, LINEAR.hi) == (100, 9900)
    assert LINEAR.floor(0.567) == 5600 and LINEAR.ceil(0.561) == 5700
    assert LINEAR.floor(0.56) == 5600 and LINEAR.ceil(0.56) == 5600  # no float drift
    assert LINEAR.floor(0.005) is None and LINEAR.ceil(0.995) is None
    assert LINEAR.floor(1.5) == 9900 and LINEAR.ceil(-1.0) == 100


def test_tapered_grid_steps() -> None:
    assert (TAPERED.lo, TAPERED.hi) == (10, 9990)
    assert TAPERED.floor(0.0555) == 550 and TAPERED.ceil(0.0555) == 560
    assert TAPERED.floor(0.555) == 5500 and TAPERED.ceil(0.555) == 5600
    assert TAPERED.floor(0.9555) == 9550 and TAPERED.ceil(0.9555) == 9560
    assert TAPERED.next_up(990) == 1000 and TAPERED.next_up(1000) == 1100
    assert TAPERED.next_down(1000) == 990 and TAPERED.next_down(9000) == 8900
    assert TAPERED.next_up(9000) == 9010
    assert TAPERED.is_valid(1100) and not TAPERED.is_valid(1110) and TAPERED.is_valid(9010)
    assert not TAPERED.is_valid(0) and not TAPERED.is_valid(10_000)
    assert TAPERED.next_up(TAPERED.hi) is None and TAPERED.next_down(TAPERED.lo) is None


@pytest.mark.parametrize(
    "ranges, message",
    [
        ([], "empty"),
        ([{"start": "0.0000", "end": "1.0000", "step": "0.0000"}], "positive"),
        ([{"start": "0.0000", "end": "1.0000", "step": "0.0300"}], "divide"),
        (
            [
                {"start": "0.0000", "end": "0.1000", "step": "0.0010"},
                {"start": "0.2000", "end": "1.0000", "step": "0.0100"},
            ],
            "previous band",
        ),
        ([{"start": "0.0000", "end": "1.0000"}], "needs start, end and step"),
        ([{"start": "0.0000", "end": "x", "step": "0.01"}], r"price_ranges\[0\].end"),
    ],
)
def test_invalid_price_ranges_are_named(ranges: list[dict[str, str]], message: str) -> None:
    with pytest.raises(CfaValueError, match=message):
        PriceGrid.from_price_ranges(ranges)


def test_unknown_structure() -> None:
    with pytest.raises(CfaValueError, match="known: deci_cent"):
        PriceGrid.from_structure("quarter_cent")


@settings(max_examples=500, deadline=None)
@given(
    name=st.sampled_from(["linear_cent", "deci_cent", "tapered_deci_cent"]),
    x=st.floats(min_value=-0.5, max_value=1.5, allow_nan=False),
)
def test_rounding_lands_on_the_grid(name: str, x: float) -> None:
    g = PriceGrid.from_structure(name)
    f, c = g.floor(x), g.ceil(x)
    if f is not None:
        assert g.is_valid(f)
        assert f <= x * 10_000 + 1e-6 or f == g.hi
        nxt = g.next_up(f)
        assert nxt is None or nxt > x * 10_000 - 1e-6
    if c is not None:
        assert g.is_valid(c)
        assert c >= x * 10_000 - 1e-6 or c == g.lo


# -- fees ----------------------------------------------------------------------------------------

MAKER = FeeSchedule(fee_type="quadratic_with_maker_fees")
GENERAL = FeeSchedule(fee_type="quadratic")


@pytest.mark.parametrize(
    "price, n, taker, maker",
    [  # models-and-results.md §6.1 worked values
        ("0.05", 1, "0.01", "0.01"),
        ("0.10", 1, "0.01", "0.01"),
        ("0.25", 1, "0.02", "0.01"),
        ("0.50", 1, "0.02", "0.01"),
        ("0.05", 100, "0.34", "0.09"),
        ("0.10", 100, "0.63", "0.16"),
        ("0.25", 100, "1.32", "0.33"),
        ("0.50", 100, "1.75", "0.44"),
        ("0.50", 10, "0.18", "0.05"),
    ],
)
def test_kalshi_fee_table(price: str, n: int, taker: str, maker: str) -> None:
    p = parse_price(price)
    assert taker_fee(MAKER, p, n * QTY_SCALE) == Decimal(taker)
    assert maker_fee(MAKER, p, n * QTY_SCALE) == Decimal(maker)
    assert maker_fee(GENERAL, p, n * QTY_SCALE) == 0
    # the fast path's floor is the unrounded fee (the per-order accumulator refunds rounding)
    x = float(Decimal(price))
    assert maker_fee_per_contract(0.0175, x) == pytest.approx(0.0175 * x * (1 - x))
    assert maker_fee_per_contract(0.0175, x) <= float(maker) / n + 1e-12


def test_fee_coefficients_are_configurable() -> None:
    index = FeeSchedule(fee_type="quadratic", multiplier=Decimal("0.5"))
    assert taker_fee(index, 5000, 100 * QTY_SCALE) == Decimal("0.88")  # 0.035*100*0.25 = 0.875
    direct = FeeSchedule(fee_type="quadratic", rounding=Decimal("0.0001"))
    assert taker_fee(direct, 5000, 10 * QTY_SCALE) == Decimal("0.1750")


def test_fee_rounding_accumulator_follows_kalshis_worked_example() -> None:
    # getting_started/fee_rounding: buy 3 @ $0.055 as three 1-lot fills, trade fee $0.0085 each,
    # balance precision $0.01: net fees 0.0150, 0.0050 (a cent refunded), 0.0150.
    acc = Decimal(0)
    nets = []
    for _ in range(3):
        net, acc = net_fee(Decimal("-0.055"), Decimal("0.0085"), acc, Decimal("0.01"))
        nets.append(net)
    assert nets == [Decimal("0.0150"), Decimal("0.0050"), Decimal("0.0150")]
    assert acc == Decimal("0.0095")


def test_many_small_maker_fills_cost_about_one_big_one() -> None:
    # 25 one-contract fills of one order at $0.42 cost what one 25-lot fill costs, within a cent
    one_fill = maker_fee(MAKER, parse_price("0.42"), 25 * QTY_SCALE)
    acc = Decimal(0)
    total = Decimal(0)
    for _ in range(25):
        fee = trade_fee(MAKER, parse_price("0.42"), QTY_SCALE, is_taker=False)
        net, acc = net_fee(Decimal("-0.42"), fee, acc, Decimal("0.01"))
        total += net
    assert abs(total - one_fill) <= Decimal("0.01")
    # per fill rounded up to the cent, it would have cost 25 cents
    assert total < 25 * maker_fee(MAKER, parse_price("0.42"), QTY_SCALE)
