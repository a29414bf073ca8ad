"""The typed tools every actor acts through, and the parser that validates raw calls.

Each tool is a pydantic model with a strict JSON schema (``extra="forbid"``, no NaN or
infinities, numbers must be numbers). :func:`parse_call` turns a raw call (name + JSON
arguments) into a :class:`ParsedCall` or a rejection naming what is wrong; the control plane
(:class:`cfa.control.plane.ControlPlane`) decides whether the caller may do it. Nothing here can
change a policy limit.

Market-agent tools: ``set_gamma``, ``set_sigma``, ``keep``, ``escalate``.
Governance tools (the governance agent and people): ``freeze``, ``unfreeze``, ``override``,
``halt``, ``resume``, ``reduce_only``, ``approve_change``, and ``no_action`` (the governance
agent may look and do nothing).

Units: γ in 1/dollar, σ in logit units per √second, ``ttl_s`` in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cfa.control.outcomes import Code, ToolOutcome, reject

# -- tool schemas -------------------------------------------------------------------------------


class _Tool(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class SetGamma(_Tool):
    """Set this market's risk aversion γ (1/dollar): higher γ, wider quotes and more skew."""

    value: float = Field(gt=0, description="New γ in 1/dollar; must lie inside the policy bounds.")
    rationale: str = Field(min_length=1, max_length=2000, description="Why, citing summary fields.")


class SetSigma(_Tool):
    """Set this market's σ of logit(mid) per √second: higher σ, wider and more skewed quotes."""

    value: float = Field(
        gt=0, description="New σ in logit units per √second; inside the policy bounds."
    )
    rationale: str = Field(min_length=1, max_length=2000, description="Why, citing summary fields.")


class Keep(_Tool):
    """Keep the current parameters."""

    rationale: str = Field(min_length=1, max_length=2000, description="Why no change is needed.")


class Escalate(_Tool):
    """Ask the governance agent to look at this market."""

    reason: str = Field(min_length=1, max_length=2000)


class Freeze(_Tool):
    """Freeze a parameter of a market: agents may not change it until unfrozen."""

    market: str = Field(min_length=1)
    param: Literal["gamma", "sigma", "all"]
    reason: str = Field(min_length=1, max_length=2000)


class Unfreeze(_Tool):
    """Let agents change a frozen parameter again."""

    market: str = Field(min_length=1)
    param: Literal["gamma", "sigma", "all"]
    reason: str = Field(min_length=1, max_length=2000)


class Override(_Tool):
    """Force γ and/or σ of a market for ``ttl_s`` seconds (inside policy bounds); then revert."""

    market: str = Field(min_length=1)
    gamma: float | None = Field(description="Forced γ (1/dollar), or null to leave γ alone.")
    sigma: float | None = Field(description="Forced σ (logit per √s), or null to leave σ alone.")
    ttl_s: float = Field(gt=0, le=86_400, description="How long the override lasts, seconds.")
    reason: str = Field(min_length=1, max_length=2000)


class Halt(_Tool):
    """Halt a market (or every market with market = null): cancel all orders, place none."""

    market: str | None
    reason: str = Field(min_length=1, max_length=2000)


class Resume(_Tool):
    """Return a market (or all, market = null) to ACTIVE."""

    market: str | None
    reason: str = Field(min_length=1, max_length=2000)


class ReduceOnly(_Tool):
    """Allow only orders that reduce the position in a market (or all, market = null)."""

    market: str | None
    reason: str = Field(min_length=1, max_length=2000)


class ApproveChange(_Tool):
    """Approve or deny a pending parameter change (by its request id) that needs approval."""

    request_id: str = Field(min_length=1)
    approved: bool
    reason: str = Field(min_length=1, max_length=2000)


class NoAction(_Tool):
    """Look and do nothing: nothing needs governance now."""

    reason: str = Field(min_length=1, max_length=2000)


MARKET_TOOLS: dict[str, type[_Tool]] = {
    "set_gamma": SetGamma,
    "set_sigma": SetSigma,
    "keep": Keep,
    "escalate": Escalate,
}
GOVERNANCE_TOOLS: dict[str, type[_Tool]] = {
    "freeze": Freeze,
    "unfreeze": Unfreeze,
    "override": Override,
    "halt": Halt,
    "resume": Resume,
    "reduce_only": ReduceOnly,
    "approve_change": ApproveChange,
    "no_action": NoAction,
}


def tool_schemas(tools: Mapping[str, type[_Tool]]) -> list[dict[str, Any]]:
    """OpenAI Chat Completions strict function tools for ``tools``."""
    from openai import pydantic_function_tool

    return [
        dict(pydantic_function_tool(model, name=name, description=(model.__doc__ or "").strip()))
        for name, model in tools.items()
    ]


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """A call whose arguments passed its schema (not yet checked against policy or state)."""

    name: str
    args: _Tool
    raw_arguments: dict[str, Any]


def parse_call(
    name: str, arguments: str | Mapping[str, Any], allowed: Mapping[str, type[_Tool]]
) -> ParsedCall | ToolOutcome:
    """Validate a raw tool call; returns the parsed call or a rejection naming what is wrong."""
    if isinstance(arguments, str):
        try:
            data = json.loads(arguments, parse_constant=_raise_constant)
        except (ValueError, TypeError) as exc:
            return reject(
                name, arguments, Code.INVALID_ARGUMENTS, f"arguments are not valid JSON: {exc}"
            )
    else:
        data = dict(arguments)
    if not isinstance(data, dict):
        return reject(name, data, Code.INVALID_ARGUMENTS, "arguments must be a JSON object")
    model = allowed.get(name)
    if model is None:
        known = MARKET_TOOLS.keys() | GOVERNANCE_TOOLS.keys()
        code = Code.NOT_ALLOWED if name in known else Code.UNKNOWN_TOOL
        return reject(
            name, data, code, f"tool {name!r} is not available here; use one of {sorted(allowed)}"
        )
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '<args>'}: {e['msg']}" for e in exc.errors()
        )
        return reject(name, data, Code.INVALID_ARGUMENTS, problems)
    return ParsedCall(name, parsed, data)


def _raise_constant(c: str) -> Any:
    raise ValueError(f"{c} is not a number")
