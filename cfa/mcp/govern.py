"""The governance tools: approve, deny, freeze, unfreeze, override, halt, resume, reduce_only.

Each is a request through :func:`cfa.desk.submit` — the one control plane a person's
``cfa govern`` uses — by the call's actor (:mod:`cfa.mcp.actor`): ``agent:governance:mcp:<client>``
unless the server runs ``--as-person``. The desk checks the request first (market known,
arguments valid, override inside the policy bounds, approval pending, a session running) and
refuses it with nothing written; the running session then applies it as its actor ranks and
answers within about a second. The tool waits up to :data:`WAIT_S` for that answer and returns
it: ``applied``, ``rejected`` (with the control plane's code, e.g. ``not_allowed`` when an agent
tries to lift a person's halt, ``step_too_large`` beyond max_step), or ``not_yet_answered``
(the session may still apply it: see ``governance_requests``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from cfa.mcp import audit, calls

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

WAIT_S: Final = 3.0
"""How long a governance tool waits for the running session's answer (wall seconds)."""

ACTS = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

Reason = Annotated[
    str, Field(min_length=1, max_length=2000, description="Why (required; recorded).")
]
TargetMarket = Annotated[
    str | None, Field(description="A market ticker; null together with all_markets=true.")
]
AllMarkets = Annotated[bool, Field(description="Act on every market (then market must be null).")]
Param = Annotated[
    Literal["gamma", "sigma", "all"], Field(description="gamma, sigma or all (both).")
]


class WorkerResult(BaseModel):
    """One answer of the session (a cluster run has one per worker for an all-markets act)."""

    status: str = Field(description="applied or rejected")
    code: str | None = Field(None, description="The control plane's reason code when refused.")
    message: str = Field("", description="The control plane's message.")
    worker: str | None = Field(None, description="The cluster worker that answered, if any.")


class ActionResult(BaseModel):
    """What a governance request became."""

    tool: str = Field(description="The governance tool requested.")
    actor: str = Field(description="Who acted, as the control plane ranks it.")
    request_seq: int = Field(description="Audit seq of the request row (governance_actions).")
    status: Literal["applied", "rejected", "mixed", "not_yet_answered"] = Field(
        description="The session's answer; not_yet_answered if none came within ~3 s."
    )
    code: str | None = Field(None, description="Reason code of a rejection (e.g. not_allowed).")
    message: str = Field("", description="The control plane's message.")
    results: list[WorkerResult] = Field(default_factory=list, description="Every answer.")


def _check_reason(reason: str) -> str:
    if not reason.strip():
        raise calls.BadArgument("reason: give why you act (a non-empty text)")
    return reason.strip()


def _check_target(tool: str, market: str | None, all_markets: bool) -> str | None:
    if market is not None and not market.strip():
        raise calls.BadArgument(f"{tool}: market is empty; give a ticker or all_markets=true")
    if (market is None) == (not all_markets):
        raise calls.BadArgument(f"{tool}: give a market or all_markets=true (not both)")
    return market


def act(db: str, tool: str, arguments: dict[str, Any], actor: str) -> ActionResult:
    """Submit ``tool(arguments)`` by ``actor`` to the session writing ``db`` and wait up to
    :data:`WAIT_S` for its answer (blocking; run off the event loop).
    :class:`cfa.desk.DeskError` when the desk refuses it (nothing was written)."""
    from cfa.desk import submit, wait_result

    seq = submit(db, tool, arguments, actor)
    answers = wait_result(db, seq, WAIT_S)
    results = []
    for p in answers:
        outcome = p.get("outcome")
        o: dict[str, Any] = outcome if isinstance(outcome, dict) else {}
        results.append(
            WorkerResult(
                status=str(p.get("status")),
                code=o.get("code"),
                message=str(o.get("message") or ""),
                worker=p.get("worker"),
            )
        )
    statuses = {r.status for r in results}
    status: Literal["applied", "rejected", "mixed", "not_yet_answered"]
    if not results:
        status = "not_yet_answered"
    elif statuses == {"applied"}:
        status = "applied"
    elif statuses == {"rejected"}:
        status = "rejected"
    else:
        status = "mixed"
    first_bad = next((r for r in results if r.status != "applied"), None)
    shown = first_bad or (results[0] if results else None)
    return ActionResult(
        tool=tool,
        actor=actor,
        request_seq=seq,
        status=status,
        code=None if first_bad is None else first_bad.code,
        message="the session has not answered yet (see governance_requests)"
        if shown is None
        else shown.message,
        results=results,
    )


async def _act(db: str, tool: str, build: Callable[[], dict[str, Any]]) -> ActionResult:
    """Check and build the arguments (``build``: may raise :class:`calls.BadArgument`), act,
    record the outcome on the call; every refusal a tool error naming the problem."""
    who = calls.actor()
    box: dict[str, Any] = {}

    def body() -> ActionResult:
        box.update(build())
        return act(db, tool, box, who)

    out = await calls.run(body)
    status: audit.Status = "rejected" if out.status in ("rejected", "mixed") else "ok"
    target = box.get("market") or box.get("request_id") or "all markets"
    calls.record(
        status,
        f"{tool} {target}: {out.status}" + (f" ({out.code}) {out.message}" if out.code else ""),
        market=box.get("market"),
        request_seq=out.request_seq,
        code=out.code,
    )
    return out


def register(server: MCPServer[Any], db: str) -> None:
    """Add the governance tools acting on the session that writes ``db`` to ``server``."""

    @server.tool(annotations=ACTS)
    async def approve(
        request_id: Annotated[
            str, Field(min_length=1, description="The id pending_approvals lists.")
        ],
        reason: Reason,
    ) -> ActionResult:
        """Approve a parameter change waiting for approval (see pending_approvals); the
        session applies it within about a second."""
        return await _act(
            db,
            "approve_change",
            lambda: {"request_id": request_id, "approved": True, "reason": _check_reason(reason)},
        )

    @server.tool(annotations=ACTS)
    async def deny(
        request_id: Annotated[
            str, Field(min_length=1, description="The id pending_approvals lists.")
        ],
        reason: Reason,
    ) -> ActionResult:
        """Deny a parameter change waiting for approval (see pending_approvals)."""
        return await _act(
            db,
            "approve_change",
            lambda: {"request_id": request_id, "approved": False, "reason": _check_reason(reason)},
        )

    @server.tool(annotations=ACTS)
    async def freeze(
        market: Annotated[str, Field(min_length=1, description="The market ticker.")],
        reason: Reason,
        param: Param = "all",
    ) -> ActionResult:
        """Freeze gamma and/or sigma of a market: agents may not change it until unfrozen."""
        return await _act(
            db,
            "freeze",
            lambda: {"market": market, "param": param, "reason": _check_reason(reason)},
        )

    @server.tool(annotations=ACTS)
    async def unfreeze(
        market: Annotated[str, Field(min_length=1, description="The market ticker.")],
        reason: Reason,
        param: Param = "all",
    ) -> ActionResult:
        """Let agents change a frozen parameter again (not one a person froze, unless this
        server acts as a person)."""
        return await _act(
            db,
            "unfreeze",
            lambda: {"market": market, "param": param, "reason": _check_reason(reason)},
        )

    @server.tool(annotations=ACTS)
    async def override(
        market: Annotated[str, Field(min_length=1, description="The market ticker.")],
        reason: Reason,
        gamma: Annotated[
            float | None,
            Field(gt=0, allow_inf_nan=False, description="Forced gamma (1/dollar), or null."),
        ] = None,
        sigma: Annotated[
            float | None,
            Field(gt=0, allow_inf_nan=False, description="Forced sigma (logit/sqrt s), or null."),
        ] = None,
        ttl_s: Annotated[
            float,
            Field(gt=0, le=86_400, allow_inf_nan=False, description="How long, seconds."),
        ] = 600.0,
    ) -> ActionResult:
        """Force gamma and/or sigma of a market for ttl_s seconds inside the policy bounds;
        then they revert. As a governance agent: one parameter per call, held to max_step,
        cooldown and approval like any agent change."""

        def build() -> dict[str, Any]:
            if gamma is None and sigma is None:
                raise calls.BadArgument(
                    "override: gamma and sigma are both null; give gamma and/or sigma as a"
                    " positive finite number (JSON carries no NaN or infinity: clients send"
                    " them as null)"
                )
            return {
                "market": market,
                "gamma": gamma,
                "sigma": sigma,
                "ttl_s": ttl_s,
                "reason": _check_reason(reason),
            }

        return await _act(db, "override", build)

    def state_tool(tool: str, doc: str) -> None:
        async def fn(
            reason: Reason, market: TargetMarket = None, all_markets: AllMarkets = False
        ) -> ActionResult:
            return await _act(
                db,
                tool,
                lambda: {
                    "market": _check_target(tool, market, all_markets),
                    "reason": _check_reason(reason),
                },
            )

        fn.__doc__ = doc
        fn.__name__ = fn.__qualname__ = tool
        server.add_tool(fn, name=tool, annotations=ACTS)

    state_tool("halt", "Halt a market (or every market): cancel its orders, place none.")
    state_tool(
        "resume",
        "Return a market (or every market) to ACTIVE. A governance agent cannot lift what a "
        "person or a breaker halted.",
    )
    state_tool(
        "reduce_only",
        "Allow only orders that reduce the position in a market (or every market).",
    )
