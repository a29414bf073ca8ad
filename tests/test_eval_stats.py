"""The eval summary (cfa.eval.stats) and the target checks (cfa.eval.targets), on hand-built
results whose statistics are worked out by hand."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from eval_jobs import make_result
from rich.console import Console

from cfa.eval.stats import paired_stat, summarize, summary_markdown, summary_table
from cfa.eval.targets import (
    check_targets,
    overall,
    targets_markdown,
    targets_table,
)

BASE = "static-as"
AG = "agents:heuristic"


def _simple() -> list:
    # static: 1, 2, 3, 4 ; agents: 2, 2, 5, 7  -> d = 1, 0, 2, 3
    out = [make_result("s1", BASE, s, p) for s, p in zip([1, 2, 3, 4], [1, 2, 3, 4], strict=True)]
    out += [make_result("s1", AG, s, p) for s, p in zip([1, 2, 3, 4], [2, 2, 5, 7], strict=True)]
    return out


def test_cell_statistics_by_hand() -> None:
    s = summarize(_simple(), BASE)
    assert s.scenarios == ["s1"]
    assert s.strategies == [BASE, AG]
    c = s.cell("s1", BASE)
    assert c is not None
    assert c.n == 4 and c.n_errors == 0
    assert c.pnl_mean == pytest.approx(2.5)
    assert c.pnl_std == pytest.approx(math.sqrt(5 / 3))
    assert c.pnl_se == pytest.approx(math.sqrt(5 / 3) / 2)
    assert c.fills_mean == 10 and c.sharpe_mean == pytest.approx(0.1)
    assert c.markout_60s_mean == pytest.approx(0.001) and c.markout_60s_n == 4
    assert c.time_quoted_both_mean == pytest.approx(0.9)
    assert c.fees_mean == pytest.approx(0.5)
    assert c.spread_pnl_mean == pytest.approx(3.5)
    assert c.inventory_pnl_mean == pytest.approx(-0.5)  # pnl − spread + fees
    assert c.max_drawdown_mean == 1.0 and c.max_abs_inventory_mean == 5.0


def test_paired_statistics_by_hand() -> None:
    s = summarize(_simple(), BASE)
    p = s.pair("s1", AG)
    assert p is not None and p.baseline == BASE and p.dropped == 0
    d = p.pnl
    assert d.n == 4
    assert d.mean_diff == pytest.approx(1.5)
    assert d.mean_strategy == pytest.approx(4.0) and d.mean_baseline == pytest.approx(2.5)
    sd = math.sqrt(5 / 3)  # deviations −0.5, −1.5, 0.5, 1.5 -> 5 / 3
    assert d.sd_diff == pytest.approx(sd)
    assert d.se == pytest.approx(sd / 2)
    assert d.t == pytest.approx(1.5 / (sd / 2))  # 2.3238
    assert (d.wins, d.losses, d.ties) == (3, 0, 1)
    assert d.rel_diff == pytest.approx(0.6)  # 1.5 / |2.5|
    assert d.ci_low is not None and d.ci_high is not None
    assert 0.0 <= d.ci_low < 1.5 < d.ci_high <= 3.0  # inside [min d, max d]
    assert d.rel_ci_low is not None and d.rel_ci_high is not None
    assert d.rel_ci_low < 0.6 < d.rel_ci_high
    # Sharpe: all 0.1 on both sides -> zero differences, SE 0, t undefined
    assert p.sharpe.n == 4 and p.sharpe.mean_diff == pytest.approx(0.0)
    assert p.sharpe.t is None and p.sharpe.ties == 4


def test_bootstrap_reproducible_and_seeded() -> None:
    a = summarize(_simple(), BASE)
    b = summarize(_simple(), BASE)
    assert a == b
    pa, pb = a.pair("s1", AG), b.pair("s1", AG)
    assert pa is not None and pb is not None
    assert (pa.pnl.ci_low, pa.pnl.ci_high) == (pb.pnl.ci_low, pb.pnl.ci_high)
    # the interval comes from the seeded resamples: another seed, another (close) interval
    x = [math.sin(i) * 3 + i % 5 for i in range(30)]
    y = [math.cos(i) for i in range(30)]
    p0, p1 = paired_stat(x, y), paired_stat(x, y, seed=1)
    assert p0 == paired_stat(x, y)
    assert (p0.ci_low, p0.ci_high) != (p1.ci_low, p1.ci_high)
    assert p0.ci_low == pytest.approx(p1.ci_low, abs=0.2)


def test_bootstrap_interval_matches_normal_theory_for_large_n() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(10, 5, 400)
    strat = base + rng.normal(1.0, 2.0, 400)
    p = paired_stat(strat.tolist(), base.tolist())
    assert p.mean_diff is not None and p.se is not None
    assert p.ci_low is not None and p.ci_high is not None
    # percentile bootstrap of a mean ≈ mean ± 1.96·SE (to a few per cent of the width)
    assert p.ci_low == pytest.approx(p.mean_diff - 1.96 * p.se, abs=0.1 * p.se)
    assert p.ci_high == pytest.approx(p.mean_diff + 1.96 * p.se, abs=0.1 * p.se)


def test_paired_stat_edge_cases() -> None:
    assert paired_stat([], []).mean_diff is None
    one = paired_stat([3.0], [1.0])
    assert one.n == 1 and one.mean_diff == 2.0 and one.se is None and one.t is None
    assert one.ci_low is None and one.wins == 1
    const = paired_stat([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])  # d = 1, 1, 1
    assert const.se == 0 and const.t is None
    assert const.ci_low == const.ci_high == pytest.approx(1.0)
    zero_base = paired_stat([1.0, 2.0], [-1.0, 1.0])
    assert zero_base.rel_diff is None and zero_base.rel_ci_low is None
    neg = paired_stat([-8.0, -6.0], [-10.0, -10.0])
    assert neg.rel_diff == pytest.approx(3.0 / 10.0)  # diff / |baseline mean|
    with pytest.raises(ValueError):
        paired_stat([1.0], [1.0, 2.0])


def test_missing_seeds_dropped_and_counted() -> None:
    res = [*_simple(), make_result("s1", AG, 5, 100.0), make_result("s1", BASE, 9, 100.0)]
    s = summarize(res, BASE)
    p = s.pair("s1", AG)
    assert p is not None
    assert p.pnl.n == 4 and p.dropped == 2
    assert p.pnl.mean_diff == pytest.approx(1.5)  # seeds 5 and 9 play no part
    c = s.cell("s1", AG)
    assert c is not None and c.n == 5  # the cell keeps the unpaired run


def test_errored_runs_counted_and_excluded() -> None:
    res = [*_simple(), make_result("s1", BASE, 6, None), make_result("s1", AG, 6, 50.0)]
    s = summarize(res, BASE)
    assert s.n_results == 10 and s.n_errors == 1
    c = s.cell("s1", BASE)
    assert c is not None and c.n == 4 and c.n_errors == 1
    assert c.pnl_mean == pytest.approx(2.5)
    p = s.pair("s1", AG)
    assert p is not None and p.pnl.n == 4 and p.dropped == 1
    pooled = s.cell(None, BASE)
    assert pooled is not None and pooled.n_errors == 1


def test_all_errored_cell() -> None:
    res = [make_result("s1", BASE, 1, 1.0), make_result("s1", AG, 1, None)]
    s = summarize(res, BASE)
    c = s.cell("s1", AG)
    assert c is not None and c.n == 0 and c.n_errors == 1 and c.pnl_mean is None
    p = s.pair("s1", AG)
    assert p is not None and p.pnl.n == 0 and p.dropped == 1
    summary_markdown(s)  # renders with missing numbers


def test_order_independent() -> None:
    res = [
        *_simple(),
        *[make_result("s2", BASE, s, float(s)) for s in range(1, 8)],
        *[make_result("s2", AG, s, float(s * s) / 3) for s in range(1, 8)],
        make_result("s2", AG, 9, None),
    ]
    ref = summarize(res, BASE)
    for k in range(3):
        shuffled = list(res)
        random.Random(k).shuffle(shuffled)
        assert summarize(shuffled, BASE) == ref


def test_pooled_pairs_by_scenario_and_seed() -> None:
    res = [*_simple()]
    # s2 reuses seeds 1 and 2: pooled pairs are keyed by (scenario, seed)
    res += [make_result("s2", BASE, 1, 10.0), make_result("s2", BASE, 2, 10.0)]
    res += [make_result("s2", AG, 1, 6.0), make_result("s2", AG, 2, 8.0)]  # d = −4, −2
    s = summarize(res, BASE)
    p = s.pair(None, AG)
    assert p is not None
    assert p.pnl.n == 6
    assert p.pnl.mean_diff == pytest.approx((1 + 0 + 2 + 3 - 4 - 2) / 6)
    assert (p.pnl.wins, p.pnl.losses, p.pnl.ties) == (3, 2, 1)
    pooled = s.cell(None, BASE)
    assert pooled is not None and pooled.n == 6
    assert pooled.pnl_mean == pytest.approx((1 + 2 + 3 + 4 + 10 + 10) / 6)
    rows = summary_markdown(s).splitlines()
    assert any(r.startswith("| all | agents:heuristic") for r in rows)


def test_sharpe_pairs_skip_none() -> None:
    res = [
        make_result("s1", BASE, 1, 1.0, sharpe=0.1),
        make_result("s1", BASE, 2, 1.0, sharpe=None),
        make_result("s1", BASE, 3, 1.0, sharpe=0.3),
        make_result("s1", AG, 1, 2.0, sharpe=0.2),
        make_result("s1", AG, 2, 2.0, sharpe=0.5),
        make_result("s1", AG, 3, 2.0, sharpe=0.6),
    ]
    s = summarize(res, BASE)
    c = s.cell("s1", BASE)
    assert c is not None and c.sharpe_n == 2 and c.sharpe_mean == pytest.approx(0.2)
    p = s.pair("s1", AG)
    assert p is not None
    assert p.pnl.n == 3 and p.sharpe.n == 2
    assert p.sharpe.mean_diff == pytest.approx(0.2)  # (0.1 + 0.3) / 2
    assert p.sharpe.rel_diff == pytest.approx(1.0)  # 0.2 / 0.2


def test_duplicates_and_reverse_lookup() -> None:
    res = [*_simple(), make_result("s1", AG, 1, None)]  # a failed try, then the success
    assert summarize(res, BASE) == summarize(_simple(), BASE)
    with pytest.raises(ValueError, match="two different"):
        summarize([*_simple(), make_result("s1", AG, 1, 99.0)], BASE)
    s = summarize(_simple(), BASE)
    rev = s.pair("s1", BASE, AG)  # static − agents, derived from agents − static
    fwd = s.pair("s1", AG)
    assert rev is not None and fwd is not None
    assert rev.pnl.mean_diff == pytest.approx(-1.5)
    assert rev.pnl.t == pytest.approx(-(fwd.pnl.t or 0))
    assert (rev.pnl.wins, rev.pnl.losses) == (0, 3)
    assert rev.pnl.ci_low == pytest.approx(-(fwd.pnl.ci_high or 0))
    assert rev.pnl.rel_diff == pytest.approx(-1.5 / 4.0)
    assert s.pair("s1", "nope") is None


def test_missing_baseline_gives_empty_pairs() -> None:
    res = [make_result("s1", AG, s, 1.0) for s in range(3)]
    s = summarize(res, "naive")
    assert s.strategies == [AG]
    p = s.pair("s1", AG)
    assert p is not None and p.pnl.n == 0 and p.dropped == 3


def test_tables_render_and_escape() -> None:
    res = [*_simple(), *[make_result("a|b", BASE, s, 1.0) for s in range(2)]]
    s = summarize(res, BASE)
    console = Console(record=True, width=200)
    console.print(summary_table(s))
    text = console.export_text()
    assert "agents:heuristic" in text and "+1.50 ± 0.65" in text and "3/4" in text
    md = summary_markdown(s)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| scenario | strategy | n |")
    assert len(lines) == 2 + 3 + 2  # header, rule, 3 cells, 2 pooled rows
    assert "a\\|b" in md  # a pipe in a name does not split the row
    row = next(r for r in lines if r.startswith("| s1 | agents"))
    assert "+1.50 ± 0.65" in row and "+2.32" in row and "3/4" in row and "+60.0" in row


# -- targets -----------------------------------------------------------------------------------


def _suite(
    n: int,
    agents_factor: dict[str, float],
    static_mean: float = 10.0,
    scenarios: tuple[str, ...] = ("regime-shift", "informed-flow", "calm"),
    strategies: tuple[str, ...] = ("naive", BASE, AG),
    noise: float = 0.5,
) -> list:
    out = []
    for sc in scenarios:
        for seed in range(n):
            wiggle = noise * math.sin(seed * 1.7 + len(sc))
            st = static_mean + 3 * math.cos(seed)  # the world: shared by every strategy
            vals = {
                "naive": st - 4 + wiggle,
                BASE: st,
                AG: st + agents_factor[sc] * abs(static_mean) + wiggle,
            }
            shs = {"naive": 0.05, BASE: 0.10, AG: 0.10 * (1 + agents_factor[sc])}
            for strat in strategies:
                out.append(
                    make_result(sc, strat, seed, vals[strat], sharpe=shs[strat] + 0.01 * wiggle)
                )
    return out


def _by(checks: list, scenario: str, word: str):
    return next(c for c in checks if c.scenario == scenario and word in c.name)


def test_targets_pass() -> None:
    res = _suite(20, {"regime-shift": 0.3, "informed-flow": 0.25, "calm": -0.02})
    checks = check_targets(summarize(res, BASE))
    assert [c.passed for c in checks] == [True] * len(checks)
    assert len(checks) == 4 + 1 + 3  # 2 × (PnL, Sharpe), calm, naive on 3 scenarios
    assert overall(checks) is True
    rs = _by(checks, "regime-shift", "PnL")
    assert "n=20" in rs.measured and "t=" in rs.measured and "%" in rs.measured


def test_targets_fail() -> None:
    # agents only 10 % better on regime-shift, 8 % worse on calm
    res = _suite(20, {"regime-shift": 0.1, "informed-flow": 0.3, "calm": -0.08})
    checks = check_targets(summarize(res, BASE))
    assert _by(checks, "regime-shift", "PnL").passed is False
    assert _by(checks, "regime-shift", "Sharpe").passed is False
    assert _by(checks, "informed-flow", "PnL").passed is True
    assert _by(checks, "calm", "loses").passed is False
    assert overall(checks) is False


def test_targets_fail_on_t() -> None:
    # 30 % better on average but very noisy: t < 2
    res = _suite(20, {"regime-shift": 0.3, "informed-flow": 0.3, "calm": 0.0}, noise=40.0)
    checks = check_targets(summarize(res, BASE))
    c = _by(checks, "regime-shift", "PnL")
    assert c.passed is False, c.measured


def test_targets_negative_baseline() -> None:
    # static loses 10 a run; agents recover 3 (≥ 0.2·10) on regime-shift, 1 on informed-flow
    res = _suite(20, {"regime-shift": 0.3, "informed-flow": 0.1, "calm": 0.0}, static_mean=-10.0)
    s = summarize(res, BASE)
    checks = check_targets(s)
    p = s.pair("regime-shift", AG)
    assert p is not None and p.pnl.mean_baseline is not None and p.pnl.mean_baseline < 0
    assert _by(checks, "regime-shift", "PnL").passed is True
    assert _by(checks, "informed-flow", "PnL").passed is False


def test_targets_not_measurable() -> None:
    res = _suite(10, {"regime-shift": 0.5, "informed-flow": 0.5, "calm": 0.0})
    checks = check_targets(summarize(res, BASE))
    assert all(c.passed is None for c in checks)
    assert "fewer than 20" in checks[0].measured
    assert overall(checks) is None
    # a missing strategy or scenario is not measurable either
    res = _suite(
        20,
        {"regime-shift": 0.5, "informed-flow": 0.5, "calm": 0.0},
        scenarios=("regime-shift",),
        strategies=(BASE, AG),
    )
    checks = check_targets(summarize(res, BASE))
    assert _by(checks, "regime-shift", "PnL").passed is True
    assert _by(checks, "informed-flow", "PnL").passed is None
    assert "not in the suite" in _by(checks, "informed-flow", "PnL").measured
    assert _by(checks, "regime-shift", "naive").passed is None


def test_targets_other_baseline_needs_extra_pairs() -> None:
    res = _suite(20, {"regime-shift": 0.3, "informed-flow": 0.3, "calm": 0.0})
    plain = check_targets(summarize(res, "naive"))
    assert _by(plain, "regime-shift", "PnL").passed is None
    assert _by(plain, "calm", "naive").passed is True  # static vs naive: reversed pair
    extra = check_targets(summarize(res, "naive", extra_pairs=[(AG, BASE)]))
    assert _by(extra, "regime-shift", "PnL").passed is True


def test_targets_render() -> None:
    res = _suite(20, {"regime-shift": 0.3, "informed-flow": 0.1, "calm": 0.0})
    checks = check_targets(summarize(res, BASE))
    console = Console(record=True, width=220)
    console.print(targets_table(checks))
    text = console.export_text()
    assert "PASS" in text and "FAIL" in text
    md = targets_markdown(checks)
    assert md.count("\n") == 2 + len(checks)
    assert "| target | scenario | result |" in md
