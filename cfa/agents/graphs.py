"""LangGraph graphs: the per-market agent and the governance agent.

Market agent (one thread per market)::

    context → reason → apply ─(rejected, first attempt)→ reason
                         └→ audit ─(needs approval)→ approval (interrupt) → audit_approval → END

Governance agent::

    gather → reason → apply ─(rejected, first attempt)→ reason
                        └→ audit → END

Nodes reach the reasoner, the apply path and the audit hook through the run-scoped
:class:`AgentDeps` (``Runtime[AgentDeps]``, LangGraph 1.x). A reasoner failure or an answer with
no usable tool call ends the decision as an *abstain*: nothing changes and the abstain is
audited. A change above the policy's approval threshold pauses the market graph with
``interrupt()``; the governance agent or a person resumes it with
``Command(resume={"approved": bool, "reason": str, "by": str})``.

Decision record (what :attr:`AgentDeps.record` receives; the audit store's ``decisions``
payload): the context and ``as_of``, the simulated time (epoch seconds) it describes; ``ts``,
the simulated time the tool calls were validated and applied; ``context_age_s = ts - as_of``
(0 inline; the charged latency in lockstep; however late the answer came in the background);
one entry per reasoner call in ``responses`` with ``usage`` (tokens; None when nothing was
charged, e.g. a cache hit), ``cache`` (``"hit"``, ``"miss"`` or None without a cache) and
``request_sha256`` (the LLM cache key of the request, for reasoners with an identity; named so
because the audit store redacts keys named ``*key*``); and ``reasoner_identity`` (backend,
model, host, sampling settings; never a secret) for such reasoners.

The input state may carry ``snapshot`` (a context taken earlier) and ``as_of`` (its time): the
context node then uses the snapshot instead of building a context now (lockstep scheduling,
:class:`cfa.runtime.agents.AgentRuntime`).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from cfa.agents.reasoners.base import Feedback, RawCall, Reasoner, ReasonRequest
from cfa.agents.reasoners.cache import HasIdentity, reasoner_identity, request_key
from cfa.agents.tools import (
    GOVERNANCE_TOOLS,
    MARKET_TOOLS,
    ApproveChange,
    ParsedCall,
    ToolApplier,
    ToolOutcome,
    Verdict,
    parse_call,
)

MAX_ATTEMPTS = 2
"""One try plus one retry after a rejection."""


@dataclass(frozen=True)
class AgentDeps:
    """Run-scoped dependencies of both graphs."""

    reasoner: Reasoner
    applier: ToolApplier
    prompt: str
    prompt_hash: str
    now: Callable[[], float]
    build_context: Callable[[str], Mapping[str, Any]]
    """Market agent: ticker -> context dict. Governance: '*' -> portfolio dict."""
    record: Callable[[dict[str, Any]], None]
    """Receives the finished decision record (see :func:`_decision_record`)."""
    source: str
    """Who acts, for parameter changes: e.g. ``agent:market:heuristic``."""
    resume_approval: Callable[[str, bool, str], Awaitable[ToolOutcome | None]] | None = None
    """Governance only: resume a market graph paused on a pending change."""


class DecisionState(TypedDict, total=False):
    market: str
    decision_id: str
    role: Literal["market", "governance"]
    started: float
    snapshot: dict[str, Any] | None
    """Input only: a context taken earlier (lockstep); the context node uses it as is."""
    as_of: float | None
    """Simulated time (epoch s) the context describes: the snapshot's time, else when built."""
    context: dict[str, Any]
    params_before: dict[str, float]
    attempts: int
    feedback: dict[str, Any] | None
    responses: Annotated[list[dict[str, Any]], operator.add]
    outcomes: Annotated[list[dict[str, Any]], operator.add]
    last_outcomes: list[dict[str, Any]]
    verdict: str
    pending: str | None
    approval: dict[str, Any] | None


def params_of(applier: ToolApplier, market: str) -> dict[str, float]:
    """γ and σ of ``market`` (``"*"``: every market's, keyed ``TICKER.param``)."""
    if market == "*":
        return {
            f"{t}.{p}": getattr(applier.params.get(t), p)
            for t in applier.params.markets()
            for p in ("gamma", "sigma")
        }
    mp = applier.params.get(market)
    return {"gamma": mp.gamma, "sigma": mp.sigma}


# -- shared nodes -------------------------------------------------------------------------------


async def _context(state: DecisionState, runtime: Runtime[AgentDeps]) -> dict[str, Any]:
    deps = runtime.context
    market = state["market"]
    snap = state.get("snapshot")
    if snap is not None:
        context = dict(snap)
        as_of = state.get("as_of")
        as_of = deps.now() if as_of is None else as_of
    else:
        context = dict(deps.build_context(market))
        as_of = deps.now()
    return {
        "context": context,
        "snapshot": None,
        "as_of": as_of,
        "params_before": params_of(deps.applier, market),
        "attempts": 0,
        "feedback": None,
        "started": time.perf_counter(),
    }


async def _reason(state: DecisionState, runtime: Runtime[AgentDeps]) -> dict[str, Any]:
    deps = runtime.context
    role = state["role"]
    fb = state.get("feedback")
    feedback = None
    if fb:
        feedback = Feedback(tuple(RawCall(**c) for c in fb["calls"]), fb["error"])
    req = ReasonRequest(
        role=role,
        market=None if role == "governance" else state["market"],
        system_prompt=deps.prompt,
        context=state["context"],
        tools=MARKET_TOOLS if role == "market" else GOVERNANCE_TOOLS,
        feedback=feedback,
    )
    resp = await deps.reasoner.reason(req)
    extra = dict(resp.extra)
    cache = extra.pop("cache", None)
    digest = extra.pop("cache_key", None)
    if digest is None and isinstance(deps.reasoner, HasIdentity):
        digest = request_key(reasoner_identity(deps.reasoner), req)
    record = {
        "attempt": state.get("attempts", 0) + 1,
        "raw": resp.raw,
        "text": resp.text,
        "model": resp.model,
        "usage": dict(resp.usage) if resp.usage else None,
        "latency_s": round(resp.latency_s, 6),
        "error": resp.error,
        "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in resp.calls],
        "extra": extra,
        "cache": cache,
        "request_sha256": digest,
    }
    return {"responses": [record], "attempts": state.get("attempts", 0) + 1}


async def _apply(state: DecisionState, runtime: Runtime[AgentDeps]) -> Command[Any]:
    deps = runtime.context
    role = state["role"]
    resp = state["responses"][-1]
    calls = resp["calls"]
    if resp["error"] is not None or (not calls and role == "market"):
        return Command(update={"verdict": "abstain", "last_outcomes": []}, goto="audit")
    if not calls:  # governance with nothing to do
        return Command(update={"verdict": "no_action", "last_outcomes": []}, goto="audit")
    now = deps.now()
    outcomes: list[ToolOutcome] = []
    allowed = MARKET_TOOLS if role == "market" else GOVERNANCE_TOOLS
    for c in calls:
        parsed = parse_call(c["name"], c["arguments"], allowed)
        if isinstance(parsed, ToolOutcome):
            outcomes.append(parsed)
        elif role == "market":
            outcomes.append(
                deps.applier.apply_market(parsed, state["market"], now=now, source=deps.source)
            )
        else:
            outcomes.append(await _apply_governance(deps, parsed, now))
    dicts = [o.as_dict() for o in outcomes]
    rejected = [o for o in outcomes if o.verdict is Verdict.REJECTED]
    if rejected and state.get("attempts", 1) < MAX_ATTEMPTS:
        error = "; ".join(f"{o.tool}: {o.code}: {o.message}" for o in rejected)
        return Command(
            update={
                "outcomes": dicts,
                "feedback": {"calls": calls, "error": error},
                "last_outcomes": dicts,
            },
            goto="reason",
        )
    pending = next((o.request_id for o in outcomes if o.verdict is Verdict.NEEDS_APPROVAL), None)
    verdict = _verdict(outcomes)
    return Command(
        update={"outcomes": dicts, "verdict": verdict, "pending": pending, "last_outcomes": dicts},
        goto="audit",
    )


async def _apply_governance(deps: AgentDeps, parsed: ParsedCall, now: float) -> ToolOutcome:
    args = parsed.args
    if (
        isinstance(args, ApproveChange)
        and deps.resume_approval is not None
        and args.request_id in deps.applier.pending
    ):
        result = await deps.resume_approval(args.request_id, args.approved, args.reason)
        if result is not None:
            return result
    return deps.applier.apply_governance(parsed, now=now, source=deps.source)


def _verdict(outcomes: list[ToolOutcome]) -> str:
    kinds = {o.verdict for o in outcomes}
    for v in (Verdict.NEEDS_APPROVAL, Verdict.APPLIED, Verdict.ESCALATED, Verdict.KEPT):
        if v in kinds:
            return "pending_approval" if v is Verdict.NEEDS_APPROVAL else v.value
    return "rejected"


def _decision_record(state: DecisionState, deps: AgentDeps, phase: str) -> dict[str, Any]:
    market = state["market"]
    ts = deps.now()
    as_of = state.get("as_of")
    identity = reasoner_identity(deps.reasoner) if isinstance(deps.reasoner, HasIdentity) else None
    return {
        "decision_id": state["decision_id"],
        "market": "" if market == "*" else market,
        "agent": state["role"],
        "phase": phase,
        "reasoner": deps.reasoner.name,
        "model": deps.reasoner.model,
        "prompt_hash": deps.prompt_hash,
        "context": state.get("context"),
        "responses": state.get("responses", []),
        "outcomes": state.get("outcomes", []),
        "verdict": state.get("verdict", "abstain"),
        "params_before": state.get("params_before"),
        "params_after": params_of(deps.applier, market),
        "attempts": state.get("attempts", 0),
        "latency_s": round(time.perf_counter() - state.get("started", time.perf_counter()), 6),
        "usage": _sum_usage(state.get("responses", [])),
        "pending": state.get("pending"),
        "approval": state.get("approval"),
        "ts": ts,
        "as_of": as_of,
        "context_age_s": None if as_of is None else round(ts - as_of, 6),
        "reasoner_identity": identity,
    }


def _sum_usage(responses: list[dict[str, Any]]) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for r in responses:
        for k, v in (r.get("usage") or {}).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total or None


async def _audit(state: DecisionState, runtime: Runtime[AgentDeps]) -> Command[Any]:
    deps = runtime.context
    deps.record(_decision_record(state, deps, "decision"))
    if state.get("pending"):
        return Command(goto="approval")
    return Command(goto=END)


async def _approval(state: DecisionState, runtime: Runtime[AgentDeps]) -> dict[str, Any]:
    deps = runtime.context
    rid = state["pending"]
    pend = deps.applier.pending.get(rid or "")
    answer = interrupt(
        {
            "request_id": rid,
            "market": state["market"],
            "param": pend.param if pend else None,
            "value": pend.value if pend else None,
            "rationale": pend.rationale if pend else None,
        }
    )
    approved = bool(answer.get("approved", False)) if isinstance(answer, dict) else False
    reason = str(answer.get("reason", "")) if isinstance(answer, dict) else str(answer)
    by = str(answer.get("by", "governance")) if isinstance(answer, dict) else "governance"
    parsed = parse_call(
        "approve_change",
        {"request_id": rid, "approved": approved, "reason": reason or "no reason given"},
        GOVERNANCE_TOOLS,
    )
    if isinstance(parsed, ToolOutcome):
        outcome = parsed
    else:
        outcome = deps.applier.apply_governance(parsed, now=deps.now(), source=f"approval:{by}")
    verdict = "approved" if approved and outcome.verdict is Verdict.APPLIED else "denied"
    if approved and outcome.verdict is Verdict.REJECTED:
        verdict = "rejected"
    return {
        "approval": {
            "approved": approved,
            "reason": reason,
            "by": by,
            "outcome": outcome.as_dict(),
        },
        "outcomes": [outcome.as_dict()],
        "verdict": verdict,
        "pending": None,
    }


async def _audit_approval(state: DecisionState, runtime: Runtime[AgentDeps]) -> dict[str, Any]:
    deps = runtime.context
    phase = "approval" if state.get("approval") else "decision"
    deps.record(_decision_record(state, deps, phase))
    return {}


# -- graphs -------------------------------------------------------------------------------------


def build_market_graph(checkpointer: Any | None = None) -> Any:
    """The per-market agent graph; the checkpointer (in memory by default) serves interrupts."""
    g = StateGraph(DecisionState, context_schema=AgentDeps)
    g.add_node("context", _context)
    g.add_node("reason", _reason)
    g.add_node("apply", _apply, destinations=("reason", "audit"))
    g.add_node("audit", _audit, destinations=("approval", END))
    g.add_node("approval", _approval)
    g.add_node("audit_approval", _audit_approval)
    g.add_edge(START, "context")
    g.add_edge("context", "reason")
    g.add_edge("reason", "apply")
    g.add_edge("approval", "audit_approval")
    g.add_edge("audit_approval", END)
    return g.compile(checkpointer=checkpointer or InMemorySaver(), name="market_agent")


def build_governance_graph(checkpointer: Any | None = None) -> Any:
    """The governance graph over the portfolio summary (escalations and pending approvals)."""
    g = StateGraph(DecisionState, context_schema=AgentDeps)
    g.add_node("gather", _context)
    g.add_node("reason", _reason)
    g.add_node("apply", _apply, destinations=("reason", "audit"))
    g.add_node("audit", _audit_approval)
    g.add_edge(START, "gather")
    g.add_edge("audit", END)
    g.add_edge("gather", "reason")
    g.add_edge("reason", "apply")
    return g.compile(checkpointer=checkpointer or InMemorySaver(), name="governance_agent")
