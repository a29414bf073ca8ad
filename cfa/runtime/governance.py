"""Governance across processes: people act on a running session through its audit store.

``cfa govern ...`` (another process) appends a *request* row to ``governance_actions``
(``payload.status == "requested"``) in the same SQLite file the running ``cfa run`` writes. The
session's :class:`GovernancePoller` reads new requests every ``interval`` seconds of wall time,
applies each one through the control plane (:class:`cfa.control.plane.ControlPlane`, as a
person: above every agent and breaker, inside the policy bounds), cancels the resting orders of
halted markets at once, and appends a *result* row (``status`` applied or rejected, with the
request's seq). Requests written before the session started are ignored.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfa.audit.postgres import is_url
from cfa.audit.store import to_ms as ms
from cfa.control.outcomes import ToolOutcome, Verdict
from cfa.control.tools import GOVERNANCE_TOOLS, parse_call

if TYPE_CHECKING:  # `cfa govern` imports this module: keep it light
    from cfa.control.plane import ControlPlane
    from cfa.runtime.recorder import Recorder

REQUESTED = "requested"


def operator_name(explicit: str | None = None) -> str:
    """Who acts: ``--operator``, else the login name."""
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "unknown")


def request_row(tool: str, arguments: dict[str, Any], actor: str) -> dict[str, Any]:
    """The ``governance_actions`` row of a request by ``actor`` (a source string:
    ``person:alice``, ``agent:governance:mcp:claude``), written by :func:`cfa.desk.submit`."""
    return {
        "run_id": "",
        "market": arguments.get("market") or "",
        "ts_ms": ms(time.time()),
        "action": tool,
        "actor": actor,
        "param": arguments.get("param"),
        "value": arguments.get("gamma")
        if arguments.get("gamma") is not None
        else arguments.get("sigma"),
        "ttl_s": arguments.get("ttl_s"),
        "reason": arguments.get("reason"),
        "payload": {"status": REQUESTED, "arguments": arguments, "requested_wall": time.time()},
    }


class GovernancePoller:
    """Applies governance requests from other processes to a running session."""

    def __init__(
        self,
        db: str | Path,
        control: ControlPlane,
        recorder: Recorder,
        now: Callable[[], float],
        on_applied: Callable[[ToolOutcome], Awaitable[None]],
        flush: Callable[[], None],
        *,
        worker: str | None = None,
        markets: frozenset[str] | None = None,
        since: int | None = None,
    ) -> None:
        """``worker``/``markets``: this session is one of several of one run (a cluster actor)
        trading ``markets``: it applies only requests for all markets or for one of its own (a
        pending change's request id ``MARKET:param:n`` counts as its market), skips the others
        without a row (so a market's request has one answer, a global one one per session), and
        its result rows name it (``payload.worker``, ``worker_markets``: how many it holds).
        ``since``: requests after this audit seq count (default: those written after now)."""
        self.db = db
        self.control = control
        self.recorder = recorder
        self.now = now
        self.on_applied = on_applied
        self.flush = flush
        self._keep = is_url(str(db))
        self._conn: Any = None
        self.worker = worker
        self.markets = markets
        self.last_seq = self._max_seq() if since is None else since
        self.applied: list[ToolOutcome] = []

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
        """Rows of a read of the store, or None when it cannot be read now (retried at the next
        poll). SQLite: a fresh read-only connection each time (cheap, never holds a lock);
        PostgreSQL: one read-only connection kept open (a connection costs a round trip)."""
        from cfa.audit.chain import connect_readonly
        from cfa.audit.errors import DB_ERRORS, AuditError

        try:
            conn = self._conn if self._conn is not None else connect_readonly(self.db)
        except AuditError:
            return None
        rows: list[tuple[Any, ...]] | None = None
        with contextlib.suppress(*DB_ERRORS):
            rows = [tuple(r) for r in conn.execute(sql, params).fetchall()]
        if rows is not None and self._keep:
            self._conn = conn
        else:
            self._conn = None
            with contextlib.suppress(*DB_ERRORS):
                conn.close()
        return rows

    def _max_seq(self) -> int:
        rows = self._query("select max(seq) from governance_actions")
        return int(rows[0][0] or 0) if rows else 0

    def _requests(self) -> list[dict[str, Any]]:
        rows = self._query(
            "select seq, action, actor, payload from governance_actions where seq > ? order by seq",
            (self.last_seq,),
        )
        return [
            dict(zip(("seq", "action", "actor", "payload"), r, strict=True)) for r in rows or []
        ]

    def concerns(self, payload: dict[str, Any]) -> bool:
        """Whether a request (its row's payload) is this session's to apply: every request when
        the session holds the whole run, else one for all markets or for one of its own."""
        if self.markets is None:
            return True
        args = payload.get("arguments") or {}
        market = args.get("market")
        if market:
            return market in self.markets
        request_id = args.get("request_id")
        if request_id:
            return str(request_id).rsplit(":", 2)[0] in self.markets
        return True

    def close(self) -> None:
        """Close the kept connection (PostgreSQL), if any."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    async def poll(self) -> int:
        """Apply every new request; returns how many were handled."""
        import json

        handled = 0
        for row in self._requests():
            self.last_seq = max(self.last_seq, int(row["seq"]))
            payload = json.loads(row["payload"] or "{}")
            if payload.get("status") != REQUESTED or not self.concerns(payload):
                continue
            handled += 1
            tool, args = row["action"], payload.get("arguments", {})
            parsed = parse_call(tool, args, GOVERNANCE_TOOLS)
            actor = str(row["actor"])
            if isinstance(parsed, ToolOutcome):
                outcome = parsed
            else:
                outcome = self.control.apply(parsed, source=actor, now=self.now())
            if outcome.verdict is not Verdict.REJECTED:
                await self.on_applied(outcome)
            self.recorder.row(
                "governance_actions",
                {
                    "market": args.get("market") or "",
                    "ts_ms": ms(self.now()),
                    "action": tool,
                    "actor": actor,
                    "reason": args.get("reason"),
                    "payload": {
                        "status": "applied" if outcome.ok else "rejected",
                        "request_seq": int(row["seq"]),
                        "outcome": outcome.as_dict(),
                        "requested_wall": payload.get("requested_wall"),
                        "applied_wall": time.time(),
                        **(
                            {"worker": self.worker, "worker_markets": len(self.markets or ())}
                            if self.worker is not None
                            else {}
                        ),
                    },
                },
            )
            self.applied.append(outcome)
        if handled:
            self.flush()
        return handled
