"""Suites, strategies and the `cfa eval` command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cfa.cli import app
from cfa.core.grid import PriceGrid
from cfa.core.quoting import QuoteMarket, QuoteParams, quote
from cfa.core.types import PRICE_SCALE, QTY_SCALE
from cfa.eval.models import Job, RunResult
from cfa.eval.runner import run_job
from cfa.eval.strategies import parse_strategy, strategy_policy
from cfa.eval.suite import SuiteError, jobs, load_suite, parse_seeds
from cfa.risk.policy import load_policy

runner = CliRunner()


def test_packaged_suites_load_and_expand(tmp_path: Path) -> None:
    s = load_suite("default")
    assert s.baseline == "static-as" and len(s.seeds) >= 20
    assert {"naive", "static-as", "agents:heuristic"} <= set(s.strategies)
    smoke = load_suite("smoke")
    js = jobs(smoke, tmp_path)
    assert len(js) == len(smoke.scenarios) * len(smoke.strategies) * len(smoke.seeds)
    assert len({j.key for j in js}) == len(js) and len({j.db for j in js}) == len(js)
    assert all(j.db.startswith(str(tmp_path / "runs")) for j in js)


def test_seed_ranges() -> None:
    assert parse_seeds("1-3") == [1, 2, 3]
    assert parse_seeds("5,1-2") == [1, 2, 5]
    assert parse_seeds([7, "9-10"]) == [7, 9, 10]
    for bad in ("3-1", "x", "-1", ""):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_bad_suites_name_the_problem(tmp_path: Path) -> None:
    cases = {
        "name: x\nseeds: 1-2\nscenarios: [calm]\nstrategies: [naive]\nbogus: 1\n": "bogus",
        "name: x\nseeds: 1-2\nscenarios: [nowhere]\nstrategies: [naive]\n": "nowhere",
        "name: x\nseeds: 1-2\nscenarios: [calm]\nstrategies: [magic]\n": "magic",
        "name: x\nseeds: 2-1\nscenarios: [calm]\nstrategies: [naive]\n": "seeds",
        "name: x\nseeds: 1\nscenarios: [calm]\nstrategies: [naive]\nduration: soon\n": "duration",
        "name: x\nseeds: 1\nscenarios: [calm]\nstrategies: [naive]\n": "baseline",
        "- a list\n": "mapping",
        "name: [unclosed\n": "YAML",
    }
    for text, needle in cases.items():
        f = tmp_path / "s.yaml"
        f.write_text(text)
        with pytest.raises(SuiteError, match=needle):
            load_suite(f)
    with pytest.raises(SuiteError, match=r"cannot read"):
        load_suite(tmp_path / "missing.yaml")
    with pytest.raises(SuiteError, match="nothing shipped"):
        load_suite("no-such-suite")


def test_strategies_parse_and_set_the_model() -> None:
    pol = load_policy("default")
    assert strategy_policy(pol, parse_strategy("naive"), 0.02).quoting.model == "naive"
    assert strategy_policy(pol, parse_strategy("naive"), 0.02).quoting.half_spread == 0.02
    assert strategy_policy(pol, parse_strategy("static-glft"), 0.01).quoting.model == "glft"
    assert parse_strategy("agents:heuristic").reasoner == "heuristic"
    assert parse_strategy("agents:scripted:/x/y.jsonl").reasoner == "scripted:/x/y.jsonl"
    with pytest.raises(ValueError, match="unknown strategy"):
        parse_strategy("agents:")


@settings(max_examples=200, deadline=None)
@given(
    mid=st.floats(0.05, 0.95),
    half=st.floats(0.001, 0.04),
    inventory=st.integers(-40, 40),
    grid=st.sampled_from(["linear_cent", "deci_cent", "tapered_deci_cent"]),
)
def test_naive_quotes_are_mid_plus_minus_the_half_spread(
    mid: float, half: float, inventory: int, grid: str
) -> None:
    """The naive baseline's definition: ``mid ± half_spread`` rounded outward onto the grid,
    whatever the inventory (no skew), γ or σ, and no fee floor."""
    g = PriceGrid.from_structure(grid)
    params = QuoteParams(gamma=7.0, sigma=0.02, k=30.0, model="naive", half_spread=half)
    market = QuoteMarket(g, maker_rate=0.0175)
    q = quote(
        mid=mid,
        inventory=inventory * QTY_SCALE,
        time_to_close=3600.0,
        params=params,
        market=market,
    )
    assert q.bid == g.floor(mid - half) or q.bid is None
    assert q.ask == g.ceil(mid + half) or q.ask is None
    flat = quote(mid=mid, inventory=0, time_to_close=3600.0, params=params, market=market)
    assert (q.bid is None or q.bid == flat.bid) and (q.ask is None or q.ask == flat.ask)
    if q.bid is not None:
        assert q.bid / PRICE_SCALE <= mid - half + 1e-9


def test_same_job_same_metrics(tmp_path: Path) -> None:
    job = Job(scenario="calm", seed=3, strategy="agents:heuristic", duration_s=300, db="")
    a = run_job(job.model_copy(update={"db": str(tmp_path / "a.db")}))
    b = run_job(job.model_copy(update={"db": str(tmp_path / "b.db")}))
    assert a.error is None and b.error is None and a.metrics is not None
    assert a.metrics == b.metrics
    assert a.metrics.fills > 0 and a.metrics.decisions


def test_a_failing_job_is_a_result(tmp_path: Path) -> None:
    bad = Job(
        scenario="calm",
        seed=1,
        strategy="static-as",
        duration_s=60,
        db=str(tmp_path / "x.db"),
        policy=str(tmp_path / "missing.yaml"),
    )
    r = run_job(bad)
    assert r.metrics is None and r.error is not None and "missing.yaml" in r.error


def test_cfa_eval_runs_a_suite_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["eval", "--suite", "smoke", "--out", str(out), "--workers", "1", "--seeds", "900"]
    )
    assert r.exit_code == 0, r.output
    assert "static-as" in r.output and "naive" in r.output
    lines = (out / "results.jsonl").read_text().splitlines()
    results = [RunResult.model_validate_json(line) for line in lines]
    assert len(results) == 4 and all(x.error is None for x in results)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline"] == "static-as"
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") or "<html" in html[:200]
    # every eval run is an ordinary run: its audit store verifies and can be traced
    db = results[0].job.db
    v = runner.invoke(app, ["audit", "verify", "--db", db])
    assert v.exit_code == 0, v.output
    # --resume skips what is done; --json prints one document
    again = runner.invoke(
        app,
        ["eval", "--suite", "smoke", "--out", str(out), "--seeds", "900", "--resume", "--json"],
    )
    assert again.exit_code == 0, again.output
    doc = json.loads(again.output.strip().splitlines()[-1])
    assert doc["summary"]["n_results"] == 4


def test_cfa_eval_refuses_bad_options(tmp_path: Path) -> None:
    for args, needle in (
        (["--suite", "nope"], "nothing shipped"),
        (["--suite", "smoke", "--strategy", "magic"], "magic"),
        (["--suite", "smoke", "--strategy", "naive"], "baseline"),
        (["--suite", "smoke", "--executor", "slurm"], "slurm"),
        (["--suite", "smoke", "--seeds", "x"], "seeds"),
    ):
        r = runner.invoke(app, ["eval", *args, "--out", str(tmp_path / "o")])
        assert r.exit_code != 0 and needle in r.output, (args, r.output)
