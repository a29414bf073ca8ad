"""Dollars at risk across markets, kept up to date incrementally (O(1) per change).

Each market loop reports its own dollars at risk (see :func:`cfa.risk.gate.dollars_at_risk`)
whenever its position or resting orders change; the gate reads the totals of the *other*
markets, overall and within the same event.
"""

from __future__ import annotations


class Portfolio:
    """Running totals of dollars at risk per market, per event and overall."""

    def __init__(self) -> None:
        self._by_market: dict[str, tuple[str, float]] = {}
        self._by_event: dict[str, float] = {}
        self.total = 0.0

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
