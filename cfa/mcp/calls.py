"""Running one tool body: off the event loop, every failure a tool error naming what is wrong.

The desk (:mod:`cfa.desk`) reads and writes the audit store with blocking calls, and a
governance action waits up to ~3 s for the session's answer, so each body runs in a worker
thread (:func:`anyio.to_thread.run_sync`): the server keeps answering other calls meanwhile.
A :class:`cfa.desk.DeskError`, a bad value, or a store that cannot be read becomes a
:class:`mcp.server.mcpserver.exceptions.ToolError` whose text names the problem (the client
gets ``isError`` and that text); anything unexpected is logged with its traceback on stderr and
reported by its type and message, never as a traceback, and the server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

from cfa.mcp import audit

log = logging.getLogger("cfa.mcp")
T = TypeVar("T")


class BadArgument(ValueError):
    """An argument the tool refuses (raised by a body; reported as a tool error)."""


def explain(exc: BaseException) -> str:
    """One line for the client naming what went wrong in a tool body."""
    from cfa.audit import AuditError
    from cfa.audit.errors import DB_ERRORS
    from cfa.desk import DeskError

    if isinstance(exc, DeskError | BadArgument | AuditError):
        return str(exc)
    if isinstance(exc, DB_ERRORS):
        return f"cannot read the audit store: {exc}"
    log.error("unexpected error in a tool", exc_info=exc)
    return f"internal error ({type(exc).__name__}): {exc}"


async def run(body: Callable[[], T]) -> T:
    """``body()`` in a worker thread; its failure as a :class:`ToolError` (and recorded on the
    call's :class:`cfa.mcp.audit.CallRecord` with status ``error``)."""
    try:
        return await anyio.to_thread.run_sync(body)
    except Exception as exc:
        message = explain(exc)
        rec = audit.current()
        if rec is not None:
            rec.done("error", message)
        raise ToolError(message) from None


def record(status: audit.Status, summary: str, **fields: Any) -> None:
    """Record the outcome of the call being served (no-op outside one)."""
    rec = audit.current()
    if rec is not None:
        rec.done(status, summary, **fields)


def actor() -> str:
    """The actor string of the call being served (set by the middleware)."""
    rec = audit.current()
    if rec is None:
        raise ToolError("internal error: no call context (the server's middleware is missing)")
    return rec.actor
