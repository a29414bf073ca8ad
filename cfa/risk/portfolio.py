"""Dollars at risk and marked PnL across markets, kept up to date incrementally (O(1) a change),
and the portfolio breakers (daily loss, drawdown) over them.

Each market loop reports its own dollars at risk (see :func:`cfa.risk.gate.dollars_at_risk`)
whenever its position or resting orders change; the gate reads the totals of the *other*
markets, overall and within the same event. Each loop also reports its marked PnL (dollars)
about once a second and on fills and settlement, and checks :meth:`Portfolio.check_loss`
right after: the daily-loss and drawdown breakers thus run on every market's clock, whatever
the shape of any book. :attr:`Portfolio.feed` is the dead-feed breaker for whoever watches the
whole stream (the session).

**Per outcome.** Each loop also reports its market's *leg*, ``(loss_if_yes, loss_if_no)``
(:func:`cfa.risk.event_risk.leg_losses`), with :meth:`Portfolio.update_legs`. The portfolio
keeps, per event registered with :meth:`Portfolio.set_structures` (a strike ladder or an
exclusive set), the event's loss on each of its outcomes, updated in O(outcomes of that event)
a change, and hands the gate the *other* markets' loss per outcome
(:meth:`Portfolio.event_outcome_others`, cached per market until the event changes). Markets of
no registered event, and of an ``INDEPENDENT`` one, are grouped by the event they report: their
worst case is ``Σ max(yes, no)``, and each sees its event as two outcomes (its own YES and NO)
with the others' sum on both. A second set of legs, the positions alone
(:meth:`Portfolio.update_position_legs`), feeds the event breaker: resting orders come and go
with every quote (``REDUCE_ONLY`` cancels most of them), and a breaker that counted them would
lift itself by cancelling and trip again by quoting. Sums are kept incrementally in floats:
they agree with a from-scratch computation to rounding (3e-11 dollars apart after a million
random changes of ±$150 legs on a ten-market ladder).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from cfa.core.events import EventKind, EventStructure
from cfa.core.types import CfaValueError
from cfa.risk.breakers import DeadFeed, PortfolioBreakers, Trip

if TYPE_CHECKING:
    from cfa.core.types import TradingState
    from cfa.risk.policy import Policy

_INDEPENDENT_FLAGS = (True, False)
"""The two outcomes a market of an independent event sees: its own YES, its own NO."""


class _Event:
    """One event's per-outcome totals (ladder, exclusive) or its sum of worst legs (independent).

    ``flags[market]``: the market's YES flag per outcome; ``totals``: the event's loss per
    outcome (empty for independent events, whose ``total`` is ``Σ max(yes, no)``); ``version``
    bumps on every change (it invalidates the per-market caches).
    """

    __slots__ = ("flags", "independent", "total", "totals", "version")

    def __init__(self, structure: EventStructure | None) -> None:
        self.independent = structure is None or structure.kind is EventKind.INDEPENDENT
        self.flags: dict[str, tuple[bool, ...]] = {}
        self.totals: list[float] = []
        self.total = 0.0
        self.version = 0
        if structure is not None and not self.independent:
            outcomes = structure.outcomes()
            self.totals = [0.0] * len(outcomes)
            for i, t in enumerate(structure.tickers):
                self.flags[t] = tuple(o[i] for o in outcomes)

    def add(self, market: str, yes: float, no: float) -> None:
        """Add the leg ``(yes, no)`` of ``market`` (negative values remove one)."""
        self.version += 1
        if self.independent:
            self.total += yes if yes > no else no
            return
        totals = self.totals
        for k, f in enumerate(self.flags[market]):
            totals[k] += yes if f else no


class _EventBook:
    """Legs of markets and, per event, the loss on each outcome, kept incrementally.

    The registered structures are shared with the portfolio (``registered``: market → event).
    """

    def __init__(self, structures: dict[str, EventStructure], registered: dict[str, str]) -> None:
        self.structures = structures
        self.registered = registered
        self.legs: dict[str, tuple[str, float, float]] = {}
        """Market → (event, loss_if_yes, loss_if_no) as last reported."""
        self.events: dict[str, _Event] = {}
        self.others: dict[str, tuple[int, tuple[float, ...], tuple[bool, ...]]] = {}
        """Market → (its event's version, others per outcome, YES flags): the gate's input."""

    def rebuild(self, structures: dict[str, EventStructure], registered: dict[str, str]) -> None:
        """Recompute every event's totals from the legs (after a change of structures)."""
        self.structures = structures
        self.registered = registered
        self.events = {}
        self.others = {}
        for market, (ev, yes, no) in list(self.legs.items()):
            ev = registered.get(market, ev)
            self.legs[market] = (ev, yes, no)
            self.event(ev).add(market, yes, no)

    def event(self, event: str) -> _Event:
        e = self.events.get(event)
        if e is None:
            e = self.events[event] = _Event(self.structures.get(event))
        return e

    def update(self, market: str, event: str, yes_loss: float, no_loss: float) -> bool:
        """Set ``market``'s leg; False when it was already that."""
        old = self.legs.get(market)
        if old is not None and old[0] == event and old[1] == yes_loss and old[2] == no_loss:
            return False
        if not (math.isfinite(yes_loss) and math.isfinite(no_loss)):
            raise CfaValueError(
                f"market {market}: leg losses must be finite, got ({yes_loss}, {no_loss})"
            )
        reg = self.registered.get(market)
        if reg != event and (reg is not None or event in self.structures):
            raise CfaValueError(
                f"market {market} belongs to event {reg}, not {event}"
                if reg is not None
                else f"market {market} is not one of the registered event {event}'s markets"
            )
        if old is not None and old[0] != event:
            self._remove(market, old)
            old = None
        e = self.event(event)
        if old is None:
            e.add(market, yes_loss, no_loss)
        else:
            _, oy, on = old
            if e.independent:
                e.version += 1
                e.total += (yes_loss if yes_loss > no_loss else no_loss) - (oy if oy > on else on)
            else:
                e.add(market, yes_loss - oy, no_loss - on)
        self.legs[market] = (event, yes_loss, no_loss)
        return True

    def _remove(self, market: str, old: tuple[str, float, float]) -> None:
        ev, oy, on = old
        e = self.event(ev)
        if e.independent:
            e.version += 1
            e.total -= oy if oy > on else on
        else:
            e.add(market, -oy, -on)
        del self.legs[market]

    def leg(self, market: str) -> tuple[float, float]:
        leg = self.legs.get(market)
        return (0.0, 0.0) if leg is None else (leg[1], leg[2])

    def event_of(self, market: str) -> str | None:
        reg = self.registered.get(market)
        if reg is not None:
            return reg
        leg = self.legs.get(market)
        return None if leg is None else leg[0]

    def outcome_others(self, market: str) -> tuple[tuple[float, ...], tuple[bool, ...]]:
        ev = self.event_of(market)
        e = None if ev is None else self.events.get(ev)
        if e is None:
            if ev is not None and ev in self.structures:
                e = self.event(ev)
            else:
                return (0.0, 0.0), _INDEPENDENT_FLAGS
        cached = self.others.get(market)
        if cached is not None and cached[0] == e.version:
            return cached[1], cached[2]
        yes, no = self.leg(market)
        if e.independent:
            rest = e.total - (yes if yes > no else no)
            out: tuple[tuple[float, ...], tuple[bool, ...]] = ((rest, rest), _INDEPENDENT_FLAGS)
        else:
            flags = e.flags[market]
            out = (
                tuple(t - (yes if f else no) for t, f in zip(e.totals, flags, strict=True)),
                flags,
            )
        self.others[market] = (e.version, *out)
        return out

    def outcome_losses(self, event: str) -> tuple[float, ...]:
        e = self.events.get(event)
        if e is None:
            st = self.structures.get(event)
            if st is None or st.kind is EventKind.INDEPENDENT:
                return ()
            return (0.0,) * len(st.outcomes())
        return tuple(e.totals)

    def worst(self, event: str) -> float:
        e = self.events.get(event)
        if e is None:
            return 0.0
        if e.independent:
            return e.total
        return max(e.totals)


class Portfolio:
    """Running totals of dollars at risk and marked PnL per market, per event and overall, and
    each event's loss per outcome."""

    def __init__(self, policy: Policy | None = None) -> None:
        self._by_market: dict[str, tuple[str, float]] = {}
        self._by_event: dict[str, float] = {}
        self._structures: dict[str, EventStructure] = {}
        self._registered: dict[str, str] = {}
        """Market → event, for the markets of the registered structures."""
        self._full = _EventBook(self._structures, self._registered)
        """Legs of positions and resting orders: the gate's limit."""
        self._held = _EventBook(self._structures, self._registered)
        """Legs of positions alone: the event breaker's input."""
        self.total = 0.0
        """Dollars at risk summed over every market."""
        self._pnl: dict[str, float] = {}
        self.pnl = 0.0
        """Marked PnL summed over every market that reported one, dollars."""
        self.breakers: PortfolioBreakers | None = None
        """Daily loss and drawdown (None until armed with a policy)."""
        self.feed: DeadFeed | None = None
        """The dead-feed breaker (None until armed with a policy)."""
        if policy is not None:
            self.arm(policy)

    def arm(self, policy: Policy) -> None:
        """Create the portfolio breakers from ``policy``; the first call wins (every loop of one
        session shares its policy, and each arms the portfolio it is given)."""
        if self.breakers is None:
            self.breakers = PortfolioBreakers(policy)
            self.feed = DeadFeed(policy.feed.stale_after_s)

    def update(self, market: str, event: str, at_risk: float) -> None:
        """Set ``market``'s dollars at risk (it belongs to ``event``)."""
        old_event, old = self._by_market.get(market, (event, 0.0))
        self.total += at_risk - old
        self._by_event[old_event] = self._by_event.get(old_event, 0.0) - old
        self._by_event[event] = self._by_event.get(event, 0.0) + at_risk
        self._by_market[market] = (event, at_risk)

    def at_risk(self, market: str) -> float:
        return self._by_market.get(market, ("", 0.0))[1]

    def others(self, market: str) -> float:
        """Dollars at risk of every market but ``market``."""
        return self.total - self.at_risk(market)

    def event_others(self, market: str, event: str) -> float:
        """Dollars at risk of the other markets of ``event``."""
        return self._by_event.get(event, 0.0) - self.at_risk(market)

    # -- worst case per event ------------------------------------------------------------

    def set_structures(self, structures: Iterable[EventStructure]) -> None:
        """Register how the markets of these events resolve together (replacing an earlier
        structure of the same event) and recompute every event's totals from the legs reported
        so far. Raises :class:`CfaValueError` when a market would belong to two events, or a
        market already reported under an event whose new structure omits it."""
        new = dict(self._structures)
        for st in structures:
            new[st.event_ticker] = st
        registered: dict[str, str] = {}
        for ev, st in new.items():
            for t in st.tickers:
                other = registered.setdefault(t, ev)
                if other != ev:
                    raise CfaValueError(f"market {t} is in two events: {other} and {ev}")
        for book in (self._full, self._held):
            for t, (ev, _, _) in book.legs.items():
                if t not in registered and ev in new:
                    raise CfaValueError(f"market {t} reported event {ev}, whose structure omits it")
        self._structures, self._registered = new, registered
        for book in (self._full, self._held):
            book.rebuild(new, registered)

    def update_legs(self, market: str, event: str, yes_loss: float, no_loss: float) -> bool:
        """Set ``market``'s leg, positions and resting orders: its loss in dollars if it
        resolves YES and if NO (:func:`cfa.risk.event_risk.leg_losses`). ``event`` is the
        market's event ticker; for a market of a registered structure it must be that
        structure's. O(outcomes of the event); nothing to do when the leg is unchanged (then
        False, else True). Raises :class:`CfaValueError` on a non-finite loss or a mismatched
        event."""
        return self._full.update(market, event, yes_loss, no_loss)

    def update_position_legs(
        self, market: str, event: str, yes_loss: float, no_loss: float
    ) -> bool:
        """As :meth:`update_legs`, for ``market``'s position alone (``leg_losses(position,
        avg_price, 0, 0)``): the event breaker reads these (:meth:`event_position_worst_loss`),
        so that cancelling resting orders, which ``REDUCE_ONLY`` does, cannot lift it. Cheap to
        call on every risk update: an unchanged leg returns False at once (the event breaker
        need only run when it returns True)."""
        return self._held.update(market, event, yes_loss, no_loss)

    def legs(self, market: str) -> tuple[float, float]:
        """``market``'s last reported ``(loss_if_yes, loss_if_no)`` (zeros if none)."""
        return self._full.leg(market)

    def event_of(self, market: str) -> str | None:
        """The event ``market`` belongs to: its registered structure's, else the one it last
        reported; None for a market the portfolio has not heard of."""
        return self._full.event_of(market)

    def event_outcome_others(self, market: str) -> tuple[tuple[float, ...], tuple[bool, ...]]:
        """For the gate (:class:`cfa.risk.gate.Exposure`): the loss in dollars of the *other*
        markets of ``market``'s event on each outcome (positions and resting orders), and
        ``market``'s YES flag on each.

        Ladder and exclusive events: the outcomes of the structure. Independent events (and
        markets of no registered event): two outcomes, this market's YES and NO, each with the
        other markets' ``Σ max(yes, no)``. A market neither registered nor reported:
        ``((0.0, 0.0), (True, False))``. Cached per market until its event changes: O(1) a
        call between changes, O(outcomes) after one.
        """
        return self._full.outcome_others(market)

    def event_outcome_losses(self, event: str) -> tuple[float, ...]:
        """The loss in dollars of ``event`` (positions and resting orders) on each outcome of
        its registered ladder or exclusive structure (zeros before any report); empty for an
        independent or unknown event."""
        return self._full.outcome_losses(event)

    def event_worst_loss(self, event: str) -> float:
        """``event``'s worst-case settlement loss in dollars, positions and resting orders: the
        largest per-outcome loss of a ladder or exclusive set (negative: a profit on every
        outcome), ``Σ max(yes, no)`` of an independent event; 0 for an event nobody reported.
        O(outcomes)."""
        return self._full.worst(event)

    def event_position_worst_loss(self, event: str) -> float:
        """As :meth:`event_worst_loss`, for the positions alone (:meth:`update_position_legs`)."""
        return self._held.worst(event)

    def report_pnl(self, market: str, pnl: float) -> None:
        """Set ``market``'s marked PnL (dollars)."""
        self.pnl += pnl - self._pnl.get(market, 0.0)
        self._pnl[market] = pnl

    def check_loss(self, current: TradingState) -> Trip | None:
        """The daily-loss and drawdown breakers over :attr:`pnl`; ``current`` is the global
        state. None when not armed or nothing trips."""
        b = self.breakers
        return None if b is None else b.check(self.pnl, current)
