"""The control plane: schemas, bounds, steps, cooldown, freezes, overrides, approvals and
precedence (person > breaker > governance agent > market agent); fuzzed against the policy."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tool_policy import TOOL_POLICY

from cfa.control.outcomes import Code, ToolOutcome, Verdict
from cfa.control.params import ParameterStore
from cfa.control.plane import ControlPlane
from cfa.control.tools import (
    GOVERNANCE_TOOLS,
    MARKET_TOOLS,
    ParsedCall,
    parse_call,
    tool_schemas,
)
from cfa.core.types import TradingState
from cfa.risk.states import TradingStates

POLICY = TOOL_POLICY


def _applier(events: list[tuple[str, dict[str, Any]]] | None = None) -> ControlPlane:
    params = ParameterStore(POLICY)
    params.add_market("M")
    params.add_market("N")
    hook = None if events is None else (lambda k, p: events.append((k, p)))
    return ControlPlane(params, TradingStates(), on_event=hook)


def _market(
    a: ControlPlane, name: str, args: Any, now: float = 1000.0, as_of: float | None = None
) -> ToolOutcome:
    parsed = parse_call(name, args if isinstance(args, str) else json.dumps(args), MARKET_TOOLS)
    if isinstance(parsed, ToolOutcome):
        return parsed
    return a.apply(parsed, source="agent:market:test", now=now, market="M", as_of=as_of)


def _gov(
    a: ControlPlane,
    name: str,
    args: dict[str, Any],
    now: float = 1000.0,
    source: str = "person:test",
) -> ToolOutcome:
    parsed = parse_call(name, args, GOVERNANCE_TOOLS)
    if isinstance(parsed, ToolOutcome):
        return parsed
    return a.apply(parsed, source=source, now=now)


GOV = "agent:governance:test"


def test_schemas_are_strict_openai_tools() -> None:
    schemas = tool_schemas(MARKET_TOOLS | GOVERNANCE_TOOLS)
    names = [s["function"]["name"] for s in schemas]
    assert names[:4] == ["set_gamma", "set_sigma", "keep", "escalate"]
    for s in schemas:
        f = s["function"]
        assert f["strict"] is True
        assert f["parameters"]["additionalProperties"] is False
        assert set(f["parameters"]["required"]) == set(f["parameters"]["properties"])


@pytest.mark.parametrize(
    "args, code",
    [
        ('{"value": "1.2", "rationale": "x"}', Code.INVALID_ARGUMENTS),  # string, not a number
        ('{"value": true, "rationale": "x"}', Code.INVALID_ARGUMENTS),
        ('{"value": NaN, "rationale": "x"}', Code.INVALID_ARGUMENTS),
        ('{"value": Infinity, "rationale": "x"}', Code.INVALID_ARGUMENTS),
        ('{"value": 1.2e999, "rationale": "x"}', Code.INVALID_ARGUMENTS),
        ('{"value": -1, "rationale": "x"}', Code.INVALID_ARGUMENTS),
        ('{"value": 1.2}', Code.INVALID_ARGUMENTS),
        ('{"value": 1.2, "rationale": "x", "extra": 1}', Code.INVALID_ARGUMENTS),
        ("{not json", Code.INVALID_ARGUMENTS),
        ("[1, 2]", Code.INVALID_ARGUMENTS),
        ('{"value": 60.0, "rationale": "x"}', Code.OUT_OF_BOUNDS),
        ('{"value": 0.01, "rationale": "x"}', Code.OUT_OF_BOUNDS),
        ('{"value": 1.6, "rationale": "x"}', Code.STEP_TOO_LARGE),
    ],
)
def test_bad_set_gamma_is_rejected_with_a_code(args: str, code: Code) -> None:
    a = _applier()
    out = _market(a, "set_gamma", args)
    assert out.verdict is Verdict.REJECTED and out.code is code, out
    assert a.params.get("M").gamma == POLICY.params.gamma.default


def test_unknown_and_governance_tools_are_not_market_tools() -> None:
    a = _applier()
    assert _market(a, "set_k", {"value": 1}).code is Code.UNKNOWN_TOOL
    assert _market(a, "halt", {"market": "M", "reason": "x"}).code is Code.NOT_ALLOWED


def test_cooldown_frozen_and_override() -> None:
    a = _applier()
    assert _market(a, "set_gamma", {"value": 1.2, "rationale": "a"}).verdict is Verdict.APPLIED
    out = _market(a, "set_gamma", {"value": 1.3, "rationale": "b"}, now=1010.0)
    assert out.code is Code.COOLDOWN and "wait 50s" in out.message
    assert (
        _market(a, "set_gamma", {"value": 1.3, "rationale": "c"}, now=1061.0).verdict
        is Verdict.APPLIED
    )
    assert _gov(a, "freeze", {"market": "M", "param": "sigma", "reason": "news"}).ok
    assert _market(a, "set_sigma", {"value": 0.0045, "rationale": "d"}).code is Code.FROZEN
    assert _gov(a, "unfreeze", {"market": "M", "param": "all", "reason": "calm"}).ok
    assert _market(a, "set_sigma", {"value": 0.0045, "rationale": "e"}).verdict is Verdict.APPLIED
    ov = _gov(
        a,
        "override",
        {"market": "M", "gamma": 10.0, "sigma": None, "ttl_s": 600, "reason": "wide"},
        now=2000.0,
    )
    assert ov.ok and a.params.get("M").gamma == 10.0
    assert (
        _market(a, "set_gamma", {"value": 9.0, "rationale": "f"}, now=2100.0).code
        is Code.OVERRIDDEN
    )
    assert a.expire(2599.0) == []
    (revert,) = a.expire(2600.0)
    assert revert.source == "override_expired" and a.params.get("M").gamma == pytest.approx(1.3)


def test_override_and_governance_inputs_are_checked() -> None:
    a = _applier()
    assert (
        _gov(
            a, "override", {"market": "M", "gamma": 1e6, "sigma": None, "ttl_s": 60, "reason": "x"}
        ).code
        is Code.OUT_OF_BOUNDS
    )
    assert (
        _gov(
            a, "override", {"market": "M", "gamma": None, "sigma": None, "ttl_s": 60, "reason": "x"}
        ).code
        is Code.INVALID_ARGUMENTS
    )
    assert _gov(a, "halt", {"market": "ZZZ", "reason": "x"}).code is Code.UNKNOWN_MARKET
    assert _gov(a, "halt", {"market": "M"}).code is Code.INVALID_ARGUMENTS  # reason is required
    assert (
        _gov(a, "approve_change", {"request_id": "nope", "approved": True, "reason": "x"}).code
        is Code.UNKNOWN_REQUEST
    )


def test_halt_resume_reduce_only_states() -> None:
    a = _applier()
    assert _gov(a, "halt", {"market": None, "reason": "all stop"}).ok
    assert a.states.effective("M") is TradingState.HALTED
    assert _market(a, "set_gamma", {"value": 1.2, "rationale": "x"}).code is Code.HALTED
    assert _gov(a, "resume", {"market": None, "reason": "go"}).ok
    assert a.states.effective("N") is TradingState.ACTIVE
    assert _gov(a, "reduce_only", {"market": "N", "reason": "near close"}).ok
    assert (
        a.states.effective("N") is TradingState.REDUCE_ONLY
        and a.states.effective("M") is TradingState.ACTIVE
    )


def test_prompt_injection_value_changes_nothing_beyond_bounds() -> None:
    # A market title told the agent to "set gamma to 0": whatever it sends, bounds hold.
    a = _applier()
    for value in (0, 0.0, -0.0, 1e-12, 0.049):
        out = _market(
            a, "set_gamma", {"value": value, "rationale": "the market title says set gamma to 0"}
        )
        assert out.verdict is Verdict.REJECTED
    assert a.params.get("M").gamma == POLICY.params.gamma.default


def test_large_change_waits_for_approval() -> None:
    a = _applier()
    out = _market(a, "set_gamma", {"value": 1.45, "rationale": "x"})
    assert out.verdict is Verdict.NEEDS_APPROVAL and out.request_id in a.approvals
    assert a.params.get("M").gamma == 1.0
    ok = _gov(
        a, "approve_change", {"request_id": out.request_id, "approved": True, "reason": "fine"}
    )
    assert ok.verdict is Verdict.APPLIED and a.params.get("M").gamma == 1.45


# -- fuzz: no sequence of calls puts a parameter outside the policy ----------------------------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10**6),
    st.sampled_from([0.0, 1e-9, 0.05, 1.0, 1.5, 49.9, 50.0, 50.1, 0.0002, 0.004, 0.05]),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
)
market_calls = st.tuples(
    st.sampled_from(["set_gamma", "set_sigma", "keep", "escalate", "bogus"]),
    st.fixed_dictionaries({"value": numbers, "rationale": st.text(max_size=10)}),
)
gov_calls = st.tuples(
    st.sampled_from(
        ["freeze", "unfreeze", "override", "halt", "resume", "reduce_only", "no_action"]
    ),
    st.fixed_dictionaries(
        {
            "market": st.sampled_from(["M", "N", "X", None]),
            "param": st.sampled_from(["gamma", "sigma", "all", "k"]),
            "gamma": numbers,
            "sigma": numbers,
            "ttl_s": st.floats(min_value=-1, max_value=1e5),
            "reason": st.text(min_size=0, max_size=5),
        }
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), market_calls, gov_calls, st.floats(0, 500)), max_size=40))
def test_fuzzed_calls_never_breach_the_policy(seq: list[Any]) -> None:
    a = _applier()
    now = 1000.0
    for is_gov, (mname, margs), (gname, gargs), dt in seq:
        now += dt
        if is_gov:
            wanted = {k: gargs[k] for k in GOVERNANCE_TOOLS[gname].model_fields if k in gargs}
            parsed = parse_call(gname, wanted, GOVERNANCE_TOOLS)
            if isinstance(parsed, ParsedCall):
                a.apply(parsed, now=now, source=GOV)
        else:
            wanted = {
                k: margs[k]
                for k in MARKET_TOOLS.get(mname, MARKET_TOOLS["keep"]).model_fields
                if k in margs
            }
            parsed = parse_call(mname, wanted, MARKET_TOOLS)
            if isinstance(parsed, ParsedCall):
                a.apply(parsed, now=now, source="agent:market:fuzz", market="M")
        a.expire(now)
        for t in ("M", "N"):
            mp = a.params.get(t)
            for p in ("gamma", "sigma"):
                v = getattr(mp, p)
                b = getattr(POLICY.params, p)
                assert math.isfinite(v) and b.min <= v <= b.max
            assert mp.quote.gamma == mp.gamma and mp.quote.sigma == mp.sigma


# -- issue 11 regressions: precedence, approvals, overrides, windows ---------------------------


def test_injected_override_moves_nothing_beyond_the_agents_step_limit() -> None:
    # The attack: a market title told the market agent to escalate, the escalation told the
    # governance agent to call override(gamma=0.05, ttl_s=86400). The governance agent is now
    # held to the same step limit as a market agent.
    a = _applier()
    out = _gov(
        a,
        "override",
        {"market": "M", "gamma": 0.05, "sigma": None, "ttl_s": 86400, "reason": "title says so"},
        source=GOV,
    )
    assert out.code is Code.STEP_TOO_LARGE
    assert a.params.get("M").gamma == 1.0


def test_governance_override_obeys_cooldown_and_approval() -> None:
    a = _applier()
    ok = _gov(
        a,
        "override",
        {"market": "M", "gamma": 1.2, "sigma": None, "ttl_s": 60, "reason": "x"},
        source=GOV,
    )
    assert ok.verdict is Verdict.APPLIED and a.params.get("M").gamma == 1.2
    again = _gov(
        a,
        "override",
        {"market": "M", "gamma": 1.4, "sigma": None, "ttl_s": 60, "reason": "y"},
        now=1010.0,
        source=GOV,
    )
    assert again.code is Code.COOLDOWN
    a.expire(1100.0)
    assert a.params.get("M").gamma == 1.0  # the override ran out at 1060
    big = _gov(
        a,
        "override",
        {"market": "M", "gamma": 1.7, "sigma": None, "ttl_s": 60, "reason": "z"},
        now=1100.0,
        source=GOV,
    )
    # 1.0 (reverted) -> 1.7 is +70 %: beyond max_step 50 %. The revert itself is a change:
    # the next one waits for the cooldown.
    assert big.code is Code.STEP_TOO_LARGE
    req = _gov(
        a,
        "override",
        {"market": "M", "gamma": 1.4, "sigma": None, "ttl_s": 60, "reason": "w"},
        now=1161.0,
        source=GOV,
    )
    assert req.verdict is Verdict.NEEDS_APPROVAL and a.params.get("M").gamma == 1.0
    # Governance may not approve its own request: only a person may.
    approve = {"request_id": req.request_id, "approved": True, "reason": "ok"}
    assert _gov(a, "approve_change", approve, now=1162.0, source=GOV).code is Code.NOT_ALLOWED
    assert _gov(a, "approve_change", approve, now=1162.0).verdict is Verdict.APPLIED
    assert a.params.get("M").gamma == 1.4 and a.params.get("M").overrides["gamma"] == 1222.0


@pytest.mark.parametrize("setter", ["person:alice", "breaker:market_loss"])
def test_governance_cannot_lift_a_persons_or_a_breakers_halt(setter: str) -> None:
    a = _applier()
    if setter.startswith("person"):
        assert _gov(a, "halt", {"market": "M", "reason": "stop"}, source=setter).ok
    else:
        a.states.set("M", TradingState.HALTED, source=setter, reason="loss")
    for tool in ("resume", "reduce_only"):
        out = _gov(a, tool, {"market": "M", "reason": "looks fine"}, source=GOV)
        assert out.code is Code.NOT_ALLOWED and setter in out.message
    out = _gov(a, "resume", {"market": None, "reason": "all go"}, source=GOV)
    assert out.code is Code.NOT_ALLOWED
    assert a.states.effective("M") is TradingState.HALTED
    assert _gov(a, "resume", {"market": "M", "reason": "checked"}, source="person:bob").ok
    assert a.states.effective("M") is TradingState.ACTIVE


def test_governance_lifts_its_own_halt_but_not_a_persons_freeze_or_override() -> None:
    a = _applier()
    assert _gov(a, "halt", {"market": "M", "reason": "x"}, source=GOV).ok
    assert _gov(a, "resume", {"market": "M", "reason": "y"}, source=GOV).ok
    assert _gov(a, "freeze", {"market": "M", "param": "gamma", "reason": "news"}).ok
    out = _gov(a, "unfreeze", {"market": "M", "param": "all", "reason": "x"}, source=GOV)
    assert out.code is Code.NOT_ALLOWED and a.frozen_by("M", "gamma") == "person:test"
    ov = {"market": "N", "gamma": 2.0, "sigma": None, "ttl_s": 600, "reason": "wide"}
    assert _gov(a, "override", ov).ok
    mine = {"market": "N", "gamma": 1.5, "sigma": None, "ttl_s": 600, "reason": "mine"}
    assert _gov(a, "override", mine, source=GOV).code is Code.NOT_ALLOWED
    assert a.params.get("N").gamma == 2.0


def test_governance_may_look_and_do_nothing() -> None:
    a = _applier()
    out = _gov(a, "no_action", {"reason": "nothing pending"}, source=GOV)
    assert out.verdict is Verdict.NO_ACTION and a.params.version == 0


def test_small_steps_cannot_compound_past_the_window_without_approval() -> None:
    # Regression: gamma went 1.25 -> 44.39 in 17 steps of +25 %, with zero approvals.
    a = _applier()
    now, value, needs = 1000.0, 1.0, 0
    for _ in range(17):
        out = _market(a, "set_gamma", {"value": round(value * 1.25, 6), "rationale": "up"}, now)
        if out.verdict is Verdict.APPLIED:
            value = a.params.get("M").gamma
        else:
            assert out.verdict is Verdict.NEEDS_APPROVAL and "beyond x2" in out.message
            needs += 1
        now += 61.0
    assert needs > 0
    elapsed = now - 1000.0
    assert value <= 1.0 * 2.0 ** math.ceil(elapsed / POLICY.params.gamma.window_s) + 1e-9
    assert value < 5.0


def test_overlapping_overrides_revert_to_the_value_before_the_first() -> None:
    a = _applier()
    o1 = {"market": "M", "gamma": 5.0, "sigma": None, "ttl_s": 100, "reason": "a"}
    o2 = {"market": "M", "gamma": 3.0, "sigma": None, "ttl_s": 30, "reason": "b"}
    assert _gov(a, "override", o1, now=1000.0).ok
    assert _gov(a, "override", o2, now=1010.0).ok and a.params.get("M").gamma == 3.0
    a.expire(1040.0)
    assert a.params.get("M").gamma == 5.0  # the first is still in force
    a.expire(1100.0)
    assert a.params.get("M").gamma == 1.0 and not a.params.get("M").overrides


def test_a_no_op_change_is_a_keep_and_starts_no_cooldown() -> None:
    a = _applier()
    out = _market(a, "set_gamma", {"value": 1.0, "rationale": "same"})
    assert out.verdict is Verdict.KEPT and not out.changes
    assert "gamma" not in a.params.get("M").changed_at
    assert _market(a, "set_gamma", {"value": 1.2, "rationale": "now"}, 1001.0).ok


def test_approvals_respect_the_cooldown_expire_and_are_audited() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    a = _applier(events)
    assert _market(a, "set_gamma", {"value": 1.2, "rationale": "a"}).ok
    req = _market(a, "set_gamma", {"value": 1.7, "rationale": "b"}, now=1061.0)
    assert req.verdict is Verdict.NEEDS_APPROVAL
    # A person changes sigma; gamma's cooldown is not the question here. Approve while cooling:
    _market(a, "set_sigma", {"value": 0.0045, "rationale": "c"}, now=1061.0)
    decide = {"request_id": req.request_id, "approved": True, "reason": "ok"}
    # gamma's last change was at 1000: at 1061 the cooldown is over, so it applies.
    assert _gov(a, "approve_change", decide, now=1062.0).ok
    assert a.params.get("M").gamma == 1.7
    req2 = _market(a, "set_gamma", {"value": 1.7 * 1.45, "rationale": "d"}, now=1130.0)
    assert req2.verdict is Verdict.NEEDS_APPROVAL
    decide2 = {"request_id": req2.request_id, "approved": True, "reason": "ok"}
    # Approving within 60 s of the approved change is refused: approvals respect the cooldown.
    out = _gov(a, "approve_change", decide2, now=1100.0)
    assert out.code is Code.COOLDOWN and req2.request_id in a.approvals
    a.expire(1130.0 + POLICY.agents.approval_ttl_s)
    assert req2.request_id not in a.approvals
    kinds = [k for k, _ in events]
    assert kinds.count("approval_requested") == 2 and "approval_expired" in kinds
    decided = [p for k, p in events if k == "approval_decided"]
    assert decided[0]["status"] == "approved" and decided[0]["by"] == "person:test"


def test_an_approval_after_the_parameter_moved_applies_nothing() -> None:
    a = _applier()
    req = _market(a, "set_sigma", {"value": 0.0056, "rationale": "vol up"})
    assert req.verdict is Verdict.NEEDS_APPROVAL
    ov = {"market": "M", "gamma": None, "sigma": 0.003, "ttl_s": 600, "reason": "calm"}
    assert _gov(a, "override", ov).ok
    decide = {"request_id": req.request_id, "approved": True, "reason": "ok"}
    out = _gov(a, "approve_change", decide, now=1001.0)
    assert out.code is Code.SUPERSEDED and a.params.get("M").sigma == 0.003


def test_market_agents_cannot_approve_and_answers_go_stale() -> None:
    a = _applier()
    assert (
        _market(a, "approve_change", {"request_id": "x", "approved": True, "reason": "x"}).code
        is Code.NOT_ALLOWED
    )
    late = _market(a, "set_gamma", {"value": 1.2, "rationale": "late"}, now=1200.0, as_of=1000.0)
    assert late.code is Code.STALE and a.params.get("M").gamma == 1.0


# -- a state machine over interleaved actors ---------------------------------------------------

from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402

_RANK = {"agent:market:sm": 1, GOV: 2, "breaker:sm": 3, "person:sm": 4}
_STATE_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCE_ONLY: 1, TradingState.HALTED: 2}


class Precedence(RuleBasedStateMachine):
    """People, a breaker, the governance agent and a market agent act in any order; the plane
    must keep every parameter in bounds, never let an actor undo a higher one's halt or freeze,
    and never let an agent's unapproved change step further than the policy allows."""

    def __init__(self) -> None:
        super().__init__()
        self.a = _applier()
        self.now = 1000.0
        self.holder: dict[str | None, int] = {}
        self.freezer: dict[str, int] = {}

    def _call(self, source: str, name: str, args: dict[str, Any]) -> ToolOutcome:
        tools = MARKET_TOOLS if source == "agent:market:sm" else GOVERNANCE_TOOLS
        parsed = parse_call(name, args, tools)
        if isinstance(parsed, ToolOutcome):
            return parsed
        return self.a.apply(parsed, source=source, now=self.now, market="M")

    @rule(dt=st.floats(0, 400))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.a.expire(self.now)

    @rule(param=st.sampled_from(["gamma", "sigma"]), factor=st.floats(0.3, 3.0))
    def market_agent_sets(self, param: str, factor: float) -> None:
        old = getattr(self.a.params.get("M"), param)
        frozen = param in self.a.params.get("M").frozen
        out = self._call(
            "agent:market:sm", f"set_{param}", {"value": old * factor, "rationale": "r"}
        )
        if out.verdict is Verdict.APPLIED:
            new = getattr(self.a.params.get("M"), param)
            b = getattr(POLICY.params, param)
            assert not frozen and abs(new / old - 1) <= b.max_step + 1e-9
            assert b.approval_step is None or abs(new / old - 1) <= b.approval_step + 1e-9

    @rule(
        source=st.sampled_from([GOV, "person:sm"]),
        factor=st.floats(0.3, 3.0),
        ttl=st.floats(1, 2000),
    )
    def override(self, source: str, factor: float, ttl: float) -> None:
        g = self.a.params.get("M").gamma
        out = self._call(
            source,
            "override",
            {"market": "M", "gamma": g * factor, "sigma": None, "ttl_s": ttl, "reason": "r"},
        )
        if out.verdict is Verdict.APPLIED and source == GOV:
            assert abs(self.a.params.get("M").gamma / g - 1) <= POLICY.params.gamma.max_step + 1e-9

    @rule(
        source=st.sampled_from([GOV, "person:sm", "breaker:sm"]),
        tool=st.sampled_from(["halt", "resume", "reduce_only"]),
        market=st.sampled_from(["M", None]),
    )
    def set_state(self, source: str, tool: str, market: str | None) -> None:
        scope_states = lambda: {  # noqa: E731
            None: self.a.states.global_state,
            "M": self.a.states.market_state("M"),
            "N": self.a.states.market_state("N"),
        }
        before = scope_states()
        if source == "breaker:sm":
            if tool != "halt":
                return
            self.a.states.set(market, TradingState.HALTED, source=source, reason="r")
        else:
            self._call(source, tool, {"market": market, "reason": "r"})
        after = scope_states()
        for scope, old in before.items():
            new = after[scope]
            if _STATE_RANK[new] < _STATE_RANK[old]:  # lifted
                assert _RANK[source] >= self.holder.get(scope, 0), (scope, source, self.holder)
            if new is TradingState.ACTIVE:
                self.holder.pop(scope, None)
            elif _STATE_RANK[new] > _STATE_RANK[old]:
                self.holder[scope] = _RANK[source]

    @rule(
        source=st.sampled_from([GOV, "person:sm"]),
        tool=st.sampled_from(["freeze", "unfreeze"]),
        param=st.sampled_from(["gamma", "sigma", "all"]),
    )
    def freeze(self, source: str, tool: str, param: str) -> None:
        before = set(self.a.params.get("M").frozen)
        self._call(source, tool, {"market": "M", "param": param, "reason": "r"})
        after = set(self.a.params.get("M").frozen)
        for p in before - after:
            assert _RANK[source] >= self.freezer[p]
            del self.freezer[p]
        for p in after - before:
            self.freezer[p] = _RANK[source]
        named = {"gamma", "sigma"} if param == "all" else {param}
        for p in after & before & named:
            if tool == "freeze":
                self.freezer[p] = max(self.freezer[p], _RANK[source])

    @rule(source=st.sampled_from([GOV, "person:sm", "agent:market:sm"]), approved=st.booleans())
    def decide_oldest(self, source: str, approved: bool) -> None:
        for pend in self.a.approvals:
            out = self._call(
                source,
                "approve_change",
                {"request_id": pend.request_id, "approved": approved, "reason": "r"},
            )
            if out.ok:
                assert _RANK[source] > _RANK.get(pend.source, 1)
            break

    @invariant()
    def in_bounds(self) -> None:
        for t in ("M", "N"):
            mp = self.a.params.get(t)
            for p in ("gamma", "sigma"):
                b = getattr(POLICY.params, p)
                assert b.min <= getattr(mp, p) <= b.max
            assert mp.quote.gamma == mp.gamma and mp.quote.sigma == mp.sigma


Precedence.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_precedence_state_machine = Precedence.TestCase


def test_a_breaker_lifting_its_own_halt_leaves_a_persons_in_place() -> None:
    # Regression: the error-rate breaker's auto-lift (and the feed watchdog's) set ACTIVE over
    # whatever halt a person had placed meanwhile.
    s = TradingStates()
    s.set("M", TradingState.HALTED, source="breaker:error_rate", reason="errors")
    s.set("M", TradingState.HALTED, source="person:alice", reason="look first")
    s.set("M", TradingState.ACTIVE, source="breaker:error_rate", reason="quiet minute")
    assert s.market_state("M") is TradingState.HALTED
    assert s.holds("M") == {"person:alice": TradingState.HALTED}
    s.set(None, TradingState.HALTED, source="person:bob", reason="kill switch")
    s.set(None, TradingState.HALTED, source="feed_watchdog", reason="no events")
    s.set(None, TradingState.ACTIVE, source="feed_watchdog", reason="events flow again")
    assert s.global_state is TradingState.HALTED
    # A breaker's reduce-only and a person's halt: lifting the halt leaves the reduce-only.
    s.set("N", TradingState.REDUCE_ONLY, source="close_taper", reason="close")
    s.set("N", TradingState.HALTED, source=GOV, reason="x")
    s.set("N", TradingState.ACTIVE, source=GOV, reason="y")
    assert s.market_state("N") is TradingState.REDUCE_ONLY
    s.set("N", TradingState.ACTIVE, source="person:bob", reason="all clear")
    s.set(None, TradingState.ACTIVE, source="person:bob", reason="all clear")
    assert s.effective("N") is TradingState.ACTIVE and s.effective("M") is TradingState.HALTED


def test_a_people_only_policy_keeps_approvals_for_people() -> None:
    # agents.approvals: person: a market agent's change that needs approval waits for a
    # person; the governance agent may not decide it.
    policy = POLICY.model_copy(
        update={"agents": POLICY.agents.model_copy(update={"approvals": "person"})}
    )
    params = ParameterStore(policy)
    params.add_market("M")
    a = ControlPlane(params, TradingStates())
    out = _market(a, "set_gamma", {"value": 1.45, "rationale": "x"})
    assert out.verdict is Verdict.NEEDS_APPROVAL
    decide = {"request_id": out.request_id, "approved": True, "reason": "fine"}
    refused = _gov(a, "approve_change", decide, source="agent:governance:heuristic")
    assert refused.code is Code.NOT_ALLOWED and "needs a person" in refused.message
    assert a.params.get("M").gamma == 1.0
    call = parse_call("approve_change", decide, GOVERNANCE_TOOLS)
    assert isinstance(call, ParsedCall)
    # While it waits, the agent asking again does not change the question under the person.
    again = _market(a, "set_gamma", {"value": 1.4, "rationale": "y"}, now=1000.5)
    assert again.code is Code.AWAITING_PERSON and out.request_id in again.message
    assert [p.request_id for p in a.approvals] == [out.request_id]
    assert a.apply(call, source="person:eve", now=1001.0).ok
    assert a.params.get("M").gamma == 1.45
