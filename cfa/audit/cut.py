"""Retention cuts as the verifier sees them: where a store's chain starts, and why.

After ``cfa audit archive`` (:mod:`cfa.audit.archive`) a store holds the rows ``K+1 .. max``
of its chain; rows ``1..K`` (or ``J+1..K`` after an earlier cut) live in an archive file.
Two records say where the chain in a store starts:

* in a **live store**, the ``runs`` row of kind ``archive`` appended by the cut — chained like
  every row, so it is covered by the hash chain and the signed anchors after it. Its payload
  (:func:`cut_records`): ``first_seq``/``last_seq`` (the archived range), ``head_hash`` (the hash
  of row ``last_seq``), ``first_hash`` (of row 1 of the whole chain), ``file`` (absolute path of
  the archive), ``name``, ``sha256`` (of the archive file), ``rows`` and ``runs``;
* in an **archive file** (always SQLite), the one-row table :data:`META_TABLE` (not chained: it
  repeats what the first row's ``prev_hash`` already claims): ``first_seq``, ``prev_hash`` (the
  hash of row ``first_seq - 1``, GENESIS for 1), ``first_hash``, ``previous`` (the archive of
  the rows before, if any) and ``source`` (the store it was cut from, without password).

Both are unkeyed claims, like the chain itself: the signed anchors (checked against the archive
when it is present) are what tells a genuine cut from rows deleted by someone else.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cfa.audit.errors import DB_ERRORS

META_TABLE: Final = "cfa_archive"
"""The metadata table of an archive file."""
META_DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (source TEXT NOT NULL, first_seq INTEGER NOT NULL, "
    "last_seq INTEGER NOT NULL, prev_hash TEXT NOT NULL, head_hash TEXT NOT NULL, "
    "first_hash TEXT, previous TEXT, created_ms INTEGER NOT NULL) STRICT"
)


@dataclass(frozen=True, slots=True)
class CutRecord:
    """One retention cut recorded in a live store (a ``runs`` row of kind ``archive``)."""

    seq: int
    """The record's own seq (after the rows it archived were deleted)."""
    first_seq: int
    last_seq: int
    head_hash: str
    first_hash: str | None
    file: str
    sha256: str
    rows: int
    runs: tuple[str, ...]


def cut_records(conn: Any) -> list[CutRecord]:
    """The cuts recorded in the store behind ``conn``, oldest first (malformed ones skipped)."""
    from cfa.audit.schema import chained_tables

    if "runs" not in chained_tables(conn):
        return []
    out: list[CutRecord] = []
    try:
        rows = conn.execute(
            "SELECT seq, payload FROM runs WHERE kind = 'archive' ORDER BY seq"
        ).fetchall()
    except DB_ERRORS:
        return []
    for seq, payload in rows:
        try:
            p = json.loads(payload)
            out.append(
                CutRecord(
                    int(seq),
                    int(p["first_seq"]),
                    int(p["last_seq"]),
                    str(p["head_hash"]),
                    p.get("first_hash"),
                    str(p["file"]),
                    str(p["sha256"]),
                    int(p["rows"]),
                    tuple(p.get("runs") or ()),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


def archive_meta(conn: Any) -> dict[str, Any] | None:
    """The :data:`META_TABLE` row of an archive file, or None (not an archive, or PostgreSQL)."""
    from cfa.audit import postgres

    if postgres.is_pg(conn):
        return None
    try:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (META_TABLE,)
        ).fetchone():
            return None
        cur = conn.execute(f"SELECT * FROM {META_TABLE} LIMIT 1")
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))
    except DB_ERRORS:
        return None


def chain_basis(conn: Any, min_seq: int) -> tuple[Any, str] | None:
    """``(ChainHead of row min_seq - 1, archive file)`` when the store records a cut there:
    the newest ``archive`` record with ``last_seq == min_seq - 1``, else an archive file's
    metadata with ``first_seq == min_seq``. None when nothing explains a chain that starts
    after seq 1 (the verifier then reports the missing rows)."""
    from cfa.audit.chain import ChainHead

    for rec in reversed(cut_records(conn)):
        if rec.last_seq == min_seq - 1:
            return ChainHead(rec.last_seq, rec.head_hash), rec.file
    meta = archive_meta(conn)
    if meta is not None and int(meta["first_seq"]) == min_seq:
        return ChainHead(min_seq - 1, str(meta["prev_hash"])), str(meta["previous"] or "?")
    return None


def original_first_hash(conn: Any) -> str | None:
    """The hash of row 1 of the whole chain when row 1 was archived (from the cut record or
    the archive metadata), else None."""
    recs = cut_records(conn)
    if recs and recs[-1].first_hash:
        return recs[-1].first_hash
    meta = archive_meta(conn)
    if meta is not None and meta.get("first_hash"):
        return str(meta["first_hash"])
    return None


def resolve_archive(path: str, relative_to: str | os.PathLike[str] | None) -> Path | None:
    """The archive file named by a record: as recorded (absolute), else its name next to the
    store (``relative_to``: the store's SQLite path) or in the working directory; None when
    none of these exists."""
    p = Path(path)
    cands = [p]
    if relative_to is not None and not str(relative_to).startswith(("postgresql:", "postgres:")):
        cands.append(Path(relative_to).parent / p.name)
    cands.append(Path(p.name))
    for c in cands:
        if c.is_file():
            return c
    return None


def archives_of(conn: Any, target: str | os.PathLike[str]) -> list[tuple[int, int, Path | None]]:
    """The archives holding this store's earlier rows, newest first: ``(first_seq, last_seq,
    path or None when missing)``, following each archive's ``previous`` back to seq 1."""
    from cfa.audit.chain import connect_readonly

    out: list[tuple[int, int, Path | None]] = []
    recs = cut_records(conn)
    meta = archive_meta(conn)
    if recs:
        r = recs[-1]
        nxt: tuple[int, str] | None = (r.first_seq, r.file)
        out_last = r.last_seq
    elif meta is not None and meta.get("previous"):
        nxt = (1, str(meta["previous"]))
        out_last = int(meta["first_seq"]) - 1
    else:
        return out
    seen: set[str] = set()
    rel: str | os.PathLike[str] | None = target
    while nxt is not None and len(out) < 1000:
        first, name = nxt
        path = resolve_archive(name, rel)
        if path is None or str(path.resolve()) in seen:
            out.append((first, out_last, None))
            break
        seen.add(str(path.resolve()))
        nxt = None
        try:
            c = connect_readonly(path)
        except Exception:
            out.append((first, out_last, None))
            break
        try:
            m = archive_meta(c)
        finally:
            c.close()
        if m is None:
            out.append((first, out_last, path))
            break
        first = int(m["first_seq"])
        out.append((first, int(m["last_seq"]), path))
        if first > 1 and m.get("previous"):
            nxt, out_last, rel = (1, str(m["previous"])), first - 1, path
    return out
