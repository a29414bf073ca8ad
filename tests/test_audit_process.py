"""The writer process: same file and chain as inline writing, and failures that stay loud."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from cfa.audit import AuditError, AuditReader, AuditStore, verify

ROW = {"market": "M", "ts_ms": 1, "kind": "delta", "exch_seq": 1, "payload": {"p": 1}}


def test_process_writer_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with AuditStore.open(path, writer="process", batch_rows=100) as store:
        run = store.start_run({"writer": "process"})
        for i in range(1_000):
            store.append("market_events", {**ROW, "exch_seq": i})
            if i % 250 == 0:
                store.append("decisions", {"agent": "a", "reasoner": "h", "outcome": "keep"})
        head = store.end_run(run, {"ok": True})
        assert head.seq == 1 + 1_000 + 4 + 1
        assert store.stats.written == head.seq and store.pending == 0
    with AuditStore.open(path) as store:  # inline writer continues the same chain
        store.start_run({})
        store.append("market_events", ROW)
    r = verify(path)
    assert r.ok and r.rows == head.seq + 2, r
    with AuditReader.open(path) as reader:
        assert [x["exch_seq"] for x in reader.rows("market_events", run_id=run)] == list(
            range(1_000)
        )


def test_dead_writer_process_is_loud_then_inline_takes_over(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = AuditStore.open(path, writer="process")
    try:
        store.start_run({})
        store.append("market_events", ROW)
        store.sync()
        assert store._proc is not None and store._proc.pid is not None
        os.kill(store._proc.pid, signal.SIGKILL)
        time.sleep(0.2)
        store.append("market_events", ROW)
        with pytest.raises(AuditError, match="writer process"):
            for _ in range(20):  # the first send may still fit in the pipe
                store.sync(timeout=5)
                store.append("market_events", ROW)
        assert store._proc is None  # falls back to writing inline
        store.append("market_events", ROW)
        head = store.sync()
    finally:
        store.close()
    r = verify(path)
    assert r.ok and r.rows == head.seq, r
