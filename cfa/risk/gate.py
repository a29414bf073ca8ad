"""The risk gate: the only path from a market loop to an exchange.

Every order request is checked against the policy and the market's trading state and is either
accepted or denied with a reason code (:class:`Deny`). The gate is pure: it reads the
:class:`Exposure` it is given and keeps no clock; the caller records denials in the audit store.
Cancels never pass through the gate: reducing risk is always allowed (so does a cut of a
resting order's size at its price, a partial cancel).

The gate fails closed: a NaN or infinite number anywhere in the request or the exposure
(``Deny.NOT_FINITE``), a price or count that is not an integer number of units, a price outside
the market's price range (``Deny.PRICE_RANGE``: tradable prices lie strictly inside the range)
or off its grid (``Deny.OFF_GRID``), and a mid outside ``(0, 1)`` are all denied, so no limit
is ever skipped because a comparison with NaN came out false.

*Dollars at risk* of a market is its worst-case settlement loss if every resting order filled:
``max(long cost + collateral of resting bids, short cost + collateral of resting asks)``, where
a long YES position of ``q`` contracts bought at ``c`` costs ``q·c`` if NO wins, a short one
sold at ``c`` costs ``q·(1 − c)`` if YES wins, a resting bid at ``p`` ties up ``p`` per contract
and a resting ask ``1 − p``. Offsetting fills are ignored: the figure is conservative.

Two limits span an event. ``Deny.EVENT_EXPOSURE`` caps the *sum* of its markets' dollars at
risk (``portfolio.max_event_exposure``): coarse, as if every market could lose at once, which a
strike ladder or an exclusive set rules out. ``Deny.EVENT_WORST_LOSS`` caps the event's
worst-case loss over its outcomes (``portfolio.max_event_worst_loss``, see
:mod:`cfa.risk.event_risk`) when the caller passes the per-outcome fields of :class:`Exposure`:
an order is denied when, with it added, the worst case would exceed the limit **and** be higher
than without it. An order that leaves the worst case where it is (a hedge: it adds loss only on
outcomes that are not the worst) passes even above the limit, unless another limit denies it.
Both are skipped in ``REDUCE_ONLY``, like every exposure limit: an order that only brings the
position towards zero may not be blocked (unwinding one leg of a hedged pair can raise the
event's worst case for a while; forbidding it could leave no way out).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from itertools import compress
from operator import not_
from typing import TYPE_CHECKING

from cfa.core.types import (
    ONE_DOLLAR,
    PRICE_SCALE,
    QTY_SCALE,
    OrderRequest,
    Qty,
    Side,
    TradingState,
    contracts,
)

if TYPE_CHECKING:
    from cfa.core.grid import PriceGrid
    from cfa.risk.policy import Policy


class Deny(enum.StrEnum):
    """Reason codes for a denied order."""

    HALTED = "halted"
    REDUCE_ONLY = "reduce_only"
    ORDER_SIZE = "order_size"
    POSITION_LIMIT = "position_limit"
    NON_POSITIVE_SIZE = "non_positive_size"
    NO_MID = "no_mid"
    PRICE_BAND = "price_band"
    RESTING_EXPOSURE = "resting_exposure"
    DOLLARS_AT_RISK = "dollars_at_risk"
    GROSS_EXPOSURE = "gross_exposure"
    EVENT_EXPOSURE = "event_exposure"
    ORDER_RATE = "order_rate"
    NOT_FINITE = "not_finite"
    """A NaN or infinite number in the request or the exposure (mid, price, size, ...)."""
    PRICE_RANGE = "price_range"
    """The price is not strictly inside the market's price range (or not an integer)."""
    OFF_GRID = "off_grid"
    """The price is inside the range but not on the market's grid."""
    INVALID_SIZE = "invalid_size"
    """The count is not an integer number of count units."""
    EVENT_WORST_LOSS = "event_worst_loss"
    """The event's worst-case loss over its outcomes would exceed the limit, and rise."""
    EVENT_SHAPE = "event_shape"
    """The exposure's per-outcome fields differ in length (a caller's bug: fail closed)."""


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the gate needs to know about a market and the portfolio around it.

    Counts in count units (0.01 contract); money in dollars (float: limits, not accounting).
    ``resting_*`` and ``*_collateral`` describe the market's other resting orders (excluding one
    being replaced); ``others_at_risk`` and ``event_others_at_risk`` are the dollars at risk of
    every other market, and of the other markets of the same event.

    ``event_others_by_outcome`` holds, per outcome of the market's event, the loss in dollars of
    the event's *other* markets on that outcome, and ``event_yes`` whether this market resolves
    YES on it (:meth:`cfa.risk.portfolio.Portfolio.event_outcome_others` gives both). Empty:
    no event worst-case check.
    """

    position: Qty
    resting_bid: Qty = 0
    resting_ask: Qty = 0
    avg_price: float = 0.0
    bid_collateral: float = 0.0
    ask_collateral: float = 0.0
    mid: float | None = None
    others_at_risk: float = 0.0
    event_others_at_risk: float = 0.0
    orders_last_min: int = 0
    event_others_by_outcome: tuple[float, ...] = ()
    event_yes: tuple[bool, ...] = ()


def dollars_at_risk(
    position: Qty, avg_price: float, bid_collateral: float, ask_collateral: float
) -> float:
    """Worst-case settlement loss in dollars (see the module docstring)."""
    q = position / QTY_SCALE
    long_loss = (q * avg_price if q > 0 else 0.0) + bid_collateral
    short_loss = (-q * (1.0 - avg_price) if q < 0 else 0.0) + ask_collateral
    return long_loss if long_loss > short_loss else short_loss


def collateral(side: Side, price: int, count: Qty) -> float:
    """Dollars a resting order ties up: ``p·n`` for a bid, ``(1 − p)·n`` for an ask."""
    units = price if side is Side.BID else PRICE_SCALE - price
    return units * count / (PRICE_SCALE * QTY_SCALE)


class RiskGate:
    """Checks orders against a :class:`Policy`. Stateless apart from the policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.max_order: Qty = contracts(policy.market.max_order_size)
        self.max_position: Qty = contracts(policy.market.max_position)

    def check(
        self,
        req: OrderRequest,
        exposure: Exposure,
        state: TradingState,
        grid: PriceGrid | None = None,
    ) -> Deny | None:
        """None when ``req`` may go to the exchange, else the reason it may not.

        ``grid`` is the market's price grid; without one the price must lie strictly inside
        Kalshi's whole range, ``(0, 1)`` dollars. Pure and total: never raises on float or
        int inputs, finite or not (numbers so large that their sum overflows count as not
        finite).
        """
        pol = self.policy
        if state is TradingState.HALTED:
            return Deny.HALTED
        price = req.price
        count = req.count
        if type(price) is not int or type(count) is not int:
            return _bad_units(price, count)
        x = exposure
        mid = x.mid
        # one sum catches every NaN and infinity (either makes it NaN or infinite): no call
        s = (
            x.position
            + x.resting_bid
            + x.resting_ask
            + x.avg_price
            + x.bid_collateral
            + x.ask_collateral
            + x.others_at_risk
            + x.event_others_at_risk
            + x.orders_last_min
        )
        others = x.event_others_by_outcome
        if others:
            s += sum(others)
        if s - s != 0 or (mid is not None and mid - mid != 0):
            return Deny.NOT_FINITE
        if len(others) != len(x.event_yes):
            return Deny.EVENT_SHAPE
        if grid is None:
            if price <= 0 or price >= ONE_DOLLAR:
                return Deny.PRICE_RANGE
        elif price < grid.lo or price > grid.hi:
            return Deny.PRICE_RANGE
        elif not grid.is_valid(price):
            return Deny.OFF_GRID
        if count <= 0:
            return Deny.NON_POSITIVE_SIZE
        if count > self.max_order:
            return Deny.ORDER_SIZE
        if x.orders_last_min >= pol.breakers.max_orders_per_min:
            return Deny.ORDER_RATE
        pos = exposure.position
        bid = req.side is Side.BID
        if state is TradingState.REDUCE_ONLY:
            # Only orders that bring the position towards zero, never past it, resting included.
            if bid and (pos >= 0 or exposure.resting_bid + count > -pos):
                return Deny.REDUCE_ONLY
            if not bid and (pos <= 0 or exposure.resting_ask + count > pos):
                return Deny.REDUCE_ONLY
        elif (bid and pos + exposure.resting_bid + count > self.max_position) or (
            not bid and pos - exposure.resting_ask - count < -self.max_position
        ):
            return Deny.POSITION_LIMIT
        if mid is None or not 0.0 < mid < 1.0:
            return Deny.NO_MID
        if abs(price / PRICE_SCALE - mid) > pol.price_band + 1e-12:
            return Deny.PRICE_BAND
        new = collateral(req.side, price, count)
        if (
            exposure.bid_collateral + exposure.ask_collateral + new
            > pol.market.max_resting_exposure + 1e-9
        ):
            return Deny.RESTING_EXPOSURE
        bc = exposure.bid_collateral + (new if bid else 0.0)
        ac = exposure.ask_collateral + (0.0 if bid else new)
        risk = dollars_at_risk(pos, exposure.avg_price, bc, ac)
        if state is not TradingState.REDUCE_ONLY:
            if risk > pol.market.max_dollars_at_risk + 1e-9:
                return Deny.DOLLARS_AT_RISK
            if exposure.others_at_risk + risk > pol.portfolio.max_gross_exposure + 1e-9:
                return Deny.GROSS_EXPOSURE
            if exposure.event_others_at_risk + risk > pol.portfolio.max_event_exposure + 1e-9:
                return Deny.EVENT_EXPOSURE
            if others:
                # this market's leg (cfa.risk.event_risk.leg_losses) with the order added
                q = pos / QTY_SCALE
                c = exposure.avg_price
                yes = ac - q * (1.0 - c)
                no = bc + q * c
                limit = pol.portfolio.max_event_worst_loss + 1e-9
                # cheap bound first: the worst other outcome plus this market's worse side
                if max(others) + (yes if yes > no else no) > limit and _raises_worst(
                    others, x.event_yes, yes, no, new, bid, limit
                ):
                    return Deny.EVENT_WORST_LOSS
        return None


def _raises_worst(
    others: tuple[float, ...],
    flags: tuple[bool, ...],
    yes: float,
    no: float,
    new: float,
    bid: bool,
    limit: float,
) -> bool:
    """Whether this market's leg ``(yes, no)``, which includes an order of collateral ``new``
    (a bid if ``bid``), takes the event's worst-case loss above ``limit`` and above where it
    was without the order.

    The event's loss on outcome ``k`` is ``others[k] + (yes if flags[k] else no)``, so the
    worst case is ``max(Y + yes, N + no)`` with ``Y`` (``N``) the largest ``others[k]`` over the
    outcomes where this market is YES (NO). A bid adds ``new`` to ``no`` only, an ask to ``yes``
    only: the order raises the worst case exactly when the side it adds to becomes the worst.
    """
    y_max = max(compress(others, flags), default=-math.inf)
    n_max = max(compress(others, map(not_, flags)), default=-math.inf)
    raised, other = (n_max + no, y_max + yes) if bid else (y_max + yes, n_max + no)
    # after = max(raised, other), before = max(raised - new, other)
    return raised > limit and raised > other + 1e-9 and new > 1e-9


def _bad_units(price: object, count: object) -> Deny:
    """Why a price or count that is not an ``int`` is denied (bools are not counts)."""
    for v in (price, count):
        if isinstance(v, float) and not math.isfinite(v):
            return Deny.NOT_FINITE
    return Deny.OFF_GRID if type(price) is not int else Deny.INVALID_SIZE
