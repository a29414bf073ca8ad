"""LangGraph graphs: the per-market agent and the governance agent.

Market agent (one thread per market) and governance agent::

    context → reason → apply ─(nothing applied, a call rejected, first attempt)→ reason
                         └→ audit → END

Nodes reach the reasoner, the control plane and the audit hook through the run-scoped
:class:`AgentDeps` (``Runtime[AgentDeps]``, LangGraph 1.x). A reasoner failure or an answer with
no usable tool call ends the decision as an *abstain*: nothing changes and the abstain is
audited. At most ``agents.max_calls_per_answer`` calls of one answer are applied; the others
are rejected as ``extra_call`` and the retry message says exactly which applied. A change that
needs approval ends the decision as ``pending_approval``: the request waits in the control
plane under its id (:mod:`cfa.control.approvals`) for the governance agent or a person, and no
graph waits on it, so a later decision on the same thread cannot pick up someone else's answer.

Each decision ends in one :class:`cfa.agents.records.DecisionRecord` handed to
:attr:`AgentDeps.record` (context, ``as_of`` and ``ts``, every reasoner response, every tool
outcome, the verdict, parameters before and after).

The input state may carry ``snapshot`` (a context taken earlier) and ``as_of`` (its time): the
context node then uses the snapshot instead of building a context now (lockstep scheduling,
:class:`cfa.runtime.agents.AgentRuntime`).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from cfa.agents.reasoners.base import Feedback, RawCall, Reasoner, ReasonRequest
from cfa.agents.reasoners.cache import HasIdentity, reasoner_identity, request_key
from cfa.agents.records import DecisionRecord
from cfa.control.outcomes import Code, ToolOutcome, Verdict, reject
from cfa.control.plane import ControlPlane
from cfa.control.tools import GOVERNANCE_TOOLS, MARKET_TOOLS, parse_call

MAX_ATTEMPTS = 2
"""One try plus one retry after a rejection."""


@dataclass(frozen=True)
class AgentDeps:
    """Run-scoped dependencies of both graphs."""

    reasoner: Reasoner
    control: ControlPlane
    prompt: str
    prompt_hash: str
    now: Callable[[], float]
    build_context: Callable[[str], Mapping[str, Any]]
    """Market agent: ticker -> context dict. Governance: '*' -> portfolio dict."""
    record: Callable[[DecisionRecord], None]
    """Receives the finished decision record."""
    source: str
    """Who acts: ``agent:market:<reasoner>`` or ``agent:governance:<reasoner>``."""


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


def params_of(control: ControlPlane, market: str) -> dict[str, float]:
    """γ and σ of ``market`` (``"*"``: every market's, keyed ``TICKER.param``)."""
    if market == "*":
        return {
            f"{t}.{p}": getattr(control.params.get(t), p)
            for t in control.params.markets()
            for p in ("gamma", "sigma")
        }
    mp = control.params.get(market)
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
        "params_before": params_of(deps.control, market),
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
    if resp["error"] is not None or not calls:
        return Command(update={"verdict": "abstain", "last_outcomes": []}, goto="audit")
    now = deps.now()
    allowed = MARKET_TOOLS if role == "market" else GOVERNANCE_TOOLS
    market = state["market"] if role == "market" else None
    limit = deps.control.policy.agents.max_calls_per_answer
    outcomes: list[ToolOutcome] = []
    for i, c in enumerate(calls):
        parsed = parse_call(c["name"], c["arguments"], allowed)
        if isinstance(parsed, ToolOutcome):
            outcomes.append(parsed)
        elif sum(o.ok for o in outcomes) >= limit or i >= limit:
            outcomes.append(
                reject(
                    c["name"],
                    parsed.raw_arguments,
                    Code.EXTRA_CALL,
                    f"not applied: at most {limit} call(s) of one answer are applied",
                )
            )
        else:
            outcomes.append(
                deps.control.apply(
                    parsed, source=deps.source, now=now, market=market, as_of=state.get("as_of")
                )
            )
    dicts = [o.as_dict() for o in outcomes]
    rejected = [o for o in outcomes if o.code not in (None, Code.EXTRA_CALL, Code.STALE)]
    if not any(o.ok for o in outcomes) and rejected and state.get("attempts", 1) < MAX_ATTEMPTS:
        return Command(
            update={
                "outcomes": dicts,
                "feedback": {"calls": calls, "error": _feedback(outcomes)},
                "last_outcomes": dicts,
            },
            goto="reason",
        )
    pending = next((o.request_id for o in outcomes if o.verdict is Verdict.NEEDS_APPROVAL), None)
    return Command(
        update={
            "outcomes": dicts,
            "verdict": _verdict(outcomes),
            "pending": pending,
            "last_outcomes": dicts,
        },
        goto="audit",
    )


def _feedback(outcomes: list[ToolOutcome]) -> str:
    """The retry message: each call of the answer, numbered, and what became of it."""
    parts = []
    for i, o in enumerate(outcomes, 1):
        if o.ok:
            parts.append(f"call {i} {o.tool}: {o.verdict.value}")
        else:
            parts.append(f"call {i} {o.tool}: not applied ({o.code}): {o.message}")
    return "; ".join(parts) + ". Nothing was applied."


def _verdict(outcomes: list[ToolOutcome]) -> str:
    kinds = {o.verdict for o in outcomes}
    if any(o.code is Code.STALE for o in outcomes) and not any(o.ok for o in outcomes):
        return "stale"
    for v in (
        Verdict.NEEDS_APPROVAL,
        Verdict.APPLIED,
        Verdict.ESCALATED,
        Verdict.KEPT,
        Verdict.NO_ACTION,
    ):
        if v in kinds:
            return "pending_approval" if v is Verdict.NEEDS_APPROVAL else v.value
    return "rejected"


def _decision_record(state: DecisionState, deps: AgentDeps) -> DecisionRecord:
    market = state["market"]
    ts = deps.now()
    as_of = state.get("as_of")
    identity = reasoner_identity(deps.reasoner) if isinstance(deps.reasoner, HasIdentity) else None
    return DecisionRecord(
        decision_id=state["decision_id"],
        market="" if market == "*" else market,
        agent=state["role"],
        reasoner=deps.reasoner.name,
        model=deps.reasoner.model,
        prompt_hash=deps.prompt_hash,
        context=state.get("context"),
        responses=state.get("responses", []),
        outcomes=state.get("outcomes", []),
        verdict=state.get("verdict", "abstain"),  # type: ignore[arg-type]
        params_before=state.get("params_before"),
        params_after=params_of(deps.control, market),
        attempts=state.get("attempts", 0),
        latency_s=round(time.perf_counter() - state.get("started", time.perf_counter()), 6),
        usage=_sum_usage(state.get("responses", [])),
        pending=state.get("pending"),
        ts=ts,
        as_of=as_of,
        context_age_s=None if as_of is None else round(ts - as_of, 6),
        reasoner_identity=dict(identity) if identity is not None else None,
    )


def _sum_usage(responses: list[dict[str, Any]]) -> dict[str, int] | None:
    total: dict[str, int] = {}
    for r in responses:
        for k, v in (r.get("usage") or {}).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total or None


async def _audit(state: DecisionState, runtime: Runtime[AgentDeps]) -> dict[str, Any]:
    deps = runtime.context
    deps.record(_decision_record(state, deps))
    return {}


# -- graphs -------------------------------------------------------------------------------------


def _build(name: str, checkpointer: Any | None) -> Any:
    g = StateGraph(DecisionState, context_schema=AgentDeps)
    g.add_node("context", _context)
    g.add_node("reason", _reason)
    g.add_node("apply", _apply, destinations=("reason", "audit"))
    g.add_node("audit", _audit)
    g.add_edge(START, "context")
    g.add_edge("context", "reason")
    g.add_edge("reason", "apply")
    g.add_edge("audit", END)
    return g.compile(checkpointer=checkpointer or InMemorySaver(), name=name)


def build_market_graph(checkpointer: Any | None = None) -> Any:
    """The per-market agent graph (one thread per market)."""
    return _build("market_agent", checkpointer)


def build_governance_graph(checkpointer: Any | None = None) -> Any:
    """The governance graph over the portfolio summary (escalations and pending approvals)."""
    return _build("governance_agent", checkpointer)
