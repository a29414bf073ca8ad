"""Who acts, and who outranks whom: person > breaker > governance agent > market agent.

Every change carries a *source* string (``person:alice``, ``breaker:market_loss``,
``agent:governance:openai``, ``agent:market:heuristic``); :meth:`Actor.of` ranks it. An actor may
undo only what an actor of its own rank or below did, and only a person lifts a person's halt,
freeze or override, or a breaker's halt. An unknown source ranks lowest (least privilege).
"""

from __future__ import annotations

import enum

_BREAKER_SOURCES = frozenset({"close_taper", "feed_watchdog"})


class Actor(enum.IntEnum):
    """Ranks: a higher value outranks a lower one."""

    SYSTEM = 0
    """Warm-up, calibration, expiries: bookkeeping that acts for nobody."""
    MARKET_AGENT = 1
    GOVERNANCE_AGENT = 2
    BREAKER = 3
    PERSON = 4

    @classmethod
    def of(cls, source: str) -> Actor:
        """The rank of a source string; anything unrecognised is a market agent."""
        if source.startswith("person:"):
            return cls.PERSON
        if source.startswith("breaker:") or source in _BREAKER_SOURCES:
            return cls.BREAKER
        if source.startswith("agent:governance"):
            return cls.GOVERNANCE_AGENT
        if source in ("warmup", "calibration", "override_expired"):
            return cls.SYSTEM
        return cls.MARKET_AGENT

    @property
    def is_agent(self) -> bool:
        return self in (Actor.MARKET_AGENT, Actor.GOVERNANCE_AGENT)

    def may_undo(self, other: Actor) -> bool:
        """Whether this actor may lift or replace what ``other`` did."""
        return self >= other

    @staticmethod
    def may_lift(by: str, holder: str) -> bool:
        """Whether source ``by`` may release a trading-state hold placed by source ``holder``
        (:class:`cfa.risk.states.TradingStates`): a person lifts anyone's; a breaker only its
        own (breakers are independent of each other); agents what agents of their rank or
        below placed."""
        a, h = Actor.of(by), Actor.of(holder)
        if a is Actor.PERSON:
            return True
        if a is Actor.BREAKER:
            return by == holder
        return a >= h
