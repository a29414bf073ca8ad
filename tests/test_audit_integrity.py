"""``cfa run`` refuses an audit store that fails ``PRAGMA quick_check``, in one line naming the
file; :func:`cfa.audit.integrity.quick_check` itself on sound, damaged and foreign files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfa.audit import AuditError, AuditStore
from cfa.audit.integrity import missing_triggers_in, quick_check
from cfa.cli import app


def _store(path: Path, rows: int = 3000) -> Path:
    with AuditStore.open(path) as st:
        st.start_run({})
        for i in range(rows):
            st.append(
                "market_events",
                {"market": "M", "kind": "delta", "exch_seq": i, "payload": {"pad": "x" * 100}},
            )
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _damage(path: Path) -> None:
    """Overwrite the cell count of market_events' root b-tree page (a torn or bad write)."""
    with sqlite3.connect(path) as c:
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'market_events'")
        page = root.fetchone()[0]
        size = c.execute("PRAGMA page_size").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((page - 1) * size + 3)
        f.write(b"\xff\xff")


def test_quick_check_sound_damaged_and_foreign(tmp_path: Path) -> None:
    db = _store(tmp_path / "a.db")
    assert quick_check(db) == []
    assert missing_triggers_in(db) == []
    _damage(db)
    problems = quick_check(db)
    assert problems and all("\n" not in p for p in problems), problems
    assert any("Page" in p for p in problems)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite " * 300)
    (problem,) = quick_check(junk)
    assert "not a database" in problem
    with pytest.raises(AuditError, match="does not exist"):
        quick_check(tmp_path / "missing.db")


@pytest.mark.parametrize("kind", ["damaged", "junk"])
def test_cfa_run_refuses_a_db_failing_quick_check(tmp_path: Path, kind: str) -> None:
    db = tmp_path / f"{kind}.db"
    if kind == "damaged":
        _damage(_store(db))
    else:
        db.write_bytes(b"definitely not sqlite " * 300)
    before = db.read_bytes()
    res = CliRunner().invoke(app, ["run", "--duration", "1m", "--quiet", "--db", str(db)])
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: ") and str(db) in lines[0] and "quick_check" in lines[0]
    assert db.read_bytes() == before, "nothing was appended"
    assert not Path(f"{db}.anchors").exists()
