"""``cfa replay RUN_ID``: exact re-runs, decision diffs and counterfactuals, offline."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from cfa.agents.reasoners import make_reasoner
from cfa.agents.reasoners.base import Reasoner
from cfa.agents.reasoners.cache import CachedReasoner, SqliteLLMCache
from cfa.audit import AuditError
from cfa.cli.options import fail
from cfa.cli.run import llm_line, parse_latency
from cfa.cli.tables import add_ticker_column

Mode = Literal["exact", "decisions", "counterfactual"]


def replay(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    mode: Annotated[str, typer.Option(help="exact, decisions or counterfactual.")] = "exact",
    db: Annotated[
        str, typer.Option(help="The audit store holding the run (file or postgresql:// URL).")
    ] = "cfa.db",
    reasoner: Annotated[
        str, typer.Option(help="For decisions/counterfactual: heuristic, openai, scripted:PATH.")
    ] = "heuristic",
    model: Annotated[str | None, typer.Option(help="LLM model for --reasoner openai.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
    prompt: Annotated[
        Path | None, typer.Option(help="A market-agent prompt file to use instead.")
    ] = None,
    out_db: Annotated[
        Path | None, typer.Option(help="Counterfactual: where to record the new run.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    recorded: Annotated[
        bool,
        typer.Option(
            "--recorded",
            help="decisions/counterfactual: answer from the LLM answers recorded in this run "
            "(no endpoint, no tokens); a request nobody recorded abstains.",
        ),
    ] = False,
    llm_cache: Annotated[
        Path | None,
        typer.Option(
            "--llm-cache",
            help="decisions/counterfactual: an LLM call cache file to answer from and add to "
            "(with --recorded, the recorded answers are imported into it).",
        ),
    ] = None,
    lockstep: Annotated[
        bool | None,
        typer.Option(
            "--lockstep/--no-lockstep",
            help="counterfactual: run the agents in lockstep with the simulator "
            "(default: as the recorded run did).",
        ),
    ] = None,
    llm_latency: Annotated[
        str | None,
        typer.Option(
            "--llm-latency",
            help="counterfactual, with lockstep: simulated LLM latency (default: as recorded).",
        ),
    ] = None,
) -> None:
    """Replay a recorded run without touching an exchange (or a live LLM unless one is named)."""
    from cfa.runtime import replay as rp

    if mode not in ("exact", "decisions", "counterfactual"):
        raise fail(f"--mode: use exact, decisions or counterfactual, not {mode!r}")
    from cfa.audit.postgres import is_url

    if not is_url(db) and not Path(db).exists():
        raise fail(f"{db}: no audit store here")
    console = Console()
    try:
        if mode == "exact":
            report = asyncio.run(rp.replay_exact(db, run_id))
            if json_out:
                typer.echo(
                    json.dumps(
                        {
                            "run_id": report.run_id,
                            "ok": report.ok,
                            "compared": report.compared,
                            "per_market": report.per_market,
                            "mismatches": report.mismatches,
                        }
                    )
                )
            else:
                t = Table(title=f"exact replay of {report.run_id}")
                add_ticker_column(t, "market", report.per_market)
                for col in ("recorded order actions", "replayed", "match"):
                    t.add_column(col)
                for m, (a, b) in report.per_market.items():
                    bad = any(x["market"] == m for x in report.mismatches) or a != b
                    t.add_row(m, str(a), str(b), "[red]no[/]" if bad else "[green]yes[/]")
                console.print(t)
                for x in report.mismatches:
                    console.print(
                        f"[red]first mismatch[/] {x['market']} #{x['index']}: "
                        f"recorded {x['recorded']} replayed {x['replayed']}"
                    )
                console.print(
                    "[green]every order action reproduced exactly[/]"
                    if report.ok
                    else "[red]the replay diverged[/]"
                )
            if not report.ok:
                raise typer.Exit(1)
            return
        opts: dict[str, Any] = {"lockstep": lockstep}
        if llm_latency is not None:
            opts["latency_s"] = parse_latency(llm_latency)
        cache: SqliteLLMCache | None = None
        if llm_cache is not None:
            try:
                cache = SqliteLLMCache(llm_cache)
            except (sqlite3.Error, OSError) as exc:
                raise fail(f"--llm-cache {llm_cache}: {exc}") from None
        try:
            agent: Reasoner
            if recorded:
                agent = rp.recorded_reasoner(db, run_id, cache=cache)
            else:
                agent = make_reasoner(reasoner, model=model, base_url=base_url)
                if cache is not None:
                    agent = CachedReasoner(agent, cache)
            _replay_with(agent, mode, run_id, db, prompt, out_db, json_out, console, opts)
        finally:
            if cache is not None:
                cache.close()
    except (AuditError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None


def _replay_with(
    agent: Reasoner,
    mode: str,
    run_id: str,
    db: str,
    prompt: Path | None,
    out_db: Path | None,
    json_out: bool,
    console: Console,
    opts: dict[str, Any],
) -> None:
    """The decisions and counterfactual modes with a ready reasoner."""
    from cfa.runtime import replay as rp

    if mode == "decisions":
        text = prompt.read_text(encoding="utf-8") if prompt else None
        diffs = asyncio.run(rp.replay_decisions(db, run_id, agent, text))
        changed = [d for d in diffs if not d.same]
        if json_out:
            typer.echo(
                json.dumps(
                    [
                        {
                            "decision_id": d.decision_id,
                            "market": d.market,
                            "same": d.same,
                            "recorded": d.recorded,
                            "replayed": d.replayed,
                            "error": d.error,
                            "cache": d.cache,
                            "usage": d.usage,
                        }
                        for d in diffs
                    ]
                )
            )
            return
        hits = sum(1 for d in diffs if d.cache == "hit")
        cached = f" ({hits} answered from recorded answers or the cache)" if hits else ""
        t = Table(
            title=f"{len(diffs)} decisions re-fed to {agent.name}{cached}: {len(changed)} differ"
        )
        t.add_column("decision", overflow="fold")
        add_ticker_column(t, "market", [d.market for d in changed[:50]])
        for col in ("recorded", "replayed"):
            t.add_column(col, overflow="fold")
        for d in changed[:50]:
            t.add_row(
                d.decision_id,
                d.market,
                json.dumps(d.recorded),
                json.dumps(d.replayed) if not d.error else f"abstain: {d.error}",
            )
        console.print(t)
        return
    result = asyncio.run(rp.replay_counterfactual(db, run_id, agent, out_db, **opts))
    if json_out:
        typer.echo(json.dumps(result))
        return
    t = Table(
        title=f"counterfactual with {agent.name} (new run {result['run_id']} in {result['db']})"
    )
    add_ticker_column(t, "market", [r["ticker"] for r in result["counterfactual"]])
    for col in ("fills", "", "PnL marked $", " ", "max |inv|", "  "):
        t.add_column(col)
    orig = {r["ticker"]: r for r in result["original"]}
    for r in result["counterfactual"]:
        o = orig.get(r["ticker"], {})
        t.add_row(
            r["ticker"],
            str(o.get("fills", "-")),
            str(r["fills"]),
            str(o.get("marked_pnl", "-")),
            r["marked_pnl"],
            str(o.get("max_abs_inventory", "-")),
            str(r["max_abs_inventory"]),
        )
    console.print(t)
    console.print("columns: original, then counterfactual")
    if result.get("llm"):
        console.print(llm_line(result["llm"]))
