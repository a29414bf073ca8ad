"""Cross-market consistency of one event's order books, reported as signals (never traded).

The markets of an event are tied together (:mod:`cfa.core.events`), so their books must agree
with each other or someone can lock in a riskless profit by trading several of them at once:

* **ladder** (tickers in ascending strike, market ``i`` pays if the underlying ends above
  ``K_i``): a higher strike's YES is worth at most a lower strike's YES in every outcome, so the
  higher strike's best bid must not exceed the lower strike's best ask. When it does, buying
  the lower strike at its ask and selling the higher one at its bid costs
  ``ask_lo − bid_hi < 0`` and the position (long lower, short higher) never pays less than 0:
  a sure profit of ``bid_hi − ask_lo`` per contract (``ladder_not_monotone``). The softer
  ``ladder_mids_not_monotone`` flags a higher strike whose mid sits above a lower strike's mid
  by more than a tolerance: not a trade, a sign that one of the two books is off.
* **exclusive** set (at most one market pays): selling one YES of every market pays the sum of
  the bids and costs at most $1 at settlement, so a sum of bids above $1 is a sure profit
  (``exclusive_bids_above_one``). Buying one YES of every market for a sum of asks below $1 is a
  sure profit only when the set is *exhaustive* (exactly one pays); in a non-exhaustive set
  "none of them" can happen and the basket pays nothing, so ``exclusive_asks_below_one`` is
  flagged for exhaustive sets only.
* **independent** markets have no cross-market constraint: no check.

Prices are integer price units of $0.0001 (:data:`cfa.core.types.PRICE_SCALE`) on the YES leg;
``None`` stands for an empty side. A ticker of the structure missing from ``books`` counts as
an empty book; tickers in ``books`` that are not in the structure are ignored. A check that
needs a side that is empty is skipped (an exclusive set with one empty ask side is not
checked for asks). Amounts are exact :class:`~decimal.Decimal` dollars per contract of each
leg involved.

**Fees.** A violation is only money if it survives the fees of the trades that capture it.
:func:`check_event` takes ``fee_per_contract``: a function from a price (price units) to the
fee in dollars of taking one contract at that price (the trades that capture a violation
cross the spread: they are taker trades), and ``fee_allowance``: flat dollars per package
(e.g. slippage, or the cent of balance rounding Kalshi may keep per order). A violation is
flagged only when its amount is **strictly greater** than the package's fees, the sum of
``fee_per_contract`` over every leg traded plus ``fee_allowance``; :attr:`Violation.fees`
records that sum so the net edge is ``amount − fees``. Both default to zero: every structural
violation is flagged. :func:`taker_fee_per_contract` builds the function from a series' fee
schedule (Kalshi's parabolic taker fee for one contract, rounded up to $0.0001). Kalshi
charges fees per order, rounded up, so the fee of one contract overstates the per-contract
fee of a larger order slightly; pass your own function to model a size. The soft mid check is
not a trade and ignores fees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from cfa.core.events import EventKind, EventStructure
from cfa.core.grid import trade_fee
from cfa.core.types import PRICE_SCALE, QTY_SCALE, CfaValueError, FeeSchedule, Price

Quote = tuple[Price | None, Price | None]
"""A market's top of book: ``(best YES bid, best YES ask)`` in price units, ``None`` if empty."""

FeeFn = Callable[[Price], Decimal]
"""Fee in dollars of taking one contract at a price given in price units."""

LADDER_NOT_MONOTONE = "ladder_not_monotone"
LADDER_MIDS_NOT_MONOTONE = "ladder_mids_not_monotone"
EXCLUSIVE_ASKS_BELOW_ONE = "exclusive_asks_below_one"
EXCLUSIVE_BIDS_ABOVE_ONE = "exclusive_bids_above_one"

_ONE = Decimal(1)
_SCALE = Decimal(PRICE_SCALE)


@dataclass(frozen=True, slots=True)
class Violation:
    """One way an event's books contradict the event's structure.

    ``kind`` is one of the module's ``*_NOT_MONOTONE`` / ``EXCLUSIVE_*`` constants;
    ``tickers`` the markets involved (for a ladder pair: lower strike first); ``amount`` the
    size of the violation in dollars per contract of each leg (the sure profit before fees, or
    for the soft mid check how far the mids are out of order); ``fees`` the fees and allowance
    of the package that would capture it (zero for the soft check), so ``amount − fees`` is
    the net edge; ``message`` one human-readable line.
    """

    kind: str
    tickers: tuple[str, ...]
    amount: Decimal
    fees: Decimal
    message: str

    @property
    def net(self) -> Decimal:
        """``amount − fees``: the edge left after the package's fees, in dollars."""
        return self.amount - self.fees


def taker_fee_per_contract(schedule: FeeSchedule) -> FeeFn:
    """Kalshi's taker fee for one contract at each price under ``schedule``, in dollars.

    ``ceil(taker_coeff · multiplier · P · (1 − P))`` to $0.0001 (:func:`cfa.core.grid.trade_fee`
    for one contract, before the balance's cent rounding).
    """

    def fee(price: Price) -> Decimal:
        return trade_fee(schedule, price, QTY_SCALE, is_taker=True)

    return fee


def check_event(
    structure: EventStructure,
    books: Mapping[str, Quote],
    *,
    fee_per_contract: FeeFn | None = None,
    fee_allowance: Decimal | int = 0,
    mid_tolerance: Price | None = None,
) -> list[Violation]:
    """Every consistency violation of ``structure``'s books, in a deterministic order.

    ``books`` maps a ticker to its ``(best_bid, best_ask)`` in price units (``None`` for an
    empty side; each price in ``1 .. PRICE_SCALE − 1``, bid below ask). ``fee_per_contract``
    and ``fee_allowance`` (dollars, ≥ 0) set the fees a violation must exceed to be flagged
    (see the module docstring). ``mid_tolerance`` (price units, ≥ 0) turns on the soft
    ``ladder_mids_not_monotone`` check: a higher strike's mid above a lower strike's mid by
    more than the tolerance, for a pair not already reported as ``ladder_not_monotone``;
    ``None`` (the default) leaves it off.

    Ladder pairs are every ``i < j`` (not only neighbours), in order of ``i`` then ``j``; an
    exclusive set yields at most one violation of each kind. Raises
    :class:`~cfa.core.types.CfaValueError` for a malformed price, a crossed book, a negative
    or non-finite allowance or tolerance, or a fee function returning a bad fee.
    """
    allowance = _allowance(fee_allowance)
    if mid_tolerance is not None and (
        isinstance(mid_tolerance, bool) or not isinstance(mid_tolerance, int) or mid_tolerance < 0
    ):
        raise CfaValueError(
            f"mid_tolerance: expected a non-negative integer of price units, got {mid_tolerance!r}"
        )
    quotes = [_quote(t, books.get(t)) for t in structure.tickers]
    fees = _Fees(fee_per_contract, allowance)
    if structure.kind is EventKind.LADDER:
        return _check_ladder(structure, quotes, fees, mid_tolerance)
    if structure.kind is EventKind.EXCLUSIVE:
        return _check_exclusive(structure, quotes, fees)
    return []


def _check_ladder(
    structure: EventStructure,
    quotes: list[Quote],
    fees: _Fees,
    mid_tolerance: Price | None,
) -> list[Violation]:
    # A pair (i, j) can only be flagged if leg j's bid is above the lowest ask below it, or
    # its mid above the lowest mid below it by more than the tolerance: keep both running
    # minima and visit the pairs of leg j only then (linear in the legs when nothing is off).
    found: list[tuple[int, int, Violation]] = []
    min_ask: Price | None = None
    min_mid: Decimal | None = None
    for j, (bid_hi, ask_hi) in enumerate(quotes):
        mid_hi = _mid(bid_hi, ask_hi)
        crossed = bid_hi is not None and min_ask is not None and bid_hi > min_ask
        off = (
            mid_tolerance is not None
            and mid_hi is not None
            and min_mid is not None
            and mid_hi - min_mid > mid_tolerance
        )
        if crossed or off:
            for i in range(j):
                v = _ladder_pair(structure, quotes, i, j, fees, mid_tolerance)
                if v is not None:
                    found.append((i, j, v))
        if ask_hi is not None and (min_ask is None or ask_hi < min_ask):
            min_ask = ask_hi
        if mid_hi is not None and (min_mid is None or mid_hi < min_mid):
            min_mid = mid_hi
    found.sort(key=lambda f: (f[0], f[1]))
    return [v for _, _, v in found]


def _ladder_pair(
    structure: EventStructure,
    quotes: list[Quote],
    i: int,
    j: int,
    fees: _Fees,
    mid_tolerance: Price | None,
) -> Violation | None:
    """The violation of lower strike ``i`` against higher strike ``j`` (``i < j``), if any."""
    bid_lo, ask_lo = quotes[i]
    bid_hi, ask_hi = quotes[j]
    lo, hi = structure.tickers[i], structure.tickers[j]
    if ask_lo is not None and bid_hi is not None and bid_hi > ask_lo:
        amount = Decimal(bid_hi - ask_lo) / _SCALE
        cost = fees.of(ask_lo, bid_hi)
        if amount > cost:
            return Violation(
                LADDER_NOT_MONOTONE,
                (lo, hi),
                amount,
                cost,
                f"{hi} (higher strike) bid {_fmt(bid_hi)} above {lo} ask {_fmt(ask_lo)}: "
                f"buying {lo} and selling {hi} locks in ${amount} a contract (fees ${cost})",
            )
    if mid_tolerance is None:
        return None
    mid_lo = _mid(bid_lo, ask_lo)
    mid_hi = _mid(bid_hi, ask_hi)
    if mid_lo is None or mid_hi is None:
        return None
    gap = mid_hi - mid_lo  # price units, possibly a half unit
    if gap <= mid_tolerance:
        return None
    amount = gap / _SCALE
    return Violation(
        LADDER_MIDS_NOT_MONOTONE,
        (lo, hi),
        amount,
        Decimal(0),
        f"{hi} (higher strike) mid {_fmt(mid_hi)} above {lo} mid {_fmt(mid_lo)} by ${amount} "
        f"(tolerance {_fmt(Decimal(mid_tolerance))})",
    )


def _check_exclusive(
    structure: EventStructure, quotes: list[Quote], fees: _Fees
) -> list[Violation]:
    out: list[Violation] = []
    tickers = structure.tickers
    asks = [a for _, a in quotes]
    bids = [b for b, _ in quotes]
    if structure.exhaustive and all(a is not None for a in asks):
        full_asks = [a for a in asks if a is not None]
        total = Decimal(sum(full_asks)) / _SCALE
        amount = _ONE - total
        cost = fees.of(*full_asks)
        if amount > cost:
            out.append(
                Violation(
                    EXCLUSIVE_ASKS_BELOW_ONE,
                    tickers,
                    amount,
                    cost,
                    f"{structure.event_ticker}: YES asks of all {len(tickers)} outcomes sum to "
                    f"${total}: buy every outcome, collect $1 (${amount} a set, fees ${cost})",
                )
            )
    if all(b is not None for b in bids):
        full_bids = [b for b in bids if b is not None]
        total = Decimal(sum(full_bids)) / _SCALE
        amount = total - _ONE
        cost = fees.of(*full_bids)
        if amount > cost:
            out.append(
                Violation(
                    EXCLUSIVE_BIDS_ABOVE_ONE,
                    tickers,
                    amount,
                    cost,
                    f"{structure.event_ticker}: YES bids of all {len(tickers)} outcomes sum to "
                    f"${total}: sell every outcome, pay at most $1 (${amount} a set, "
                    f"fees ${cost})",
                )
            )
    return out


class _Fees:
    """The fees of a package: ``fee_per_contract`` over its legs plus the flat allowance."""

    __slots__ = ("_allowance", "_fn")

    def __init__(self, fn: FeeFn | None, allowance: Decimal) -> None:
        self._fn = fn
        self._allowance = allowance

    def of(self, *prices: Price) -> Decimal:
        total = self._allowance
        if self._fn is None:
            return total
        for p in prices:
            fee = self._fn(p)
            if not isinstance(fee, Decimal) or not fee.is_finite() or fee < 0:
                raise CfaValueError(
                    f"fee_per_contract({p}) returned {fee!r}: expected a finite Decimal ≥ 0"
                )
            total += fee
        return total


def _allowance(value: Decimal | int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise CfaValueError(f"fee_allowance: expected Decimal or int dollars, got {value!r}")
    d = Decimal(value)
    if not d.is_finite() or d < 0:
        raise CfaValueError(f"fee_allowance: expected finite dollars ≥ 0, got {value!r}")
    return d


def _quote(ticker: str, quote: Quote | None) -> Quote:
    if quote is None:
        return (None, None)
    try:
        bid, ask = quote
    except (TypeError, ValueError) as exc:
        raise CfaValueError(f"{ticker}: expected (best_bid, best_ask), got {quote!r}") from exc
    for side, p in (("bid", bid), ("ask", ask)):
        if p is None:
            continue
        if isinstance(p, bool) or not isinstance(p, int):
            raise CfaValueError(f"{ticker}: best {side} must be integer price units, got {p!r}")
        if not 0 < p < PRICE_SCALE:
            raise CfaValueError(
                f"{ticker}: best {side} {p} outside 1..{PRICE_SCALE - 1} price units"
            )
    if bid is not None and ask is not None and bid >= ask:
        raise CfaValueError(f"{ticker}: crossed or locked book, bid {bid} ≥ ask {ask}")
    return (bid, ask)


def _mid(bid: Price | None, ask: Price | None) -> Decimal | None:
    if bid is None or ask is None:
        return None
    return Decimal(bid + ask) / 2


def _fmt(p: Price | Decimal) -> str:
    return f"${(Decimal(p) / _SCALE).normalize():f}"
