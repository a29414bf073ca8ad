"""Governance actions: checked here, applied by the running session's control plane.

:func:`submit` checks an action the way the session will (the market must be one the latest run
trades, the arguments must parse as the governance tool, an override must lie inside that run's
policy bounds, an approval must name a pending change, a session must be running), then appends
it as a *request* row to ``governance_actions``. The session's
:class:`cfa.runtime.governance.GovernancePoller` applies it within about a second, as its actor
ranks (:mod:`cfa.risk.actors`), and appends a *result* row naming the request's seq, which
:func:`wait_result` reads.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from cfa.desk.errors import DeskError

ACTIONS: Final = (
    "freeze",
    "unfreeze",
    "override",
    "halt",
    "resume",
    "reduce_only",
    "approve_change",
)
"""The governance tools an operator may request (``no_action`` is the governance agent's)."""


def person(name: str | None = None) -> str:
    """The source of a person's action: ``person:<name>`` (default: the login name)."""
    from cfa.runtime.governance import operator_name

    return f"person:{operator_name(name)}"


def _check_bounds(run_id: str, config: dict[str, Any], arguments: dict[str, Any]) -> None:
    from cfa.risk.policy import Policy  # lazy: only overrides check bounds (yaml, pydantic)

    try:
        policy = Policy.model_validate(config.get("policy", {}))
    except Exception as exc:  # a run recorded without a readable policy
        raise DeskError(f"run {run_id}: cannot read its policy to check bounds ({exc})") from None
    for p in ("gamma", "sigma"):
        v = arguments.get(p)
        b = getattr(policy.params, p)
        if v is not None and not b.contains(v):
            raise DeskError(f"{p} {v:g} is outside the policy bounds [{b.min:g}, {b.max:g}]")


def submit(db: str, tool: str, arguments: dict[str, Any], actor: str) -> int:
    """Check ``tool(arguments)`` against the latest run of ``db`` and write it as a request by
    ``actor`` (a source string: ``person:alice``, ``agent:governance:mcp:claude``); returns the
    request row's audit seq. :class:`DeskError` naming what is wrong, with nothing written, for
    an unknown tool or market, arguments the tool refuses, an override outside the policy
    bounds, an approval of a change that is not pending, or when no session is running."""
    from cfa.audit import AuditError, AuditStore
    from cfa.audit.chain import store_name
    from cfa.audit.heartbeat import session_status
    from cfa.control.outcomes import ToolOutcome
    from cfa.control.tools import GOVERNANCE_TOOLS, parse_call
    from cfa.desk.reads import latest_run, pending_requests
    from cfa.runtime.governance import request_row

    if tool not in ACTIONS:
        raise DeskError(f"unknown action {tool!r}; actions: {', '.join(ACTIONS)}")
    if not actor or ":" not in actor:
        raise DeskError(f"actor {actor!r}: expected a source such as person:NAME")
    run_id, config, markets = latest_run(db)
    market = arguments.get("market")
    if market is not None and market not in markets:
        known = ", ".join(markets) or "none yet"
        raise DeskError(f"unknown market {market!r} in run {run_id}; markets: {known}")
    parsed = parse_call(tool, arguments, GOVERNANCE_TOOLS)
    if isinstance(parsed, ToolOutcome):
        raise DeskError(f"{tool}: {parsed.message}")
    if tool == "override":
        _check_bounds(run_id, config, arguments)
    if tool == "approve_change":
        rid = arguments.get("request_id")
        if rid not in {r["request_id"] for r in pending_requests(db, run_id)}:
            raise DeskError(f"{rid!r} is not pending in run {run_id} (see the pending approvals)")
    alive, detail = session_status(db)
    if not alive:
        raise DeskError(
            f"no session is running on {store_name(db)} ({detail}): nothing was requested"
        )
    try:
        with AuditStore.open(db) as store:
            store.append("governance_actions", request_row(tool, arguments, actor))
            store.flush()
            return store.head.seq
    except AuditError as exc:
        raise DeskError(str(exc)) from None


def wait_result(db: str, request_seq: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The result payloads (``status`` applied or rejected, ``outcome``) the running session
    wrote for the request at ``request_seq``, waiting up to ``timeout`` wall seconds for the
    first; ``[]`` when none came in time (the session may still apply it). A request for all
    markets of a cluster run has one result per actor: those written by then."""
    from cfa.audit.chain import connect_readonly
    from cfa.audit.errors import DB_ERRORS, AuditError

    deadline = time.monotonic() + timeout
    while True:
        found: list[dict[str, Any]] = []
        try:
            conn = connect_readonly(db)
            try:
                for (payload,) in conn.execute(
                    "select payload from governance_actions where seq > ? order by seq",
                    (request_seq,),
                ):
                    p = json.loads(payload or "{}")
                    if p.get("request_seq") == request_seq:
                        found.append(p)
            finally:
                conn.close()
        except (AuditError, *DB_ERRORS):
            pass
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)
