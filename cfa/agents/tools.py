"""Typed tool calls and the one apply path that validates them.

Agents (and people, through ``cfa govern``) act only through these tools. Each tool is a pydantic
model with a strict JSON schema (``extra="forbid"``, no NaN or infinities, numbers must be
numbers). :func:`parse_call` turns a raw call (name + JSON arguments) into a model or a
:class:`ToolOutcome` rejection; :class:`ToolApplier` validates a parsed call against the policy
and the governance state and applies it. No other code path changes γ or σ; nothing here can
change a policy limit.

Market-agent tools: ``set_gamma``, ``set_sigma``, ``keep``, ``escalate``.
Governance tools: ``freeze``, ``unfreeze``, ``override``, ``halt``, ``resume``, ``reduce_only``,
``approve_change``.

Units: γ in 1/dollar, σ in logit units per √second, ``ttl_s`` in seconds.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cfa.core.types import TradingState
from cfa.risk.states import TradingStates
from cfa.runtime.params import ParamChange, ParameterStore

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
    """Approve or deny a pending parameter change that exceeded the approval threshold."""

    request_id: str = Field(min_length=1)
    approved: bool
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
}


def tool_schemas(tools: Mapping[str, type[_Tool]]) -> list[dict[str, Any]]:
    """OpenAI Chat Completions strict function tools for ``tools``."""
    from openai import pydantic_function_tool

    return [
        dict(pydantic_function_tool(model, name=name, description=(model.__doc__ or "").strip()))
        for name, model in tools.items()
    ]


# -- outcomes -----------------------------------------------------------------------------------


class Verdict(enum.StrEnum):
    APPLIED = "applied"
    KEPT = "keep"
    ESCALATED = "escalate"
    REJECTED = "rejected"
    NEEDS_APPROVAL = "needs_approval"


class Code(enum.StrEnum):
    """Rejection reason codes."""

    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_MARKET = "unknown_market"
    OUT_OF_BOUNDS = "out_of_bounds"
    STEP_TOO_LARGE = "step_too_large"
    COOLDOWN = "cooldown"
    FROZEN = "frozen"
    OVERRIDDEN = "overridden"
    UNKNOWN_REQUEST = "unknown_request"
    HALTED = "halted"


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


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    args: _Tool
    raw_arguments: dict[str, Any]


def _reject(name: str, arguments: Any, code: Code, message: str) -> ToolOutcome:
    args = arguments if isinstance(arguments, dict) else {"_raw": str(arguments)[:2000]}
    return ToolOutcome(name, args, Verdict.REJECTED, code, message)


def parse_call(
    name: str, arguments: str | Mapping[str, Any], allowed: Mapping[str, type[_Tool]]
) -> ParsedCall | ToolOutcome:
    """Validate a raw tool call; returns the parsed call or a rejection naming what is wrong."""
    if isinstance(arguments, str):
        try:
            data = json.loads(arguments, parse_constant=_raise_constant)
        except (ValueError, TypeError) as exc:
            return _reject(
                name, arguments, Code.INVALID_ARGUMENTS, f"arguments are not valid JSON: {exc}"
            )
    else:
        data = dict(arguments)
    if not isinstance(data, dict):
        return _reject(name, data, Code.INVALID_ARGUMENTS, "arguments must be a JSON object")
    model = allowed.get(name)
    if model is None:
        known = MARKET_TOOLS.keys() | GOVERNANCE_TOOLS.keys()
        code = Code.NOT_ALLOWED if name in known else Code.UNKNOWN_TOOL
        return _reject(
            name, data, code, f"tool {name!r} is not available here; use one of {sorted(allowed)}"
        )
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '<args>'}: {e['msg']}" for e in exc.errors()
        )
        return _reject(name, data, Code.INVALID_ARGUMENTS, problems)
    return ParsedCall(name, parsed, data)


def _raise_constant(c: str) -> Any:
    raise ValueError(f"{c} is not a number")


_STATE_OF: dict[type[_Tool], TradingState] = {
    Halt: TradingState.HALTED,
    Resume: TradingState.ACTIVE,
    ReduceOnly: TradingState.REDUCE_ONLY,
}

# -- the apply path -----------------------------------------------------------------------------


@dataclass(slots=True)
class PendingChange:
    """A change waiting for governance approval."""

    request_id: str
    market: str
    param: str
    value: float
    rationale: str
    source: str
    ts: float


@dataclass(slots=True)
class ToolApplier:
    """The one place where tool calls take effect. Bounds come from the store's policy."""

    params: ParameterStore
    states: TradingStates
    pending: dict[str, PendingChange] = field(default_factory=dict)
    next_expiry: float = math.inf
    """Earliest override expiry (epoch seconds): callers skip :meth:`expire_overrides` before it."""
    _next_request: int = 0

    # market agents ----------------------------------------------------------------------------

    def apply_market(
        self, call: ParsedCall, market: str, *, now: float, source: str
    ) -> ToolOutcome:
        """Validate and apply a market-agent call for ``market``."""
        name, args = call.name, call.args
        if isinstance(args, Keep):
            return ToolOutcome(name, call.raw_arguments, Verdict.KEPT, message=args.rationale)
        if isinstance(args, Escalate):
            return ToolOutcome(name, call.raw_arguments, Verdict.ESCALATED, message=args.reason)
        if not isinstance(args, SetGamma | SetSigma):
            return _reject(name, call.raw_arguments, Code.NOT_ALLOWED, "not a market-agent tool")
        param = "gamma" if isinstance(args, SetGamma) else "sigma"
        return self._change(
            name, call.raw_arguments, market, param, args.value, args.rationale, now, source
        )

    def _change(
        self,
        name: str,
        raw: dict[str, Any],
        market: str,
        param: str,
        value: float,
        rationale: str,
        now: float,
        source: str,
        approved: bool = False,
    ) -> ToolOutcome:
        try:
            mp = self.params.get(market)
        except KeyError:
            return _reject(name, raw, Code.UNKNOWN_MARKET, f"unknown market {market!r}")
        bounds = getattr(self.params.policy.params, param)
        if self.states.effective(market) is TradingState.HALTED:
            return _reject(name, raw, Code.HALTED, f"{market} is halted")
        if param in mp.frozen:
            return _reject(name, raw, Code.FROZEN, f"{param} is frozen by governance")
        expiry = mp.overrides.get(param)
        if expiry is not None and expiry > now:
            return _reject(name, raw, Code.OVERRIDDEN, f"{param} is overridden until {expiry:.0f}")
        if not (math.isfinite(value) and bounds.min <= value <= bounds.max):
            return _reject(
                name,
                raw,
                Code.OUT_OF_BOUNDS,
                f"{param}={value:g} outside [{bounds.min:g}, {bounds.max:g}]",
            )
        old = getattr(mp, param)
        step = abs(value / old - 1.0)
        if step > bounds.max_step + 1e-12:
            lo, hi = old * (1 - bounds.max_step), old * (1 + bounds.max_step)
            return _reject(
                name,
                raw,
                Code.STEP_TOO_LARGE,
                f"{param} may move at most {bounds.max_step:.0%} per call: "
                f"stay within [{lo:.6g}, {hi:.6g}]",
            )
        last = mp.changed_at.get(param)
        if last is not None and now - last < bounds.cooldown_s and not approved:
            wait = bounds.cooldown_s - (now - last)
            return _reject(
                name, raw, Code.COOLDOWN, f"{param} changed {now - last:.0f}s ago; wait {wait:.0f}s"
            )
        if not approved and bounds.approval_step is not None and step > bounds.approval_step:
            self._next_request += 1
            rid = f"{market}:{param}:{self._next_request}"
            self.pending[rid] = PendingChange(rid, market, param, value, rationale, source, now)
            return ToolOutcome(
                name,
                raw,
                Verdict.NEEDS_APPROVAL,
                message=f"a {step:.0%} change of {param} needs governance approval",
                request_id=rid,
            )
        change = self.params.set(market, param, value, source=source, reason=rationale, now=now)
        return ToolOutcome(name, raw, Verdict.APPLIED, changes=(change,))

    # governance -------------------------------------------------------------------------------

    def apply_governance(self, call: ParsedCall, *, now: float, source: str) -> ToolOutcome:
        """Validate and apply a governance call (from the governance agent or a person)."""
        name, args, raw = call.name, call.args, call.raw_arguments
        markets = self.params.markets()
        target = getattr(args, "market", None)
        if target is not None and target not in markets:
            return _reject(
                name, raw, Code.UNKNOWN_MARKET, f"unknown market {target!r}; known: {markets}"
            )
        if isinstance(args, Freeze | Unfreeze):
            mp = self.params.get(args.market)
            names = {"gamma", "sigma"} if args.param == "all" else {args.param}
            frozen = mp.frozen | names if isinstance(args, Freeze) else mp.frozen - names
            self.params.replace(args.market, replace(mp, frozen=frozenset(frozen)))
            return ToolOutcome(name, raw, Verdict.APPLIED, message=args.reason)
        if isinstance(args, Override):
            return self._override(args, raw, now, source)
        if isinstance(args, Halt | Resume | ReduceOnly):
            state = {
                Halt: TradingState.HALTED,
                Resume: TradingState.ACTIVE,
                ReduceOnly: TradingState.REDUCE_ONLY,
            }[type(args)]
            if args.market is None and isinstance(args, Resume):
                for t in markets:
                    self.states.set(t, state, source=source, reason=args.reason)
            self.states.set(args.market, state, source=source, reason=args.reason)
            return ToolOutcome(name, raw, Verdict.APPLIED, message=args.reason)
        if isinstance(args, ApproveChange):
            pend = self.pending.pop(args.request_id, None)
            if pend is None:
                return _reject(
                    name, raw, Code.UNKNOWN_REQUEST, f"no pending change {args.request_id!r}"
                )
            if not args.approved:
                return ToolOutcome(name, raw, Verdict.APPLIED, message=f"denied: {args.reason}")
            return self._change(
                name,
                raw,
                pend.market,
                pend.param,
                pend.value,
                f"{pend.rationale} (approved: {args.reason})",
                now,
                pend.source,
                approved=True,
            )
        return _reject(name, raw, Code.NOT_ALLOWED, "not a governance tool")

    def _override(
        self, args: Override, raw: dict[str, Any], now: float, source: str
    ) -> ToolOutcome:
        mp = self.params.get(args.market)
        wanted = {p: v for p, v in (("gamma", args.gamma), ("sigma", args.sigma)) if v is not None}
        if not wanted:
            return _reject("override", raw, Code.INVALID_ARGUMENTS, "give gamma and/or sigma")
        for p, v in wanted.items():
            b = getattr(self.params.policy.params, p)
            if not b.contains(v):
                return _reject(
                    "override", raw, Code.OUT_OF_BOUNDS, f"{p}={v:g} outside [{b.min:g}, {b.max:g}]"
                )
        changes = []
        for p, v in wanted.items():
            previous = getattr(self.params.get(args.market), p)
            changes.append(
                self.params.set(
                    args.market,
                    p,
                    v,
                    source=source,
                    reason=f"override {args.ttl_s:g}s: {args.reason}",
                    now=now,
                )
            )
            mp = self.params.get(args.market)
            self.params.replace(
                args.market,
                replace(
                    mp,
                    overrides={**mp.overrides, p: now + args.ttl_s},
                    reverts={**mp.reverts, p: previous},
                ),
            )
            self.next_expiry = min(self.next_expiry, now + args.ttl_s)
        return ToolOutcome(
            "override", raw, Verdict.APPLIED, message=args.reason, changes=tuple(changes)
        )

    def expire_overrides(self, now: float) -> list[ParamChange]:
        """Revert every override whose ttl has passed; returns the reverting changes."""
        out: list[ParamChange] = []
        soonest = math.inf
        for market in self.params.markets():
            mp = self.params.get(market)
            for p, expiry in list(mp.overrides.items()):
                if expiry > now:
                    soonest = min(soonest, expiry)
                    continue
                mp = self.params.get(market)
                value = mp.reverts.get(p, getattr(mp, p))
                overrides = {k: v for k, v in mp.overrides.items() if k != p}
                reverts = {k: v for k, v in mp.reverts.items() if k != p}
                self.params.replace(market, replace(mp, overrides=overrides, reverts=reverts))
                out.append(
                    self.params.set(
                        market,
                        p,
                        value,
                        source="override_expired",
                        reason="override ttl elapsed",
                        now=now,
                    )
                )
        self.next_expiry = soonest
        return out
