"""A short recorded simulator run with heuristic agents, shared by the CLI-over-a-DB tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from cfa.agents.reasoners.heuristic import HeuristicReasoner
from cfa.audit import AuditStore
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import load_policy
from cfa.runtime.session import Session


async def record_sim_run(
    db: Path, scenarios: list[str], seconds: float, label: str, **agents: Any
) -> str:
    """Run ``scenarios`` for ``seconds`` (seed 7) into audit store ``db``; return the run id."""
    ex = SimExchange.from_scenarios(scenarios, seed=7, start_ts=DEFAULT_START_TS, duration=seconds)
    await ex.start()
    markets = await ex.get_markets()
    store = AuditStore.open(db)
    run_id = store.start_run({"test": label}, ts_ms=round(DEFAULT_START_TS * 1000))
    session = Session(ex, markets, load_policy("default"), store, run_id)
    session.attach_agents(HeuristicReasoner(), interval_s=60.0, **agents)
    rows = await session.run()
    await ex.close()
    store.end_run(run_id, {"markets": [r.as_dict() for r in rows]})
    store.close()
    return run_id


async def trade_log(
    venue: Any, db: Path
) -> tuple[int, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Run a session (default policy, no agents) over the started exchange ``venue`` into audit
    store ``db``; return the events it consumed, its order actions (market, ts_ms, action,
    side, price, count, reason) and its fills (market, ts_ms, side, price, count), in order."""
    store = AuditStore.open(db)
    session = Session(
        venue, await venue.get_markets(), load_policy("default"), store, store.start_run({})
    )
    await session.run()
    store.close()
    with sqlite3.connect(db) as c:
        orders = c.execute(
            "select market, ts_ms, action, side, price, count, reason from orders order by seq"
        ).fetchall()
        fills = c.execute(
            "select market, ts_ms, side, price, count from fills order by seq"
        ).fetchall()
    return session.events, orders, fills
