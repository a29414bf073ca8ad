"""One ``tool_calls`` row per MCP call, reads included.

The middleware of :mod:`cfa.mcp.server` opens a :class:`CallRecord` for every ``tools/call``
before the SDK validates anything; the tool body fills in what it knows (status, a short
summary, the run and market), and :func:`write` appends the row when the call is answered —
also for a call the SDK refused before the body ran (bad arguments, unknown tool). Rows are
written with :meth:`cfa.audit.AuditStore.open` + ``append`` + ``flush`` + close: the running
session writes the same store from another process, which the store supports (its chain head
is re-read under the write lock).

Columns (:mod:`cfa.audit.schema`): ``agent`` the actor string, ``tool``, ``arguments`` (as
received; the store's canonical JSON writes non-finite numbers as text), ``status`` ok /
rejected / error, ``result`` a short summary (``summary``, and ``code`` / ``request_seq`` when
there are), ``run_id`` the run the call concerned or the latest run ('' when there is none),
``market`` ('' when none). No token is ever part of a row: tokens live in HTTP headers, never
in arguments.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

log = logging.getLogger("cfa.mcp")

Status = Literal["ok", "rejected", "error"]
MAX_SUMMARY: Final = 500
"""Longest ``result.summary`` kept (characters)."""
MAX_ARGUMENTS: Final = 8_000
"""Longest ``arguments`` kept as JSON text (characters); longer ones are kept truncated as
``{"_truncated": <text>}``."""


@dataclass(slots=True)
class CallRecord:
    """What one call did, filled in as it runs; written once by :func:`write`."""

    tool: str
    arguments: dict[str, Any]
    actor: str
    started: float = field(default_factory=time.monotonic)
    status: Status | None = None
    summary: str = ""
    run_id: str | None = None
    market: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def done(
        self,
        status: Status,
        summary: str,
        *,
        run_id: str | None = None,
        market: str | None = None,
        **extra: Any,
    ) -> None:
        """Record the call's outcome (called by the tool body)."""
        self.status = status
        self.summary = summary
        if run_id is not None:
            self.run_id = run_id
        if market:
            self.market = market
        self.extra.update({k: v for k, v in extra.items() if v is not None})


CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar(
    "cfa_mcp_call", default=None
)
"""The record of the call being served (set by the middleware, read by the tool body)."""


def current() -> CallRecord | None:
    """The :class:`CallRecord` of the call being served, None outside one."""
    return CURRENT.get()


def _bounded(arguments: Any) -> Any:
    """``arguments``, or their JSON text cut to :data:`MAX_ARGUMENTS` when longer."""
    text = json.dumps(arguments, sort_keys=True)
    return arguments if len(text) <= MAX_ARGUMENTS else {"_truncated": text[:MAX_ARGUMENTS]}


def _latest_run_id(db: str) -> str:
    from cfa.desk import DeskError
    from cfa.desk.reads import open_reader, resolve_run

    try:
        with open_reader(db) as reader:
            return resolve_run(reader, None) or ""
    except DeskError:
        return ""


def write(db: str, rec: CallRecord) -> None:
    """Append ``rec`` as one ``tool_calls`` row of ``db``. Never raises: a failure is logged
    (stderr) and the call's answer stands. A SQLite file that does not exist is not created
    (there is nothing to govern there; the call's error already says so)."""
    from cfa.audit import AuditError, AuditStore
    from cfa.audit.errors import DB_ERRORS
    from cfa.audit.postgres import is_url

    if not is_url(db) and not Path(db).exists():
        log.warning("not audited: %s has no audit store (%s %s)", db, rec.tool, rec.status)
        return
    result: dict[str, Any] = {"summary": rec.summary[:MAX_SUMMARY], **rec.extra}
    result["ms"] = round((time.monotonic() - rec.started) * 1000)
    row = {
        "run_id": rec.run_id if rec.run_id is not None else _latest_run_id(db),
        "market": rec.market or "",
        "decision_id": None,
        "agent": rec.actor,
        "tool": rec.tool or "?",
        "arguments": _bounded(rec.arguments),
        "status": rec.status or "error",
        "result": result,
    }
    try:
        with AuditStore.open(db, checkpoint_interval=None) as store:
            store.append("tool_calls", row)
            store.flush()
    except (AuditError, *DB_ERRORS) as exc:
        log.error("could not audit %s by %s: %s", rec.tool, rec.actor, exc)
