"""Multi-asset AS and GLFT (cfa.core.multiasset): reductions, signs, null spaces, Γ's equation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.covariance import structural_correlation
from cfa.core.events import EventKind, EventStructure
from cfa.core.multiasset import (
    SMALL_N,
    cross_inventory_risk,
    cross_inventory_risk_at,
    glft_cross_skew,
    glft_gamma_matrix,
    glft_multi_quotes,
    price_covariance,
    reservation_prices,
)
from cfa.core.quoting import glft_coefficients, reservation_price, sigma_price
from cfa.core.types import CfaValueError

PROPS = settings(max_examples=150, deadline=None)

mid_st = st.floats(0.02, 0.98)
sigx_st = st.floats(1e-4, 0.05)
gamma_st = st.floats(0.01, 5.0)
tau_st = st.one_of(st.just(0.0), st.floats(1e-3, 3600.0))
inv_st = st.integers(-200, 200).map(float)


def random_corr(n: int, seed: int, rank: int | None = None) -> np.ndarray:
    """A random correlation matrix (rank ``rank`` if given: singular for rank < n)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, rank if rank is not None else n + 1))
    c = a @ a.T
    d = np.sqrt(np.diagonal(c))
    out = c / np.outer(d, d)
    np.fill_diagonal(out, 1.0)
    return out


@st.composite
def event_state(
    draw: st.DrawFn, max_n: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, max_n))
    mids = np.array(draw(st.lists(mid_st, min_size=n, max_size=n)))
    sx = np.array(draw(st.lists(sigx_st, min_size=n, max_size=n)))
    q = np.array(draw(st.lists(inv_st, min_size=n, max_size=n)))
    seed = draw(st.integers(0, 2**32 - 1))
    rank = draw(st.one_of(st.none(), st.integers(1, n)))
    return mids, sx, q, random_corr(n, seed, rank)


# -- AS: reductions and signs -------------------------------------------------------------------


@PROPS
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            st.lists(mid_st, min_size=n, max_size=n),
            st.lists(sigx_st, min_size=n, max_size=n),
            st.lists(inv_st, min_size=n, max_size=n),
            st.one_of(gamma_st, st.lists(gamma_st, min_size=n, max_size=n)),
            st.one_of(tau_st, st.lists(tau_st, min_size=n, max_size=n)),
        )
    )
)
def test_diagonal_covariance_reduces_to_single_market_as(args) -> None:
    mids, sx, q, gamma, tau = args
    n = len(mids)
    cov = price_covariance(mids, sx, np.eye(n))
    r = reservation_prices(mids, q, gamma, cov, tau)
    for i in range(n):
        g = gamma if isinstance(gamma, float) else gamma[i]
        t = tau if isinstance(tau, float) else tau[i]
        single = reservation_price(mids[i], q[i], g, sigma_price(mids[i], sx[i]), t)
        assert r[i] == pytest.approx(single, rel=1e-12, abs=1e-15)


@PROPS
@given(
    n=st.integers(2, 8),
    at=st.integers(0, 7),
    p_top=st.floats(0.5, 0.98),
    step=st.floats(0.01, 0.08),
    sx=sigx_st,
    long=st.floats(1.0, 100.0),
    gamma=gamma_st,
    tau=st.floats(1.0, 3600.0),
    kind=st.sampled_from([EventKind.LADDER, EventKind.EXCLUSIVE]),
)
def test_long_one_market_moves_the_others_by_their_correlation(
    n, at, p_top, step, sx, long, gamma, tau, kind
) -> None:
    """Ladder (ρ > 0): the neighbours' reservation prices fall; exclusive (ρ < 0): they rise;
    each by γ·τ·ρ_ij·σp_i·σp_j·q_i — proportional to the correlation."""
    at %= n
    if kind is EventKind.LADDER:
        probs = np.maximum(p_top - step * np.arange(n), 0.02)
        st_ = EventStructure("E", kind, tuple(f"M{i}" for i in range(n)), strikes=tuple(range(n)))
    else:
        probs = np.full(n, 1.0 / n)
        st_ = EventStructure("E", kind, tuple(f"M{i}" for i in range(n)))
    corr = structural_correlation(st_, probs)
    sig = np.full(n, sx)
    cov = price_covariance(probs, sig, corr)
    q = np.zeros(n)
    q[at] = long
    shift = reservation_prices(probs, q, gamma, cov, tau) - probs
    # the same with s = 0: the shift alone, without the cancellation of r − s
    np.testing.assert_allclose(
        shift, reservation_prices(np.zeros(n), q, gamma, cov, tau), atol=1e-15
    )
    shift = reservation_prices(np.zeros(n), q, gamma, cov, tau)
    sp = probs * (1 - probs) * sx
    for j in range(n):
        if j == at:
            assert shift[j] < 0.0  # its own: always down
            continue
        expected = -gamma * tau * corr[at, j] * sp[at] * sp[j] * long
        assert shift[j] == pytest.approx(expected, rel=1e-9, abs=1e-18)
        if kind is EventKind.LADDER:
            assert shift[j] < 0.0
        else:
            assert shift[j] > 0.0
        # proportional to the correlation: the ratio is the same for every neighbour
        assert shift[j] / (corr[at, j] * sp[j]) == pytest.approx(
            -gamma * tau * sp[at] * long, rel=1e-9
        )


@PROPS
@given(
    probs=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8),
    scale=st.floats(1e-6, 1.0),
    units=st.floats(-100.0, 100.0),
    gamma=gamma_st,
    tau=tau_st,
)
def test_one_of_every_outcome_of_an_exhaustive_set_is_riskless(
    probs, scale, units, gamma, tau
) -> None:
    p = np.array(probs) / sum(probs)
    n = len(p)
    q = np.full(n, units)
    # the terminal covariance c·(diag(p) − ppᵀ) directly
    cov = scale * (np.diag(p) - np.outer(p, p))
    r = reservation_prices(p, q, gamma, cov, tau)
    bound = gamma * tau * scale * abs(units) * 1e-12 + 1e-15
    assert np.abs(r - p).max() <= bound
    # and through the estimator's pieces: structural prior with σp_i ∝ √(p_i(1 − p_i))
    ex = EventStructure("E", EventKind.EXCLUSIVE, tuple(f"M{i}" for i in range(n)))
    sx = math.sqrt(scale) / np.sqrt(p * (1 - p))
    cov2 = price_covariance(p, sx, structural_correlation(ex, p))
    np.testing.assert_allclose(cov2, cov, rtol=1e-6, atol=1e-12 * scale)
    r2 = reservation_prices(p, q, gamma, cov2, tau)
    assert np.abs(r2 - p).max() <= 1e-9 * (gamma * tau * scale * abs(units)) + 1e-15
    # a single outcome held is not riskless
    q1 = np.zeros(n)
    q1[0] = 1.0
    if tau > 0:
        assert reservation_prices(np.zeros(n), q1, gamma, cov, tau)[0] < 0.0


@PROPS
@given(
    state=event_state(),
    a=st.floats(-3.0, 3.0),
    gamma=gamma_st,
    tau=tau_st,
    seed=st.integers(0, 999),
)
def test_reservation_shift_is_linear_in_inventory_and_covariance_symmetric(
    state, a, gamma, tau, seed
) -> None:
    mids, sx, q, corr = state
    cov = price_covariance(mids, sx, corr)
    assert np.array_equal(cov, cov.T)
    q2 = np.random.default_rng(seed).integers(-50, 50, size=len(q)).astype(float)

    def shift(inv: np.ndarray) -> np.ndarray:
        return reservation_prices(np.zeros(len(mids)), inv, gamma, cov, tau)

    np.testing.assert_allclose(
        shift(q), reservation_prices(mids, q, gamma, cov, tau) - mids, rtol=1e-12, atol=1e-15
    )
    tol = 1e-12 * gamma * tau * float(np.abs(cov).max()) * 500 + 1e-300
    np.testing.assert_allclose(shift(q + q2), shift(q) + shift(q2), rtol=0, atol=tol)
    np.testing.assert_allclose(shift(a * q), a * shift(q), rtol=0, atol=tol)
    # symmetric: the effect of market j's inventory on i equals that of i's on j (equal γ, τ)
    n = len(q)
    if n >= 2:
        e0, e1 = np.eye(n)[0], np.eye(n)[1]
        assert shift(e1)[0] == pytest.approx(shift(e0)[1], rel=1e-12, abs=1e-18)


# -- the hot-path term ---------------------------------------------------------------------------


@PROPS
@given(state=event_state(max_n=20), gamma=gamma_st, tau=tau_st, as_lists=st.booleans())
def test_cross_inventory_risk_completes_the_single_market_quote(
    state, gamma, tau, as_lists
) -> None:
    mids, sx, q, corr = state
    cov = price_covariance(mids, sx, corr)
    c = cross_inventory_risk(cov.tolist(), q.tolist()) if as_lists else cross_inventory_risk(cov, q)
    np.testing.assert_allclose(c, cov @ q - np.diagonal(cov) * q, rtol=1e-9, atol=1e-15)
    r = reservation_prices(mids, q, gamma, cov, tau)
    sp = mids * (1 - mids) * sx
    centre = mids - gamma * tau * (q * sp * sp + c)
    np.testing.assert_allclose(centre, r, rtol=0, atol=1e-12)
    for i in range(len(q)):
        assert cross_inventory_risk_at(cov[i], q, i) == pytest.approx(c[i], rel=1e-9, abs=1e-15)
        assert cross_inventory_risk_at(cov[i].tolist(), q.tolist(), i) == pytest.approx(
            c[i], rel=1e-9, abs=1e-15
        )


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # numpy on the NaN input
@pytest.mark.parametrize("n", [SMALL_N, SMALL_N + 1])
def test_cross_inventory_risk_refuses_bad_input_on_both_paths(n: int) -> None:
    cov = np.eye(n) * 1e-4
    q = np.ones(n)
    with pytest.raises(CfaValueError, match="inventory"):
        cross_inventory_risk(cov, np.ones(n + 1))
    with pytest.raises(CfaValueError, match="square"):
        cross_inventory_risk(np.ones((n, n + 1)), q)
    bad = cov.copy()
    bad[0, 1] = bad[1, 0] = math.nan
    with pytest.raises(CfaValueError, match="finite"):
        cross_inventory_risk(bad, q)
    with pytest.raises(CfaValueError, match="finite"):
        cross_inventory_risk(cov, np.where(np.arange(n) == 1, math.inf, q))
    with pytest.raises(CfaValueError, match="finite"):
        cross_inventory_risk_at(bad[0], q, 0)
    with pytest.raises(CfaValueError, match="i="):
        cross_inventory_risk_at(cov[0], q, n)


def test_bad_inputs_are_refused_with_the_name_of_what_is_wrong() -> None:
    corr = np.array([[1.0, 0.5], [0.5, 1.0]])
    with pytest.raises(CfaValueError, match="mids"):
        price_covariance([0.5, math.nan], [0.01, 0.01], corr)
    with pytest.raises(CfaValueError, match="sigmas_x"):
        price_covariance([0.5, 0.5], [0.01], corr)
    with pytest.raises(CfaValueError, match="sigmas_x"):
        price_covariance([0.5, 0.5], [0.01, -0.01], corr)
    with pytest.raises(CfaValueError, match="symmetric"):
        price_covariance([0.5, 0.5], [0.01, 0.01], [[1.0, 0.5], [0.4, 1.0]])
    with pytest.raises(CfaValueError, match="unit diagonal"):
        price_covariance([0.5, 0.5], [0.01, 0.01], [[2.0, 0.5], [0.5, 1.0]])
    with pytest.raises(CfaValueError, match=r"\[-1, 1\]"):
        price_covariance([0.5, 0.5], [0.01, 0.01], [[1.0, 1.5], [1.5, 1.0]])
    with pytest.raises(CfaValueError, match="mids"):
        price_covariance([1.5, 0.5], [0.01, 0.01], corr)
    cov = price_covariance([0.5, 0.4], [0.01, 0.02], corr)
    with pytest.raises(CfaValueError, match="gamma"):
        reservation_prices([0.5, 0.4], [1, 2], 0.0, cov, 10.0)
    with pytest.raises(CfaValueError, match="gamma"):
        reservation_prices([0.5, 0.4], [1, 2], [0.1, math.inf], cov, 10.0)
    with pytest.raises(CfaValueError, match="tau"):
        reservation_prices([0.5, 0.4], [1, 2], 0.1, cov, -1.0)
    with pytest.raises(CfaValueError, match="inventory"):
        reservation_prices([0.5, 0.4], [1], 0.1, cov, 1.0)
    with pytest.raises(CfaValueError, match="cov"):
        reservation_prices([0.5, 0.4, 0.3], [1, 1, 1], 0.1, cov, 1.0)
    with pytest.raises(CfaValueError, match="k"):
        glft_gamma_matrix(cov, 1.0, [1.0, 0.0], 1.0)
    with pytest.raises(CfaValueError, match="A"):
        glft_gamma_matrix(cov, math.nan, 1.0, 1.0)
    with pytest.raises(CfaValueError, match="diagonal"):
        glft_gamma_matrix([[-1.0, 0.0], [0.0, 1.0]], 1.0, 1.0, 1.0)


# -- GLFT ----------------------------------------------------------------------------------------


@PROPS
@given(
    sigma=st.floats(1e-5, 0.05),
    A=st.floats(0.01, 10.0),
    k=st.floats(1.0, 500.0),
    gamma=st.floats(1e-4, 10.0),
)
def test_glft_one_dimension_is_the_single_asset_closed_form(sigma, A, k, gamma) -> None:
    big = glft_gamma_matrix([[sigma * sigma]], A, k, 1.0)
    assert big[0, 0] == pytest.approx(sigma * math.sqrt(math.e / (2 * A * k)), rel=1e-12)
    # √γ·Γ is c2 without its (1 + γ/k)^(1 + k/γ) → e factor
    _, c2 = glft_coefficients(gamma, sigma, A, k)
    factor = math.sqrt((1 + gamma / k) ** (1 + k / gamma) / math.e)
    assert math.sqrt(gamma) * big[0, 0] * factor == pytest.approx(c2, rel=1e-9)
    # quotes: δ_b = 1/k + √γ·Γ·(q + 1/2), δ_a = 1/k + √γ·Γ·(1/2 − q)
    for q in (-3.0, 0.0, 2.0):
        bid, ask = glft_multi_quotes([0.5], [q], gamma, [[sigma * sigma]], A, k, 1.0)
        skew = math.sqrt(gamma) * big[0, 0]
        assert 0.5 - bid[0] == pytest.approx(1 / k + skew * (q + 0.5), rel=1e-12, abs=1e-15)
        assert ask[0] - 0.5 == pytest.approx(1 / k + skew * (0.5 - q), rel=1e-12, abs=1e-15)


@PROPS
@given(
    state=event_state(),
    A=st.floats(0.01, 10.0),
    k=st.floats(1.0, 500.0),
    z=st.floats(0.5, 50.0),
    gamma=st.floats(1e-4, 10.0),
)
def test_glft_gamma_is_symmetric_psd_and_solves_its_equation(state, A, k, z, gamma) -> None:
    mids, sx, q, corr = state
    cov = price_covariance(mids, sx, corr)
    big = glft_gamma_matrix(cov, A, k, z)
    assert np.array_equal(big, big.T)
    w = np.linalg.eigvalsh(big)
    assert w.min() >= -1e-9 * max(w.max(), 1e-300)
    d = np.diag(np.full(len(mids), 2 * z * A * k / math.e))
    np.testing.assert_allclose(big @ d @ big, cov, rtol=0, atol=1e-9 * float(np.abs(cov).max()))
    # the quotes: spread independent of q, centre down by √γ·(Γq)_i, cross skew = off-diagonal
    bids, asks = glft_multi_quotes(mids, q, gamma, cov, A, k, z)
    spread = asks - bids
    np.testing.assert_allclose(spread, 2 / k + math.sqrt(gamma) * z * np.diagonal(big), rtol=1e-9)
    centre_shift = 0.5 * (bids + asks) - mids
    np.testing.assert_allclose(centre_shift, -math.sqrt(gamma) * (big @ q), rtol=1e-9, atol=1e-12)
    cross = glft_cross_skew(big, gamma, q)
    own = math.sqrt(gamma) * np.diagonal(big) * q
    np.testing.assert_allclose(-(cross + own), centre_shift, rtol=1e-9, atol=1e-12)


@PROPS
@given(
    probs=st.lists(st.floats(0.02, 1.0), min_size=2, max_size=8),
    scale=st.floats(1e-6, 1e-2),
    units=st.floats(-50.0, 50.0),
    gamma=st.floats(1e-4, 10.0),
)
def test_glft_with_a_singular_exhaustive_set_covariance(probs, scale, units, gamma) -> None:
    """Σ ∝ diag(p) − ppᵀ is singular: Γ still solves ΓDΓ = Σ and q ∝ 1 does not skew."""
    p = np.array(probs) / sum(probs)
    n = len(p)
    cov = scale * (np.diag(p) - np.outer(p, p))
    big = glft_gamma_matrix(cov, 1.0, 50.0, 1.0)
    d = np.diag(np.full(n, 2 * 50.0 / math.e))
    np.testing.assert_allclose(big @ d @ big, cov, rtol=0, atol=1e-9 * scale)
    skew = (
        glft_cross_skew(big, gamma, np.full(n, units)) + math.sqrt(gamma) * np.diagonal(big) * units
    )
    assert np.abs(skew).max() <= 1e-7 * math.sqrt(gamma * scale) * (abs(units) + 1)


@PROPS
@given(
    mids=st.lists(mid_st, min_size=1, max_size=6),
    sxs=st.lists(sigx_st, min_size=6, max_size=6),
    qs=st.lists(inv_st, min_size=6, max_size=6),
    A=st.floats(0.01, 10.0),
    k=st.floats(1.0, 500.0),
    gamma=st.floats(1e-4, 10.0),
)
def test_glft_diagonal_covariance_quotes_each_market_alone(mids, sxs, qs, A, k, gamma) -> None:
    n = len(mids)
    cov = price_covariance(mids, sxs[:n], np.eye(n))
    bids, asks = glft_multi_quotes(mids, qs[:n], gamma, cov, A, k, 1.0)
    assert np.abs(glft_cross_skew(glft_gamma_matrix(cov, A, k, 1.0), gamma, qs[:n])).max() == 0.0
    for i in range(n):
        b, a = glft_multi_quotes([mids[i]], [qs[i]], gamma, cov[i : i + 1, i : i + 1], A, k, 1.0)
        assert bids[i] == pytest.approx(b[0], rel=1e-12)
        assert asks[i] == pytest.approx(a[0], rel=1e-12)
