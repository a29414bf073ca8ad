"""``cfa report RUN_ID --out report.html``: one self-contained HTML report of a run.

Register with ``app.command(help=...)(report)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cfa.audit import AuditError, AuditReader
from cfa.cli.options import fail
from cfa.cli.traces import resolve_run


def report(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="Run id, a unique prefix of it, or 'latest'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    db: Annotated[
        str, typer.Option(help="Audit store to read: a SQLite file or a postgresql:// URL.")
    ] = "cfa.db",
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip the hash-chain check shown in the header.")
    ] = False,
) -> None:
    """Write one self-contained HTML file (inline SVG, nothing fetched) with the run's plots —
    mid and our quotes, inventory, PnL, γ and σ with decision markers, fills — and its decision
    table."""
    from cfa.reports.html import build_report

    if run_id == "all":
        raise fail("give one run id (or 'latest')")
    if out.is_dir():
        raise fail(f"--out {str(out)!r} is a directory")
    if not out.parent.exists():
        raise fail(f"--out: directory {str(out.parent)!r} does not exist")
    t0 = time.perf_counter()
    try:
        reader = AuditReader.open(db)
    except AuditError as exc:
        raise fail(str(exc)) from None
    try:
        rid = resolve_run(reader, run_id)
        assert rid is not None
        html = build_report(reader, rid, check_chain=not no_verify)
    except AuditError as exc:
        raise fail(str(exc)) from None
    finally:
        reader.close()
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    Console(highlight=False).print(
        f"report of run [bold]{rid}[/] → [bold]{out}[/] ({len(html.encode()) / 1024:,.0f} kB, "
        f"{time.perf_counter() - t0:.1f} s); open it in a browser (works offline)"
    )
