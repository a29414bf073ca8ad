"""The ``cfa`` command (typer + rich).

Every command turns the errors a user can cause (bad options, unreadable files, unwritable
paths, unknown names) into one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import typer

from cfa.cli.audit_cmds import audit_app
from cfa.cli.eval_cmd import eval_suite
from cfa.cli.govern import govern_app
from cfa.cli.kalshi_cmds import markets, record
from cfa.cli.replay import replay
from cfa.cli.report import report
from cfa.cli.run import run
from cfa.cli.traces import traces_app

app = typer.Typer(
    name="cfa",
    help="Cognitive Financial Agents: LLM-governed Avellaneda-Stoikov market making on Kalshi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(help="Run the agent loop per market (embedded simulator by default).")(run)
app.add_typer(govern_app, name="govern")
app.add_typer(traces_app, name="traces")
app.add_typer(audit_app, name="audit")
app.command(help="Write a self-contained HTML report of a run.")(report)
app.command(name="eval", help="Compare strategies over a suite of simulated runs, by seed.")(
    eval_suite
)
app.command(help="Replay a recorded run offline: exact, decisions or counterfactual.")(replay)
app.command(help="List Kalshi markets (public data; no key needed).")(markets)
app.command(help="Record Kalshi's live WebSocket feed to a file for offline replay.")(record)


@app.callback()
def _root() -> None:
    """cfa: market-make Kalshi binary contracts with LLM-governed Avellaneda-Stoikov quoting."""


def main() -> None:
    app()
