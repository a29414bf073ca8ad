"""The slow path against a running session: pending approvals, background reasoners, races.

Each test runs a real session on the embedded simulator with a real audit store file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from cfa.agents.reasoners.base import RawCall, ReasonRequest, ReasonResponse
from cfa.agents.reasoners.heuristic import HeuristicReasoner
from cfa.agents.reasoners.scripted import ScriptedReasoner
from cfa.audit import AuditStore
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import load_policy
from cfa.runtime.session import Session


async def _run(
    db: Path,
    reasoner: Any,
    seconds: float,
    speed: float | None = None,
    governance: Any | None = None,
    **agents: Any,
) -> Session:
    ex = SimExchange.from_scenarios(
        ["calm"], seed=11, start_ts=DEFAULT_START_TS, duration=seconds, speed=speed
    )
    await ex.start()
    markets = await ex.get_markets()
    store = AuditStore.open(db)
    run_id = store.start_run({"test": "scheduling"}, ts_ms=round(DEFAULT_START_TS * 1000))
    session = Session(ex, markets, load_policy("default"), store, run_id)
    session.attach_agents(reasoner, governance_reasoner=governance, **agents)
    await session.run(govern=False)
    await ex.close()
    store.end_run(run_id, {})
    store.close()
    return session


def _q(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


async def test_a_pending_request_wakes_governance_once_not_on_every_event(tmp_path: Path) -> None:
    # Regression: a pending approval re-ran governance on every event (954 runs in 13.8 s).
    script = tmp_path / "s.jsonl"
    script.write_text(
        json.dumps(
            {"calls": [{"name": "set_gamma", "arguments": {"value": 0.14, "rationale": "up"}}]}
        )
        + "\n"
    )
    db = tmp_path / "a.db"
    await _run(db, ScriptedReasoner(script), 900.0, governance_interval_s=300.0)
    requested = _q(db, "select count(*) from governance_actions where action='approval_requested'")
    assert requested[0][0] == 1
    gov = _q(db, "select count(*) from decisions where agent = 'governance'")[0][0]
    assert 1 <= gov <= 4, gov  # woken once by the request, then every 300 s
    expired = _q(
        db,
        "select json_extract(payload, '$.status') from governance_actions"
        " where action = 'approval_expired'",
    )
    assert expired == [("expired",)]  # its ttl (300 s) ran out, audited


class SlowSigmaReasoner:
    """A background reasoner that answers after ``delay`` wall seconds with a σ change that
    needs approval, alternating up and down, from the σ in the context it was given."""

    name = "slow"
    model: str | None = "slow-1"
    background = True

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.n = 0

    async def reason(self, request: ReasonRequest) -> ReasonResponse:
        await asyncio.sleep(self.delay)
        self.n += 1
        sigma = float(request.context["sigma"]["value"])
        value = round(sigma * (1.4 if self.n % 2 else 0.65), 6)
        args = json.dumps({"value": value, "rationale": f"answer {self.n}"})
        return ReasonResponse((RawCall(f"c{self.n}", "set_sigma", args),), raw=args)

    async def aclose(self) -> None:
        return None


async def test_racing_background_decisions_cannot_misapply_an_approval(tmp_path: Path) -> None:
    # Regression: with a background reasoner the next market decision started on the same
    # thread before governance answered; governance approved sigma:1 three times while sigma:2
    # changed. Approvals now name their request and the value it moves from.
    db = tmp_path / "race.db"
    session = await _run(
        db,
        SlowSigmaReasoner(0.03),
        1200.0,
        speed=600.0,
        governance=HeuristicReasoner(),
        interval_s=20.0,
        governance_interval_s=30.0,
    )
    assert session.agents is not None and not session.agents.inline
    decided = [
        json.loads(p)
        for (p,) in _q(
            db, "select payload from governance_actions where action = 'approval_decided'"
        )
    ]
    approved = [d for d in decided if d["status"] == "approved"]
    assert approved, decided
    changes = _q(
        db,
        "select old, new, reason from param_changes where param = 'sigma'"
        " and reason like '%approved by%' order by seq",
    )
    assert len(changes) == len(approved)
    for d, (old, new, _) in zip(approved, changes, strict=True):
        assert (old, new) == (d["base"], d["value"]), (d, old, new)
    pending = _q(db, "select count(*) from governance_actions where action = 'approval_requested'")[
        0
    ][0]
    resolved = _q(
        db,
        "select count(*) from governance_actions where action in"
        " ('approval_decided', 'approval_expired', 'approval_superseded')",
    )[0][0]
    assert resolved == pending  # nothing is left pending without a record
