"""Unclean exit: SIGKILL a writer mid-run; the file stays intact and keeps every flushed row."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cfa.audit import AuditReader, verify

CHILD = """
import sys
from cfa.audit import AuditStore

store = AuditStore.open(sys.argv[1], batch_rows=10**6, max_pending=10**7, writer=sys.argv[2])
print("writer", store._proc.pid if store._proc else 0, flush=True)
store.start_run({"child": True})
i = 0
while True:
    for _ in range(300):
        store.append("market_events", {"market": "M", "kind": "delta", "exch_seq": i,
                                       "payload": {"i": i, "pad": "x" * 200}})
        i += 1
    if i % 900:
        store.flush()  # inline: committed; process writer: handed over
    else:
        print(store.sync().seq, flush=True)  # committed either way
"""


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait until process ``pid`` (not our child) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"writer process {pid} still running")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize(("writer", "delay"), [("inline", 0.003), ("process", 0.002)])
def test_sigkill_mid_run_loses_nothing_flushed(tmp_path: Path, writer: str, delay: float) -> None:
    path = tmp_path / "crash.db"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), writer],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    assert first and first[0] == "writer", proc.stderr.read() if proc.stderr else ""
    writer_pid = int(first[1])
    reported: list[int] = []
    deadline = time.monotonic() + 30
    while len(reported) < 6 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        reported.append(int(line))
    time.sleep(delay)  # land somewhere inside the next batch or flush
    proc.send_signal(signal.SIGKILL)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    reported += [int(x) for x in rest.split()]
    assert len(reported) >= 6, err
    last = max(reported)
    if writer_pid:  # the orphaned writer commits what it received, then exits on EOF
        _wait_gone(writer_pid, 20)

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    result = verify(path)
    assert result.ok, result
    assert result.rows >= last  # every row reported flushed is there, chained, gap-free
    with AuditReader.open(path) as reader:
        assert reader.counts()["market_events"] == result.rows - 1
        assert len(reader.runs()) == 1 and reader.runs()[0].ended_ms is None
