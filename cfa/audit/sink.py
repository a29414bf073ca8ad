"""Where batches reach the file: the chained write, WAL checkpoints, the writer process.

:class:`ChainWriter` writes one batch of already-validated rows in one transaction
(``BEGIN IMMEDIATE``): it reads the chain head (cached, re-read only when another connection
committed, per ``PRAGMA data_version``), gives the rows the next seq numbers in order, computes
their hashes, compresses the payloads of ``zjson`` columns (:mod:`cfa.audit.compact`: the hash
is over the text, computed first) and inserts them with one ``executemany`` per table.
:class:`AuditStore` uses it in-process (``writer="inline"``) or through
:class:`WriterProcess` (``writer="process"``), a child process that owns its own connection
so hashing, compression and SQLite run on another core.

:class:`Checkpointer` copies the WAL into the database file on a thread of its own: SQLite runs
a checkpoint as one C call with the GIL released, so this overlaps with Python work instead of
stalling a flush.

On PostgreSQL (:mod:`cfa.audit.postgres`) the same writer takes the schema's advisory lock
instead of ``BEGIN IMMEDIATE``, re-reads the head in each transaction and inserts with ``COPY``;
there is no WAL to checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from cfa.audit import postgres
from cfa.audit.chain import GENESIS, ChainHead, RowHasher
from cfa.audit.compact import pack, packed_pairs
from cfa.audit.errors import DB_ERRORS, AuditError
from cfa.audit.schema import chained_tables, quote_ident

BUSY_TIMEOUT_MS: Final = 10_000
WAL_AUTOCHECKPOINT_PAGES: Final = 16_384
"""Fallback autocheckpoint of a writer connection while a :class:`Checkpointer` runs."""
WAL_RESTART_BYTES: Final = 64 * 1024 * 1024
"""A WAL larger than this gets a RESTART checkpoint (waits for the writer) and is truncated."""
MAX_INFLIGHT: Final = 4
"""Batches sent to the writer process and not yet committed, at most (back-pressure)."""


def connect_writer(target: str, checkpoint_thread: bool) -> Any:
    """A writer connection to the store at ``target`` (a SQLite path, configured by
    :func:`configure_writer`, or a PostgreSQL URL). Raises the engine's error."""
    if postgres.is_url(target):
        return postgres.PgConnection(target)
    conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    configure_writer(conn, checkpoint_thread)
    return conn


def begin_write(conn: Any) -> None:
    """Start the write transaction that extends the chain, exclusive among writers: SQLite's
    ``BEGIN IMMEDIATE`` (the file's write lock), or PostgreSQL's ``BEGIN`` plus the schema's
    advisory lock (:data:`cfa.audit.postgres.LOCK_SQL`)."""
    if postgres.is_pg(conn):
        conn.begin()  # reconnects a connection the server dropped
        conn.execute(postgres.LOCK_SQL)
    else:
        conn.execute("BEGIN IMMEDIATE")


def configure_writer(conn: sqlite3.Connection, checkpoint_thread: bool) -> None:
    """Per-connection settings of a SQLite writer: busy timeout, ``synchronous=NORMAL``, WAL
    limits."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = NORMAL")
    if checkpoint_thread:
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_RESTART_BYTES}")


class TableSink:
    """Insert statement and row hasher of one table, for a fixed list of content columns."""

    __slots__ = ("all_columns", "digest", "insert_sql", "name", "ncols", "pairs")

    def __init__(self, name: str, columns: Sequence[str]) -> None:
        self.name = name
        self.ncols = len(columns)
        self.pairs = packed_pairs(name, columns)
        """Text columns stored compressed at commit (:mod:`cfa.audit.compact`)."""
        self.all_columns = ("seq", *columns, "prev_hash", "hash")
        self.digest = RowHasher(name, columns).digest
        cols = ", ".join(quote_ident(c) for c in ("seq", *columns, "prev_hash", "hash"))
        marks = ", ".join("?" * (len(columns) + 3))
        self.insert_sql = f"INSERT INTO {quote_ident(name)} ({cols}) VALUES ({marks})"


def read_head(conn: Any) -> ChainHead:
    """The chain head of the store behind ``conn``: the highest seq over every chained table
    (known to this code or not), in one query."""
    names = list(chained_tables(conn))
    if not names:
        return ChainHead(0, GENESIS)
    sql = " UNION ALL ".join(
        f"SELECT * FROM (SELECT seq, hash FROM {quote_ident(n)} ORDER BY seq DESC LIMIT 1) AS h{i}"
        for i, n in enumerate(names)
    )
    best = ChainHead(0, GENESIS)
    for seq, h in conn.execute(sql).fetchall():
        if seq > best.seq:
            best = ChainHead(int(seq), str(h))
    return best


class ChainWriter:
    """Writes batches to one connection, continuing the chain found in the file.

    ``columns`` maps each writable table to the content columns (file order) of the value
    tuples it will be given. Not thread-safe: callers serialise :meth:`write`.
    """

    def __init__(self, conn: Any, path: str, columns: dict[str, tuple[str, ...]]) -> None:
        self.conn = conn
        self._pg = postgres.is_pg(conn)
        self.path = path
        self.sinks = {name: TableSink(name, cols) for name, cols in columns.items()}
        self.head = ChainHead(0, GENESIS)
        self._head_known = False
        self._data_version = -1

    def refresh(self) -> ChainHead:
        """Re-read the chain head from the file (over every chained table, known or not)."""
        self.head = read_head(self.conn)
        self._head_known = True
        return self.head

    def write(self, tables: Sequence[str], batch: Sequence[tuple[Any, ...]]) -> ChainHead:
        """Append ``batch[i]`` (content values in file order) to ``tables[i]``, in order, in
        one transaction; returns the new head. On error the transaction is rolled back and the
        exception (one of :data:`~cfa.audit.errors.DB_ERRORS`) propagates; nothing of the batch is
        written. On PostgreSQL the head is re-read in every transaction (one round trip; there is
        no ``data_version``) and rows go in with ``COPY``."""
        conn = self.conn
        begin_write(conn)
        try:
            if self._pg:
                self.refresh()
            else:
                dv = conn.execute("PRAGMA data_version").fetchone()[0]
                if not self._head_known or dv != self._data_version:
                    self.refresh()
                    self._data_version = dv
            seq, prev = self.head.seq, self.head.hash
            sinks = self.sinks
            groups: dict[str, list[tuple[Any, ...]]] = {}
            for name, values in zip(tables, batch, strict=True):
                seq += 1
                sink = sinks[name]
                h = sink.digest(seq, prev, values)
                if sink.pairs:  # hashed as text (above), stored compressed
                    values = pack(values, sink.pairs)
                rows = groups.get(name)
                if rows is None:
                    rows = groups[name] = []
                rows.append((seq, *values, prev, h))
                prev = h
            for name, rows in groups.items():
                if self._pg:
                    conn.copy_rows(name, sinks[name].all_columns, rows)
                else:
                    conn.executemany(sinks[name].insert_sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            self._head_known = False
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.head = ChainHead(seq, prev)
        return self.head


class Checkpointer:
    """A thread running ``PRAGMA wal_checkpoint`` on its own connection every ``interval`` s."""

    def __init__(self, path: str | os.PathLike[str], interval: float) -> None:
        self._path = Path(path)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cfa-audit-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wal = Path(f"{self._path}-wal")
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error:
            return  # the writer's own autocheckpoint remains as a fallback
        try:
            while not self._stop.wait(self._interval):
                try:
                    size = wal.stat().st_size if wal.exists() else 0
                    if size:
                        mode = "RESTART" if size > WAL_RESTART_BYTES else "PASSIVE"
                        conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
                except (sqlite3.Error, OSError):
                    pass  # busy or racing a close: try again next interval
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop and join the thread."""
        self._stop.set()
        self._thread.join()


# --- the writer process ----------------------------------------------------------------------
#
# Protocol over one duplex pipe. Parent → child: pickled ("batch", tables, values) or
# ("close",). Child → parent: ("ok", seq, hash, rows) after each commit, ("err", message) when a
# commit failed (the child keeps the batch and retries it, in order, before anything newer), and
# ("closed", seq, hash, error) as its last word. The child ignores SIGINT/SIGTERM (the parent
# shuts it down through the pipe) and exits on EOF, i.e. when the parent is gone: everything it
# received completely is committed by then.


def _writer_main(
    path: str,
    columns: dict[str, tuple[str, ...]],
    pipe: Connection,
    checkpoint_interval: float | None,
    retry_interval: float,
) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    conn = connect_writer(path, bool(checkpoint_interval))
    writer = ChainWriter(conn, path, columns)
    ckpt = (
        Checkpointer(path, checkpoint_interval)
        if checkpoint_interval and not postgres.is_url(path)
        else None
    )
    pending: deque[tuple[list[str], list[tuple[Any, ...]]]] = deque()
    error: str | None = None

    def drain() -> None:
        nonlocal error
        while pending:
            tables, values = pending[0]
            try:
                head = writer.write(tables, values)
            except DB_ERRORS as exc:
                error = f"{type(exc).__name__}: {exc}"
                pipe.send(("err", error))
                return
            pending.popleft()
            error = None
            pipe.send(("ok", head.seq, head.hash, len(values)))

    try:
        while True:
            timeout = retry_interval if pending else None
            try:
                if not pipe.poll(timeout):
                    drain()  # retry after a failure
                    continue
                msg = pickle.loads(pipe.recv_bytes())
            except (EOFError, OSError):
                break  # the parent is gone
            if msg[0] == "close":
                break
            pending.append((msg[1], msg[2]))
            drain()
        drain()
    finally:
        if ckpt is not None:
            ckpt.stop()
        conn.close()
        with contextlib.suppress(OSError):
            pipe.send(("closed", writer.head.seq, writer.head.hash, error))


class WriterProcess:
    """Parent side of the writer process: sends batches, collects acknowledgements."""

    def __init__(
        self,
        path: str,
        columns: dict[str, tuple[str, ...]],
        checkpoint_interval: float | None,
        retry_interval: float,
    ) -> None:
        # forkserver/spawn, not fork: a forked child could inherit a lock held by another
        # thread of this process (e.g. SQLite's, from a checkpointer) and deadlock.
        methods = get_all_start_methods()
        ctx = get_context("forkserver" if "forkserver" in methods else "spawn")
        self._pipe, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(  # type: ignore[attr-defined]
            target=_writer_main,
            args=(path, columns, child, checkpoint_interval, retry_interval),
            name="cfa-audit-writer",
        )
        self._proc.start()
        child.close()
        self.path = path
        self.inflight = 0
        self.head: ChainHead | None = None
        self.written = 0
        self.error: str | None = None
        self.dead = False

    @property
    def pid(self) -> int | None:
        """Process id of the writer process."""
        pid: int | None = self._proc.pid
        return pid

    def _handle(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "ok":
            self.head = ChainHead(msg[1], msg[2])
            self.written += msg[3]
            self.inflight -= 1
            self.error = None
        elif msg[0] == "err":
            self.error = msg[1]
        elif msg[0] == "closed":
            self.head = ChainHead(msg[1], msg[2])
            self.error = msg[3]
            self.dead = True

    def _died(self, exc: BaseException) -> AuditError:
        self.dead = True
        self._proc.join(1)
        return AuditError(
            f"audit writer process for {self.path!r} died (exit code {self._proc.exitcode}); "
            f"up to {self.inflight} batches sent to it may be lost: {exc}"
        )

    def poll(self, timeout: float | None = 0.0) -> None:
        """Handle acknowledgements; wait up to ``timeout`` seconds (None: forever) for one."""
        try:
            while self._pipe.poll(timeout):
                self._handle(self._pipe.recv())
                timeout = 0.0
        except (EOFError, OSError) as exc:
            raise self._died(exc) from exc

    def send(self, tables: list[str], batch: list[tuple[Any, ...]], wait: float) -> None:
        """Send one batch; waits (up to ``wait`` s) while :data:`MAX_INFLIGHT` batches are
        unacknowledged — back-pressure on a writer that is merely busy.

        Raises :class:`AuditError` (nothing sent) when the writer is that far behind and
        failing, still busy after ``wait`` seconds, or dead.
        """
        if self.dead:
            raise AuditError(f"audit writer process for {self.path!r} is gone")
        self.poll()
        deadline = time.monotonic() + wait
        while self.inflight >= MAX_INFLIGHT:
            left = deadline - time.monotonic()
            if left <= 0 or self.error is not None:
                raise AuditError(
                    f"cannot write audit store {self.path!r}: writer process is "
                    f"{self.inflight} batches behind: {self.error or 'busy'}"
                )
            self.poll(left)
        data = pickle.dumps(("batch", tables, batch), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._pipe.send_bytes(data)
        except OSError as exc:
            raise self._died(exc) from exc
        self.inflight += 1

    def sync(self, timeout: float) -> None:
        """Wait until every batch sent is committed; AuditError on timeout or death."""
        deadline = time.monotonic() + timeout
        while self.inflight > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AuditError(
                    f"cannot write audit store {self.path!r}: {self.inflight} batches "
                    f"unconfirmed after {timeout:.0f} s: {self.error or 'busy'}"
                )
            self.poll(min(left, 1.0))

    def close(self, timeout: float) -> None:
        """Ask the child to commit what it has and exit; wait for it."""
        if not self.dead:
            try:
                self._pipe.send_bytes(pickle.dumps(("close",)))
                deadline = time.monotonic() + timeout
                while not self.dead and time.monotonic() < deadline:
                    self.poll(0.5)
            except (AuditError, OSError):
                pass
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(1)
        self._pipe.close()
        self.dead = True
