"""VAR regime flags on synthetic series with a known structure."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest

from cfa.core import regime
from cfa.core.regime import RegimeFlags, RegimeMonitor, min_rows, var_flags

# Columns: [logit return, imbalance, signed flow]. Imbalance is persistent, flow follows it.
A_BASE = np.array(
    [
        [0.05, 0.00, 0.00],
        [0.00, 0.80, 0.00],
        [0.00, 0.20, 0.30],
    ]
)
SCALE = np.array([0.01, 0.2, 5.0])  # innovation s.d.: logit units, imbalance, contracts


def simulate(
    a: np.ndarray,
    n: int = 300,
    seed: int = 0,
    *,
    break_at: int | None = None,
    vol_mult: float = 1.0,
    mean_shift: np.ndarray | None = None,
) -> np.ndarray:
    """A VAR(1) ``y_t = a·y_{t−1} + SCALE·ε_t``; from ``break_at`` on, ε is scaled and shifted."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n + 50, 3))
    for t in range(1, n + 50):
        e = rng.standard_normal(3)
        if break_at is not None and t - 50 >= break_at:
            e = e * vol_mult + (0.0 if mean_shift is None else mean_shift)
        y[t] = a @ y[t - 1] + SCALE * e
    return y[50:]  # drop the burn-in


def informed_a() -> np.ndarray:
    a = A_BASE.copy()
    a[0, 2] = 0.3 * SCALE[0] / SCALE[2]  # last interval's flow moves this interval's return
    return a


# -- regime shift ---------------------------------------------------------------------------------


def test_no_break_rarely_flags_a_shift() -> None:
    flags = [var_flags(simulate(A_BASE, seed=s)) for s in range(40)]
    assert all(f.status == "ok" for f in flags)
    assert sum(f.regime_shift for f in flags) <= 1  # level 0.1 %: expect 0.04 of 40
    assert all(f.shift_threshold == pytest.approx(99.607, abs=0.01) for f in flags)  # χ²(60)


@pytest.mark.parametrize(
    ("vol_mult", "mean_shift"),
    [(3.0, None), (1.0, np.array([0.0, 2.0, 0.0])), (1.0, np.array([1.5, 1.5, 1.5]))],
    ids=["variance_x3", "imbalance_mean_2sd", "all_means_1.5sd"],
)
def test_break_in_the_tested_rows_flags_a_shift(
    vol_mult: float, mean_shift: np.ndarray | None
) -> None:
    hits = 0
    for seed in range(10):
        y = simulate(A_BASE, seed=seed, break_at=285, vol_mult=vol_mult, mean_shift=mean_shift)
        f = var_flags(y)
        assert f.status == "ok"
        hits += f.regime_shift
        if f.regime_shift:
            assert f.shift_stat is not None and f.shift_threshold is not None
            assert f.shift_stat > f.shift_threshold
            assert f.shift_pvalue is not None and f.shift_pvalue < regime.SHIFT_LEVEL
    assert hits >= 9


def test_single_jump_is_capped_but_uncapped_statistic_sees_it() -> None:
    y = simulate(A_BASE, seed=3)
    y[-5, 0] += 40 * SCALE[0]  # one 40σ return
    capped, raw = var_flags(y), var_flags(y, d2_cap_level=None)
    assert not capped.regime_shift
    assert raw.regime_shift
    assert capped.shift_stat is not None and raw.shift_stat is not None
    assert capped.shift_stat < raw.shift_stat


# -- informed flow --------------------------------------------------------------------------------


def test_flow_leading_returns_flags_informed_flow() -> None:
    flags = [var_flags(simulate(informed_a(), seed=s)) for s in range(10)]
    assert all(f.informed_flow for f in flags)
    assert all(f.flow_return_coef is not None and f.flow_return_coef > 0 for f in flags)
    assert all(f.causality_pvalue is not None and f.causality_pvalue < 1e-4 for f in flags)


def test_independent_flow_rarely_flags_informed_flow() -> None:
    flags = [var_flags(simulate(A_BASE, seed=100 + s)) for s in range(40)]
    assert sum(f.informed_flow for f in flags) <= 3  # level 1 %: expect 0.4 of 40


def test_lag_two_detects_flow_leading_by_two_steps() -> None:
    rng = np.random.default_rng(7)
    n = 300
    flow = rng.standard_normal(n)
    ret = 0.01 * rng.standard_normal(n)
    ret[2:] += 0.006 * flow[:-2]  # flow leads returns by two intervals
    imb = np.zeros(n)
    for t in range(1, n):
        imb[t] = 0.8 * imb[t - 1] + 0.2 * rng.standard_normal()
    y = np.column_stack([ret, imb, flow])
    assert var_flags(y, lags=2).informed_flow
    assert var_flags(y, lags=2).lags == 2


# -- instability ----------------------------------------------------------------------------------


def test_explosive_var_is_unstable() -> None:
    a = A_BASE.copy()
    a[1, 1] = 1.03
    f = var_flags(simulate(a, seed=1))
    assert f.status == "ok"
    assert f.unstable
    assert f.max_root_modulus is not None and f.max_root_modulus > 1.0


def test_stable_var_is_not_unstable() -> None:
    f = var_flags(simulate(A_BASE, seed=2))
    assert not f.unstable
    assert f.max_root_modulus is not None and 0.6 < f.max_root_modulus < 1.0


# -- degenerate windows ---------------------------------------------------------------------------


def _degenerate_windows() -> dict[str, np.ndarray]:
    good = simulate(A_BASE, seed=5)
    nan, inf, neg_inf = good.copy(), good.copy(), good.copy()
    nan[10, 0] = math.nan
    inf[-1, 2] = math.inf
    neg_inf[100, 1] = -math.inf
    flat_returns = good.copy()
    flat_returns[:, 0] = 0.0
    collinear = good.copy()
    collinear[:, 2] = 25.0 * collinear[:, 1] - 1.0
    return {
        "constant": np.full((300, 3), 0.5),
        "all_zero": np.zeros((300, 3)),
        "one_constant_column": flat_returns,
        "too_few": good[:60],
        "one_row": good[:1],
        "empty": np.zeros((0, 3)),
        "nan": nan,
        "inf": inf,
        "neg_inf": neg_inf,
        "collinear": collinear,
    }


@pytest.mark.parametrize("name", list(_degenerate_windows()))
def test_degenerate_windows_are_insufficient_data(name: str) -> None:
    f = var_flags(_degenerate_windows()[name])
    assert f.status == "insufficient_data"
    assert not (f.regime_shift or f.informed_flow or f.unstable)
    assert f.reason
    json.dumps(f.as_dict(), allow_nan=False)


def test_degenerate_reasons_name_the_problem() -> None:
    w = _degenerate_windows()
    assert "too few points" in var_flags(w["too_few"]).reason
    assert "non-finite" in var_flags(w["nan"]).reason
    assert "signed_flow" in var_flags(w["inf"]).reason
    assert "logit_return" in var_flags(w["one_constant_column"]).reason
    assert "singular" in var_flags(w["collinear"]).reason


def test_minimum_rows_is_enough() -> None:
    y = simulate(A_BASE, seed=9)
    need = min_rows()
    assert var_flags(y[:need]).status == "ok"
    assert var_flags(y[: need - 1]).status == "insufficient_data"


class _Boom:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise np.linalg.LinAlgError("boom")


class _Warns:
    def __init__(self, endog: Any, category: type[Warning]) -> None:
        self._endog, self._category = endog, category

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        from statsmodels.tsa.api import VAR  # type: ignore[import-untyped]

        warnings.warn("something odd", self._category, stacklevel=1)
        return VAR(self._endog).fit(*args, **kwargs)


def test_statsmodels_raising_is_insufficient_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regime, "VAR", _Boom)
    f = var_flags(simulate(A_BASE, seed=1))
    assert f.status == "insufficient_data"
    assert "LinAlgError" in f.reason


def test_statsmodels_warning_is_insufficient_data_and_stays_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(regime, "VAR", lambda endog: _Warns(endog, RuntimeWarning))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # would raise if the warning escaped var_flags
        f = var_flags(simulate(A_BASE, seed=1))
    assert f.status == "insufficient_data"
    assert "RuntimeWarning" in f.reason


def test_deprecation_warnings_do_not_invalidate_a_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regime, "VAR", lambda endog: _Warns(endog, FutureWarning))
    assert var_flags(simulate(A_BASE, seed=1)).status == "ok"


@pytest.mark.parametrize(
    "kwargs",
    [{"lags": 0}, {"test_size": 0}, {"shift_level": 0.0}, {"causality_level": 1.5}],
)
def test_bad_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        var_flags(simulate(A_BASE), **kwargs)


def test_bad_shape_raises() -> None:
    with pytest.raises(ValueError):
        var_flags(np.zeros((300, 2)))
    with pytest.raises(ValueError):
        var_flags(np.zeros(300))


def test_as_dict_is_plain_json() -> None:
    f = var_flags(simulate(informed_a(), seed=0))
    d = f.as_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert type(d["regime_shift"]) is bool and type(d["nobs"]) is int
    assert isinstance(d["causality_pvalue"], float)
    assert RegimeFlags("ok", shift_stat=math.inf).as_dict()["shift_stat"] is None


def test_deterministic() -> None:
    y = simulate(informed_a(), seed=4)
    assert var_flags(y) == var_flags(y.copy())


# -- the monitor ----------------------------------------------------------------------------------


def _feed(mon: RegimeMonitor, rows: np.ndarray, x0: float = 0.0, t0: float = 1000.0) -> float:
    """Turn sample rows into events: 3 events per 1 s interval; returns the last event time.

    Interval k = [t0 + k, t0 + k + 1): its events set the mid to reach ``x0 + Σ returns``, the
    imbalance to the row's value and split the row's flow in three.
    """
    x = x0
    mon.observe(t0 - 0.5, 1.0 / (1.0 + math.exp(-x)), 0.0)  # the interval before: first mid
    t = t0 - 0.5
    for k, (r, imb, flow) in enumerate(rows):
        x += r
        for j, frac in enumerate((0.2, 0.5, 0.3)):
            t = t0 + k + 0.1 + 0.3 * j
            mid = 1.0 / (1.0 + math.exp(-(x - 0.01 * (2 - j))))  # last event sets the final mid
            mon.observe(t, mid, imb if j == 2 else -imb, frac * flow)
    return t


def test_monitor_samples_on_the_time_grid() -> None:
    rows = simulate(A_BASE, n=120, seed=11)
    mon = RegimeMonitor(window=100)
    t = _feed(mon, rows)
    mon.refresh(t + 1.0)  # closes the last interval
    assert mon.samples == 120
    got = mon.window_data()
    assert got.shape == (100, 3)
    np.testing.assert_allclose(got, rows[-100:], rtol=1e-9, atol=1e-12)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_monitor_empty_intervals_carry_state_forward() -> None:
    mon = RegimeMonitor(window=100)
    mon.observe(0.5, 0.5, 0.1)
    mon.observe(1.5, 0.6, 0.3, 4.0)
    mon.observe(1.7, None, None, -1.0)  # trade only: mid and imbalance unchanged
    mon.observe(4.2, 0.7, -0.2)  # intervals 2 and 3 were empty
    mon.refresh(5.0)
    expected = [
        [_logit(0.6) - _logit(0.5), 0.3, 3.0],
        [0.0, 0.3, 0.0],
        [0.0, 0.3, 0.0],
        [_logit(0.7) - _logit(0.6), -0.2, 0.0],
    ]
    np.testing.assert_allclose(mon.window_data(), expected)


def test_monitor_ignores_bad_inputs_and_caps_gaps() -> None:
    mon = RegimeMonitor(window=100)
    mon.observe(0.0, 0.5, 0.0)
    for bad in (0.0, 1.0, math.nan, -0.2):
        mon.observe(0.5, bad, math.nan, math.inf)
    mon.observe(1.2, 0.5, 0.0)
    assert np.isfinite(mon.window_data()).all()
    mon.refresh(1e7)  # a ten-million-second gap adds at most window + 1 rows
    assert mon.samples <= 102
    f = mon.refresh(1e7)
    assert f.status == "insufficient_data" and "constant" in f.reason


def test_monitor_warms_up_then_flags_and_caches() -> None:
    mon = RegimeMonitor(window=300)
    rows = simulate(informed_a(), n=700, seed=12)  # > 2 windows: the buffer wraps
    assert mon.refresh(0.0).status == "insufficient_data"
    t = _feed(mon, rows[:30])
    warm = mon.refresh(t)
    assert warm.status == "insufficient_data" and "too few" in warm.reason
    t = _feed(mon, rows[30:], x0=float(rows[:30, 0].sum()), t0=1030.0)
    f = mon.refresh(t + 1.0)
    np.testing.assert_allclose(mon.window_data(), rows[-300:], rtol=1e-9, atol=1e-12)
    assert f.status == "ok" and f.nobs == 300 and f.informed_flow
    assert mon.refresh(t + 1.25) is f  # same interval, no new sample: no refit
    assert mon.last is f


def test_monitor_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        RegimeMonitor(window=30)
    with pytest.raises(ValueError):
        RegimeMonitor(sample_interval=0.0)
    with pytest.raises(ValueError):
        RegimeMonitor(lags=0)
