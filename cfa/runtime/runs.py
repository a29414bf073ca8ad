"""Opening and closing a recorded run: the one way a session starts and ends.

``cfa run``, ``cfa eval`` and the tests all go through :func:`open_run` and :func:`close_run`,
so every run, whatever started it, has the same audit trail: a ``runs`` row with its
configuration (markets included, so replays need nothing else) and, at the end, its summary.

A run spread over several processes (``cfa run --executor ray``, :mod:`cfa.runtime.cluster`)
has one start and one end row, written by its driver; each of its sessions enters it with
:func:`join_run`, which writes neither, and appends its rows under the run's id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from cfa.audit.records import market_to_dict
from cfa.audit.store import AuditStore
from cfa.exchange.base import Exchange
from cfa.risk.policy import Policy
from cfa.runtime.session import MarketSummary, Session


async def open_run(
    exchange: Exchange,
    store: AuditStore,
    policy: Policy,
    config: Mapping[str, Any],
    tickers: Sequence[str] | None = None,
) -> Session:
    """Start ``exchange``, read its markets (``tickers``, or all it lists), record the run row.

    Returns the session, ready for :meth:`Session.attach_agents` and :meth:`Session.run`.
    """
    await exchange.start()
    markets = await exchange.get_markets(list(tickers) if tickers is not None else None)
    full = {**config, "markets": [market_to_dict(m) for m in markets]}
    run_id = store.start_run(full, ts_ms=round(exchange.clock.now() * 1000))
    return Session(exchange, markets, policy, store, run_id)


async def join_run(
    exchange: Exchange,
    store: AuditStore,
    policy: Policy,
    run_id: str,
    tickers: Sequence[str],
    *,
    worker: str,
    market_numbers: Mapping[str, int] | None = None,
    governance_since: int | None = None,
) -> Session:
    """Start ``exchange`` and return a session over ``tickers`` inside the existing run
    ``run_id`` (its start row already written by someone else): no ``runs`` row is written,
    now or at the end; the caller reports the session's summary to whoever ends the run.

    ``worker`` names the session among the run's sessions (heartbeat, governance result rows);
    ``market_numbers`` and ``governance_since`` as in :class:`Session`.
    """
    if not tickers:
        raise ValueError(f"join_run: worker {worker!r} of run {run_id} got no market")
    await exchange.start()
    markets = await exchange.get_markets(list(tickers))
    return Session(
        exchange,
        markets,
        policy,
        store,
        run_id,
        worker=worker,
        market_numbers=market_numbers,
        governance_since=governance_since,
    )


def session_summary(
    session: Session, rows: Sequence[MarketSummary], wall0: float
) -> dict[str, Any]:
    """The figures of one session that :func:`close_run` records (without ``extra``)."""
    return {
        "markets": [r.as_dict() for r in rows],
        "events": session.events,
        "wall_s": round(time.perf_counter() - wall0, 3),
        "leftover_orders": session.leftover_orders,
        "stopped_by_signal": session.stop.is_set(),
        "decisions": {} if session.agents is None else session.agents.decisions_by_verdict,
        **({} if session.agents is None else {"llm": session.agents.llm_summary()}),
    }


def close_run(
    session: Session,
    store: AuditStore,
    rows: Sequence[MarketSummary],
    wall0: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the run's summary (``extra`` merged in) and return it.

    ``wall0`` is the ``time.perf_counter()`` reading when the session started running. When
    agents ran, ``summary["llm"]`` holds their totals
    (:meth:`cfa.runtime.agents.AgentRuntime.llm_summary`): reasoner and model, ``lockstep`` and
    ``latency_s``, ``decisions``, ``calls``, ``tokens_in``, ``tokens_out``, ``cache_hits``,
    ``cache_misses``, ``cost_usd`` (dollars; None when no price is configured, i.e. unknown),
    the prices used (dollars per million tokens), ``cancelled`` and ``expired``.
    """
    summary = {**session_summary(session, rows, wall0), **(extra or {})}
    store.end_run(session.run_id, summary, ts_ms=round(session.exchange.clock.now() * 1000))
    return summary
