"""``cfa audit``: checks on the audit store. ``cfa audit verify`` walks the hash chain.

Register with ``app.add_typer(audit_app, name="audit")``.
"""

from __future__ import annotations

import json
import re
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cfa.audit import AuditError, ChainHead, verify
from cfa.cli.options import fail

audit_app = typer.Typer(
    help="Check the audit store (hash chain).", no_args_is_help=True, add_completion=False
)

_ANCHOR = re.compile(r"^\s*(\d+)\s*[:=]\s*([0-9a-fA-F]{64})\s*$")


@audit_app.callback()
def _audit() -> None:
    """Check the audit store: ``cfa audit verify``."""


@audit_app.command("verify")
def verify_cmd(
    db: Annotated[Path, typer.Option(help="Audit store (SQLite) to verify.")] = Path("cfa.db"),
    anchor: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH of a chain head kept outside the file (printed by an earlier "
            "verify); detects a rewritten chain or a cut tail.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Processes for large files (default: up to 2)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify the hash chain of every row: exit 0 when intact, 1 at the first broken link."""
    head: ChainHead | None = None
    if anchor is not None:
        m = _ANCHOR.match(anchor)
        if not m:
            raise fail(f"--anchor: expected SEQ:HASH (64 hex digits), got {anchor!r}")
        head = ChainHead(int(m.group(1)), m.group(2).lower())
    try:
        try:
            res = verify(db, anchor=head, workers=workers)
        except (BrokenProcessPool, OSError, RuntimeError):
            # Worker processes could not start (e.g. an embedding without a __main__ guard):
            # the same check in this process, only slower.
            res = verify(db, anchor=head, workers=1)
    except AuditError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "db": str(db),
                    "ok": res.ok,
                    "rows": res.rows,
                    "seconds": round(res.seconds, 4),
                    "first_bad_seq": res.first_bad_seq,
                    "table": res.table,
                    "reason": res.reason,
                    "head": None
                    if res.head is None
                    else {"seq": res.head.seq, "hash": res.head.hash},
                    "anchor": None if head is None else {"seq": head.seq, "hash": head.hash},
                }
            )
        )
    else:
        console = Console(highlight=False)
        if res.ok:
            assert res.head is not None
            console.print(
                f"[bold green]OK[/]: {res.rows:,} rows verified in {res.seconds:.2f} s"
                + (" (anchor matches)" if head is not None else "")
            )
            console.print(
                f"head (keep as an anchor): {res.head.seq}:{res.head.hash}", soft_wrap=True
            )
        else:
            where = f" in {res.table}" if res.table else ""
            console.print(
                f"[bold red]BROKEN[/] at seq {res.first_bad_seq}{where}: {escape(res.reason)}"
            )
            console.print(f"{res.rows:,} rows before it verified; checked in {res.seconds:.2f} s")
    if not res.ok:
        raise typer.Exit(1)
