"""`cfa run` from the command line: the demo path, clear errors, and an unclean exit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfa.audit import verify
from cfa.cli import app

runner = CliRunner()


def test_run_prints_summary_and_fills_the_db(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = runner.invoke(
        app, ["run", "--duration", "5m", "--seed", "3", "--db", str(db), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "Run summary" in result.output and str(db) in result.output
    assert "agent decisions (heuristic)" in result.output
    with sqlite3.connect(db) as c:
        kinds = dict(c.execute("select kind, count(*) from runs group by kind").fetchall())
        assert kinds == {"start": 1, "end": 1}
        assert c.execute("select count(*) from market_events").fetchone()[0] > 0
        assert c.execute("select count(*) from decisions").fetchone()[0] > 0
    assert verify(db).ok


def test_same_seed_same_run(tmp_path: Path) -> None:
    outs = []
    for name in ("a.db", "b.db"):
        db = tmp_path / name
        r = runner.invoke(
            app, ["run", "--duration", "3m", "--seed", "9", "--db", str(db), "--quiet", "-n", "2"]
        )
        assert r.exit_code == 0, r.output
        with sqlite3.connect(db) as c:
            outs.append(
                (
                    c.execute(
                        "select market, side, price, count, fee from fills order by seq"
                    ).fetchall(),
                    c.execute(
                        "select market, action, side, price from orders order by seq"
                    ).fetchall(),
                    c.execute("select market, outcome from decisions order by seq").fetchall(),
                )
            )
    assert outs[0] == outs[1]
    assert outs[0][1], "the run placed orders"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--duration", "soon"], "--duration: cannot read 'soon'"),
        (["--speed", "-3x"], "--speed: must be positive"),
        (["--policy", "nope"], "no packaged policy named 'nope'"),
        (["--reasoner", "magic"], "unknown reasoner 'magic'"),
        (["--reasoner", "scripted:/does/not/exist.jsonl"], "cannot read script"),
        (["--db", "/proc/cfa-test/x.db"], "/proc/cfa-test"),
    ],
)
def test_errors_are_one_clear_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["run", "--duration", "1m", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_policy_file_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(
        (Path(__file__).parents[1] / "policies" / "default.yaml").read_text() + "surprise: 1\n"
    )
    result = runner.invoke(app, ["run", "--policy", str(bad), "--db", str(tmp_path / "x.db")])
    assert result.exit_code != 0
    assert "surprise: unknown key" in result.output and str(bad) in result.output


def test_sigkill_mid_run_leaves_a_sound_db(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cfa.cli", "run", "--duration", "24h", "--db", str(db), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        rows = 0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=1) as c:
                        rows = c.execute("select count(*) from market_events").fetchone()[0]
                except sqlite3.Error:
                    rows = 0
                if rows > 50:
                    break
        assert rows > 50, proc.stderr.read().decode() if proc.poll() is not None else "no rows yet"
        committed = rows
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(db) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert c.execute("select count(*) from market_events").fetchone()[0] >= committed
    result = verify(db)
    assert result.ok, result
