"""Reading the audit store: runs, rows of a table, counts, the last row, a merged timeline.

Readers open the file read-only (plain sqlite3 under a :class:`sqlite_utils.Database`) and never
block the writer (WAL); on PostgreSQL a read-only connection whose big reads stream from a
server-side cursor. Rows come back as dicts in ``seq`` order with typed values: ``json``
columns decoded, ``money`` columns as :class:`~decimal.Decimal`, ``bool`` columns as ``bool``
(``decode=False`` gives the values as the chain hashes them: JSON as its canonical text).
Compressed payloads (:mod:`cfa.audit.compact`) are decompressed transparently: a row of
``market_events`` has its ``payload`` whether it was stored as text (old rows) or compressed
(new rows), and no ``payload_z``.

Reads by run use the run's seq range (from its ``runs`` rows) before filtering on ``run_id``,
so the unindexed ``market_events`` table is scanned only over that run's span.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from cfa.audit import postgres
from cfa.audit.chain import GENESIS, ChainHead, VerifyResult, connect_readonly, store_name, verify
from cfa.audit.compact import decompress_text
from cfa.audit.encoding import ColType
from cfa.audit.errors import AuditError
from cfa.audit.schema import TABLES, chained_tables, quote_ident

__all__ = ["AuditReader", "RunInfo", "VerifyResult", "verify"]

_DECODERS: dict[ColType, Callable[[Any], Any]] = {
    ColType.JSON: json.loads,
    ColType.MONEY: Decimal,
    ColType.BOOL: bool,
}


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run as recorded in ``runs``.

    ``started_ms``/``ended_ms`` are UTC epoch ms (``ended_ms`` is None for a run that is still
    going or ended uncleanly); ``first_seq``/``last_seq`` bound the run's rows in the chain
    (``last_seq`` None without an end row); ``config`` and ``summary`` are the start and end
    payloads.
    """

    run_id: str
    started_ms: int | None
    ended_ms: int | None
    first_seq: int
    last_seq: int | None
    config: dict[str, Any]
    summary: dict[str, Any] | None


class AuditReader:
    """Read-only access to an audit file. Create with :meth:`open`; usable as a context manager."""

    def __init__(self, conn: Any, target: str) -> None:
        self._conn = conn
        self.target = target
        """The store as opened: a SQLite path or a PostgreSQL URL (may hold a password: print
        :attr:`name`)."""
        self.name = store_name(target)
        """The store for messages."""
        self.path: Path | None = None if postgres.is_url(target) else Path(target)
        """The SQLite file (None on PostgreSQL)."""
        self.db: Any
        """For ad-hoc read queries (``query(sql, params)`` → dicts, ``execute``; ``?``
        placeholders on both engines): a :class:`sqlite_utils.Database`, or on PostgreSQL the
        :class:`~cfa.audit.postgres.PgConnection`, which offers the same two methods."""
        if postgres.is_pg(conn):
            self.db = conn
        else:
            from cfa._imports import sqlite_utils  # lazy, and without pandas (~0.5 s)

            self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self._tables = chained_tables(conn)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> AuditReader:
        """Open the store at ``path`` (SQLite file or PostgreSQL URL) read-only;
        :class:`AuditError` naming it if it cannot be read."""
        return cls(connect_readonly(path), os.fspath(path))

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- runs ----------------------------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        """Every run in the file, oldest first."""
        starts: dict[str, dict[str, Any]] = {}
        ends: dict[str, dict[str, Any]] = {}
        for r in self.db.query(
            "SELECT seq, run_id, ts_ms, kind, payload FROM runs "
            "WHERE kind IN ('start', 'end') ORDER BY seq"
        ):
            (starts if r["kind"] == "start" else ends).setdefault(r["run_id"], r)
        out = []
        for rid, s in starts.items():
            e = ends.get(rid)
            out.append(
                RunInfo(
                    run_id=rid,
                    started_ms=s["ts_ms"],
                    ended_ms=e["ts_ms"] if e else None,
                    first_seq=s["seq"],
                    last_seq=e["seq"] if e else None,
                    config=json.loads(s["payload"]) if s["payload"] else {},
                    summary=json.loads(e["payload"]) if e and e["payload"] else None,
                )
            )
        return out

    def run(self, run_id: str) -> RunInfo:
        """The run ``run_id``; :class:`AuditError` if the file has no start row for it."""
        for r in self.runs():
            if r.run_id == run_id:
                return r
        raise AuditError(f"no run {run_id!r} in {self.name!r}")

    # --- rows ----------------------------------------------------------------------------------

    def _check(self, table: str) -> None:
        if table not in self._tables:
            raise AuditError(
                f"no audit table {table!r} in {self.name!r}; "
                f"tables: {', '.join(sorted(self._tables))}"
            )

    def _where(
        self,
        run_id: str | None,
        market: str | None,
        since_ms: int | None,
        until_ms: int | None,
        after_seq: int | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if run_id is not None:
            bounds = self.db.execute(
                "SELECT min(CASE WHEN kind = 'start' THEN seq END), "
                "max(CASE WHEN kind = 'end' THEN seq END) FROM runs WHERE run_id = ?",
                [run_id],
            ).fetchone()
            if bounds[0] is not None:
                clauses.append("seq >= ?")
                params.append(bounds[0])
            if bounds[1] is not None:
                clauses.append("seq <= ?")
                params.append(bounds[1])
            clauses.append("run_id = ?")
            params.append(run_id)
        if market is not None:
            clauses.append("market = ?")
            params.append(market)
        if since_ms is not None:
            clauses.append("ts_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            clauses.append("ts_ms < ?")
            params.append(until_ms)
        if after_seq is not None:
            clauses.append("seq > ?")
            params.append(after_seq)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _decoder(
        self, table: str, decode: bool = True
    ) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
        """What turns a stored row into the row readers see: a compressed payload
        (:mod:`cfa.audit.compact`) becomes its text in the column it packs, and its own column
        is dropped (always, so old and new rows look alike); with ``decode`` also the typed
        values. None when there is nothing to do."""
        spec = TABLES.get(table)
        if spec is None:
            return None
        have = self._tables.get(table, ())
        packed = [(c.packs, c.name) for c in spec.columns if c.packs is not None and c.name in have]
        conv = [(c.name, _DECODERS[c.type]) for c in spec.columns if c.type in _DECODERS]
        if not decode:
            conv = []
        if not packed and not conv:
            return None

        def decode_row(row: dict[str, Any]) -> dict[str, Any]:
            for text, z in packed:
                blob = row.pop(z, None)
                if blob is not None:
                    row[text] = decompress_text(blob, f"{table} seq {row.get('seq')}")
            for name, fn in conv:
                v = row.get(name)
                if v is not None:
                    row[name] = fn(v)
            return row

        return decode_row

    def rows(
        self,
        table: str,
        *,
        run_id: str | None = None,
        market: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
        decode: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` in seq order, filtered by run, market, ``since_ms <= ts_ms <
        until_ms`` and ``seq > after_seq``; at most ``limit`` rows. Streams (a generator)."""
        self._check(table)
        where, params = self._where(run_id, market, since_ms, until_ms, after_seq)
        sql = f"SELECT * FROM {quote_ident(table)}{where} ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        dec = self._decoder(table, decode)
        for row in self.db.query(sql, params):
            yield dec(row) if dec else row

    def timeline(
        self,
        tables: Iterable[str] | None = None,
        *,
        run_id: str | None = None,
        market: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        after_seq: int | None = None,
        decode: bool = True,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(table, row)`` pairs of several tables (default: all) merged in seq order — what
        the system saw and did, in the order it was recorded (for replays, reports and live
        tails: ``after_seq`` starts after that seq)."""
        names = list(tables) if tables is not None else sorted(self._tables)

        def tagged(t: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
            for row in self.rows(
                t,
                run_id=run_id,
                market=market,
                since_ms=since_ms,
                until_ms=until_ms,
                after_seq=after_seq,
                decode=decode,
            ):
                yield row["seq"], t, row

        streams = [tagged(t) for t in names]
        for _seq, t, row in heapq.merge(*streams, key=lambda x: x[0]):
            yield t, row

    def counts(self, run_id: str | None = None) -> dict[str, int]:
        """Number of rows per table (of one run if ``run_id`` is given)."""
        out: dict[str, int] = {}
        for t in sorted(self._tables):
            where, params = self._where(run_id, None, None, None, None)
            out[t] = self.db.execute(
                f"SELECT count(*) FROM {quote_ident(t)}{where}", params
            ).fetchone()[0]
        return out

    def last(
        self,
        table: str,
        *,
        run_id: str | None = None,
        market: str | None = None,
        decode: bool = True,
    ) -> dict[str, Any] | None:
        """The row of ``table`` with the highest seq (of a run / market), or None."""
        self._check(table)
        where, params = self._where(run_id, market, None, None, None)
        rows = list(
            self.db.query(
                f"SELECT * FROM {quote_ident(table)}{where} ORDER BY seq DESC LIMIT 1", params
            )
        )
        if not rows:
            return None
        dec = self._decoder(table, decode)
        return dec(rows[0]) if dec else rows[0]

    def head(self) -> ChainHead:
        """The last row of the chain (seq 0 and :data:`GENESIS` for an empty file)."""
        best = ChainHead(0, GENESIS)
        for t in self._tables:
            r = self.db.execute(
                f"SELECT seq, hash FROM {quote_ident(t)} ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            if r is not None and r[0] > best.seq:
                best = ChainHead(r[0], r[1])
        return best
