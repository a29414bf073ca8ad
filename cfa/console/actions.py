"""What a console action does: read the form or JSON, check it, submit it, wait for the answer.

Every action goes through :func:`cfa.desk.submit` as ``person:<operator>`` — the one control
plane the running session applies requests through — then :func:`cfa.desk.wait_result` waits
up to :data:`WAIT_S` seconds for the session's answer. The operator's name and a reason are
required (non-empty); an action aimed at a run that is not the store's latest run (the one a
session can be running) is refused. :class:`ActionError` carries a message for the operator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

WAIT_S: Final = 2.0
"""How long an action waits for the running session's answer (wall seconds)."""
MAX_OPERATOR: Final = 64
"""The longest operator name accepted (characters)."""

STATE_TOOLS: Final = ("halt", "resume", "reduce_only")
FREEZE_TOOLS: Final = ("freeze", "unfreeze")


class ActionError(ValueError):
    """An action cannot be submitted; the message says why (nothing was written)."""


@dataclass
class ActionResult:
    """What became of a submitted action: its request ``seq``, ``status`` (``applied``,
    ``rejected``, or ``pending`` when no answer came within :data:`WAIT_S`), a one-line
    ``message`` for the operator, and the session's result payloads."""

    tool: str
    seq: int
    status: str
    message: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer of ``POST /api/actions``."""
        return {
            "tool": self.tool,
            "request_seq": self.seq,
            "status": self.status,
            "message": self.message,
            "results": self.results,
        }


def check_operator(name: object) -> str:
    """The operator's name, stripped; :class:`ActionError` when empty, too long or not text."""
    if not isinstance(name, str) or not name.strip():
        raise ActionError("give the operator's name (who acts is recorded)")
    text = str(name).strip()
    if len(text) > MAX_OPERATOR or any(not c.isprintable() for c in text):
        raise ActionError(f"operator: at most {MAX_OPERATOR} printable characters")
    return text


def _number(form: Mapping[str, str], key: str) -> float | None:
    text = (form.get(key) or "").strip()
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ActionError(f"{key}: {text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise ActionError(f"{key}: must be a positive number, got {text!r}")
    return v


def arguments_from_form(tool: str, form: Mapping[str, str]) -> dict[str, Any]:
    """The governance tool's arguments from an HTML form's fields (``market`` empty or ``*``:
    every market for halt/resume/reduce_only; ``ttl`` a duration such as ``90s``, ``10m``;
    ``decision`` approve or deny); :class:`ActionError` naming a bad or missing field."""
    from cfa.cli.options import duration_seconds
    from cfa.desk import ACTIONS

    reason = (form.get("reason") or "").strip()
    if tool not in ACTIONS:
        raise ActionError(f"unknown action {tool!r}; actions: {', '.join(ACTIONS)}")
    market = (form.get("market") or "").strip()
    if tool in STATE_TOOLS:
        return {"market": None if market in ("", "*") else market, "reason": reason}
    if tool in FREEZE_TOOLS:
        if not market:
            raise ActionError(f"{tool}: which market?")
        param = (form.get("param") or "all").strip()
        if param not in ("gamma", "sigma", "all"):
            raise ActionError(f"param: expected gamma, sigma or all, got {param!r}")
        return {"market": market, "param": param, "reason": reason}
    if tool == "override":
        if not market:
            raise ActionError("override: which market?")
        gamma, sigma = _number(form, "gamma"), _number(form, "sigma")
        if gamma is None and sigma is None:
            raise ActionError("override: give γ and/or σ")
        try:
            ttl = duration_seconds((form.get("ttl") or "10m").strip())
        except ValueError as exc:
            raise ActionError(f"ttl: {exc}") from None
        return {"market": market, "gamma": gamma, "sigma": sigma, "ttl_s": ttl, "reason": reason}
    # approve_change
    rid = (form.get("request_id") or "").strip()
    if not rid:
        raise ActionError("approve_change: which request?")
    decision = (form.get("decision") or "").strip()
    if decision not in ("approve", "deny"):
        raise ActionError(f"decision: expected approve or deny, got {decision!r}")
    return {"request_id": rid, "approved": decision == "approve", "reason": reason}


def describe(tool: str, arguments: Mapping[str, Any]) -> str:
    """``halt on KX-A``, ``approve_change of req-3 (deny)``: what an action aims at."""
    if tool == "approve_change":
        verdict = "approve" if arguments.get("approved") else "deny"
        return f"{verdict} {arguments.get('request_id')}"
    return f"{tool} on {arguments.get('market') or 'all markets'}"


def perform(
    db: str,
    tool: str,
    arguments: Any,
    operator: Any,
    *,
    run_id: str | None = None,
    wait_s: float = WAIT_S,
) -> ActionResult:
    """Submit ``tool(arguments)`` (a dict) as ``person:<operator>`` and wait for the session's
    answer.

    :class:`ActionError` (nothing written) when the arguments are not a dict, the operator or
    the reason is empty, when
    ``run_id`` is given and is not the latest run of ``db``, or for whatever
    :func:`cfa.desk.submit` refuses (its :class:`cfa.desk.DeskError` message)."""
    from cfa.desk import DeskError, person, submit, wait_result
    from cfa.desk.reads import latest_run

    name = check_operator(operator)
    if not isinstance(arguments, dict):
        raise ActionError("arguments must be a JSON object")
    reason = arguments.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ActionError("give a reason (it is recorded with the action)")
    arguments = {**arguments, "reason": reason.strip()}
    try:
        if run_id is not None:
            latest = latest_run(db)[0]
            if latest != run_id:
                raise ActionError(
                    f"run {run_id} is not the latest run ({latest}): it is no longer live, "
                    "so nothing can act on it"
                )
        seq = submit(db, tool, arguments, person(name))
    except DeskError as exc:
        raise ActionError(str(exc)) from None
    results = wait_result(db, seq, wait_s)
    what = describe(tool, arguments)
    if not results:
        return ActionResult(
            tool,
            seq,
            "pending",
            f"{what} requested by {name} (request {seq}); the session has not answered within "
            f"{wait_s:g} s: watch the requests list",
        )
    statuses = [str(r.get("status")) for r in results]
    status = "applied" if all(s == "applied" for s in statuses) else "rejected"
    notes = []
    for r in results:
        out = r.get("outcome") or {}
        msg = out.get("message") if isinstance(out, dict) else None
        code = out.get("code") if isinstance(out, dict) else None
        if msg or code:
            notes.append(" ".join(str(x) for x in (code, msg) if x))
    detail = f": {'; '.join(notes)}" if notes else ""
    return ActionResult(tool, seq, status, f"{what} by {name}: {status}{detail}", results)
