"""Correlation of logit-mid changes across the markets of one event, shrunk toward its structure.

Two pieces:

* :func:`structural_correlation` — the prior read off the event's structure
  (:class:`cfa.core.events.EventStructure`): the correlation of the markets' *payoffs* at the
  current probabilities. A ladder's nested "above" contracts are positively correlated, most
  between neighbours; an exclusive set's outcomes negatively; independent markets not at all.
* :class:`EventCovariance` — the online estimate from the markets' mids: previous-tick
  sampling on the event's clock, a ring of the last ``window`` vectors of logit changes, and
  the sample correlation shrunk toward the prior with a data-driven intensity.

The result is the ``corr`` of :func:`cfa.core.multiasset.price_covariance`. Units: time in
seconds, mids and probabilities in dollars (= probabilities, in ``(0, 1)``), correlations
dimensionless. Pure and deterministic: time is an argument, nothing reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cfa.core.events import EventKind, EventStructure
from cfa.core.types import CfaValueError

FloatArray = npt.NDArray[np.float64]

P_CLIP = 1e-4
"""Probabilities are clipped into ``[P_CLIP, 1 − P_CLIP]`` before the prior is formed."""


# -- the structural prior --------------------------------------------------------------------------


def _non_increasing(p: FloatArray) -> FloatArray:
    """Least-squares projection of ``p`` onto non-increasing sequences (pool adjacent violators)."""
    vals: list[float] = []
    sizes: list[int] = []
    for v in p.tolist():
        vals.append(v)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] < vals[-1]:
            s = sizes[-2] + sizes[-1]
            vals[-2] = (vals[-2] * sizes[-2] + vals[-1] * sizes[-1]) / s
            sizes[-2] = s
            vals.pop()
            sizes.pop()
    return np.repeat(np.array(vals, dtype=np.float64), sizes)


def structural_correlation(
    structure: EventStructure, probs: Sequence[float] | FloatArray
) -> FloatArray:
    """Correlation of the event's YES payoffs at probabilities ``probs``: the estimator's prior.

    ``probs`` are the markets' probabilities of YES (mids, dollars in ``[0, 1]``) in
    ``structure.tickers`` order, clipped into ``[P_CLIP, 1 − P_CLIP]``. By kind:

    * **ladder** (ascending strikes): payoffs ``1{X > K_i}`` are nested, so for ``i < j``
      ``Cov = p_j(1 − p_i)`` and ``ρ_ij = √(p_j(1 − p_i) / (p_i(1 − p_j)))``. The formula needs
      ``p`` non-increasing along the ladder; mids that are not (crossed books, stale rungs) are
      first projected onto non-increasing sequences (pool adjacent violators, unweighted).
    * **exclusive**: at most one payoff is 1, so ``Cov = diag(p) − ppᵀ`` and
      ``ρ_ij = −√(p_i p_j / ((1 − p_i)(1 − p_j)))``. That is a covariance only when
      ``Σp ≤ 1``: an exhaustive set's probabilities are scaled to sum to 1 (its prior is then
      singular, with the "one of every outcome" direction riskless), a non-exhaustive set's only
      when they sum to more than 1.
    * **independent**: the identity.

    It is the correlation of what the markets *pay*, the risk of inventory held to resolution.
    The correlation of their *price changes* can differ: the rungs of a ladder on one underlying
    move together almost one for one (a one-factor model gives 1), above the payoff prior; the
    estimate pulls away from the prior as data come in.

    Each case is the correlation of a set of indicator variables, so the result is PSD by
    construction (up to rounding), symmetric, with a unit diagonal and entries in ``[−1, 1]``.
    Raises :class:`CfaValueError` for a wrong length or a probability that is not finite or
    outside ``[0, 1]``.
    """
    p = np.asarray(probs, dtype=np.float64)
    n = structure.n
    if p.shape != (n,):
        raise CfaValueError(
            f"structural_correlation: event {structure.event_ticker} has {n} markets, "
            f"got probabilities of shape {p.shape}"
        )
    if not (np.isfinite(p).all() and ((p >= 0.0) & (p <= 1.0)).all()):
        raise CfaValueError(
            f"structural_correlation: probabilities must be finite and in [0, 1], got {p.tolist()}"
        )
    out = np.eye(n)
    if n == 1 or structure.kind is EventKind.INDEPENDENT:
        return out
    p = np.clip(p, P_CLIP, 1.0 - P_CLIP)
    if structure.kind is EventKind.LADDER:
        p = _non_increasing(p)
        odds = p / (1.0 - p)  # ρ_ij = √(odds_j / odds_i) for i < j (odds non-increasing)
        ratio = np.sqrt(odds[None, :] / odds[:, None])
        upper = np.triu(ratio, 1)
        out = out + upper + upper.T
    else:
        total = float(p.sum())
        if structure.exhaustive or total > 1.0:
            p = p / total
        h = np.sqrt(p / (1.0 - p))
        off = -np.outer(h, h)
        np.fill_diagonal(off, 0.0)
        out = out + off
    return np.clip(out, -1.0, 1.0)


# -- the online estimate ---------------------------------------------------------------------------


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class EventCovariance:
    """Correlation of logit-mid changes of an event's ``n`` markets, shrunk toward the structure.

    **Sampling.** :meth:`on_mid` records market ``i``'s mid at event time ``t``. Samples are taken
    on the event's clock every ``interval`` seconds from the first mid seen: at each boundary
    ``t_k`` the last mid of each market seen *before* ``t_k`` (previous-tick sampling) is
    compared, in logit units, with that market's value at the previous boundary; the vector of
    changes goes into a ring of the last ``window`` samples. A call that crosses a boundary
    takes the sample (O(n): one logit per market that moved, one row written) before recording
    its own mid; every other call is O(1). A gap of several intervals without a single call
    adds one sample holding the changes and zero-change samples for the rest (at most
    ``window`` in all). A market whose mid is still unknown contributes a zero change, as does a
    market's first known mid (it only sets the base); a sample in which no market had a base is
    not taken.

    **Estimate.** :meth:`correlation` forms the realised (uncentred: over a few seconds the
    drift is nothing against the noise) correlation ``r_ij = S_ij / √(S_ii S_jj)`` over the
    ring's ``m`` samples, with ``lags = 1`` (the default) the flat one-lag realised kernel
    (Zhou 1996; Barndorff-Nielsen et al. 2011 with one lag)::

        S = Σ_k w_k,   w_k = x_k x_kᵀ + x_k x_{k−1}ᵀ + x_{k−1} x_kᵀ

    and with ``lags = 0`` ``w_k = x_k x_kᵀ``. The lead–lag terms put back the covariance of a
    common move that reached two markets in adjacent samples (staleness, below), and the
    negative first autocovariance of grid noise cancels the noise's inflation of ``S_ii``. A
    kernel variance below a quarter of the plain sum of squares is floored there (a noise
    estimate never explains away most of a market's variance, as in
    :class:`cfa.core.estimators.LogitVolatility`). ``r`` is then shrunk toward the prior
    ``f = structural_correlation(structure, probs)``::

        R* = δ·f + (1 − δ)·r,   δ = Σ_{i≠j} Var̂(r_ij) / Σ_{i≠j} (r_ij − f_ij)²  clipped to [0, 1]

    (Schäfer & Strimmer 2005's intensity for a correlation target: the Ledoit–Wolf argument with
    the target held fixed, so ``δ`` minimises the expected squared error of ``R*``.) ``Var̂`` is
    the delta-method variance of ``r_ij`` as a function of the three sums ``S_ij``, ``S_ii``,
    ``S_jj``, each a sum of ``m`` per-sample terms: to first order
    ``r_ij − E r_ij ≈ Σ_k ψ_k`` with the influence terms ::

        ψ_k = w_k,ij / √(S_ii S_jj) − (r_ij / 2)·(w_k,ii / S_ii + w_k,jj / S_jj)

    so ``Var̂(r_ij) = m/(m − 1) · Σ_k (ψ_k − ψ̄)²``. For Gaussian returns this is the classical
    ``(1 − ρ²)²/m``; unlike Schäfer–Strimmer's variance of the standardised products (which
    treats the scales as known and so overstates the noise of a strong correlation, ``1 + ρ²``
    against ``(1 − ρ²)²``: 8 times at ρ = 0.75, which would pin ``δ`` near 1 whenever the prior
    is roughly right), it also stays honest for the heavy tails of mids moving by whole ticks.
    Consecutive kernel terms share a sample, but for serially independent changes their
    covariance is zero, so no lag term is added (measured, summed over pairs: the mean ``Var̂``
    is 0.8–1.0 times the spread of ``r`` across seeds, tests/test_covariance.py). ``δ`` goes to
    0 as ``1/m`` when the truth differs from the prior and stays large while the data cannot
    tell them apart.

    **Warm-up.** The prior alone (``δ = 1``) with fewer than ``min_samples`` samples. After that, a
    market with no mid yet or whose logit mid never moved in the window has its row and column
    from the prior, and ``δ`` is formed over the other pairs. The result is always symmetric
    with a unit diagonal, entries in ``[−1, 1]`` and PSD: a mixture of two PSD matrices is PSD,
    and when the kernel or spliced prior rows leave it indefinite, negative eigenvalues are
    clipped to 0 and the diagonal rescaled to 1.

    **Bias (Epps effect).** Previous-tick sampling uses a market's last mid before the boundary.
    When a market's *book* lags a common move (a thin rung re-quoted late), the move lands in a
    later sample for it than for its neighbours, and without the lead–lag terms the measured
    correlation shrinks toward 0: for markets whose latent value is seen at Poisson times of
    rate ``λ`` each, ``lags = 0`` estimates ``ρ·(1 − 1/(λ·interval))`` (the overlap of the two
    sampled intervals, ``interval − E|staleness_i − staleness_j|``, over their length). A market
    unseen for a whole sample contributes a zero change there, which shrinks it the same way.
    Grid noise and bid–ask bounce inflate the variances and shrink the correlation too: a book
    that is always current but whose latent value moves less than a tick per sample (the
    simulator's calm scenario: the touch moves every ~1–10 s) loses half its correlation at
    ``lags = 0``. Measured (tests/test_covariance.py, 4 markets, ρ̄ = 0.53): grid noise at
    ``σ_x = 0.004``/√s on a half-cent mid grid biases ``lags = 0`` by −0.25 and ``lags = 1`` by
    < 0.03; staleness at ``λ = 0.5``/s by −0.20 and −0.03. The kernel removes most of both
    biases at the price of more variance (which the shrinkage sees); longer intervals cut them
    too but cost samples. Defaults: 5-s samples as
    :class:`cfa.core.estimators.LogitVolatility`, a 30-minute ring, 2 minutes of warm-up (the
    shrinkage makes the short warm-up safe).

    ``structure`` (optional) gives the prior; without it the markets are independent (identity
    prior). Raises :class:`CfaValueError` for a non-finite time, a mid outside ``(0, 1)`` (NaN and
    infinities included) or a market index out of range.
    """

    __slots__ = (
        "_base",
        "_base_mid",
        "_cache_version",
        "_cached",
        "_head",
        "_last",
        "_next",
        "_ring",
        "_shrinkage",
        "_version",
        "interval",
        "lags",
        "min_samples",
        "n",
        "samples",
        "structure",
        "window",
    )

    def __init__(
        self,
        n: int,
        *,
        interval: float = 5.0,
        window: int = 360,
        min_samples: int = 24,
        lags: int = 1,
        structure: EventStructure | None = None,
    ) -> None:
        if n < 1:
            raise CfaValueError(f"EventCovariance: n must be >= 1 market, got {n}")
        if not (math.isfinite(interval) and interval > 0.0):
            raise CfaValueError(f"EventCovariance: interval must be > 0 seconds, got {interval!r}")
        if min_samples < 2 or window < min_samples:
            raise CfaValueError(
                "EventCovariance: need 2 <= min_samples <= window, got "
                f"min_samples={min_samples}, window={window}"
            )
        if lags not in (0, 1):
            raise CfaValueError(f"EventCovariance: lags must be 0 or 1, got {lags!r}")
        if structure is not None and structure.n != n:
            raise CfaValueError(
                f"EventCovariance: structure {structure.event_ticker} has {structure.n} markets, "
                f"n={n}"
            )
        self.n = n
        self.interval = float(interval)
        self.window = window
        self.min_samples = min_samples
        self.lags = lags
        self.structure = structure
        self.samples = 0
        """Samples in the ring (at most ``window``)."""
        self._ring = np.zeros((window, n))
        self._head = 0
        self._last: list[float | None] = [None] * n
        """Each market's last mid (dollars)."""
        self._base: list[float | None] = [None] * n
        """Each market's logit mid at the previous sample."""
        self._base_mid: list[float | None] = [None] * n
        self._next: float | None = None
        self._version = 0
        self._cache_version = -1
        self._cached: tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]] | None = None
        self._shrinkage = 1.0

    # -- the hot path ------------------------------------------------------------------------------

    def on_mid(self, i: int, t: float, mid: float) -> None:
        """Market ``i`` (structure order) has mid ``mid`` dollars at event time ``t`` seconds."""
        if not (0.0 < mid < 1.0 and 0 <= i < self.n):
            raise CfaValueError(
                f"EventCovariance.on_mid: need a mid in (0, 1) and a market in 0..{self.n - 1}, "
                f"got mid={mid!r}, i={i!r}"
            )
        nxt = self._next
        if nxt is not None and t < nxt:
            self._last[i] = mid
            return
        if not math.isfinite(t):
            raise CfaValueError(f"EventCovariance.on_mid: t must be finite, got {t!r}")
        if nxt is None:
            self._next = t + self.interval
        else:
            crossed = int((t - nxt) // self.interval) + 1
            self._sample(crossed)
            self._next = nxt + crossed * self.interval
        self._last[i] = mid

    def _sample(self, crossed: int) -> None:
        row = [0.0] * self.n
        seen = False
        last, base, base_mid = self._last, self._base, self._base_mid
        for j in range(self.n):
            m = last[j]
            if m is None:
                continue
            b = base[j]
            if b is not None:
                seen = True
                if m != base_mid[j]:
                    x = _logit(m)
                    row[j] = x - b
                    base[j] = x
                    base_mid[j] = m
            else:
                base[j] = _logit(m)
                base_mid[j] = m
        if not seen:
            return
        self._ring[self._head] = row
        self._push()
        for _ in range(min(crossed, self.window) - 1):
            self._ring[self._head] = 0.0
            self._push()

    def _push(self) -> None:
        self._head = (self._head + 1) % self.window
        if self.samples < self.window:
            self.samples += 1
        self._version += 1

    # -- the estimate ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once ``min_samples`` samples are in and every market has a mid."""
        return self.samples >= self.min_samples and all(m is not None for m in self._last)

    @property
    def shrinkage(self) -> float:
        """The intensity ``δ`` of the last :meth:`correlation`: 1.0 (the prior alone) before any."""
        return self._shrinkage

    def changes(self) -> FloatArray:
        """The ring's vectors of logit changes, oldest first: ``samples × n`` (a copy)."""
        return self._ordered().copy()

    def _ordered(self) -> FloatArray:
        """The ring's samples, oldest first (a view when the ring is not yet full)."""
        m = self.samples
        if m < self.window:
            return self._ring[:m]
        return np.concatenate((self._ring[self._head :], self._ring[: self._head]))

    def _terms(self) -> tuple[FloatArray, list[tuple[FloatArray, FloatArray]]]:
        """The ring oldest first and the factors of ``w_k[i, j] = Σ_t u_t[k, i]·v_t[k, j]``."""
        x = self._ordered()
        if not self.lags:
            return x, [(x, x)]
        lag = np.zeros_like(x)
        lag[1:] = x[:-1]
        return x, [(x, x), (x, lag), (lag, x)]

    def _stats(self) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """``(r, Var̂(r), valid)`` over the ring, recomputed only when a sample came in.

        Every sum over samples of a product of the terms factors into per-market columns, so
        each is one ``(m × n)ᵀ(m × n)`` product: O(m·n²) time, no ``m × n × n`` array.
        """
        if self._cached is not None and self._cache_version == self._version:
            return self._cached
        x, terms = self._terms()
        m, n = x.shape
        s = np.zeros((n, n))
        g = np.zeros((m, n))  # g[k, i] = w_k[i, i]
        for u, v in terms:
            s += u.T @ v
            g += u * v
        plain = np.einsum("ki,ki->i", x, x)
        d = np.maximum(np.diagonal(s), 0.25 * plain)
        valid = (plain > 0.0) & np.array([b is not None for b in self._base])
        d = np.where(valid, d, 1.0)
        scale = np.sqrt(d)
        norm = np.outer(scale, scale)
        s = 0.5 * (s + s.T)
        np.fill_diagonal(s, d)
        r = s / norm
        # Σ_k ψ_k² and Σ_k ψ_k with ψ_k = w_k/N − (r/2)(h_k,i + h_k,j), h = g/d
        h = g / d
        sq = np.zeros((n, n))  # Σ_k w_k²
        wh = np.zeros((n, n))  # Σ_k w_k[i, j]·h_k,i
        for u, v in terms:
            wh += (u * h).T @ v
            for uu, vv in terms:
                sq += (u * uu).T @ (v * vv)
        wh = 0.5 * (wh + wh.T)  # symmetrised: w_k[i, j]·(h_k,i + h_k,j) summed, halved
        hh = h.T @ h
        h2 = np.diagonal(hh)
        hs = h.sum(axis=0)
        psi2 = (
            sq / norm**2
            - 2.0 * r / norm * wh
            + 0.25 * r * r * (h2[:, None] + h2[None, :] + 2.0 * hh)
        )
        psi1 = s / norm - 0.5 * r * (hs[:, None] + hs[None, :])
        var = np.maximum(psi2 - psi1 * psi1 / m, 0.0) * (m / (m - 1))
        self._cached = (np.clip(r, -1.0, 1.0), var, valid)
        self._cache_version = self._version
        return self._cached

    def _stats_direct(self) -> tuple[FloatArray, FloatArray]:
        """``(r, Var̂(r))`` from the ``m × n × n`` terms themselves: the tests' reference."""
        x, terms = self._terms()
        m = x.shape[0]
        w = sum(u[:, :, None] * v[:, None, :] for u, v in terms)
        assert isinstance(w, np.ndarray)
        s = w.sum(axis=0)
        d = np.maximum(np.diagonal(s), 0.25 * np.einsum("ki,ki->i", x, x))
        d = np.where(d > 0.0, d, 1.0)
        norm = np.sqrt(np.outer(d, d))
        r = s / norm
        np.fill_diagonal(r, 1.0)
        h = np.diagonal(w, axis1=1, axis2=2) / d
        psi = w / norm - 0.5 * r * (h[:, :, None] + h[:, None, :])
        dev = psi - psi.mean(axis=0)
        var = (dev * dev).sum(axis=0) * (m / (m - 1))
        return r, var

    def correlation(self, probs: Sequence[float] | FloatArray) -> FloatArray:
        """The shrunk correlation matrix ``n × n`` at the markets' current probabilities.

        ``probs`` (dollars in ``[0, 1]``, structure order) set the prior
        (:func:`structural_correlation`); see the class docstring for the estimate. Costs
        O(window·n²) after a new sample, O(n³) (a symmetric eigendecomposition, with ``lags = 1``
        or prior rows spliced in; else O(n²)) otherwise. Updates :attr:`shrinkage`.
        """
        if self.structure is not None:
            prior = structural_correlation(self.structure, probs)
        else:
            p = np.asarray(probs, dtype=np.float64)
            if p.shape != (self.n,) or not np.isfinite(p).all():
                raise CfaValueError(
                    f"EventCovariance.correlation: need {self.n} finite probabilities, "
                    f"got {p.tolist()}"
                )
            prior = np.eye(self.n)
        if self.samples < self.min_samples or self.n == 1:
            self._shrinkage = 1.0
            return prior
        r, var, valid = self._stats()
        pair = np.outer(valid, valid)
        np.fill_diagonal(pair, False)
        num = float(var[pair].sum())
        den = float(((r - prior)[pair] ** 2).sum())
        delta = 1.0 if den <= 0.0 or not pair.any() else min(1.0, num / den)
        self._shrinkage = delta
        out = np.where(pair, delta * prior + (1.0 - delta) * r, prior)
        np.fill_diagonal(out, 1.0)
        if self.lags or not valid.all():
            out = _nearest_correlation(out)
        return np.clip(0.5 * (out + out.T), -1.0, 1.0)


def _nearest_correlation(m: FloatArray) -> FloatArray:
    """Clip a symmetric matrix's negative eigenvalues to 0 and rescale its diagonal to 1."""
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    if w[0] >= 0.0:
        return m
    psd = (v * np.clip(w, 0.0, None)) @ v.T
    d = np.sqrt(np.clip(np.diagonal(psd), 1e-300, None))
    out: FloatArray = psd / np.outer(d, d)
    np.fill_diagonal(out, 1.0)
    return out
