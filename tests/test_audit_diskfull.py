"""A full disk mid-run (SQLite ``PRAGMA max_page_count`` on the writer's connection: the file
cannot grow, exactly as on a full filesystem — SQLITE_FULL): the session stops with one clear
error, cancels its resting orders at the exchange, and every row committed before stays and
verifies. Through the session, and through ``cfa run``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_audit_live import start_session
from typer.testing import CliRunner

from cfa.audit import AuditError, AuditReader, AuditStore, verify
from cfa.audit.heartbeat import session_status
from cfa.cli import app
from cfa.core.types import Fill, Settlement
from cfa.runtime.loop import MarketLoop


def fill_disk(store: AuditStore, spare_pages: int = 0) -> None:
    """From now on the store's file cannot grow by more than ``spare_pages`` pages."""
    conn = store._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + spare_pages}")


class FillDiskWhenQuoting:
    """A session probe: once orders rest at the exchange, commit, note the head, fill the disk."""

    def __init__(self, store: AuditStore, exchange: Any) -> None:
        self.store = store
        self.exchange = exchange
        self.head: Any = None
        self.resting = 0

    def tick(self, t: float) -> None:
        if self.head is None and self.exchange.placed_at:
            self.head = self.store.sync()
            self.resting = len(self.exchange.sim._resting_orders(None))
            fill_disk(self.store)

    def own(self, loop: MarketLoop, ev: Fill | Settlement) -> None:
        return None


async def test_full_disk_stops_the_session_cancels_orders_and_keeps_committed_rows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "full.db"
    session, ex, store = await start_session(db, rate=None, seconds=900.0)
    probe = FillDiskWhenQuoting(store, ex)
    session.probe = probe
    with pytest.raises(AuditError) as err:
        await session.run()
    message = str(err.value)
    assert "\n" not in message
    assert "database or disk is full" in message and str(db) in message, message
    assert "trading stopped and resting orders cancelled (0 left resting)" in message
    assert probe.head is not None and probe.resting > 0, "orders rested when the disk filled"
    assert session.events < 50_000, "stopped at once, not at the end of the stream"
    assert not await ex.get_orders(None, resting_only=True), "nothing left resting"
    cancelled = [o for o in await ex.get_orders(None, resting_only=False) if o.status == "canceled"]
    assert cancelled
    with pytest.raises(AuditError, match="disk is full"):
        store.close()  # the rows after the failure cannot be written: said, not hidden
    # Every row committed before the disk filled is still there, unchanged, and verifies.
    res = verify(db)
    assert res.ok and res.head is not None and res.head.seq >= probe.head.seq, res
    with sqlite3.connect(db) as c:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        hashes = [
            r[0]
            for t in tables
            if t != "cfa_heartbeat"
            for r in c.execute(f"SELECT hash FROM {t} WHERE seq = ?", (probe.head.seq,))
        ]
        assert hashes == [probe.head.hash]
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    alive, detail = session_status(db)
    assert not alive, detail


def test_cfa_run_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: Any) -> None:
    import cfa.cli.run as run_mod

    real_open = AuditStore.open

    class FillingStore:
        """The disk fills once 30 rows are committed. A page budget instead would make the row
        count depend on how many events one wall-clock flush holds, i.e. on the machine."""

        @staticmethod
        def open(*args: Any, **kw: Any) -> AuditStore:
            store = real_open(*args, **kw)
            flush = store.flush

            def flush_then_fill() -> int:
                n = flush()
                if store.head.seq >= 30:
                    fill_disk(store)
                return n

            store.flush = flush_then_fill  # type: ignore[method-assign]
            return store

    monkeypatch.setattr(run_mod, "AuditStore", FillingStore)
    db = tmp_path / "full.db"
    args = ["run", "--duration", "2h", "-n", "2", "--quiet", "--db", str(db)]
    args += ["--anchor-key", str(tmp_path / "k.key")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: cannot write audit store") and str(db) in lines[0]
    assert "database or disk is full" in lines[0] and "0 left resting" in lines[0]
    res = verify(db)
    assert res.ok and res.rows >= 30, res
    with AuditReader.open(db) as r:  # payloads are stored compressed: read them decoded
        events = sum(row["payload"]["n"] for row in r.rows("market_events"))
    assert events > 100, events
    # The close anchor covers what was committed: the anchors agree with the file.
    res = CliRunner().invoke(app, ["audit", "verify", "--db", str(db)])
    assert res.exit_code == 0 and "ANCHORS OK" in res.output, res.output
