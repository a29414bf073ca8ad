"""Dollars at risk and marked PnL across markets, kept up to date incrementally (O(1) a change),
and the portfolio breakers (daily loss, drawdown) over them.

Each market loop reports its own dollars at risk (see :func:`cfa.risk.gate.dollars_at_risk`)
whenever its position or resting orders change; the gate reads the totals of the *other*
markets, overall and within the same event. Each loop also reports its marked PnL (dollars)
about once a second and on fills and settlement, and checks :meth:`Portfolio.check_loss`
right after: the daily-loss and drawdown breakers thus run on every market's clock, whatever
the shape of any book. :attr:`Portfolio.feed` is the dead-feed breaker for whoever watches the
whole stream (the session).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfa.risk.breakers import DeadFeed, PortfolioBreakers, Trip

if TYPE_CHECKING:
    from cfa.core.types import TradingState
    from cfa.risk.policy import Policy


class Portfolio:
    """Running totals of dollars at risk and marked PnL per market, per event and overall."""

    def __init__(self, policy: Policy | None = None) -> None:
        self._by_market: dict[str, tuple[str, float]] = {}
        self._by_event: dict[str, float] = {}
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

    def report_pnl(self, market: str, pnl: float) -> None:
        """Set ``market``'s marked PnL (dollars)."""
        self.pnl += pnl - self._pnl.get(market, 0.0)
        self._pnl[market] = pnl

    def check_loss(self, current: TradingState) -> Trip | None:
        """The daily-loss and drawdown breakers over :attr:`pnl`; ``current`` is the global
        state. None when not armed or nothing trips."""
        b = self.breakers
        return None if b is None else b.check(self.pnl, current)
