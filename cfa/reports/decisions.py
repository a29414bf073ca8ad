"""Agent decisions as recorded in the audit store, normalised for review.

A ``decisions`` row's payload is the record built by :func:`cfa.agents.graphs._decision_record`:
the context summary, the reasoner's responses, the tool-call outcomes (with their validation
verdicts and codes), parameters before and after, latency and token usage.

**Own responses and outcomes.** The graph's state lists ``responses`` and ``outcomes`` are
additive, and a market's graph keeps one thread per run, so a payload may also carry the
responses and outcomes of the *earlier* decisions of the same thread. The entries that belong to
a decision are recovered exactly from its own counters: ``attempts`` (reset for every decision)
is the number of its responses, the last ones; each usable response yields one outcome per tool
call; an ``approval`` phase adds the approval outcome. This is correct whether or not the lists
carry history. (``approval`` and ``pending`` can also be left over from an earlier decision of
the thread: they are reported only for an approval phase and a pending decision.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cfa.audit import AuditReader

__all__ = ["DecisionRecord", "fmt_ts", "load_decisions", "own_entries"]


def fmt_ts(ts_ms: int | float, *, date: bool = True) -> str:
    """UTC time of epoch milliseconds: ``2026-11-27 19:54:41.484`` (``date=False``: time only)."""
    dt = datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC)
    text = dt.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{text}.{int(ts_ms) % 1000:03d}"


def own_entries(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The responses and tool-call outcomes that belong to this decision (see the module doc)."""
    responses = payload.get("responses") or []
    outcomes = payload.get("outcomes") or []
    attempts = payload.get("attempts")
    if not isinstance(attempts, int) or attempts < 0 or attempts > len(responses):
        return list(responses), list(outcomes)  # unknown shape: take everything
    own_resp = responses[len(responses) - attempts :] if attempts else []
    n = sum(len(r.get("calls") or []) for r in own_resp if r.get("error") is None)
    if payload.get("phase") == "approval":
        n += 1
    n = min(n, len(outcomes))
    own_out = outcomes[len(outcomes) - n :] if n else []
    return list(own_resp), list(own_out)


@dataclass(slots=True)
class DecisionRecord:
    """One ``decisions`` row, with its own responses and outcomes split out."""

    seq: int
    run_id: str
    decision_id: str | None
    ts_ms: int
    market: str
    agent: str
    reasoner: str
    outcome: str
    payload: dict[str, Any]
    responses: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DecisionRecord:
        """Build from a decoded ``decisions`` row (:meth:`AuditReader.rows`)."""
        payload = row.get("payload") if isinstance(row.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        responses, outcomes = own_entries(payload)
        return cls(
            seq=row["seq"],
            run_id=row["run_id"],
            decision_id=row.get("decision_id"),
            ts_ms=row["ts_ms"],
            market=row.get("market") or "",
            agent=row["agent"],
            reasoner=row["reasoner"],
            outcome=row["outcome"],
            payload=payload,
            responses=responses,
            outcomes=outcomes,
        )

    # -- derived fields ------------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The model the reasoner named (``rules-v1`` for the heuristic)."""
        m = self.payload.get("model")
        return str(m) if m is not None else None

    @property
    def phase(self) -> str:
        """``decision`` or ``approval`` (the governance answer to a pending change)."""
        return str(self.payload.get("phase") or "decision")

    @property
    def tools(self) -> list[str]:
        """Names of this decision's tool calls, in order."""
        return [str(o.get("tool")) for o in self.outcomes]

    @property
    def changes(self) -> list[dict[str, Any]]:
        """Parameter changes this decision made: ``{market, param, old, new}``."""
        out: list[dict[str, Any]] = []
        for o in self.outcomes:
            for c in o.get("changes") or []:
                out.append(dict(c))
        return out

    @property
    def rationale(self) -> str:
        """The reason given: the last tool call's rationale/reason, or why it abstained."""
        if self.outcome == "abstain":
            errors = [str(r["error"]) for r in self.responses if r.get("error")]
            return f"abstain: {errors[-1] if errors else 'no usable tool call'}"
        texts = []
        for o in self.outcomes:
            args = o.get("arguments") or {}
            text = args.get("rationale") or args.get("reason") if isinstance(args, dict) else None
            texts.append(str(text or o.get("message") or ""))
        texts = [t for t in texts if t]
        if texts:
            return texts[-1]
        for r in reversed(self.responses):
            if r.get("text"):
                return str(r["text"])
        return ""

    @property
    def usage(self) -> dict[str, int] | None:
        """Tokens used by this decision's own responses (None when the reasoner reports none)."""
        total: dict[str, int] = {}
        for r in self.responses:
            for k, v in (r.get("usage") or {}).items():
                if isinstance(v, int):
                    total[k] = total.get(k, 0) + v
        return total or None

    @property
    def latency_s(self) -> float | None:
        """Wall seconds from context to verdict (including the wait for an approval)."""
        v = self.payload.get("latency_s")
        return float(v) if isinstance(v, int | float) else None

    def change_text(self) -> str:
        """``γ 1→1.25, σ 0.0027→0.0039`` for the changes made (``''`` if none)."""
        names = {"gamma": "γ", "sigma": "σ"}
        parts = []
        for c in self.changes:
            p = names.get(str(c.get("param")), str(c.get("param")))
            prefix = f"{c['market']}:" if self.agent == "governance" and c.get("market") else ""
            parts.append(f"{prefix}{p} {_g(c.get('old'))}→{_g(c.get('new'))}")
        return ", ".join(parts)

    def summary(self) -> dict[str, Any]:
        """The row of ``cfa traces --json``: what, when, who, verdict, tools, changes, why."""
        return {
            "seq": self.seq,
            "run_id": self.run_id,
            "decision_id": self.decision_id,
            "ts_ms": self.ts_ms,
            "time": fmt_ts(self.ts_ms).replace(" ", "T") + "Z",
            "market": self.market,
            "agent": self.agent,
            "phase": self.phase,
            "reasoner": self.reasoner,
            "model": self.model,
            "outcome": self.outcome,
            "tools": self.tools,
            "changes": self.changes,
            "rationale": self.rationale,
        }

    def detail(self) -> dict[str, Any]:
        """Everything ``cfa traces show --json`` reports about the decision itself."""
        d = self.summary()
        p = self.payload
        d.update(
            {
                "prompt_hash": p.get("prompt_hash"),
                "context": p.get("context"),
                "attempts": p.get("attempts"),
                "tool_calls": [
                    {
                        "tool": o.get("tool"),
                        "arguments": o.get("arguments"),
                        "verdict": o.get("verdict"),
                        "code": o.get("code"),
                        "message": o.get("message"),
                        "request_id": o.get("request_id"),
                        "changes": o.get("changes") or [],
                    }
                    for o in self.outcomes
                ],
                "responses": [
                    {
                        "attempt": r.get("attempt"),
                        "model": r.get("model"),
                        "error": r.get("error"),
                        "text": r.get("text"),
                        "latency_s": r.get("latency_s"),
                        "usage": r.get("usage"),
                        "calls": r.get("calls"),
                    }
                    for r in self.responses
                ],
                "params_before": p.get("params_before"),
                "params_after": p.get("params_after"),
                "latency_s": self.latency_s,
                "usage": self.usage,
                "pending": p.get("pending") if self.outcome == "pending_approval" else None,
                "approval": p.get("approval") if self.phase == "approval" else None,
            }
        )
        return d


def _g(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) else str(v)


def load_decisions(
    reader: AuditReader,
    *,
    run_id: str | None = None,
    market: str | None = None,
    agent: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    outcomes: Iterable[str] | None = None,
) -> list[DecisionRecord]:
    """Decisions in seq order, filtered by run, market, agent, ``since_ms <= ts_ms < until_ms``
    and outcome (any of ``outcomes``)."""
    wanted = set(outcomes) if outcomes else None
    out = []
    for row in reader.rows(
        "decisions", run_id=run_id, market=market, since_ms=since_ms, until_ms=until_ms
    ):
        if agent is not None and row["agent"] != agent:
            continue
        if wanted is not None and row["outcome"] not in wanted:
            continue
        out.append(DecisionRecord.from_row(row))
    return out
