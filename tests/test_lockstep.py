"""Lockstep: the simulated clock waits for the agents, so LLM backtests reproduce.

The ``openai`` reasoner goes through the real openai SDK to ``tests/llm_server.py`` on
127.0.0.1, a deterministic endpoint (``policy_responder``) that answers after 50 ms of wall
time, while the simulator runs as fast as it can.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from llm_server import (  # llm_server_fixture registers the `llm_server` fixture
    FakeLLMServer,
    llm_server_fixture,  # noqa: F401
    policy_responder,
)
from llm_sim import (
    KEY,
    SimRun,
    openai_reasoner,
    policy_server_fixture,  # noqa: F401  (registers the module-wide `policy_server` fixture)
    sim_run,
)
from typer.testing import CliRunner

from cfa.agents.reasoners.heuristic import HeuristicReasoner
from cfa.cli import app
from cfa.runtime.agents import LLMTotals

LATENCY = 1.5
"""Simulated seconds charged to each decision in these tests."""

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def lockstep_runs(
    policy_server: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SimRun, SimRun, int]:
    """Two lockstep runs of one seed; and how many requests the first one made."""
    d = tmp_path_factory.mktemp("lockstep")

    def once(name: str) -> SimRun:
        reasoner = openai_reasoner(policy_server)
        return asyncio.run(sim_run(d / name, reasoner, lockstep=True, latency_s=LATENCY))

    before = policy_server.chat_requests
    a = once("a.db")
    made = policy_server.chat_requests - before
    return a, once("b.db"), made


def test_every_due_decision_is_answered_and_applied_after_the_latency(
    lockstep_runs: tuple[SimRun, SimRun, int],
) -> None:
    a, _, made = lockstep_runs
    assert len(a.due) >= 10, "the run schedules market and governance decisions"
    assert any(k == "*" for k, _ in a.due) and any(k != "*" for k, _ in a.due)
    # one decision row per due time, same market, context taken exactly then
    got = [("*" if d["agent"] == "governance" else d["market"], d["as_of"]) for d in a.decisions]
    assert sorted(got) == sorted(a.due)
    # no answer lost or late: no abstain, no error, nothing cancelled; only a decision due
    # within the latency of the run's end expires (its answer would land after the end)
    expired = [d for d in a.decisions if d.get("expired")]
    assert all(d["as_of"] + LATENCY > a.summary_end for d in expired)
    assert all(d["verdict"] != "abstain" for d in a.decisions if not d.get("expired"))
    assert all(r["error"] is None for d in a.decisions for r in d["responses"])
    assert a.llm["cancelled"] == 0 and a.llm["expired"] == len(expired) <= 2
    assert a.llm["calls"] == made == sum(len(d["responses"]) for d in a.decisions)
    # applied at the first event at or after as_of + latency (events are dense: < 1 s later)
    for d in a.decisions:
        if d.get("expired"):
            continue
        assert LATENCY <= d["ts"] - d["as_of"] < LATENCY + 1.0, d["decision_id"]
        assert math.isclose(d["context_age_s"], d["ts"] - d["as_of"], abs_tol=1e-5)
    assert {d["verdict"] for d in a.decisions} >= {"applied", "keep"}


def test_two_runs_of_one_seed_make_the_same_decisions_and_fills(
    lockstep_runs: tuple[SimRun, SimRun, int],
) -> None:
    a, b, _ = lockstep_runs
    assert a.run_id != b.run_id
    assert a.trace() == b.trace()
    assert a.fills == b.fills and a.fills, "the runs traded"
    changes = [(c["ts_ms"], c["param"], c["old"], c["new"], c["source"]) for c in a.param_changes]
    assert changes == [
        (c["ts_ms"], c["param"], c["old"], c["new"], c["source"]) for c in b.param_changes
    ]


def test_latency_is_charged_in_simulated_time(
    lockstep_runs: tuple[SimRun, SimRun, int],
) -> None:
    a, _, _ = lockstep_runs
    agent_changes = [c for c in a.param_changes if c["source"].startswith("agent:market")]
    assert agent_changes
    first = agent_changes[0]
    applied = [d for d in a.decisions if d["verdict"] == "applied" and d["agent"] == "market"]
    decision = applied[0]
    changed_at = first["ts_ms"] / 1000
    assert changed_at >= decision["as_of"] + LATENCY - 0.001
    assert changed_at < decision["as_of"] + LATENCY + 1.0
    assert first["ts_ms"] == round(decision["ts"] * 1000)
    # and the parameter before it was in force until then: the change is the agent's first
    assert first["old"] == decision["params_before"]["gamma"]


async def test_background_at_full_speed_answers_late_or_never(
    policy_server: FakeLLMServer,
    lockstep_runs: tuple[SimRun, SimRun, int],
    tmp_path: Path,
) -> None:
    a, _, _ = lockstep_runs
    bg = await sim_run(tmp_path / "bg.db", openai_reasoner(policy_server), lockstep=False)
    assert bg.llm["lockstep"] is False
    answered = [d for d in bg.decisions if d["verdict"] != "abstain"]
    # fewer decisions got made than lockstep schedules (one in flight at a time, and the
    # simulated clock runs on while it is out); one still out at the end is lost
    assert len(answered) < len(a.decisions)
    assert len(answered) + bg.llm["cancelled"] >= len(bg.due)
    # each answer landed long after its context, in simulated time: 50 ms of wall time is
    # tens of simulated seconds at full speed
    lags = [d["ts"] - d["as_of"] for d in answered]
    assert lags and min(lags) > 2 * LATENCY, lags


async def test_lockstep_without_latency_is_the_inline_run(tmp_path: Path) -> None:
    inline = await sim_run(tmp_path / "i.db", HeuristicReasoner(), lockstep=False, seconds=240)
    locked = await sim_run(tmp_path / "l.db", HeuristicReasoner(), lockstep=True, seconds=240)
    assert len(locked.decisions) >= 4
    assert inline.trace() == locked.trace() and inline.fills == locked.fills
    assert all(d["ts"] == d["as_of"] for d in locked.decisions)


async def test_a_decision_still_waiting_at_the_end_expires(tmp_path: Path) -> None:
    run = await sim_run(
        tmp_path / "e.db", HeuristicReasoner(), lockstep=True, latency_s=90.0, seconds=240.0
    )
    expired = [d for d in run.decisions if d.get("expired")]
    assert expired and run.llm["expired"] == len(expired)
    assert all(d["verdict"] == "abstain" for d in expired)
    assert all(not d["responses"] and d["ts"] < d["as_of"] + 90.0 for d in expired)
    assert len(run.decisions) == len(run.due)


def test_totals_count_calls_hits_tokens_and_cost() -> None:
    t = LLMTotals()
    usage = {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}
    t.add([{"usage": usage, "cache": "miss"}, {"usage": None, "cache": "hit"}], (2.0, 8.0))
    t.add([{"usage": usage}], (2.0, 8.0))
    d = t.as_dict()
    assert (d["decisions"], d["calls"], d["cache_hits"], d["cache_misses"]) == (2, 3, 1, 1)
    assert (d["tokens_in"], d["tokens_out"]) == (2000, 100)
    assert d["cost_usd"] == pytest.approx((2000 * 2.0 + 100 * 8.0) / 1e6)
    unknown = LLMTotals()
    unknown.add([{"usage": usage}], (0.0, 0.0))
    assert unknown.as_dict()["cost_usd"] is None and unknown.as_dict()["tokens_in"] == 1000


runner = CliRunner()


def test_cli_lockstep_latency_and_cache(
    llm_server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm_server.respond_with(policy_responder(), delay_s=0.02)
    monkeypatch.setenv("CFA_LLM_API_KEY", KEY)
    monkeypatch.setenv("CFA_LLM_PRICE_INPUT", "3")
    monkeypatch.setenv("CFA_LLM_PRICE_OUTPUT", "15")
    base = ["run", "-n", "1", "-s", "calm", "--duration", "4m", "--seed", "3", "--quiet"]
    base += ["--reasoner", "openai", "--base-url", llm_server.base_url, "--model", "m"]
    cache = tmp_path / "cache.db"
    opts = ["--lockstep", "--llm-latency", "2s", "--llm-cache", str(cache)]
    first = runner.invoke(app, [*base, *opts, "--db", str(tmp_path / "a.db")])
    assert first.exit_code == 0, first.output
    made = llm_server.chat_requests
    assert made > 0
    cost = made * (120 * 3 + 8 * 15) / 1e6
    line = f"LLM (openai, lockstep, latency 2s): {made} calls (0 from the cache) · tokens "
    line += f"{120 * made:,} in / {8 * made:,} out · cost ${cost:.4f}"
    assert line in " ".join(first.output.split())
    second = runner.invoke(app, [*base, *opts, "--db", str(tmp_path / "b.db")])
    assert second.exit_code == 0, second.output
    assert llm_server.chat_requests == made, "every answer came from the cache"
    text = " ".join(second.output.split())
    assert f"{made} calls ({made} from the cache) · tokens 0 in / 0 out · cost $0.0000" in text
    bad = runner.invoke(app, [*base, "--llm-latency", "2s", "--db", str(tmp_path / "c.db")])
    assert bad.exit_code != 0 and "--llm-latency needs --lockstep" in bad.output


def test_cli_refuses_lockstep_on_a_live_exchange() -> None:
    r = runner.invoke(app, ["run", "--exchange", "kalshi", "--market", "X", "--lockstep"])
    assert r.exit_code != 0 and "simulator only" in r.output
