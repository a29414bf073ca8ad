"""Short simulator runs with the ``openai`` reasoner against ``tests/llm_server.py``.

Shared by the lockstep and LLM-cache tests: one recorded run (``open_run``/``close_run``, so the
run row carries the config a counterfactual replay needs and the summary's ``"llm"`` totals),
plus what the runtime scheduled (the due times), read back from the audit store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from llm_server import FakeLLMServer, policy_responder

from cfa.agents.reasoners.base import Reasoner
from cfa.agents.reasoners.openai_backend import OpenAIReasoner
from cfa.agents.settings import LLMSettings
from cfa.audit import AuditStore
from cfa.audit.queries import AuditReader
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import load_policy
from cfa.runtime.runs import close_run, open_run

KEY = "sk-test-LOCKSTEP-SECRET-9d3f1b77"
SCENARIOS = ["regime-shift"]
SECONDS = 330.0
FILL_BURST = 60
"""Fewer fill-burst triggers than the default 10: fewer calls, faster tests."""
INTERVAL_S = 30.0
GOVERNANCE_INTERVAL_S = 100.0
SEED = 11


def llm_settings(server: FakeLLMServer, **kw: Any) -> LLMSettings:
    base: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": KEY,
        "model": "test-model",
        "timeout_s": 10.0,
        "max_retries": 0,
    }
    return LLMSettings(**(base | kw))


@dataclass
class SimRun:
    """What one run did, as the audit store recorded it."""

    db: Path
    run_id: str
    summary: dict[str, Any]
    due: list[tuple[str, float]]
    """(market or "*", simulated time) of every decision the runtime scheduled."""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    """Decision payloads (phase "decision"), in order."""
    param_changes: list[dict[str, Any]] = field(default_factory=list)
    fills: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def summary_end(self) -> float:
        """When the simulated run ended (epoch seconds)."""
        return DEFAULT_START_TS + SECONDS

    @property
    def llm(self) -> dict[str, Any]:
        out: dict[str, Any] = self.summary["llm"]
        return out

    def trace(self) -> list[tuple[Any, ...]]:
        """Each decision as (agent, market, as_of, ts, verdict, calls of every attempt)."""
        return [
            (
                d["agent"],
                d["market"],
                d["as_of"],
                d["ts"],
                d["verdict"],
                [(c["name"], c["arguments"]) for r in d["responses"] for c in r["calls"]],
            )
            for d in self.decisions
        ]


async def sim_run(
    db: Path,
    reasoner: Reasoner,
    *,
    lockstep: bool,
    latency_s: float = 0.0,
    seconds: float = SECONDS,
    seed: int = SEED,
    scenarios: list[str] | None = None,
    **agent_options: Any,
) -> SimRun:
    """One run of ``scenarios`` at full speed with ``reasoner``; returns what it recorded."""
    names = scenarios or SCENARIOS
    ex = SimExchange.from_scenarios(names, seed=seed, start_ts=DEFAULT_START_TS, duration=seconds)
    policy = load_policy("default")
    store = AuditStore.open(db)
    try:
        config = {
            "exchange": "sim",
            "scenarios": names,
            "seed": seed,
            "duration_s": seconds,
            "policy": policy.model_dump(mode="json"),
            "agent_interval_s": INTERVAL_S,
            "governance_interval_s": GOVERNANCE_INTERVAL_S,
            "agent_options": {"fill_burst": FILL_BURST},
            "lockstep": lockstep,
            "llm_latency_s": latency_s,
        }
        session = await open_run(ex, store, policy, config)
        options = {
            "interval_s": INTERVAL_S,
            "governance_interval_s": GOVERNANCE_INTERVAL_S,
            "lockstep": lockstep,
            "latency_s": latency_s,
            "fill_burst": FILL_BURST,
        }
        rt = session.attach_agents(reasoner, **(options | agent_options))
        due: list[tuple[str, float]] = []
        market, governance = rt._schedule_market, rt._schedule_governance

        def spy_market(loop: Any, now: float) -> str:
            due.append((loop.ticker, now))
            return market(loop, now)

        def spy_governance(now: float) -> str:
            due.append(("*", now))
            return governance(now)

        rt._schedule_market = spy_market  # type: ignore[method-assign]
        rt._schedule_governance = spy_governance  # type: ignore[method-assign]
        wall0 = time.perf_counter()
        try:
            rows = await session.run(govern=False)
        finally:
            await ex.close()
        summary = close_run(session, store, rows, wall0)
    finally:
        store.close()
    out = SimRun(db, session.run_id, summary, due)
    with AuditReader.open(db) as reader:
        for row in reader.rows("decisions", run_id=session.run_id):
            if row["payload"].get("phase") == "decision":
                out.decisions.append(row["payload"])
        out.param_changes = list(reader.rows("param_changes", run_id=session.run_id))
        out.fills = [
            (r["market"], r["ts_ms"], r["side"], r["price"], r["count"], r["fee"])
            for r in reader.rows("fills", run_id=session.run_id)
        ]
    return out


def openai_reasoner(server: FakeLLMServer, **kw: Any) -> OpenAIReasoner:
    return OpenAIReasoner(llm_settings(server, **kw))


@pytest.fixture(name="policy_server", scope="module")
def policy_server_fixture() -> Iterator[FakeLLMServer]:
    """A module-wide deterministic endpoint (``policy_responder``) answering after 50 ms."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            mp.delenv(var, raising=False)
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        server = FakeLLMServer().start()
        server.respond_with(policy_responder(), delay_s=0.05)
        try:
            yield server
        finally:
            server.stop()
