"""One latent process behind several markets of one Kalshi event (a strike ladder or a
mutually exclusive set).

An :class:`EventDriver` draws the event's state on a regular time grid (``grid_step``
seconds), lazily and forward, in blocks of :data:`BLOCK_SECONDS`; each leg's market reads it
through a :class:`LegView`, which offers the market what :class:`~cfa.exchange.sim.latent.
LatentProcess` offers (``path``, ``to``, ``next_rare``, ``activity``, ``sigma``, ``regime``,
``p``, ``resolve``) and interpolates the driver at the leg's own times. Each leg pre-draws its
own tape up to ~30 s ahead, so legs ask for times in their own non-decreasing order, each at
a different point; the driver keeps the grid points from the earliest time a leg (or the
exchange's clock) can still ask for, and drops older ones, so its memory stays bounded.

State (logit units; time in seconds since the epoch):

* **ladder** — one underlying ``X`` (``X = 0`` at the start), a Brownian motion with the
  scenario's two volatility regimes plus compound-Poisson jumps (``jump_rate`` per second,
  sizes ``N(0, jump_sigma²)``); leg ``i`` ("above strike ``K_i``") has logit ``X − c_i`` with
  ``c_i = −logit(p0_i)``, so ``p_i = expit(X − c_i)`` starts at ``p0_i``, stays non-increasing
  in the strike at every instant, and every leg moves together (a jump moves them all). A
  "price above K at close" market's probit moves the same amount at every strike when the
  log-price moves; the logit here is the usual stand-in for it.
* **exclusive** — one score ``y_j`` per outcome (``y_j = log p0_j`` at the start), each an
  independent Brownian motion with the regime's σ; a jump (same rate and size law) hits one
  outcome drawn uniformly (news about one candidate or one bucket); ``p = softmax(y)``, so
  the probabilities sum to 1 at every instant and a rise in one is a fall in the others.
  Leg ``j``'s logit is ``y_j − log Σ_{k≠j} e^{y_k}``; with two outcomes the legs' logits are
  exact opposites.

The regime (calm/volatile: σ and the activity multiplier on every leg's event rates), the
switches between them (a two-state Markov chain with exponential durations) and the jumps
belong to the driver; each leg's :meth:`LegView.next_rare` returns the driver's next switch or
jump after the leg's time, so its tapes are cut there as a single market's are. The optional
close boost (``close_vol_horizon``, ``close_vol_cap``) scales σ as in
:mod:`~cfa.exchange.sim.latent`.

Between grid points the diffusive part is interpolated linearly (jumps sit at their exact
times). The grid's variance over a cell is exact (a switch inside a cell splits it); what is
lost is the wiggle inside a cell, ``σ²·grid_step/4`` of variance at its middle. The default
step, 0.1 s, was picked by measurement (a ladder leg sampled at 40 Poisson events/s for an hour,
20 seeds, previous-tick realised variance over the true ``σ²T``): at 1 s sampling 0.97 of the
variance is kept (0.25 s step: 0.96, 1 s: 0.96, 2 s: 0.49), at 5 s (the σ estimator's short
scale) 0.98–0.99 for any step up to 1 s, at 0.25 s sampling 0.87 (0.25 s step: 0.84, 1 s:
0.25); the driver's cost did not move with the step (0.025–0.029 µs per leg event). In the
simulator the driver holds about 250 s of grid (~2,500 points at 0.1 s: 20 KB for a ladder,
120 KB for a six-outcome set): thin legs draw ~50 s batches and the grid is kept from the
slowest leg's last-but-one batch, plus one block being drawn.

Settlement: ONE draw per event, at the close (``U ~ U(0, 1)``): on a ladder leg ``i``
resolves YES iff ``U < p_i(close)`` (the YES set is nested: every lower strike is YES when a
higher one is); on an exclusive set the outcome ``j`` with ``Σ_{k<j} p_k ≤ U < Σ_{k≤j} p_k``
resolves YES and every other leg NO.

Randomness: the driver's :class:`numpy.random.SeedSequence` is ``[seed, hash(event_ticker)]``
(:func:`cfa.exchange.sim.market.market_seed`), spawned into three generators: the grid's
normals, the rare events (switches, jumps), the settlement. Each is consumed in time order
whichever leg asks first, so the event's path is a pure function of the seed and the event
ticker — independent of the block size, the order the legs ask in, and of diagnostic calls
(:meth:`EventDriver.probabilities`). A leg's own generator still draws the normals its flow
draws for :meth:`LegView.path`; the view ignores them.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np
import numpy.typing as npt

from cfa.exchange.sim.latent import CALM, VOLATILE
from cfa.exchange.sim.scenarios import EventParams, LatentParams

FloatArray = npt.NDArray[np.float64]

BLOCK_SECONDS = 60.0
"""The driver extends its grid by this much simulated time at a time."""

_X_MAX = 30.0
"""A leg's |logit p| is clipped here so that p stays strictly inside (0, 1) in floats."""

LADDER = "ladder"
EXCLUSIVE = "exclusive"


class EventDriver:
    """The latent state of one event, shared by its legs' markets.

    ``params`` gives the regimes, jumps and close boost; ``event`` the kind, the legs' ``p0``
    and the grid step. Contract: :meth:`view` each leg once, before the run; each view's times
    are non-decreasing; :meth:`probabilities` and :meth:`leg_x` answer for any time from
    :attr:`floor_ts` on (earlier raises ``RuntimeError``: the grid there was dropped).
    """

    def __init__(
        self,
        params: LatentParams,
        event: EventParams,
        seed_seq: np.random.SeedSequence,
        start_ts: float,
        close_ts: float,
    ) -> None:
        if event.kind not in (LADDER, EXCLUSIVE):
            raise ValueError(f"unknown event kind {event.kind!r}")
        self.params = params
        self.kind = event.kind
        self.n = len(event.legs)
        self.start_ts = start_ts
        self.close_ts = close_ts
        self.step = float(event.grid_step)
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"grid_step must be positive and finite, got {self.step}")
        self._block = max(1, round(BLOCK_SECONDS / self.step))
        p0 = np.array([leg.p0 for leg in event.legs], dtype=np.float64)
        if self.kind == LADDER:
            self.width = 1
            self.offsets = -np.log(p0 / (1.0 - p0))  # c_i = -logit(p0_i)
            state0 = np.zeros(1)
        else:
            self.width = self.n
            self.offsets = np.zeros(self.n)
            state0 = np.log(p0 / p0.sum())
        diff_ss, rare_ss, settle_ss = seed_seq.spawn(3)
        self._rng = np.random.Generator(np.random.PCG64(diff_ss))
        self._rare_rng = np.random.Generator(np.random.PCG64(rare_ss))
        self._settle_rng = np.random.Generator(np.random.PCG64(settle_ss))
        # the grid: row r holds the diffusive state at time start_ts + (k0 + r)·step
        self._k0 = 0
        self._grid: FloatArray = state0.reshape(1, self.width).copy()
        # rare events, in time order; the ones before the floor are folded into the bases
        self._reg0 = CALM if params.start_regime == "calm" else VOLATILE
        self._switches: list[float] = []
        self._jump_t: list[float] = []
        self._jump_cum: list[FloatArray] = []  # cumulative jump vector after each jump
        self._jump_base: FloatArray = np.zeros(self.width)
        self._rare_until = start_ts
        self._rare_regime = self._reg0
        self._next_switch = start_ts + float(
            self._rare_rng.exponential(self.regime_params(self._reg0)[1])
        )
        self._next_jump = (
            start_ts + float(self._rare_rng.exponential(1.0 / params.jump_rate))
            if params.jump_rate > 0
            else math.inf
        )
        self._views: list[LegView] = []
        self._outcome: tuple[bool, ...] | None = None
        self.max_points = 1
        """Most grid points held at once so far (for tests of the bounded memory)."""

    # -- construction ----------------------------------------------------------------------

    def view(self, i: int) -> LegView:
        """The latent view of leg ``i`` (0-based, in the event's leg order)."""
        if not 0 <= i < self.n:
            raise ValueError(f"leg index {i} outside 0..{self.n - 1}")
        v = LegView(self, i)
        self._views.append(v)
        return v

    # -- state -----------------------------------------------------------------------------

    @property
    def points_held(self) -> int:
        """Grid points held now (rows of ``width`` floats)."""
        return len(self._grid)

    @property
    def floor_ts(self) -> float:
        """The earliest time the driver can still answer for."""
        return self.start_ts + self._k0 * self.step

    def regime_params(self, regime: int) -> tuple[float, float, float]:
        """``(sigma, mean_duration, activity)`` of ``regime``."""
        r = self.params.calm if regime == CALM else self.params.volatile
        return float(r.sigma), float(r.mean_duration), float(r.activity)

    def regime_at(self, t: float) -> int:
        """The regime in force at ``t`` (a switch at ``t`` counts)."""
        self._rare_to(t)
        flips = bisect_right(self._switches, t)
        return self._reg0 ^ (flips & 1)

    def next_rare_after(self, t: float) -> float:
        """The first regime switch or jump strictly after ``t``."""
        self._rare_to(t)  # the pending (not yet listed) events are after t
        i = bisect_right(self._switches, t)
        switch = self._switches[i] if i < len(self._switches) else self._next_switch
        j = bisect_right(self._jump_t, t)
        jump = self._jump_t[j] if j < len(self._jump_t) else self._next_jump
        return min(switch, jump)

    def _rare_to(self, t: float) -> None:
        """Draw every switch and jump at or before ``t`` (in time order, one generator)."""
        if t <= self._rare_until:
            return
        rng = self._rare_rng
        while min(self._next_switch, self._next_jump) <= t:
            if self._next_switch <= self._next_jump:
                ts = self._next_switch
                self._switches.append(ts)
                self._rare_regime ^= 1
                self._next_switch = ts + float(
                    rng.exponential(self.regime_params(self._rare_regime)[1])
                )
            else:
                ts = self._next_jump
                size = float(rng.normal(0.0, self.params.jump_sigma))
                jump = np.zeros(self.width)
                jump[int(rng.integers(self.n)) if self.kind == EXCLUSIVE else 0] = size
                prev = self._jump_cum[-1] if self._jump_cum else self._jump_base
                self._jump_t.append(ts)
                self._jump_cum.append(prev + jump)
                self._next_jump = ts + float(rng.exponential(1.0 / self.params.jump_rate))
        self._rare_until = t

    def _variance(self, a: float, b: float) -> float:
        """∫ σ(s)² ds over (a, b] with the regimes (no close boost)."""
        self._rare_to(b)
        i = bisect_right(self._switches, a)
        regime = self._reg0 ^ (i & 1)
        total, t = 0.0, a
        while i < len(self._switches) and self._switches[i] < b:
            s = self._switches[i]
            total += self.regime_params(regime)[0] ** 2 * (s - t)
            t, regime, i = s, regime ^ 1, i + 1
        return total + self.regime_params(regime)[0] ** 2 * (b - t)

    def _boost(self, t: FloatArray) -> FloatArray:
        h, cap = self.params.close_vol_horizon, self.params.close_vol_cap
        if h <= 0:
            return np.ones_like(t)
        ratio = h / np.maximum(self.close_ts - t, 1e-9)
        return np.minimum(cap, np.sqrt(np.maximum(ratio, 1.0)))

    def _extend(self) -> None:
        """Append one block of grid points (first dropping what no one can ask for)."""
        self._trim()
        k_last = self._k0 + len(self._grid) - 1
        k = np.arange(k_last, k_last + self._block + 1, dtype=np.float64)
        times = self.start_ts + k * self.step
        self._rare_to(float(times[-1]))
        sig2 = np.empty(self._block)
        # the common case, a cell inside one regime, vectorised; cells with a switch exactly
        switches = np.asarray(self._switches)
        flips = np.searchsorted(switches, times[:-1], side="right")
        regime = self._reg0 ^ (flips & 1)
        sc, sv = self.params.calm.sigma, self.params.volatile.sigma
        sig2[:] = np.where(regime == CALM, sc * sc, sv * sv) * self.step
        inside = np.searchsorted(switches, times[1:], side="left") > flips
        for c in np.flatnonzero(inside).tolist():
            sig2[c] = self._variance(float(times[c]), float(times[c + 1]))
        sd = np.sqrt(sig2) * self._boost(times[1:])
        z = self._rng.standard_normal((self._block, self.width))
        rows = self._grid[-1] + np.cumsum(sd[:, None] * z, axis=0)
        self._grid = np.concatenate((self._grid, rows))
        self.max_points = max(self.max_points, len(self._grid))

    def _trim(self) -> None:
        if not self._views:
            return
        floor = min(v.floor for v in self._views)
        keep_from = int((floor - self.start_ts) / self.step) - 1  # the cell holding the floor
        drop = min(keep_from - self._k0, len(self._grid) - 1)
        if drop > 0:
            self._grid = self._grid[drop:]
            self._k0 += drop
        # fold jumps and switches before the floor into the bases
        cut = self.floor_ts
        j = bisect_right(self._jump_t, cut)
        if j:
            self._jump_base = self._jump_cum[j - 1]
            del self._jump_t[:j], self._jump_cum[:j]
        s = bisect_right(self._switches, cut)
        if s:
            self._reg0 ^= s & 1
            del self._switches[:s]

    def _state(self, times: FloatArray) -> FloatArray:
        """The state (diffusion plus jumps) at ascending ``times``, shape ``(len, width)``."""
        if len(times) == 0:
            return np.empty((0, self.width))
        if float(times[0]) < self.floor_ts - 1e-9:
            raise RuntimeError(
                f"event driver: time {float(times[0])} is before the retained grid "
                f"(from {self.floor_ts})"
            )
        last = float(times[-1])
        while self.start_ts + (self._k0 + len(self._grid) - 1) * self.step < last:
            self._extend()
        f = (times - self.start_ts) / self.step - self._k0
        i = np.clip(np.floor(f).astype(np.int64), 0, len(self._grid) - 2)
        w = (f - i)[:, None]
        grid = self._grid
        out = grid[i] * (1.0 - w) + grid[i + 1] * w
        self._rare_to(last)
        if self._jump_t:
            j = np.searchsorted(np.asarray(self._jump_t), times, side="right")
            cum = np.vstack([self._jump_base, *self._jump_cum])
            out = out + cum[j]
        else:
            out = out + self._jump_base
        return out

    def leg_x(self, leg: int, times: FloatArray) -> FloatArray:
        """Leg ``leg``'s logit at ascending ``times`` (clipped to ±30)."""
        s = self._state(times)
        if self.kind == LADDER:
            x = s[:, 0] - self.offsets[leg]
        else:
            others = np.delete(s, leg, axis=1)
            top = others.max(axis=1)
            lse = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
            x = s[:, leg] - lse
        out: FloatArray = np.clip(x, -_X_MAX, _X_MAX)
        return out

    def probabilities(self, t: float) -> FloatArray:
        """Every leg's latent probability of YES at ``t``, in leg order.

        Ladder: non-increasing along the legs; exclusive: sums to 1 (each leg's logit is
        clipped at ±30 as everywhere, which can move the sum by at most ``n·1e-13``)."""
        x = np.array([self.leg_x(i, np.array([t]))[0] for i in range(self.n)])
        p: FloatArray = 1.0 / (1.0 + np.exp(-x))
        return p

    def leg_sigma(self, leg: int, t: float) -> float:
        """σ of leg ``leg``'s logit at ``t`` (logit units per √s, before the close boost).

        Ladder: the regime's σ. Exclusive: ``σ·√(1 + Σ_{k≠j} w_k²)`` with ``w_k = p_k/(1−p_j)``,
        the instantaneous volatility of ``y_j − log Σ_{k≠j} e^{y_k}``."""
        sigma = self.regime_params(self.regime_at(t))[0]
        if self.kind == LADDER:
            return sigma
        p = self.probabilities(t)
        rest = 1.0 - p[leg]
        w = np.delete(p, leg) / rest if rest > 0 else np.zeros(self.n - 1)
        return float(sigma * math.sqrt(1.0 + float((w * w).sum())))

    def leg_jump_variance(self, leg: int, t: float) -> float:
        """Variance per second that jumps add to leg ``leg``'s logit at ``t`` (logit² / s).

        Ladder: ``jump_rate·jump_sigma²``. Exclusive (to first order in the jump): a jump hits
        this outcome with probability ``1/n`` (moving its logit by the jump) or another
        outcome ``k`` (moving it by ``−w_k`` times the jump), so
        ``jump_rate·jump_sigma²·(1 + Σ_{k≠j} w_k²)/n``."""
        base = self.params.jump_rate * self.params.jump_sigma**2
        if self.kind == LADDER:
            return base
        p = self.probabilities(t)
        rest = 1.0 - p[leg]
        w = np.delete(p, leg) / rest if rest > 0 else np.zeros(self.n - 1)
        return float(base * (1.0 + float((w * w).sum())) / self.n)

    def outcome(self) -> tuple[bool, ...]:
        """The event's result, one YES flag per leg: drawn once, from the probabilities at
        the close (see the module docstring)."""
        if self._outcome is None:
            p = self.probabilities(self.close_ts)
            u = float(self._settle_rng.random())
            if self.kind == LADDER:
                self._outcome = tuple(bool(u < pi) for pi in p.tolist())
            else:
                cum = np.cumsum(p / p.sum())
                j = min(int(np.searchsorted(cum, u, side="right")), self.n - 1)
                self._outcome = tuple(i == j for i in range(self.n))
        return self._outcome


class LegView:
    """One leg's latent probability, read off its event's driver.

    Has the interface :class:`~cfa.exchange.sim.market.SimMarket` uses of a
    :class:`~cfa.exchange.sim.latent.LatentProcess`; its time :attr:`t` only moves forward.
    """

    __slots__ = ("_last_start", "driver", "floor", "leg", "t")

    def __init__(self, driver: EventDriver, leg: int) -> None:
        self.driver = driver
        self.leg = leg
        self.t = driver.start_ts
        self._last_start = self.t
        self.floor = self.t
        """The earliest time this leg (or the clock, which is never behind the leg's last
        processed event) may still need: where its last-but-one advance started."""

    def _advance(self, t: float) -> None:
        if t < self.t:
            raise ValueError(f"leg {self.leg}: time went back from {self.t} to {t}")
        self.floor = self._last_start
        self._last_start = self.t
        self.t = t

    @property
    def regime(self) -> int:
        """The driver's regime at this leg's time (:data:`CALM` or :data:`VOLATILE`)."""
        return self.driver.regime_at(self.t)

    @property
    def sigma(self) -> float:
        """σ of this leg's logit now (logit units per √second, before the close boost)."""
        return self.driver.leg_sigma(self.leg, self.t)

    @property
    def jump_variance(self) -> float:
        """Variance per second jumps add to this leg's logit now (see
        :meth:`EventDriver.leg_jump_variance`)."""
        return self.driver.leg_jump_variance(self.leg, self.t)

    @property
    def activity(self) -> float:
        """The regime's multiplier on every event rate."""
        return self.driver.regime_params(self.regime)[2]

    @property
    def x(self) -> float:
        """This leg's logit at its time."""
        return float(self.driver.leg_x(self.leg, np.array([self.t]))[0])

    @property
    def p(self) -> float:
        """This leg's latent probability of YES at its time."""
        return 1.0 / (1.0 + math.exp(-self.x))

    def p_at(self, t: float) -> float:
        """This leg's latent probability of YES at ``t`` (from the driver's floor on)."""
        x = float(self.driver.leg_x(self.leg, np.array([t]))[0])
        return 1.0 / (1.0 + math.exp(-x))

    def next_rare(self) -> float:
        """The driver's next regime switch or jump after this leg's time."""
        return self.driver.next_rare_after(self.t)

    def path(self, times: FloatArray, z: FloatArray) -> FloatArray:
        """The logit at ascending event ``times`` (``z``, the leg's own normals, is unused);
        leaves the view at the last one."""
        if len(times) == 0:
            return np.empty(0)
        x = self.driver.leg_x(self.leg, times)
        self._advance(float(times[-1]))
        return x

    def to(self, t: float) -> None:
        """Move to ``t`` (switches and jumps due by ``t`` are in the driver's path already)."""
        if t > self.t:
            self._advance(t)

    def resolve(self) -> bool:
        """This leg's outcome in the event's single draw at the close."""
        return self.driver.outcome()[self.leg]
