"""Every automatic breaker: loss limits, drawdown, error rate, dead feed and the close taper.

A breaker is a plain, deterministic object. It is fed the time (seconds since the epoch, from
the caller's injected clock: event time on the fast path, the exchange's clock for the feed
watchdog) and the numbers it watches (marked PnL in dollars, exchange errors, event arrivals).
It does no I/O, reads no clock and never touches the trading states itself: a check returns
``None`` — nothing to do, the common case, which allocates nothing — or a :class:`Trip` naming
the state to set, the ``source`` and the ``reason``. The caller applies a trip with
:meth:`cfa.risk.states.TradingStates.set`, whose listener writes the ``trading_state`` risk
event, so the audit rows are the same whoever evaluates the breaker.

Callers evaluate breakers on every event, whatever the shape of the book: a breaker that only
ran while both sides of the book were quoted would miss a close taper or a loss on a one-sided
market, exactly when it matters. The checks are a few float comparisons; the marked PnL they
need is the caller's (:class:`MarketBreakers` and :class:`PortfolioBreakers` only compare it).

Sources (``detail.source`` of the risk events), scopes, and when each trips:

* ``breaker:market_loss`` (market): the market's marked PnL below ``-loss.market_loss``;
* ``breaker:daily_loss`` (global): the portfolio's marked PnL below ``-loss.daily_loss``;
* ``breaker:drawdown`` (global): the portfolio's PnL more than ``loss.max_drawdown`` below its
  peak;
* ``breaker:error_rate`` (market): more than ``breakers.max_errors_per_min`` exchange errors in
  a rolling minute; it lifts its own halt after ``breakers.error_cooldown_s`` without an error;
* ``feed_watchdog`` (global): no event at all for ``feed.stale_after_s`` (exchange clock); it
  lifts its own halt when events flow again;
* ``close_taper`` (market): REDUCE_ONLY ``close.reduce_only_s`` before close, HALTED
  ``close.halt_s`` before close.

A NaN marked PnL trips the loss breakers (a risk check fails closed).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfa.core.types import TradingState

if TYPE_CHECKING:
    from cfa.risk.policy import Policy

_HALTED = TradingState.HALTED
_ACTIVE = TradingState.ACTIVE
_REDUCE_ONLY = TradingState.REDUCE_ONLY

ERROR_WINDOW_S = 60.0
"""The error-rate breaker counts errors over this rolling window, seconds."""


@dataclass(frozen=True, slots=True)
class Trip:
    """A breaker's verdict: set the scope's trading state to ``state``, saying why."""

    state: TradingState
    source: str
    reason: str


class LossLimit:
    """Halts when a marked PnL (dollars) falls below ``-limit`` (dollars, > 0).

    ``label`` starts the reason (``"marked PnL"`` gives ``"marked PnL -41.20 below -40"``).
    Stateless: it trips again on every check while the PnL stays below the limit and the
    scope is not halted (a resumed market that is still too far down is halted again).
    """

    __slots__ = ("label", "limit", "source")

    def __init__(self, limit: float, source: str, label: str) -> None:
        self.limit = limit
        self.source = source
        self.label = label

    def check(self, pnl: float, current: TradingState) -> Trip | None:
        """``pnl``: marked PnL in dollars; ``current``: the scope's own trading state."""
        if pnl >= -self.limit or current is _HALTED:
            return None
        return Trip(_HALTED, self.source, f"{self.label} {pnl:.2f} below -{self.limit:g}")


class Drawdown:
    """Halts when a PnL falls more than ``limit`` dollars below the highest it has been.

    The peak starts at 0 (a run starts flat) and follows every PnL checked, halted or not.
    """

    __slots__ = ("limit", "peak", "source")

    def __init__(self, limit: float, source: str = "breaker:drawdown") -> None:
        self.limit = limit
        self.source = source
        self.peak = 0.0

    def check(self, pnl: float, current: TradingState) -> Trip | None:
        """``pnl``: marked PnL in dollars; ``current``: the scope's own trading state."""
        if pnl > self.peak:
            self.peak = pnl
        if self.peak - pnl <= self.limit or current is _HALTED:
            return None
        return Trip(
            _HALTED,
            self.source,
            f"portfolio marked PnL {pnl:.2f} is {self.peak - pnl:.2f} "
            f"below its peak {self.peak:.2f}",
        )


class CloseTaper:
    """Gets a market flat before it closes: REDUCE_ONLY ``reduce_only_s`` before ``close_ts``,
    HALTED ``halt_s`` before it (seconds; ``halt_s <= reduce_only_s``).

    It never loosens a state: REDUCE_ONLY applies only to an ACTIVE market, and a market
    resumed inside the window is tapered again at the next check.
    """

    __slots__ = ("close_ts", "halt_at", "halt_s", "reduce_at", "reduce_only_s")

    def __init__(self, close_ts: float, reduce_only_s: float, halt_s: float) -> None:
        self.close_ts = close_ts
        self.reduce_only_s = reduce_only_s
        self.halt_s = halt_s
        self.reduce_at = close_ts - reduce_only_s
        """Epoch seconds from which the market is REDUCE_ONLY."""
        self.halt_at = close_ts - halt_s
        """Epoch seconds from which the market is HALTED."""

    def check(self, t: float, current: TradingState) -> Trip | None:
        """``t``: now (epoch seconds); ``current``: the market's own trading state."""
        if t < self.reduce_at:
            return None
        if t >= self.halt_at:
            if current is _HALTED:
                return None
            return Trip(
                _HALTED, "close_taper", f"{self.close_ts - t:.0f}s to close <= {self.halt_s:g}s"
            )
        if current is not _ACTIVE:
            return None
        return Trip(
            _REDUCE_ONLY,
            "close_taper",
            f"{self.close_ts - t:.0f}s to close <= {self.reduce_only_s:g}s",
        )

    def next_due(self, t: float) -> float:
        """The next time (epoch seconds) after ``t`` at which the taper steps; inf past both."""
        if t < self.reduce_at:
            return self.reduce_at
        if t < self.halt_at:
            return self.halt_at
        return math.inf


class ErrorRate:
    """Halts a market after more than ``max_per_min`` exchange errors in a rolling minute, and
    lifts its own halt once ``cooldown_s`` seconds have passed without a new error.

    Protocol: :meth:`on_error` for each error counted (the caller decides which count: a
    post-only cross is the venue doing what was asked); when it returns a trip and the caller's
    :meth:`~cfa.risk.states.TradingStates.set` changed the state, :meth:`halted`. Then
    :meth:`lift` on every event: it forgets the halt when someone else changed the state
    meanwhile, so a halt it did not make, or one lifted and made again, is never lifted by it.
    (A halt requested while its own is in force changes no state, so it cannot tell it apart:
    the trading states do not keep who holds a state.)
    """

    __slots__ = ("_times", "cooldown_s", "halted_at", "last_error", "max_per_min")

    def __init__(self, max_per_min: int, cooldown_s: float) -> None:
        self.max_per_min = max_per_min
        self.cooldown_s = cooldown_s
        self._times: deque[float] = deque()
        self.last_error = -math.inf
        """Time of the last error counted, epoch seconds."""
        self.halted_at: float | None = None
        """When this breaker's halt took effect (None: no halt of its own in force)."""

    def on_error(self, t: float, last: object) -> Trip | None:
        """Count an error at ``t``; ``last`` (the error) is named in the reason of a trip."""
        times = self._times
        times.append(t)
        self.last_error = t
        while times[0] <= t - ERROR_WINDOW_S:
            times.popleft()
        if len(times) <= self.max_per_min:
            return None
        return Trip(
            _HALTED,
            "breaker:error_rate",
            f"more than {self.max_per_min} exchange errors in a minute; last: {last}",
        )

    def recent(self, t: float) -> int:
        """Errors counted within the last minute before ``t``."""
        times = self._times
        while times and times[0] <= t - ERROR_WINDOW_S:
            times.popleft()
        return len(times)

    def halted(self, t: float) -> None:
        """The caller's halt from :meth:`on_error` took effect at ``t``."""
        self.halted_at = t

    @property
    def lift_due(self) -> float:
        """The earliest time :meth:`lift` may lift the halt (inf when none is in force)."""
        if self.halted_at is None:
            return math.inf
        return max(self.halted_at, self.last_error) + self.cooldown_s

    def lift(self, t: float, current: TradingState) -> Trip | None:
        """``current``: the market's own trading state. A trip back to ACTIVE when due."""
        if self.halted_at is None:
            return None
        if current is not _HALTED:
            self.halted_at = None  # someone else changed it meanwhile
            return None
        if t - max(self.halted_at, self.last_error) < self.cooldown_s:
            return None
        self.halted_at = None
        return Trip(_ACTIVE, "breaker:error_rate", f"no exchange error for {self.cooldown_s:g}s")


class DeadFeed:
    """A dead feed — no event at all from the exchange for ``stale_after_s`` seconds — halts
    everything until events flow again.

    Feed it every event of every market (:meth:`on_event`: a quiet market is not a dead feed)
    and poll :meth:`check` from a timer; both take the exchange's clock, not event time (a
    dead feed sends no events to date). Scope: global.
    """

    __slots__ = ("last_event", "stale_after_s", "tripped")

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.last_event: float | None = None
        self.tripped = False
        """True from this breaker's halt until events flow again."""

    def on_event(self, now: float, current: TradingState) -> Trip | None:
        """An event arrived at ``now``; ``current`` is the global state. Lifts its own halt."""
        self.last_event = now
        if not self.tripped:
            return None
        self.tripped = False
        if current is not _HALTED:
            return None
        return Trip(_ACTIVE, "feed_watchdog", "events flow again")

    def check(self, now: float, current: TradingState) -> Trip | None:
        """Poll at ``now``; ``current`` is the global state."""
        if self.last_event is None or self.tripped or current is _HALTED:
            return None
        silent = now - self.last_event
        if silent <= self.stale_after_s:
            return None
        self.tripped = True
        return Trip(_HALTED, "feed_watchdog", f"no event for {silent:.1f}s")


class MarketBreakers:
    """The breakers of one market: its loss limit, the error rate and the close taper."""

    __slots__ = ("error_rate", "market_loss", "taper")

    def __init__(self, policy: Policy, close_ts: float) -> None:
        self.market_loss = LossLimit(policy.loss.market_loss, "breaker:market_loss", "marked PnL")
        self.error_rate = ErrorRate(
            policy.breakers.max_errors_per_min, policy.breakers.error_cooldown_s
        )
        self.taper = CloseTaper(close_ts, policy.close.reduce_only_s, policy.close.halt_s)

    def next_due(self, t: float) -> float:
        """The next time after ``t`` a time-driven breaker (taper, error lift) may act."""
        a = self.taper.next_due(t)
        b = self.error_rate.lift_due
        return a if a < b else b


class PortfolioBreakers:
    """The breakers over every market together: the daily loss limit and the drawdown."""

    __slots__ = ("daily_loss", "drawdown")

    def __init__(self, policy: Policy) -> None:
        self.daily_loss = LossLimit(
            policy.loss.daily_loss, "breaker:daily_loss", "portfolio marked PnL"
        )
        self.drawdown = Drawdown(policy.loss.max_drawdown)

    def check(self, pnl: float, current: TradingState) -> Trip | None:
        """``pnl``: the portfolio's marked PnL (dollars); ``current``: the global state.

        The drawdown's peak follows ``pnl`` whatever the state; the daily loss is checked first.
        """
        trip = self.drawdown.check(pnl, current)
        loss = self.daily_loss.check(pnl, current)
        return loss if loss is not None else trip
