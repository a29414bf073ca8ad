"""``cfa govern``: freeze, override, halt, resume and approve in a running session.

Each action is checked here first (the market must be one the latest run trades, values must lie
inside that run's policy bounds, a reason is required) and then written as a request to the
audit store the running ``cfa run`` writes (``--db``, the same file). The session applies it
within about a second, through the same apply path the governance agent uses, and records the
outcome. A person outranks every agent and breaker (``docs/control.md``). ``cfa govern status``
shows the latest run's markets, parameters, states and requests; ``cfa govern pending`` the
changes waiting for approval, which ``cfa govern approve ID`` and ``cfa govern deny ID`` decide.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from cfa.cli.options import fail, parse_duration

govern_app = typer.Typer(
    help="Govern a running session: freeze, override, halt, resume, approve.", no_args_is_help=True
)

DbOpt = Annotated[
    str,
    typer.Option(
        help="The audit store the running `cfa run` writes (a file or a postgresql:// URL)."
    ),
]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why (required; recorded).")]
OperatorOpt = Annotated[str | None, typer.Option(help="Who acts (default: your login name).")]
ParamOpt = Annotated[str, typer.Option("--param", help="gamma, sigma or all.")]


@contextlib.contextmanager
def _reader(db: str) -> Iterator[Any]:
    """A read-only :class:`cfa.audit.AuditReader` on ``db``; one clear line if there is none."""
    from cfa.desk import DeskError
    from cfa.desk.reads import open_reader

    try:
        with open_reader(db) as reader:
            yield reader
    except DeskError as exc:
        raise fail(str(exc)) from None


def _latest_run(db: str) -> tuple[str, dict[str, Any], list[str]]:
    """``(run_id, config, markets)`` of the latest run in ``db``; exits with one line if none."""
    from cfa.desk import DeskError
    from cfa.desk.reads import latest_run

    try:
        return latest_run(db)
    except DeskError as exc:
        raise fail(str(exc)) from None


def _submit(db: str, tool: str, arguments: dict[str, Any], operator: str | None) -> None:
    # lazy: --help, status and pending start without the tool schemas and the audit writer
    from cfa.desk import DeskError, person, submit

    who = person(operator)
    try:
        submit(db, tool, arguments, who)
    except DeskError as exc:
        raise fail(str(exc)) from None
    target = arguments.get("market") or "all markets"
    typer.echo(
        f"requested {tool} on {target} by {who.removeprefix('person:')};"
        " the running session applies it within ~1 s"
    )


def _freeze_command(tool: str, doc: str) -> None:
    def command(
        market: str,
        reason: ReasonOpt,
        param: ParamOpt = "all",
        db: DbOpt = "cfa.db",
        operator: OperatorOpt = None,
    ) -> None:
        _submit(db, tool, {"market": market, "param": param, "reason": reason}, operator)

    command.__doc__ = doc
    govern_app.command(name=tool)(command)


_freeze_command("freeze", "Stop agents from changing a parameter of MARKET.")
_freeze_command("unfreeze", "Let agents change a frozen parameter of MARKET again.")


@govern_app.command()
def override(
    market: str,
    reason: ReasonOpt,
    gamma: Annotated[float | None, typer.Option(help="Forced γ (1/dollar).")] = None,
    sigma: Annotated[float | None, typer.Option(help="Forced σ (logit per √s).")] = None,
    ttl: Annotated[str, typer.Option(help="How long: 90s, 10m, 1h.")] = "10m",
    db: DbOpt = "cfa.db",
    operator: OperatorOpt = None,
) -> None:
    """Force γ and/or σ of MARKET for --ttl, inside the policy bounds; then they revert."""
    if gamma is None and sigma is None:
        raise fail("override: give --gamma and/or --sigma")
    args = {
        "market": market,
        "gamma": gamma,
        "sigma": sigma,
        "ttl_s": parse_duration(ttl, "--ttl"),
        "reason": reason,
    }
    _submit(db, "override", args, operator)


def _state_command(tool: str, doc: str) -> None:
    def command(
        reason: ReasonOpt,
        market: Annotated[str | None, typer.Argument(help="A market; omit with --all.")] = None,
        all_markets: Annotated[bool, typer.Option("--all", help="Every market.")] = False,
        db: DbOpt = "cfa.db",
        operator: OperatorOpt = None,
    ) -> None:
        if (market is None) == (not all_markets):
            raise fail(f"{tool.replace('_', '-')}: give a MARKET or --all (not both)")
        _submit(db, tool, {"market": market, "reason": reason}, operator)

    command.__doc__ = doc
    govern_app.command(name=tool.replace("_", "-"))(command)


_state_command("halt", "Halt MARKET (or --all): cancel its orders, place none.")
_state_command("resume", "Return MARKET (or --all) to ACTIVE.")
_state_command("reduce_only", "Allow only orders that reduce the position of MARKET (or --all).")


@govern_app.command()
def status(db: DbOpt = "cfa.db", json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Markets of the latest run: parameters, trading state, frozen flags, recent requests."""
    from rich.console import Console  # lazy: halt, the kill switch, prints one plain line
    from rich.table import Table

    from cfa.cli.tables import add_ticker_column
    from cfa.desk import reads

    run_id, _, markets = _latest_run(db)
    with _reader(db) as reader:
        params = reads.market_params(reader, run_id)
        states = reads.trading_states(reader, run_id)
        actions = reads.requests(reader, limit=200)
        frozen = reads.applied_freezes(reader, run_id)
    rows: list[dict[str, Any]] = [
        {
            "market": m,
            "state": states.get(m, states.get("*", "ACTIVE")),
            "gamma": params.get(m, {}).get("gamma"),
            "sigma": params.get(m, {}).get("sigma"),
            "frozen": sorted(frozen.get(m, set())),
        }
        for m in markets
    ]
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "run_id": run_id,
                    "global_state": states.get("*", "ACTIVE"),
                    "markets": rows,
                    "requests": actions[:20],
                }
            )
        )
        return
    t = Table(title=f"run {run_id} · global state {states.get('*', 'ACTIVE')}")
    add_ticker_column(t, "market", [r["market"] for r in rows])
    for col in ("state", "γ", "σ", "frozen"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["market"], r["state"], _fmt(r["gamma"]), _fmt(r["sigma"]), ", ".join(r["frozen"])
        )
    console = Console()
    console.print(t)
    recent = Table(title="recent governance actions")
    recent.add_column("seq")
    recent.add_column("action")
    add_ticker_column(recent, "market", [a["market"] or "*" for a in actions[:10]])
    for col in ("actor", "status"):
        recent.add_column(col)
    for a in actions[:10]:
        recent.add_row(str(a["seq"]), a["action"], a["market"] or "*", a["actor"], str(a["status"]))
    console.print(recent)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def pending_requests(db: str, run_id: str) -> list[dict[str, Any]]:
    """Approval requests of ``run_id`` still pending, oldest first; exits with one line if the
    store cannot be read."""
    from cfa.desk import DeskError, reads

    try:
        return reads.pending_requests(db, run_id)
    except DeskError as exc:
        raise fail(str(exc)) from None


@govern_app.command()
def pending(
    db: DbOpt = "cfa.db", json_out: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Parameter changes of the latest run waiting for approval (approve or deny them by ID)."""
    from rich.console import Console
    from rich.table import Table

    from cfa.cli.tables import add_ticker_column

    run_id, _, _ = _latest_run(db)
    rows = pending_requests(db, run_id)
    if json_out:
        typer.echo(json.dumps({"run_id": run_id, "pending": rows}))
        return
    if not rows:
        typer.echo(f"run {run_id}: nothing waits for approval")
        return
    t = Table(title=f"run {run_id} · changes waiting for approval")
    add_ticker_column(t, "id", [r["request_id"] for r in rows])  # to copy into approve/deny
    add_ticker_column(t, "market", [r["market"] for r in rows])
    for col in ("param", "from", "to", "asked by", "why", "rationale"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r["request_id"],
            r["market"],
            r["param"],
            _fmt(r.get("base")),
            _fmt(r.get("value")),
            str(r.get("source")),
            str(r.get("why", "")),
            str(r.get("rationale", ""))[:80],
        )
    Console().print(t)


def _decide_command(tool: str, approved: bool, doc: str) -> None:
    def command(
        request_id: Annotated[str, typer.Argument(help="The id `cfa govern pending` lists.")],
        reason: ReasonOpt,
        db: DbOpt = "cfa.db",
        operator: OperatorOpt = None,
    ) -> None:
        args = {"request_id": request_id, "approved": approved, "reason": reason}
        _submit(db, "approve_change", args, operator)

    command.__doc__ = doc
    govern_app.command(name=tool)(command)


_decide_command("approve", True, "Approve the pending change REQUEST_ID (applied within ~1 s).")
_decide_command("deny", False, "Deny the pending change REQUEST_ID.")
