"""File-level checks of an audit store: SQLite's ``quick_check`` and the append-only triggers
(on PostgreSQL: the triggers and the revoked privileges).

* :func:`quick_check` — ``PRAGMA quick_check`` (the b-tree structure of every table and index,
  O(file size), without cross-checking index contents), read-only; ``cfa run`` refuses a file
  that fails it rather than append to a damaged trail.
* :func:`missing_triggers` — the ``<table>_no_update`` / ``<table>_no_delete`` triggers that make
  every audit table append-only (:func:`cfa.audit.schema.ensure_schema`). They are a guard
  against accidents and careless tools, not against an attacker (who can drop them); a file
  without them was written by something other than cfa, and ``cfa audit verify`` says so.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from cfa.audit import postgres
from cfa.audit.chain import connect_readonly, store_name
from cfa.audit.errors import DB_ERRORS, AuditError
from cfa.audit.schema import TABLES, quote_ident


def quick_check(path: str | os.PathLike[str], max_errors: int = 5) -> list[str]:
    """Run ``PRAGMA quick_check`` on the existing SQLite file at ``path``, read-only.

    Returns the problems SQLite reports, one line each (at most ``max_errors``), ``[]`` for a
    sound file. A file SQLite cannot read at all (not a database, a damaged header) gives one
    problem naming the SQLite error. Raises :class:`AuditError` only when the file does not exist.
    """
    if postgres.is_url(path):
        return []  # PostgreSQL checks its own pages (page checksums, WAL); nothing to ask here
    p = Path(path)
    if not p.is_file():
        raise AuditError(f"audit store {str(p)!r} does not exist or is not a file")
    try:
        conn = connect_readonly(p)
    except AuditError as exc:
        return [str(exc)]
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(max_errors)})").fetchall()
    except sqlite3.Error as exc:
        return [f"{type(exc).__name__}: {exc}"]
    finally:
        conn.close()
    out = [
        line.strip()
        for r in rows
        for line in str(r[0]).splitlines()
        if line.strip() and not line.startswith("*** in database")
    ]
    return [] if out == ["ok"] else out[:max_errors]


def missing_triggers(conn: Any) -> list[str]:
    """Names of the append-only triggers of the audit tables present in ``conn``'s file that
    are missing or no longer abort the statement, in table order. On PostgreSQL also the
    privileges that should be revoked (:func:`cfa.audit.postgres.missing_protections`)."""
    if postgres.is_pg(conn):
        return postgres.missing_protections(conn)
    have = {
        name: (tbl, (sql or "").upper())
        for name, tbl, sql in conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
        )
    }
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    } & set(TABLES)
    out = []
    for t in TABLES:
        if t not in tables:
            continue
        for op in ("update", "delete"):
            name = f"{t}_no_{op}"
            tbl, sql = have.get(name, ("", ""))
            ok = (
                tbl == t
                and f"BEFORE {op.upper()} ON {quote_ident(t).upper()}" in sql
                and " WHEN " not in sql
                and "RAISE(ABORT" in sql.replace(" ", "")
            )
            if not ok:
                out.append(name)
    return out


def missing_triggers_in(path: str | os.PathLike[str]) -> list[str]:
    """:func:`missing_triggers` of the file at ``path`` (read-only)."""
    conn = connect_readonly(path)
    try:
        return missing_triggers(conn)
    except DB_ERRORS as exc:
        raise AuditError(f"cannot read audit store {store_name(path)!r}: {exc}") from None
    finally:
        conn.close()
