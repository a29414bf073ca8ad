"""Trading states per market and for the whole process (as in NautilusTrader's risk engine).

``ACTIVE`` quotes normally, ``REDUCE_ONLY`` accepts only orders that bring the position towards
zero, ``HALTED`` cancels everything and accepts nothing. There are three scopes: the whole
process (global), an *event* (every market registered to it with :meth:`TradingStates.register`)
and a market. The effective state of a market is the most restrictive of its own state, its
event's and the global one. Changes come from people, the governance agent and the automatic
breakers (the event breaker: :func:`cfa.risk.event_risk.event_breaker`); each change is
reported to ``on_change`` for the audit store, with the scope as the market ticker, ``None``
for global, or ``"event:" + event_ticker`` for an event (an event ticker may equal a market
ticker on Kalshi, so the prefix keeps them apart).

**Holds.** Each source that restricts a scope (a market, or ``None`` for all) keeps its own
*hold*; the scope's state is the most restrictive hold. ``set(scope, state, source=S)`` first
releases every hold that ``S`` may lift (:meth:`cfa.risk.actors.Actor.may_lift`: a person lifts
any hold, a breaker only its own, an agent those of agents of its rank or below), then records
``S``'s own hold unless ``state`` is ``ACTIVE``. So a breaker that lifts its own halt (the
error-rate breaker after a quiet minute, the feed watchdog when events flow again) cannot lift a
person's halt placed meanwhile, and the governance agent cannot lift a person's or a breaker's.
An event's holds follow the same rules (:meth:`TradingStates.set_event`), kept apart from the
markets' and the global ones: lifting a market's hold never lifts its event's.

:meth:`TradingStates.effective` is one dict lookup: every market's effective state is cached and
recomputed when a state that bears on it changes (global: every market; event: its markets).
"""

from __future__ import annotations

from collections.abc import Callable

from cfa.core.types import CfaValueError, TradingState
from cfa.risk.actors import Actor

_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.HALTED: 2}

StateListener = Callable[[str | None, TradingState, TradingState, str, str], None]
"""``(scope, old, new, source, reason)``; scope: a market ticker, None for global, or
``"event:" + event_ticker`` (:data:`EVENT_SCOPE`)."""

EVENT_SCOPE = "event:"
"""The prefix of an event's scope in listener calls and :meth:`TradingStates.snapshot`."""

MayLift = Callable[[str, str], bool]
"""``(by, holder) -> bool``: whether source ``by`` may release a hold placed by ``holder``."""


class TradingStates:
    """Holds the states; cheap to read on the fast path."""

    def __init__(
        self, on_change: StateListener | None = None, may_lift: MayLift = Actor.may_lift
    ) -> None:
        self.global_state = TradingState.ACTIVE
        """The global state (read it; change it with ``set(None, ...)``)."""
        self._markets: dict[str, TradingState] = {}
        self._holds: dict[str | None, dict[str, TradingState]] = {}
        self._events: dict[str, TradingState] = {}
        self._event_holds: dict[str, dict[str, TradingState]] = {}
        self._event_of: dict[str, str] = {}
        self._event_markets: dict[str, list[str]] = {}
        self._eff: dict[str, TradingState] = {}
        """Effective state of every market with a state or an event of its own."""
        self._may_lift = may_lift
        self._listeners: list[StateListener] = [on_change] if on_change else []
        self.version = 0
        """Incremented on every change (any scope), for cheap change detection on the fast
        path."""

    def subscribe(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def register(self, ticker: str, event_ticker: str) -> None:
        """Put market ``ticker`` in event ``event_ticker``'s scope (once; registering it again
        with the same event does nothing). Raises :class:`CfaValueError` if it is already in
        another event's scope. When the event is already restricted the market's effective state
        changes with it: :attr:`version` moves (no listener call: no scope's state changed)."""
        had = self._event_of.get(ticker)
        if had == event_ticker:
            return
        if had is not None:
            raise CfaValueError(f"market {ticker} is already in event {had}, not {event_ticker}")
        before = self.effective(ticker)
        self._event_of[ticker] = event_ticker
        self._event_markets.setdefault(event_ticker, []).append(ticker)
        self._refresh(ticker)
        if self._eff[ticker] is not before:
            self.version += 1

    def event_of(self, ticker: str) -> str | None:
        """The event ``ticker`` was registered to (None: none)."""
        return self._event_of.get(ticker)

    def market_state(self, ticker: str) -> TradingState:
        """``ticker``'s own state (its holds only: not its event's nor the global one)."""
        return self._markets.get(ticker, TradingState.ACTIVE)

    def event_state(self, event_ticker: str) -> TradingState:
        """``event_ticker``'s own state (its holds only)."""
        return self._events.get(event_ticker, TradingState.ACTIVE)

    def effective(self, ticker: str) -> TradingState:
        """The most restrictive of the global state, ``ticker``'s event's and its own. O(1)."""
        e = self._eff.get(ticker)
        return self.global_state if e is None else e

    def _refresh(self, ticker: str) -> None:
        """Recompute ``ticker``'s cached effective state."""
        own = self._markets.get(ticker, TradingState.ACTIVE)
        ev = self._event_of.get(ticker)
        evs = TradingState.ACTIVE if ev is None else self._events.get(ev, TradingState.ACTIVE)
        self._eff[ticker] = max(self.global_state, evs, own, key=_RANK.__getitem__)

    def holds(self, ticker: str | None) -> dict[str, TradingState]:
        """Who holds ``ticker`` (``None``: the global scope) in which state."""
        return dict(self._holds.get(ticker, {}))

    def event_holds(self, event_ticker: str) -> dict[str, TradingState]:
        """Who holds event ``event_ticker`` in which state."""
        return dict(self._event_holds.get(event_ticker, {}))

    def blocking(self, ticker: str | None, by: str, state: TradingState) -> list[str]:
        """Holders more restrictive than ``state`` that ``by`` may not lift (empty: ``by``'s
        ``set(ticker, state)`` would take effect)."""
        return self._blocking(self._holds.get(ticker, {}), by, state)

    def event_blocking(self, event_ticker: str, by: str, state: TradingState) -> list[str]:
        """As :meth:`blocking`, for ``set_event(event_ticker, state)``."""
        return self._blocking(self._event_holds.get(event_ticker, {}), by, state)

    def _blocking(self, holds: dict[str, TradingState], by: str, state: TradingState) -> list[str]:
        return [
            h
            for h, s in holds.items()
            if _RANK[s] > _RANK[state] and h != by and not self._may_lift(by, h)
        ]

    def _apply(
        self, holds: dict[str, TradingState], state: TradingState, source: str
    ) -> TradingState:
        """Release the holds ``source`` may lift, record its own unless ``state`` is ACTIVE;
        the scope's new state."""
        for h in [h for h in holds if h == source or self._may_lift(source, h)]:
            del holds[h]
        if state is not TradingState.ACTIVE:
            holds[source] = state
        return max(holds.values(), key=_RANK.__getitem__, default=TradingState.ACTIVE)

    def set(self, ticker: str | None, state: TradingState, *, source: str, reason: str) -> bool:
        """``source`` sets ``ticker``'s state (the global one with ``ticker=None``): it releases
        the holds it may lift and holds ``state`` itself. True if the scope's state changed."""
        old = self.global_state if ticker is None else self.market_state(ticker)
        holds = self._holds.setdefault(ticker, {})
        new = self._apply(holds, state, source)
        if new is old:
            return False
        if ticker is None:
            self.global_state = new
            for t in self._eff:
                self._refresh(t)
        else:
            self._markets[ticker] = new
            self._refresh(ticker)
        self._changed(ticker, old, new, state, source, reason, holds)
        return True

    def set_event(
        self, event_ticker: str, state: TradingState, *, source: str, reason: str
    ) -> bool:
        """``source`` sets event ``event_ticker``'s state, with the holds rules of :meth:`set`:
        it bears on every market registered to the event (and on markets registered later).
        True if the event's state changed."""
        old = self.event_state(event_ticker)
        holds = self._event_holds.setdefault(event_ticker, {})
        new = self._apply(holds, state, source)
        if new is old:
            return False
        self._events[event_ticker] = new
        for t in self._event_markets.get(event_ticker, ()):
            self._refresh(t)
        self._changed(EVENT_SCOPE + event_ticker, old, new, state, source, reason, holds)
        return True

    def _changed(
        self,
        scope: str | None,
        old: TradingState,
        new: TradingState,
        state: TradingState,
        source: str,
        reason: str,
        holds: dict[str, TradingState],
    ) -> None:
        self.version += 1
        why = reason if new is state else f"{reason} (still {new.value}: held by {list(holds)})"
        for listener in self._listeners:
            listener(scope, old, new, source, why)

    def snapshot(self) -> dict[str, str]:
        """``{"*": global, ticker: state, ..., "event:" + event: state, ...}`` for summaries."""
        out = {"*": self.global_state.value}
        out.update({t: s.value for t, s in self._markets.items()})
        out.update({EVENT_SCOPE + e: s.value for e, s in self._events.items()})
        return out
