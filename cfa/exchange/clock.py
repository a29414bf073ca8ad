"""The clocks of cfa's venues: wall time for live trading, settable event time for the rest.

Both satisfy :class:`cfa.exchange.base.Clock`: ``now()`` is seconds since the Unix epoch (UTC)
as ``float``.

* :class:`WallClock` reads the system clock (Kalshi live and paper trading).
* :class:`EventClock` only moves when its venue says so: the simulator sets it to the time of
  the event it processes, the recorded-feed replay to each frame's receive time, the audit
  replay to each recorded event's time. It never reads the wall clock and never goes back.
"""

from __future__ import annotations

import time


class WallClock:
    """Wall time, epoch seconds (``time.time()``)."""

    __slots__ = ()

    def now(self) -> float:
        """The system clock, seconds since the Unix epoch."""
        return time.time()

    def __repr__(self) -> str:
        return "WallClock()"


class EventClock:
    """Event time, set by its venue; satisfies :class:`cfa.exchange.base.Clock`.

    Contract: :meth:`now` never decreases through :meth:`advance_to`; ``t`` is the current
    time and is for the owning venue's hot loops only (they assign it directly when they know
    the new time is later).
    """

    __slots__ = ("t",)

    def __init__(self, start_ts: float = 0.0) -> None:
        self.t = float(start_ts)

    def now(self) -> float:
        """Current event time, seconds since the Unix epoch."""
        return self.t

    def advance_to(self, t: float) -> None:
        """Move the clock forward to ``t`` (a no-op when ``t`` is not later than now)."""
        if t > self.t:
            self.t = t

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.t!r})"
