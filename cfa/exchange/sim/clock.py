"""The simulated clock: the one source of time inside the simulator.

:class:`SimClock` is the shared event-time clock (:class:`cfa.exchange.clock.EventClock`):
it only moves when the simulator processes an event (:class:`~cfa.exchange.sim.SimExchange`
sets it to the event's time); it never reads the wall clock.
"""

from __future__ import annotations

from cfa.exchange.clock import EventClock

DEFAULT_START_TS = 1_795_791_600.0
"""2026-11-27T15:00:00Z: the default start of a simulated run (fixed, so runs reproduce)."""


class SimClock(EventClock):
    """Simulated time, starting at :data:`DEFAULT_START_TS` unless told otherwise."""

    __slots__ = ()

    def __init__(self, start_ts: float = DEFAULT_START_TS) -> None:
        super().__init__(start_ts)
