"""Helpers for the eval tests: hand-built metrics and results, and job functions that pool and
Ray workers can import by module path (``tests/`` on ``sys.path``; Ray gets it in PYTHONPATH).
"""

from __future__ import annotations

from cfa.eval.models import Job, Markout, RunMetrics, RunResult


def make_metrics(
    pnl: float,
    *,
    sharpe: float | None = 0.1,
    fills: int = 10,
    markout_60: float | None = 0.001,
    equity: list[float] | None = None,
    fees: float = 0.5,
    spread_pnl: float | None = None,
) -> RunMetrics:
    """Metrics with ``marked_pnl`` ``pnl`` (dollars) and plausible, fixed other fields."""
    spread = pnl + 1.0 if spread_pnl is None else spread_pnl
    return RunMetrics(
        marked_pnl=pnl,
        realized_pnl=pnl,
        spread_pnl=spread,
        inventory_pnl=pnl - spread + fees,
        settlement_pnl=0.0,
        fees=fees,
        sharpe=sharpe,
        max_drawdown=1.0,
        max_abs_inventory=5.0,
        final_inventory=0.0,
        fills=fills,
        contracts=float(fills),
        offered_contracts=100.0,
        fill_ratio=fills / 100,
        markouts=[Markout(horizon_s=60.0, value=markout_60, n=fills if markout_60 else 0)],
        time_quoted_both=0.9,
        time_quoted_any=0.95,
        time_halted=0.0,
        time_reduce_only=0.0,
        our_spread=0.02,
        background_spread=0.03,
        inside_share=0.5,
        events=1000,
        equity=[pnl / 2, pnl] if equity is None else equity,
    )


def make_result(
    scenario: str, strategy: str, seed: int, pnl: float | None, **kw: object
) -> RunResult:
    """A result of (scenario, strategy, seed); ``pnl`` None makes it an errored run."""
    job = Job(scenario=scenario, seed=seed, strategy=strategy, duration_s=600, db="unused.db")
    if pnl is None:
        return RunResult(job=job, run_id=None, metrics=None, error="RuntimeError: it broke")
    return RunResult(job=job, run_id=f"run-{seed}", metrics=make_metrics(pnl, **kw))  # type: ignore[arg-type]


def fake_job(job: Job) -> RunResult:
    """A deterministic stand-in for ``run_job``: PnL from the seed; seed 2 raises."""
    if job.seed == 2:
        raise ValueError(f"boom on {job.key}")
    return RunResult(job=job, run_id=f"fake-{job.seed}", metrics=make_metrics(job.seed * 1.5))
