"""The slow path: when and how the market and governance agents run.

Each market agent runs every ``interval_s`` seconds of exchange time and on triggers — its
inventory reaching ``near_cap`` of the position limit, a burst of ``fill_burst`` fills since its
last decision, a one-sided burst of fills (three orders' worth on one side in 30 s, at most every
``SWEEP_GAP_S``), a change of its VAR regime flags (checked every ``regime_interval_s``). The
governance agent runs every ``governance_interval_s`` and whenever an escalation or a pending
approval waits.

Three ways to run a decision:

* **inline** (default for deterministic local reasoners, ``heuristic`` and ``scripted``): at the
  event that made it due, awaited there; on the simulator a run is reproducible from its seed.
* **background** (default for a remote reasoner, ``openai``): each decision is an asyncio task
  (at most one in flight per market); the fast path keeps quoting on the last good parameters
  while the call is out, and a timeout or a bad answer is an audited abstain. At full simulator
  speed the simulated clock races ahead of the call, so answers land late (their ``ts`` lags
  their ``as_of``) or are lost when the run ends first (counted in ``LLMTotals.cancelled``).
* **lockstep** (``lockstep=True``; for backtests, and turned on by the evaluation harness for
  LLM strategies): the simulated clock waits for the agent. When a decision is due at simulated
  time ``t`` its context is taken at ``t``; at the first event at or after ``t + latency_s``
  (``latency_s``: the simulated latency charged to the agent, seconds; 0 = at once) the graph
  runs inline with that snapshot — the reasoner is awaited while the simulation does not
  advance (the simulator only steps when the session pulls its next event, and the session
  awaits :meth:`AgentRuntime.after_event`), and the tool calls are validated (cooldowns, bounds,
  frozen flags) and applied as of then. Meanwhile the fast path quotes on the old parameters.
  No answer is lost to speed, and two runs of one seed with a deterministic endpoint make the
  same decisions at the same times. Governance decisions are deferred the same way. A retry
  after a rejection is not charged latency again. A decision still waiting when the run ends
  is recorded as an abstain with ``"expired": true`` in its payload (the reasoner is not
  called; counted in ``LLMTotals.expired``). On a paced simulator
  (``speed`` set) the simulated clock still waits, then catches up with wall time. Lockstep is
  meaningless on a live exchange, which does not wait.

Every decision row records ``as_of`` (when its context was taken) and ``ts`` (when its tool
calls were applied), both simulated epoch seconds (see :mod:`cfa.agents.graphs`). Reasoner
calls, tokens, cache hits and cost are summed per run in :class:`LLMTotals`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from langgraph.types import Overwrite

from cfa.agents.context import DecisionView, build_context, portfolio_context, r4
from cfa.agents.graphs import (
    AgentDeps,
    build_governance_graph,
    build_market_graph,
    params_of,
)
from cfa.agents.reasoners.base import Reasoner
from cfa.agents.records import DecisionRecord
from cfa.agents.settings import LLMSettings
from cfa.audit.store import to_ms as ms
from cfa.control.approvals import PendingChange
from cfa.core.types import QTY_SCALE
from cfa.risk.actors import Actor
from cfa.runtime.loop import LoopState, MarketLoop

SWEEP_GAP_S = 5.0
"""A one-sided burst of fills triggers a market decision at most this often (seconds)."""

if TYPE_CHECKING:
    from cfa.runtime.session import Session


def load_prompt(name: str) -> tuple[str, str]:
    """``(text, sha256 hex prefix)`` of a packaged prompt template (``market_agent``, ...)."""
    text = resources.files("cfa.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]


def _fresh(
    market: str,
    role: str,
    decision_id: str,
    snapshot: dict[str, Any] | None = None,
    as_of: float | None = None,
) -> dict[str, Any]:
    """The input of one decision: the thread is per market, the state is per decision.

    ``snapshot``/``as_of``: a context taken earlier and its simulated time (lockstep).
    """
    return {
        "market": market,
        "role": role,
        "decision_id": decision_id,
        "snapshot": snapshot,
        "as_of": as_of,
        "responses": Overwrite([]),
        "outcomes": Overwrite([]),
        "pending": None,
        "approval": None,
        "feedback": None,
        "verdict": "abstain",
    }


@dataclass(slots=True)
class _Deferred:
    """A lockstep decision: its context taken at ``as_of``, to run at ``run_at`` (sim s)."""

    key: str
    """Ticker, or ``"*"`` for governance."""
    decision_id: str
    as_of: float
    run_at: float
    context: dict[str, Any]
    seq: int


@dataclass(slots=True)
class LLMTotals:
    """Reasoner calls, tokens and cost of one run (one :class:`AgentRuntime`).

    ``calls`` counts reasoner calls (a retry is a second call), ``decisions`` finished decisions
    (approvals not counted twice). ``tokens_in``/``tokens_out`` are the prompt/completion tokens
    the endpoint reported (a cache hit charges none). ``cache_hits``/``cache_misses`` count calls
    answered from / not found in an LLM cache (both 0 without one). ``cost_usd`` is
    ``tokens × price / 1e6`` with the prices (dollars per million tokens) of the reasoner that
    made each call; it is meaningful only when ``priced`` (some price is not 0).
    ``cancelled`` counts background decisions still in flight when the run ended (lost),
    ``expired`` lockstep decisions whose latency had not elapsed at the end.
    """

    decisions: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cost_usd: float = 0.0
    priced: bool = False
    cancelled: int = 0
    expired: int = 0

    def add(self, responses: list[dict[str, Any]], prices: tuple[float, float]) -> None:
        """Count one decision's reasoner calls (its ``responses`` records)."""
        self.decisions += 1
        pin, pout = prices
        self.priced = self.priced or pin > 0 or pout > 0
        for r in responses:
            self.calls += 1
            if r.get("cache") == "hit":
                self.cache_hits += 1
            elif r.get("cache") == "miss":
                self.cache_misses += 1
            usage = r.get("usage") or {}
            tin = usage.get("prompt_tokens", 0)
            tout = usage.get("completion_tokens", 0)
            tin = tin if isinstance(tin, int) else 0
            tout = tout if isinstance(tout, int) else 0
            self.tokens_in += tin
            self.tokens_out += tout
            self.cost_usd += (tin * pin + tout * pout) / 1_000_000

    def as_dict(self) -> dict[str, Any]:
        """JSON-able totals; ``cost_usd`` None when no price is known."""
        return {
            "decisions": self.decisions,
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cost_usd": round(self.cost_usd, 6) if self.priced else None,
            "cancelled": self.cancelled,
            "expired": self.expired,
        }


def reasoner_prices(reasoner: Reasoner) -> tuple[float, float]:
    """``(input, output)`` dollars per million tokens from the reasoner's :class:`LLMSettings`.

    Wrappers (``.inner``) are looked through; reasoners without settings cost ``(0, 0)``.
    """
    r: Any = reasoner
    for _ in range(8):
        settings = getattr(r, "settings", None)
        if isinstance(settings, LLMSettings):
            return settings.price_input, settings.price_output
        inner = getattr(r, "inner", None)
        if inner is None:
            break
        r = inner
    return 0.0, 0.0


@dataclass(slots=True)
class _Recent:
    ts: float
    tool: str
    verdict: str
    change: str | None
    pnl: float
    inventory: float
    fills: int


class AgentRuntime:
    """Schedules and runs the agents of one session; records every decision."""

    def __init__(
        self,
        session: Session,
        reasoner: Reasoner,
        governance_reasoner: Reasoner | None = None,
        *,
        interval_s: float = 60.0,
        governance_interval_s: float = 300.0,
        near_cap: float = 0.8,
        fill_burst: int = 10,
        regime_interval_s: float = 15.0,
        inline: bool | None = None,
        lockstep: bool = False,
        latency_s: float = 0.0,
        price_input_per_m: float | None = None,
        price_output_per_m: float | None = None,
    ) -> None:
        """``lockstep``/``latency_s`` (simulated seconds, ≥ 0): see the module docstring.

        ``inline`` forces inline (True) or background (False) decisions when not in lockstep
        (default: inline unless the reasoner is ``openai``). ``price_*_per_m``: dollars per
        million prompt/completion tokens for both agents (default: each reasoner's
        ``LLMSettings.price_input``/``price_output``, else 0 = unknown).
        """
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency_s must be a finite number >= 0, got {latency_s!r}")
        self.session = session
        self.reasoner = reasoner
        self.gov_reasoner = governance_reasoner or reasoner
        self.interval_s = interval_s
        self.governance_interval_s = governance_interval_s
        self.near_cap = near_cap
        self.fill_burst = fill_burst
        self.regime_interval_s = regime_interval_s
        self._regime_check: dict[str, float] = {}
        self._next_check: dict[str, float] = {}
        self._fills_seen: dict[str, int] = {}
        self._regime_seen: dict[str, tuple[bool, bool, bool]] = {}
        self.lockstep = lockstep
        self.latency_s = float(latency_s)
        background = bool(getattr(reasoner, "background", False))
        self.inline = lockstep or (not background if inline is None else inline)
        self._deferred: dict[str, _Deferred] = {}
        self._next_deferred = math.inf
        self._deferred_seq = 0
        self.totals = LLMTotals()
        """Calls, tokens, cache hits and cost so far (see :meth:`llm_summary`)."""
        mp, gp = reasoner_prices(reasoner), reasoner_prices(self.gov_reasoner)
        if price_input_per_m is not None or price_output_per_m is not None:
            mp = gp = (price_input_per_m or 0.0, price_output_per_m or 0.0)
        self._prices = {"market": mp, "governance": gp}
        self.control = session.control
        self._pending_seen: frozenset[str] = frozenset()
        self.market_graph = build_market_graph()
        self.gov_graph = build_governance_graph()
        self.market_prompt, self.market_hash = load_prompt("market_agent")
        self.gov_prompt, self.gov_hash = load_prompt("governance_agent")
        self._due: dict[str, float] = {}
        self._gov_due: float | None = None
        self._fills_at_decision: dict[str, int] = {}
        self._last_decision: dict[str, float] = {}
        self._near_cap_seen: dict[str, bool] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._recent: dict[str, deque[_Recent]] = {t: deque(maxlen=3) for t in session.loops}
        self._decisions = 0
        self.escalations: list[dict[str, Any]] = []
        self._gov_escalations: list[dict[str, Any]] = []
        self.last_rationale: dict[str, str] = {}
        self.decisions_by_verdict: dict[str, int] = {}
        self._contexts: dict[str, Any] = {}

    # -- scheduling (called on the fast path: must be cheap) -----------------------------------

    def due(self, loop: MarketLoop, now: float) -> bool:
        """True when this market's agent should run now (cheap unless something changed)."""
        t = loop.ticker
        fills = loop.account.fills
        if now < self._next_check.get(t, now) and fills == self._fills_seen.get(t, fills):
            return False
        if loop.state is not LoopState.READY or t in self._inflight or t in self._deferred:
            return False
        self._fills_seen[t] = fills
        nxt = self._due.get(t)
        if nxt is None:
            self._due[t] = now  # first decision right after READY
            return True
        if now >= nxt:
            return True
        cap = self.session.policy.market.max_position * QTY_SCALE
        near = abs(loop.account.inventory) >= self.near_cap * cap
        if near and not self._near_cap_seen.get(t, False):
            self._near_cap_seen[t] = True
            return True
        if not near:
            self._near_cap_seen[t] = False
        if fills - self._fills_at_decision.get(t, 0) >= self.fill_burst:
            return True
        if fills != self._fills_at_decision.get(t, 0) and self._one_sided(loop, now):
            return True
        changed = False
        if now >= self._regime_check.get(t, now):
            self._regime_check[t] = now + self.regime_interval_s
            f = loop.regime_flags()
            key = (f.regime_shift, f.informed_flow, f.unstable) if f.ok else None
            changed = key is not None and key != self._regime_seen.get(t, key)
            if key is not None:
                self._regime_seen[t] = key
        self._next_check[t] = min(nxt, self._regime_check.get(t, nxt))
        return changed

    def _one_sided(self, loop: MarketLoop, now: float) -> bool:
        """A one-sided burst of our fills since the last decision: at least three orders'
        worth on one side in 30 s and at most half an order on the other (the agent decides
        whether the price moved against them)."""
        if now - self._last_decision.get(loop.ticker, -math.inf) < SWEEP_GAP_S:
            return False
        size = loop.params.get(loop.ticker).quote.size / QTY_SCALE
        bought, sold = loop.recent_fills(now)
        hi, lo = max(bought, sold), min(bought, sold)
        return hi >= 3.0 * size and lo <= 0.5 * size

    def governance_due(self, now: float) -> bool:
        """True when the governance agent should run now."""
        if "*" in self._inflight or "*" in self._deferred:
            return False
        if self._gov_due is None:
            self._gov_due = now + self.governance_interval_s
        return (
            now >= self._gov_due
            or bool(self.escalations)
            or not self._decidable_ids() <= self._pending_seen
        )

    def _decidable(self) -> list[PendingChange]:
        """The pending changes the governance agent may decide (not those kept for people)."""
        return [p for p in self.control.approvals if p.approver_rank <= Actor.GOVERNANCE_AGENT]

    def _decidable_ids(self) -> frozenset[str]:
        return frozenset(p.request_id for p in self._decidable())

    async def after_event(self, loop: MarketLoop, now: float) -> None:
        """Run whatever is due (inline), start it (background) or defer it (lockstep).

        In lockstep, first every deferred decision whose time has come runs (in the order its
        context was taken), then new due decisions take their context snapshot; with
        ``latency_s == 0`` they run at once, at this same event. The same as awaiting what
        :meth:`poll` returns.
        """
        pending = self.poll(loop, now)
        if pending is not None:
            await pending

    def poll(self, loop: MarketLoop, now: float) -> Coroutine[Any, Any, None] | None:
        """:meth:`after_event` without a coroutine when nothing is due (the session's hot
        path): returns the coroutine to await, or None."""
        if now >= self.control.next_expiry:
            self.control.expire(now)
        if self.lockstep:
            if now >= self._next_deferred:
                return self._lockstep(loop, now, None, None)
            if self.due(loop, now):
                return self._lockstep(loop, now, True, None)
            if self.governance_due(now):
                return self._lockstep(loop, now, False, True)
            return None
        if self.due(loop, now):
            return self._start_due(loop, now)
        if self.governance_due(now):
            return self._start("*", self._run_governance(now))
        return None

    async def _lockstep(
        self, loop: MarketLoop, now: float, market_due: bool | None, gov_due: bool | None
    ) -> None:
        """The lockstep body of :meth:`after_event`; ``market_due``/``gov_due`` already
        decided by :meth:`poll` (None: decide here, after the deferred decisions ran)."""
        if market_due is None and now >= self._next_deferred:
            await self._run_deferred(now)
        if market_due is None:
            market_due = self.due(loop, now)
        if market_due:
            decision_id = self._schedule_market(loop, now)
            self._defer(loop.ticker, decision_id, now, self._context(loop.ticker))
            if now >= self._next_deferred:  # no latency: now, as inline would
                await self._run_deferred(now)
        if gov_due is None:
            gov_due = self.governance_due(now)
        if gov_due:
            decision_id = self._schedule_governance(now)
            self._defer("*", decision_id, now, self._portfolio("*"))
            if now >= self._next_deferred:
                await self._run_deferred(now)

    async def _start_due(self, loop: MarketLoop, now: float) -> None:
        await self._start(loop.ticker, self._run_market(loop, now))
        if self.governance_due(now):
            await self._start("*", self._run_governance(now))

    def _defer(self, key: str, decision_id: str, now: float, context: dict[str, Any]) -> None:
        self._deferred_seq += 1
        d = _Deferred(key, decision_id, now, now + self.latency_s, context, self._deferred_seq)
        self._deferred[key] = d
        self._next_deferred = min(self._next_deferred, d.run_at)

    async def _run_deferred(self, now: float) -> None:
        """Run every deferred decision with ``run_at <= now``, oldest snapshot first.

        A decision stays deferred while it runs (so it is not due again meanwhile); one cut
        off by cancellation (the run stopping) stays deferred and is recorded as expired.
        """
        ready = sorted((d for d in self._deferred.values() if d.run_at <= now), key=lambda d: d.seq)
        try:
            for d in ready:
                try:
                    if d.key == "*":
                        await self._invoke_governance(d.decision_id, d.context, d.as_of)
                    else:
                        await self._invoke_market(d.key, d.decision_id, d.context, d.as_of)
                except Exception:
                    del self._deferred[d.key]
                    raise
                del self._deferred[d.key]
        finally:
            self._next_deferred = min((d.run_at for d in self._deferred.values()), default=math.inf)

    async def _start(self, key: str, coro: Any) -> None:
        if self.inline:
            await coro
            return
        task = asyncio.create_task(coro)
        self._inflight[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(key, None)

        task.add_done_callback(done)

    async def aclose(self) -> None:
        """End of run: cancel background decisions (counted lost), expire deferred ones."""
        for task in list(self._inflight.values()):
            if not task.done():
                self.totals.cancelled += 1
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for d in sorted(self._deferred.values(), key=lambda d: d.seq):
            self._record_expired(d)
        self._deferred.clear()
        self._next_deferred = math.inf
        await self.reasoner.aclose()
        if self.gov_reasoner is not self.reasoner:
            await self.gov_reasoner.aclose()

    # -- running -------------------------------------------------------------------------------

    def _context(self, ticker: str) -> dict[str, Any]:
        loop = self.session.loops[ticker]
        now = loop.now
        recent = []
        acc = loop.account
        pnl = float(acc.marked(loop.mid))
        for r in self._recent[ticker]:
            recent.append(
                DecisionView(
                    ago_s=round(now - r.ts, 1),
                    tool=r.tool,
                    verdict=r.verdict,
                    change=r.change,
                    pnl_after=r4(pnl - r.pnl),
                    inventory_after=r4(acc.inventory / QTY_SCALE - r.inventory),
                    fills_after=acc.fills - r.fills,
                )
            )
        ctx = build_context(
            loop,
            self.session.params.get(ticker),
            self.session.states,
            loop.regime_flags(),
            recent,
            now,
        )
        self._contexts[ticker] = ctx
        out: dict[str, Any] = json.loads(ctx.to_json())
        return out

    def _portfolio(self, _: str) -> dict[str, Any]:
        contexts = []
        for t in self.session.loops:
            if t not in self._contexts:
                self._context(t)
            contexts.append(self._contexts[t])
        pending = [
            {
                "request_id": p.request_id,
                "market": p.market,
                "param": p.param,
                "from": p.base,
                "to": p.value,
                "asked_by": p.source,
                "expires_in_s": round(p.expires - self.session.now, 1),
                "rationale": p.rationale,
            }
            for p in self._decidable()
        ]
        return {
            "as_of": round(self.session.now, 3),
            **portfolio_context(contexts, self._gov_escalations, pending),
        }

    def _record_expired(self, d: _Deferred) -> None:
        """Audit a lockstep decision the run ended before (no reasoner call, nothing applied)."""
        self.totals.expired += 1
        now = self.session.now
        governance = d.key == "*"
        reasoner = self.gov_reasoner if governance else self.reasoner
        params = params_of(self.control, d.key)
        self._record(
            DecisionRecord(
                decision_id=d.decision_id,
                market="" if governance else d.key,
                agent="governance" if governance else "market",
                reasoner=reasoner.name,
                model=reasoner.model,
                prompt_hash=self.gov_hash if governance else self.market_hash,
                context=d.context,
                responses=[],
                outcomes=[],
                verdict="abstain",
                expired=True,
                note=f"expired: the run ended before as_of + latency_s ({d.run_at:.3f})",
                params_before=params,
                params_after=params,
                attempts=0,
                latency_s=0.0,
                usage=None,
                pending=None,
                ts=now,
                as_of=d.as_of,
                context_age_s=round(now - d.as_of, 6),
                reasoner_identity=None,
            )
        )

    def llm_summary(self) -> dict[str, Any]:
        """The run summary's ``"llm"`` entry: reasoner, mode and :class:`LLMTotals`."""
        mp, gp = self._prices["market"], self._prices["governance"]
        return {
            "reasoner": self.reasoner.name,
            "model": self.reasoner.model,
            "lockstep": self.lockstep,
            "latency_s": self.latency_s,
            "price_input_per_m": mp[0],
            "price_output_per_m": mp[1],
            **({} if gp == mp else {"governance_prices_per_m": list(gp)}),
            **self.totals.as_dict(),
        }

    def _record(self, rec: DecisionRecord) -> None:
        s = self.session
        market = rec.market
        ts = rec.ts
        s.recorder.row(
            "decisions",
            {
                "run_id": s.run_id,
                "market": market,
                "ts_ms": ms(ts),
                "agent": rec.agent,
                "reasoner": rec.reasoner,
                "decision_id": rec.decision_id,
                "outcome": rec.verdict,
                "payload": rec.payload(),
            },
        )
        for o in rec.outcomes:
            s.recorder.row(
                "tool_calls",
                {
                    "run_id": s.run_id,
                    "market": market,
                    "ts_ms": ms(ts),
                    "decision_id": rec.decision_id,
                    "agent": rec.agent,
                    "tool": o["tool"],
                    "arguments": o["arguments"],
                    "status": o["verdict"],
                    "result": {"code": o["code"], "message": o["message"], "changes": o["changes"]},
                },
            )
        if rec.agent == "governance":
            for o in rec.outcomes:
                if o["tool"] == "no_action":
                    continue
                args = o["arguments"]
                s.recorder.row(
                    "governance_actions",
                    {
                        "market": args.get("market") or "",
                        "ts_ms": ms(ts),
                        "action": o["tool"],
                        "actor": self._deps(True).source,
                        "param": args.get("param"),
                        "reason": args.get("reason"),
                        "payload": {
                            "status": "rejected" if o["verdict"] == "rejected" else "applied",
                            "decision_id": rec.decision_id,
                            "outcome": o,
                        },
                    },
                )
        self.decisions_by_verdict[rec.verdict] = self.decisions_by_verdict.get(rec.verdict, 0) + 1
        self.totals.add(rec.responses, self._prices[rec.agent])
        if rec.agent == "market":
            loop = s.loops[market]
            last = rec.outcomes[-1] if rec.outcomes else None
            change = None
            if last and last["changes"]:
                c = last["changes"][0]
                change = f"{c['param']} {c['old']:.4g}->{c['new']:.4g}"
            self._recent[market].append(
                _Recent(
                    ts,
                    last["tool"] if last else "none",
                    rec.verdict,
                    change,
                    float(loop.account.marked(loop.mid)),
                    loop.account.inventory / QTY_SCALE,
                    loop.account.fills,
                )
            )
            text = ""
            if last:
                args = last["arguments"]
                text = str(args.get("rationale") or args.get("reason") or last["message"])
            if rec.expired:
                text = str(rec.note or "")
            elif rec.verdict == "abstain":
                errors = [r["error"] for r in rec.responses if r.get("error")]
                text = f"abstain: {errors[-1] if errors else 'no usable tool call'}"
            self.last_rationale[market] = f"{rec.verdict}: {text}"[:160]
            if rec.verdict == "escalate" and last:
                self.escalations.append({"market": market, "reason": last["message"], "ts": ts})

    def _deps(self, governance: bool) -> AgentDeps:
        reasoner = self.gov_reasoner if governance else self.reasoner
        role = "governance" if governance else "market"
        return AgentDeps(
            reasoner=reasoner,
            control=self.control,
            prompt=self.gov_prompt if governance else self.market_prompt,
            prompt_hash=self.gov_hash if governance else self.market_hash,
            now=lambda: self.session.now,
            build_context=self._portfolio if governance else self._context,
            record=self._record,
            source=f"agent:{role}:{reasoner.name}",
        )

    def _config(self, key: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": f"{self.session.run_id}:{key}"}}

    def _decision_id(self) -> str:
        """``<run>-<n>``, or ``<run>-<worker>-<n>`` in one of several sessions of a run (a
        cluster actor), so that decision ids stay unique over the whole run."""
        worker = getattr(self.session, "worker", None)
        prefix = (
            self.session.run_id[:8] if worker is None else f"{self.session.run_id[:8]}-{worker}"
        )
        return f"{prefix}-{self._decisions}"

    def _schedule_market(self, loop: MarketLoop, now: float) -> str:
        """Book a market decision due at ``now``: next due time, fill mark; its decision id."""
        t = loop.ticker
        self._due[t] = now + self.interval_s
        self._next_check[t] = min(self._due[t], self._regime_check.get(t, self._due[t]))
        self._fills_at_decision[t] = loop.account.fills
        self._last_decision[t] = now
        self._decisions += 1
        return self._decision_id()

    def _schedule_governance(self, now: float) -> str:
        """Book a governance decision due at ``now`` (takes the waiting escalations)."""
        self._gov_due = now + self.governance_interval_s
        self._pending_seen = self._decidable_ids()
        self._decisions += 1
        self._gov_escalations, self.escalations = self.escalations, []
        return self._decision_id()

    async def _invoke_market(
        self,
        ticker: str,
        decision_id: str,
        snapshot: dict[str, Any] | None = None,
        as_of: float | None = None,
    ) -> None:
        await self.market_graph.ainvoke(
            _fresh(ticker, "market", decision_id, snapshot, as_of),
            self._config(ticker),
            context=self._deps(False),
            version="v2",
        )

    async def _invoke_governance(
        self, decision_id: str, snapshot: dict[str, Any] | None = None, as_of: float | None = None
    ) -> None:
        await self.gov_graph.ainvoke(
            _fresh("*", "governance", decision_id, snapshot, as_of),
            self._config("governance"),
            context=self._deps(True),
            version="v2",
        )

    async def _run_market(self, loop: MarketLoop, now: float) -> None:
        await self._invoke_market(loop.ticker, self._schedule_market(loop, now))

    async def _run_governance(self, now: float) -> None:
        await self._invoke_governance(self._schedule_governance(now))
