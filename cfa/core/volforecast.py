"""A GARCH(1,1) forecast of σ on ``logit(mid)``, for the slow path, beside the EWMA estimate.

:class:`GarchForecast` samples ``x = logit(mid)`` on a time grid the way
:class:`cfa.core.estimators.LogitVolatility` does (a sample at the first event at least
``interval_s`` seconds after the previous one) and keeps the last ``max_returns`` returns. A
return spanning ``elapsed > interval_s`` (a quiet spell) is rescaled to the nominal interval,
``r·√(interval_s/elapsed)``, which keeps its variance *rate*: the model sees one regular series.

:meth:`GarchForecast.forecast` fits ``r_t = σ_t·z_t``, ``σ²_t = ω + α·r²_{t−1} + β·σ²_{t−1}``
(zero mean, normal errors) with the ``arch`` package (SLSQP, deterministic) and averages the
analytic variance forecasts over the horizon::

    v_h = σ̄² + p^(h−1)·(v_1 − σ̄²),  p = α + β,  σ̄² = ω/(1 − p)
    σ_x(horizon) = sqrt( mean(v_1 … v_H) / interval_s ),  H = ceil(horizon_s / interval_s) ≥ 1

in logit units per √second, the units of ``LogitVolatility.sigma`` (in price terms
``σ_p = m(1−m)·σ_x`` at mid ``m``). Averaging the *variance* gives the σ whose square times the
horizon is the expected variance over it, which is what ``σ²·τ`` in the quote needs.

The long-run level σ̄² is taken from the fit only when the data can identify it: persistence
below 1 and a shock half-life (``interval_s·ln 0.5 / ln p``) no longer than the window. Near
the integrated boundary (``α ≈ 0, β ≈ 1``, which the normal likelihood picks on near-iid
windows and after a single large jump) ``ω/(1 − p)`` is a ratio of two tiny numbers, can be
orders of magnitude off, and would blow up long-horizon forecasts; there the window's mean
squared return is used as the level instead (``GarchFit.long_run_identified`` is False). At
``p = 1`` the forecast is flat at ``v_1``.

Scaling: logit returns over 10 s are ~1e-2, which arch flags as badly scaled
(``DataScaleWarning``). The returns are divided by their root mean square before the fit (so
the fitted series has unit mean square); ``ω`` and the variances are multiplied back by that
factor squared (``α``, ``β`` are scale-free). ``rescale=False`` keeps arch from rescaling
again.

Cost: one fit is ~6–15 ms for 360–720 returns on a busy 2-core EPYC (median 8–10 ms;
``python tools/bench.py signals``). Fits run
only from :meth:`~GarchForecast.fit` / :meth:`~GarchForecast.forecast` and only when new returns
arrived since the last one (the result, or the failure, is cached): call it from the slow path,
never per event. Each fit starts cold, so a fit depends only on the returns window, not on how
often it was asked for (replays and counterfactuals with another cadence agree).

Never raises on data: too few returns (< ``min_returns``), fewer than ``min_nonzero`` non-zero
returns (all-zero or nearly constant mids), an exception or non-convergence inside arch,
non-finite or out-of-range parameters, or ``α + β > 1`` (explosive) give None. arch's
and numpy's warnings are suppressed locally with :func:`warnings.catch_warnings` (process-global
state: fit from one thread at a time). Bad *constructor* arguments raise :class:`ValueError`.
Pure: no I/O, no clock, no randomness; time is an argument in seconds.

arch (which imports scipy, statsmodels and pandas: ~2 s of CPU) is imported on first use, not
with this module: :data:`arch_model` is a lazy module attribute bound by :func:`load_arch`, which
:class:`GarchForecast` calls when it is created (a live session pays the import before trading,
not inside its first fit).
"""

from __future__ import annotations

import math
import warnings
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from arch import arch_model

__all__ = ["GarchFit", "GarchForecast"]


def load_arch() -> None:
    """Bind :data:`arch_model` on first use (kept if already bound, e.g. patched by a test)."""
    if "arch_model" not in globals():
        from arch import arch_model

        globals()["arch_model"] = arch_model


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """``volforecast.arch_model`` imports arch when first read."""
        if name == "arch_model":
            load_arch()
            return globals()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class GarchFit:
    """One successful GARCH(1,1) fit, in the original (unscaled) units.

    ``omega`` is in logit² per interval; ``alpha``, ``beta`` and ``persistence = alpha + beta``
    (in [0, 1]) are unit-free. ``var_next`` is the one-step-ahead variance and ``var_long_run``
    the level forecasts revert to (logit² per interval): ``ω/(1 − persistence)`` when
    ``long_run_identified``, else the window's mean squared return (see the module docstring).
    ``sigma_next`` and ``sigma_long_run`` are the same as σ_x per √second. ``half_life_s``:
    seconds for a variance shock to decay by half, ``interval_s·ln 0.5 / ln persistence``
    (None at persistence 0 or 1). ``returns``: how many returns the fit used.
    """

    omega: float
    alpha: float
    beta: float
    persistence: float
    var_next: float
    var_long_run: float
    long_run_identified: bool
    sigma_next: float
    sigma_long_run: float
    half_life_s: float | None
    returns: int
    interval_s: float

    def sigma(self, horizon_s: float) -> float | None:
        """σ_x per √second averaged over ``horizon_s`` (see the module docstring).

        ``horizon_s <= interval_s`` (zero and negatives included) gives the one-step figure;
        a non-finite horizon gives None.
        """
        if not math.isfinite(horizon_s):
            return None
        steps = max(1, math.ceil(horizon_s / self.interval_s - 1e-9))
        p = self.persistence
        # mean over h = 1..H of p^(h-1) = (1 - p^H) / ((1 - p)·H), with its limits at 0 and 1
        if p <= 0.0:
            ratio = 1.0 / steps
        elif p >= 1.0 - 1e-12:
            ratio = 1.0
        else:
            ratio = -math.expm1(steps * math.log(p)) / ((1.0 - p) * steps)
        mean_var = self.var_long_run + (self.var_next - self.var_long_run) * ratio
        if not (math.isfinite(mean_var) and mean_var > 0.0):
            return None
        return math.sqrt(mean_var / self.interval_s)


class GarchForecast:
    """GARCH(1,1) σ_x forecast on sampled ``logit(mid)`` returns (see the module docstring).

    ``update(t, mid)`` is cheap (O(1)) and can run on every event; ``forecast(horizon_s)``
    refits when new returns arrived. **None threshold:** fewer than ``min_returns`` returns
    held, or fewer than ``min_nonzero`` of them non-zero, or the fit fails.

    ``samples`` is the number of returns held (≤ ``max_returns``), ``window_s`` the time they
    cover at the nominal grid, ``interval_s × samples``; :attr:`last_fit` holds ``ω, α, β`` and
    the persistence of the latest successful fit for the agent context.
    """

    __slots__ = (
        "_fit",
        "_fit_version",
        "_last_sample_t",
        "_last_x",
        "_returns",
        "_version",
        "interval_s",
        "max_returns",
        "min_nonzero",
        "min_returns",
    )

    def __init__(
        self,
        interval_s: float = 10.0,
        min_returns: int = 60,
        max_returns: int = 720,
        min_nonzero: int = 10,
    ) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ValueError("interval_s must be positive seconds")
        if min_returns < 10 or max_returns < min_returns:
            raise ValueError("need 10 <= min_returns <= max_returns")
        if not 1 <= min_nonzero <= min_returns:
            raise ValueError("need 1 <= min_nonzero <= min_returns")
        self.interval_s = float(interval_s)
        self.min_returns = min_returns
        self.max_returns = max_returns
        self.min_nonzero = min_nonzero
        self._returns = array("d")
        """The returns, oldest first; the last ``max_returns`` are the window (the buffer is
        trimmed to them when it reaches twice that: 8 bytes a return, not a float object)."""
        self._last_x: float | None = None
        self._last_sample_t = -math.inf
        self._version = 0  # returns appended so far
        self._fit_version = -1  # _version at the last fit attempt
        self._fit: GarchFit | None = None
        load_arch()  # now, not in the first fit on the slow path of a live session

    def update(self, t: float, mid: float) -> None:
        """Observe the mid (dollars, strictly inside (0, 1)) at ``t`` seconds.

        Ignored, state unchanged: ``t`` not finite or ``<= 0``, or earlier than the last sample;
        ``mid`` NaN, infinite or outside (0, 1).
        """
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0.0):
            return
        if self._last_x is not None and t - self._last_sample_t < self.interval_s:
            return  # before the next sample is due (checked before the log: every check returns)
        if not (isinstance(mid, (int, float)) and 0.0 < mid < 1.0):  # NaN fails too
            return
        x = math.log(mid / (1.0 - mid))
        if not math.isfinite(x):
            return
        if self._last_x is None:
            self._last_x, self._last_sample_t = x, t
            return
        elapsed = t - self._last_sample_t
        r = (x - self._last_x) * math.sqrt(self.interval_s / elapsed)
        rets = self._returns
        rets.append(r)
        if len(rets) >= 2 * self.max_returns:
            del rets[: len(rets) - self.max_returns]
        self._version += 1
        self._last_x, self._last_sample_t = x, t

    @property
    def samples(self) -> int:
        """Returns held (≤ ``max_returns``)."""
        return min(len(self._returns), self.max_returns)

    @property
    def window_s(self) -> float:
        """Seconds the held returns cover on the nominal grid: ``interval_s × samples``."""
        return self.interval_s * self.samples

    @property
    def last_fit(self) -> GarchFit | None:
        """The latest fit attempt's result (None if it failed or none ran); never fits."""
        return self._fit

    def fit(self) -> GarchFit | None:
        """Fit on the held returns if new ones arrived since the last attempt; else the cache."""
        if self._fit_version != self._version:
            self._fit_version = self._version
            self._fit = self._fit_now()
        return self._fit

    def forecast(self, horizon_s: float) -> float | None:
        """σ_x per √second averaged over the next ``horizon_s`` seconds, or None.

        Refits first when new returns arrived. ``horizon_s <= interval_s`` gives the one-step
        forecast; a non-finite horizon gives None.
        """
        fit = self.fit()
        return None if fit is None else fit.sigma(horizon_s)

    def _fit_now(self) -> GarchFit | None:
        n = self.samples
        if n < self.min_returns:
            return None
        r = np.array(self._returns[len(self._returns) - n :], dtype=float)
        if int(np.count_nonzero(r)) < self.min_nonzero:
            return None
        rms = math.sqrt(float(np.mean(r * r)))
        if not (math.isfinite(rms) and rms > 0.0):
            return None
        y = r / rms
        load_arch()
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                model = arch_model(
                    y, mean="Zero", vol="GARCH", p=1, o=0, q=1, dist="normal", rescale=False
                )
                res = model.fit(disp="off", show_warning=False)
                flag = int(res.convergence_flag)
                params = res.params
                omega_y = float(params["omega"])
                alpha = float(params["alpha[1]"])
                beta = float(params["beta[1]"])
                sigma_last_y = float(np.asarray(res.conditional_volatility, dtype=float)[-1])
        except Exception:  # arch, scipy or numpy failing on odd data: no forecast, no crash
            return None
        if flag != 0:
            return None
        if not all(math.isfinite(v) for v in (omega_y, alpha, beta, sigma_last_y)):
            return None
        persistence = alpha + beta
        if omega_y <= 0.0 or alpha < 0.0 or beta < 0.0 or persistence > 1.0 + 1e-9:
            return None
        persistence = min(persistence, 1.0)
        var_next_y = omega_y + alpha * float(y[-1]) ** 2 + beta * sigma_last_y**2
        scale2 = rms * rms  # y = r / rms: variances of r are those of y times rms²
        omega = omega_y * scale2
        var_next = var_next_y * scale2
        if not (math.isfinite(var_next) and var_next > 0.0):
            return None
        half_life: float | None = None
        if 0.0 < persistence < 1.0:
            half_life = self.interval_s * math.log(0.5) / math.log(persistence)
        identified = persistence < 1.0 and (half_life is None or half_life <= n * self.interval_s)
        var_long_run = omega / (1.0 - persistence) if identified else scale2
        if not (math.isfinite(var_long_run) and var_long_run > 0.0):
            return None
        return GarchFit(
            omega=omega,
            alpha=alpha,
            beta=beta,
            persistence=persistence,
            var_next=var_next,
            var_long_run=var_long_run,
            long_run_identified=identified,
            sigma_next=math.sqrt(var_next / self.interval_s),
            sigma_long_run=math.sqrt(var_long_run / self.interval_s),
            half_life_s=half_life,
            returns=n,
            interval_s=self.interval_s,
        )
