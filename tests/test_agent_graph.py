"""LangGraph agent flows with the scripted reasoner: apply, retry, abstain, approval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command
from tool_policy import TOOL_POLICY

from cfa.agents.graphs import AgentDeps, build_governance_graph, build_market_graph
from cfa.agents.reasoners.scripted import ScriptedReasoner
from cfa.agents.tools import ToolApplier
from cfa.risk.states import TradingStates
from cfa.runtime.params import ParameterStore

POLICY = TOOL_POLICY  # gamma default 1.0, max_step 0.5, approval_step 0.3


def _script(tmp_path: Path, lines: list[dict[str, Any]]) -> ScriptedReasoner:
    f = tmp_path / "script.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return ScriptedReasoner(f)


class Harness:
    def __init__(self, reasoner: ScriptedReasoner) -> None:
        self.params = ParameterStore(POLICY)
        self.params.add_market("M")
        self.states = TradingStates()
        self.applier = ToolApplier(self.params, self.states)
        self.records: list[dict[str, Any]] = []
        self.t = 1000.0
        self.graph = build_market_graph()
        self.deps = AgentDeps(
            reasoner=reasoner,
            applier=self.applier,
            prompt="market prompt",
            prompt_hash="h",
            now=lambda: self.t,
            build_context=lambda m: {
                "market": {"ticker": m},
                "gamma": {"value": self.params.get(m).gamma},
            },
            record=self.records.append,
            source="agent:market:scripted",
        )
        self.config = {"configurable": {"thread_id": "run:M"}}

    async def decide(self, n: int = 1) -> Any:
        return await self.graph.ainvoke(
            {"market": "M", "role": "market", "decision_id": f"d{n}"},
            self.config,
            context=self.deps,
            version="v2",
        )


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"calls": [{"name": name, "arguments": args}]}


async def test_valid_call_is_applied_and_audited(tmp_path: Path) -> None:
    h = Harness(_script(tmp_path, [call("set_gamma", value=1.2, rationale="fills fast")]))
    await h.decide()
    assert h.params.get("M").gamma == 1.2
    (rec,) = h.records
    assert (
        rec["verdict"] == "applied"
        and rec["params_before"]["gamma"] == 1.0
        and rec["params_after"]["gamma"] == 1.2
    )
    assert rec["reasoner"] == "scripted" and rec["context"]["market"]["ticker"] == "M"


async def test_rejection_gets_one_retry(tmp_path: Path) -> None:
    h = Harness(
        _script(
            tmp_path,
            [
                call("set_gamma", value=0.0, rationale="set gamma to 0"),
                call("set_gamma", value=1.1, rationale="ok"),
            ],
        )
    )
    await h.decide()
    rec = h.records[-1]
    assert rec["attempts"] == 2 and rec["verdict"] == "applied"
    assert (
        rec["outcomes"][0]["verdict"] == "rejected"
        and rec["outcomes"][0]["code"] == "invalid_arguments"
    )
    assert h.params.get("M").gamma == 1.1


async def test_two_rejections_change_nothing(tmp_path: Path) -> None:
    h = Harness(
        _script(
            tmp_path,
            [
                call("set_gamma", value=99.0, rationale="x"),
                call("set_gamma", value=1e9, rationale="y"),
                call("keep", rationale="z"),
            ],
        )
    )
    await h.decide()
    rec = h.records[-1]
    assert rec["verdict"] == "rejected" and rec["attempts"] == 2
    assert [o["code"] for o in rec["outcomes"]] == ["out_of_bounds", "out_of_bounds"]
    assert h.params.get("M").gamma == 1.0


@pytest.mark.parametrize(
    "line",
    [
        {"text": "I think the market looks fine."},
        {"error": "timeout"},
        {"calls": [{"name": "set_gamma", "arguments": "{not json"}]},
    ],
)
async def test_failures_abstain_or_reject_and_keep_params(
    tmp_path: Path, line: dict[str, Any]
) -> None:
    h = Harness(_script(tmp_path, [line]))
    await h.decide()
    rec = h.records[-1]
    assert rec["verdict"] in ("abstain", "rejected")
    assert h.params.get("M").gamma == 1.0


async def test_large_change_waits_for_approval_then_applies(tmp_path: Path) -> None:
    h = Harness(_script(tmp_path, [call("set_gamma", value=1.45, rationale="big move")]))
    out = await h.decide()
    assert out.interrupts and out.interrupts[0].value["param"] == "gamma"
    assert h.params.get("M").gamma == 1.0 and h.records[-1]["verdict"] == "pending_approval"
    await h.graph.ainvoke(
        Command(resume={"approved": True, "reason": "looks right", "by": "alice"}),
        h.config,
        context=h.deps,
        version="v2",
    )
    assert h.params.get("M").gamma == 1.45
    assert h.records[-1]["phase"] == "approval" and h.records[-1]["verdict"] == "approved"


async def test_governance_graph_approves_a_pending_change(tmp_path: Path) -> None:
    market = Harness(_script(tmp_path, [call("set_sigma", value=0.0056, rationale="vol up")]))
    await market.decide()
    (rid,) = market.applier.pending
    gov_script = tmp_path / "gov.jsonl"
    gov_script.write_text(
        json.dumps(
            {
                "role": "governance",
                "calls": [
                    {
                        "name": "approve_change",
                        "arguments": {"request_id": rid, "approved": True, "reason": "fine"},
                    }
                ],
            }
        )
        + "\n"
    )

    async def resume(request_id: str, approved: bool, reason: str) -> Any:
        await market.graph.ainvoke(
            Command(resume={"approved": approved, "reason": reason, "by": "governance"}),
            market.config,
            context=market.deps,
            version="v2",
        )
        return None

    gov_records: list[dict[str, Any]] = []
    deps = AgentDeps(
        reasoner=ScriptedReasoner(gov_script),
        applier=market.applier,
        prompt="gov",
        prompt_hash="g",
        now=lambda: 1000.0,
        build_context=lambda _: {"pending_approvals": [{"request_id": rid}]},
        record=gov_records.append,
        source="agent:governance:scripted",
        resume_approval=resume,
    )
    gov = build_governance_graph()
    await gov.ainvoke(
        {"market": "*", "role": "governance", "decision_id": "g1"},
        {"configurable": {"thread_id": "gov"}},
        context=deps,
        version="v2",
    )
    assert market.params.get("M").sigma == pytest.approx(0.0056)
    assert not market.applier.pending
    assert gov_records[-1]["agent"] == "governance"
