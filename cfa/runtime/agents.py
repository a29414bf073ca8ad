"""The slow path: when and how the market and governance agents run.

Each market agent runs every ``interval_s`` seconds of exchange time and on triggers — its
inventory reaching ``near_cap`` of the position limit, a burst of ``fill_burst`` fills since its
last decision, a change of its VAR regime flags (checked every ``regime_interval_s``). The
governance agent runs every ``governance_interval_s`` and whenever an escalation or a pending
approval waits.

Agents never block quoting. With a deterministic local reasoner (``heuristic``, ``scripted``)
on the simulator, decisions run *inline* at the event that triggered them, so a run is
reproducible from its seed. With a remote reasoner (``openai``) each decision is an asyncio task
(at most one in flight per market): the fast path keeps quoting on the last good parameters
while the call is out, and a timeout or a bad answer is an audited abstain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from langgraph.types import Command, Overwrite

from cfa.agents.context import DecisionView, build_context, portfolio_context, r4
from cfa.agents.graphs import AgentDeps, build_governance_graph, build_market_graph
from cfa.agents.reasoners.base import Reasoner
from cfa.agents.tools import ToolOutcome, Verdict
from cfa.audit.store import to_ms as ms
from cfa.core.types import QTY_SCALE
from cfa.runtime.loop import LoopState, MarketLoop

if TYPE_CHECKING:
    from cfa.runtime.session import Session


def load_prompt(name: str) -> tuple[str, str]:
    """``(text, sha256 hex prefix)`` of a packaged prompt template (``market_agent``, ...)."""
    text = resources.files("cfa.prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]


def _fresh(market: str, role: str, decision_id: str) -> dict[str, Any]:
    """The input of one decision: the thread is per market, the state is per decision."""
    return {
        "market": market,
        "role": role,
        "decision_id": decision_id,
        "responses": Overwrite([]),
        "outcomes": Overwrite([]),
        "pending": None,
        "approval": None,
        "feedback": None,
        "verdict": "abstain",
    }


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
    ) -> None:
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
        self.inline = reasoner.name != "openai" if inline is None else inline
        self.applier = session.applier
        self.market_graph = build_market_graph()
        self.gov_graph = build_governance_graph()
        self.market_prompt, self.market_hash = load_prompt("market_agent")
        self.gov_prompt, self.gov_hash = load_prompt("governance_agent")
        self._due: dict[str, float] = {}
        self._gov_due: float | None = None
        self._fills_at_decision: dict[str, int] = {}
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
        if loop.state is not LoopState.READY or t in self._inflight:
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

    def governance_due(self, now: float) -> bool:
        if "*" in self._inflight:
            return False
        if self._gov_due is None:
            self._gov_due = now + self.governance_interval_s
        return now >= self._gov_due or bool(self.escalations) or bool(self.applier.pending)

    async def after_event(self, loop: MarketLoop, now: float) -> None:
        """Run whatever is due (inline) or start it (background)."""
        if now >= self.applier.next_expiry:
            self.applier.expire_overrides(now)
        if self.due(loop, now):
            await self._start(loop.ticker, self._run_market(loop, now))
        if self.governance_due(now):
            await self._start("*", self._run_governance(now))

    async def _start(self, key: str, coro: Any) -> None:
        if self.inline:
            await coro
            return
        task = asyncio.create_task(coro)
        self._inflight[key] = task
        task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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
        return json.loads(ctx.to_json())

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
                "value": p.value,
                "rationale": p.rationale,
            }
            for p in self.applier.pending.values()
        ]
        return portfolio_context(contexts, self._gov_escalations, pending)

    def _record(self, rec: dict[str, Any]) -> None:
        s = self.session
        market = rec["market"]
        ts = rec["ts"]
        s.recorder.row(
            "decisions",
            {
                "run_id": s.run_id,
                "market": market,
                "ts_ms": ms(ts),
                "agent": rec["agent"],
                "reasoner": rec["reasoner"],
                "decision_id": rec["decision_id"],
                "outcome": rec["verdict"],
                "payload": rec,
            },
        )
        for o in rec["outcomes"]:
            s.recorder.row(
                "tool_calls",
                {
                    "run_id": s.run_id,
                    "market": market,
                    "ts_ms": ms(ts),
                    "decision_id": rec["decision_id"],
                    "agent": rec["agent"],
                    "tool": o["tool"],
                    "arguments": o["arguments"],
                    "status": o["verdict"],
                    "result": {"code": o["code"], "message": o["message"], "changes": o["changes"]},
                },
            )
        self.decisions_by_verdict[rec["verdict"]] = (
            self.decisions_by_verdict.get(rec["verdict"], 0) + 1
        )
        if rec["agent"] == "market" and rec["phase"] == "decision":
            loop = s.loops[market]
            last = rec["outcomes"][-1] if rec["outcomes"] else None
            change = None
            if last and last["changes"]:
                c = last["changes"][0]
                change = f"{c['param']} {c['old']:.4g}->{c['new']:.4g}"
            self._recent[market].append(
                _Recent(
                    ts,
                    last["tool"] if last else "none",
                    rec["verdict"],
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
            if rec["verdict"] == "abstain":
                errors = [r["error"] for r in rec["responses"] if r.get("error")]
                text = f"abstain: {errors[-1] if errors else 'no usable tool call'}"
            self.last_rationale[market] = f"{rec['verdict']}: {text}"[:160]
            if rec["verdict"] == "escalate" and last:
                self.escalations.append({"market": market, "reason": last["message"], "ts": ts})

    def _deps(self, governance: bool) -> AgentDeps:
        reasoner = self.gov_reasoner if governance else self.reasoner
        role = "governance" if governance else "market"
        return AgentDeps(
            reasoner=reasoner,
            applier=self.applier,
            prompt=self.gov_prompt if governance else self.market_prompt,
            prompt_hash=self.gov_hash if governance else self.market_hash,
            now=lambda: self.session.now,
            build_context=self._portfolio if governance else self._context,
            record=self._record,
            source=f"agent:{role}:{reasoner.name}",
            resume_approval=self._resume if governance else None,
        )

    def _config(self, key: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": f"{self.session.run_id}:{key}"}}

    async def _run_market(self, loop: MarketLoop, now: float) -> None:
        t = loop.ticker
        self._due[t] = now + self.interval_s
        self._next_check[t] = min(self._due[t], self._regime_check.get(t, self._due[t]))
        self._fills_at_decision[t] = loop.account.fills
        self._decisions += 1
        await self.market_graph.ainvoke(
            _fresh(t, "market", f"{self.session.run_id[:8]}-{self._decisions}"),
            self._config(t),
            context=self._deps(False),
            version="v2",
        )

    async def _run_governance(self, now: float) -> None:
        self._gov_due = now + self.governance_interval_s
        self._decisions += 1
        self._gov_escalations, self.escalations = self.escalations, []
        await self.gov_graph.ainvoke(
            _fresh("*", "governance", f"{self.session.run_id[:8]}-{self._decisions}"),
            self._config("governance"),
            context=self._deps(True),
            version="v2",
        )

    async def _resume(self, request_id: str, approved: bool, reason: str) -> ToolOutcome | None:
        """Resume the market graph paused on ``request_id`` with the governance answer."""
        pend = self.applier.pending.get(request_id)
        if pend is None:
            return None
        await self.market_graph.ainvoke(
            Command(resume={"approved": approved, "reason": reason, "by": "governance"}),
            self._config(pend.market),
            context=self._deps(False),
            version="v2",
        )
        return ToolOutcome(
            "approve_change",
            {"request_id": request_id, "approved": approved, "reason": reason},
            verdict=Verdict.APPLIED,
            message="resumed the paused market agent",
        )
