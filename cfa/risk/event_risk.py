"""Event-level risk: the worst-case settlement loss over the outcomes of one Kalshi event.

Pure functions, no state: the per-market legs, the per-outcome losses of an event, its worst
case, and the hysteresis rule that puts an event's markets in ``REDUCE_ONLY`` near the limit.
Money in dollars (float: limits, not accounting), counts in count units (0.01 contract).

**Legs.** A market contributes a *leg*, ``(loss_if_yes, loss_if_no)``: what it loses at
settlement if it resolves YES, and if it resolves NO (:func:`leg_losses`). A position of ``q``
contracts (signed, net YES) at an average price ``c`` loses ``−q·(1 − c)`` on YES and ``q·c``
on NO (negative: a gain). A resting ask that fills sells YES at ``p``: it loses ``(1 − p)`` a
contract on YES (its collateral) and gains ``p`` on NO; a resting bid loses ``p`` on NO and gains
``1 − p`` on YES. A resting order may or may not fill, so each outcome counts it where it hurts
and not where it would help::

    loss_if_yes = −q·(1 − c) + ask_collateral
    loss_if_no  =   q·c      + bid_collateral

This is the exact worst case over which resting orders fill (a partial fill lies between none
and all). As a consequence, adding a resting order never lowers any outcome's loss: an order
"hedges" at the event level when it raises only outcomes that are not the worst.

**Against** :func:`cfa.risk.gate.dollars_at_risk`. That figure is
``max(q⁺·c + bid_collateral, q⁻·(1 − c) + ask_collateral)`` with ``q⁺ = max(q, 0)`` and
``q⁻ = max(−q, 0)``: it drops the position's *gain* on the outcome where the position wins.
For ``q ≥ 0``, ``loss_if_no`` is the first term exactly and ``loss_if_yes = ask_collateral −
q·(1 − c)`` is at most the second, so ``max(leg) ≤ dollars_at_risk`` with equality unless the
maximum of the latter is its second term with ``q > 0`` (resting asks worth more than the long
position's cost plus the bids): there the long position's gain on YES pays for part of the
asks' loss, and the leg is tighter by ``min(q·(1 − c), ask_collateral − q·c − bid_collateral)``.
Symmetrically for ``q < 0``. With only one side at risk (flat, or no resting order on the side
the position wins) the two agree. Both are ``≥ 0`` for one market with ``0 ≤ c ≤ 1``.

**Outcomes.** :func:`outcome_losses` adds the legs per outcome of
:meth:`cfa.core.events.EventStructure.outcomes` (a ladder's ``n + 1`` intervals, an exclusive
set's winners); :func:`worst_case_loss` is their maximum. It may be negative: a guaranteed
profit is a negative loss, and the limit compares the maximum as it is. For an ``INDEPENDENT``
event nothing ties the markets together, and the worst case is ``Σ max(yes_i, no_i)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cfa.core.events import EventKind, EventStructure
from cfa.core.types import QTY_SCALE, CfaValueError, TradingState

if TYPE_CHECKING:
    from cfa.core.types import Qty
    from cfa.risk.policy import Policy

Leg = tuple[float, float]
"""``(loss_if_yes, loss_if_no)`` of one market, dollars."""

EVENT_BREAKER_SOURCE = "breaker:event_worst_loss"
"""The source of the event breaker's ``REDUCE_ONLY`` holds (a breaker: only it, or a person,
lifts them)."""


def leg_losses(
    position: Qty, avg_price: float, bid_collateral: float, ask_collateral: float
) -> Leg:
    """``(loss_if_yes, loss_if_no)`` in dollars of one market (see the module docstring).

    ``position``: net YES contracts in count units; ``avg_price``: dollars per contract;
    ``*_collateral``: dollars tied up by the resting bids and asks
    (:func:`cfa.risk.gate.collateral`). Not validated: the fast path calls it on every change
    of position or orders, and the gate and :class:`cfa.risk.portfolio.Portfolio` refuse
    non-finite results.
    """
    q = position / QTY_SCALE
    return (ask_collateral - q * (1.0 - avg_price), q * avg_price + bid_collateral)


def _checked(ticker: str, leg: Leg) -> Leg:
    yes, no = leg
    if not (math.isfinite(yes) and math.isfinite(no)):
        raise CfaValueError(f"market {ticker}: leg losses must be finite, got {leg}")
    return yes, no


def outcome_losses(structure: EventStructure, legs: Mapping[str, Leg]) -> tuple[float, ...]:
    """The event's loss in dollars on each outcome of ``structure.outcomes()``, in that order.

    ``legs`` maps tickers to ``(loss_if_yes, loss_if_no)``; a market of the structure missing
    from it counts 0 on every outcome. Raises :class:`CfaValueError` for a ticker that is not
    one of the structure's markets, a non-finite leg, or an ``INDEPENDENT`` structure (it has
    no outcome list: see :func:`worst_case_loss`).
    """
    outcomes = structure.outcomes()
    index = {t: i for i, t in enumerate(structure.tickers)}
    totals = [0.0] * len(outcomes)
    for ticker, leg in legs.items():
        i = index.get(ticker)
        if i is None:
            raise CfaValueError(
                f"market {ticker} is not one of event {structure.event_ticker}'s markets"
            )
        yes, no = _checked(ticker, leg)
        for k, flags in enumerate(outcomes):
            totals[k] += yes if flags[i] else no
    return tuple(totals)


def worst_case_loss(structure: EventStructure, legs: Mapping[str, Leg]) -> float:
    """The event's largest loss over its outcomes, dollars (negative: a profit on every one).

    ``INDEPENDENT``: ``Σ max(yes_i, no_i)`` over the legs given (every market may lose at once).
    Same errors as :func:`outcome_losses`.
    """
    if structure.kind is EventKind.INDEPENDENT:
        members = set(structure.tickers)
        total = 0.0
        for ticker, leg in legs.items():
            if ticker not in members:
                raise CfaValueError(
                    f"market {ticker} is not one of event {structure.event_ticker}'s markets"
                )
            yes, no = _checked(ticker, leg)
            total += yes if yes > no else no
        return total
    return max(outcome_losses(structure, legs))


def event_breaker(
    worst: float, limit: float, current: TradingState, policy: Policy
) -> TradingState | None:
    """The event breaker's hysteresis: the state it should now hold for one event, or None.

    ``worst``: the worst-case loss of the event's *positions*, dollars
    (:meth:`cfa.risk.portfolio.Portfolio.event_position_worst_loss`; with resting orders
    counted the breaker would flap: ``REDUCE_ONLY`` cancels them, which lifts it, and quoting
    again trips it), ``limit``: dollars (normally ``policy.portfolio.max_event_worst_loss``,
    which the gate holds positions and resting orders to), ``current``: the
    breaker's own hold on the event (``states.event_holds(ev).get(EVENT_BREAKER_SOURCE,
    ACTIVE)``; the event's state works too, with the holds rules sorting out the rest).
    ``REDUCE_ONLY`` when ``current`` is ``ACTIVE`` and ``worst >= event_reduce_only_at ·
    limit``; ``ACTIVE`` when ``current`` is not ``ACTIVE`` and ``worst < event_resume_below ·
    limit``; otherwise None (nothing to change). A NaN ``worst`` trips (fails closed); the
    caller applies the result with ``set_event(ev, state, source=EVENT_BREAKER_SOURCE, ...)``.
    """
    p = policy.portfolio
    if current is TradingState.ACTIVE:
        if not worst < p.event_reduce_only_at * limit:
            return TradingState.REDUCE_ONLY
        return None
    if worst < p.event_resume_below * limit:
        return TradingState.ACTIVE
    return None
