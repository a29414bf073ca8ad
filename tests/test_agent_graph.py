"""LangGraph agent flows with the scripted reasoner: apply, retry, abstain, approval, one call
per answer, stale answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tool_policy import TOOL_POLICY

from cfa.agents.graphs import AgentDeps, build_governance_graph, build_market_graph
from cfa.agents.reasoners.scripted import ScriptedReasoner
from cfa.control.params import ParameterStore
from cfa.control.plane import ControlPlane
from cfa.risk.states import TradingStates

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
        self.control = ControlPlane(self.params, self.states)
        self.records: list[dict[str, Any]] = []
        self.t = 1000.0
        self.graph = build_market_graph()
        self.deps = AgentDeps(
            reasoner=reasoner,
            control=self.control,
            prompt="market prompt",
            prompt_hash="h",
            now=lambda: self.t,
            build_context=lambda m: {
                "market": {"ticker": m},
                "gamma": {"value": self.params.get(m).gamma},
            },
            record=lambda r: self.records.append(r.payload()),
            source="agent:market:scripted",
        )
        self.config = {"configurable": {"thread_id": "run:M"}}

    async def decide(self, n: int = 1, as_of: float | None = None) -> Any:
        return await self.graph.ainvoke(
            {
                "market": "M",
                "role": "market",
                "decision_id": f"d{n}",
                "as_of": as_of,
                "snapshot": None if as_of is None else {"market": {"ticker": "M"}},
            },
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


async def test_large_change_waits_for_approval_by_request_id(tmp_path: Path) -> None:
    h = Harness(_script(tmp_path, [call("set_gamma", value=1.45, rationale="big move")]))
    await h.decide()
    rec = h.records[-1]
    assert h.params.get("M").gamma == 1.0 and rec["verdict"] == "pending_approval"
    rid = rec["pending"]
    assert rid in h.control.approvals
    out = h.control.apply(_approve(rid), source="person:alice", now=h.t + 1)
    assert out.verdict.value == "applied" and h.params.get("M").gamma == 1.45


def _approve(rid: str, approved: bool = True) -> Any:
    from cfa.control.tools import GOVERNANCE_TOOLS, ParsedCall, parse_call

    parsed = parse_call(
        "approve_change",
        {"request_id": rid, "approved": approved, "reason": "ok"},
        GOVERNANCE_TOOLS,
    )
    assert isinstance(parsed, ParsedCall)
    return parsed


async def test_a_later_decision_cannot_take_an_earlier_requests_approval(tmp_path: Path) -> None:
    # Regression: approvals resumed whichever decision was paused on the thread. Now a request
    # is decided by its id only, and approving one whose parameter moved on applies nothing.
    h = Harness(
        _script(
            tmp_path,
            [
                call("set_sigma", value=0.0056, rationale="first"),
                call("set_sigma", value=0.0025, rationale="second"),
            ],
        )
    )
    await h.decide(1)
    first = h.records[-1]["pending"]
    h.t += 5
    await h.decide(2)
    second = h.records[-1]["pending"]
    assert first != second and first not in h.control.approvals  # superseded by the second
    stale = h.control.apply(_approve(first), source="agent:governance:x", now=h.t)
    assert stale.code is not None and stale.code.value == "unknown_request"
    ok = h.control.apply(_approve(second), source="agent:governance:x", now=h.t)
    assert ok.ok and h.params.get("M").sigma == pytest.approx(0.0025)


async def test_only_the_first_call_of_an_answer_applies(tmp_path: Path) -> None:
    two = {
        "calls": [
            {"name": "set_gamma", "arguments": {"value": 1.2, "rationale": "a"}},
            {"name": "set_sigma", "arguments": {"value": 0.0045, "rationale": "b"}},
        ]
    }
    h = Harness(_script(tmp_path, [two]))
    await h.decide()
    rec = h.records[-1]
    assert [o["verdict"] for o in rec["outcomes"]] == ["applied", "rejected"]
    assert rec["outcomes"][1]["code"] == "extra_call" and rec["attempts"] == 1
    assert h.params.get("M").gamma == 1.2
    assert h.params.get("M").sigma == POLICY.params.sigma.default


async def test_retry_message_says_what_was_and_was_not_applied(tmp_path: Path) -> None:
    two = {
        "calls": [
            {"name": "set_gamma", "arguments": {"value": 99.0, "rationale": "a"}},
            {"name": "set_sigma", "arguments": {"value": 0.0045, "rationale": "b"}},
        ]
    }
    reasoner = _script(tmp_path, [two, call("keep", rationale="fine")])
    seen: list[Any] = []
    inner = reasoner.reason

    async def spy(req: Any) -> Any:
        seen.append(req.feedback)
        return await inner(req)

    reasoner.reason = spy  # type: ignore[method-assign]
    h = Harness(reasoner)
    await h.decide()
    fb = seen[1]
    assert fb is not None
    assert "call 1 set_gamma: not applied (out_of_bounds)" in fb.error
    assert "call 2 set_sigma: not applied (extra_call)" in fb.error
    assert fb.error.endswith("Nothing was applied.")
    assert h.records[-1]["verdict"] == "keep"


async def test_a_stale_answer_is_not_applied(tmp_path: Path) -> None:
    h = Harness(_script(tmp_path, [call("set_gamma", value=1.2, rationale="late")]))
    age = POLICY.agents.max_answer_age_s
    await h.decide(as_of=h.t - age - 1)
    rec = h.records[-1]
    assert rec["verdict"] == "stale" and rec["outcomes"][0]["code"] == "stale"
    assert h.params.get("M").gamma == 1.0


async def test_governance_graph_approves_a_pending_change(tmp_path: Path) -> None:
    market = Harness(_script(tmp_path, [call("set_sigma", value=0.0056, rationale="vol up")]))
    await market.decide()
    (rid,) = market.control.approvals.ids()
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
    gov_records: list[dict[str, Any]] = []
    deps = AgentDeps(
        reasoner=ScriptedReasoner(gov_script),
        control=market.control,
        prompt="gov",
        prompt_hash="g",
        now=lambda: 1000.0,
        build_context=lambda _: {"pending_approvals": [{"request_id": rid}]},
        record=lambda r: gov_records.append(r.payload()),
        source="agent:governance:scripted",
    )
    gov = build_governance_graph()
    await gov.ainvoke(
        {"market": "*", "role": "governance", "decision_id": "g1"},
        {"configurable": {"thread_id": "gov"}},
        context=deps,
        version="v2",
    )
    assert market.params.get("M").sigma == pytest.approx(0.0056)
    assert not market.control.approvals.ids()
    assert gov_records[-1]["agent"] == "governance" and gov_records[-1]["verdict"] == "applied"
