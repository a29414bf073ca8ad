"""The audit store writer: append-only, batched, hash-chained SQLite.

Usage::

    with AuditStore.open("cfa.db", clock=sim_clock.now) as store:
        run_id = store.start_run(config)
        store.append("market_events", {"market": "KXBTC-25", "ts_ms": ms, "kind": "delta",
                                       "exch_seq": 42, "payload": {...}})
        store.maybe_flush()            # from the event loop, as often as convenient
        store.end_run(run_id, summary)

**Write path.** :meth:`append` validates and normalises the row (types, choices, canonical
payload JSON, secrets redaction — see :mod:`cfa.audit.encoding`) and puts it in an in-memory
buffer; it does no I/O. ``seq`` and the hashes are assigned when the batch is *committed*,
inside the write transaction (``BEGIN IMMEDIATE``), from the chain head read from the file
(:class:`cfa.audit.sink.ChainWriter`): the chain follows the order of ``append`` calls, and
several writer processes (a run and the ``cfa`` governance command, say) can share one file
without breaking the sequence. One flush is one transaction with one ``executemany`` per table.

**Who writes.** ``writer="inline"`` (default): :meth:`flush` hashes and commits in the calling
thread. ``writer="process"``: :meth:`flush` pickles the batch to a writer process that hashes
and commits it on another core, so about half the per-row cost leaves the event loop;
:meth:`sync` waits for the commit. WAL checkpoints (copying the log into the database file) run
on a thread of their own every ``checkpoint_interval`` seconds either way (SQLite releases the
GIL for them), so flushes never pay for them.

**When rows are written.** :meth:`flush` writes everything buffered. :meth:`append` flushes by
itself when the buffer reaches ``batch_rows`` (default 2,000) and :meth:`maybe_flush` when the
last flush is older than ``flush_interval`` seconds of wall time (default 0.25 s).
:meth:`start_run`, :meth:`end_run` and :meth:`close` sync. With ``background=True`` a daemon
thread flushes every ``flush_interval`` instead and ``append`` only wakes it (for an event loop
that mostly waits on I/O).

**Crash bound.** Each commit is one WAL transaction (``synchronous=NORMAL``). An unclean exit of
the process (SIGKILL, crash) loses only the rows appended since the last flush — at most
``batch_rows`` rows, or ``flush_interval`` seconds of rows when ``maybe_flush`` is called
regularly — and never corrupts the file: a half-written transaction is rolled back on the next
open, and every committed row stays. With the process writer, batches already handed over are
still committed: the orphaned writer finishes them and exits when it sees the pipe close. (A
power loss may also lose the transactions committed since the last WAL checkpoint, still without
corruption.)

**Failures.** ``append`` raises :class:`AuditError` for a bad row (unknown table or column,
wrong type, missing required value) — a programming error. An I/O failure during an automatic
flush keeps the rows buffered, is recorded in :attr:`stats` and retried; :meth:`flush`,
:meth:`maybe_flush`, :meth:`sync` and :meth:`close` raise it. If writes keep failing and
``max_pending`` rows pile up, ``append`` raises :class:`AuditError`: a caller that must audit
everything should then stop trading. If the writer process dies, the next flush or sync raises
:class:`AuditError` (the batches it had not committed, at most
:data:`~cfa.audit.sink.MAX_INFLIGHT`, are lost) and the store goes on writing inline.

**Anchors.** With ``anchors=AnchorLog(...)`` (:mod:`cfa.audit.anchors`) the store also writes
Ed25519-signed anchors of the chain head to a file outside the database: one when it opens
(after checking that the file's last anchor still matches the database — it refuses a database
that does not, or whose recorded anchor file is gone), a checkpoint after a flush that advanced
the chain at most every ``anchors.interval`` seconds, one at :meth:`end_run` and one at
:meth:`close`. A failed anchor write never loses rows: it is kept in :attr:`stats`
(``anchor_error``) and raised by :meth:`close`.

**Heartbeat.** :meth:`heartbeat` records that a session is alive (``cfa_heartbeat``, see
:mod:`cfa.audit.heartbeat`); the session calls it about once a second.

There is no update or delete API; corrections are new rows.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from cfa.audit import heartbeat as _hb
from cfa.audit import postgres
from cfa.audit.anchors import AnchorLog, check_open, first_hash
from cfa.audit.chain import ChainHead, store_name
from cfa.audit.encoding import (
    ColType,
    canonical_json,
    norm_bool,
    norm_int,
    norm_money,
    norm_real,
    norm_text,
)
from cfa.audit.errors import DB_ERRORS, AuditError
from cfa.audit.schema import TABLES, Column, chained_tables, check_table, ensure_schema
from cfa.audit.sink import (
    ChainWriter,
    Checkpointer,
    WriterProcess,
    begin_write,
    connect_writer,
)

if TYPE_CHECKING:
    from cfa.audit.queries import AuditReader

DEFAULT_BATCH_ROWS: Final = 2_000
DEFAULT_FLUSH_INTERVAL: Final = 0.25
DEFAULT_MAX_PENDING: Final = 1_000_000
DEFAULT_CHECKPOINT_INTERVAL: Final = 0.5
PROCESS_WAIT_SECONDS: Final = 30.0
"""How long a flush waits for a busy writer process, and close for it to finish."""

_MISSING: Final = object()


def to_ms(ts: float) -> int:
    """Epoch seconds (float, UTC) to integer epoch milliseconds, rounded to nearest."""
    return round(ts * 1000)


def new_run_id() -> str:
    """A fresh run id: UTC wall time and 24 random bits, e.g. ``20250101T120000Z-3fa9c1``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class AuditStats:
    """Counters of one :class:`AuditStore` since it was opened."""

    appended: int
    written: int
    pending: int
    flushes: int
    redactions: int
    last_flush_seconds: float
    last_error: str | None
    anchors_written: int = 0
    """Signed anchors written (see :mod:`cfa.audit.anchors`)."""
    anchor_seconds: float = 0.0
    """Wall time spent writing them (signing, write, fsync), total seconds."""
    anchor_error: str | None = None
    """The last anchor write that failed (None once one succeeds again)."""


class _TableWriter:
    """Validation and normalisation of one table's rows, in the file's column order.

    ``encode(row, store) -> tuple`` is generated per table (unrolled over the columns) because it
    runs for every appended row; it applies exactly the rules of :mod:`cfa.audit.encoding`.
    """

    __slots__ = ("allowed", "columns", "encode", "name")

    def __init__(self, name: str, physical: tuple[str, ...]) -> None:
        spec = TABLES[name]
        by_name = {c.name: c for c in spec.columns}
        missing = [c for c in by_name if c not in physical]
        if missing:  # ensure_schema adds them; a concurrent downgrade would land here
            raise AuditError(f"table {name} lacks columns {missing}")
        self.name = name
        self.columns = physical
        # compressed columns are filled at commit from their text column, never by callers
        self.allowed = frozenset(n for n, c in by_name.items() if c.type is not ColType.ZJSON)
        self.encode: Callable[[Mapping[str, Any], AuditStore], tuple[Any, ...]] = _compile_encoder(
            name, [by_name.get(n) for n in physical]
        )


def _compile_encoder(
    table: str, cols: list[Column | None]
) -> Callable[[Mapping[str, Any], AuditStore], tuple[Any, ...]]:
    """Generate ``encode(row, store) -> values tuple`` for ``cols`` (None: a column only newer code
    knows, always NULL here)."""
    ns: dict[str, Any] = {
        "NUL": "\x00",
        "AuditError": AuditError,
        "to_ms": to_ms,
        "json": canonical_json,
        **{f"norm_{t.value}": f for t, f in _NORMALISERS.items()},
    }
    lines = ["def encode(row, store):", "    get = row.get"]
    for i, col in enumerate(cols):
        v = f"v{i}"
        if col is None or col.type is ColType.ZJSON:  # unknown here / packed at commit
            lines.append(f"    {v} = None")
            continue
        what = f"{table}.{col.name}"
        lines.append(f"    {v} = get({col.name!r})")
        lines.append(f"    if {v} is None:")
        if col.name == "run_id":
            lines.append(f"        {v} = store._run_id")
            lines.append(f"        if {v} is None:")
            lines.append(f"            raise AuditError('{table}: no run_id and no run started')")
        elif col.name == "market":
            lines.append(f"        {v} = ''")
        elif col.name == "ts_ms":
            lines.append(f"        {v} = to_ms(store._clock())")
        elif col.required:
            lines.append(f"        raise AuditError('{what} is required')")
        else:
            lines.append("        pass")
        if col.type is ColType.TEXT:
            lines.append(f"    elif type({v}) is not str or not {v}.isascii() or NUL in {v}:")
            lines.append(f"        {v} = norm_text({v}, {what!r})")
            if col.choices is not None:
                ns[f"choices{i}"] = col.choices
                allowed = ", ".join(sorted(col.choices))
                lines.append(f"    if {v} is not None and {v} not in choices{i}:")
                lines.append(
                    f"        raise AuditError(f'{what}: {{{v}!r}} is not one of {allowed}')"
                )
        elif col.type is ColType.INT:
            lines.append(f"    elif type({v}) is not int:")
            lines.append(f"        {v} = norm_int({v}, {what!r})")
        elif col.type is ColType.JSON:
            lines.append("    else:")
            lines.append(f"        {v}, n = json({v})")
            lines.append("        if n:")
            lines.append("            store._redactions += n")
        else:
            lines.append("    else:")
            lines.append(f"        {v} = norm_{col.type.value}({v}, {what!r})")
    lines.append(f"    return ({', '.join(f'v{i}' for i in range(len(cols)))},)")
    exec("\n".join(lines), ns)  # generated from the static schema only
    fn: Callable[[Mapping[str, Any], AuditStore], tuple[Any, ...]] = ns["encode"]
    return fn


_NORMALISERS: Final[dict[ColType, Callable[[Any, str], Any]]] = {
    ColType.INT: norm_int,
    ColType.REAL: norm_real,
    ColType.TEXT: norm_text,
    ColType.MONEY: norm_money,
    ColType.BOOL: norm_bool,
}


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise AuditError(f"cannot open audit store {str(path)!r}: it is a directory")
    parent = path.parent
    if not parent.exists():
        raise AuditError(
            f"cannot open audit store {str(path)!r}: directory {str(parent)!r} does not exist"
        )
    if not parent.is_dir():
        raise AuditError(
            f"cannot open audit store {str(path)!r}: {str(parent)!r} is not a directory"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AuditError(
            f"cannot open audit store {str(path)!r}: directory {str(parent)!r} is not writable"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise AuditError(f"cannot open audit store {str(path)!r}: the file is not writable")


def _connect(target: str, checkpoint_thread: bool) -> Any:
    """The store's own writer connection: PostgreSQL as is; SQLite in WAL mode."""
    conn = connect_writer(target, checkpoint_thread)
    if postgres.is_pg(conn):
        return conn
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AuditError(f"cannot open audit store {target!r}: WAL mode refused ({mode})")
    except BaseException:
        conn.close()
        raise
    return conn


class AuditStore:
    """Append-only, hash-chained audit store: one SQLite file (the embedded default) or a
    PostgreSQL schema (``postgresql://`` URL, :mod:`cfa.audit.postgres`). Create with
    :meth:`open`.

    Thread-safe: ``append`` may be called from any thread; rows are chained in call order.
    """

    def __init__(
        self,
        conn: Any,
        path: str,
        *,
        batch_rows: int,
        flush_interval: float,
        clock: Callable[[], float],
        max_pending: int,
    ) -> None:
        self._conn = conn
        self.target = path
        """Where the store is: the SQLite path or the PostgreSQL URL (as given, password
        included: never print it; :attr:`name` is for messages)."""
        self.name = store_name(path)
        """The store for messages: the path, or the URL without its password."""
        self.path: Path | None = None if postgres.is_url(path) else Path(path)
        """The SQLite file (None on PostgreSQL)."""
        self._batch_rows = batch_rows
        self._flush_interval = flush_interval
        self._clock = clock
        self._max_pending = max_pending
        self._lock = threading.Lock()  # guards the buffer
        self._write_lock = threading.RLock()  # serialises flushes and the connection
        # Two parallel lists (table name, values): both hold only atomic values, so the garbage
        # collector stops tracking the tuples; that keeps big buffers cheap.
        self._buf_t: list[str] = []
        self._buf: list[tuple[Any, ...]] = []
        physical = {n: c for n, c in chained_tables(conn).items() if n in TABLES}
        missing = set(TABLES) - set(physical)
        if missing:
            raise AuditError(f"audit store {str(path)!r} lacks tables {sorted(missing)}")
        self._writers = {n: _TableWriter(n, cols) for n, cols in physical.items()}
        self._sink = ChainWriter(conn, str(path), physical)
        self._sink.refresh()
        self._proc: WriterProcess | None = None
        self._proc_written = 0
        self._ckpt: Checkpointer | None = None
        self._run_id: str | None = None
        self._last_flush = time.monotonic()
        self._retry_after = 0.0
        self._closed = False
        self._appended = 0
        self._written = 0
        self._flushes = 0
        self._redactions = 0
        self._last_flush_seconds = 0.0
        self._last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._anchors: AnchorLog | None = None
        self._anchored_seq = -1
        self._last_anchor = -float("inf")
        self._first: str | None = None
        self._last_run_id: str | None = None
        self._anchor_error: str | None = None

    # --- opening and closing -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        clock: Callable[[], float] = time.time,
        writer: Literal["inline", "process"] = "inline",
        background: bool = False,
        max_pending: int = DEFAULT_MAX_PENDING,
        checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
        anchors: AnchorLog | None = None,
    ) -> AuditStore:
        """Open (creating if needed) the audit file at ``path``: schema, WAL, chain head.

        ``clock`` returns epoch seconds and stamps rows that carry no ``ts_ms`` (pass the
        simulated clock in a simulation). ``batch_rows``/``flush_interval`` set the automatic
        flush; ``writer`` chooses who hashes and writes batches: this process (``"inline"``) or
        a child process (``"process"``: about half the cost per row stays here); ``background``
        starts a flusher thread; ``checkpoint_interval`` (seconds, None to leave it to SQLite)
        runs WAL checkpoints on a thread of their own. See the module doc for the trade-offs.
        ``anchors`` writes signed anchors of the chain head (module doc, "Anchors").

        Raises :class:`AuditError` naming the path when it cannot be opened for writing, and
        :class:`AuditIntegrityError` when the file is not a cfa audit store, or (with
        ``anchors``) no longer matches its last signed anchor.
        """
        if batch_rows < 1 or not flush_interval > 0 or max_pending < batch_rows:
            raise AuditError("need batch_rows >= 1, flush_interval > 0, max_pending >= batch_rows")
        if writer not in ("inline", "process"):
            raise AuditError(f"writer must be 'inline' or 'process', not {writer!r}")
        target = str(path)
        pg = postgres.is_url(target)
        if not pg:
            _check_path(Path(target))
        name = store_name(target)
        try:
            conn = _connect(target, bool(checkpoint_interval))
        except DB_ERRORS as exc:
            raise AuditError(f"cannot open audit store {name!r}: {exc}") from None
        try:
            begin_write(conn)
            try:
                ensure_schema(conn, name)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            store = cls(
                conn,
                target,
                batch_rows=batch_rows,
                flush_interval=flush_interval,
                clock=clock,
                max_pending=max_pending,
            )
            if anchors is not None:
                check_open(conn, name, anchors, store._sink.head)
                store._anchors = anchors
                store._first = first_hash(conn)
                store._anchor("open")
        except DB_ERRORS as exc:
            conn.close()
            raise AuditError(f"cannot open audit store {name!r}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        if writer == "process":
            store._proc = WriterProcess(
                target,
                {n: w.columns for n, w in store._writers.items()},
                checkpoint_interval,
                retry_interval=flush_interval,
            )
            atexit.register(store.close)
        elif checkpoint_interval and not pg:
            store._ckpt = Checkpointer(target, checkpoint_interval)
        if background:
            store._start_flusher()
        return store

    def close(self) -> None:
        """Stop the threads, write everything, stop the writer process, close the file.

        Idempotent. Raises :class:`AuditError` if the final write fails (the file is closed
        anyway and the unwritten rows are lost; the rows written before stay intact).
        """
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        anchor_error: str | None = None
        try:
            self.sync()
        finally:
            self._closed = True
            self._writers = {}
            with self._write_lock:
                if self._proc is not None:
                    atexit.unregister(self.close)
                    self._proc.close(timeout=PROCESS_WAIT_SECONDS)
                    self._drop_proc()
                if self._ckpt is not None:
                    self._ckpt.stop()
                if self._anchors is not None:
                    try:  # the committed head, even when the last write failed
                        self._anchor("close")
                    except AuditError as exc:
                        anchor_error = str(exc)
                    except DB_ERRORS as exc:
                        anchor_error = f"cannot anchor {self.name!r}: {exc}"
                    self._anchors.close()
                self._conn.close()
        if anchor_error is not None:
            raise AuditError(anchor_error)

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- runs ----------------------------------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        """The current run (from the last :meth:`start_run`), the default ``run_id`` of rows."""
        return self._run_id

    def start_run(
        self, config: Mapping[str, Any], *, run_id: str | None = None, ts_ms: int | None = None
    ) -> str:
        """Record the start of a run with its ``config`` (secrets redacted) and sync.

        Returns the run id (``run_id`` or a fresh :func:`new_run_id`), which becomes the default
        ``run_id`` of appended rows until :meth:`end_run`.
        """
        rid = run_id if run_id is not None else new_run_id()
        payload = dict(config)
        payload.pop("audit_anchors", None)  # a replayed config's would be stale
        if self._anchors is not None:
            payload["audit_anchors"] = {
                "file": str(self._anchors.path.resolve()),
                # not "key_id"/"public_key": payload keys naming a key are redacted
                "signer": self._anchors.key_id,
                "signer_pub": self._anchors.public_key,
                "interval_s": self._anchors.interval,
            }
        row: dict[str, Any] = {"run_id": rid, "kind": "start", "payload": payload}
        if ts_ms is not None:
            row["ts_ms"] = ts_ms
        self.append("runs", row)
        self._run_id = rid
        self._last_run_id = rid
        self.sync()
        return rid

    def end_run(
        self, run_id: str, summary: Mapping[str, Any], *, ts_ms: int | None = None
    ) -> ChainHead:
        """Record the end of ``run_id`` with its ``summary`` and sync.

        Returns the chain head after the end row: keep it outside the file as an anchor for
        :func:`cfa.audit.verify` (with ``anchors``, a signed ``end`` anchor of it is written).
        """
        row: dict[str, Any] = {"run_id": run_id, "kind": "end", "payload": dict(summary)}
        if ts_ms is not None:
            row["ts_ms"] = ts_ms
        self.append("runs", row)
        if self._run_id == run_id:
            self._run_id = None
        self._last_run_id = run_id
        head = self.sync()
        if self._anchors is not None:
            with self._write_lock:
                self._try_anchor("end", run_id)
        return head

    # --- appending -----------------------------------------------------------------------------

    def append(self, table: str, row: Mapping[str, Any]) -> None:
        """Buffer one row of ``table``; no I/O except the automatic flush at ``batch_rows``.

        ``row`` maps column names (see :data:`cfa.audit.schema.TABLES`) to values; ``seq``,
        ``prev_hash`` and ``hash`` are assigned when the batch is committed. Defaults:
        ``run_id`` → the current run (:meth:`start_run`), ``market`` → ``''``, ``ts_ms`` → the
        store's clock. Optional columns may be omitted. The row is encoded now: changing it
        afterwards changes nothing.
        Raises :class:`AuditError` for an unknown table or column, a wrong type, a missing
        required value or a disallowed choice, and when ``max_pending`` rows are buffered.
        """
        writer = self._writers.get(table)
        if writer is None:
            if self._closed:
                raise AuditError(f"audit store {self.name!r} is closed")
            check_table(table)
            raise AuditError(f"table {table} is not open for writing")
        if not writer.allowed.issuperset(row):
            extra = sorted(set(row) - writer.allowed)
            raise AuditError(f"{table}: unknown columns {extra}")
        values = writer.encode(row, self)
        with self._lock:
            n = len(self._buf) + 1
            if n > self._max_pending:
                raise AuditError(
                    f"audit store {self.name!r}: {n - 1} rows pending and writes failing: "
                    f"{self._last_error}"
                )
            self._buf_t.append(table)
            self._buf.append(values)
        self._appended += 1
        if n >= self._batch_rows:
            self._on_full(n)

    def _on_full(self, n: int) -> None:
        if self._thread is not None:
            self._wake.set()
            if n < 8 * self._batch_rows:
                return
        now = time.monotonic()
        if now < self._retry_after:
            return
        try:
            self.flush()
        except AuditError:
            self._retry_after = now + self._flush_interval

    # --- flushing ------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Rows buffered and not yet handed to the writer."""
        return len(self._buf)

    def maybe_flush(self, now: float | None = None) -> bool:
        """Flush if rows are pending and the last flush is ``flush_interval`` seconds old.

        ``now`` is a :func:`time.monotonic` reading (taken if omitted). Cheap when nothing is
        due; call it from the event loop as often as convenient. Returns whether it flushed.
        Raises :class:`AuditError` if the write fails (the rows stay buffered).
        """
        if not self._buf:
            return False
        if now is None:
            now = time.monotonic()
        if now - self._last_flush < self._flush_interval:
            return False
        self.flush()
        return True

    def flush(self) -> int:
        """Write every buffered row in one transaction; returns the number of rows.

        Inline writer: the rows are committed when this returns. Process writer: they are handed
        to the writer process, which commits them moments later (:meth:`sync` waits for that).
        On failure the rows stay buffered, in order, and :class:`AuditError` is raised.
        """
        with self._write_lock:
            with self._lock:
                tables, batch = self._buf_t, self._buf
                self._buf_t, self._buf = [], []
            self._last_flush = time.monotonic()
            if not batch:
                return 0
            if self._closed:
                raise AuditError(f"audit store {self.name!r} is closed")
            t0 = time.perf_counter()
            try:
                if self._proc is not None:
                    self._proc.send(tables, batch, wait=PROCESS_WAIT_SECONDS)
                else:
                    self._sink.write(tables, batch)
                    self._written += len(batch)
            except BaseException as exc:
                with self._lock:
                    self._buf_t[:0] = tables
                    self._buf[:0] = batch
                if isinstance(exc, AuditError):
                    self._last_error = str(exc)
                    if self._proc is not None and self._proc.dead:
                        self._drop_proc()  # write inline from now on
                    raise
                if isinstance(exc, (*DB_ERRORS, OSError)):
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    raise AuditError(f"cannot write audit store {self.name!r}: {exc}") from exc
                raise
            self._last_error = None
            self._last_flush_seconds = time.perf_counter() - t0
            self._flushes += 1
            if self._anchors is not None:
                self._maybe_anchor()
            return len(batch)

    def sync(self, timeout: float = PROCESS_WAIT_SECONDS) -> ChainHead:
        """Flush and wait until every row appended so far is committed; returns the head.

        The same as :meth:`flush` for the inline writer. Raises :class:`AuditError` on failure.
        """
        self.flush()
        with self._write_lock:
            if self._proc is not None:
                try:
                    self._proc.sync(timeout)
                except AuditError as exc:
                    self._last_error = str(exc)
                    if self._proc.dead:
                        self._drop_proc()
                    raise
                if self._anchors is not None:
                    self._maybe_anchor()
        return self.head

    # --- anchors and heartbeat -----------------------------------------------------------------

    @property
    def anchors(self) -> AnchorLog | None:
        """The anchor log this store signs to, if any."""
        return self._anchors

    def _anchor(
        self, kind: Literal["open", "checkpoint", "end", "close"], run_id: str | None = None
    ) -> None:
        """Write one anchor of the current head (caller holds ``_write_lock`` or is opening)."""
        log = self._anchors
        assert log is not None
        head = self.head
        if self._first is None and head.seq >= 1:
            self._first = first_hash(self._conn)
        log.append(
            kind,
            head,
            run_id=run_id or self._run_id or self._last_run_id,
            first=self._first,
            db=self.path.name if self.path is not None else self.name,
        )
        self._anchored_seq = head.seq
        self._last_anchor = time.monotonic()
        self._anchor_error = None

    def _try_anchor(self, kind: Literal["checkpoint", "end"], run_id: str | None = None) -> None:
        try:
            self._anchor(kind, run_id)
        except (AuditError, *DB_ERRORS) as exc:
            self._anchor_error = str(exc)

    def _maybe_anchor(self) -> None:
        """A checkpoint anchor if the chain advanced and the last anchor is old enough."""
        log = self._anchors
        if (
            log is not None
            and self.head.seq > self._anchored_seq
            and time.monotonic() - self._last_anchor >= log.interval
        ):
            self._try_anchor("checkpoint")

    def heartbeat(
        self, session_id: str, run_id: str, state: str = "running", *, started: float
    ) -> None:
        """Record that session ``session_id`` (of run ``run_id``, this process) is ``state``
        (running / stopped / failed) now, by the wall clock; ``started`` is its wall start
        (epoch seconds). One small committed upsert into ``cfa_heartbeat`` (not chained).
        Raises :class:`AuditError` when it cannot be written."""
        with self._write_lock:
            if self._closed:
                raise AuditError(f"audit store {self.name!r} is closed")
            try:
                self._conn.execute(
                    _hb.UPSERT, _hb.beat_row(session_id, run_id, state, started=started)
                )
            except DB_ERRORS as exc:
                raise AuditError(
                    f"cannot write the heartbeat to audit store {self.name!r}: {exc}"
                ) from None

    def _drop_proc(self) -> None:
        """Stop using the writer process (dead or closed); the chain head is re-read."""
        if self._proc is not None:
            self._proc_written += self._proc.written
            self._proc = None
            self._sink.refresh()

    @property
    def head(self) -> ChainHead:
        """The last committed row of the chain as this store knows it (:meth:`sync` first)."""
        if self._proc is not None and self._proc.head is not None:
            return self._proc.head
        return self._sink.head

    def reader(self) -> AuditReader:
        """Sync, then open an :class:`~cfa.audit.queries.AuditReader` on the same file (the
        caller closes it)."""
        from cfa.audit.queries import AuditReader

        self.sync()
        return AuditReader.open(self.target)

    @property
    def stats(self) -> AuditStats:
        """A snapshot of the store's counters."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(AuditError):
                proc.poll()
        return AuditStats(
            appended=self._appended,
            written=self._written + self._proc_written + (proc.written if proc else 0),
            pending=len(self._buf),
            flushes=self._flushes,
            redactions=self._redactions,
            last_flush_seconds=self._last_flush_seconds,
            last_error=self._last_error or (proc.error if proc is not None else None),
            anchors_written=self._anchors.written if self._anchors is not None else 0,
            anchor_seconds=self._anchors.seconds if self._anchors is not None else 0.0,
            anchor_error=self._anchor_error,
        )

    # --- background threads ------------------------------------------------------------------

    def _start_flusher(self) -> None:
        self._thread = threading.Thread(
            target=self._run_flusher, name="cfa-audit-flush", daemon=True
        )
        self._thread.start()

    def _run_flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except AuditError:
                pass  # recorded in stats.last_error; retried next interval
            except Exception as exc:  # never let the flusher die silently
                self._last_error = f"{type(exc).__name__}: {exc}"
