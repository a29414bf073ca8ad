"""The decision record: what one agent decision saw, said and did, as the audit stores it.

One :class:`DecisionRecord` per decision (the audit store's ``decisions.payload`` is its JSON);
the graphs build it (:mod:`cfa.agents.graphs`) and the agent runtime records it. Times are the
session clock's epoch seconds: ``as_of`` when the context was taken, ``ts`` when the tool calls
were validated and applied, ``context_age_s = ts - as_of`` (0 inline, the charged latency in
lockstep, however late the answer came in the background). ``responses`` has one entry per
reasoner call (raw text, tool calls, ``usage`` tokens or None when nothing was charged,
``cache`` ``"hit"``/``"miss"``/None, ``request_sha256``: the LLM cache key of the request);
``outcomes`` one :meth:`cfa.control.outcomes.ToolOutcome.as_dict` per tool call.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Verdict = Literal[
    "applied",
    "keep",
    "escalate",
    "no_action",
    "pending_approval",
    "rejected",
    "stale",
    "abstain",
]


class DecisionRecord(BaseModel):
    """One decision. Immutable; ``model_dump(mode="json")`` is the stored payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_id: str
    market: str
    """The market's ticker; empty for the governance agent."""
    agent: Literal["market", "governance"]
    phase: Literal["decision"] = "decision"
    reasoner: str
    model: str | None
    prompt_hash: str
    context: dict[str, Any] | None
    responses: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    verdict: Verdict
    params_before: dict[str, float] | None
    params_after: dict[str, float]
    attempts: int
    latency_s: float
    """Wall seconds the decision took, reasoner calls included."""
    usage: dict[str, int] | None
    pending: str | None
    """The approval request id when the verdict is ``pending_approval``."""
    ts: float
    as_of: float | None
    context_age_s: float | None
    reasoner_identity: dict[str, Any] | None
    expired: bool = False
    """A lockstep decision the run ended before (the reasoner was not called)."""
    note: str | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON-able ``decisions.payload``."""
        return self.model_dump(mode="json")
