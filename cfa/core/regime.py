"""VAR regime flags on [logit-mid return, L1 book imbalance, signed taker flow].

A vector autoregression (``statsmodels.tsa.api.VAR``, OLS with a constant) is fitted to a rolling
window of three series sampled on a fixed **time grid** of ``sample_interval`` seconds (default
1 s; interval ``k`` covers ``[k·Δ, (k+1)·Δ)`` in the caller's time base, so the grid does not
depend on when the monitor started and replays reproduce it):

0. ``logit_return``: ``logit(mid)`` at the end of the interval minus ``logit(mid)`` at the end of
   the previous one (logit units per interval). The mid is the last one seen (previous-tick
   sampling); an interval without events has return 0.
1. ``imbalance``: L1 book imbalance ``(bid size − ask size)/(bid size + ask size)`` in [−1, 1],
   the last value seen in the interval (carried forward through empty intervals).
2. ``signed_flow``: contracts bought by takers minus contracts sold by takers during the
   interval (a taker buying YES counts +, a taker selling YES / buying NO counts −).

Three flags come from one fit and are read by the slow path (agent context, triggers):

* **regime shift** — the VAR is fitted on the *reference* part of the window (all but the last
  ``test_size`` = m rows). Each of the last m rows gets a one-step forecast error
  ``e_t = y_t − ŷ_t`` from the actual previous rows, and ``d²_t = e_tᵀ Σ_u⁻¹ e_t`` with the fitted
  residual covariance ``Σ_u``. Under the fitted model ``d²_t ~ χ²(K)`` (K = 3), independent over
  t, so ``S = Σ_t min(d²_t, cap)`` is compared with the ``1 − shift_level`` quantile of
  ``χ²(m·K)``. Capping each ``d²_t`` at the ``d2_cap_level`` quantile of ``χ²(K)`` keeps one
  isolated jump (common in thin books) from flagging a shift on its own; it only lowers ``S``, so
  the false-alarm rate under a Gaussian VAR stays at or below ``shift_level``. A shift is flagged
  while its onset lies in the last m rows (and for a while after, until the reference part
  absorbs it).
* **informed flow** — flow Granger-causes returns: ``test_causality(caused=0, causing=[2],
  kind="f")`` p-value below ``causality_level``. The flag says lagged flow *predicts* returns; the
  sign is in :attr:`RegimeFlags.flow_return_coef` (positive: prices follow flow, as with
  informed traders; negative: prices revert after flow).
* **instability** — ``not results.is_stable()``: some eigenvalue of the VAR companion matrix lies
  outside the unit circle (explosive dynamics, e.g. a runaway one-sided book).

Lag order is fixed (default 1, 2 is the other sensible choice) rather than picked by an
information criterion: with ~300 samples and K = 3, each lag costs 9 more coefficients; a
search costs 10–25 ms (over the 5 ms budget) and on white-noise windows chooses 0 lags, which
breaks forecasting; and with lag 1 the causality test asks exactly "does last interval's flow
predict this interval's return". Use 2 when the sample interval is short compared with how long
order flow takes to reach the price.

Before fitting, each column is centred and scaled by the reference part's mean and standard
deviation. The flags and the numbers reported (d², p-value, companion eigenvalues) are invariant
to that affine change; it only keeps ``Σ_u`` well conditioned when returns (~1e-3) and flow
(~1e2) differ in scale, so the singularity check is meaningful.

Degenerate windows — fewer rows than the fit needs, NaN or infinities, a constant column in the
reference part, a singular residual covariance, statsmodels raising or warning — give
``status="insufficient_data"`` with a reason and all flags false; they never raise. Warnings are
captured locally with :func:`warnings.catch_warnings` (process-global state: call from one thread
at a time). Bad *arguments* (shape not ``(n, 3)``, lags < 1, levels outside (0, 1)) are caller
bugs and raise :class:`ValueError`.

Cost: one VAR fit plus one causality test, ~2–3 ms for 300 rows on one busy EPYC core (benchmark:
``python tools/bench.py regime``). Pure and deterministic; time is passed in, never read.

statsmodels and scipy (with pandas, ~2 s of CPU to import) are imported on first use, not with
this module, so commands that only read :class:`RegimeFlags` (``cfa govern``) start fast:
:data:`VAR`, :data:`chdtrc` and :data:`chdtri` are lazy module attributes, bound by
:func:`load_statistics`, which :class:`RegimeMonitor` calls when it is created so that a live
session pays the import before trading rather than inside its first refresh.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from scipy.special import chdtrc, chdtri  # type: ignore[import-untyped]
    from statsmodels.tsa.api import VAR  # type: ignore[import-untyped]

SERIES: tuple[str, str, str] = ("logit_return", "imbalance", "signed_flow")
"""Column order of the data window: return (logit units), imbalance ([−1, 1]), flow (contracts)."""

K = len(SERIES)

DEFAULT_LAGS = 1
"""Fixed VAR lag order (see the module docstring for why not an information criterion)."""

DEFAULT_WINDOW = 300
"""Rows (samples) in the rolling window: 5 minutes at the default 1 s grid."""

DEFAULT_SAMPLE_INTERVAL = 1.0
"""Seconds per sample of the time grid."""

DEFAULT_TEST_SIZE = 20
"""m: most recent rows tested for a shift against the fit on the rows before them."""

SHIFT_LEVEL = 0.001
"""False-alarm probability of the shift test per refresh under a Gaussian VAR. Refreshes every
few seconds share most of their rows, so false alarms cluster rather than add up; 0.1 % keeps them
to a few an hour on a 1 s grid, and a real break (variance ×3 or a 2σ mean step over 20 rows)
still gives a statistic several times the threshold."""

CAUSALITY_LEVEL = 0.01
"""p-value below which flow is said to Granger-cause returns. The informed-flow flag is a milder
signal than a shift (it suggests wider quotes, not a re-estimate), hence the looser level."""

D2_CAP_LEVEL = 0.9999
"""Each one-step d² is capped at this quantile of χ²(K) (≈ 21.1 for K = 3) before summing."""

_CONSTANT_RTOL = 1e-12
"""A column whose standard deviation is below this times max(1, |mean|) counts as constant."""

_MAX_COND = 1e10
"""Largest condition number of the (standardised) residual covariance before it counts singular."""

_BENIGN_WARNINGS: tuple[type[Warning], ...] = (
    DeprecationWarning,
    PendingDeprecationWarning,
    FutureWarning,
)
"""Warnings about library APIs, not about the numbers: they do not invalidate a fit."""

Status = Literal["ok", "insufficient_data"]

_LAZY = ("VAR", "chdtrc", "chdtri")


def load_statistics() -> None:
    """Bind :data:`VAR` (statsmodels) and :data:`chdtrc`, :data:`chdtri` (scipy) on first use.

    Names already bound (by an earlier call, or patched in by a test) are kept.
    """
    g = globals()
    if all(name in g for name in _LAZY):
        return
    from scipy.special import chdtrc, chdtri
    from statsmodels.tsa.api import VAR

    for name, value in (("VAR", VAR), ("chdtrc", chdtrc), ("chdtri", chdtri)):
        g.setdefault(name, value)


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """``regime.VAR`` and the χ² ufuncs import statsmodels / scipy when first read."""
        if name in _LAZY:
            load_statistics()
            return globals()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class RegimeFlags:
    """The outcome of one VAR fit on a window; all flags false unless ``status == "ok"``.

    Numbers are None when not computed (degenerate windows). Units: ``shift_stat`` and
    ``shift_threshold`` are sums of squared Mahalanobis distances (dimensionless, χ²(m·K) scale);
    ``flow_return_coef`` is the sum over lags of the coefficient of flow in the return equation in
    standard deviations of return per standard deviation of flow (of the reference part).
    """

    status: Status
    regime_shift: bool = False
    informed_flow: bool = False
    unstable: bool = False
    shift_stat: float | None = None
    """Σ over the last ``test_size`` rows of min(d², cap)."""
    shift_threshold: float | None = None
    """The ``1 − shift_level`` quantile of χ²(test_size·K); a shift is flagged above it."""
    shift_pvalue: float | None = None
    """P(χ²(test_size·K) ≥ shift_stat)."""
    causality_pvalue: float | None = None
    """p-value of the F-test "flow does not Granger-cause returns"."""
    flow_return_coef: float | None = None
    """Sign and size of the flow → next-return effect (see the class docstring)."""
    max_root_modulus: float | None = None
    """Largest |eigenvalue| of the companion matrix (= 1/min |root of det A(z)|); > 1 unstable."""
    nobs: int = 0
    """Rows in the window given (samples), including the tested rows."""
    lags: int = DEFAULT_LAGS
    test_size: int = DEFAULT_TEST_SIZE
    reason: str = ""
    """Why the status is ``insufficient_data``; empty when ``ok``."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: plain bools, ints, strings; non-finite floats become None."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


def _insufficient(reason: str, nobs: int, lags: int, test_size: int) -> RegimeFlags:
    return RegimeFlags(
        status="insufficient_data", nobs=nobs, lags=lags, test_size=test_size, reason=reason
    )


@lru_cache(maxsize=64)
def _chi2_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of χ²(df) (the ufunc, not ``scipy.stats.chi2``: 100× cheaper)."""
    load_statistics()
    return float(chdtri(df, 1.0 - q))


def min_rows(lags: int = DEFAULT_LAGS, test_size: int = DEFAULT_TEST_SIZE) -> int:
    """Fewest window rows :func:`var_flags` fits: ``test_size + lags + 10·(K·lags + 1)``.

    Ten observations per coefficient of each equation in the reference fit (40 rows for
    lag 1, 70 for lag 2) keeps ``Σ_u`` and the F-test from being dominated by estimation noise.
    """
    return test_size + lags + 10 * (K * lags + 1)


def _check_args(lags: int, test_size: int, levels: dict[str, float | None]) -> None:
    if lags < 1:
        raise ValueError(f"lags must be >= 1, got {lags}")
    if test_size < 1:
        raise ValueError(f"test_size must be >= 1, got {test_size}")
    for name, level in levels.items():
        if level is not None and not 0.0 < level < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {level}")


def var_flags(
    data: npt.ArrayLike,
    lags: int = DEFAULT_LAGS,
    *,
    test_size: int = DEFAULT_TEST_SIZE,
    shift_level: float = SHIFT_LEVEL,
    causality_level: float = CAUSALITY_LEVEL,
    d2_cap_level: float | None = D2_CAP_LEVEL,
) -> RegimeFlags:
    """Regime flags for one window; pure, deterministic, never raises on degenerate data.

    ``data`` has shape ``(n, 3)``, rows oldest first on a fixed time grid, columns as in
    :data:`SERIES`. The VAR(``lags``) is fitted on rows ``[0, n − test_size)``; the last
    ``test_size`` rows are the shift test. ``d2_cap_level=None`` disables the d² cap.
    Needs at least :func:`min_rows` rows. Raises :class:`ValueError` only for bad arguments.
    """
    _check_args(
        lags,
        test_size,
        {
            "shift_level": shift_level,
            "causality_level": causality_level,
            "d2_cap_level": d2_cap_level,
        },
    )
    y = np.asarray(data, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != K:
        raise ValueError(f"data must have shape (n, {K}), got {y.shape}")
    n = int(y.shape[0])

    def insufficient(reason: str) -> RegimeFlags:
        return _insufficient(reason, n, lags, test_size)

    need = min_rows(lags, test_size)
    if n < need:
        return insufficient(f"too few points: {n} rows, need {need}")
    finite = np.isfinite(y)
    if not finite.all():
        bad = [SERIES[j] for j in range(K) if not finite[:, j].all()]
        return insufficient(f"non-finite values (NaN or inf) in {', '.join(bad)}")

    n_ref = n - test_size
    ref = y[:n_ref]
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    constant = std <= _CONSTANT_RTOL * np.maximum(1.0, np.abs(mean))
    if constant.any():
        names = ", ".join(SERIES[j] for j in range(K) if constant[j])
        return insufficient(f"constant series in the reference part: {names}")
    z = (y - mean) / std

    load_statistics()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = VAR(z[:n_ref]).fit(lags, trend="c")
            if int(results.k_ar) != lags:
                return insufficient(f"statsmodels fitted {results.k_ar} lags, asked for {lags}")
            sigma_u = np.asarray(results.sigma_u, dtype=np.float64)
            coefs = np.asarray(results.coefs, dtype=np.float64)  # (lags, K, K)
            intercept = np.asarray(results.intercept, dtype=np.float64)  # (K,)
            if not (np.isfinite(sigma_u).all() and np.isfinite(coefs).all()):
                return insufficient("non-finite VAR estimates")
            eig = np.linalg.eigvalsh(sigma_u)
            if eig[0] <= 0.0 or eig[-1] > _MAX_COND * eig[0]:
                return insufficient("singular residual covariance")
            causality = results.test_causality(caused=0, causing=[2], kind="f")
            pvalue = float(causality.pvalue)
            stable = bool(results.is_stable())
        except Exception as exc:  # statsmodels / numpy / scipy failures of any kind
            return insufficient(f"statsmodels error: {type(exc).__name__}: {exc}")
    relevant = [w for w in caught if not issubclass(w.category, _BENIGN_WARNINGS)]
    if relevant:
        w = relevant[0]
        return insufficient(f"statsmodels warning: {w.category.__name__}: {w.message}")
    if not math.isfinite(pvalue):
        return insufficient("causality test gave a non-finite p-value")

    # One-step forecasts of the tested rows from the actual preceding rows.
    pred = np.broadcast_to(intercept, (test_size, K)).copy()
    for i in range(lags):
        pred += z[n_ref - 1 - i : n - 1 - i] @ coefs[i].T
    err = z[n_ref:] - pred
    d2 = np.einsum("ij,jk,ik->i", err, np.linalg.inv(sigma_u), err)
    if d2_cap_level is not None:
        d2 = np.minimum(d2, _chi2_quantile(d2_cap_level, K))
    stat = float(d2.sum())
    df = test_size * K
    threshold = _chi2_quantile(1.0 - shift_level, df)

    companion = np.zeros((K * lags, K * lags))
    companion[:K, :] = np.concatenate(list(coefs), axis=1)
    companion[K:, :-K] = np.eye(K * (lags - 1))
    max_root = float(np.abs(np.linalg.eigvals(companion)).max())

    return RegimeFlags(
        status="ok",
        regime_shift=stat > threshold,
        informed_flow=pvalue < causality_level,
        unstable=not stable,
        shift_stat=stat,
        shift_threshold=threshold,
        shift_pvalue=float(chdtrc(df, stat)),
        causality_pvalue=pvalue,
        flow_return_coef=float(coefs[:, 0, 2].sum()),
        max_root_modulus=max_root,
        nobs=n,
        lags=lags,
        test_size=test_size,
    )


class RegimeMonitor:
    """Samples one market's events on a fixed time grid and computes :func:`var_flags` on demand.

    Feed every book event (and trade) to :meth:`observe`; call :meth:`refresh` on the slow path.
    Times are seconds (any epoch, non-decreasing; an earlier time is counted in the current
    interval). Memory is O(window); :meth:`observe` is O(1) amortised except after a gap, which
    costs at most ``window + 1`` rows. :meth:`refresh` refits only when a new sample has been
    taken since the last refresh, and otherwise returns the previous result.

    Samples start once a mid and an imbalance have both been seen and one interval has closed
    (the first return needs a previous mid). Flow observed before that is dropped.
    """

    __slots__ = (
        "_bin",
        "_buf",
        "_cache",
        "_cache_samples",
        "_flow",
        "_imb",
        "_mid",
        "_n",
        "_prev_x",
        "_x",
        "_x_mid",
        "causality_level",
        "d2_cap_level",
        "lags",
        "sample_interval",
        "samples",
        "shift_level",
        "test_size",
        "window",
    )

    SLACK = 64
    """Rows beyond ``window`` in the sample buffer: the last ``window`` rows are moved to the
    front once every ``SLACK`` samples (a buffer of ``2·window`` rows cost 14 KB a market)."""

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        sample_interval: float = DEFAULT_SAMPLE_INTERVAL,
        lags: int = DEFAULT_LAGS,
        *,
        test_size: int = DEFAULT_TEST_SIZE,
        shift_level: float = SHIFT_LEVEL,
        causality_level: float = CAUSALITY_LEVEL,
        d2_cap_level: float | None = D2_CAP_LEVEL,
    ) -> None:
        """``window`` rows of ``sample_interval`` seconds; the rest as in :func:`var_flags`."""
        _check_args(
            lags,
            test_size,
            {
                "shift_level": shift_level,
                "causality_level": causality_level,
                "d2_cap_level": d2_cap_level,
            },
        )
        if not sample_interval > 0.0 or not math.isfinite(sample_interval):
            raise ValueError(f"sample_interval must be positive seconds, got {sample_interval}")
        if window < min_rows(lags, test_size):
            raise ValueError(
                f"window {window} is below the {min_rows(lags, test_size)} rows a fit needs"
            )
        self.window = window
        self.sample_interval = sample_interval
        self.lags = lags
        self.test_size = test_size
        self.shift_level = shift_level
        self.causality_level = causality_level
        self.d2_cap_level = d2_cap_level
        self.samples = 0
        """Samples taken since creation (rows ever appended)."""
        self._buf = np.empty((window + self.SLACK, K), dtype=np.float64)
        self._n = 0
        self._bin: int | None = None
        self._mid: float | None = None
        """The last valid mid seen (dollars)."""
        self._x = 0.0
        self._x_mid: float | None = None
        """The mid whose logit ``_x`` holds."""
        self._imb: float | None = None
        self._flow = 0.0
        self._prev_x: float | None = None
        self._cache: RegimeFlags | None = None
        self._cache_samples = -1
        load_statistics()  # now, not in the first refresh on the slow path of a live session

    def observe(
        self, t: float, mid: float | None, imbalance: float | None, signed_flow: float = 0.0
    ) -> None:
        """Record the state after an event at ``t`` seconds.

        ``mid`` in dollars strictly inside (0, 1); ``imbalance`` L1 in [−1, 1]; ``signed_flow``
        the taker contracts of this event (+ bought YES, − sold YES), 0 for a book-only event.
        None or non-finite values (and mids outside (0, 1)) leave the last known value in place.
        """
        k = math.floor(t / self.sample_interval)
        if self._bin is None or k > self._bin:
            self._advance_to(k)
        if mid is not None and 0.0 < mid < 1.0:
            self._mid = mid  # logit taken when the interval closes: only its last mid counts
        if imbalance is not None and math.isfinite(imbalance):
            self._imb = imbalance
        if signed_flow and math.isfinite(signed_flow):
            self._flow += signed_flow

    def refresh(self, t: float) -> RegimeFlags:
        """Close the intervals ending by ``t`` seconds and return the flags of the last window."""
        self._advance(t)
        if self._cache is None or self._cache_samples != self.samples:
            self._cache = var_flags(
                self.window_data(copy=False),
                self.lags,
                test_size=self.test_size,
                shift_level=self.shift_level,
                causality_level=self.causality_level,
                d2_cap_level=self.d2_cap_level,
            )
            self._cache_samples = self.samples
        return self._cache

    @property
    def last(self) -> RegimeFlags | None:
        """The result of the latest :meth:`refresh`, or None before the first."""
        return self._cache

    def window_data(self, copy: bool = True) -> npt.NDArray[np.float64]:
        """The last ``window`` samples (fewer while warming up), shape ``(rows, 3)``, oldest first.

        ``copy=False`` returns a view that the next sample may overwrite.
        """
        rows = self._buf[max(0, self._n - self.window) : self._n]
        return rows.copy() if copy else rows

    # -- sampling ---------------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        self._advance_to(math.floor(t / self.sample_interval))

    def _advance_to(self, k: int) -> None:
        if self._bin is None:
            self._bin = k
            return
        if k <= self._bin:
            return
        self._close_interval()
        for _ in range(min(k - self._bin - 1, self.window + 1)):  # empty intervals
            self._close_interval()
        self._bin = k

    def _close_interval(self) -> None:
        flow, self._flow = self._flow, 0.0
        mid, imb = self._mid, self._imb
        if mid is None or imb is None:
            return
        x = self._x
        if mid != self._x_mid:  # logit of the last mid seen, computed once per distinct mid
            x = self._x = math.log(mid / (1.0 - mid))
            self._x_mid = mid
        if self._prev_x is None:
            self._prev_x = x
            return
        if self._n == self._buf.shape[0]:  # keep the last window rows, at the front
            self._buf[: self.window] = self._buf[self._n - self.window : self._n]
            self._n = self.window
        row = self._buf[self._n]
        row[0] = x - self._prev_x
        row[1] = imb
        row[2] = flow
        self._n += 1
        self.samples += 1
        self._prev_x = x
