"""Online estimators for the fast path: σ on logit(mid), fill rates, markouts, intensity A and k.

All are O(1) amortised per update, deterministic, and take time as an argument (seconds): they
never read a clock. Units: σ_x in logit units per √second; rates in fills per minute of quoted
time; markouts in dollars per contract (positive = the fill made money at that horizon);
``A`` in trades per second reaching the touch, ``k`` in 1/dollar.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from cfa.core.types import Side


class LogitVolatility:
    """EWMA of the variance rate of ``logit(mid)``, sampled on a fixed time grid.

    The mid is sampled at the first event at least ``interval`` seconds after the previous
    sample, which keeps event-by-event bid-ask bounce out of the estimate. Each sample's squared
    logit return divided by its elapsed time updates an EWMA with the given ``half_life`` in
    seconds. The estimate is *warm* once ``min_samples`` samples have been taken.
    """

    __slots__ = (
        "_last_sample_t",
        "_last_x",
        "half_life",
        "interval",
        "min_samples",
        "samples",
        "var_rate",
    )

    def __init__(
        self, interval: float = 1.0, half_life: float = 300.0, min_samples: int = 30
    ) -> None:
        if interval <= 0 or half_life <= 0 or min_samples < 1:
            raise ValueError("interval and half_life must be positive, min_samples >= 1")
        self.interval = interval
        self.half_life = half_life
        self.min_samples = min_samples
        self.samples = 0
        self.var_rate = 0.0
        self._last_x: float | None = None
        self._last_sample_t = 0.0

    def update(self, t: float, mid: float) -> None:
        """Observe the mid (dollars, strictly inside (0, 1)) at time ``t`` seconds."""
        if not 0.0 < mid < 1.0:
            return
        x = math.log(mid / (1.0 - mid))
        if self._last_x is None:
            self._last_x, self._last_sample_t = x, t
            return
        elapsed = t - self._last_sample_t
        if elapsed < self.interval:
            return
        r = x - self._last_x
        sample_rate = r * r / elapsed
        w = 1.0 - math.exp(-elapsed * math.log(2.0) / self.half_life)
        self.var_rate = (
            sample_rate if self.samples == 0 else self.var_rate + w * (sample_rate - self.var_rate)
        )
        self.samples += 1
        self._last_x, self._last_sample_t = x, t

    @property
    def warm(self) -> bool:
        return self.samples >= self.min_samples

    @property
    def sigma(self) -> float:
        """σ_x: logit volatility per √second (0 before the first sample)."""
        return math.sqrt(self.var_rate)


class FillRates:
    """Fills per minute of *quoted* time, per side, decayed with a half-life in seconds.

    Call :meth:`mark` whenever the set of quoted sides may have changed (on every event is fine);
    the time between calls counts as quoted for each side that was quoted.
    """

    __slots__ = ("_decay", "_fills", "_last_t", "_quoted", "_quoting", "last_fill_t")

    def __init__(self, half_life: float = 600.0) -> None:
        self._decay = math.log(2.0) / half_life
        self._fills = {Side.BID: 0.0, Side.ASK: 0.0}
        self._quoted = {Side.BID: 0.0, Side.ASK: 0.0}
        self._quoting = {Side.BID: False, Side.ASK: False}
        self._last_t: float | None = None
        self.last_fill_t: dict[Side, float | None] = {Side.BID: None, Side.ASK: None}

    def mark(self, t: float, bid_quoted: bool, ask_quoted: bool) -> None:
        """Advance to ``t`` and record which sides are quoted from now on."""
        if self._last_t is not None and t > self._last_t:
            dt = t - self._last_t
            f = math.exp(-self._decay * dt)
            for side in (Side.BID, Side.ASK):
                self._fills[side] *= f
                self._quoted[side] = self._quoted[side] * f + (dt if self._quoting[side] else 0.0)
        if self._last_t is None or t > self._last_t:
            self._last_t = t
        self._quoting[Side.BID] = bid_quoted
        self._quoting[Side.ASK] = ask_quoted

    def on_fill(self, t: float, side: Side) -> None:
        """Count one fill (of any size)."""
        self._fills[side] += 1.0
        self.last_fill_t[side] = t

    def per_minute(self, side: Side) -> float | None:
        """Decayed fills per quoted minute, or None before ten quoted seconds."""
        quoted = self._quoted[side]
        if quoted < 10.0:
            return None
        return 60.0 * self._fills[side] / quoted

    def quoted_seconds(self, side: Side) -> float:
        return self._quoted[side]


@dataclass(frozen=True, slots=True)
class _PendingFill:
    t: float
    sign: int
    price: float


class Markouts:
    """Mark-outs of our fills at fixed horizons: ``sign·(mid(t + h) − fill price)`` in dollars.

    A bid fill (we bought) has sign +1; positive mark-outs mean the fill was not adversely
    selected. Averages are exponentially weighted over the last ``span`` fills per horizon.
    """

    def __init__(self, horizons: tuple[float, ...] = (5.0, 60.0), span: int = 50) -> None:
        self.horizons = horizons
        self._alpha = 2.0 / (span + 1.0)
        self._pending: dict[float, deque[_PendingFill]] = {h: deque() for h in horizons}
        self._avg: dict[float, float | None] = dict.fromkeys(horizons)
        self.count: dict[float, int] = dict.fromkeys(horizons, 0)

    def on_fill(self, t: float, side: Side, price_dollars: float) -> None:
        rec = _PendingFill(t, side.sign, price_dollars)
        for q in self._pending.values():
            q.append(rec)

    def on_mid(self, t: float, mid: float) -> None:
        """Resolve every pending fill whose horizon has passed, against this mid."""
        for h, q in self._pending.items():
            while q and q[0].t + h <= t:
                rec = q.popleft()
                m = rec.sign * (mid - rec.price)
                prev = self._avg[h]
                self._avg[h] = m if prev is None else prev + self._alpha * (m - prev)
                self.count[h] += 1

    def average(self, horizon: float) -> float | None:
        """Weighted average mark-out in dollars per contract at ``horizon``; None before any."""
        return self._avg[horizon]


class TradingIntensity:
    """Fit ``λ(δ) = A·e^(−kδ)`` from public trades over a rolling window (hftbacktest method).

    Each trade's depth is its distance from the mid before it, in dollars. For depth levels
    ``δ_j = j·step``, the rate of trades reaching at least ``δ_j`` is counted over the window and
    ``log λ = log A − k·δ`` is fitted by least squares. ``fit()`` returns None with fewer than
    ``min_trades`` trades or fewer than three non-empty levels.
    """

    def __init__(
        self, window: float = 600.0, step: float = 0.01, levels: int = 20, min_trades: int = 30
    ) -> None:
        self.window = window
        self.step = step
        self.levels = levels
        self.min_trades = min_trades
        self._trades: deque[tuple[float, float]] = deque()

    def on_trade(self, t: float, price_dollars: float, mid_before: float) -> None:
        self._trades.append((t, abs(price_dollars - mid_before)))
        cutoff = t - self.window
        while self._trades and self._trades[0][0] < cutoff:
            self._trades.popleft()

    def fit(self, now: float) -> tuple[float, float] | None:
        """``(A, k)`` in trades/second and 1/dollar, or None when the window holds too little."""
        depths = np.fromiter((d for t, d in self._trades if t >= now - self.window), dtype=float)
        if depths.size < self.min_trades:
            return None
        levels = np.arange(self.levels) * self.step
        counts = (depths[None, :] >= levels[:, None] - 1e-12).sum(axis=1)
        mask = counts > 0
        if mask.sum() < 3:
            return None
        rates = counts[mask] / self.window
        slope, intercept = np.polyfit(levels[mask], np.log(rates), 1)
        k = -float(slope)
        if not math.isfinite(k) or k <= 0.0:
            return None
        return math.exp(float(intercept)), k
