"""``cfa audit verify`` through the CLI: OK on a fresh run, and edits, deletions, insertions and
reorderings found at the right seq with exit code 1."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sim_run import record_sim_run
from typer.testing import CliRunner

from cfa.audit import TABLES
from cfa.cli.audit_cmds import audit_app

runner = CliRunner()


@pytest.fixture(scope="module")
def fresh_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("audit") / "run.db"
    asyncio.run(record_sim_run(db, ["calm", "informed-flow"], 420.0, "cli_audit"))
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


@pytest.fixture
def db(fresh_db: Path, tmp_path: Path) -> Path:
    """A private copy of the run's file, to tamper with."""
    path = tmp_path / "copy.db"
    shutil.copy(fresh_db, path)
    return path


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return sum(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES)


def _tamper(db: Path, *sql: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    for t in TABLES:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_update")
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_delete")
    for s in sql:
        conn.execute(s)
    conn.close()


def _seq(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute(sql).fetchone()[0])


def _broken(db: Path) -> dict[str, object]:
    res = runner.invoke(audit_app, ["verify", "--db", str(db)])
    assert res.exit_code == 1, res.output
    assert "BROKEN at seq" in res.output and "Traceback" not in res.output
    res = runner.invoke(audit_app, ["verify", "--db", str(db), "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.output)
    assert out["ok"] is False
    assert (
        f"BROKEN at seq {out['first_bad_seq']}"
        in runner.invoke(audit_app, ["verify", "--db", str(db)]).output
    )
    return out


def test_fresh_run_verifies_with_row_count(db: Path) -> None:
    n = _rows(db)
    assert n > 1000
    res = runner.invoke(audit_app, ["verify", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "OK" in res.output and f"{n:,} rows" in res.output
    res = runner.invoke(audit_app, ["verify", "--db", str(db), "--json"])
    assert res.exit_code == 0
    out = json.loads(res.output)
    assert out["ok"] is True and out["rows"] == n and out["first_bad_seq"] is None
    assert out["head"]["seq"] == n and out["seconds"] >= 0
    # The printed head works as an anchor.
    anchor = f"{out['head']['seq']}:{out['head']['hash']}"
    res = runner.invoke(audit_app, ["verify", "--db", str(db), "--anchor", anchor])
    assert res.exit_code == 0 and "anchor matches" in res.output


def test_edited_fill_is_found(db: Path) -> None:
    seq = _seq(db, "SELECT seq FROM fills ORDER BY seq LIMIT 1 OFFSET 2")
    _tamper(db, f"UPDATE fills SET price = price + 100 WHERE seq = {seq}")
    out = _broken(db)
    assert out["first_bad_seq"] == seq and out["table"] == "fills"
    assert "content" in str(out["reason"])


def test_edited_decision_is_found(db: Path) -> None:
    seq = _seq(db, "SELECT seq FROM decisions ORDER BY seq LIMIT 1 OFFSET 1")
    _tamper(db, f"UPDATE decisions SET outcome = 'applied' WHERE seq = {seq}")
    out = _broken(db)
    assert out["first_bad_seq"] == seq and out["table"] == "decisions"


def test_deleted_row_is_found(db: Path) -> None:
    seq = _seq(db, "SELECT seq FROM orders ORDER BY seq LIMIT 1 OFFSET 5")
    _tamper(db, f"DELETE FROM orders WHERE seq = {seq}")
    out = _broken(db)
    assert out["first_bad_seq"] == seq and "missing" in str(out["reason"])


def test_inserted_row_is_found(db: Path) -> None:
    # A forged fill at the seq of an existing order row, copying its links.
    seq = _seq(db, "SELECT seq FROM orders ORDER BY seq LIMIT 1 OFFSET 7")
    _tamper(
        db,
        "INSERT INTO fills (seq, run_id, market, ts_ms, fill_id, side, price, count, fee, "
        "is_taker, prev_hash, hash) SELECT seq, run_id, market, ts_ms, 'forged', 'bid', 100, "
        f"100, '0', 0, prev_hash, hash FROM orders WHERE seq = {seq}",
    )
    out = _broken(db)
    assert out["first_bad_seq"] == seq


def test_reordered_rows_are_found(db: Path) -> None:
    a = _seq(db, "SELECT seq FROM market_events ORDER BY seq LIMIT 1 OFFSET 20")
    b = _seq(db, f"SELECT seq FROM market_events WHERE seq > {a} ORDER BY seq LIMIT 1")
    _tamper(
        db,
        f"UPDATE market_events SET seq = -1 WHERE seq = {a}",
        f"UPDATE market_events SET seq = {a} WHERE seq = {b}",
        f"UPDATE market_events SET seq = {b} WHERE seq = -1",
    )
    out = _broken(db)
    assert out["first_bad_seq"] == a


def test_anchor_mismatch_fails(db: Path) -> None:
    res = runner.invoke(audit_app, ["verify", "--db", str(db), "--anchor", "5:" + "a" * 64])
    assert res.exit_code == 1 and "anchor" in res.output


@pytest.mark.parametrize(
    "args",
    [["verify", "--db", "/no/such/dir/x.db"], ["verify", "--anchor", "12:nothex"]],
)
def test_usage_errors_are_one_line(args: list[str], tmp_path: Path) -> None:
    res = runner.invoke(audit_app, args)
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output


def test_not_an_audit_file_is_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_text("not sqlite at all " * 100)
    res = runner.invoke(audit_app, ["verify", "--db", str(bogus)])
    assert res.exit_code == 2 and res.output.startswith("error: "), res.output
    assert "Traceback" not in res.output
