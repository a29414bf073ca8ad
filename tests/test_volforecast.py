"""GARCH(1,1) σ forecast on logit(mid) (cfa.core.volforecast)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from arch import arch_model
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cfa.core.estimators import LogitVolatility
from cfa.core.volforecast import GarchForecast


def expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def feed(est: GarchForecast, returns: np.ndarray, dt: float = 10.0, x0: float = 0.0) -> None:
    """Feed the logit path with these increments, one sample every ``dt`` seconds."""
    x, t = x0, 1.0
    est.update(t, expit(x))
    for r in returns:
        t += dt
        x += float(r)
        est.update(t, expit(x))


def garch_path(n: int, omega: float, alpha: float, beta: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    var = omega / (1.0 - alpha - beta)
    out = np.empty(n + 200)
    for i in range(n + 200):
        out[i] = math.sqrt(var) * rng.standard_normal()
        var = omega + alpha * out[i] ** 2 + beta * var
    return out[200:]


def test_constant_variance_forecast_recovers_sigma() -> None:
    sigma = 0.004  # logit units per √second
    rng = np.random.default_rng(3)
    est = GarchForecast(interval_s=10.0, min_returns=60, max_returns=720)
    feed(est, sigma * math.sqrt(10.0) * rng.standard_normal(720))
    assert est.samples == 720 and est.window_s == pytest.approx(7200.0)
    for horizon in (10.0, 300.0, 3600.0):
        f = est.forecast(horizon)
        assert f is not None and f == pytest.approx(sigma, rel=0.15)
    fit = est.last_fit
    assert fit is not None and fit.returns == 720
    assert fit.sigma_long_run == pytest.approx(sigma, rel=0.15)


def test_same_units_as_logit_volatility() -> None:
    sigma = 0.01
    rng = np.random.default_rng(4)
    est = GarchForecast(interval_s=10.0)
    ewma = LogitVolatility(interval=10.0, half_life=1500.0, min_samples=1)
    x, t = 0.0, 1.0
    for r in sigma * math.sqrt(10.0) * rng.standard_normal(500):
        est.update(t, expit(x))
        ewma.update(t, expit(x))
        t += 10.0
        x += float(r)
    f = est.forecast(600.0)
    assert f is not None and f == pytest.approx(ewma.sigma, rel=0.15)
    assert f == pytest.approx(sigma, rel=0.15) and ewma.sigma == pytest.approx(sigma, rel=0.15)


def test_irregular_sampling_keeps_the_variance_rate() -> None:
    """Samples every 20 s on a 10 s grid: each return is rescaled to the nominal interval."""
    sigma = 0.004
    rng = np.random.default_rng(5)
    est = GarchForecast(interval_s=10.0)
    feed(est, sigma * math.sqrt(20.0) * rng.standard_normal(600), dt=20.0)
    assert est.window_s == pytest.approx(6000.0)
    f = est.forecast(60.0)
    assert f is not None and f == pytest.approx(sigma, rel=0.15)


def test_garch_data_gives_high_persistence() -> None:
    est = GarchForecast(interval_s=10.0, max_returns=720)
    feed(est, 0.01 * garch_path(720, omega=0.05, alpha=0.10, beta=0.88, seed=11))
    fit = est.fit()
    assert fit is not None
    assert fit.persistence > 0.85
    assert fit.alpha > 0.02 and fit.beta > 0.5
    assert fit.half_life_s is not None and fit.half_life_s > 30.0
    # the long-horizon forecast tends to the long-run σ, the short one to the next-step σ
    assert est.forecast(0.0) == pytest.approx(fit.sigma_next)
    assert est.forecast(10.0) == pytest.approx(fit.sigma_next)
    assert est.forecast(1e9) == pytest.approx(fit.sigma_long_run, rel=1e-3)


def test_forecast_matches_arch_analytic_forecast() -> None:
    est = GarchForecast(interval_s=10.0, max_returns=400)
    r = 0.02 * garch_path(400, omega=0.1, alpha=0.15, beta=0.75, seed=2)
    feed(est, r)
    got = est.forecast(250.0)  # 25 steps
    rms = math.sqrt(float(np.mean(r * r)))
    res = arch_model(r / rms, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off")
    var = res.forecast(horizon=25, reindex=False).variance.to_numpy()[-1]
    expected = math.sqrt(float(np.mean(var)) * rms * rms / 10.0)
    assert got == pytest.approx(expected, rel=1e-6)
    fit = est.last_fit
    assert fit is not None
    assert fit.alpha == pytest.approx(float(res.params["alpha[1]"]))
    assert fit.omega == pytest.approx(float(res.params["omega"]) * rms * rms)


def test_a_jump_at_the_end_does_not_blow_up_the_forecast() -> None:
    """Near-iid returns then one 37σ jump: the normal likelihood goes to α ≈ 0, β ≈ 1, where
    ω/(1 − p) is meaningless; the window's mean square is the level instead."""
    r = 0.01 * np.random.default_rng(8).standard_normal(201)
    r[-1] = 0.37
    est = GarchForecast(interval_s=10.0)
    feed(est, r)
    fit = est.fit()
    assert fit is not None and not fit.long_run_identified
    rms_sigma = math.sqrt(float(np.mean(r * r)) / 10.0)
    assert fit.sigma_long_run == pytest.approx(rms_sigma)
    for horizon in (10.0, 600.0, 3600.0, 1e7):
        f = est.forecast(horizon)
        assert f is not None and 0.5 * rms_sigma < f < 3.0 * rms_sigma


def test_short_or_degenerate_series_give_none() -> None:
    est = GarchForecast(interval_s=10.0, min_returns=60)
    feed(est, 0.01 * np.random.default_rng(0).standard_normal(59))
    assert est.samples == 59 and est.forecast(60.0) is None
    flat = GarchForecast(interval_s=10.0)
    feed(flat, np.zeros(300), x0=0.3)  # the mid never moves
    assert flat.samples == 300 and flat.forecast(60.0) is None
    sparse = GarchForecast(interval_s=10.0, min_nonzero=10)
    steps = np.zeros(300)
    steps[::50] = 0.02  # six moves in 300 intervals
    feed(sparse, steps)
    assert sparse.forecast(60.0) is None
    assert GarchForecast().forecast(60.0) is None


def test_fit_is_cached_until_new_returns() -> None:
    est = GarchForecast(interval_s=10.0)
    feed(est, 0.01 * np.random.default_rng(8).standard_normal(200))
    first = est.fit()
    assert first is not None
    assert est.fit() is first and est.forecast(30.0) == first.sigma(30.0)
    est.update(1.0 + 200 * 10.0 + 5.0, 0.5)  # under interval_s after the last sample: no return
    assert est.fit() is first
    est.update(1.0 + 201 * 10.0, 0.6)
    second = est.fit()
    assert second is not None and second is not first and est.samples == 201


def test_bad_inputs_leave_state_unchanged() -> None:
    est = GarchForecast(interval_s=10.0, min_returns=20)
    feed(est, 0.01 * np.random.default_rng(9).standard_normal(50))
    before = (est.samples, est.fit())
    t_last = 1.0 + 50 * 10.0
    for t, mid in (
        (float("nan"), 0.5),
        (float("inf"), 0.5),
        (0.0, 0.5),
        (-5.0, 0.5),
        (t_last + 20.0, float("nan")),
        (t_last + 20.0, float("inf")),
        (t_last + 20.0, 0.0),
        (t_last + 20.0, 1.0),
        (t_last + 20.0, -0.2),
        (t_last - 100.0, 0.5),
    ):
        est.update(t, mid)
    assert (est.samples, est.fit()) == before
    assert est.forecast(float("nan")) is None
    assert est.forecast(float("inf")) is None


def test_rejects_bad_construction() -> None:
    with pytest.raises(ValueError):
        GarchForecast(interval_s=0.0)
    with pytest.raises(ValueError):
        GarchForecast(min_returns=100, max_returns=50)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([5.0, 5.0, 6.0, 60.0, 1.0]),
            st.one_of(
                st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
                st.sampled_from([0.5, 0.5, 5e-324, 1e-300, 1.0 - 2**-53, 0.5 + 1e-15]),
            ),
        ),
        min_size=25,
        max_size=150,
    ),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_never_raises_or_warns_on_pathological_input(
    rows: list[tuple[float, float]], horizon: float
) -> None:
    est = GarchForecast(interval_s=5.0, min_returns=20, max_returns=100, min_nonzero=5)
    t = 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dt, mid in rows:
            t += dt
            est.update(t, mid)
        f = est.forecast(horizon)
        g = est.forecast(60.0)
    assert not caught, [str(w.message) for w in caught]
    assert f is None or (math.isfinite(f) and f > 0.0)
    assert g is None or (math.isfinite(g) and g > 0.0)
    fit = est.last_fit
    event("fitted" if fit is not None else f"no fit ({est.samples} returns)")
    if fit is not None:
        assert 0.0 <= fit.persistence <= 1.0 and fit.omega > 0.0
        assert math.isfinite(fit.sigma_long_run) and fit.sigma_long_run > 0.0


def test_the_window_is_the_last_max_returns_returns() -> None:
    """The compact buffer holds exactly what a deque(maxlen=max_returns) of the returns would."""
    from collections import deque

    g = GarchForecast(interval_s=1.0, min_returns=10, max_returns=50, min_nonzero=1)
    ref: deque[float] = deque(maxlen=50)
    x_prev = None
    for k in range(1, 400):
        mid = 0.5 + 0.2 * math.sin(k * 0.37)
        g.update(float(k), mid)
        x = math.log(mid / (1.0 - mid))
        if x_prev is not None:
            ref.append(x - x_prev)
        x_prev = x
        assert g.samples == len(ref)
        held = list(g._returns[len(g._returns) - g.samples :])
        assert held == list(ref)
