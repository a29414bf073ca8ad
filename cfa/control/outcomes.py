"""What one tool call did: a verdict, a reason code when refused, and the changes it applied.

Every actor (a person through ``cfa govern``, a breaker, the governance agent, a market agent)
gets the same :class:`ToolOutcome` from the control plane; the audit store records it as is
(``tool_calls.status`` is the verdict, ``result.code`` the reason code).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `cfa govern` imports this module: keep it light
    from cfa.control.params import ParamChange


class Verdict(enum.StrEnum):
    APPLIED = "applied"
    KEPT = "keep"
    """Nothing to change: a ``keep`` call, or a change to the value already in force."""
    ESCALATED = "escalate"
    NO_ACTION = "no_action"
    """The governance agent looked and chose not to act."""
    REJECTED = "rejected"
    NEEDS_APPROVAL = "needs_approval"


class Code(enum.StrEnum):
    """Rejection reason codes (``tool_calls.result.code``)."""

    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    NOT_ALLOWED = "not_allowed"
    """The tool is not this actor's, or it would undo what a higher-ranked actor did."""
    UNKNOWN_MARKET = "unknown_market"
    OUT_OF_BOUNDS = "out_of_bounds"
    STEP_TOO_LARGE = "step_too_large"
    COOLDOWN = "cooldown"
    FROZEN = "frozen"
    OVERRIDDEN = "overridden"
    UNKNOWN_REQUEST = "unknown_request"
    """No pending request with that id (never made, already decided or expired)."""
    SUPERSEDED = "superseded"
    """The parameter changed after the request was made: the request no longer applies."""
    HALTED = "halted"
    STALE = "stale"
    """The answer came more than ``agents.max_answer_age_s`` after its context."""
    EXTRA_CALL = "extra_call"
    """Beyond ``agents.max_calls_per_answer``: not applied."""
    AWAITING_PERSON = "awaiting_person"
    """A change of this parameter already waits for a person (``agents.approvals: person``):
    the question stays as it was asked until they answer or it expires."""


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call did. ``changes`` lists the applied parameter changes."""

    tool: str
    arguments: dict[str, Any]
    verdict: Verdict
    code: Code | None = None
    message: str = ""
    changes: tuple[ParamChange, ...] = ()
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is not Verdict.REJECTED

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "arguments": self.arguments,
            "verdict": self.verdict.value,
            "code": None if self.code is None else self.code.value,
            "message": self.message,
            "changes": [
                {"param": c.param, "old": c.old, "new": c.new, "market": c.ticker}
                for c in self.changes
            ],
            "request_id": self.request_id,
        }


def reject(name: str, arguments: Any, code: Code, message: str) -> ToolOutcome:
    """A rejection of ``name`` naming what is wrong; non-dict arguments are kept as text."""
    args = arguments if isinstance(arguments, dict) else {"_raw": str(arguments)[:2000]}
    return ToolOutcome(name, args, Verdict.REJECTED, code, message)
