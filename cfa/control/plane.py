"""The one apply path: every change of γ, σ, freezes, overrides, approvals and trading states.

People (``cfa govern``), the governance agent and market agents all call
:meth:`ControlPlane.apply` with a parsed tool call and the *source* that acts; breakers set
trading states directly, as holds (:mod:`cfa.risk.states`) that only those who outrank them lift.
Precedence (``docs/control.md``): person > breaker > governance agent > market agent.

Rules, in the order they are checked:

* **Who may call what.** Market agents: ``set_gamma``, ``set_sigma``, ``keep``, ``escalate``, for
  their own market only. The governance agent and people: the governance tools.
* **Stale answers.** An agent answer applied more than ``agents.max_answer_age_s`` after its
  context was taken (``as_of``) is rejected (``stale``).
* **Lifting.** An actor may lift a halt or reduce-only, unfreeze, or replace an override only if
  it ranks at least as high as whoever set it: only a person lifts a person's halt, freeze or
  override, or a breaker's halt.
* **Agents' changes** (a market agent's ``set_*``, the governance agent's ``override``): inside
  the policy bounds; at most ``max_step`` per call; not within ``cooldown_s`` of the parameter's
  last change; a step above ``approval_step``, or a cumulative move beyond ``window_factor`` of
  any value in force during the last ``window_s``, waits for approval (a market agent's by the
  governance agent or a person, the governance agent's by a person). A market agent may not
  change a frozen or overridden parameter or trade a halted market.
* **People** are held to the policy bounds only.
* A change to the value already in force is a ``keep``: nothing recorded, no cooldown started.

Overrides stack: the newest in force sets the value; when the last one expires the parameter
returns to its value before the first. Approvals are keyed by request id
(:mod:`cfa.control.approvals`), expire after ``agents.approval_ttl_s``, respect the cooldown and
apply nothing once the parameter has moved on. A new request for a parameter that already has
one replaces it (``approval_superseded``) — except under ``agents.approvals: person``, where
people decide: then the first request stands until it is answered or expires, and the new one
is rejected (``awaiting_person``), so the question does not change under the person's eyes.
Every request, decision and expiry is reported to ``on_event`` for the audit store.

Units: γ in 1/dollar, σ in logit units per √second, times in epoch seconds of the session clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cfa.control.approvals import Approvals, PendingChange
from cfa.control.outcomes import Code, ToolOutcome, Verdict, reject
from cfa.control.params import ParamChange, ParameterStore
from cfa.control.tools import (
    ApproveChange,
    Escalate,
    Freeze,
    Halt,
    Keep,
    NoAction,
    Override,
    ParsedCall,
    ReduceOnly,
    Resume,
    SetGamma,
    SetSigma,
    Unfreeze,
)
from cfa.core.types import TradingState
from cfa.risk.actors import Actor
from cfa.risk.policy import ParamBounds
from cfa.risk.states import TradingStates

ControlEvent = Callable[[str, dict[str, Any]], None]
"""``(kind, payload)``: ``approval_requested``, ``approval_decided``, ``approval_expired``,
``approval_superseded``."""

_TUNABLE = ("gamma", "sigma")


@dataclass(frozen=True, slots=True)
class _Override:
    value: float
    expires: float
    source: str


class ControlPlane:
    """Applies tool calls for every actor, inside the policy, in order of precedence."""

    def __init__(
        self,
        params: ParameterStore,
        states: TradingStates,
        on_event: ControlEvent | None = None,
    ) -> None:
        self.params = params
        self.states = states
        self.policy = params.policy
        self.approvals = Approvals()
        self._on_event = on_event
        self._frozen_by: dict[tuple[str, str], str] = {}
        self._overrides: dict[tuple[str, str], list[_Override]] = {}
        self._base: dict[tuple[str, str], float] = {}
        self._history: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self.next_expiry = math.inf
        """Earliest override or approval expiry: callers skip :meth:`expire` before it."""

    # -- entry point ---------------------------------------------------------------------------

    def apply(
        self,
        call: ParsedCall,
        *,
        source: str,
        now: float,
        market: str | None = None,
        as_of: float | None = None,
    ) -> ToolOutcome:
        """Validate and apply one call by ``source`` (see the module docstring).

        ``market`` is the market agent's own market (ignored for governance tools, which name
        theirs); ``as_of`` the time the agent's context was taken, for the staleness check.
        """
        actor = Actor.of(source)
        name, args, raw = call.name, call.args, call.raw_arguments
        if actor.is_agent and as_of is not None:
            age = now - as_of
            limit = self.policy.agents.max_answer_age_s
            if age > limit:
                return reject(
                    name,
                    raw,
                    Code.STALE,
                    f"answer is {age:.0f}s older than its context; "
                    f"answers older than {limit:g}s are not applied",
                )
        if isinstance(args, Keep | Escalate | SetGamma | SetSigma):
            if actor is not Actor.MARKET_AGENT or market is None:
                return reject(name, raw, Code.NOT_ALLOWED, f"{name} is a market-agent tool")
            if isinstance(args, Keep):
                return ToolOutcome(name, raw, Verdict.KEPT, message=args.rationale)
            if isinstance(args, Escalate):
                return ToolOutcome(name, raw, Verdict.ESCALATED, message=args.reason)
            param = "gamma" if isinstance(args, SetGamma) else "sigma"
            return self._agent_change(
                name, raw, market, param, args.value, args.rationale, now, source
            )
        if actor is Actor.MARKET_AGENT:
            return reject(name, raw, Code.NOT_ALLOWED, f"{name} is not a market-agent tool")
        target = getattr(args, "market", None)
        if target is not None and target not in self.params.markets():
            return reject(
                name,
                raw,
                Code.UNKNOWN_MARKET,
                f"unknown market {target!r}; known: {self.params.markets()}",
            )
        if isinstance(args, NoAction):
            return ToolOutcome(name, raw, Verdict.NO_ACTION, message=args.reason)
        if isinstance(args, Freeze | Unfreeze):
            return self._freeze(name, raw, args, source)
        if isinstance(args, Override):
            return self._override(raw, args, now, source)
        if isinstance(args, Halt | Resume | ReduceOnly):
            return self._state(name, raw, args, source)
        if isinstance(args, ApproveChange):
            return self._decide(raw, args, now, source)
        return reject(name, raw, Code.NOT_ALLOWED, f"{name} is not a tool of {actor.name}")

    # -- parameter changes ---------------------------------------------------------------------

    def _bounds(self, param: str) -> ParamBounds:
        b: ParamBounds = getattr(self.policy.params, param)
        return b

    def _agent_change(
        self,
        name: str,
        raw: dict[str, Any],
        market: str,
        param: str,
        value: float,
        rationale: str,
        now: float,
        source: str,
    ) -> ToolOutcome:
        """A market agent's ``set_*``: every rule of the module docstring applies."""
        try:
            mp = self.params.get(market)
        except KeyError:
            return reject(name, raw, Code.UNKNOWN_MARKET, f"unknown market {market!r}")
        if self.states.effective(market) is TradingState.HALTED:
            return reject(name, raw, Code.HALTED, f"{market} is halted")
        key = (market, param)
        if key in self._frozen_by:
            return reject(name, raw, Code.FROZEN, f"{param} is frozen by {self._frozen_by[key]}")
        top = self._top_override(key, now)
        if top is not None:
            return reject(
                name,
                raw,
                Code.OVERRIDDEN,
                f"{param} is overridden by {top.source} until {top.expires:.0f}",
            )
        return self._checked_change(
            name, raw, market, param, value, rationale, now, source, float(getattr(mp, param))
        )

    def _checked_change(
        self,
        name: str,
        raw: dict[str, Any],
        market: str,
        param: str,
        value: float,
        rationale: str,
        now: float,
        source: str,
        old: float,
        override_ttl_s: float | None = None,
    ) -> ToolOutcome:
        """Bounds, no-op, step, cooldown, then approval (step or window) for an agent."""
        b = self._bounds(param)
        if not b.contains(value):
            return reject(
                name, raw, Code.OUT_OF_BOUNDS, f"{param}={value:g} outside [{b.min:g}, {b.max:g}]"
            )
        if value == old and override_ttl_s is None:
            return ToolOutcome(name, raw, Verdict.KEPT, message=f"{param} is already {old:g}")
        step = abs(value / old - 1.0)
        if step > b.max_step + 1e-12:
            lo, hi = old * (1 - b.max_step), old * (1 + b.max_step)
            return reject(
                name,
                raw,
                Code.STEP_TOO_LARGE,
                f"{param} may move at most {b.max_step:.0%} per call: "
                f"stay within [{lo:.6g}, {hi:.6g}]",
            )
        wait = self._cooldown_left(market, param, now)
        if wait > 0:
            return reject(name, raw, Code.COOLDOWN, f"{param} is in its cooldown; wait {wait:.0f}s")
        why = None
        if b.approval_step is not None and step > b.approval_step:
            why = f"a {step:.0%} change of {param} needs approval"
        else:
            lo, hi = self._window_range(market, param, now, old)
            if value > lo * b.window_factor or value < hi / b.window_factor:
                why = (
                    f"{param} would move beyond x{b.window_factor:g} of its range "
                    f"[{lo:.6g}, {hi:.6g}] in the last {b.window_s:g}s: needs approval"
                )
        if why is not None:
            people_only = self.policy.agents.approvals == "person"
            waiting = next(
                (p for p in self.approvals if (p.market, p.param) == (market, param)), None
            )
            if people_only and waiting is not None:
                return reject(
                    name,
                    raw,
                    Code.AWAITING_PERSON,
                    f"a change of {param} ({waiting.request_id}) already waits for a person",
                )
            pend, old_req = self.approvals.request(
                market=market,
                param=param,
                value=value,
                base=old,
                rationale=rationale,
                source=source,
                now=now,
                ttl_s=self.policy.agents.approval_ttl_s,
                override_ttl_s=override_ttl_s,
                people_only=people_only,
            )
            if old_req is not None:
                self._event("approval_superseded", old_req, status="superseded", by=pend.request_id)
            self._event("approval_requested", pend, status="pending", why=why)
            self.next_expiry = min(self.next_expiry, pend.expires)
            return ToolOutcome(
                name, raw, Verdict.NEEDS_APPROVAL, message=why, request_id=pend.request_id
            )
        if override_ttl_s is not None:
            changes = self._push_override(
                market, param, value, now, override_ttl_s, source, rationale
            )
            return ToolOutcome(name, raw, Verdict.APPLIED, message=rationale, changes=changes)
        change = self._set(market, param, value, source, rationale, now)
        return ToolOutcome(name, raw, Verdict.APPLIED, changes=(change,))

    def _cooldown_left(self, market: str, param: str, now: float) -> float:
        last = self.params.get(market).changed_at.get(param)
        if last is None:
            return 0.0
        return max(0.0, self._bounds(param).cooldown_s - (now - last))

    def _window_range(
        self, market: str, param: str, now: float, current: float
    ) -> tuple[float, float]:
        """Lowest and highest value in force during the last ``window_s`` (incl. now)."""
        hist = self._history.get((market, param))
        lo = hi = current
        if hist:
            start = now - self._bounds(param).window_s
            while len(hist) > 1 and hist[1][0] <= start:
                hist.popleft()
            for _, v in hist:
                lo, hi = min(lo, v), max(hi, v)
        return lo, hi

    def _set(
        self, market: str, param: str, value: float, source: str, reason: str, now: float
    ) -> ParamChange:
        key = (market, param)
        hist = self._history.get(key)
        if hist is None:
            hist = self._history[key] = deque()
            hist.append((-math.inf, float(getattr(self.params.get(market), param))))
        change = self.params.set(market, param, value, source=source, reason=reason, now=now)
        hist.append((now, float(value)))
        return change

    # -- overrides -----------------------------------------------------------------------------

    def _top_override(self, key: tuple[str, str], now: float) -> _Override | None:
        stack = [o for o in self._overrides.get(key, ()) if o.expires > now]
        return stack[-1] if stack else None

    def _override(
        self, raw: dict[str, Any], args: Override, now: float, source: str
    ) -> ToolOutcome:
        name = "override"
        wanted = [
            (p, v) for p, v in (("gamma", args.gamma), ("sigma", args.sigma)) if v is not None
        ]
        if not wanted:
            return reject(name, raw, Code.INVALID_ARGUMENTS, "give gamma and/or sigma")
        if len(wanted) > 1 and Actor.of(source) is not Actor.PERSON:
            return reject(
                name,
                raw,
                Code.INVALID_ARGUMENTS,
                "the governance agent overrides one parameter per call",
            )
        actor = Actor.of(source)
        mp = self.params.get(args.market)
        for p, v in wanted:
            b = self._bounds(p)
            if not b.contains(v):
                return reject(
                    name, raw, Code.OUT_OF_BOUNDS, f"{p}={v:g} outside [{b.min:g}, {b.max:g}]"
                )
            top = self._top_override((args.market, p), now)
            if top is not None and not actor.may_undo(Actor.of(top.source)):
                return reject(
                    name,
                    raw,
                    Code.NOT_ALLOWED,
                    f"{p} is overridden by {top.source}; only a person may replace it",
                )
            froze = self._frozen_by.get((args.market, p))
            if froze is not None and not actor.may_undo(Actor.of(froze)):
                return reject(name, raw, Code.FROZEN, f"{p} is frozen by {froze}")
        reason = f"override {args.ttl_s:g}s: {args.reason}"
        if actor is not Actor.PERSON:
            p, v = wanted[0]
            return self._checked_change(
                name,
                raw,
                args.market,
                p,
                v,
                reason,
                now,
                source,
                float(getattr(mp, p)),
                override_ttl_s=args.ttl_s,
            )
        changes: list[ParamChange] = []
        for p, v in wanted:
            changes.extend(self._push_override(args.market, p, v, now, args.ttl_s, source, reason))
        return ToolOutcome(name, raw, Verdict.APPLIED, message=args.reason, changes=tuple(changes))

    def _push_override(
        self,
        market: str,
        param: str,
        value: float,
        now: float,
        ttl_s: float,
        source: str,
        reason: str,
    ) -> tuple[ParamChange, ...]:
        key = (market, param)
        stack = [o for o in self._overrides.get(key, []) if o.expires > now]
        if not stack:
            self._base[key] = float(getattr(self.params.get(market), param))
        stack.append(_Override(value, now + ttl_s, source))
        self._overrides[key] = stack
        self.next_expiry = min(self.next_expiry, now + ttl_s)
        self._sync_override_view(market, now)
        if float(getattr(self.params.get(market), param)) == value:
            return ()
        return (self._set(market, param, value, source, reason, now),)

    def _sync_override_view(self, market: str, now: float) -> None:
        mp = self.params.get(market)
        view = {
            p: max(o.expires for o in stack)
            for (m, p), stack in self._overrides.items()
            if m == market and stack
        }
        self.params.replace(market, replace(mp, overrides=view))

    def expire(self, now: float) -> list[ParamChange]:
        """Pop expired overrides (reverting or falling back to the next in the stack) and
        expire approval requests past their ttl. Returns the parameter changes made."""
        out: list[ParamChange] = []
        for key, stack in list(self._overrides.items()):
            live = [o for o in stack if o.expires > now]
            if len(live) == len(stack):
                continue
            market, param = key
            current = float(getattr(self.params.get(market), param))
            if live:
                self._overrides[key] = live
                target = live[-1].value
            else:
                del self._overrides[key]
                target = self._base.pop(key, current)
            self._sync_override_view(market, now)
            if target != current:
                out.append(
                    self._set(
                        market, param, target, "override_expired", "override ttl elapsed", now
                    )
                )
        for pend in self.approvals.expire(now):
            self._event("approval_expired", pend, status="expired")
        soonest = min(
            (o.expires for stack in self._overrides.values() for o in stack), default=math.inf
        )
        self.next_expiry = min(soonest, self.approvals.next_expiry)
        return out

    def expire_all_requests(self, reason: str) -> None:
        """End of session: every pending request expires (audited with ``reason``)."""
        for pend in list(self.approvals):
            self.approvals.pop(pend.request_id)
            self._event("approval_expired", pend, status="expired", why=reason)

    # -- approvals -----------------------------------------------------------------------------

    def _decide(
        self, raw: dict[str, Any], args: ApproveChange, now: float, source: str
    ) -> ToolOutcome:
        name = "approve_change"
        pend = self.approvals.get(args.request_id)
        if pend is None:
            return reject(
                name,
                raw,
                Code.UNKNOWN_REQUEST,
                f"no pending change {args.request_id!r} (decided, expired or unknown)",
            )
        actor = Actor.of(source)
        if actor < pend.approver_rank or actor is Actor.BREAKER:
            return reject(
                name,
                raw,
                Code.NOT_ALLOWED,
                f"{args.request_id} was asked by {pend.source}: "
                f"it needs a {pend.approver_rank.name.lower()} or higher",
            )
        if not args.approved:
            self.approvals.pop(pend.request_id)
            self._event("approval_decided", pend, status="denied", by=source, why=args.reason)
            return ToolOutcome(
                name,
                raw,
                Verdict.APPLIED,
                message=f"denied: {args.reason}",
                request_id=pend.request_id,
            )
        current = float(getattr(self.params.get(pend.market), pend.param))
        if current != pend.base:
            self.approvals.pop(pend.request_id)
            self._event(
                "approval_decided",
                pend,
                status="superseded",
                by=source,
                why=f"{pend.param} moved from {pend.base:g} to {current:g}",
            )
            return reject(
                name,
                raw,
                Code.SUPERSEDED,
                f"{pend.param} of {pend.market} is {current:g} now, not {pend.base:g} "
                "as when the change was asked: nothing applied",
            )
        wait = self._cooldown_left(pend.market, pend.param, now)
        if wait > 0:
            return reject(
                name,
                raw,
                Code.COOLDOWN,
                f"{pend.param} is in its cooldown; approve again in {wait:.0f}s",
            )
        if self.states.effective(pend.market) is TradingState.HALTED:
            return reject(name, raw, Code.HALTED, f"{pend.market} is halted")
        self.approvals.pop(pend.request_id)
        reason = f"{pend.rationale} (approved by {source}: {args.reason})"
        if pend.override_ttl_s is not None:
            changes = self._push_override(
                pend.market, pend.param, pend.value, now, pend.override_ttl_s, pend.source, reason
            )
        else:
            changes = (self._set(pend.market, pend.param, pend.value, pend.source, reason, now),)
        self._event("approval_decided", pend, status="approved", by=source, why=args.reason)
        return ToolOutcome(
            name, raw, Verdict.APPLIED, message=reason, changes=changes, request_id=pend.request_id
        )

    def _event(self, kind: str, pend: PendingChange, **extra: Any) -> None:
        if self._on_event is not None:
            self._on_event(kind, {**pend.as_dict(), **extra})

    # -- freezes and trading states ------------------------------------------------------------

    def _freeze(
        self, name: str, raw: dict[str, Any], args: Freeze | Unfreeze, source: str
    ) -> ToolOutcome:
        actor = Actor.of(source)
        params = _TUNABLE if args.param == "all" else (args.param,)
        if isinstance(args, Unfreeze):
            for p in params:
                froze = self._frozen_by.get((args.market, p))
                if froze is not None and not actor.may_undo(Actor.of(froze)):
                    return reject(
                        name,
                        raw,
                        Code.NOT_ALLOWED,
                        f"{p} was frozen by {froze}; only a person may unfreeze it",
                    )
        for p in params:
            key = (args.market, p)
            if isinstance(args, Freeze):
                prev = self._frozen_by.get(key)
                if prev is None or actor.may_undo(Actor.of(prev)):
                    self._frozen_by[key] = source
            else:
                self._frozen_by.pop(key, None)
        mp = self.params.get(args.market)
        frozen = frozenset(p for (m, p) in self._frozen_by if m == args.market)
        self.params.replace(args.market, replace(mp, frozen=frozen))
        return ToolOutcome(name, raw, Verdict.APPLIED, message=args.reason)

    def frozen_by(self, market: str, param: str) -> str | None:
        """Who froze ``param`` of ``market`` (None: not frozen)."""
        return self._frozen_by.get((market, param))

    def _state(
        self, name: str, raw: dict[str, Any], args: Halt | Resume | ReduceOnly, source: str
    ) -> ToolOutcome:
        state = (
            TradingState.HALTED
            if isinstance(args, Halt)
            else TradingState.ACTIVE
            if isinstance(args, Resume)
            else TradingState.REDUCE_ONLY
        )
        scopes: list[str | None] = [args.market]
        if args.market is None and isinstance(args, Resume):
            scopes = [None, *self.params.markets()]
        for scope in scopes:
            blockers = self.states.blocking(scope, source, state)
            if blockers:
                where = "all markets" if scope is None else scope
                return reject(
                    name,
                    raw,
                    Code.NOT_ALLOWED,
                    f"{where} is held by {', '.join(blockers)}; only a person may lift it",
                )
        for scope in scopes:
            self.states.set(scope, state, source=source, reason=args.reason)
        return ToolOutcome(name, raw, Verdict.APPLIED, message=args.reason)
