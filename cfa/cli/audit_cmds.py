"""``cfa audit``: checks on the audit store.

* ``cfa audit verify`` walks the hash chain, checks the append-only triggers, and compares the
  chain with its signed anchors (``--anchors FILE``; by default ``<db>.anchors`` when it exists),
  optionally against a pinned public key (``--public-key``).
* ``cfa audit archive`` moves finished runs (a prefix of the chain) into an archive file and
  cuts them from the live store (:mod:`cfa.audit.archive`).
* ``cfa audit key`` prints the public key of the anchor signing key (creating the key on first
  use), to pin it.

Register with ``app.add_typer(audit_app, name="audit")``.
"""

from __future__ import annotations

import json
import re
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Annotated, Any

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
    """Check the audit store: ``cfa audit verify``; ``cfa audit archive`` for retention;
    ``cfa audit key`` for the anchor key."""


@audit_app.command("verify")
def verify_cmd(
    db: Annotated[
        str, typer.Option(help="Audit store to verify: a SQLite file or a postgresql:// URL.")
    ] = "cfa.db",
    anchor: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH of a chain head kept outside the file (printed by an earlier "
            "verify or at the end of `cfa run`); detects a rewritten chain or a cut tail.",
        ),
    ] = None,
    anchors: Annotated[
        Path | None,
        typer.Option(
            help="Signed anchor file written by `cfa run` (default: <db>.anchors if it exists): "
            "detects a rewritten chain, a cut tail and forged appended rows.",
        ),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            help="Pin the anchors' signing key (base64 from `cfa audit key`, a PEM public key, "
            "or a file holding one): anchors signed by any other key fail.",
        ),
    ] = None,
    no_anchors: Annotated[
        bool, typer.Option("--no-anchors", help="Do not check <db>.anchors.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Warnings fail too (rows after the last anchor of a killed run)."
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Processes for large files (default: up to 2)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify the hash chain of every row, the append-only triggers and the signed anchors:
    exit 0 when intact, 1 at the first problem (the report says which)."""
    from cfa.audit.anchors import (
        AnchorCheck,
        check_anchors,
        default_anchor_path,
        parse_public_key,
        recorded_anchor_file,
    )
    from cfa.audit.chain import connect_readonly
    from cfa.audit.integrity import missing_triggers

    head: ChainHead | None = None
    if anchor is not None:
        m = _ANCHOR.match(anchor)
        if not m:
            raise fail(f"--anchor: expected SEQ:HASH (64 hex digits), got {anchor!r}")
        head = ChainHead(int(m.group(1)), m.group(2).lower())
    pinned: str | None = None
    if public_key is not None:
        try:
            pinned = parse_public_key(public_key)
        except AuditError as exc:
            raise fail(str(exc)) from None
    if anchors is not None and no_anchors:
        raise fail("--anchors and --no-anchors exclude each other")
    try:
        try:
            res = verify(db, anchor=head, workers=workers)
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            if isinstance(exc, AuditError):
                raise
            # Worker processes could not start (e.g. an embedding without a __main__ guard):
            # the same check in this process, only slower.
            res = verify(db, anchor=head, workers=1)
        conn = connect_readonly(db)
        try:
            triggers = missing_triggers(conn)
            recorded = recorded_anchor_file(conn)
        finally:
            conn.close()
    except AuditError as exc:
        raise fail(str(exc)) from None
    notes: list[tuple[str, str]] = []  # (level, message) about anchors not checked
    afile = anchors
    if afile is None and not no_anchors:
        default = default_anchor_path(db)
        if default.is_file():
            afile = default
        elif recorded is not None and Path(recorded[0]).is_file():
            afile = Path(recorded[0])
    if afile is None and recorded is not None and not no_anchors:
        notes.append(
            (
                "warn",
                f"runs in {db} were signed to the anchor file {recorded[0]} (key {recorded[1]}), "
                "which is missing: deleted or moved? Without it a rewritten or cut chain cannot "
                "be detected",
            )
        )
    elif afile is None and not no_anchors:
        notes.append(("note", "no signed anchors for this file: a rewrite or cut is undetectable"))
    if pinned is not None and afile is None:
        raise fail(f"--public-key needs an anchor file: none found for {db} (pass --anchors)")
    check: AnchorCheck | None = None
    if afile is not None:
        try:
            check = check_anchors(db, afile, public_key=pinned, chain=res)
        except AuditError as exc:
            if anchors is not None:  # asked for explicitly: a missing file is a finding
                check = None
                notes.append(("fail", str(exc)))
            else:
                raise fail(str(exc)) from None
    failed = (
        not res.ok
        or bool(triggers)
        or (check is not None and not check.ok)
        or any(level == "fail" for level, _ in notes)
    )
    warned = (check is not None and bool(check.of("warn"))) or any(
        level == "warn" for level, _ in notes
    )
    ok = not failed and not (strict and warned)
    if as_json:
        typer.echo(json.dumps(_json(db, res, head, triggers, afile, pinned, check, notes, ok)))
    else:
        _print(db, res, head, triggers, afile, pinned, check, notes)
    if not ok:
        raise typer.Exit(1)


def _json(
    db: str,
    res: Any,
    head: ChainHead | None,
    triggers: list[str],
    afile: Path | None,
    pinned: str | None,
    check: Any,
    notes: list[tuple[str, str]],
    ok: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "db": str(db),
        "ok": ok,
        "chain_ok": res.ok,
        "rows": res.rows,
        "seconds": round(res.seconds, 4),
        "first_bad_seq": res.first_bad_seq,
        "table": res.table,
        "reason": res.reason,
        "head": None if res.head is None else {"seq": res.head.seq, "hash": res.head.hash},
        "anchor": None if head is None else {"seq": head.seq, "hash": head.hash},
        "archived": None
        if not res.base.seq
        else {"last_seq": res.base.seq, "hash": res.base.hash, "file": res.archived_in},
        "triggers_missing": triggers,
        "anchors": None,
        "notes": [{"level": lv, "message": m} for lv, m in notes],
    }
    if check is not None:
        out["anchors"] = {
            "file": str(afile),
            "ok": check.ok,
            "count": check.anchors,
            "matched": check.matched,
            "keys": list(check.keys),
            "pinned": pinned is not None,
            "seconds": round(check.seconds, 4),
            "findings": [
                {
                    "level": f.level,
                    "kind": f.kind,
                    "message": f.message,
                    "first_seq": f.first_seq,
                    "last_seq": f.last_seq,
                    "line": f.line,
                }
                for f in check.findings
            ],
        }
    return out


_STYLE = {"fail": "[bold red]FAIL[/]", "warn": "[bold yellow]WARN[/]", "note": "note"}


def _print(
    db: str,
    res: Any,
    head: ChainHead | None,
    triggers: list[str],
    afile: Path | None,
    pinned: str | None,
    check: Any,
    notes: list[tuple[str, str]],
) -> None:
    console = Console(highlight=False, soft_wrap=True)
    if res.ok:
        assert res.head is not None
        console.print(
            f"[bold green]OK[/]: {res.rows:,} rows verified in {res.seconds:.2f} s"
            + (" (anchor matches)" if head is not None else "")
        )
        console.print(f"head (keep as an anchor): {res.head.seq}:{res.head.hash}")
        if res.base.seq:
            console.print(
                f"rows 1..{res.base.seq} archived in {escape(str(res.archived_in))}; this store "
                f"holds seq {res.base.seq + 1}..{res.head.seq}"
            )
    else:
        where = f" in {res.table}" if res.table else ""
        console.print(
            f"[bold red]BROKEN[/] at seq {res.first_bad_seq}{where}: {escape(res.reason)}"
        )
        console.print(f"{res.rows:,} rows before it verified; checked in {res.seconds:.2f} s")
    if triggers:
        console.print(
            f"[bold red]TRIGGERS MISSING[/]: {', '.join(triggers)}: the append-only guard was "
            "removed, so rows may have been edited or deleted (the chain and anchors say whether)"
        )
    if check is not None:
        key = "the pinned key" if pinned is not None else "key(s) " + ", ".join(check.keys)
        if check.ok:
            last = check.last
            tail = (
                f"; last: {last.kind} of run {last.run_id or '-'} at {last.ts} (seq {last.seq})"
                if last is not None
                else ""
            )
            console.print(
                f"[bold green]ANCHORS OK[/]: {check.matched:,} of {check.anchors:,} signed "
                f"anchors in {escape(str(afile))} match, signed by {key}{tail}"
            )
            if pinned is None:
                console.print(
                    "note: the signing key was taken from the anchor file; pin it with "
                    "--public-key (see `cfa audit key`) to catch a file re-signed by another key"
                )
        else:
            console.print(
                f"[bold red]ANCHORS FAIL[/]: {escape(str(afile))} ({check.anchors:,} signed "
                f"anchors, {check.matched:,} match, {key})"
            )
        for f in check.findings:
            console.print(f"{_STYLE[f.level]}: {escape(f.message)}")
    for level, message in notes:
        console.print(f"{_STYLE[level]}: {escape(message)}")


@audit_app.command("archive")
def archive_cmd(
    db: Annotated[
        str, typer.Option(help="Live audit store: a SQLite file or a postgresql:// URL.")
    ] = "cfa.db",
    before: Annotated[
        str,
        typer.Option(
            help="Archive the runs that ended before this UTC date or date-time "
            "(2026-12-01, 2026-12-01T12:00Z), by the store's clock (runs.ts_ms).",
        ),
    ] = "",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Archive file to create (SQLite; default <db>.archive-<first>-<last>.db)."
        ),
    ] = None,
    vacuum: Annotated[
        bool, typer.Option(help="SQLite: VACUUM afterwards to give the space back.")
    ] = True,
    anchor_key: Annotated[
        Path | None,
        typer.Option(help="Key that signs the cut's anchors (default: as for `cfa run`)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be archived.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Move finished runs into an archive file (a prefix of the chain, seq 1..K, verified and
    anchored on its own) and cut them from the live store, which records the cut in its chain.
    An administrative act: it needs the store's owner (on PostgreSQL not cfa_writer)."""
    from cfa.audit.archive import archive, parse_before, plan

    if not before:
        raise fail("--before DATE is required (e.g. --before 2026-12-01)")
    try:
        before_ms = parse_before(before)
        if dry_run:
            p = plan(db, before_ms)
            obj = {
                "db": str(db),
                "first_seq": p.first_seq,
                "last_seq": p.last_seq,
                "rows": p.rows,
                "runs": list(p.runs),
                "stopped": p.stopped,
            }
            if as_json:
                typer.echo(json.dumps(obj))
            else:
                typer.echo(
                    f"would archive rows {p.first_seq}..{p.last_seq} ({p.rows:,} rows, "
                    f"{len(p.runs)} runs) of {db}"
                    if p.rows
                    else f"nothing to archive in {db}"
                )
                if p.stopped:
                    typer.echo(p.stopped)
            return
        res = archive(db, before_ms, out=out, vacuum=vacuum, key_path=anchor_key)
    except AuditError as exc:
        raise fail(str(exc)) from None
    p = res.plan
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "db": str(db),
                    "archive": str(res.file),
                    "sha256": res.sha256,
                    "first_seq": p.first_seq,
                    "last_seq": p.last_seq,
                    "rows": p.rows,
                    "runs": list(p.runs),
                    "stopped": p.stopped,
                    "anchors_copied": res.anchors_copied,
                    "record_seq": res.record.seq,
                    "live_anchored": res.live_anchored,
                    "seconds": round(res.seconds, 3),
                    "notes": res.notes,
                }
            )
        )
        return
    typer.echo(
        f"archived rows {p.first_seq}..{p.last_seq} ({p.rows:,} rows, {len(p.runs)} runs) into "
        f"{res.file} (sha256 {res.sha256[:16]}…, {res.anchors_copied} anchors) in "
        f"{res.seconds:.2f} s"
    )
    typer.echo(
        f"cut recorded in {db} at seq {res.record.seq}"
        + (" (anchored)" if res.live_anchored else " (no anchor file)")
    )
    if p.stopped:
        typer.echo(p.stopped)
    for n in res.notes:
        typer.echo(f"note: {n}")


@audit_app.command("init")
def init_cmd(
    db: Annotated[
        str, typer.Option(help="Audit store to create: a SQLite file or a postgresql:// URL.")
    ] = "cfa.db",
    grant: Annotated[
        list[str] | None,
        typer.Option(
            help="PostgreSQL: a role that sessions run as, given SELECT and INSERT only "
            "(repeat; the role must exist). cfa_writer, when it exists, is granted anyway.",
        ),
    ] = None,
) -> None:
    """Create the audit store (tables, indexes, append-only guards) as its owner, or check an
    existing one; on PostgreSQL grant the session roles what they need and no more."""
    from cfa.audit import AuditStore
    from cfa.audit.chain import connect_readonly, store_name
    from cfa.audit.errors import DB_ERRORS
    from cfa.audit.integrity import missing_triggers
    from cfa.audit.postgres import PgConnection, grant_writer, is_url

    if grant and not is_url(db):
        raise fail("--grant applies to a PostgreSQL store (SQLite has no roles)")
    try:
        with AuditStore.open(db) as store:
            head = store.head
        if grant:
            conn = PgConnection(db)
            try:
                conn.execute("BEGIN")
                for role in grant:
                    if not conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = ?", [role]
                    ).fetchone():
                        raise fail(f"--grant {role}: no such role (CREATE ROLE {role} LOGIN first)")
                    grant_writer(conn, role)
                conn.execute("COMMIT")
            finally:
                conn.close()
        with connect_readonly(db) as conn:
            missing = missing_triggers(conn)
    except AuditError as exc:
        raise fail(str(exc)) from None
    except DB_ERRORS as exc:
        raise fail(f"cannot set up {store_name(db)}: {exc}") from None
    what = "empty" if head.seq == 0 else f"{head.seq:,} rows, head {head.seq}:{head.hash[:16]}…"
    typer.echo(f"audit store {store_name(db)} ready ({what})")
    for role in grant or []:
        typer.echo(f"granted SELECT, INSERT (no UPDATE, DELETE, TRUNCATE) to {role}")
    for m in missing:
        typer.echo(f"warning: append-only guard missing: {m}", err=True)
    if missing:
        raise typer.Exit(1)


@audit_app.command("key")
def key_cmd(
    key: Annotated[
        Path | None,
        typer.Option(
            help="Signing key (default: $CFA_ANCHOR_KEY or ~/.config/cfa/anchor.key); created "
            "with mode 0600 if absent.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the public key that signs anchors (pin it: `cfa audit verify --public-key`)."""
    from cfa.audit.anchors import default_key_path, key_id, load_or_create_key, public_key_of

    path = key if key is not None else default_key_path()
    existed = path.exists()
    try:
        pub = public_key_of(load_or_create_key(path))
    except AuditError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "key_file": str(path),
                    "created": not existed,
                    "public_key": pub,
                    "key_id": key_id(pub),
                }
            )
        )
        return
    typer.echo(f"{pub}")
    typer.echo(
        f"key id {key_id(pub)} · private key {path}" + (" (created now)" if not existed else ""),
        err=True,
    )
