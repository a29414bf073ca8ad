"""``cfa.audit.heartbeat.session_status``: is a session running on this audit store? Fresh,
stale, stalled, stopped, killed, remote; and the module stays cheap to import (stdlib only)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cfa.audit import AuditStore
from cfa.audit.heartbeat import STALE_AFTER_S, TABLE, pid_alive, session_status


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    s = AuditStore.open(tmp_path / "hb.db")
    yield s
    s.close()


def _row(db: Path, run_id: str, pid: int, host: str, beat: float, state: str = "running") -> None:
    with sqlite3.connect(db) as c:
        c.execute(
            f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                run_id,
                pid,
                host,
                beat - 5,
                beat,
                None if state == "running" else beat,
                state,
            ),
        )


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_no_file_no_table_no_rows(tmp_path: Path, store: AuditStore) -> None:
    alive, detail = session_status(tmp_path / "nope.db")
    assert not alive and "no audit store" in detail
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    alive, detail = session_status(plain)
    assert not alive and "no session has written a heartbeat" in detail
    assert session_status(store.path) == (
        False,
        f"no session has written a heartbeat to {store.path}",
    )
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    alive, detail = session_status(junk)
    assert not alive and "cannot read heartbeats" in detail


def test_fresh_beat_is_alive_then_stale_then_gone(store: AuditStore) -> None:
    t = time.time()
    store.heartbeat("run-1", "run-1", started=t)
    alive, detail = session_status(store.path)
    assert alive and "run run-1" in detail and f"pid {os.getpid()}" in detail, detail
    # Beat too old, but our pid still exists on this host: a stalled loop, still alive.
    alive, detail = session_status(store.path, now=t + STALE_AFTER_S + 10)
    assert alive and "stalled" in detail, detail
    alive, detail = session_status(store.path, now=t + 600)
    assert not alive and "never stopped" in detail, detail


def test_stopped_session_is_not_alive(store: AuditStore) -> None:
    t = time.time()
    store.heartbeat("run-2", "run-2", started=t)
    store.heartbeat("run-2", "run-2", "stopped", started=t)
    alive, detail = session_status(store.path)
    assert not alive and "stopped" in detail, detail


def test_killed_session_on_this_host_is_not_alive(store: AuditStore) -> None:
    _row(store.path, "run-3", _dead_pid(), socket.gethostname(), time.time())
    alive, detail = session_status(store.path)
    assert not alive and "gone (killed?)" in detail, detail


def test_remote_session_is_judged_by_its_beat_alone(store: AuditStore) -> None:
    t = time.time()
    _row(store.path, "run-4", 1, "some-other-host", t)
    assert session_status(store.path)[0]
    assert not session_status(store.path, now=t + STALE_AFTER_S + 1)[0]


def test_any_live_session_counts(store: AuditStore) -> None:
    t = time.time()
    _row(store.path, "old", _dead_pid(), socket.gethostname(), t)
    store.heartbeat("new", "new", started=t)
    alive, detail = session_status(store.path)
    assert alive and "run new" in detail


def test_bad_state_is_refused(store: AuditStore) -> None:
    with pytest.raises(ValueError, match="state"):
        store.heartbeat("x", "x", "sleeping", started=time.time())


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())
    assert not pid_alive(0)


def test_import_is_standard_library_only_and_fast() -> None:
    code = (
        "import sys, time; t = time.process_time(); import cfa.audit.heartbeat as h; "
        "cpu = time.process_time() - t; "
        "extra = sorted(m for m in sys.modules if m.split('.')[0] not in "
        "sys.stdlib_module_names and not m.startswith('_')); print(cpu); print(extra)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    cpu, extra = float(out[0]), out[1]
    assert extra == "['cfa', 'cfa.audit', 'cfa.audit.heartbeat']", extra
    assert cpu < 0.1, cpu
