"""The read tools: sessions, live state, traces, one decision, approvals, risk, requests.

Each is a thin typed wrapper over :mod:`cfa.desk.reads` / :class:`cfa.desk.SessionTail` on a
read-only :class:`cfa.audit.AuditReader` opened for the call and closed after it. Results are
JSON objects (times UTC epoch ms in ``ts_ms`` keys, prices dollars, money decimal strings),
the same records ``cfa traces --json`` and ``cfa govern status --json`` print.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.types import ToolAnnotations
from pydantic import Field

from cfa.mcp import calls

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from cfa.audit import AuditReader

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)

Run = Annotated[
    str | None,
    Field(description="Run id or a unique prefix; null or 'latest' for the latest run."),
]
Market = Annotated[str | None, Field(description="Only this market (ticker); null for all.")]
Limit = Annotated[int, Field(ge=0, le=10_000, description="At most this many rows (0: all).")]
When = Annotated[
    str | None,
    Field(
        description="A time: ISO 8601 (UTC unless it gives an offset, e.g. "
        "2026-11-27T19:55:00Z) or epoch seconds; null for no bound."
    ),
]
Outcome = Literal[
    "applied",
    "keep",
    "rejected",
    "abstain",
    "escalate",
    "pending_approval",
    "approved",
    "denied",
    "no_action",
]


def _read(db: str, body: Callable[[AuditReader], dict[str, Any]]) -> dict[str, Any]:
    """``body(reader)`` on a read-only reader of ``db`` (closed afterwards)."""
    from cfa.desk.reads import open_reader

    with open_reader(db) as reader:
        return body(reader)


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as text (``"nan"``), tuples as lists, and anything
    else JSON cannot carry as ``str``: what the wire carries."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def _json(out: dict[str, Any]) -> dict[str, Any]:
    """``out`` as the wire carries it (:func:`jsonable`)."""
    return {str(k): jsonable(v) for k, v in out.items()}


def register(server: MCPServer[Any], db: str) -> None:
    """Add the read tools over audit store ``db`` to ``server``."""
    from cfa.desk import reads
    from cfa.mcp.tails import TailCache

    tails = TailCache(db)

    @server.tool(annotations=READ_ONLY)
    async def list_sessions() -> dict[str, Any]:
        """Every run recorded in the audit store, newest first: run_id, started_ms and
        ended_ms (null while it runs), venue, markets, and live (whether a session still
        beats for it)."""

        def body(r: AuditReader) -> dict[str, Any]:
            return {"sessions": reads.sessions(r)}

        out = await calls.run(lambda: _read(db, body))
        live = [s["run_id"] for s in out["sessions"] if s["live"]]
        calls.record("ok", f"{len(out['sessions'])} sessions, live: {', '.join(live) or 'none'}")
        return _json(out)

    @server.tool(annotations=READ_ONLY)
    async def session_state(run: Run = None) -> dict[str, Any]:
        """The live state of a run (default: the latest): for every market its trading state,
        book mid, our bid/ask, inventory, fills, realized and marked PnL (dollars), gamma
        (1/dollar) and sigma (logit per sqrt-second) in force, frozen parameters and last
        decision; plus the global state, portfolio PnL, and the approvals pending. `version`
        grows each time new rows were folded since the previous call."""
        out = await calls.run(lambda: tails.state(run))
        calls.record(
            "ok",
            f"run {out['run_id']}: {len(out['markets'])} markets, global {out['global_state']},"
            f" {len(out['pending'])} pending",
            run_id=out["run_id"],
        )
        return _json(out)

    @server.tool(annotations=READ_ONLY)
    async def list_traces(
        run: Annotated[
            str | None,
            Field(description="Run id or unique prefix; null for the latest; 'all' for every run."),
        ] = None,
        market: Market = None,
        agent: Annotated[
            Literal["market", "governance"] | None,
            Field(description="Only this agent's decisions; null for both."),
        ] = None,
        since: When = None,
        until: When = None,
        outcomes: Annotated[
            list[Outcome] | None, Field(description="Only decisions with one of these outcomes.")
        ] = None,
        limit: Limit = 50,
    ) -> dict[str, Any]:
        """The agents' decisions (the filters of `cfa traces`), oldest first, the latest
        `limit` of them: seq, decision_id, time, market, agent, reasoner/model, outcome,
        tools called, parameter changes, rationale. `total` counts every match."""

        def body(r: AuditReader) -> dict[str, Any]:
            since_ms = reads.parse_time(since, "since") if since else None
            until_ms = reads.parse_time(until, "until") if until else None
            run_id = reads.resolve_run(r, run)
            rows, total = reads.traces(
                r,
                run_id=run_id,
                market=market,
                agent=agent,
                since_ms=since_ms,
                until_ms=until_ms,
                outcomes=outcomes,
                limit=limit,
            )
            return {"run_id": run_id, "total": total, "decisions": rows}

        out = await calls.run(lambda: _read(db, body))
        calls.record(
            "ok",
            f"{len(out['decisions'])} of {out['total']} decisions",
            run_id=out["run_id"] or "",
            market=market,
        )
        return _json(out)

    @server.tool(annotations=READ_ONLY)
    async def get_decision(
        id: Annotated[
            str, Field(min_length=1, description="A decision's audit seq, or its decision_id.")
        ],
        run: Annotated[
            str | None, Field(description="The run, when a decision_id is in several runs.")
        ] = None,
        after_s: Annotated[
            float,
            Field(gt=0, le=86_400, description="How long after it to report what followed (s)."),
        ] = 600.0,
    ) -> dict[str, Any]:
        """One decision in full: the context the agent saw, its rationale, every tool call
        with its verdict and reason code, parameters before and after, latency and tokens,
        its phases (e.g. pending_approval then approved), and what followed in each market it
        concerns over `after_s` seconds (fills, inventory, PnL)."""

        def body(r: AuditReader) -> dict[str, Any]:
            run_id = reads.resolve_run(r, run) if run else None
            d, related, followed = reads.decision(r, id, run_id=run_id, after_s=after_s)
            return reads.decision_json(d, related, followed)

        out = await calls.run(lambda: _read(db, body))
        d = out["decision"]
        calls.record(
            "ok",
            f"decision {d.get('seq')} {d.get('agent')} {d.get('outcome')}",
            run_id=d.get("run_id") or "",
            market=d.get("market") or "",
        )
        return _json(out)

    @server.tool(annotations=READ_ONLY)
    async def pending_approvals(run: Run = None) -> dict[str, Any]:
        """Parameter changes waiting for approval in a run (default: the latest), oldest
        first: request_id (for approve/deny), market, param, base (in force), value (asked),
        source (who asked), why, rationale, expires (session clock, epoch s)."""

        def body(r: AuditReader) -> dict[str, Any]:
            run_id = reads.resolve_run(r, run) or ""
            return {"run_id": run_id, "pending": reads.pending_of(r, run_id)}

        out = await calls.run(lambda: _read(db, body))
        ids = ", ".join(p["request_id"] for p in out["pending"]) or "none"
        calls.record("ok", f"pending: {ids}", run_id=out["run_id"])
        return _json(out)

    @server.tool(annotations=READ_ONLY)
    async def risk_events(
        run: Run = None, market: Market = None, limit: Limit = 100
    ) -> dict[str, Any]:
        """Risk events of a run (default: the latest), newest first: order denials, breaker
        trips, trading-state changes (seq, ts_ms, market, kind, code, state, detail)."""

        def body(r: AuditReader) -> dict[str, Any]:
            run_id = reads.resolve_run(r, run)
            n = limit or 1_000_000
            return {
                "run_id": run_id,
                "events": reads.risk_events(r, run_id=run_id, market=market, limit=n),
            }

        out = await calls.run(lambda: _read(db, body))
        calls.record(
            "ok", f"{len(out['events'])} risk events", run_id=out["run_id"] or "", market=market
        )
        return _json(out)

    @server.tool(annotations=READ_ONLY)
    async def governance_requests(limit: Limit = 50) -> dict[str, Any]:
        """The latest governance rows of the store, newest first: requests (by people and
        agents), their results (status applied or rejected, the control plane's message) and
        approval events: seq, ts_ms, run_id, market, action, actor, reason, status,
        request_seq (for a result: the request it answers), message."""

        def body(r: AuditReader) -> dict[str, Any]:
            return {"requests": reads.requests(r, limit=limit or 1_000_000)}

        out = await calls.run(lambda: _read(db, body))
        calls.record("ok", f"{len(out['requests'])} governance rows")
        return _json(out)
