"""The hash chain: canonical row serialisation, row hashes and verification of a whole file.

**Rule.** Rows of all audit tables form ONE chain in ``seq`` order (1, 2, 3, ... without gaps).
Each row stores ``prev_hash`` (the ``hash`` of row ``seq - 1``; :data:`GENESIS` for seq 1) and

``hash = lowercase hex SHA-256 of the UTF-8 bytes of canonical(row)``, where::

    canonical(row) = json.dumps([table, names, seq, prev_hash, values],
                                separators=(",", ":"), ensure_ascii=False, allow_nan=False)

* ``table`` is the table name; ``names`` the row's content columns — every column except
  ``seq``, ``prev_hash`` and ``hash`` — in the table's physical column order;
* ``values`` the row's values of those columns as SQLite returns them (INTEGER → int, REAL →
  float written as Python's shortest ``repr``, TEXT → str, NULL → null) — except that a
  compressed ``zjson`` value is first decompressed into the ``json`` column it packs, and
  counts as NULL itself (:mod:`cfa.audit.compact`: the hash covers the content, not the
  bytes) — with trailing NULLs dropped, and ``names`` cut to the same length (so a nullable
  column added later at the end of a table leaves the old rows' hashes unchanged).

Because the table name, the column names, ``seq`` and ``prev_hash`` are all hashed, an edited
value, a row moved to another table or position (a changed ``seq``), a renamed column, a deleted
row (a gap in ``seq``, and a successor whose ``prev_hash`` no longer matches), an inserted row (a
duplicate ``seq`` or a broken link) or a reordering are all detected by :func:`verify`.

**Limits.** The chain is unkeyed: someone who can write the file can rewrite *every* row after
an edit with fresh hashes, or cut the tail. Keep an **anchor** outside the file — the
:class:`ChainHead` (seq and hash) returned by :meth:`AuditStore.end_run` or ``cfa audit verify``
— and pass it to :func:`verify` to detect that; or let the store write Ed25519-signed anchors
as it goes (:mod:`cfa.audit.anchors`, ``cfa audit verify --anchors``). ``docs/audit.md`` has the
threat model.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from cfa.audit import postgres
from cfa.audit.compact import packed_pairs, unpack
from cfa.audit.encoding import encode_row_values, row_values_bytes
from cfa.audit.errors import DB_ERRORS, AuditError, AuditIntegrityError
from cfa.audit.schema import chained_tables, quote_ident

GENESIS: Final = "0" * 64
"""``prev_hash`` of the row with seq 1."""

_SHA256_EMPTY = hashlib.sha256()  # copied per row: cheaper than a new object


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last row of the chain: its ``seq`` and ``hash``. Keep one outside the file as an
    anchor; ``seq == 0`` with :data:`GENESIS` stands for an empty chain."""

    seq: int
    hash: str


class RowHasher:
    """Computes row hashes for one table with a fixed list of content columns."""

    __slots__ = ("_bprefixes", "_full", "_ncols", "_pairs", "_prefixes", "names", "table")

    def __init__(self, table: str, names: Sequence[str]) -> None:
        self.table = table
        self.names = tuple(names)
        self._ncols = len(self.names)
        self._pairs = packed_pairs(table, self.names)
        """Compressed columns and the text column each packs: their values are hashed as that
        text (:mod:`cfa.audit.compact`)."""
        if not self._ncols:
            raise AuditError(f"{table}: a chained table needs content columns")
        t = json.dumps(table, ensure_ascii=False)
        # canonical = prefix[n] + f'{seq},"{prev}",' + json(values[:n]) + "]"
        self._prefixes = [
            f"[{t},{json.dumps(list(self.names[:n]), separators=(',', ':'))},"
            for n in range(self._ncols + 1)
        ]
        self._full = self._prefixes[-1]
        self._bprefixes = [p.encode() for p in self._prefixes]

    def _trimmed(self, values: Sequence[Any]) -> tuple[str, Sequence[Any]]:
        if len(values) != self._ncols:
            raise AuditError(f"{self.table}: expected {self._ncols} values, got {len(values)}")
        if values[-1] is not None:
            return self._full, values
        n = self._ncols - 1
        while n and values[n - 1] is None:
            n -= 1
        return self._prefixes[n], values[:n]

    def content(self, seq: int, values: Sequence[Any]) -> Sequence[Any]:
        """``values`` as the chain hashes them: compressed payloads decompressed into their
        text column. :class:`AuditError` for bytes that do not decompress."""
        for _ti, zi in self._pairs:
            if len(values) > zi and values[zi] is not None:
                return unpack(values, self._pairs, f"{self.table} seq {seq}")
        return values

    def canonical(self, seq: int, prev_hash: str, values: Sequence[Any]) -> str:
        """The canonical serialisation (see the module doc) of one row."""
        prefix, vals = self._trimmed(self.content(seq, values))
        return f'{prefix}{seq},"{prev_hash}",{encode_row_values(vals)}]'

    def digest(self, seq: int, prev_hash: str, values: Sequence[Any]) -> str:
        """``hash`` of one row: hex SHA-256 of :meth:`canonical` (the hot path of flush and
        verify). The values array is written by :func:`~cfa.audit.encoding.row_values_bytes`
        (orjson, byte-identical) when it can, else by the stdlib encoder. Compressed values
        are hashed as their text (:meth:`content`)."""
        if self._pairs:
            values = self.content(seq, values)
        if values[-1] is not None and len(values) == self._ncols:
            n = self._ncols
        else:
            values = self._trimmed(values)[1]
            n = len(values)
        body = row_values_bytes(values)
        h = _SHA256_EMPTY.copy()
        if body is None:
            h.update(
                f'{self._prefixes[n]}{seq},"{prev_hash}",{encode_row_values(values)}]'.encode()
            )
        else:
            h.update(self._bprefixes[n])
            h.update(f'{seq},"{prev_hash}",'.encode())
            h.update(body)
            h.update(b"]")
        return h.hexdigest()


# --- verification ----------------------------------------------------------------------------
#
# Fast path (decides): every table is scanned on its own in seq order (a rowid scan), split into
# units of (table, seq range) spread over worker processes. Each unit recomputes every row's
# hash, checks prev_hash against the previous row of the unit when that row has seq - 1, and
# otherwise records a *need* (seq - 1 -> prev_hash) and a *provide* (last seq before a jump ->
# its hash). The chain is intact iff every row hashes right, every need is met by a provide,
# and the tables hold exactly max_seq rows with seq >= 1: then every seq s has a row s - 1
# down to 1, so the seqs are exactly 1..max_seq, once each, and every link holds.
#
# Precise walk (reports): only when the fast path finds a problem, all tables are merged in seq
# order (SQLite merges the rowid scans of a UNION ALL ... ORDER BY seq) and walked until the
# first broken link, which names the first bad seq.


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    ``ok`` — the whole chain is intact (and matches the anchor, if one was given);
    ``rows`` — rows in the chain before the first problem (all rows when ``ok``);
    ``first_bad_seq`` — the smallest seq at which the chain breaks (the edited, missing,
    duplicated or re-linked row), None when ``ok``; ``reason`` — one line for people;
    ``table`` — the table of the bad row when known; ``head`` — the last row of an intact chain;
    ``seconds`` — wall time taken.
    """

    ok: bool
    rows: int
    first_bad_seq: int | None
    reason: str
    table: str | None = None
    head: ChainHead | None = None
    seconds: float = 0.0
    base: ChainHead = ChainHead(0, GENESIS)
    """Where the chain in this store starts: seq 0 and GENESIS, or, after a retention cut
    (:mod:`cfa.audit.archive`), the last archived row (its seq and hash): the store holds rows
    ``base.seq + 1 .. head.seq``."""
    archived_in: str | None = None
    """The archive file recorded for rows ``1 .. base.seq`` (None without a cut)."""

    def raise_for_error(self) -> None:
        """Raise :class:`AuditIntegrityError` with :attr:`reason` unless :attr:`ok`."""
        if not self.ok:
            raise AuditIntegrityError(
                f"audit chain broken at seq {self.first_bad_seq}: {self.reason}"
            )


def connect_readonly(path: str | os.PathLike[str]) -> Any:
    """A read-only connection to an existing audit store: a plain ``sqlite3`` connection to the
    file at ``path``, or a :class:`~cfa.audit.postgres.PgConnection` for a ``postgresql://``
    URL. :class:`AuditError` naming the store if it is absent or cannot be read."""
    if postgres.is_url(path):
        conn = postgres.PgConnection(str(path), readonly=True)
        try:
            if not postgres.is_audit_schema(conn):
                raise AuditError(f"audit store {conn.name!r} does not exist (no cfa tables)")
        except BaseException:
            conn.close()
            raise
        return conn
    p = Path(path)
    if not p.is_file():
        raise AuditError(f"audit store {str(p)!r} does not exist or is not a file")
    uri = f"file:{quote(str(p.resolve()))}?mode=ro"
    try:
        sconn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        sconn.execute("PRAGMA query_only = ON")
        sconn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise AuditError(f"cannot read audit store {str(p)!r}: {exc}") from None
    return sconn


def store_name(path: str | os.PathLike[str]) -> str:
    """How messages name the store at ``path`` (a PostgreSQL URL without its password)."""
    return postgres.redact(str(path)) if postgres.is_url(path) else str(path)


def scan(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    """A cursor over a possibly huge read: streamed from the server on PostgreSQL (a plain
    cursor would load every row first); SQLite's cursors stream anyway."""
    if postgres.is_pg(conn):
        return conn.stream(sql, params)
    return conn.execute(sql, params)


_Problem = tuple[int, str | None, str]  # (seq, table, reason)

_PARALLEL_MIN_ROWS: Final = 200_000
"""Files with fewer rows are verified in the calling process."""


@dataclass(slots=True)
class _UnitResult:
    rows: int
    need: dict[int, str]
    provide: dict[int, str]
    bad_seq: int | None


def _check_unit(path: str, table: str, names: tuple[str, ...], lo: int, hi: int) -> _UnitResult:
    """Fast-path check of ``table``'s rows with ``lo <= seq <= hi`` (see the comment above)."""
    conn = connect_readonly(path)
    try:
        digest = RowHasher(table, names).digest
        cols = ", ".join(quote_ident(c) for c in ("seq", "prev_hash", "hash", *names))
        cur = scan(
            conn,
            f"SELECT {cols} FROM {quote_ident(table)} WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (lo, hi),
        )
        need: dict[int, str] = {}
        provide: dict[int, str] = {}
        rows = 0
        last_seq = -2
        last_hash = ""
        bad: int | None = None
        while bad is None:
            chunk = cur.fetchmany(10_000)
            if not chunk:
                break
            for row in chunk:
                seq = row[0]
                if seq == last_seq + 1:
                    if row[1] != last_hash:
                        bad = seq
                        break
                else:
                    if rows:
                        provide[last_seq] = last_hash
                    need[seq - 1] = row[1]
                try:
                    good = digest(seq, row[1], row[3:]) == row[2]
                except (UnicodeEncodeError, TypeError, ValueError, AuditError):
                    good = False
                if not good:
                    bad = seq
                    break
                last_seq = seq
                last_hash = row[2]
                rows += 1
        if rows:
            provide[last_seq] = last_hash
        return _UnitResult(rows, need, provide, bad)
    finally:
        conn.close()


def _merged(
    conn: Any, names: list[str], tables: dict[str, tuple[str, ...]]
) -> Iterator[Sequence[Sequence[Any]]]:
    """Chunks of ``(seq, prev_hash, hash, table index, *content)`` rows of every table, in seq
    order. SQLite merges the tables' rowid scans itself (one ``UNION ALL ... ORDER BY``, the
    columns padded with NULL); PostgreSQL wants one type per column of a union, so there the
    per-table streams are merged here."""
    if postgres.is_pg(conn):

        def tagged(i: int, t: str) -> Iterator[tuple[Any, ...]]:
            cols = ", ".join(quote_ident(c) for c in ("seq", "prev_hash", "hash", *tables[t]))
            for r in scan(conn, f"SELECT {cols} FROM {quote_ident(t)} ORDER BY seq"):
                yield (r[0], r[1], r[2], i, *r[3:])

        streams = [tagged(i, t) for i, t in enumerate(names)]
        merged = heapq.merge(*streams, key=lambda r: r[0])
        while chunk := list(itertools.islice(merged, 10_000)):
            yield chunk
        return
    width = max(len(c) for c in tables.values())
    parts = []
    for i, t in enumerate(names):
        cols = [quote_ident(c) for c in tables[t]] + ["NULL"] * (width - len(tables[t]))
        parts.append(f"SELECT seq, prev_hash, hash, {i}, {', '.join(cols)} FROM {quote_ident(t)}")
    cur = conn.execute(" UNION ALL ".join(parts) + " ORDER BY 1")
    while chunk := cur.fetchmany(10_000):
        yield chunk


def _walk(
    path: str,
    tables: dict[str, tuple[str, ...]],
    max_seq: int,
    anchor: ChainHead | None,
    base: ChainHead = ChainHead(0, GENESIS),
) -> _Problem | None:
    """Precise walk over all tables merged in seq order, from the row after ``base``: the
    first problem, if any."""
    conn = connect_readonly(path)
    try:
        names = list(tables)
        rows = _merged(conn, names, tables)
        digests = [RowHasher(t, tables[t]).digest for t in names]
        ends = [4 + len(tables[t]) for t in names]
        expected = base.seq + 1
        prev = base.hash
        prev_table: str | None = None
        for chunk in rows:
            for row in chunk:
                seq, t = row[0], names[row[3]]
                if seq != expected:
                    if seq < expected:
                        return (seq, t, f"two rows have seq {seq} (in {prev_table} and {t})")
                    gap = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                    return (expected, None, f"row seq {gap} missing (deleted?)")
                if row[1] != prev:
                    if seq == base.seq + 1 and base.seq:
                        return (
                            seq,
                            t,
                            f"prev_hash does not match the hash recorded for the archived seq "
                            f"{base.seq} (rows deleted or rewritten?)",
                        )
                    return (
                        seq,
                        t,
                        f"prev_hash does not match the hash of seq {seq - 1} (row deleted, "
                        "inserted or rewritten?)",
                    )
                try:
                    good = digests[row[3]](seq, row[1], row[4 : ends[row[3]]]) == row[2]
                except AuditError as exc:  # e.g. compressed bytes that do not decompress
                    return (seq, t, f"row content cannot be read ({exc}): edited?")
                except (UnicodeEncodeError, TypeError, ValueError):
                    good = False
                if not good:
                    return (seq, t, "row content does not match its hash (edited?)")
                if anchor is not None and seq == anchor.seq and row[2] != anchor.hash:
                    return (seq, t, "hash differs from the anchor (chain rewritten?)")
                prev = row[2]
                prev_table = t
                expected += 1
        if expected <= max_seq:
            return (expected, None, f"row seq {expected} missing (deleted?)")
        return None
    finally:
        conn.close()


def _anchor_problem(
    conn: Any,
    tables: dict[str, tuple[str, ...]],
    anchor: ChainHead,
    max_seq: int,
    base: ChainHead = ChainHead(0, GENESIS),
) -> _Problem | None:
    if base.seq and anchor.seq <= base.seq:  # archived: only the cut's own hash is here
        if anchor.seq == base.seq and anchor.hash != base.hash:
            return (anchor.seq, None, "hash differs from the anchor (chain rewritten?)")
        return None
    if anchor.seq > max_seq:
        return (
            max_seq + 1,
            None,
            f"anchor seq {anchor.seq} is beyond the last row {max_seq}: rows cut from the end?",
        )
    if anchor.seq <= 0:
        return None if anchor.hash == GENESIS else (1, None, "anchor of seq 0 is not GENESIS")
    for t in tables:
        r = conn.execute(f"SELECT hash FROM {quote_ident(t)} WHERE seq = ?", (anchor.seq,))
        row = r.fetchone()
        if row is not None:
            if row[0] != anchor.hash:
                return (anchor.seq, t, "hash differs from the anchor (chain rewritten?)")
            return None
    return (anchor.seq, None, f"row seq {anchor.seq} of the anchor is missing")


def _pool_context() -> BaseContext:
    """How verify workers start: ``fork`` when this process runs a single thread, else
    ``forkserver`` (or ``spawn``).

    A forked child could inherit a SQLite mutex held by *another* thread of this process (an
    open AuditStore's checkpointer) and deadlock, so with other threads running the workers
    start fresh. But a fresh worker re-runs the parent's main script first (multiprocessing's
    main-module fix-up): under the ``cfa`` console script that imports the whole CLI in every
    worker, which made two workers slower than one. With one thread no lock can be held by
    anyone else at the fork (this thread is between SQLite calls; the workers open their own
    connections and never touch the inherited one), and a forked worker imports nothing."""
    methods = get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return get_context("fork")
    return get_context("forkserver" if "forkserver" in methods else "spawn")


def verify(
    path: str | os.PathLike[str],
    *,
    anchor: ChainHead | tuple[int, str] | None = None,
    workers: int | None = None,
) -> VerifyResult:
    """Verify the hash chain of the audit file at ``path``; never modifies it.

    Checks every row of every chained table: seq runs 1, 2, 3, ... without gaps or duplicates,
    each ``prev_hash`` is the previous row's ``hash``, and each ``hash`` matches the row's
    content (see the module doc). After a retention cut (:mod:`cfa.audit.cut`) the chain runs
    from K+1 instead, and row K+1's ``prev_hash`` must be the hash recorded for row K (the
    result's ``base`` and ``archived_in`` say so); without such a record, missing leading rows
    are reported as deleted. Files of :data:`_PARALLEL_MIN_ROWS` rows or more are checked
    by ``workers`` processes (default ``min(2, CPUs)``; 1 = all in this process).

    ``anchor`` — a :class:`ChainHead` kept outside the file: the row at ``anchor.seq`` must exist
    and carry ``anchor.hash`` (detects a rewritten chain or a cut tail).

    Returns a :class:`VerifyResult` whose ``first_bad_seq`` is the earliest problem; raises
    :class:`AuditError` only when the file cannot be read.
    """
    t0 = time.perf_counter()
    if anchor is not None and not isinstance(anchor, ChainHead):
        anchor = ChainHead(int(anchor[0]), str(anchor[1]))
    spath = str(path)
    conn = connect_readonly(path)
    try:
        tables = chained_tables(conn)
        stats = {
            t: conn.execute(f"SELECT count(*), min(seq), max(seq) FROM {quote_ident(t)}").fetchone()
            for t in tables
        }
        if not tables:
            return VerifyResult(
                False, 0, None, "no audit tables in the file", seconds=time.perf_counter() - t0
            )
        total = sum(s[0] for s in stats.values())
        max_seq = max((s[2] for s in stats.values() if s[0]), default=0)
        min_seq = min((s[1] for s in stats.values() if s[0]), default=1)
        base, archived_in = ChainHead(0, GENESIS), None
        if min_seq > 1:
            from cfa.audit.cut import chain_basis  # the recorded retention cut, if any

            basis = chain_basis(conn, min_seq)
            if basis is not None:
                base, archived_in = basis
        if min_seq < 1:
            t = next(t for t, s in stats.items() if s[0] and s[1] == min_seq)
            return VerifyResult(
                False,
                0,
                min_seq,
                f"a row has seq {min_seq}; the chain starts at 1 (inserted row?)",
                t,
                seconds=time.perf_counter() - t0,
            )
        if workers is None:
            workers = min(2, os.cpu_count() or 1)
        parts = 2 * workers if workers > 1 and total >= _PARALLEL_MIN_ROWS else 1
        step = max(1, -(-(max_seq - base.seq) // parts))
        units = [
            (spath, t, tables[t], lo, min(lo + step - 1, max_seq))
            for t, s in stats.items()
            if s[0]
            for lo in range(base.seq + 1, max_seq + 1, step)
            if lo <= s[2] and lo + step - 1 >= s[1]
        ]
        if parts > 1:
            with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
                results = list(pool.map(_check_unit, *zip(*units, strict=True)))
        else:
            results = [_check_unit(*u) for u in units]
        provide: dict[int, str] = {base.seq: base.hash}
        # seqs base+1..max_seq, each once (see the comment above, with base for 0)
        clean = total == max_seq - base.seq and all(r.bad_seq is None for r in results)
        for r in results:
            for k, h in r.provide.items():
                if provide.setdefault(k, h) != h:
                    clean = False
        clean = clean and all(provide.get(k) == h for r in results for k, h in r.need.items())
        problem = None
        if clean and anchor is not None:
            problem = _anchor_problem(conn, tables, anchor, max_seq, base)
        if clean and problem is None:
            head = ChainHead(max_seq, provide[max_seq])
            dt = time.perf_counter() - t0
            n = max_seq - base.seq
            reason = f"OK: {n} rows"
            if base.seq:
                reason += f" (seq {base.seq + 1}..{max_seq}; rows 1..{base.seq} archived in "
                reason += f"{archived_in})"
            return VerifyResult(True, n, None, reason, None, head, dt, base, archived_in)
        if problem is None:
            problem = _walk(spath, tables, max_seq, anchor, base)
        if problem is None:  # cannot happen if both paths are right; never report OK then
            problem = (max_seq, None, "inconsistent chain (fast and precise checks disagree)")
    except DB_ERRORS as exc:
        raise AuditError(f"cannot read audit store {store_name(spath)!r}: {exc}") from None
    finally:
        conn.close()
    seq, table, reason = problem
    dt = time.perf_counter() - t0
    rows = max(0, seq - 1 - base.seq)
    return VerifyResult(False, rows, seq, reason, table, None, dt, base, archived_in)
