"""Quoting an event's markets together: the shared :class:`EventGroup`, the loops' cross term,
the event's risk (worst-case loss, the event breaker) and the agents' event context, on the
simulator's event scenarios through a real session and audit store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.agents.context import MAX_CONTEXT, build_context, portfolio_context
from cfa.audit import AuditStore
from cfa.core.events import EventKind, EventStructure
from cfa.core.multiasset import cross_inventory_risk, price_covariance
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import Policy, load_policy
from cfa.runtime.event_group import EventGroup
from cfa.runtime.session import Session

LADDER = EventStructure("EV", EventKind.LADDER, ("A", "B", "C"), strikes=(1.0, 2.0, 3.0))


def _policy(**quoting: object) -> Policy:
    pol = load_policy("default")
    return pol.model_copy(update={"quoting": pol.quoting.model_copy(update=quoting)})


def _group(aware: bool = True) -> EventGroup:
    g = EventGroup(LADDER, _policy(event_aware=aware))
    for i, mid in enumerate((0.7, 0.5, 0.3)):
        g.on_touch(i, 100.0, None, None, mid)
    return g


def test_a_long_strike_lowers_its_neighbours_reservation_prices() -> None:
    g = _group()
    assert g.cross_risk(1, 0.004) == 0.0  # nothing held elsewhere
    v = g.version
    g.on_inventory(0, 10.0)
    assert g.version == v + 1  # the siblings must re-quote
    assert g.cross_risk(1, 0.004) > 0.0 and g.cross_risk(2, 0.004) > 0.0
    assert g.cross_risk(0, 0.004) == 0.0  # its own inventory is the single-market term
    g.on_inventory(0, -10.0)
    assert g.cross_risk(1, 0.004) < 0.0


def test_per_market_quoting_has_no_cross_term() -> None:
    g = _group(aware=False)
    g.on_inventory(0, 10.0)
    assert g.cross_risk(1, 0.004) == 0.0
    assert g.cross_skew(1, 0.1, 0.004, 1.0, 150.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-50, 50, allow_nan=False), min_size=3, max_size=3),
    st.lists(st.floats(0.0005, 0.02), min_size=3, max_size=3),
)
def test_the_hot_path_term_is_the_model_pure_one(inv: list[float], sigmas: list[float]) -> None:
    g = _group()
    for j, q in enumerate(inv):
        g.on_inventory(j, q)
    for j, s in enumerate(sigmas):
        g.sigmas[j] = s
    corr = np.array(g.correlation())
    full = cross_inventory_risk(price_covariance(g.probabilities(), sigmas, corr), inv)
    for i in range(3):
        assert g.cross_risk(i, sigmas[i]) == pytest.approx(full[i], rel=1e-9, abs=1e-15)


async def _session(
    tmp_path: Path, scenario: str, policy: Policy, seconds: float, seed: int = 11
) -> tuple[Session, SimExchange, Path]:
    ex = SimExchange.from_scenarios(
        [scenario], seed=seed, start_ts=DEFAULT_START_TS, duration=seconds
    )
    await ex.start()
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / f"{scenario}.db"
    store = AuditStore.open(db)
    session = Session(ex, await ex.get_markets(), policy, store, store.start_run({}))
    await session.run()
    await ex.close()
    store.close()
    return session, ex, db


async def test_a_ladder_session_quotes_its_markets_as_one_event(tmp_path: Path) -> None:
    aware, _, db_aware = await _session(tmp_path / "a", "event-ladder", _policy(), 1200.0)
    (group,) = aware.event_groups.values()
    assert group.structure.kind is EventKind.LADDER and group.structure.n >= 4
    assert all(aware.loops[t].event is group for t in group.structure.tickers)
    assert group.cov.samples > 0 and any(group.inventory)
    _, _, db_per = await _session(
        tmp_path / "p", "event-ladder", _policy(event_aware=False), 1200.0
    )
    with sqlite3.connect(db_aware) as a, sqlite3.connect(db_per) as b:
        q = "select market, ts_ms, action, price from orders order by seq"
        orders_aware, orders_per = a.execute(q).fetchall(), b.execute(q).fetchall()
    assert orders_aware and orders_per
    assert orders_aware != orders_per, "the cross term changed no order"


async def test_the_event_breaker_and_the_worst_case_limit_bind(tmp_path: Path) -> None:
    pol = load_policy("default")
    pol = pol.model_copy(
        update={"portfolio": pol.portfolio.model_copy(update={"max_event_worst_loss": 3.0})}
    )
    session, _, db = await _session(tmp_path, "event-exclusive", pol, 900.0)
    (group,) = session.event_groups.values()
    ev = group.event_ticker
    worst = session.portfolio.event_worst_loss(ev)
    with sqlite3.connect(db) as c:
        scopes = c.execute(
            "select market, kind, code from risk_events where market like 'event:%'"
        ).fetchall()
        denials = c.execute(
            "select count(*) from orders where action = 'deny' and reason = 'event_worst_loss'"
        ).fetchone()[0]
    assert (f"event:{ev}", "trading_state", "REDUCE_ONLY") in scopes, scopes
    assert denials > 0 or worst < 3.0 * pol.portfolio.event_reduce_only_at


async def test_agents_see_the_event_and_governance_sees_events_as_units(tmp_path: Path) -> None:
    session, _, _ = await _session(tmp_path, "event-ladder", _policy(), 600.0)
    (group,) = session.event_groups.values()
    contexts = []
    for t in group.structure.tickers:
        loop = session.loops[t]
        ctx = build_context(loop, session.params.get(t), session.states, None, [], loop.now)
        assert ctx.event is not None and ctx.event.kind == "ladder"
        assert ctx.event.markets == group.structure.n
        assert {s.ticker for s in ctx.event.siblings} == set(group.structure.tickers) - {t}
        assert ctx.event.quoting == "event_aware"
        assert len(ctx.to_json()) <= MAX_CONTEXT + 90 * (len(ctx.event.siblings) + 1)
        contexts.append(ctx)
    gov = portfolio_context(contexts, [], [])
    (row,) = gov["events"]
    assert row["event"] == group.event_ticker and set(row["markets"]) == set(
        group.structure.tickers
    )
    json.dumps(gov)  # what the governance agent reads is plain JSON
