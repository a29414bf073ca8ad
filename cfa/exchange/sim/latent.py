"""The latent (true) probability of a simulated market.

``x = logit(p)`` follows a Brownian motion whose volatility switches between two regimes,
*calm* and *volatile*, as a continuous-time Markov chain (exponential regime durations with the
scenario's ``mean_duration``), plus compound-Poisson jumps ("news": ``jump_rate`` per second,
sizes ``N(0, jump_sigma²)`` in logit units). Optionally the volatility grows as the close nears,
``σ·min(cap, √(H/τ))`` for time-to-close ``τ < H``, the way a "price above strike at close"
contract's logit diffuses faster and faster: this drives ``p`` towards 0 or 1 at close.

At close the market resolves YES with probability ``p`` at that moment.

Units: time in seconds since the epoch, ``sigma`` in logit units per √second.

The process is sampled only at event times: :meth:`LatentProcess.path` takes a whole batch of
event times at once (numpy), so nothing here runs per event. It never sees our orders, so its
path is a pure function of the seed.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import numpy.typing as npt

from cfa.exchange.sim.scenarios import LatentParams, RegimeParams

FloatArray = npt.NDArray[np.float64]

_X_MAX = 30.0
"""|logit p| is clipped here so that p stays strictly inside (0, 1) in floats."""

CALM = 0
VOLATILE = 1


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class Latent(Protocol):
    """What a market reads of its latent probability: :class:`LatentProcess` for a single
    market, :class:`cfa.exchange.sim.event.LegView` for a leg of a multi-market event.

    Times are seconds and only move forward; ``sigma`` is in logit units per √second."""

    @property
    def p(self) -> float: ...
    @property
    def sigma(self) -> float: ...
    @property
    def activity(self) -> float: ...
    @property
    def jump_variance(self) -> float: ...
    @property
    def regime(self) -> int: ...
    def next_rare(self) -> float: ...
    def path(self, times: FloatArray, z: FloatArray) -> FloatArray: ...
    def to(self, t: float) -> None: ...
    def resolve(self) -> bool: ...


class LatentProcess:
    """State of the latent probability: ``x`` at time ``t``, the regime, the next rare events.

    Contract: :meth:`path` and :meth:`to` must be called with non-decreasing times; every
    random draw comes from the generator passed in, in a fixed order, so the path is
    reproducible.
    """

    __slots__ = (
        "_cap",
        "_horizon",
        "close_ts",
        "next_jump",
        "next_switch",
        "params",
        "regime",
        "rng",
        "t",
        "x",
    )

    def __init__(
        self, params: LatentParams, rng: np.random.Generator, t0: float, close_ts: float
    ) -> None:
        self.params = params
        self.rng = rng
        self.t = t0
        self.x = logit(params.p0)
        self.close_ts = close_ts
        self.regime = CALM if params.start_regime == "calm" else VOLATILE
        self._horizon = params.close_vol_horizon
        self._cap = params.close_vol_cap
        self.next_switch = t0 + float(rng.exponential(self._regime_params().mean_duration))
        self.next_jump = (
            t0 + float(rng.exponential(1.0 / params.jump_rate))
            if params.jump_rate > 0
            else math.inf
        )

    def _regime_params(self) -> RegimeParams:
        return self.params.calm if self.regime == CALM else self.params.volatile

    @property
    def p(self) -> float:
        """Current latent probability of YES."""
        return expit(self.x)

    @property
    def sigma(self) -> float:
        """Current regime's σ (logit units per √second), before the close boost."""
        return float(self._regime_params().sigma)

    @property
    def activity(self) -> float:
        """Current regime's multiplier on every event rate."""
        return float(self._regime_params().activity)

    @property
    def jump_variance(self) -> float:
        """Variance per second the jumps add to ``x`` (logit² per second)."""
        return float(self.params.jump_rate * self.params.jump_sigma**2)

    def next_rare(self) -> float:
        """Time of the next regime switch or jump."""
        return min(self.next_switch, self.next_jump)

    def _boost(self, tau: FloatArray) -> FloatArray:
        if self._horizon <= 0:
            return np.ones_like(tau)
        ratio = self._horizon / np.maximum(tau, 1e-9)
        return np.minimum(self._cap, np.sqrt(np.maximum(ratio, 1.0)))

    def path(self, times: FloatArray, z: FloatArray) -> FloatArray:
        """Advance through event ``times`` (ascending, after :attr:`t`) with normals ``z``.

        Returns ``x`` at each time and leaves the state at the last one. No regime switch or
        jump may fall inside the batch (the caller cuts batches at :meth:`next_rare`).
        """
        if len(times) == 0:
            return np.empty(0)
        dt = np.diff(times, prepend=self.t)
        sig = self.sigma * self._boost(self.close_ts - times)
        x = np.clip(self.x + np.cumsum(sig * np.sqrt(dt) * z), -_X_MAX, _X_MAX)
        self.t = float(times[-1])
        self.x = float(x[-1])
        return x

    def to(self, t: float) -> None:
        """Diffuse to time ``t`` (one normal draw), then apply any switch or jump due by ``t``."""
        if t > self.t:
            dt = t - self.t
            sig = self.sigma * float(self._boost(np.array([self.close_ts - t]))[0])
            self.x += sig * math.sqrt(dt) * float(self.rng.standard_normal())
            self.t = t
        if self.next_switch <= t:
            self.regime = VOLATILE if self.regime == CALM else CALM
            self.next_switch = t + float(self.rng.exponential(self._regime_params().mean_duration))
        if self.next_jump <= t:
            self.x += float(self.rng.normal(0.0, self.params.jump_sigma))
            self.next_jump = t + float(self.rng.exponential(1.0 / self.params.jump_rate))
        # keep p strictly inside (0, 1) in float arithmetic
        self.x = min(_X_MAX, max(-_X_MAX, self.x))

    def resolve(self) -> bool:
        """Draw the outcome at close: YES with probability ``p``."""
        return bool(self.rng.random() < self.p)
