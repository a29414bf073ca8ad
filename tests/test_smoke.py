"""The package imports and its core entry points answer."""

from cfa.core.quoting import optimal_spread, reservation_price


def test_public_formulas() -> None:
    assert reservation_price(100.0, 0.0, 0.1, 2.0, 1.0) == 100.0
    assert optimal_spread(0.1, 2.0, 1.5, 0.0) > 0.0
