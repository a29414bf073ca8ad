"""``heuristic`` — the offline default: deterministic rules over the same summary an LLM sees.

It is meant as the baseline an LLM has to beat, so each rule answers a measured weakness of the
same quoting core left alone (see ``docs/strategy.md``):

* **σ tracks the market, both ways.** Static quoting keeps the warm-up σ for good. The target
  is the geometric mean of the two-scale estimate (``sigma_logit_est``) and the GARCH forecast
  over the quote's τ (``signals.sigma_garch``), whichever exist; σ moves a step towards it when
  they differ by more than ``SIGMA_BAND`` (a dead band, so estimation noise does not churn it).
* **γ follows toxicity and decays back.** γ (risk aversion) aims at ``policy default ×
  CALM_GAMMA`` while the flow is benign, ``× TOXIC_GAMMA`` while it is toxic, and the default in
  between. *Toxic* needs two independent signs at once (``TOXIC_VOTES`` of: VPIN at least
  ``VPIN_HIGH`` over full buckets, a negative 5 s mark-out beyond the required edge on enough
  fills, |momentum| at least ``MOMENTUM_HIGH``, the VAR informed-flow flag), so one noisy flag
  does not move it; *benign* needs all of them quiet. A lone VAR flag never acts: in calm
  markets it is on in 4-8 % of checks.
* **Inventory near the limit** raises γ (a stronger skew out of it) until usage falls; so does
  an **event near its worst-case loss limit** (``event.worst_case_loss`` at least
  ``INVENTORY_HIGH`` of ``event.worst_case_limit``: the event's markets shed its inventory).
* **A side outside the price band** (the model's quote is wider than the risk limits allow)
  lowers the parameter that widened it.

One tool call per decision, the first rule that fires; a parameter that is frozen, overridden
or cooling down is left alone and the next rule is tried. Steps stay within the policy's
largest step and below its approval threshold. Every rationale cites the fields it used.

Governance agent: decides the oldest pending change (approves it unless the limit usage is above
``INVENTORY_HIGH`` and it lowers γ), else ``no_action``; halts nothing (the breakers do that).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from cfa.agents.reasoners.base import RawCall, ReasonRequest, ReasonResponse

STEP = 1.25
"""Largest factor of an ordinary heuristic change (below the default approval threshold)."""
SWEEP_STEP = 1.45
"""Factor of the answer to a one-sided burst of fills (above the approval threshold of the
default policy: governance approves it, within the policy's largest step)."""
SWEEP_ORDERS = 3.0
"""Being run over: at least this many orders' worth bought (or sold) in 30 s, at most half an
order the other way, and the mid moving against the fills by at least ``SWEEP_MOVE``."""
SWEEP_MOVE = 0.005
SIGMA_BAND = 1.3
"""σ moves only when its target differs by more than this factor."""
CALM_GAMMA = 1.0
TOXIC_GAMMA = 3.0
"""γ targets as multiples of the policy default."""
GAMMA_BAND = 1.15
VPIN_HIGH = 0.6
VPIN_LOW = 0.35
MOMENTUM_HIGH = 0.6
MOMENTUM_LOW = 0.3
MIN_MARKOUT_N = 5.0
TOXIC_VOTES = 2
INVENTORY_HIGH = 0.7


def _call(name: str, **arguments: Any) -> RawCall:
    return RawCall(f"heuristic_{name}", name, json.dumps(arguments, sort_keys=True))


def _toward(value: float, target: float, view: Mapping[str, Any], step: float = STEP) -> float:
    """One step from ``value`` towards ``target``, inside the bounds and the largest step."""
    limit = min(step - 1.0, 0.9 * float(view["max_step"]))
    ratio = target / value
    ratio = min(max(ratio, 1.0 / (1.0 + limit)), 1.0 + limit)
    return float(f"{min(max(value * ratio, view['min']), view['max']):.4g}")


def _free(view: Mapping[str, Any]) -> bool:
    return not (view["frozen"] or view["overridden"] or view["cooldown_left_s"] > 0)


def toxicity(ctx: Mapping[str, Any]) -> tuple[int, int, list[str]]:
    """``(toxic votes, quiet votes, evidence)`` from the flow signals of a market context."""
    sig, flow, regime = ctx["signals"], ctx["flow"], ctx["regime"]
    toxic: list[str] = []
    quiet = 0
    vpin = sig["vpin"]
    if vpin["v"] is not None:
        if vpin["v"] >= VPIN_HIGH:
            toxic.append(f"vpin={vpin['v']} over {vpin['n']} buckets")
        elif vpin["v"] <= VPIN_LOW:
            quiet += 1
    else:
        quiet += 1
    m5, n = flow["markout_5s"], flow["markout_n"]
    edge = ctx["quote"]["min_edge"]
    if m5 is not None and n >= MIN_MARKOUT_N:
        if m5 < -max(edge, 0.001):
            toxic.append(f"markout_5s={m5} on {n} fills")
        elif m5 >= 0:
            quiet += 1
    else:
        quiet += 1
    mom = sig["momentum"]
    if mom["v"] is not None and mom["n"] >= 10:
        if abs(mom["v"]) >= MOMENTUM_HIGH:
            toxic.append(f"momentum={mom['v']} on {mom['n']} trades")
        elif abs(mom["v"]) <= MOMENTUM_LOW:
            quiet += 1
    else:
        quiet += 1
    if regime["informed_flow"]:
        toxic.append("regime.informed_flow")
    else:
        quiet += 1
    return len(toxic), quiet, toxic


def sigma_target(ctx: Mapping[str, Any]) -> tuple[float | None, str]:
    """σ target (logit per √s) from the estimate and the GARCH forecast, and its evidence."""
    est = ctx.get("sigma_logit_est")
    garch = ctx["signals"]["sigma_garch"]["v"]
    have = [v for v in (est, garch) if v]
    if not have or ctx.get("sigma_n", 0) < 12:
        return None, ""
    target = math.exp(sum(math.log(v) for v in have) / len(have))
    return target, f"sigma_logit_est={est}, sigma_garch={garch}"


def market_decision(ctx: Mapping[str, Any]) -> RawCall:
    """The market-agent rules on a context dict (:class:`cfa.agents.context.MarketContext`)."""
    g, s = ctx["gamma"], ctx["sigma"]
    risk, quote = ctx["risk"], ctx["quote"]
    usage = risk["limit_usage"]

    def change(
        name: str, view: Mapping[str, Any], target: float, why: str, step: float = STEP
    ) -> RawCall | None:
        new = _toward(view["value"], target, view, step)
        if not _free(view) or new == view["value"]:
            return None
        return _call(
            f"set_{name}",
            value=new,
            rationale=f"{why}: {name} {view['value']} -> {new} (target {target:.4g})",
        )

    event = ctx.get("event")
    if event and event.get("worst_case_loss") is not None and event["worst_case_limit"] > 0:
        share = event["worst_case_loss"] / event["worst_case_limit"]
        if share >= INVENTORY_HIGH:
            call = change(
                "gamma",
                g,
                g["value"] * STEP,
                f"event.worst_case_loss={event['worst_case_loss']} is {share:.2f} of "
                f"event.worst_case_limit={event['worst_case_limit']} >= {INVENTORY_HIGH}: "
                "shed the event's inventory",
            )
            if call is not None:
                return call
    if usage >= INVENTORY_HIGH:
        call = change(
            "gamma",
            g,
            g["value"] * STEP,
            f"risk.limit_usage={usage} >= {INVENTORY_HIGH}: skew out of the inventory",
        )
        if call is not None:
            return call
    flow = ctx["flow"]
    bought, sold = flow["bought_30s"], flow["sold_30s"]
    move = flow["mid_change_30s"] or 0.0
    size = ctx.get("order_size") or 1.0
    against = (bought > sold and move <= -SWEEP_MOVE) or (sold > bought and move >= SWEEP_MOVE)
    if max(bought, sold) >= SWEEP_ORDERS * size and min(bought, sold) <= 0.5 * size and against:
        why = (
            f"flow.bought_30s={bought}, sold_30s={sold} (order size {size}), "
            f"mid_change_30s={move}: run over; widen and skew harder"
        )
        for name, view in (("sigma", s), ("gamma", g)):
            call = change(name, view, view["value"] * SWEEP_STEP, why, SWEEP_STEP)
            if call is not None:
                return call
    if quote["band_clipped"]:
        sides = ",".join(quote["band_clipped"])
        call = change(
            "sigma",
            s,
            s["value"] / STEP,
            f"quote.band_clipped={sides}: the model's quote is wider than the price band",
        )
        if call is not None:
            return call
    target, evidence = sigma_target(ctx)
    if target is not None:
        ratio = target / s["value"]
        if ratio > SIGMA_BAND or ratio < 1.0 / SIGMA_BAND:
            call = change("sigma", s, target, f"{evidence} vs sigma.value={s['value']}")
            if call is not None:
                return call
    votes, quiet, evidence_t = toxicity(ctx)
    if votes >= TOXIC_VOTES:
        goal, why = g["default"] * TOXIC_GAMMA, "toxic flow: " + "; ".join(evidence_t)
    elif quiet >= 4 and usage < 0.5:
        goal, why = g["default"] * CALM_GAMMA, "benign flow (vpin, mark-out, momentum quiet)"
    else:
        goal, why = g["default"], f"mixed flow ({votes} toxic, {quiet} quiet signs)"
    ratio = goal / g["value"]
    if ratio > GAMMA_BAND or ratio < 1.0 / GAMMA_BAND:
        call = change("gamma", g, goal, why)
        if call is not None:
            return call
    return _call(
        "keep",
        rationale=(
            f"no rule fired: limit_usage={usage}, toxic signs={votes}, quiet signs={quiet}, "
            f"sigma target={None if target is None else f'{target:.4g}'} vs {s['value']}, "
            f"gamma {g['value']} vs goal {goal:.4g}"
        ),
    )


def governance_decision(ctx: Mapping[str, Any]) -> RawCall:
    """The governance rule on :func:`cfa.agents.context.portfolio_context` output: decide the
    oldest pending request (deny a lower γ while inventory is high), else ``no_action``."""
    by_ticker = {m["ticker"]: m for m in ctx.get("markets", [])}
    for p in ctx.get("pending_approvals", []):
        m = by_ticker.get(p["market"], {})
        lowering_gamma = p["param"] == "gamma" and p["to"] < p["from"]
        deny = lowering_gamma and m.get("limit_usage", 0.0) > INVENTORY_HIGH
        reason = (
            f"limit_usage={m.get('limit_usage')} > {INVENTORY_HIGH}: no lower gamma now"
            if deny
            else f"within bounds; limit_usage={m.get('limit_usage')}, "
            f"marked_pnl={m.get('marked_pnl')}"
        )
        return _call("approve_change", request_id=p["request_id"], approved=not deny, reason=reason)
    return _call("no_action", reason="nothing pending")


class HeuristicReasoner:
    """Deterministic rules; no network, no randomness."""

    name = "heuristic"
    model: str | None = "rules-v2"

    async def reason(self, request: ReasonRequest) -> ReasonResponse:
        t0 = time.perf_counter()
        ctx = request.context
        if request.role == "governance":
            calls = (governance_decision(ctx),)
        else:
            calls = (market_decision(ctx),)
        raw = json.dumps([{"name": c.name, "arguments": json.loads(c.arguments)} for c in calls])
        return ReasonResponse(calls, raw=raw, model=self.model, latency_s=time.perf_counter() - t0)

    async def aclose(self) -> None:
        return None
