"""Reduced-path reproduction of the Avellaneda–Stoikov (2008) simulation (``tools/as2008.py``).

The full table (1000 paths per γ) is ``python tools/as2008.py``; here 300 paths with a fixed
seed keep the test well under a second while still separating the strategies clearly: at
γ = 0.1 the published stds are 6.6 vs 12.7 (profit) and 2.9 vs 8.4 (final q), ratios of about
0.5 and 0.35, while the sampling error of a std over 300 paths is about 4 %.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cfa.core.quoting import optimal_spread, reservation_price

N_PATHS = 300
SEED = 7
Z_TOL = 4.0
"""Mean profits must lie within this many standard errors of the published value.

The SE is that of the difference between our 300-path mean and the paper's 1000-path mean
(``sqrt(s²/300 + s_paper²/1000)``: about 0.43 for the inventory strategy at γ = 0.1 and 0.88 for
the symmetric one). 4 SE keeps a correct simulation passing for essentially any seed (3 SE over
the six rows would fail about one seed in a hundred) while still catching the known wrong
readings: exact-Poisson fills (1 − e^(−λdt)) lower the γ = 0.1 inventory profit to about 57.3,
some 18 SE below 65.0, and dropping the γσ²τ term from the spread sends the γ = 1 inventory
profit to about −43.
"""


def _load_tool() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tools" / "as2008.py"
    spec = importlib.util.spec_from_file_location("cfa_tools_as2008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


as2008 = _load_tool()


@pytest.fixture(scope="module")
def results() -> dict[float, object]:
    return {g: as2008.simulate(g, N_PATHS, SEED) for g in as2008.GAMMAS}


def test_formulas_vectorise_over_paths() -> None:
    """The simulation feeds numpy arrays to cfa's model-pure formulas; they must accept them."""
    mid = np.array([100.0, 100.0, 99.5])
    q = np.array([0.0, 3.0, -2.0])
    r = reservation_price(mid, q, 0.1, 2.0, 0.5)
    assert isinstance(r, np.ndarray)
    np.testing.assert_allclose(r, [100.0, 100.0 - 3 * 0.1 * 4 * 0.5, 99.5 + 2 * 0.1 * 4 * 0.5])
    tau = np.array([1.0, 0.5, 0.0])
    s = optimal_spread(0.1, 2.0, 1.5, tau)
    np.testing.assert_allclose(s, [optimal_spread(0.1, 2.0, 1.5, float(t)) for t in tau])


@pytest.mark.parametrize(
    ("gamma", "published"), [(0.1, 1.49), (0.01, 1.35), (1.0, 3.02)], ids=["0.1", "0.01", "1"]
)
def test_average_spread(gamma: float, published: float, results: dict[float, object]) -> None:
    """The 'average spread' column is the time-average of eq. (30): γσ²T/2 + (2/γ)ln(1 + γ/k)."""
    sigma, k, T = as2008.SIGMA, as2008.K, as2008.T
    expected = gamma * sigma**2 * T / 2 + (2 / gamma) * math.log(1 + gamma / k)
    assert as2008.average_spread(gamma) == pytest.approx(expected, rel=1e-12)
    assert round(expected, 2) == published
    res = results[gamma]
    # the symmetric strategy quotes exactly that average, and so does the reported column
    assert res.symmetric.spread == pytest.approx(expected, rel=1e-12)
    assert res.inventory.spread == pytest.approx(expected, rel=1e-12)
    # the inventory strategy's quoted spreads, averaged over the steps τ = T, T − dt, …, dt,
    # differ from the continuous average only by the left-endpoint term γσ²dt/2
    assert res.step_mean_spread - expected == pytest.approx(gamma * sigma**2 * as2008.DT / 2)


def test_average_spread_gamma_01_value() -> None:
    assert as2008.average_spread(0.1) == pytest.approx(1.4908, abs=1e-4)


def test_inventory_strategy_cuts_risk_at_gamma_01(results: dict[float, object]) -> None:
    """The paper's point: at γ = 0.1 the inventory strategy's profit and final inventory are far
    less dispersed than the symmetric strategy's (published 6.6 vs 12.7 and 2.9 vs 8.4)."""
    inv = results[0.1].inventory.row()
    sym = results[0.1].symmetric.row()
    assert inv.std_profit < 0.7 * sym.std_profit
    assert inv.std_final_q < 0.5 * sym.std_final_q
    # and the stds themselves are near the published ones. Loose: a std over 300 paths has
    # ~4 % sampling error, and the symmetric profit is heavy-tailed (over 300 seeds its std
    # ranged up to ~16.2) and known to come out near 13.3 against 12.7 published.
    assert inv.std_profit == pytest.approx(6.6, rel=0.15)
    assert inv.std_final_q == pytest.approx(2.9, rel=0.15)
    assert sym.std_profit == pytest.approx(12.7, rel=0.35)
    assert sym.std_final_q == pytest.approx(8.4, rel=0.15)


def test_inventory_strategy_less_dispersed_at_every_gamma(results: dict[float, object]) -> None:
    for gamma in as2008.GAMMAS:
        inv, sym = results[gamma].inventory.row(), results[gamma].symmetric.row()
        assert inv.std_profit < sym.std_profit, gamma
        assert inv.std_final_q < sym.std_final_q, gamma


@pytest.mark.parametrize("gamma", [0.1, 0.01, 1.0], ids=["0.1", "0.01", "1"])
def test_mean_profit_near_published(gamma: float, results: dict[float, object]) -> None:
    for check in as2008.compare(results[gamma]):
        assert abs(check.z_profit) < Z_TOL, (
            f"γ={gamma} {check.strategy}: profit {check.ours.profit:.2f} vs published "
            f"{check.paper.profit} (z = {check.z_profit:+.2f})"
        )
        assert abs(check.z_final_q) < Z_TOL, (
            f"γ={gamma} {check.strategy}: final q {check.ours.final_q:+.3f} vs published "
            f"{check.paper.final_q} (z = {check.z_final_q:+.2f})"
        )


def test_simulation_is_deterministic() -> None:
    a = as2008.simulate(0.1, 50, 123)
    b = as2008.simulate(0.1, 50, 123)
    np.testing.assert_array_equal(a.inventory.profit, b.inventory.profit)
    np.testing.assert_array_equal(a.symmetric.final_q, b.symmetric.final_q)


def test_cli_full_table_passes_with_default_seed(capsys: pytest.CaptureFixture[str]) -> None:
    """``python tools/as2008.py`` (1000 paths per γ, seed 0) matches the table and exits 0."""
    assert as2008.main([]) == 0
    assert "PASS" in capsys.readouterr().out
