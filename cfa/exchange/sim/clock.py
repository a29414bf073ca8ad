"""The simulated clock: the one source of time inside the simulator.

Time is seconds since the Unix epoch (UTC) as ``float``, like everywhere in cfa. The clock
only moves when the simulator processes an event (:class:`~cfa.exchange.sim.SimExchange`
sets it to the event's time); it never reads the wall clock.
"""

from __future__ import annotations

DEFAULT_START_TS = 1_795_791_600.0
"""2026-11-27T15:00:00Z: the default start of a simulated run (fixed, so runs reproduce)."""


class SimClock:
    """Simulated time; satisfies :class:`cfa.exchange.base.Clock`.

    Contract: :meth:`now` never decreases. :meth:`advance_to` is for the simulator only.
    """

    __slots__ = ("t",)

    def __init__(self, start_ts: float = DEFAULT_START_TS) -> None:
        self.t = float(start_ts)

    def now(self) -> float:
        """Current simulated time, seconds since the Unix epoch."""
        return self.t

    def advance_to(self, t: float) -> None:
        """Move the clock forward to ``t`` (a no-op when ``t`` is not later than now)."""
        if t > self.t:
            self.t = t

    def __repr__(self) -> str:
        return f"SimClock({self.t!r})"
