"""Tool validation: schemas, bounds, steps, cooldown, frozen, overrides; fuzzed vs the policy."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tool_policy import TOOL_POLICY

from cfa.agents.tools import (
    GOVERNANCE_TOOLS,
    MARKET_TOOLS,
    Code,
    ParsedCall,
    ToolApplier,
    ToolOutcome,
    Verdict,
    parse_call,
    tool_schemas,
)
from cfa.core.types import TradingState
from cfa.risk.states import TradingStates
from cfa.runtime.params import ParameterStore

POLICY = TOOL_POLICY


def _applier() -> ToolApplier:
    params = ParameterStore(POLICY)
    params.add_market("M")
    params.add_market("N")
    return ToolApplier(params, TradingStates())


def _market(a: ToolApplier, name: str, args: Any, now: float = 1000.0) -> ToolOutcome:
    parsed = parse_call(name, args if isinstance(args, str) else json.dumps(args), MARKET_TOOLS)
    if isinstance(parsed, ToolOutcome):
        return parsed
    return a.apply_market(parsed, "M", now=now, source="test")


def _gov(a: ToolApplier, name: str, args: dict[str, Any], now: float = 1000.0) -> ToolOutcome:
    parsed = parse_call(name, args, GOVERNANCE_TOOLS)
    if isinstance(parsed, ToolOutcome):
        return parsed
    return a.apply_governance(parsed, now=now, source="person:test")


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
    assert a.expire_overrides(2599.0) == []
    (revert,) = a.expire_overrides(2600.0)
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
    assert out.verdict is Verdict.NEEDS_APPROVAL and out.request_id in a.pending
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
    st.sampled_from(["freeze", "unfreeze", "override", "halt", "resume", "reduce_only"]),
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
                a.apply_governance(parsed, now=now, source="fuzz")
        else:
            wanted = {
                k: margs[k]
                for k in MARKET_TOOLS.get(mname, MARKET_TOOLS["keep"]).model_fields
                if k in margs
            }
            parsed = parse_call(mname, wanted, MARKET_TOOLS)
            if isinstance(parsed, ParsedCall):
                a.apply_market(parsed, "M", now=now, source="fuzz")
        a.expire_overrides(now)
        for t in ("M", "N"):
            mp = a.params.get(t)
            for p in ("gamma", "sigma"):
                v = getattr(mp, p)
                b = getattr(POLICY.params, p)
                assert math.isfinite(v) and b.min <= v <= b.max
            assert mp.quote.gamma == mp.gamma and mp.quote.sigma == mp.sigma
