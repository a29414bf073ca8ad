"""One evaluation job: an ordinary recorded simulator run, measured.

:func:`run_job` is a top-level, synchronous, picklable function so that process pools and Ray
can run it. It never raises for a failed run: the :class:`~cfa.eval.models.RunResult` carries
the error instead, and the suite goes on. Each run writes its own audit store (``job.db``) with
the usual run row, so ``cfa traces``, ``cfa replay`` and ``cfa report`` work on any eval run;
the run's summary row carries the job and its metrics.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from cfa.agents.reasoners import make_reasoner
from cfa.agents.reasoners.base import Reasoner
from cfa.agents.reasoners.cache import CachedReasoner, SqliteLLMCache
from cfa.audit import AuditStore
from cfa.core.events import EventKind, EventStructure
from cfa.eval.metrics import MetricsProbe, Trace, compute_event_metrics, compute_metrics
from cfa.eval.models import Job, RunMetrics, RunResult
from cfa.eval.strategies import parse_strategy, strategy_policy
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import load_policy
from cfa.runtime.runs import close_run, open_run
from cfa.runtime.session import Session


def run_job(job: Job) -> RunResult:
    """Run ``job`` to the end of its duration and return its metrics (or its error)."""
    t0 = time.perf_counter()
    try:
        return asyncio.run(_run(job, t0))
    except Exception as exc:  # a failed run is a result, never the end of the suite
        return RunResult(
            job=job,
            run_id=None,
            metrics=None,
            error=f"{type(exc).__name__}: {exc}"[:500],
            wall_s=round(time.perf_counter() - t0, 3),
        )


def _metrics(session: Session, traces: dict[str, Trace]) -> RunMetrics:
    """One market: its metrics; an event scenario's markets: the event's, taken together."""
    if len(traces) == 1:
        (trace,) = traces.values()
        return compute_metrics(trace)
    groups = list(session.event_groups.values())
    if len(groups) == 1 and set(groups[0].structure.tickers) == set(traces):
        structure = groups[0].structure
    else:  # markets that are not one event: each its own risk
        tickers = tuple(traces)
        structure = EventStructure("+".join(tickers), EventKind.INDEPENDENT, tickers)
    return compute_event_metrics(traces, structure)


def _agent_options(job: Job) -> dict[str, Any]:
    if not job.llm:
        return {}
    return {"lockstep": True, "latency_s": float(job.llm.get("latency_s") or 0.0)}


async def _run(job: Job, t0: float) -> RunResult:
    strategy = parse_strategy(job.strategy)
    policy = strategy_policy(load_policy(job.policy), strategy, job.naive_half_spread)
    reasoner: Reasoner | None = None
    if strategy.reasoner is not None:
        opts = {k: v for k, v in job.llm.items() if k in ("model", "base_url") and v}
        reasoner = make_reasoner(strategy.reasoner, **opts)
        cache = job.llm.get("cache")
        if isinstance(cache, str) and cache:
            reasoner = CachedReasoner(reasoner, SqliteLLMCache(cache))
    exchange = SimExchange.from_scenarios(
        [job.scenario], seed=job.seed, start_ts=DEFAULT_START_TS, duration=job.duration_s
    )
    db = Path(job.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    store = AuditStore.open(db)
    try:
        config = {
            "exchange": "sim",
            "scenarios": [job.scenario],
            "seed": job.seed,
            "duration_s": job.duration_s,
            "speed": "max",
            "policy": policy.model_dump(mode="json"),
            "reasoner": None
            if reasoner is None
            else {"name": reasoner.name, "model": reasoner.model},
            "agent_interval_s": job.agent_interval_s,
            "eval": {"job": job.model_dump(mode="json")},
        }
        session = await open_run(exchange, store, policy, config)
        probe = MetricsProbe(session)
        session.probe = probe
        if reasoner is not None:
            session.attach_agents(reasoner, interval_s=job.agent_interval_s, **_agent_options(job))
        wall0 = time.perf_counter()
        try:
            rows = await session.run(govern=False)
        finally:
            await exchange.close()
        traces = probe.finish(exchange.clock.now())
        update: dict[str, Any] = {}
        if session.agents is not None:
            totals = session.agents.totals
            update = {
                "decisions": dict(session.agents.decisions_by_verdict),
                "tokens_in": totals.tokens_in,
                "tokens_out": totals.tokens_out,
                "llm_cost": round(totals.cost_usd, 6),
            }
        metrics = _metrics(session, traces).model_copy(update=update)
        close_run(session, store, rows, wall0, {"eval": {"metrics": metrics.model_dump()}})
        return RunResult(
            job=job,
            run_id=session.run_id,
            metrics=metrics,
            wall_s=round(time.perf_counter() - t0, 3),
        )
    finally:
        store.close()
