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
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def request_row(tool: str, arguments: dict[str, Any], operator: str) -> dict[str, Any]:
    """The ``governance_actions`` row of a person's request (written by ``cfa govern``)."""
    return {
        "run_id": "",
        "market": arguments.get("market") or "",
        "ts_ms": ms(time.time()),
        "action": tool,
        "actor": f"person:{operator}",
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
        db: Path,
        control: ControlPlane,
        recorder: Recorder,
        now: Callable[[], float],
        on_applied: Callable[[ToolOutcome], Awaitable[None]],
        flush: Callable[[], None],
    ) -> None:
        self.db = db
        self.control = control
        self.recorder = recorder
        self.now = now
        self.on_applied = on_applied
        self.flush = flush
        self.last_seq = self._max_seq()
        self.applied: list[ToolOutcome] = []

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1.0)
        conn.row_factory = sqlite3.Row
        return conn

    def _max_seq(self) -> int:
        try:
            with contextlib.closing(self._connect()) as c:
                row = c.execute("select max(seq) from governance_actions").fetchone()
                return int(row[0] or 0)
        except sqlite3.Error:
            return 0

    def _requests(self) -> list[sqlite3.Row]:
        try:
            with contextlib.closing(self._connect()) as c:
                return list(
                    c.execute(
                        "select seq, action, actor, payload from governance_actions"
                        " where seq > ? order by seq",
                        (self.last_seq,),
                    )
                )
        except sqlite3.Error:
            return []

    async def poll(self) -> int:
        """Apply every new request; returns how many were handled."""
        import json

        handled = 0
        for row in self._requests():
            self.last_seq = max(self.last_seq, int(row["seq"]))
            payload = json.loads(row["payload"] or "{}")
            if payload.get("status") != REQUESTED:
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
                    },
                },
            )
            self.applied.append(outcome)
        if handled:
            self.flush()
        return handled
