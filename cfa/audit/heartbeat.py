"""Session heartbeats: is a trading session running on this audit store right now?

A running session (:class:`cfa.runtime.session.Session`) writes one row per session into the
``cfa_heartbeat`` table of its audit store — session id (the run id), pid, host, wall-clock
start and last beat — at most once a second (at its time flushes), and marks it ``stopped`` when
it ends cleanly (``failed`` when it ended because the audit store could not be written).
:func:`session_status` reads that table.

``cfa_heartbeat`` is the one table of an audit file that is **not** part of the audit trail:
it is not hash-chained, not append-only (a beat updates the session's row in place) and
:func:`cfa.audit.verify` ignores it. Times in it are wall-clock epoch seconds (REAL), never the
simulated clock.

This module imports only the standard library (``sqlite3``, ``os``, ``socket``, ``time``,
``pathlib``): the kill switch ``cfa govern`` imports it and must start in well under 0.5 s.
(A PostgreSQL store imports psycopg, lazily, when its status is asked.)
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Final

TABLE: Final = "cfa_heartbeat"
BEAT_INTERVAL_S: Final = 1.0
"""A running session beats at most (and, while its event loop is not blocked, about) this often;
wall seconds."""
STALE_AFTER_S: Final = 5.0
"""A beat older than this (wall seconds) no longer proves that its session is alive."""
STALLED_PID_GRACE_S: Final = 60.0
"""A stale beat whose process still exists on this host counts as alive (a stalled event loop)
for this long after the beat; wall seconds."""

DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "session_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, pid INTEGER NOT NULL, "
    "host TEXT NOT NULL, started REAL NOT NULL, beat REAL NOT NULL, stopped REAL, "
    "state TEXT NOT NULL) STRICT"
)
"""The heartbeat table (created by :func:`cfa.audit.schema.ensure_schema`)."""

UPSERT: Final = (
    f"INSERT INTO {TABLE} (session_id, run_id, pid, host, started, beat, stopped, state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
    "run_id = excluded.run_id, pid = excluded.pid, host = excluded.host, beat = excluded.beat, "
    "stopped = excluded.stopped, state = excluded.state"
)
STATES: Final = ("running", "stopped", "failed")


def beat_row(
    session_id: str, run_id: str, state: str, *, started: float, now: float | None = None
) -> tuple[object, ...]:
    """Parameters of :data:`UPSERT` for one beat of this process (``now``: wall epoch s)."""
    if state not in STATES:
        raise ValueError(f"heartbeat state must be one of {STATES}, not {state!r}")
    t = time.time() if now is None else now
    stopped = None if state == "running" else t
    return (session_id, run_id, os.getpid(), socket.gethostname(), started, t, stopped, state)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): the signal check stands
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])


def _ago(seconds: float) -> str:
    return f"{seconds:.1f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


_LATEST: Final = (
    f"SELECT session_id, run_id, pid, host, beat, stopped, state FROM {TABLE} "
    "ORDER BY beat DESC LIMIT 20"
)


def _pg_rows(url: str) -> tuple[list[tuple[object, ...]] | str, str]:
    """The latest beats of a PostgreSQL store, or a reason string; and its printable name."""
    from cfa.audit.errors import DB_ERRORS, AuditError
    from cfa.audit.postgres import PgConnection, redact

    name = redact(url)
    try:
        conn = PgConnection(url, readonly=True, connect_timeout=2.0)
    except AuditError as exc:
        return str(exc), name
    try:
        has = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = ?",
            [TABLE],
        ).fetchone()
        if not has:
            return f"no session has written a heartbeat to {name}", name
        return [tuple(r) for r in conn.execute(_LATEST).fetchall()], name
    except DB_ERRORS as exc:
        return f"cannot read heartbeats of {name}: {exc}", name
    finally:
        conn.close()


def session_status(
    db_path: str | os.PathLike[str],
    *,
    stale_after: float = STALE_AFTER_S,
    now: float | None = None,
) -> tuple[bool, str]:
    """Decide whether a session is running on the audit store at ``db_path``.

    Returns ``(alive, detail)``; ``detail`` is one line for people naming the run, pid, host and
    the age of its last beat. A session is alive when its row is not marked stopped and either
    its last beat is at most ``stale_after`` wall seconds old (``now``: wall epoch seconds,
    default the current time) — unless it ran on this host and its pid is gone (killed) — or,
    on this host, its pid still exists and the beat is at most :data:`STALLED_PID_GRACE_S` old
    (an event loop blocked for a while; a kill switch should rather assume it is alive). When
    several sessions share the file, alive if any is; the detail names the freshest.

    Never raises for a missing, unreadable or non-cfa file: returns ``(False, reason)``. Opens
    the file read-only and takes milliseconds.
    """
    t = time.time() if now is None else now
    if str(db_path).startswith(("postgresql://", "postgres://")):  # postgres.is_url, stdlib only
        rows, p = _pg_rows(str(db_path))
        if isinstance(rows, str):
            return False, rows
    else:
        p = Path(db_path)
        if not p.is_file():
            return False, f"no audit store at {p}"
        try:
            conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
            try:
                has = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
                ).fetchone()
                if not has:
                    return False, f"no session has written a heartbeat to {p}"
                rows = conn.execute(_LATEST).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return False, f"cannot read heartbeats of {p}: {exc}"
    if not rows:
        return False, f"no session has written a heartbeat to {p}"
    host = socket.gethostname()
    verdicts: list[tuple[bool, str]] = []
    for _sid, run_id, pid, rhost, beat, stopped, state in rows:
        age = t - float(beat)
        where = f"run {run_id} (pid {pid} on {rhost})"
        if state != "running" or stopped is not None:
            verdicts.append((False, f"{where} {state} {_ago(t - float(stopped or beat))}"))
            continue
        local = rhost == host
        alive_pid = pid_alive(int(pid)) if local else None
        if local and not alive_pid:
            verdicts.append(
                (False, f"{where} is gone (killed?); last heartbeat {_ago(age)}, never stopped")
            )
        elif age <= stale_after:
            verdicts.append((True, f"{where} is running; last heartbeat {_ago(age)}"))
        elif alive_pid and age <= STALLED_PID_GRACE_S:
            verdicts.append(
                (True, f"{where} still exists but its last heartbeat is {_ago(age)} (stalled?)")
            )
        else:
            verdicts.append((False, f"{where}: last heartbeat {_ago(age)}, never stopped"))
    for v in verdicts:
        if v[0]:
            return v
    return verdicts[0]
