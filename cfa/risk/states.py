"""Trading states per market and for the whole process (as in NautilusTrader's risk engine).

``ACTIVE`` quotes normally, ``REDUCE_ONLY`` accepts only orders that bring the position towards
zero, ``HALTED`` cancels everything and accepts nothing. The effective state of a market is the
more restrictive of its own state and the global one. Changes come from people, the governance
agent and the automatic breakers; each change is reported to ``on_change`` for the audit store.

**Holds.** Each source that restricts a scope (a market, or ``None`` for all) keeps its own
*hold*; the scope's state is the most restrictive hold. ``set(scope, state, source=S)`` first
releases every hold that ``S`` may lift (:meth:`cfa.risk.actors.Actor.may_lift`: a person lifts
any hold, a breaker only its own, an agent those of agents of its rank or below), then records
``S``'s own hold unless ``state`` is ``ACTIVE``. So a breaker that lifts its own halt (the
error-rate breaker after a quiet minute, the feed watchdog when events flow again) cannot lift a
person's halt placed meanwhile, and the governance agent cannot lift a person's or a breaker's.
"""

from __future__ import annotations

from collections.abc import Callable

from cfa.core.types import TradingState
from cfa.risk.actors import Actor

_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.HALTED: 2}

StateListener = Callable[[str | None, TradingState, TradingState, str, str], None]
"""``(market or None for global, old, new, source, reason)``."""

MayLift = Callable[[str, str], bool]
"""``(by, holder) -> bool``: whether source ``by`` may release a hold placed by ``holder``."""


class TradingStates:
    """Holds the states; cheap to read on the fast path."""

    def __init__(
        self, on_change: StateListener | None = None, may_lift: MayLift = Actor.may_lift
    ) -> None:
        self.global_state = TradingState.ACTIVE
        self._markets: dict[str, TradingState] = {}
        self._holds: dict[str | None, dict[str, TradingState]] = {}
        self._may_lift = may_lift
        self._listeners: list[StateListener] = [on_change] if on_change else []
        self.version = 0
        """Incremented on every change, for cheap change detection on the fast path."""

    def subscribe(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def market_state(self, ticker: str) -> TradingState:
        return self._markets.get(ticker, TradingState.ACTIVE)

    def effective(self, ticker: str) -> TradingState:
        own = self._markets.get(ticker, TradingState.ACTIVE)
        g = self.global_state
        return own if _RANK[own] >= _RANK[g] else g

    def holds(self, ticker: str | None) -> dict[str, TradingState]:
        """Who holds ``ticker`` (``None``: the global scope) in which state."""
        return dict(self._holds.get(ticker, {}))

    def blocking(self, ticker: str | None, by: str, state: TradingState) -> list[str]:
        """Holders more restrictive than ``state`` that ``by`` may not lift (empty: ``by``'s
        ``set(ticker, state)`` would take effect)."""
        return [
            h
            for h, s in self._holds.get(ticker, {}).items()
            if _RANK[s] > _RANK[state] and h != by and not self._may_lift(by, h)
        ]

    def set(self, ticker: str | None, state: TradingState, *, source: str, reason: str) -> bool:
        """``source`` sets ``ticker``'s state (the global one with ``ticker=None``): it releases
        the holds it may lift and holds ``state`` itself. True if the scope's state changed."""
        old = self.global_state if ticker is None else self.market_state(ticker)
        holds = self._holds.setdefault(ticker, {})
        for h in [h for h in holds if h == source or self._may_lift(source, h)]:
            del holds[h]
        if state is not TradingState.ACTIVE:
            holds[source] = state
        new = max(holds.values(), key=_RANK.__getitem__, default=TradingState.ACTIVE)
        if new is old:
            return False
        if ticker is None:
            self.global_state = new
        else:
            self._markets[ticker] = new
        self.version += 1
        why = reason if new is state else f"{reason} (still {new.value}: held by {list(holds)})"
        for listener in self._listeners:
            listener(ticker, old, new, source, why)
        return True

    def snapshot(self) -> dict[str, str]:
        """``{"*": global, ticker: state, ...}`` for summaries."""
        out = {"*": self.global_state.value}
        out.update({t: s.value for t, s in self._markets.items()})
        return out
