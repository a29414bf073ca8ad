"""``heuristic`` — the offline default: deterministic rules over the same summary an LLM sees.

Market agent, first rule that fires wins:

1. parameter frozen or overridden, or cooling down → ``keep``;
2. VAR regime-shift flag → raise σ by ``STEP``;
3. inventory at or above ``INVENTORY_HIGH`` of the limit → raise γ;
4. toxic flow (60 s mark-out below ``−TOXIC`` dollars) or fills faster than ``FAST`` per
   quoted minute → raise γ;
5. σ parameter far from the warm estimate (ratio beyond ``SIGMA_DRIFT``) → move σ a step
   towards it;
6. quoting for a while without fills (both sides below ``SLOW`` per minute) → lower γ;
7. otherwise ``keep``.

Every rationale cites the summary fields it used. Steps stay below the policy's approval
threshold, so the heuristic never needs governance approval in the default policy.

Governance agent: approves pending changes unless the market's limit usage is above
``INVENTORY_HIGH`` and the change lowers γ; halts nothing on its own (the risk gate's breakers do
that); answers an escalation about toxic flow with a 10-minute γ override.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from cfa.agents.reasoners.base import RawCall, ReasonRequest, ReasonResponse

STEP = 1.25
INVENTORY_HIGH = 0.7
TOXIC = 0.005
FAST = 6.0
SLOW = 0.2
SIGMA_DRIFT = 1.5


def _call(name: str, **arguments: Any) -> RawCall:
    return RawCall(f"heuristic_{name}", name, json.dumps(arguments, sort_keys=True))


def _bounded(value: float, view: Mapping[str, Any], factor: float) -> float:
    """``value × factor`` kept inside the policy bounds and the largest step."""
    step = min(abs(factor - 1.0), 0.9 * float(view["max_step"]))
    target = value * (1 + step if factor > 1 else 1 - step)
    return float(f"{min(max(target, view['min']), view['max']):.6g}")


def market_decision(ctx: Mapping[str, Any]) -> RawCall:
    """The market-agent rules on a context dict (:class:`cfa.agents.context.MarketContext`)."""
    g, s = ctx["gamma"], ctx["sigma"]
    risk, flow, regime = ctx["risk"], ctx["flow"], ctx["regime"]

    def can(view: Mapping[str, Any]) -> bool:
        return not (view["frozen"] or view["overridden"] or view["cooldown_left_s"] > 0)

    if regime["regime_shift"] and can(s):
        new = _bounded(s["value"], s, STEP)
        if new != s["value"]:
            return _call(
                "set_sigma",
                value=new,
                rationale=f"regime.regime_shift=true: raise sigma {s['value']} -> {new}",
            )
    usage = risk["limit_usage"]
    if usage >= INVENTORY_HIGH and can(g):
        new = _bounded(g["value"], g, STEP)
        if new != g["value"]:
            return _call(
                "set_gamma",
                value=new,
                rationale=f"risk.limit_usage={usage} >= {INVENTORY_HIGH}: "
                f"raise gamma {g['value']} -> {new} to skew out",
            )
    m60 = flow["markout_60s"]
    rates = [r for r in (flow["fills_per_min_bid"], flow["fills_per_min_ask"]) if r is not None]
    if can(g) and ((m60 is not None and m60 < -TOXIC) or (rates and max(rates) > FAST)):
        new = _bounded(g["value"], g, STEP)
        if new != g["value"]:
            why = (
                f"flow.markout_60s={m60}"
                if m60 is not None and m60 < -TOXIC
                else f"fills_per_min={max(rates)}"
            )
            return _call(
                "set_gamma",
                value=new,
                rationale=f"{why} (toxic or too fast): raise gamma {g['value']} -> {new}",
            )
    est = ctx.get("sigma_logit_est")
    if est and can(s) and (est / s["value"] > SIGMA_DRIFT or s["value"] / est > SIGMA_DRIFT):
        new = _bounded(s["value"], s, est / s["value"])
        if new != s["value"]:
            return _call(
                "set_sigma",
                value=new,
                rationale=f"sigma_logit_est={est} vs sigma.value={s['value']}: "
                f"move sigma towards the estimate -> {new}",
            )
    if (
        can(g)
        and len(rates) == 2
        and max(rates) < SLOW
        and (flow["since_last_fill_s"] is None or flow["since_last_fill_s"] > 300)
    ):
        new = _bounded(g["value"], g, 1 / STEP)
        if new != g["value"]:
            return _call(
                "set_gamma",
                value=new,
                rationale=f"fills_per_min bid/ask={rates} < {SLOW} and no fill for "
                f"{flow['since_last_fill_s']}s: lower gamma {g['value']} -> {new} to tighten",
            )
    return _call(
        "keep",
        rationale=(
            f"no rule fired: limit_usage={usage}, markout_60s={m60}, fills_per_min={rates}, "
            f"regime_shift={regime['regime_shift']}, sigma_est={est} vs sigma={s['value']}"
        ),
    )


def governance_decision(ctx: Mapping[str, Any]) -> list[RawCall]:
    """The governance rules on :func:`cfa.agents.context.portfolio_context` output."""
    by_ticker = {m["ticker"]: m for m in ctx.get("markets", [])}
    calls: list[RawCall] = []
    for p in ctx.get("pending_approvals", []):
        m = by_ticker.get(p["market"], {})
        lowering_gamma = p["param"] == "gamma" and p["value"] < m.get("gamma", p["value"])
        deny = lowering_gamma and m.get("limit_usage", 0.0) > INVENTORY_HIGH
        reason = (
            f"limit_usage={m.get('limit_usage')} > {INVENTORY_HIGH}: no lower gamma now"
            if deny
            else f"within bounds; limit_usage={m.get('limit_usage')}, "
            f"marked_pnl={m.get('marked_pnl')}"
        )
        calls.append(
            _call("approve_change", request_id=p["request_id"], approved=not deny, reason=reason)
        )
    for e in ctx.get("escalations", []):
        m = by_ticker.get(e["market"])
        if m is None or "gamma" in m.get("frozen", []):
            continue
        m60 = m.get("markout_60s")
        if m60 is not None and m60 < -TOXIC:
            calls.append(
                _call(
                    "override",
                    market=e["market"],
                    gamma=float(f"{m['gamma'] * STEP:.6g}"),
                    sigma=None,
                    ttl_s=600.0,
                    reason=f"escalation '{e.get('reason', '')[:80]}' with "
                    f"markout_60s={m60}: widen for 10 min",
                )
            )
    return calls


class HeuristicReasoner:
    """Deterministic rules; no network, no randomness."""

    name = "heuristic"
    model: str | None = "rules-v1"

    async def reason(self, request: ReasonRequest) -> ReasonResponse:
        t0 = time.perf_counter()
        ctx = request.context
        if request.role == "governance":
            calls = tuple(governance_decision(ctx))
            if not calls:
                return ReasonResponse(
                    (),
                    raw="[]",
                    text="nothing pending, no escalation needing action",
                    model=self.model,
                )
        else:
            calls = (market_decision(ctx),)
        raw = json.dumps([{"name": c.name, "arguments": json.loads(c.arguments)} for c in calls])
        return ReasonResponse(calls, raw=raw, model=self.model, latency_s=time.perf_counter() - t0)

    async def aclose(self) -> None:
        return None
