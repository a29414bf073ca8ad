"""Domain types shared by every layer of cfa.

Units (stated once, here and in :mod:`cfa.core.quoting`):

* **Prices** at every edge (books, orders, fills, the grid) are integers in *price units* of
  $0.0001 (``PRICE_SCALE = 10_000`` units per dollar). Kalshi's finest tick is $0.0001, so every
  valid Kalshi price is an exact integer here and no binary float can put a price off the grid.
  ``5600`` is $0.56. Prices are on the **YES leg** unless a field says otherwise.
* **Counts** (order sizes, book sizes, positions) are integers in *count units* of 0.01 contract
  (``QTY_SCALE = 100``), matching Kalshi's two-decimal ``*_fp`` strings. ``1000`` is 10 contracts.
* **Money** (cash, fees, PnL) is :class:`decimal.Decimal` dollars.
* **Time** is seconds since the Unix epoch as ``float`` (UTC). Durations are seconds.
* **Inventory** is net YES contracts: a NO position counts negative.

Records are frozen, slotted dataclasses: immutable messages passed between the exchange, the
loop, the risk gate and the audit store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import TypeAlias

PRICE_SCALE = 10_000
"""Price units per dollar: one unit is $0.0001."""
QTY_SCALE = 100
"""Count units per contract: one unit is 0.01 contract."""
ONE_DOLLAR = PRICE_SCALE
"""A YES and a NO contract together settle at $1, i.e. ``ONE_DOLLAR`` price units."""

Price: TypeAlias = int
Qty: TypeAlias = int

_PRICE_Q = Decimal(1) / PRICE_SCALE
_QTY_Q = Decimal(1) / QTY_SCALE


class CfaValueError(ValueError):
    """A value from outside (a feed, a file, a user) is malformed; the message names it."""


def _to_decimal(value: str | Decimal | int | float, what: str) -> Decimal:
    if isinstance(value, bool):
        raise CfaValueError(f"{what}: expected a number, got a bool")
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise CfaValueError(f"{what}: not a number: {value!r}") from exc
    if not d.is_finite():
        raise CfaValueError(f"{what}: not a finite number: {value!r}")
    return d


def parse_price(value: str | Decimal | int | float, what: str = "price") -> Price:
    """Parse a dollar amount (``"0.5600"``) into price units; it must be a multiple of $0.0001.

    Accepts the range ``[0, 1]`` (Kalshi's price range; orders are further restricted by the
    market's grid). Raises :class:`CfaValueError` naming ``what`` otherwise.
    """
    d = _to_decimal(value, what)
    scaled = d * PRICE_SCALE
    if scaled != scaled.to_integral_value():
        raise CfaValueError(f"{what}: {value!r} is finer than $0.0001")
    p = int(scaled)
    if not 0 <= p <= ONE_DOLLAR:
        raise CfaValueError(f"{what}: {value!r} is outside [0, 1] dollars")
    return p


def format_price(p: Price) -> str:
    """Price units to Kalshi's dollar string with four decimals: ``5600 -> "0.5600"``."""
    return str((Decimal(p) * _PRICE_Q).quantize(_PRICE_Q))


def price_to_decimal(p: Price) -> Decimal:
    """Price units to exact dollars."""
    return Decimal(p) * _PRICE_Q


def parse_qty(value: str | Decimal | int | float, what: str = "count") -> Qty:
    """Parse a fixed-point count (``"10.00"``, signed allowed) into count units (0.01 contract)."""
    d = _to_decimal(value, what)
    scaled = d * QTY_SCALE
    if scaled != scaled.to_integral_value():
        raise CfaValueError(f"{what}: {value!r} is finer than 0.01 contract")
    return int(scaled)


def format_qty(q: Qty) -> str:
    """Count units to Kalshi's fixed-point string with two decimals: ``1000 -> "10.00"``."""
    return str((Decimal(q) * _QTY_Q).quantize(_QTY_Q))


def contracts(n: float | int) -> Qty:
    """Whole or fractional contracts to count units, rounded to 0.01 contract."""
    return round(n * QTY_SCALE)


def notional(price: Price, qty: Qty) -> Decimal:
    """Exact dollar value of ``qty`` count units at ``price`` price units."""
    return Decimal(price * qty) / (PRICE_SCALE * QTY_SCALE)


def ceil_dollars(amount: Decimal, step: Decimal) -> Decimal:
    """Round ``amount`` up to a multiple of ``step`` dollars (e.g. ``Decimal("0.01")``)."""
    return (amount / step).to_integral_value(rounding=ROUND_CEILING) * step


class Side(enum.StrEnum):
    """Side of an order on the YES leg: ``bid`` buys YES, ``ask`` sells YES (= buys NO)."""

    BID = "bid"
    ASK = "ask"

    @property
    def sign(self) -> int:
        """+1 for a bid (adds YES inventory), -1 for an ask."""
        return 1 if self is Side.BID else -1

    @property
    def opposite(self) -> Side:
        return Side.ASK if self is Side.BID else Side.BID


class Outcome(enum.StrEnum):
    """Which contract a book ladder or a settlement refers to."""

    YES = "yes"
    NO = "no"


class OrderStatus(enum.StrEnum):
    """Kalshi's order states."""

    RESTING = "resting"
    CANCELED = "canceled"
    EXECUTED = "executed"


class TradingState(enum.StrEnum):
    """Trading state of a market or of the whole process (as in NautilusTrader's risk engine)."""

    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class PriceRange:
    """One band of a market's price grid: prices ``start..end`` on multiples of ``step``."""

    start: Price
    end: Price
    step: Price


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """A series' fee terms (Kalshi ``fee_type`` and ``fee_multiplier``).

    ``taker_coeff`` and ``maker_coeff`` are the per-contract coefficients of ``C·P·(1−P)``.
    Makers pay only where ``fee_type`` includes maker fees.
    """

    fee_type: str = "quadratic"
    multiplier: Decimal = Decimal(1)
    taker_coeff: Decimal = Decimal("0.07")
    maker_coeff: Decimal = Decimal("0.0175")
    rounding: Decimal = Decimal("0.01")
    """Charged fees are rounded up to this many dollars ($0.01 for non-direct members)."""

    @property
    def charges_maker(self) -> bool:
        return "maker" in self.fee_type


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """Static description of one binary market, from Kalshi's Market and Series objects."""

    ticker: str
    event_ticker: str
    series_ticker: str
    title: str
    price_ranges: tuple[PriceRange, ...]
    close_ts: float
    open_ts: float = 0.0
    price_level_structure: str = "linear_cent"
    fee: FeeSchedule = field(default_factory=FeeSchedule)
    subtitle: str = ""
    rules: str = ""
    status: str = "active"
    exchange_index: int = 0
    """Kalshi exchange shard the market trades on (0: the default shard; the simulator's)."""
    strike_type: str = ""
    """Kalshi's ``strike_type`` (``greater``, ``between``, …; empty when unknown)."""
    floor_strike: float | None = None
    """Kalshi's ``floor_strike``: the strike of an "above" market, the floor of a range."""
    cap_strike: float | None = None
    """Kalshi's ``cap_strike``: the cap of a range or of a "below" market."""
    mutually_exclusive: bool = False
    """The market's event is mutually exclusive (Kalshi's event ``mutually_exclusive``): at
    most one of its markets resolves YES (see :mod:`cfa.core.events`)."""
    exhaustive: bool = False
    """With ``mutually_exclusive``: exactly one market of the event resolves YES."""


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Full order book: bid ladders for YES (YES prices) and NO (NO prices), ascending."""

    ticker: str
    seq: int
    ts: float
    yes: tuple[tuple[Price, Qty], ...]
    no: tuple[tuple[Price, Qty], ...]


@dataclass(frozen=True, slots=True)
class BookDelta:
    """Signed change of resting size at one price of one ladder (``price`` in that leg's terms)."""

    ticker: str
    seq: int
    ts: float
    outcome: Outcome
    price: Price
    delta: Qty
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade. ``taker_side`` is the taker's YES-leg side (bid = taker bought YES)."""

    ticker: str
    trade_id: str
    ts: float
    price: Price
    count: Qty
    taker_side: Side


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A limit order on the YES leg, identified by a client order id chosen by cfa."""

    ticker: str
    client_order_id: str
    side: Side
    price: Price
    count: Qty
    post_only: bool = True
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the exchange knows it."""

    order_id: str
    client_order_id: str
    ticker: str
    side: Side
    price: Price
    initial_count: Qty
    remaining_count: Qty
    fill_count: Qty
    status: OrderStatus
    ts: float


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of our order. ``fee`` in dollars; ``post_position`` in count units."""

    fill_id: str
    order_id: str
    client_order_id: str
    ticker: str
    side: Side
    price: Price
    count: Qty
    fee: Decimal
    is_taker: bool
    ts: float
    post_position: Qty


@dataclass(frozen=True, slots=True)
class Position:
    """Net YES position in one market (count units) with its realised PnL and fees (dollars)."""

    ticker: str
    position: Qty
    realized_pnl: Decimal
    fees_paid: Decimal


@dataclass(frozen=True, slots=True)
class Settlement:
    """A market resolved: ``result`` YES pays $1 per YES contract, NO pays $1 per NO contract."""

    ticker: str
    result: Outcome
    ts: float


BLIND_BOOK = "book_resync"
"""The :attr:`MarketStatus.reason` of a market whose book fell out of sequence (a gap, a
resync, a reconnect): the venue has not stopped trading, but no quote may rest on a stale book,
so the loop cancels its resting orders and places nothing until the fresh snapshot, after
which a ``book_resynced`` status opens the market again."""


@dataclass(frozen=True, slots=True)
class MarketStatus:
    """The venue paused or reactivated trading in a market, or changed its price grid.

    ``active`` False: no order may be placed or amended (Kalshi: a deactivated market, or an
    exchange-wide trading or exchange pause); True: trading is open again, and then ``reason``
    says whether the venue cancelled every resting order on the way (Kalshi cancels all resting
    orders when it reactivates a paused market: docs getting_started/market_lifecycle).
    ``market``, when set, is the market's new description (a ``price_level_structure`` /
    ``price_ranges`` change): everything that depends on the grid is rebuilt from it. ``ts`` is
    the venue's time of the change when it gave one (epoch seconds).
    """

    ticker: str
    ts: float
    active: bool
    reason: str
    market: MarketInfo | None = None
