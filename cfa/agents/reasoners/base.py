"""The reasoner interface: one async call from a context summary to raw tool calls.

A reasoner never applies anything: it proposes tool calls; the graph parses and validates them
(:func:`cfa.control.tools.parse_call`) and applies them through the one apply path. A reasoner
that cannot produce a usable answer (timeout, HTTP error, prose with no tool call, refusal)
returns a :class:`ReasonResponse` with ``error`` set: the caller records an *abstain* and the
parameters stay. Reasoners must not raise for such failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

Role = Literal["market", "governance"]


@dataclass(frozen=True, slots=True)
class RawCall:
    """A tool call as the reasoner produced it: ``arguments`` is the JSON text, unvalidated."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Feedback:
    """A previous attempt and why it was rejected, for the one retry."""

    calls: tuple[RawCall, ...]
    error: str


@dataclass(frozen=True, slots=True)
class ReasonRequest:
    """Everything a reasoner sees for one decision.

    ``context`` is the JSON-able summary (market text inside it is untrusted data);
    ``tools`` maps tool name -> pydantic model; ``system_prompt`` is the rendered template.
    """

    role: Role
    market: str | None
    system_prompt: str
    context: Mapping[str, Any]
    tools: Mapping[str, type[BaseModel]]
    feedback: Feedback | None = None


@dataclass(frozen=True, slots=True)
class ReasonResponse:
    """What came back. ``error`` set means abstain; ``raw`` is stored verbatim in the audit."""

    calls: tuple[RawCall, ...]
    raw: str
    text: str = ""
    model: str | None = None
    usage: Mapping[str, int] | None = None
    latency_s: float = 0.0
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Reasoner(Protocol):
    """``name`` is the backend ("heuristic", "openai", "scripted"); ``model`` what it runs.

    Optional: ``cache_identity() -> Mapping[str, Any]``, what besides the request determines
    the answer (model, endpoint host, sampling settings; never a secret). Reasoners that have
    it get an LLM-cache key recorded with every answer
    (:class:`cfa.agents.reasoners.cache.HasIdentity`). Optional ``background: bool``: True for a
    reasoner whose answers take real time (a remote LLM); the agent runtime then runs its
    decisions as background tasks instead of awaiting them at the event (default False).
    """

    name: str
    model: str | None

    async def reason(self, request: ReasonRequest) -> ReasonResponse: ...

    async def aclose(self) -> None: ...
