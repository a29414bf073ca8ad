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


class DecayedMean:
    """Exponentially weighted mean over time with the weights normalised (bias-corrected).

    Each observation enters with weight 1 and every weight halves each ``half_life`` seconds,
    so the first observation never dominates (unlike an EWMA started from its first value).
    ``weight`` is the sum of the current weights: an effective sample count.
    """

    __slots__ = ("_decay", "_last_t", "_sum", "weight")

    def __init__(self, half_life: float) -> None:
        self._decay = math.log(2.0) / half_life
        self._sum = 0.0
        self.weight = 0.0
        self._last_t: float | None = None

    def age(self, t: float) -> None:
        """Decay the weights to time ``t`` (no-op for earlier times)."""
        if self._last_t is not None and t > self._last_t:
            f = math.exp(-self._decay * (t - self._last_t))
            self._sum *= f
            self.weight *= f
        if self._last_t is None or t > self._last_t:
            self._last_t = t

    def add(self, t: float, value: float, weight: float = 1.0) -> None:
        self.age(t)
        self._sum += weight * value
        self.weight += weight

    @property
    def mean(self) -> float | None:
        return None if self.weight <= 0.0 else self._sum / self.weight


class LogitVolatility:
    """Two-scale realised variance rate of ``logit(mid)``, robust to the price grid.

    The mid is sampled at the first event at least ``interval`` seconds after the previous
    sample. On a price grid the observed mid bounces between neighbouring levels: an iid noise
    ``η`` adds ``2η²`` to every squared return whatever its length, which at one second
    inflates the variance many times over. Returns are therefore taken at two scales — from
    one sample to the next (about ``interval`` seconds) and over ``horizon`` seconds
    (overlapping) — and the noise is cancelled (Zhang, Mykland & Aït-Sahalia 2005)::

        σ² = (H·L − Δ·S) / (H − Δ)

    where ``S`` and ``L`` are the decayed means of the squared returns per second at the short
    and long scale and ``Δ``, ``H`` their mean lengths in seconds. The estimate never drops
    below a quarter of ``L`` (a noise estimate cannot explain away most of the long-scale
    variance). The means are bias-corrected EWMAs with ``half_life`` seconds
    (:class:`DecayedMean`), so the first returns carry no more weight than later ones.

    A ``prior`` σ (logit per √s) enters as ``prior_weight`` long returns' worth of evidence,
    so a short warm-up leans on it and a long run forgets it. ``samples`` counts long-scale
    returns; the estimate is *warm* with ``min_samples`` of them (the first needs ``horizon``
    seconds of history). Units: σ_x in logit units per √second.
    """

    __slots__ = (
        "_hist",
        "_last_t",
        "_last_x",
        "_long",
        "_long_dt",
        "_short",
        "_short_dt",
        "half_life",
        "horizon",
        "interval",
        "min_samples",
        "prior",
        "prior_weight",
        "samples",
    )

    def __init__(
        self,
        interval: float = 5.0,
        horizon: float = 60.0,
        half_life: float = 600.0,
        min_samples: int = 12,
        prior: float | None = None,
        prior_weight: float = 0.0,
    ) -> None:
        if interval <= 0 or half_life <= 0 or min_samples < 1 or horizon <= interval:
            raise ValueError(
                "interval and half_life must be positive, horizon > interval, min_samples >= 1"
            )
        if prior is not None and not (math.isfinite(prior) and prior > 0):
            raise ValueError(f"prior must be a positive finite sigma, got {prior!r}")
        if not (math.isfinite(prior_weight) and prior_weight >= 0):
            raise ValueError(f"prior_weight must be >= 0, got {prior_weight!r}")
        self.interval = interval
        self.horizon = horizon
        self.half_life = half_life
        self.min_samples = min_samples
        self.prior = prior
        self.prior_weight = prior_weight if prior is not None else 0.0
        self.samples = 0
        self._short = DecayedMean(half_life)
        self._short_dt = DecayedMean(half_life)
        self._long = DecayedMean(half_life)
        self._long_dt = DecayedMean(half_life)
        self._hist: deque[tuple[float, float]] = deque()
        self._last_x: float | None = None
        self._last_t = 0.0

    def update(self, t: float, mid: float) -> None:
        """Observe the mid (dollars, strictly inside (0, 1)) at time ``t`` seconds."""
        if not (0.0 < mid < 1.0) or not math.isfinite(t):
            return
        if self._last_x is not None and t - self._last_t < self.interval:
            return
        x = math.log(mid / (1.0 - mid))
        if self._last_x is not None:
            dt = t - self._last_t
            r = x - self._last_x
            self._short.add(t, r * r / dt)
            self._short_dt.add(t, dt)
        hist = self._hist
        hist.append((t, x))
        while len(hist) > 2 and t - hist[1][0] >= self.horizon:
            hist.popleft()
        t0, x0 = hist[0]
        if len(hist) > 1 and t - t0 >= self.horizon:
            dt = t - t0
            r = x - x0
            self._long.add(t, r * r / dt)
            self._long_dt.add(t, dt)
            self.samples += 1
        self._last_x, self._last_t = x, t

    @property
    def warm(self) -> bool:
        return self.samples >= self.min_samples

    @property
    def var_rate(self) -> float:
        """σ_x² per second (the prior's before any long-scale return; 0 without one)."""
        long, short = self._long.mean, self._short.mean
        prior = 0.0 if self.prior is None else self.prior * self.prior
        if long is None or short is None:
            return prior
        H, D = self._long_dt.mean, self._short_dt.mean
        assert H is not None and D is not None
        v = (H * long - D * short) / (H - D) if H > D else long
        v = max(v, 0.25 * long)
        w = self._long.weight
        return (w * v + self.prior_weight * prior) / (w + self.prior_weight)

    @property
    def sigma(self) -> float:
        """σ_x: logit volatility per √second (the prior, or 0, before the first long return)."""
        return math.sqrt(self.var_rate)


class FillRates:
    """Fills per minute of *quoted* time, per side, decayed with a half-life in seconds.

    Call :meth:`mark` whenever the set of quoted sides may have changed (on every event is fine);
    the time between calls counts as quoted for each side that was quoted. Both the fills and
    the quoted time decay, so a rate ages out: once a side has been quoted for less than
    ``min_quoted`` seconds of (decayed) time its rate is None, not the frozen last value.
    """

    __slots__ = (
        "_decay",
        "_fills",
        "_last_t",
        "_quoted",
        "_quoting",
        "last_fill_t",
        "min_quoted",
    )

    def __init__(self, half_life: float = 600.0, min_quoted: float = 30.0) -> None:
        self._decay = math.log(2.0) / half_life
        self.min_quoted = min_quoted
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
                if self._quoting[side]:
                    # quoted time accrues while it decays: ∫ e^{-λ(t-s)} ds over the step
                    self._quoted[side] = self._quoted[side] * f + (1.0 - f) / self._decay
                else:
                    self._quoted[side] *= f
        if self._last_t is None or t > self._last_t:
            self._last_t = t
        self._quoting[Side.BID] = bid_quoted
        self._quoting[Side.ASK] = ask_quoted

    def on_fill(self, t: float, side: Side) -> None:
        """Count one fill (of any size)."""
        self._fills[side] += 1.0
        self.last_fill_t[side] = t

    def per_minute(self, side: Side) -> float | None:
        """Decayed fills per quoted minute, or None with under ``min_quoted`` quoted seconds."""
        quoted = self._quoted[side]
        if quoted < self.min_quoted:
            return None
        return 60.0 * self._fills[side] / quoted

    def fills(self, side: Side) -> float:
        """Decayed fill count behind :meth:`per_minute` (an effective sample size)."""
        return self._fills[side]

    def quoted_seconds(self, side: Side) -> float:
        return self._quoted[side]


@dataclass(frozen=True, slots=True)
class _PendingFill:
    t: float
    sign: int
    price: float
    count: float


class Markouts:
    """Mark-outs of our fills at fixed horizons: ``sign·(mid(t + h) − fill price)`` in dollars.

    A bid fill (we bought) has sign +1; positive mark-outs mean the fill was not adversely
    selected. Each horizon keeps a size-weighted mean whose weights halve every ``half_life``
    seconds, so an old mark-out ages out instead of being cited for half an hour; ``n(h)`` is
    the decayed fill count behind it and ``average`` is None below ``min_n``.
    """

    def __init__(
        self,
        horizons: tuple[float, ...] = (5.0, 60.0),
        half_life: float = 600.0,
        min_n: float = 3.0,
    ) -> None:
        self.horizons = horizons
        self.min_n = min_n
        self._pending: dict[float, deque[_PendingFill]] = {h: deque() for h in horizons}
        self._mean = {h: DecayedMean(half_life) for h in horizons}
        self._n = {h: DecayedMean(half_life) for h in horizons}
        self.count: dict[float, int] = dict.fromkeys(horizons, 0)
        """Fills resolved at each horizon since the start (not decayed)."""

    def on_fill(self, t: float, side: Side, price_dollars: float, contracts: float = 1.0) -> None:
        rec = _PendingFill(t, side.sign, price_dollars, contracts)
        for q in self._pending.values():
            q.append(rec)

    def on_mid(self, t: float, mid: float) -> None:
        """Resolve every pending fill whose horizon has passed, against this mid."""
        for h, q in self._pending.items():
            while q and q[0].t + h <= t:
                rec = q.popleft()
                self._mean[h].add(t, rec.sign * (mid - rec.price), rec.count)
                self._n[h].add(t, 1.0)
                self.count[h] += 1

    def n(self, horizon: float, now: float | None = None) -> float:
        """Decayed number of fills behind the average at ``horizon`` (as of ``now``)."""
        d = self._n[horizon]
        if now is not None:
            d.age(now)
            self._mean[horizon].age(now)
        return d.weight

    def average(self, horizon: float, now: float | None = None) -> float | None:
        """Weighted mean mark-out, dollars per contract; None below ``min_n`` decayed fills."""
        if self.n(horizon, now) < self.min_n:
            return None
        return self._mean[horizon].mean


class HoldingTime:
    """How long a net position persists, seconds: the decay time of the inventory.

    The position ``q`` (contracts) is sampled every ``interval`` seconds and its lag-one
    persistence ``ρ = E[q_t·q_{t−Δ}] / E[q²]`` (uncentred: the risk is the position itself) is
    tracked with decayed means of ``half_life`` seconds; the decay time is ``τ = −Δ / ln ρ``.
    This is the horizon over which inventory is at risk, the ``τ`` the Avellaneda–Stoikov
    penalty should use for a maker that turns its position over instead of holding it to the
    close. It is not the time a single contract is held (Little's law): a maker can trade
    both sides every second while its *net* position stays long for minutes, and the net
    position is what the price moves against.

    None until ``min_samples`` samples with a position were seen or when the position never
    decays (ρ ≥ 1 within noise: the caller caps τ anyway); ``max_s`` when ρ is so close to 1
    that ``τ`` would exceed it.
    """

    __slots__ = ("_cross", "_last_q", "_next_t", "_square", "interval", "max_s", "min_samples", "n")

    def __init__(
        self,
        interval: float = 5.0,
        half_life: float = 1800.0,
        min_samples: int = 24,
        max_s: float = 86_400.0,
    ) -> None:
        if interval <= 0 or half_life <= 0 or min_samples < 1:
            raise ValueError("interval and half_life must be positive, min_samples >= 1")
        self.interval = interval
        self.min_samples = min_samples
        self.max_s = max_s
        self._square = DecayedMean(half_life)
        self._cross = DecayedMean(half_life)
        self._last_q: float | None = None
        self._next_t = -math.inf
        self.n = 0
        """Samples taken while a position was held (now or at the previous sample)."""

    def update(self, t: float, q: float) -> None:
        """The position is ``q`` contracts at time ``t`` (call often; it samples itself)."""
        if not (math.isfinite(t) and math.isfinite(q)) or t < self._next_t:
            return
        self._next_t = t + self.interval
        last = self._last_q
        self._last_q = q
        if last is None or (last == 0.0 and q == 0.0):
            return
        self._square.add(t, last * last)
        self._cross.add(t, last * q)
        self.n += 1

    def seconds(self, now: float) -> float | None:
        """``τ`` in seconds, or None before ``min_samples`` samples with a position."""
        if self.n < self.min_samples:
            return None
        sq, cr = self._square.mean, self._cross.mean
        if sq is None or cr is None or sq <= 0.0:
            return None
        rho = cr / sq
        if rho <= 0.0:
            return self.interval  # flips sign from one sample to the next
        if rho >= 1.0:
            return self.max_s
        return min(-self.interval / math.log(rho), self.max_s)


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
