"""Trading states per market and for the whole process (as in NautilusTrader's risk engine).

``ACTIVE`` quotes normally, ``REDUCE_ONLY`` accepts only orders that bring the position towards
zero, ``HALTED`` cancels everything and accepts nothing. The effective state of a market is the
more restrictive of its own state and the global one. Changes come from governance actions and
from automatic breakers; each change is reported to ``on_change`` for the audit store.
"""

from __future__ import annotations

from collections.abc import Callable

from cfa.core.types import TradingState

_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.HALTED: 2}

StateListener = Callable[[str | None, TradingState, TradingState, str, str], None]
"""``(market or None for global, old, new, source, reason)``."""


class TradingStates:
    """Holds the states; cheap to read on the fast path."""

    def __init__(self, on_change: StateListener | None = None) -> None:
        self.global_state = TradingState.ACTIVE
        self._markets: dict[str, TradingState] = {}
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

    def set(self, ticker: str | None, state: TradingState, *, source: str, reason: str) -> bool:
        """Set one market's state (or the global one with ``ticker=None``); True if it changed."""
        old = self.global_state if ticker is None else self.market_state(ticker)
        if old is state:
            return False
        if ticker is None:
            self.global_state = state
        else:
            self._markets[ticker] = state
        self.version += 1
        for listener in self._listeners:
            listener(ticker, old, state, source, reason)
        return True

    def snapshot(self) -> dict[str, str]:
        """``{"*": global, ticker: state, ...}`` for summaries."""
        out = {"*": self.global_state.value}
        out.update({t: s.value for t, s in self._markets.items()})
        return out
