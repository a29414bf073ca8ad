"""``cfa traces``: review the agents' decisions recorded in the audit store.

``cfa traces`` lists decisions (filters: run, market, agent, time range, outcome);
``cfa traces show ID`` renders one decision — context summary, rationale, tool calls with their
validation verdicts, parameters before and after, latency and tokens — and what followed in its
market over the next minutes (fills, inventory, PnL). ``--json`` prints JSON for programs.

Register with ``app.add_typer(traces_app, name="traces")``.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from cfa.audit import AuditError, AuditReader
from cfa.cli.options import fail, parse_duration
from cfa.cli.tables import add_ticker_column
from cfa.reports.decisions import DecisionRecord, fmt_ts

traces_app = typer.Typer(
    help="Review the agents' decisions: list them, or show one with what followed.",
    add_completion=False,
    invoke_without_command=True,
)

OUTCOME_STYLES = {
    "applied": "bold blue",
    "keep": "dim",
    "rejected": "bold red",
    "abstain": "yellow",
    "escalate": "magenta",
    "pending_approval": "yellow",
    "approved": "green",
    "denied": "red",
    "no_action": "dim",
}

DbOption = Annotated[
    str, typer.Option(help="Audit store to read: a SQLite file or a postgresql:// URL.")
]
RunOption = Annotated[
    str | None,
    typer.Option(help="Run id (or a unique prefix); 'all' for every run. Default: the latest run."),
]


# -- helpers --------------------------------------------------------------------------------------


def parse_time(text: str, option: str) -> int:
    """An ISO 8601 time or epoch seconds -> epoch milliseconds
    (:func:`cfa.desk.reads.parse_time`); :func:`fail` otherwise."""
    from cfa.desk import DeskError, reads

    try:
        return reads.parse_time(text, option)
    except DeskError as exc:
        raise fail(str(exc)) from None


def _open(db: str) -> AuditReader:
    try:
        return AuditReader.open(db)
    except AuditError as exc:
        raise fail(str(exc)) from None


def resolve_run(reader: AuditReader, run: str | None) -> str | None:
    """The run id ``run`` names (:func:`cfa.desk.reads.resolve_run`); :func:`fail` otherwise."""
    from cfa.desk import DeskError
    from cfa.desk.reads import resolve_run as resolve

    try:
        return resolve(reader, run)
    except DeskError as exc:
        raise fail(str(exc)) from None


_LIST_COLUMNS = (
    "seq",
    "time (UTC)",
    "market",
    "agent",
    "reasoner/model",
    "outcome",
    "tool",
    "change",
    "rationale",
)


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def _money(v: str | float) -> str:
    return f"{float(v):+.4f}"


# -- list -----------------------------------------------------------------------------------------


@traces_app.callback()
def traces(
    ctx: typer.Context,
    db: DbOption = "cfa.db",
    run: RunOption = None,
    market: Annotated[str | None, typer.Option(help="Only this market (ticker).")] = None,
    agent: Annotated[
        str | None, typer.Option(help="Only this agent: market or governance.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time: ISO (UTC by default) or epoch seconds.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Before this time: ISO (UTC by default) or epoch seconds.")
    ] = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option(
            help="Only this outcome (repeat for several): applied, rejected, abstain, keep, "
            "escalate, pending_approval, approved, denied, no_action.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Show the latest N matching decisions (0: all).")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List decisions: time, market, agent, reasoner/model, outcome, tools, short rationale.

    ``cfa traces show ID`` renders one of them.
    """
    if ctx.invoked_subcommand is not None:
        return
    from cfa.desk import DeskError, reads

    outcomes = [o.strip() for item in outcome or [] for o in item.split(",") if o.strip()]
    since_ms = parse_time(since, "--since") if since else None
    until_ms = parse_time(until, "--until") if until else None
    reader = _open(db)
    try:
        run_id = resolve_run(reader, run)
        rows, total = reads.decisions(
            reader,
            run_id=run_id,
            market=market,
            agent=agent,
            since_ms=since_ms,
            until_ms=until_ms,
            outcomes=outcomes,
            limit=limit,
        )
    except DeskError as exc:
        raise fail(f"--{exc}") from None  # the message starts with the option's name
    except AuditError as exc:
        raise fail(str(exc)) from None
    finally:
        reader.close()
    if as_json:
        typer.echo(json.dumps([d.summary() for d in rows], default=str))
        return
    console = Console(highlight=False)
    title = f"decisions of run {run_id}" if run_id else "decisions of every run"
    t = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    cells: list[dict[str, Text]] = []
    for d in rows:
        model = f"{d.reasoner}/{d.model}" if d.model else d.reasoner
        when = fmt_ts(d.ts_ms, date=run_id is None)
        cells.append(
            {
                "seq": Text(str(d.seq)),
                "time (UTC)": Text(when[: when.rindex(".")]),
                "market": Text(d.market or "(portfolio)"),
                "agent": Text("gov" if d.agent == "governance" else d.agent),
                "reasoner/model": Text(model),
                "outcome": Text(d.outcome, style=OUTCOME_STYLES.get(d.outcome, "")),
                "tool": Text(", ".join(d.tools)),
                "change": Text(d.change_text()),
                "rationale": Text(_short(d.rationale, 90)),
            }
        )
    # A narrow terminal drops reasoner/model, then tool, then agent (`cfa traces show` has
    # them all) rather than squeeze every column to a sliver; seq, time and market stay whole.
    cols = list(_LIST_COLUMNS)

    def need(name: str) -> int:
        longest = max([len(name)] + [c[name].cell_len for c in cells])
        if name in ("seq", "time (UTC)", "market"):
            return longest + 3
        return (24 if name == "rationale" else min(longest, 12)) + 3

    for name in ("reasoner/model", "tool", "agent"):
        if sum(need(c) for c in cols) <= console.width:
            break
        cols.remove(name)
    fits = sum(need(c) for c in cols) <= console.width
    for name in cols:
        if name == "market":
            add_ticker_column(t, "market", [c["market"].plain for c in cells])
        elif name in ("seq", "time (UTC)"):
            t.add_column(name, justify="right" if name == "seq" else "left", no_wrap=True)
        elif name == "rationale":
            t.add_column(name, min_width=24 if fits else None, ratio=1)
        else:
            t.add_column(name, overflow="fold")
    for c in cells:
        t.add_row(*(c[name] for name in cols))
    console.print(t)
    shown = f"{len(rows)} of {total}" if len(rows) < total else f"{total}"
    console.print(
        f"{shown} decisions"
        + (" (the latest; --limit 0 for all)" if len(rows) < total else "")
        + " · details: cfa traces show SEQ"
    )


# -- show -----------------------------------------------------------------------------------------


def _tree(label: str, value: Any, depth: int = 0) -> Tree:
    tree = Tree(Text(label, style="bold"))
    _fill_tree(tree, value, depth)
    return tree


def _fill_tree(node: Tree, value: Any, depth: int) -> None:
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, dict | list)}
        if scalars:
            node.add(Text(", ".join(f"{k}={_short(_num(v), 160)}" for k, v in scalars.items())))
        for k, v in value.items():
            if isinstance(v, dict | list):
                if depth >= 4:
                    node.add(Text(f"{k}: {_short(json.dumps(v, default=str), 160)}"))
                else:
                    _fill_tree(node.add(Text(str(k), style="cyan")), v, depth + 1)
    elif isinstance(value, list):
        if not value:
            node.add(Text("(none)", style="dim"))
        for i, v in enumerate(value[:12]):
            if isinstance(v, dict | list):
                _fill_tree(node.add(Text(f"[{i}]", style="cyan")), v, depth + 1)
            else:
                node.add(Text(_short(_num(v), 160)))
        if len(value) > 12:
            node.add(Text(f"… {len(value) - 12} more", style="dim"))
    else:
        node.add(Text(_short(_num(value), 300)))


def _render(
    d: DecisionRecord, related: list[DecisionRecord], followed: list[dict[str, Any]], after_s: float
) -> RenderableType:
    p = d.payload
    model = f"{d.reasoner}/{d.model}" if d.model else d.reasoner
    head = Text.assemble(
        ("decision ", "bold"),
        (d.decision_id or "?", "bold"),
        f" · seq {d.seq} · {fmt_ts(d.ts_ms)} UTC · run {d.run_id}\n",
        f"market {d.market or '(portfolio)'} · agent {d.agent} ({d.phase}) · {model} · "
        f"prompt {p.get('prompt_hash') or '?'} · outcome ",
        (d.outcome, OUTCOME_STYLES.get(d.outcome, "")),
    )
    if len(related) > 1:
        head.append("\nphases: " + " → ".join(f"{r.outcome} (seq {r.seq})" for r in related))
    parts: list[RenderableType] = [Panel(head, expand=False)]

    ctx = p.get("context")
    parts.append(_tree("Context the agent saw", ctx if ctx is not None else "(not recorded)"))
    parts.append(Panel(Text(d.rationale or "(none)"), title="Rationale", expand=False))

    calls = Table(title="Tool calls and validation", header_style="bold", title_justify="left")
    for col in ("#", "tool", "arguments", "verdict", "code", "message / changes"):
        calls.add_column(col, overflow="fold")
    for i, o in enumerate(d.outcomes, 1):
        args = dict(o.get("arguments") or {})
        args.pop("rationale", None)
        changes = ", ".join(
            f"{c.get('param')} {_num(c.get('old'))}→{_num(c.get('new'))}"
            for c in o.get("changes") or []
        )
        verdict = str(o.get("verdict"))
        calls.add_row(
            str(i),
            Text(str(o.get("tool"))),
            Text(json.dumps(args, default=str) if args else ""),
            Text(verdict, style="red" if verdict == "rejected" else ""),
            Text(str(o.get("code") or "")),
            Text(" · ".join(x for x in (str(o.get("message") or ""), changes) if x)),
        )
    if not d.outcomes:
        calls.add_row("", "(no tool call)", "", d.outcome, "", "")
    parts.append(calls)

    before, after = p.get("params_before") or {}, p.get("params_after") or {}
    pt = Table(title="Parameters", header_style="bold", title_justify="left")
    for col in ("param", "before", "after", ""):
        pt.add_column(col)
    for k in sorted(set(before) | set(after)):
        b, a = before.get(k), after.get(k)
        pt.add_row(k, _num(b), _num(a), Text("changed", style="bold") if a != b else "")
    parts.append(pt)

    usage = d.usage
    resp = ", ".join(
        f"attempt {r.get('attempt')}: {r.get('latency_s')} s"
        + (f" error {r['error']}" if r.get("error") else "")
        for r in d.responses
    )
    parts.append(
        Text(
            f"latency {_num(d.latency_s)} s · attempts {p.get('attempts')} · tokens "
            + (", ".join(f"{k} {v}" for k, v in usage.items()) if usage else "not reported")
            + (f"\nresponses: {resp}" if resp else "")
        )
    )
    if d.phase == "approval" and p.get("approval"):
        parts.append(_tree("Approval", p["approval"]))

    for f in followed:
        b, a = f["before"], f["after"]
        window = f"next {after_s / 60:g} min" + (
            f" (run ended after {f['to_ts'] - f['from_ts']:.0f} s)" if f["truncated"] else ""
        )
        ft = Table(
            title=f"What followed in {f['market']} · {window}",
            header_style="bold",
            title_justify="left",
        )
        for col in ("", "at decision", "after", "change"):
            ft.add_column(col, justify="right")
        ft.add_row("mid $", _num(b["mid"]), _num(a["mid"]), "")
        ft.add_row(
            "our bid / ask $",
            f"{_num(b['our_bid'])} / {_num(b['our_ask'])}",
            f"{_num(a['our_bid'])} / {_num(a['our_ask'])}",
            "",
        )
        ft.add_row(
            "inventory",
            f"{b['inventory']:+g}",
            f"{a['inventory']:+g}",
            f"{f['inventory_change']:+g} (max |inv| {f['max_abs_inventory']:g})",
        )
        ft.add_row(
            "fills",
            str(b["fills"]),
            str(a["fills"]),
            f"{len(f['fills'])} (bought {f['bought']:g}, sold {f['sold']:g})",
        )
        ft.add_row(
            "realised PnL $",
            _money(b["realized_pnl"]),
            _money(a["realized_pnl"]),
            _money(f["realized_pnl_change"]),
        )
        ft.add_row(
            "marked PnL $",
            _money(b["marked_pnl"]),
            _money(a["marked_pnl"]),
            _money(f["marked_pnl_change"]),
        )
        parts.append(ft)
        if f["fills"]:
            fl = Table(header_style="bold", title="fills", title_justify="left")
            for col in ("time", "side", "count", "price", "fee", "inventory", "mid"):
                fl.add_column(col, justify="right")
            for x in f["fills"][:20]:
                fl.add_row(
                    fmt_ts(x["ts"] * 1000, date=False),
                    "buy" if x["side"] == "bid" else "sell",
                    f"{x['count']:g}",
                    f"{x['price']:.4f}",
                    x["fee"],
                    f"{x['inventory_after']:+g}",
                    _num(x["mid_at_fill"]),
                )
            if len(f["fills"]) > 20:
                fl.add_row("…", f"{len(f['fills']) - 20} more", "", "", "", "", "")
            parts.append(fl)
    return Group(*parts)


@traces_app.command("show")
def show(
    ident: Annotated[str, typer.Argument(metavar="ID", help="decision_id or audit seq.")],
    db: DbOption = "cfa.db",
    run: Annotated[
        str | None, typer.Option(help="Run of the decision_id (when several runs reuse it).")
    ] = None,
    after: Annotated[
        str, typer.Option(help="How far to look at what followed: 90s, 10m, 1h.")
    ] = "10m",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Render one decision and what followed in its market (fills, inventory, PnL)."""
    from cfa.desk import DeskError, reads

    after_s = parse_duration(after, "--after")
    reader = _open(db)
    try:
        run_id = resolve_run(reader, run) if run is not None else None
        d, related, followed = reads.decision(reader, ident, run_id=run_id, after_s=after_s)
    except (AuditError, DeskError) as exc:
        raise fail(str(exc)) from None
    finally:
        reader.close()
    if as_json:
        typer.echo(json.dumps(reads.decision_json(d, related, followed), default=str))
        return
    Console(highlight=False).print(_render(d, related, followed, after_s))
