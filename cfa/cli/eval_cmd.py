"""``cfa eval``: run a suite (scenarios × seeds × strategies) and compare strategies by seed."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cfa.cli.options import fail
from cfa.eval.models import RunResult
from cfa.eval.suite import SuiteError, jobs, load_suite


def eval_suite(
    suite: Annotated[
        str, typer.Option("--suite", help="A packaged suite (default, smoke) or a YAML path.")
    ] = "default",
    seeds: Annotated[
        str | None, typer.Option(help="Seeds to run instead of the suite's: 1-20, 3,5,9.")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option("--scenario", "-s", help="Only these scenarios (repeat).")
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            help="Only these strategies (repeat): naive, static-as, static-glft, "
            "agents:heuristic, agents:openai, agents:scripted:PATH.",
        ),
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Simulated time per run instead of the suite's: 30m.")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="Processes (local) or CPUs (ray); 0 = every core.")
    ] = 0,
    executor: Annotated[
        str, typer.Option(help="local (a process pool) or ray (cfa[ray]; --address).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: a local cluster).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (default ./cfa-eval/<suite>-<UTC time>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Skip the runs already in OUT/results.jsonl without an error.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of tables.")
    ] = False,
    markdown: Annotated[
        bool, typer.Option(help="Also print the tables as markdown (for a README).")
    ] = False,
    model: Annotated[str | None, typer.Option(help="LLM model for agents:openai.")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint for agents:openai.")
    ] = None,
    llm_latency: Annotated[
        str | None, typer.Option(help="Simulated latency per LLM decision (lockstep): 2s.")
    ] = None,
) -> None:
    """Run every scenario × seed × strategy of a suite and compare strategies paired by seed.

    Each run is an ordinary recorded run with its own audit store (OUT/runs/...): trace,
    replay and report any of them like a demo run. Results go to OUT/results.jsonl as they
    finish, the summary to OUT/summary.json and a self-contained report to OUT/report.html.
    """
    from cfa.eval.executors import make_executor
    from cfa.eval.report import render_report
    from cfa.eval.runner import run_job
    from cfa.eval.stats import summarize, summary_markdown, summary_table
    from cfa.eval.targets import check_targets, targets_markdown, targets_table

    try:
        s = load_suite(suite).with_overrides(
            seeds=seeds,
            scenarios=scenario,
            strategies=strategy,
            duration=duration,
            llm={"model": model, "base_url": base_url, "latency": llm_latency},
        )
    except (SuiteError, ValueError) as exc:
        raise fail(str(exc)) from None
    if s.baseline not in s.strategies:
        raise fail(f"the suite's baseline {s.baseline!r} is not among the chosen strategies")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = out if out is not None else Path("cfa-eval") / f"{s.name}-{stamp}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        todo = jobs(s, out_dir)
    except (OSError, ValueError) as exc:
        raise fail(f"{out_dir}: {exc}") from None
    results_path = out_dir / "results.jsonl"
    done: list[RunResult] = []
    if resume and results_path.exists():
        done = _read_results(results_path)
        finished = {r.job.key for r in done if r.error is None}
        todo = [j for j in todo if j.key not in finished]
    elif results_path.exists():
        results_path.unlink()
    console = Console(stderr=as_json)
    console.print(
        f"suite [bold]{s.name}[/]: {len(s.scenarios)} scenarios × {len(s.seeds)} seeds × "
        f"{len(s.strategies)} strategies = {len(todo)} runs to make, "
        f"{s.duration} each → [bold]{out_dir}[/]"
    )
    try:
        ex = make_executor(executor, workers, address)
    except (ValueError, ImportError) as exc:
        raise fail(str(exc)) from None
    t0 = time.perf_counter()
    results: list[RunResult] = []
    with (
        results_path.open("a", encoding="utf-8") as sink,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("runs", total=len(todo))

        def on_result(r: RunResult) -> None:
            sink.write(r.model_dump_json() + "\n")
            sink.flush()
            progress.advance(task)

        try:
            results = ex.run(run_job, todo, on_result)
        except KeyboardInterrupt:
            raise fail("interrupted; finished runs are in results.jsonl (use --resume)") from None
        finally:
            ex.close()
    wall = time.perf_counter() - t0
    every = [*done, *results]
    errors = [r for r in every if r.error is not None]
    summary = summarize(every, s.baseline)
    checks = check_targets(summary)
    (out_dir / "summary.json").write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    report = out_dir / "report.html"
    report.write_text(render_report(summary, every, f"cfa eval: {s.name}", checks=checks), "utf-8")
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "suite": s.name,
                    "out": str(out_dir),
                    "wall_s": round(wall, 1),
                    "summary": json.loads(summary.model_dump_json()),
                    "targets": [c.model_dump() for c in checks],
                }
            )
        )
        return
    console.print(summary_table(summary))
    console.print(targets_table(checks))
    if markdown:  # plain text: a console would wrap the table's long lines
        typer.echo(summary_markdown(summary))
        typer.echo(targets_markdown(checks))
    for r in errors[:5]:
        console.print(f"[red]error[/] {r.job.key}: {r.error}")
    if len(errors) > 5:
        console.print(f"[red]… {len(errors) - 5} more errors in {results_path}[/]")
    console.print(
        f"{len(results)} runs in {wall:.0f}s · results [bold]{results_path}[/] · "
        f"report [bold]{report}[/]"
    )


def _read_results(path: Path) -> list[RunResult]:
    """The results already written to ``path`` (a line that does not parse is refused)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(RunResult.model_validate_json(line))
        except ValidationError as exc:
            raise fail(f"{path}:{n}: not a result line ({exc.error_count()} errors)") from None
    return out
