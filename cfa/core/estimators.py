"""Online estimators for the fast path: σ on logit(mid), fill rates, markouts, intensity A and k.

All are O(1) amortised per update, deterministic, and take time as an argument (seconds): they
never read a clock. Units: σ_x in logit units per √second; rates in fills per minute of quoted
time; markouts in dollars per contract (positive = the fill made money at that horizon);
``A`` in trades per second reaching the touch, ``k`` in 1/dollar.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

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
        "_seed",
        "_short",
        "_short_dt",
        "half_life",
        "horizon",
        "interval",
        "min_samples",
        "prior",
        "prior_weight",
        "samples",
        "seeded_samples",
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
        self._seed = DecayedMean(half_life)
        """A history's two-scale variance rate (:meth:`seed`), weighted by its long returns'
        decayed weight; it ages with the live long returns."""
        self.seeded_samples = 0
        """Long-scale returns of the history given to :meth:`seed` (they count towards warm)."""

    def seed(self, points: Sequence[tuple[float, float]]) -> int:
        """Start from a history of ``(t, mid)`` points: seconds, dollars strictly inside (0, 1).

        For a warm start from a venue's recorded past (1-minute candles, say) before any live
        :meth:`update`. The points (oldest first; invalid mids skipped) are sampled as
        :meth:`update` samples the live mid — the first point at least ``interval`` after the
        previous sample — and the same two-scale estimate is formed from them: short returns
        between consecutive samples, long returns over ``horizon`` seconds, or over twice the
        points' median spacing when that is longer (the noise cancellation needs two distinct
        scales). The history is weighted equally over its span (a 2-hour history is worth more
        than its last ``half_life``: the seed's spread halves); the result enters
        :attr:`var_rate` with the weight its long returns would have in the live averages as of
        the last point (decayed with ``half_life``), and keeps ageing as live long returns
        arrive, so live evidence takes over at the estimator's own pace. Returns the number of
        long returns the history gave (``seeded_samples``, which counts towards :attr:`warm`).

        Raises ValueError after a live update (a seed is the estimator's past, not its present)
        or when the times are not finite and non-decreasing. A second call replaces the seed.
        """
        if self._last_x is not None:
            raise ValueError("seed() must come before the first live update()")
        valid = [(float(t), float(m)) for t, m in points if 0.0 < m < 1.0 and math.isfinite(m)]
        times = [t for t, _ in valid]
        if any(not math.isfinite(t) for t in times) or any(b < a for a, b in pairwise(times)):
            raise ValueError("seed(): point times must be finite and non-decreasing")
        self._seed = DecayedMean(self.half_life)
        self.seeded_samples = 0
        if len(valid) < 3:
            return 0
        gaps = sorted(b - a for a, b in pairwise(times) if b > a)
        spacing = max(gaps[len(gaps) // 2] if gaps else 0.0, self.interval)
        horizon = max(self.horizon, 2.0 * spacing)
        span = times[-1] - times[0]
        # the value from the whole history, equally weighted; its weight as the live
        # estimator's memory would hold those returns now (so live takes over at its pace)
        value = LogitVolatility(self.interval, horizon, max(self.half_life, span))
        weight = LogitVolatility(self.interval, horizon, self.half_life)
        for t, m in valid:
            value.update(t, m)
            weight.update(t, m)
        if value.samples == 0:
            return 0
        self._seed.add(weight._last_t, value._live_var(), weight._long.weight)
        self.seeded_samples = value.samples
        return value.samples

    def update(self, t: float, mid: float) -> None:
        """Observe the mid (dollars, strictly inside (0, 1)) at time ``t`` seconds."""
        if self._last_x is not None and t - self._last_t < self.interval:
            return  # (checked first: the common case; both checks only return)
        if not (0.0 < mid < 1.0) or not math.isfinite(t):
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
            self._seed.age(t)
            self.samples += 1
        self._last_x, self._last_t = x, t

    @property
    def warm(self) -> bool:
        """``min_samples`` long returns seen, live and seeded together."""
        return self.samples + self.seeded_samples >= self.min_samples

    def _live_var(self) -> float:
        """The two-scale variance rate of the live returns alone (0 before a long return)."""
        long, short = self._long.mean, self._short.mean
        if long is None or short is None:
            return 0.0
        H, D = self._long_dt.mean, self._short_dt.mean
        assert H is not None and D is not None
        v = (H * long - D * short) / (H - D) if H > D else long
        return max(v, 0.25 * long)

    @property
    def var_rate(self) -> float:
        """σ_x² per second: the live estimate, the seed's and the prior's, each by its weight
        (the prior's alone before any long-scale return or seed; 0 without one)."""
        prior = 0.0 if self.prior is None else self.prior * self.prior
        w = (
            self._long.weight
            if self._long.mean is not None and self._short.mean is not None
            else 0.0
        )
        v = self._live_var() if w > 0.0 else 0.0
        ws = self._seed.weight
        vs = self._seed.mean or 0.0
        total = w + ws + self.prior_weight
        if total <= 0.0:
            return prior
        return (w * v + ws * vs + self.prior_weight * prior) / total

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
        "_ask_fills",
        "_ask_quoted",
        "_ask_quoting",
        "_bid_fills",
        "_bid_quoted",
        "_bid_quoting",
        "_decay",
        "_last_t",
        "last_fill_t",
        "min_quoted",
    )

    def __init__(self, half_life: float = 600.0, min_quoted: float = 30.0) -> None:
        self._decay = math.log(2.0) / half_life
        self.min_quoted = min_quoted
        self._bid_fills = self._ask_fills = 0.0
        self._bid_quoted = self._ask_quoted = 0.0
        self._bid_quoting = self._ask_quoting = False
        self._last_t: float | None = None
        self.last_fill_t: dict[Side, float | None] = {Side.BID: None, Side.ASK: None}

    def mark(self, t: float, bid_quoted: bool, ask_quoted: bool) -> None:
        """Advance to ``t`` and record which sides are quoted from now on."""
        last = self._last_t
        if last is None or t > last:
            if last is not None:
                f = math.exp(-self._decay * (t - last))
                self._bid_fills *= f
                self._ask_fills *= f
                # quoted time accrues while it decays: ∫ e^{-λ(t-s)} ds over the step
                if self._bid_quoting:
                    self._bid_quoted = self._bid_quoted * f + (1.0 - f) / self._decay
                else:
                    self._bid_quoted *= f
                if self._ask_quoting:
                    self._ask_quoted = self._ask_quoted * f + (1.0 - f) / self._decay
                else:
                    self._ask_quoted *= f
            self._last_t = t
        self._bid_quoting = bid_quoted
        self._ask_quoting = ask_quoted

    def on_fill(self, t: float, side: Side) -> None:
        """Count one fill (of any size)."""
        if side is Side.BID:
            self._bid_fills += 1.0
        else:
            self._ask_fills += 1.0
        self.last_fill_t[side] = t

    def per_minute(self, side: Side) -> float | None:
        """Decayed fills per quoted minute, or None with under ``min_quoted`` quoted seconds."""
        quoted = self.quoted_seconds(side)
        if quoted < self.min_quoted:
            return None
        return 60.0 * self.fills(side) / quoted

    def fills(self, side: Side) -> float:
        """Decayed fill count behind :meth:`per_minute` (an effective sample size)."""
        return self._bid_fills if side is Side.BID else self._ask_fills

    def quoted_seconds(self, side: Side) -> float:
        return self._bid_quoted if side is Side.BID else self._ask_quoted


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
        self._due = math.inf
        """No pending fill resolves before this time: ``min(q[0].t + h)`` over the horizons
        with a pending fill (inf when none), so :meth:`on_mid` before it has nothing to do."""

    def on_fill(self, t: float, side: Side, price_dollars: float, contracts: float = 1.0) -> None:
        rec = _PendingFill(t, side.sign, price_dollars, contracts)
        for h, q in self._pending.items():
            if not q:
                self._due = min(self._due, t + h)
            q.append(rec)

    def on_mid(self, t: float, mid: float) -> None:
        """Resolve every pending fill whose horizon has passed, against this mid."""
        if t < self._due:  # (a NaN t goes on to the loop, which resolves nothing)
            return
        due = math.inf
        for h, q in self._pending.items():
            while q and q[0].t + h <= t:
                rec = q.popleft()
                self._mean[h].add(t, rec.sign * (mid - rec.price), rec.count)
                self._n[h].add(t, 1.0)
                self.count[h] += 1
            if q:
                due = min(due, q[0].t + h)
        self._due = due

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
        depths = [d for t, d in self._trades if t >= now - self.window]
        return fit_intensity(depths, self.window, self.step, self.levels, self.min_trades)


def fit_intensity(
    depths: Sequence[float],
    span_s: float,
    step: float,
    levels: int = 20,
    min_trades: int = 30,
) -> tuple[float, float] | None:
    """Fit ``λ(δ) = A·e^(−kδ)`` to trade depths observed over ``span_s`` seconds.

    ``depths``: each trade's distance from the mid before it, dollars. For ``δ_j = j·step``
    (``j < levels``) the rate of trades reaching at least ``δ_j`` is ``count_j / span_s`` and
    ``log λ = log A − k·δ`` is fitted by least squares over the non-empty levels. Returns
    ``(A, k)`` in trades per second and 1/dollar, or None with fewer than ``min_trades``
    depths, fewer than three non-empty levels (so always with ``levels < 3``) or a
    non-decreasing fit. This is what :meth:`TradingIntensity.fit` measures over its window,
    for any span (a REST history, say).
    Raises ValueError for a span or step that is not positive.
    """
    if not (span_s > 0 and step > 0):
        raise ValueError(f"span_s and step must be positive, got {span_s!r} and {step!r}")
    d = np.asarray(depths, dtype=float)
    if d.size < min_trades:
        return None
    grid = np.arange(levels) * step
    counts = (d[None, :] >= grid[:, None] - 1e-12).sum(axis=1)
    mask = counts > 0
    if mask.sum() < 3:
        return None
    rates = counts[mask] / span_s
    slope, intercept = np.polyfit(grid[mask], np.log(rates), 1)
    k = -float(slope)
    if not math.isfinite(k) or k <= 0.0:
        return None
    return math.exp(float(intercept)), k


def trade_depths(
    trades: Sequence[tuple[float, float]], mids: Sequence[tuple[float, float]]
) -> list[float]:
    """Depth of each trade from the mid in force when it happened, dollars.

    ``trades``: ``(t, price)`` in seconds and dollars; ``mids``: ``(t, mid)`` points (1-minute
    candle closes, say), both oldest first. A trade's mid is the last point at or before its
    time (at or before: a candle's close at ``t`` is the book the trade at ``t`` met, within the
    candle's resolution); trades before the first point have none and are left out. Depths
    come back in the order of the trades that have one.
    """
    out: list[float] = []
    j = -1
    n = len(mids)
    for t, price in trades:
        while j + 1 < n and mids[j + 1][0] <= t:
            j += 1
        if j >= 0:
            out.append(abs(price - mids[j][1]))
    return out
