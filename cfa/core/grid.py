"""A market's price grid (Kalshi ``price_ranges``) and Kalshi's trading fees.

The grid is exact: bands hold integer price units ($0.0001), so rounding a model price to the grid
is integer arithmetic after one guarded float-to-int step. Never assume 1-99 cents: the grid is
read from the market's ``price_ranges``. The tradable prices are the grid points strictly inside
the whole range (for ``linear_cent`` over $0-$1: $0.01 ... $0.99).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from decimal import ROUND_FLOOR, Decimal

from cfa.core.types import (
    PRICE_SCALE,
    QTY_SCALE,
    CfaValueError,
    FeeSchedule,
    Price,
    PriceRange,
    Qty,
    ceil_dollars,
    format_price,
    parse_price,
    price_to_decimal,
)

_EPS = 1e-6
"""Tolerance, in fractions of a tick, for float model prices that land a hair off a grid point."""

STRUCTURES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "linear_cent": (("0.0000", "1.0000", "0.0100"),),
    "deci_cent": (("0.0000", "1.0000", "0.0010"),),
    "tapered_deci_cent": (
        ("0.0000", "0.1000", "0.0010"),
        ("0.1000", "0.9000", "0.0100"),
        ("0.9000", "1.0000", "0.0010"),
    ),
}
"""Kalshi's named price-level structures as ``price_ranges`` (start, end, step in dollars)."""


class PriceGrid:
    """The valid order prices of one market.

    Contract: every price this class returns is a grid point strictly inside the range
    (``lo <= p <= hi``); ``floor``/``ceil`` return ``None`` when no such point exists on the
    requested side.
    """

    __slots__ = ("_bands", "hi", "lo", "ranges")

    def __init__(self, ranges: Iterable[PriceRange]) -> None:
        bands = tuple(ranges)
        if not bands:
            raise CfaValueError("price_ranges: empty")
        for i, b in enumerate(bands):
            if b.step <= 0:
                raise CfaValueError(f"price_ranges[{i}]: step must be positive")
            if b.end <= b.start:
                raise CfaValueError(f"price_ranges[{i}]: end must be above start")
            if (b.end - b.start) % b.step:
                raise CfaValueError(f"price_ranges[{i}]: step does not divide end - start")
            if i and b.start != bands[i - 1].end:
                raise CfaValueError(f"price_ranges[{i}]: must start where the previous band ends")
        self.ranges = bands
        self._bands = tuple((b.start, b.end, b.step) for b in bands)
        self.lo: Price = bands[0].start + bands[0].step
        self.hi: Price = bands[-1].end - bands[-1].step
        if self.lo > self.hi:
            raise CfaValueError("price_ranges: no tradable price strictly inside the range")

    @classmethod
    def from_price_ranges(cls, ranges: Iterable[Mapping[str, object]]) -> PriceGrid:
        """Build from Kalshi's ``price_ranges`` (``[{"start", "end", "step"}]`` dollar strings)."""
        out: list[PriceRange] = []
        for i, r in enumerate(ranges):
            try:
                start, end, step = r["start"], r["end"], r["step"]
            except (KeyError, TypeError) as exc:
                raise CfaValueError(f"price_ranges[{i}]: needs start, end and step") from exc
            out.append(
                PriceRange(
                    parse_price(str(start), f"price_ranges[{i}].start"),
                    parse_price(str(end), f"price_ranges[{i}].end"),
                    parse_price(str(step), f"price_ranges[{i}].step"),
                )
            )
        return cls(out)

    @classmethod
    def from_structure(cls, name: str) -> PriceGrid:
        """Build from a named Kalshi price-level structure (``linear_cent``, ``deci_cent``, ...)."""
        try:
            spec = STRUCTURES[name]
        except KeyError as exc:
            known = ", ".join(sorted(STRUCTURES))
            raise CfaValueError(f"unknown price_level_structure {name!r} (known: {known})") from exc
        return cls.from_price_ranges({"start": s, "end": e, "step": t} for s, e, t in spec)

    def as_price_ranges(self) -> list[dict[str, str]]:
        """Kalshi's wire shape of this grid."""
        return [
            {
                "start": format_price(b.start),
                "end": format_price(b.end),
                "step": format_price(b.step),
            }
            for b in self.ranges
        ]

    def __repr__(self) -> str:
        return f"PriceGrid({self.as_price_ranges()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PriceGrid) and self._bands == other._bands

    def __hash__(self) -> int:
        return hash(self._bands)

    # -- queries on integer prices -------------------------------------------------------------

    def is_valid(self, p: Price) -> bool:
        """True when ``p`` is a tradable grid point (strictly inside the range)."""
        if p < self.lo or p > self.hi:
            return False
        for start, end, step in self._bands:
            if start <= p <= end:
                return (p - start) % step == 0
        return False

    def tick_above(self, p: Price) -> Price:
        """The grid step that applies when moving up from ``p``."""
        for start, end, step in self._bands:
            if start <= p < end:
                return step
        return self._bands[-1][2]

    def tick_below(self, p: Price) -> Price:
        """The grid step that applies when moving down from ``p``."""
        for start, end, step in self._bands:
            if start < p <= end:
                return step
        return self._bands[0][2]

    def next_up(self, p: Price) -> Price | None:
        """The smallest tradable price strictly above ``p`` (``p`` need not be on the grid)."""
        q = self.ceil_units(p + 1)
        return q if q is not None and q <= self.hi else None

    def next_down(self, p: Price) -> Price | None:
        """The largest tradable price strictly below ``p`` (``p`` need not be on the grid)."""
        q = self.floor_units(p - 1)
        return q if q is not None and q >= self.lo else None

    def floor_units(self, u: float) -> Price | None:
        """Like :meth:`floor` for a price already in (float) price units."""
        if u < self.lo:
            return None
        if u >= self.hi:
            return self.hi
        for start, end, step in self._bands:
            if u <= end:
                return start + math.floor((u - start) / step + _EPS) * step
        return self.hi  # pragma: no cover - unreachable: u < hi <= last end

    def ceil_units(self, u: float) -> Price | None:
        """Like :meth:`ceil` for a price already in (float) price units."""
        if u > self.hi:
            return None
        if u <= self.lo:
            return self.lo
        for start, end, step in self._bands:
            if u <= end:
                return start + math.ceil((u - start) / step - _EPS) * step
        return self.hi  # pragma: no cover - unreachable: u <= hi < last end

    # -- rounding model prices (dollars, float) ------------------------------------------------

    def floor(self, dollars: float) -> Price | None:
        """Round a model price down onto the grid (how bids round).

        Returns the highest tradable price ``<= dollars`` (``hi`` when above the range), or
        ``None`` when ``dollars`` is below the lowest tradable price.
        """
        return self.floor_units(dollars * PRICE_SCALE)

    def ceil(self, dollars: float) -> Price | None:
        """Round a model price up onto the grid (how asks round).

        Returns the lowest tradable price ``>= dollars`` (``lo`` when below the range), or
        ``None`` when ``dollars`` is above the highest tradable price.
        """
        return self.ceil_units(dollars * PRICE_SCALE)


# -- fees ---------------------------------------------------------------------------------------

_FEE_PRECISION = Decimal("0.0001")
_CENT = Decimal("0.01")


def _fee(coeff: Decimal, schedule: FeeSchedule, price: Price, count: Qty) -> Decimal:
    if count < 0:
        raise CfaValueError(f"fee: negative count {count}")
    p = price_to_decimal(price)
    c = Decimal(count) / QTY_SCALE
    raw = coeff * schedule.multiplier * c * p * (1 - p)
    # Kalshi rounds the trade fee up to $0.0001, then the charge to the member's precision.
    trade_fee = ceil_dollars(raw, _FEE_PRECISION)
    return ceil_dollars(trade_fee, schedule.rounding)


def taker_fee(schedule: FeeSchedule, price: Price, count: Qty) -> Decimal:
    """Taker fee in dollars: ``ceil(taker_coeff · multiplier · C · P · (1 − P))``.

    ``C`` is contracts (``count`` is in 0.01-contract units), ``P`` the price in dollars. Kalshi
    rounds the trade fee up to $0.0001 and the charge up to ``schedule.rounding`` ($0.01).
    """
    return _fee(schedule.taker_coeff, schedule, price, count)


def maker_fee(schedule: FeeSchedule, price: Price, count: Qty) -> Decimal:
    """Maker fee in dollars; zero unless the series charges makers (``*_with_maker_fees``).

    Same rounding as :func:`taker_fee` with ``maker_coeff`` (0.0175 by default).
    """
    if not schedule.charges_maker:
        return Decimal(0)
    return _fee(schedule.maker_coeff, schedule, price, count)


def trade_fee(schedule: FeeSchedule, price: Price, count: Qty, *, is_taker: bool) -> Decimal:
    """The fee model's charge for one fill before balance rounding: the coefficient (taker, or
    maker where the series charges makers, else 0) times ``C·P·(1−P)``, rounded up to $0.0001."""
    if count < 0:
        raise CfaValueError(f"fee: negative count {count}")
    if not is_taker and not schedule.charges_maker:
        return Decimal(0)
    coeff = schedule.taker_coeff if is_taker else schedule.maker_coeff
    p = price_to_decimal(price)
    raw = coeff * schedule.multiplier * (Decimal(count) / QTY_SCALE) * p * (1 - p)
    return ceil_dollars(raw, _FEE_PRECISION)


def net_fee(
    revenue: Decimal, fee: Decimal, accumulated: Decimal, precision: Decimal
) -> tuple[Decimal, Decimal]:
    """Kalshi's fee rounding for one fill of an order (``getting_started/fee_rounding``).

    ``revenue`` is the fill's signed cash change before fees (negative for a buyer), ``fee`` its
    :func:`trade_fee`, ``accumulated`` the order's rounding overpayment so far, ``precision``
    the member's balance precision ($0.01, or $0.0001 for direct members). The balance moves by
    ``floor(revenue − fee)`` to the precision; the difference is a rounding fee added to the
    accumulator, which refunds a whole cent each time it exceeds $0.01, so the fees of many
    small fills converge to those of one equivalent fill. Returns ``(net fee, accumulator)``;
    the net fee is never negative.
    """
    change = revenue - fee
    floored = (change / precision).to_integral_value(rounding=ROUND_FLOOR) * precision
    rounding = change - floored
    accumulated += rounding
    rebate = Decimal(0)
    if accumulated > _CENT:
        rebate = _CENT
        accumulated -= _CENT
    return max(fee + rounding - rebate, Decimal(0)), accumulated


def maker_fee_rate(schedule: FeeSchedule) -> float:
    """Per-contract maker coefficient of ``P·(1 − P)`` as a float (0 when makers pay nothing)."""
    if not schedule.charges_maker:
        return 0.0
    return float(schedule.maker_coeff * schedule.multiplier)


def maker_fee_per_contract(rate: float, p: float) -> float:
    """Expected maker fee per contract in dollars at ``p`` dollars: ``rate·p·(1−p)``.

    The fast path's spread floor. Kalshi's per-order fee accumulator (:func:`net_fee`) refunds
    the rounding of each fill, so over an order's fills the charge converges to the unrounded
    fee; at most one cent per order is left over, which this ignores.
    """
    if rate <= 0.0:
        return 0.0
    return rate * p * (1.0 - p)
