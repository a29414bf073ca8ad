"""Retention: move the oldest finished runs of an audit store into an archive file.

``cfa audit archive --db DB --before DATE [--out FILE]`` (:func:`archive`):

1. **Plan** (:func:`plan`). The archived part is a *prefix* of the chain, rows ``S..K`` where
   ``S`` is the store's first row (1, or the row after an earlier cut). Rows are taken in seq
   order while each belongs to a run that *ended* (its ``end`` row) before ``DATE`` by the
   store's clock (``runs.ts_ms`` of the end row, UTC epoch ms), or — for rows of no run
   started in this store (cut records, notes of archived runs) — while the row itself is older
   than ``DATE``. ``K`` is the last such row at which no run is half taken. The plan stops at
   the first row that does not qualify and says which run it belongs to and why (not ended,
   ended after ``DATE``); rows after it, even of qualifying runs, stay live.
2. **Copy** rows ``S..K`` into a new SQLite audit store (the archive file; never overwritten)
   with their original seq, prev_hash and hash. Old rows whose payload is text are compressed
   on the way (:mod:`cfa.audit.compact`: hashes do not change). The archive gets the
   :data:`cfa.audit.cut.META_TABLE` row, is verified on its own, and gets the signed anchors
   covering it: the lines of the store's anchor file with seq <= K (a prefix of that file, so
   their ``prev`` links hold), into ``<archive>.anchors``.
3. **Cut** the live store in one transaction, as its owner: SQLite drops the
   ``<table>_no_delete`` triggers, deletes ``seq <= K`` and recreates them; PostgreSQL disables
   the ``<table>_no_change`` triggers, deletes and re-enables them (``ALTER TABLE`` needs the
   table's owner: the ``cfa_writer`` role cannot archive, by design). The same transaction
   appends the cut record (a ``runs`` row of kind ``archive``, :class:`cfa.audit.cut.CutRecord`)
   to the chain. When the store has an anchor file, the cut is anchored (an ``open`` anchor of
   the head before, a ``close`` anchor of the record), signed with the operator's key.
4. SQLite: ``VACUUM`` gives the freed pages back to the file system (``vacuum=False`` skips it).
   PostgreSQL reuses the space after its (auto)vacuum; the table files do not shrink by
   themselves (``VACUUM FULL`` does, with an exclusive lock).

A session writing the store refuses the cut (heartbeat): archive between runs.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cfa.audit import postgres
from cfa.audit.chain import ChainHead, RowHasher, connect_readonly, store_name, verify
from cfa.audit.compact import pack, packed_pairs
from cfa.audit.cut import META_DDL, META_TABLE, archive_meta, original_first_hash
from cfa.audit.encoding import canonical_json
from cfa.audit.errors import DB_ERRORS, AuditError, AuditIntegrityError
from cfa.audit.schema import TABLES, chained_tables, ensure_schema, quote_ident, trigger_ddl

COPY_CHUNK: Final = 5_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`plan` found: rows ``first_seq..last_seq`` qualify (``last_seq <
    first_seq``: none), of runs ``runs``; ``stopped`` says why the prefix ends before the
    head (None when it reaches it); ``head`` is the store's head when planned."""

    first_seq: int
    last_seq: int
    prev_hash: str
    runs: tuple[str, ...]
    stopped: str | None
    head: ChainHead

    @property
    def rows(self) -> int:
        return max(0, self.last_seq - self.first_seq + 1)


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """Outcome of :func:`archive`."""

    plan: Plan
    file: Path
    sha256: str
    anchors_copied: int
    record: ChainHead
    """The cut record's row in the live store (its seq and hash)."""
    live_anchored: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def _row_stream(
    conn: Any, tables: dict[str, tuple[str, ...]], lo: int
) -> Iterator[tuple[Any, ...]]:
    """``(seq, table, run_id, ts_ms, kind or None)`` of every row with seq >= lo, in seq order."""

    def one(t: str) -> Iterator[tuple[Any, ...]]:
        kind = "kind" if t == "runs" else "NULL"
        sql = f"SELECT seq, run_id, ts_ms, {kind} FROM {quote_ident(t)} WHERE seq >= ? ORDER BY seq"
        cur = conn.stream(sql, (lo,)) if postgres.is_pg(conn) else conn.execute(sql, (lo,))
        for r in cur:
            yield (r[0], t, r[1], r[2], r[3])

    return heapq.merge(*(one(t) for t in tables), key=lambda r: r[0])


def plan(target: str | os.PathLike[str], before_ms: int) -> Plan:
    """The prefix of the store at ``target`` that :func:`archive` would move for ``before_ms``
    (UTC epoch ms; see the module doc). Reads only. :class:`AuditIntegrityError` when the chain
    does not verify (a broken trail is not archived), :class:`AuditError` when it cannot be read.
    """
    res = verify(target)
    if not res.ok:
        raise AuditIntegrityError(
            f"{store_name(target)}: the chain does not verify (seq {res.first_bad_seq}: "
            f"{res.reason}); not archiving a broken trail"
        )
    assert res.head is not None
    first = res.base.seq + 1
    conn = connect_readonly(target)
    try:
        tables = chained_tables(conn)
        ends: dict[str, tuple[int, int]] = {}
        starts: dict[str, int] = {}
        for rid, seq, ts, kind in conn.execute(
            "SELECT run_id, seq, ts_ms, kind FROM runs WHERE kind IN ('start', 'end') ORDER BY seq"
        ).fetchall():
            if kind == "start":
                starts.setdefault(str(rid), int(seq))
            else:
                ends.setdefault(str(rid), (int(seq), int(ts)))
        last = res.base.seq
        open_runs: set[str] = set()
        taken: list[str] = []
        done = 0
        stopped: str | None = None
        when = _iso(before_ms)
        for seq, table, rid, ts, kind in _row_stream(conn, tables, first):
            why: str | None = None
            if rid in starts:
                end = ends.get(rid)
                if end is None:
                    why = f"run {rid} has not ended (no end row)"
                elif end[1] >= before_ms:
                    why = f"run {rid} ended at {_iso(end[1])}, not before {when}"
            elif kind == "archive":
                pass  # the record of an earlier cut goes with the rows around it
            elif ts >= before_ms:
                why = f"its row at {_iso(ts)} ({table}, run {rid}) is not before {when}"
            if why is not None:
                stopped = f"stopped at seq {seq} ({table}): {why}"
                if open_runs:
                    stopped += (
                        f"; it interleaves with run(s) {', '.join(sorted(open_runs))}, which "
                        "stay live too (the archive must be a prefix of the chain)"
                    )
                break
            if rid in starts and seq == starts[rid]:
                open_runs.add(rid)
                taken.append(rid)
            if rid in ends and seq == ends[rid][0]:
                open_runs.discard(rid)
            if not open_runs:
                last, done = seq, len(taken)
        prev = res.base.hash
        return Plan(first, last, prev, tuple(taken[:done]), stopped, res.head)
    except DB_ERRORS as exc:
        raise AuditError(f"cannot read audit store {store_name(target)!r}: {exc}") from None
    finally:
        conn.close()


def default_out(target: str | os.PathLike[str], p: Plan) -> Path:
    """``<db>.archive-<first>-<last>.db`` next to a SQLite store; for PostgreSQL
    ``<host>-<database>[-<schema>].archive-<first>-<last>.db`` in the working directory."""
    text = os.fspath(target)
    stem = postgres.slug(text) if postgres.is_url(text) else text
    return Path(f"{stem}.archive-{p.first_seq}-{p.last_seq}.db")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _copy_rows(src: Any, dst: sqlite3.Connection, lo: int, hi: int) -> int:
    """Copy rows ``lo..hi`` of every chained table of ``src`` into ``dst`` as stored (text
    payloads compressed); returns the number of rows."""
    dst_tables = chained_tables(dst)
    n = 0
    for t, cols in chained_tables(src).items():
        if t not in dst_tables:
            raise AuditError(f"table {t} is unknown to this cfa: cannot archive it")
        extra = set(cols) - set(dst_tables[t])
        if extra:
            raise AuditError(f"{t} has columns unknown to this cfa ({sorted(extra)}): upgrade cfa")
        # a source of schema 1 lacks payload_z: select NULL for it, so old text gets packed
        have = set(cols)
        cols = (*cols, *(c for c in dst_tables[t] if c not in have and packed_in(t, c)))
        all_cols = ("seq", *cols, "prev_hash", "hash")
        names = ", ".join(quote_ident(c) for c in all_cols)
        exprs = ", ".join(
            "NULL" if c in cols and c not in have else quote_ident(c) for c in all_cols
        )
        sql = f"SELECT {exprs} FROM {quote_ident(t)} WHERE seq BETWEEN ? AND ? ORDER BY seq"
        cur = src.stream(sql, (lo, hi)) if postgres.is_pg(src) else src.execute(sql, (lo, hi))
        ins = f"INSERT INTO {quote_ident(t)} ({names}) VALUES ({', '.join('?' * len(all_cols))})"
        pairs = packed_pairs(t, cols)
        while chunk := cur.fetchmany(COPY_CHUNK):
            if pairs:
                chunk = [(r[0], *pack(r[1:-2], pairs), r[-2], r[-1]) for r in chunk]
            dst.executemany(ins, chunk)
            n += len(chunk)
    return n


def packed_in(table: str, column: str) -> bool:
    """Whether ``column`` of ``table`` is a compressed (``zjson``) column of this schema."""
    spec = TABLES.get(table)
    return spec is not None and any(c.name == column and c.packs for c in spec.columns)


def _anchor_file_of(target: str) -> Path | None:
    from cfa.audit.anchors import default_anchor_path, recorded_anchor_file

    d = default_anchor_path(target)
    if d.is_file():
        return d
    conn = connect_readonly(target)
    try:
        rec = recorded_anchor_file(conn)
    finally:
        conn.close()
    if rec is not None and Path(rec[0]).is_file():
        return Path(rec[0])
    return None


def copy_anchor_prefix(src: Path, dst: Path, last_seq: int) -> int:
    """Copy the leading lines of anchor file ``src`` with seq <= ``last_seq`` to ``dst`` (a
    prefix, so each line's ``prev`` link holds), trimmed back to the last line after which no
    writer is open when that line still anchors ``last_seq`` (a later writer's ``open`` anchor
    of the same head adds nothing, and would read as a writer that never closed). Returns the
    number of lines."""
    lines: list[tuple[bytes, dict[str, Any]]] = []
    with open(src, "rb") as f:
        for raw in f:
            try:
                obj = json.loads(raw)
                seq = int(obj["seq"])
            except (ValueError, KeyError, TypeError):
                break
            if seq > last_seq:
                break
            lines.append((raw if raw.endswith(b"\n") else raw + b"\n", obj))
    keep = len(lines)
    open_writers: set[str] = set()
    for i, (_raw, obj) in enumerate(lines):
        if obj.get("kind") == "close":
            open_writers.discard(str(obj.get("writer")))
        else:
            open_writers.add(str(obj.get("writer")))
        if not open_writers and int(obj["seq"]) == last_seq:
            keep = i + 1
    if not lines:
        return 0
    with open(dst, "xb") as out:
        for raw, _obj in lines[:keep]:
            out.write(raw)
        out.flush()
        os.fsync(out.fileno())
    return keep


def _cut_sqlite(
    conn: sqlite3.Connection, last_seq: int, record: tuple[str, dict[str, Any]]
) -> ChainHead:
    from cfa.audit.sink import read_head

    conn.execute("BEGIN IMMEDIATE")
    try:
        head = read_head(conn)
        tables = chained_tables(conn)
        for t in tables:
            conn.execute(f"DROP TRIGGER IF EXISTS {quote_ident(f'{t}_no_delete')}")
            conn.execute(f"DELETE FROM {quote_ident(t)} WHERE seq <= ?", (last_seq,))
            if t in TABLES:
                conn.execute(trigger_ddl(t, "DELETE"))
        new = _append_record(conn, tables, head, record)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return new


def _cut_pg(conn: Any, last_seq: int, record: tuple[str, dict[str, Any]]) -> ChainHead:
    from cfa.audit.sink import begin_write, read_head

    begin_write(conn)
    try:
        head = read_head(conn)
        tables = chained_tables(conn)
        for t in tables:
            trig = quote_ident(f"{t}_no_change")
            conn.execute(f"ALTER TABLE {quote_ident(t)} DISABLE TRIGGER {trig}")
            conn.execute(f"DELETE FROM {quote_ident(t)} WHERE seq <= ?", (last_seq,))
            conn.execute(f"ALTER TABLE {quote_ident(t)} ENABLE TRIGGER {trig}")
        new = _append_record(conn, tables, head, record)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return new


def _append_record(
    conn: Any,
    tables: dict[str, tuple[str, ...]],
    head: ChainHead,
    record: tuple[str, dict[str, Any]],
) -> ChainHead:
    """Chain the cut record (a ``runs`` row of kind ``archive``) after ``head``."""
    run_id, payload = record
    text, _ = canonical_json(payload)
    by_name = {
        "run_id": run_id,
        "market": "",
        "ts_ms": round(time.time() * 1000),
        "kind": "archive",
        "payload": text,
    }
    cols = tables["runs"]
    values = tuple(by_name.get(c) for c in cols)
    seq = head.seq + 1
    h = RowHasher("runs", cols).digest(seq, head.hash, values)
    names = ", ".join(quote_ident(c) for c in ("seq", *cols, "prev_hash", "hash"))
    marks = ", ".join("?" * (len(cols) + 3))
    conn.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", (seq, *values, head.hash, h))
    return ChainHead(seq, h)


def _admin_conn(target: str) -> Any:
    if postgres.is_url(target):
        return postgres.PgConnection(target)
    conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def archive(
    target: str | os.PathLike[str],
    before_ms: int,
    *,
    out: str | os.PathLike[str] | None = None,
    vacuum: bool = True,
    key_path: str | os.PathLike[str] | None = None,
) -> ArchiveResult:
    """Move the finished runs that ended before ``before_ms`` (UTC epoch ms) from the store at
    ``target`` into the SQLite archive ``out`` (default :func:`default_out`); see the module doc.

    Raises :class:`AuditError` (nothing changed) when nothing qualifies, a session is writing
    the store, ``out`` exists, the chain or the archive does not verify, or the cut is refused
    (PostgreSQL: not the owner). ``key_path`` is the anchor signing key (default
    :func:`cfa.audit.anchors.default_key_path`), used when the store has an anchor file.
    """
    from cfa.audit.anchors import AnchorLog, check_open
    from cfa.audit.heartbeat import session_status

    t0 = time.perf_counter()
    tgt = os.fspath(target)
    name = store_name(tgt)
    if not postgres.is_url(tgt) and not Path(tgt).is_file():
        raise AuditError(f"audit store {tgt!r} does not exist or is not a file")
    alive, detail = session_status(tgt)
    if alive:
        raise AuditError(f"{name}: a session is writing it ({detail}); archive between runs")
    probe = connect_readonly(tgt)
    try:
        if archive_meta(probe) is not None:
            raise AuditError(f"{name} is an archive file: archive the live store it came from")
    finally:
        probe.close()
    p = plan(tgt, before_ms)
    if p.rows == 0:
        why = p.stopped or "the store holds no rows after its last cut"
        raise AuditError(f"nothing to archive in {name} before {_iso(before_ms)}: {why}")
    dest = Path(out) if out is not None else default_out(tgt, p)
    if dest.exists():
        raise AuditError(f"archive file {str(dest)!r} exists; choose another --out")
    if not dest.parent.is_dir():
        raise AuditError(f"archive file {str(dest)!r}: directory {str(dest.parent)!r} missing")
    dest_anchors = Path(f"{dest}.anchors")
    if dest_anchors.exists():
        raise AuditError(f"anchor file {str(dest_anchors)!r} of the archive exists already")
    afile = _anchor_file_of(tgt)
    log = AnchorLog.open(afile, key_path) if afile is not None else None
    if log is not None:  # refuse a store its anchors contradict before writing anything
        from cfa.audit.sink import read_head

        probe = connect_readonly(tgt)
        try:
            check_open(probe, name, log, read_head(probe))
        finally:
            probe.close()
    tmp = dest.with_name(dest.name + f".tmp-{secrets.token_hex(3)}")
    src = connect_readonly(tgt)
    try:
        first_hash = _hash_at(src, 1) or original_first_hash(src)
        prev_archive = _previous_archive(src)
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            dst.execute("PRAGMA journal_mode = DELETE")
            dst.execute("BEGIN")
            ensure_schema(dst, str(tmp))
            rows = _copy_rows(src, dst, p.first_seq, p.last_seq)
            head_hash = _hash_at(dst, p.last_seq)
            if head_hash is None or rows != p.rows:
                raise AuditIntegrityError(
                    f"{name}: copied {rows} rows, expected {p.rows} (seq {p.first_seq}.."
                    f"{p.last_seq}): the store changed under the archive?"
                )
            dst.execute(META_DDL)
            dst.execute(
                f"INSERT INTO {META_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    p.first_seq,
                    p.last_seq,
                    p.prev_hash,
                    head_hash,
                    first_hash,
                    prev_archive,
                    round(time.time() * 1000),
                ),
            )
            dst.execute("COMMIT")
        finally:
            dst.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    try:
        check = verify(tmp)
        if not check.ok or check.head != ChainHead(p.last_seq, head_hash):
            raise AuditIntegrityError(
                f"the archive of {name} does not verify ({check.reason}); nothing was cut"
            )
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    cut: list[bool] = []
    try:
        return _cut(tgt, p, dest, log, afile, head_hash, first_hash, before_ms, vacuum, t0, cut)
    except BaseException:
        if not cut:  # the live store was not cut: a copy of its rows would only mislead
            dest.unlink(missing_ok=True)
            Path(f"{dest}.anchors").unlink(missing_ok=True)
        raise
    finally:
        if log is not None:
            log.close()


def _cut(
    tgt: str,
    p: Plan,
    dest: Path,
    log: Any,
    afile: Path | None,
    head_hash: str,
    first_hash: str | None,
    before_ms: int,
    vacuum: bool,
    t0: float,
    cut: list[bool],
) -> ArchiveResult:
    """Steps 2 (the anchors) to 4 of :func:`archive`, once the archive file is in place;
    appends to ``cut`` once the live store's cut is committed (after that the archive is the
    only copy of its rows and must stay, whatever fails next; a failed VACUUM is a note)."""
    from cfa.audit.anchors import check_open

    name = store_name(tgt)
    notes: list[str] = []
    digest = _sha256(dest)
    dest_anchors = Path(f"{dest}.anchors")
    copied = copy_anchor_prefix(afile, dest_anchors, p.last_seq) if afile is not None else 0
    if afile is not None and copied == 0:
        notes.append(f"no anchor of {afile} covers rows {p.first_seq}..{p.last_seq}")
    record_id = f"archive-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    payload = {
        "first_seq": p.first_seq,
        "last_seq": p.last_seq,
        "head_hash": head_hash,
        "prev_hash": p.prev_hash,
        "first_hash": first_hash,
        "file": str(dest.resolve()),
        "name": dest.name,
        "sha256": digest,
        "rows": p.rows,
        "runs": list(p.runs),
        "before_ms": before_ms,
        "anchors_copied": copied,
    }
    conn = _admin_conn(tgt)
    try:
        head: ChainHead | None = None
        if log is not None:
            from cfa.audit.sink import read_head

            head = read_head(conn)
            check_open(conn, name, log, head)
            log.append("open", head, run_id=record_id, first=first_hash, db=_db_label(tgt))
        try:
            if postgres.is_pg(conn):
                new = _cut_pg(conn, p.last_seq, (record_id, payload))
            else:
                new = _cut_sqlite(conn, p.last_seq, (record_id, payload))
        except DB_ERRORS as exc:
            if log is not None and head is not None:  # this writer adds nothing: say so
                log.append("close", head, run_id=record_id, first=first_hash, db=_db_label(tgt))
            hint = ""
            if postgres.is_pg(conn):
                hint = (
                    " (archiving disables the append-only triggers: run it as the tables' "
                    f"owner; the {postgres.WRITER_ROLE} role cannot, by design)"
                )
            raise AuditError(
                f"cannot cut {name}: {exc}{hint}; the live store is unchanged"
            ) from None
        cut.append(True)
        if log is not None:
            log.append("close", new, run_id=record_id, first=first_hash, db=_db_label(tgt))
        if vacuum and not postgres.is_pg(conn):
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                conn.execute("VACUUM")
            except sqlite3.Error as exc:  # a reader holding the file: the cut stands anyway
                notes.append(f"VACUUM skipped ({exc}): the file keeps its size until one runs")
    finally:
        conn.close()
    return ArchiveResult(
        p, dest, digest, copied, new, log is not None, time.perf_counter() - t0, notes
    )


def _db_label(target: str) -> str:
    return store_name(target) if postgres.is_url(target) else Path(target).name


def _hash_at(conn: Any, seq: int) -> str | None:
    for t in chained_tables(conn):
        r = conn.execute(f"SELECT hash FROM {quote_ident(t)} WHERE seq = ?", (seq,)).fetchone()
        if r is not None:
            return str(r[0])
    return None


def _previous_archive(conn: Any) -> str | None:
    """The archive file of the rows before this store's first row (None when it starts at 1)."""
    from cfa.audit.cut import cut_records

    recs = cut_records(conn)
    if recs:
        return recs[-1].file
    meta = archive_meta(conn)
    return None if meta is None else meta.get("previous")


def parse_before(text: str) -> int:
    """``--before`` as UTC epoch ms: an ISO date (``2026-12-01``: its midnight UTC) or
    date-time (``2026-12-01T12:00``, UTC unless it names an offset). :class:`AuditError`
    otherwise."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise AuditError(
            f"--before: expected a date or date-time such as 2026-12-01 or 2026-12-01T12:00Z, "
            f"got {text!r}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)
