"""Event correlation (cfa.core.covariance): the structural prior and the online estimate.

The simulated data are correlated Gaussian walks of logit(mid) (numpy, seeded), seen by the
estimator at random tick times (stale in between) or on a half-cent mid grid (always current,
rounded). Tolerances are stated where they are asserted; the seeds are fixed, so every assertion
is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.covariance import P_CLIP, EventCovariance, structural_correlation
from cfa.core.events import EventKind, EventStructure
from cfa.core.types import CfaValueError

PROPS = settings(max_examples=150, deadline=None)

TRUE = np.array(
    [
        [1.0, 0.8, 0.5, 0.2],
        [0.8, 1.0, 0.7, 0.4],
        [0.5, 0.7, 1.0, 0.6],
        [0.2, 0.4, 0.6, 1.0],
    ]
)
UPPER = np.triu_indices(4, 1)


def names(n: int) -> tuple[str, ...]:
    return tuple(f"M{i}" for i in range(n))


def ladder(n: int) -> EventStructure:
    return EventStructure(
        "E", EventKind.LADDER, names(n), strikes=tuple(float(i) for i in range(n))
    )


def exclusive(n: int, exhaustive: bool = True) -> EventStructure:
    return EventStructure("E", EventKind.EXCLUSIVE, names(n), exhaustive=exhaustive)


def independent(n: int) -> EventStructure:
    return EventStructure("E", EventKind.INDEPENDENT, names(n))


def assert_correlation_matrix(r: np.ndarray, n: int) -> None:
    assert r.shape == (n, n)
    assert np.isfinite(r).all()
    assert np.array_equal(r, r.T)
    assert np.array_equal(np.diagonal(r), np.ones(n))
    assert np.abs(r).max() <= 1.0
    assert np.linalg.eigvalsh(r).min() >= -1e-9


def payoff_correlation(structure: EventStructure, outcome_probs: list[float]) -> np.ndarray:
    """Correlation of the YES indicators, by enumerating the event's outcomes."""
    y = np.array(structure.outcomes(), dtype=float)
    w = np.array(outcome_probs)
    mean = w @ y
    cov = (y - mean).T @ ((y - mean) * w[:, None])
    d = np.sqrt(np.diagonal(cov))
    return cov / np.outer(d, d)


def stale_walks(corr: np.ndarray, sigma: float, rate: float, duration: float, seed: int):
    """Logit walks with correlation ``corr`` and σ_x = ``sigma``/√s, each market seen at Poisson
    times of ``rate``/s: the exact latent value at its ticks, stale in between."""
    rng = np.random.default_rng(seed)
    n = len(corr)
    counts = rng.poisson(rate * duration, size=n)
    t = np.concatenate([rng.uniform(0.0, duration, c) for c in counts])
    who = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    order = np.argsort(t, kind="stable")
    t, who = t[order], who[order]
    steps = rng.standard_normal((len(t), n)) @ np.linalg.cholesky(corr).T
    x = np.cumsum(steps * sigma * np.sqrt(np.diff(t, prepend=0.0))[:, None], axis=0)
    mids = 1.0 / (1.0 + np.exp(-x[np.arange(len(t)), who]))
    return t.tolist(), who.tolist(), mids.tolist()


def grid_walks(corr: np.ndarray, sigma: float, duration: float, seed: int, dt: float = 0.05):
    """The same walks, always current, the mid rounded to half a cent: one event per move."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((int(duration / dt), len(corr))) @ np.linalg.cholesky(corr).T
    x = np.cumsum(steps * sigma * math.sqrt(dt), axis=0)
    mids = np.round(200.0 / (1.0 + np.exp(-x))) / 200.0
    rows, cols = np.nonzero(np.diff(mids, axis=0))
    rows = rows + 1
    return (rows * dt).tolist(), cols.tolist(), mids[rows, cols].tolist()


def feed(ec: EventCovariance, events) -> EventCovariance:
    t, who, mids = events
    for i, ti, m in zip(who, t, mids, strict=True):
        ec.on_mid(i, ti, m)
    return ec


# -- the structural prior ------------------------------------------------------------------------


@PROPS
@given(raw=st.lists(st.floats(0.01, 0.99), min_size=2, max_size=8))
def test_ladder_prior_is_the_correlation_of_nested_payoffs(raw) -> None:
    p = sorted(raw, reverse=True)
    n = len(p)
    # outcome j: the underlying between strikes j − 1 and j (markets i < j are YES)
    edges = [1.0, *p, 0.0]
    outcome = [edges[j] - edges[j + 1] for j in range(n + 1)]
    expected = payoff_correlation(ladder(n), outcome)
    got = structural_correlation(ladder(n), p)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert (got[np.triu_indices(n, 1)] > 0).all()
    # neighbours are the most correlated: each row falls away from the diagonal
    for i in range(n):
        assert all(got[i, j] >= got[i, j + 1] - 1e-12 for j in range(i, n - 1))


@PROPS
@given(raw=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8), slack=st.floats(0.0, 0.5))
def test_exclusive_prior_is_the_correlation_of_exclusive_payoffs(raw, slack) -> None:
    n = len(raw)
    p = np.array(raw) / sum(raw) * (1.0 - slack)
    # exhaustive: the probabilities are scaled to sum to 1 first
    full = p / p.sum()
    np.testing.assert_allclose(
        structural_correlation(exclusive(n), p),
        payoff_correlation(exclusive(n), full.tolist()),
        atol=1e-9,
    )
    if slack > 0.01:  # not exhaustive: "none" is one more outcome, with 1 − Σp
        np.testing.assert_allclose(
            structural_correlation(exclusive(n, exhaustive=False), p),
            payoff_correlation(exclusive(n, exhaustive=False), [*p.tolist(), slack]),
            atol=1e-9,
        )
    got = structural_correlation(exclusive(n), p)
    assert (got[np.triu_indices(n, 1)] < 0).all()
    # singular: one of every outcome is riskless, u_i = √(p_i(1 − p_i)) spans the null space
    u = np.sqrt(full * (1.0 - full))
    assert np.abs(got @ u).max() <= 1e-9


@PROPS
@given(
    probs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10),
    kind=st.sampled_from(["ladder", "exclusive", "partial", "independent"]),
)
def test_prior_is_a_correlation_matrix_for_any_probabilities(probs, kind) -> None:
    """Non-monotone ladders, exclusive sets summing to more than 1, probabilities at 0 or 1."""
    n = len(probs)
    structure = {
        "ladder": ladder,
        "exclusive": exclusive,
        "partial": lambda k: exclusive(k, exhaustive=False),
        "independent": independent,
    }[kind](n)
    r = structural_correlation(structure, probs)
    assert_correlation_matrix(r, n)
    if kind == "independent" or n == 1:
        assert np.array_equal(r, np.eye(n))


def test_prior_clips_probabilities_and_projects_a_crossed_ladder() -> None:
    r = structural_correlation(ladder(2), [1.0, 0.0])
    lo, hi = P_CLIP, 1.0 - P_CLIP
    assert r[0, 1] == pytest.approx(math.sqrt(lo * (1 - hi) / (hi * (1 - lo))))
    # a crossed pair (p rising along the ladder) is pooled: both at the mean, correlation 1
    assert structural_correlation(ladder(2), [0.3, 0.5])[0, 1] == pytest.approx(1.0)
    crossed = structural_correlation(ladder(3), [0.6, 0.3, 0.5])
    np.testing.assert_allclose(crossed, structural_correlation(ladder(3), [0.6, 0.4, 0.4]))


def test_prior_refuses_bad_probabilities() -> None:
    with pytest.raises(CfaValueError, match="3 markets"):
        structural_correlation(ladder(3), [0.5, 0.4])
    with pytest.raises(CfaValueError, match="finite"):
        structural_correlation(exclusive(2), [0.5, math.nan])
    with pytest.raises(CfaValueError, match=r"\[0, 1\]"):
        structural_correlation(exclusive(2), [0.5, 1.2])
    with pytest.raises(CfaValueError, match="finite"):
        structural_correlation(independent(2), [math.inf, 0.2])


# -- sampling -----------------------------------------------------------------------------------


def test_previous_tick_sampling_on_the_event_clock() -> None:
    ec = EventCovariance(2, interval=1.0, window=10, min_samples=2)
    ec.on_mid(0, 0.0, 0.5)  # the clock starts here: boundaries at 1, 2, 3, ...
    ec.on_mid(1, 0.1, 0.5)
    ec.on_mid(0, 0.5, 0.6)
    ec.on_mid(0, 1.2, 0.7)  # crosses 1.0: the bases are set (0.6, 0.5), no sample yet
    assert ec.samples == 0
    ec.on_mid(1, 1.5, 0.4)
    ec.on_mid(0, 2.0, 0.8)  # crosses 2.0 (at it: this mid belongs to the next sample)
    assert ec.samples == 1
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    np.testing.assert_allclose(
        ec.changes(), [[logit(0.7) - logit(0.6), logit(0.4) - logit(0.5)]], atol=1e-15
    )
    ec.on_mid(1, 5.5, 0.45)  # crosses 3, 4 and 5: the change, then two samples of nothing
    assert ec.samples == 4
    np.testing.assert_allclose(ec.changes()[1], [logit(0.8) - logit(0.7), 0.0], atol=1e-15)
    assert not ec.changes()[2:].any()


def test_a_market_without_a_mid_contributes_nothing_until_it_has_a_base() -> None:
    ec = EventCovariance(3, interval=1.0, window=10, min_samples=2)
    for k in range(6):
        ec.on_mid(0, k + 0.5, 0.5 + 0.01 * k)
        ec.on_mid(1, k + 0.6, 0.5 - 0.01 * k)
        if k >= 3:
            ec.on_mid(2, k + 0.7, 0.3 + 0.02 * k)
    ch = ec.changes()
    assert (ch[:, 0] > 0).all() and (ch[:, 1] < 0).all()
    # market 2 first seen at 3.7: base set at the boundary 4, first change at 5
    assert list(ch[:, 2] > 0) == [False] * (len(ch) - 1) + [True]


def test_the_ring_never_grows_past_its_window() -> None:
    ec = EventCovariance(3, interval=1.0, window=30, min_samples=5)
    rng = np.random.default_rng(1)
    for k in range(2000):
        ec.on_mid(k % 3, k / 3.0, float(rng.uniform(0.2, 0.8)))
    assert ec.samples == 30
    assert ec.changes().shape == (30, 3)
    assert ec._ring.shape == (30, 3)
    before = ec.changes()
    # a gap of a day adds at most ``window`` samples: the change, then nothing
    ec.on_mid(0, 2000 / 3.0 + 86_400.0, 0.5)
    assert ec.samples == 30
    after = ec.changes()
    assert after[0].any() or before[-1].any()
    assert not after[1:].any()


def test_bad_mids_times_and_indices_are_refused() -> None:
    ec = EventCovariance(2)
    for mid in (math.nan, math.inf, -math.inf, 0.0, 1.0, 1.5):
        with pytest.raises(CfaValueError, match="mid"):
            ec.on_mid(0, 1.0, mid)
    for i in (-1, 2):
        with pytest.raises(CfaValueError, match="market"):
            ec.on_mid(i, 1.0, 0.5)
    with pytest.raises(CfaValueError, match="finite"):
        ec.on_mid(0, math.nan, 0.5)
    ec.on_mid(0, 1.0, 0.5)
    with pytest.raises(CfaValueError, match="finite"):
        ec.on_mid(0, math.inf, 0.5)
    with pytest.raises(CfaValueError, match="interval"):
        EventCovariance(2, interval=0.0)
    with pytest.raises(CfaValueError, match="min_samples"):
        EventCovariance(2, window=10, min_samples=20)
    with pytest.raises(CfaValueError, match="lags"):
        EventCovariance(2, lags=2)
    with pytest.raises(CfaValueError, match="structure"):
        EventCovariance(3, structure=ladder(2))
    with pytest.raises(CfaValueError, match="probabilities"):
        EventCovariance(2).correlation([0.5, math.nan])


# -- the estimate --------------------------------------------------------------------------------


def test_the_prior_alone_while_warming_up() -> None:
    structure = ladder(4)
    probs = [0.8, 0.6, 0.4, 0.2]
    ec = EventCovariance(4, structure=structure, min_samples=24)
    prior = structural_correlation(structure, probs)
    assert np.array_equal(ec.correlation(probs), prior)
    events = stale_walks(TRUE, 0.01, 2.0, 24 * 5.0, seed=3)
    feed(ec, events)
    assert ec.samples < 24 and not ec.ready
    assert np.array_equal(ec.correlation(probs), prior)
    assert ec.shrinkage == 1.0
    feed(ec, [[t + 200.0 for t in events[0]], events[1], events[2]])
    assert ec.ready and ec.samples >= 24
    assert not np.array_equal(ec.correlation(probs), prior)
    assert ec.shrinkage < 1.0


@pytest.mark.parametrize("missing", ["no mid", "never moved"])
def test_a_market_without_data_keeps_the_prior_row(missing: str) -> None:
    structure = exclusive(4, exhaustive=False)  # a prior far from the truth: ρ = −0.25
    probs = [0.2, 0.2, 0.2, 0.2]
    t, who, mids = stale_walks(TRUE, 0.01, 5.0, 3000.0, seed=4)
    ec = EventCovariance(4, structure=structure, window=600)
    for i, ti, m in zip(who, t, mids, strict=True):
        if i == 3:
            if missing == "no mid":
                continue
            m = 0.25  # quoted, never moves
        ec.on_mid(i, ti, m)
    assert ec.ready is (missing == "never moved")
    r = ec.correlation(probs)
    assert_correlation_matrix(r, 4)
    prior = structural_correlation(structure, probs)
    np.testing.assert_allclose(r[3], prior[3], atol=0.05)  # the prior's row, up to the PSD repair
    # the other three are estimated: close to the truth, far from the prior
    assert np.abs(r[:3, :3] - TRUE[:3, :3]).max() < 0.12
    assert np.abs(r[:3, :3] - prior[:3, :3]).max() > 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converges_to_the_true_correlation_with_dense_ticks(seed: int) -> None:
    """10 ticks/s per market, 100 minutes, 1,200 five-second samples: every entry within 0.1
    of the truth (measured: at most 0.08 over these seeds; the sampling error of one entry at
    ρ = 0.2 is about 0.03)."""
    ec = EventCovariance(4, window=1200, structure=independent(4))
    feed(ec, stale_walks(TRUE, 0.01, 10.0, 6000.0, seed))
    r = ec.correlation([0.5] * 4)
    assert_correlation_matrix(r, 4)
    assert np.abs(r - TRUE).max() < 0.1
    assert np.abs(r - TRUE)[UPPER].mean() < 0.05
    assert ec.shrinkage < 0.05


def test_shrinkage_falls_as_data_grow_and_stays_high_when_the_prior_is_right() -> None:
    events = stale_walks(TRUE, 0.01, 5.0, 12_000.0, seed=5)
    ec = EventCovariance(4, window=2400, min_samples=8, structure=independent(4))
    deltas: dict[int, float] = {}
    t, who, mids = events
    for i, ti, m in zip(who, t, mids, strict=True):
        ec.on_mid(i, ti, m)
        for at in (8, 30, 300, 2000):
            if ec.samples >= at and at not in deltas:
                ec.correlation([0.5] * 4)
                deltas[at] = ec.shrinkage
    assert deltas[8] > deltas[30] > deltas[300] > deltas[2000]
    assert deltas[2000] < 0.01  # measured 0.0027
    # few samples: δ near 1 (over 20 seeds of 5 samples, measured median 0.97, mean 0.64)
    few = []
    for seed in range(20):
        ec = EventCovariance(4, window=100, min_samples=5, structure=independent(4))
        t, who, mids = stale_walks(TRUE, 0.01, 5.0, 7 * 5.0, seed)
        for i, ti, m in zip(who, t, mids, strict=True):
            ec.on_mid(i, ti, m)
            if ec.samples >= 5:
                break
        ec.correlation([0.5] * 4)
        few.append(ec.shrinkage)
    assert np.median(few) > 0.8
    # independent walks and an identity prior: the data cannot beat the prior, δ stays large
    high = []
    for seed in range(6):
        ec = EventCovariance(4, window=60, min_samples=8, structure=independent(4))
        feed(ec, stale_walks(np.eye(4), 0.01, 5.0, 40 * 5.0, seed))
        ec.correlation([0.5] * 4)
        high.append(ec.shrinkage)
    assert np.mean(high) > 0.6


def test_epps_staleness_bias_and_the_lag_kernel() -> None:
    """Markets seen at 0.5 ticks/s, 5-s samples: without the lead-lag terms the estimate is
    ρ·(1 − 1/(λ·interval)) = 0.6·ρ (within 0.06 per entry); the one-lag kernel recovers ρ
    within 0.12 (measured ≤ 0.10)."""
    for seed in range(2):
        events = stale_walks(TRUE, 0.01, 0.5, 6000.0, seed)
        plain = feed(EventCovariance(4, window=1200, lags=0), events).correlation([0.5] * 4)
        kernel = feed(EventCovariance(4, window=1200, lags=1), events).correlation([0.5] * 4)
        attenuated = 0.6 * TRUE
        np.fill_diagonal(attenuated, 1.0)
        assert np.abs(plain - attenuated).max() < 0.06
        assert np.abs(kernel - TRUE).max() < 0.12


def test_grid_noise_bias_and_the_lag_kernel() -> None:
    """An always-current book on a half-cent mid grid whose latent logit moves 0.004/√s (less
    than a tick per 5-s sample): the plain estimate loses about half the correlation (mean bias
    −0.25, measured), the kernel's mean bias is within 0.05."""
    for seed in range(2):
        events = grid_walks(TRUE, 0.004, 7200.0, seed)
        plain = feed(EventCovariance(4, window=1440, lags=0), events).correlation([0.5] * 4)
        kernel = feed(EventCovariance(4, window=1440, lags=1), events).correlation([0.5] * 4)
        assert (plain - TRUE)[UPPER].mean() < -0.2
        assert abs((kernel - TRUE)[UPPER].mean()) < 0.05


@PROPS
@given(
    n=st.integers(2, 6),
    lags=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**32 - 1),
    ticks=st.integers(0, 400),
)
def test_factored_sums_match_the_direct_terms(n, lags, seed, ticks) -> None:
    rng = np.random.default_rng(seed)
    ec = EventCovariance(n, interval=1.0, window=40, min_samples=2, lags=lags)
    t = 0.0
    for _ in range(ticks):
        t += float(rng.exponential(0.4))
        ec.on_mid(int(rng.integers(n)), t, float(rng.uniform(0.05, 0.95)))
    if ec.samples < 2:
        return
    r, var, valid = ec._stats()
    r_direct, var_direct = ec._stats_direct()
    off = ~np.eye(n, dtype=bool) & valid[:, None] & valid[None, :]
    np.testing.assert_allclose(r[off], np.clip(r_direct, -1, 1)[off], atol=1e-9)
    np.testing.assert_allclose(var[off], var_direct[off], rtol=1e-6, atol=1e-9)


@PROPS
@given(
    n=st.integers(1, 7),
    kind=st.sampled_from(["ladder", "exclusive", "partial", "independent"]),
    lags=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**32 - 1),
    ticks=st.integers(0, 600),
    levels=st.integers(1, 20),
    probs_seed=st.integers(0, 1000),
)
def test_estimate_is_always_a_correlation_matrix(
    n, kind, lags, seed, ticks, levels, probs_seed
) -> None:
    """Random tick streams (markets that never trade, that sit still, that jump between a few
    levels) and random probabilities: symmetric, unit diagonal, in [−1, 1], PSD."""
    structure = {
        "ladder": ladder,
        "exclusive": exclusive,
        "partial": lambda k: exclusive(k, exhaustive=False),
        "independent": independent,
    }[kind](n)
    rng = np.random.default_rng(seed)
    ec = EventCovariance(n, interval=1.0, window=50, min_samples=3, lags=lags, structure=structure)
    active = rng.random(n) < 0.8
    grid = np.linspace(0.01, 0.99, levels + 1)
    t = 0.0
    for _ in range(ticks):
        t += float(rng.exponential(0.5))
        i = int(rng.integers(n))
        if active[i]:
            ec.on_mid(i, t, float(rng.choice(grid)))
    probs = np.random.default_rng(probs_seed).uniform(0.0, 1.0, n)
    r = ec.correlation(probs)
    assert_correlation_matrix(r, n)
    assert 0.0 <= ec.shrinkage <= 1.0


@pytest.mark.parametrize("lags", [0, 1])
def test_the_variance_estimate_behind_the_shrinkage_is_calibrated(lags: int) -> None:
    """Over 30 seeds of 200 samples, the mean Var̂(r_ij) matches the spread of r_ij across seeds
    (the sum over pairs within a factor 0.6–1.6; measured 0.8–1.0)."""
    rs, vs = [], []
    for seed in range(30):
        ec = feed(
            EventCovariance(4, window=200, lags=lags), stale_walks(TRUE, 0.01, 5.0, 1000.0, seed)
        )
        r, var, valid = ec._stats()
        assert valid.all()
        rs.append(r[UPPER])
        vs.append(var[UPPER])
    ratio = np.mean(vs, axis=0).sum() / np.var(rs, axis=0).sum()
    assert 0.6 < ratio < 1.6
