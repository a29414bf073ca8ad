"""Start-up cost of the CLI: which modules a command imports (asserted on sys.modules, not time).

``cfa govern halt`` is the kill switch: it must not import the statistics and LLM stacks that
``cfa run`` needs (statsmodels, scipy and pandas, arch, langgraph, openai: seconds of CPU), so
the root ``cfa`` group imports a command's module only when that command runs, and
:mod:`cfa.core.regime` / :mod:`cfa.core.volforecast` import statsmodels / arch on first use.
Each check runs in a fresh interpreter so earlier imports in the test process do not count.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfa import cli
from cfa.audit import AuditStore, heartbeat
from cfa.risk.policy import load_policy

HEAVY = ("statsmodels", "scipy", "pandas", "arch", "langgraph", "openai")

_PROBE = """
import json, sys
{body}
heavy = {heavy!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
"""


def _probe(body: str, cwd: Path) -> tuple[list[str], list[str]]:
    """Run ``body`` in a fresh interpreter: (its other output lines, heavy packages loaded)."""
    code = _PROBE.format(body=body, heavy=HEAVY)
    r = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    *lines, last = r.stdout.strip().splitlines()
    return lines, json.loads(last)


def _heavy_imported(body: str, cwd: Path) -> list[str]:
    return _probe(body, cwd)[1]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """An audit store with one run (default policy) trading M1, "running" in this process."""
    db = tmp_path / "s.db"
    with AuditStore.open(db) as s:
        run_id = s.start_run({"policy": load_policy("default").model_dump(mode="json")}, ts_ms=0)
        s.append("market_events", {"market": "M1", "kind": "snapshot", "payload": {}})
    with sqlite3.connect(db) as c:  # govern requests need a live session (its heartbeat)
        c.execute(
            heartbeat.UPSERT, heartbeat.beat_row(run_id, run_id, "running", started=time.time())
        )
    return db


def test_importing_the_cli_and_listing_commands_loads_no_heavy_module(tmp_path: Path) -> None:
    body = "import cfa.cli\ntry:\n    cfa.cli.app(['--help'])\nexcept SystemExit:\n    pass\n"
    assert _heavy_imported(body, tmp_path) == []


def test_every_govern_subcommand_loads_no_heavy_module(store: Path, tmp_path: Path) -> None:
    """Runs each ``cfa govern`` subcommand (and its --help) in one fresh interpreter."""
    db = str(store)
    calls = [
        ["halt", "--all", "--reason", "t"],
        ["resume", "--all", "--reason", "t"],
        ["reduce-only", "--all", "--reason", "t"],
        ["halt", "M1", "--reason", "t"],
        ["freeze", "M1", "--param", "gamma", "--reason", "t"],
        ["unfreeze", "M1", "--param", "gamma", "--reason", "t"],
        ["override", "M1", "--gamma", "0.1", "--ttl", "60s", "--reason", "t"],
        ["status"],
        ["status", "--json"],
    ]
    body = f"""
import cfa.cli
from cfa.cli import load_command
db = {db!r}
names = list(load_command("govern").commands)
calls = {calls!r} + [[n, "--help"] for n in names]
codes = {{}}
for args in calls:
    if args[-1] != "--help":
        args = [*args, "--db", db]
    try:
        cfa.cli.app(["govern", *args])
    except SystemExit as e:
        codes[" ".join(args)] = e.code
print(json.dumps(codes))
"""
    lines, heavy = _probe(body, tmp_path)
    codes = json.loads(lines[-1])
    assert codes.get(f"halt --all --reason t --db {db}") in (0, None), lines
    assert heavy == []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        requested = c.execute(
            "select count(*) from governance_actions"
            " where action = 'halt' and json_extract(payload, '$.status') = 'requested'"
        ).fetchone()[0]
    assert requested >= 1  # the kill switch did its work, not just start up


def test_core_statistics_are_imported_on_first_use(tmp_path: Path) -> None:
    body = "import cfa.core.regime, cfa.core.volforecast, cfa.core.signals, cfa.core.quoting\n"
    assert _heavy_imported(body, tmp_path) == []
    used = (
        "from cfa.core.regime import RegimeMonitor\n"
        "from cfa.core.volforecast import GarchForecast\n"
        "RegimeMonitor(); GarchForecast()\n"
    )
    assert {"statsmodels", "scipy", "arch"} <= set(_heavy_imported(used, tmp_path))


def test_root_help_lists_every_command_with_its_own_help() -> None:
    out = CliRunner().invoke(cli.app, ["--help"]).output
    for name, (_, _, help_text) in cli.COMMANDS.items():
        assert name in out
        cmd = cli.load_command(name)
        assert cmd.name == name
        # the listing uses COMMANDS' text without importing; it must be the command's own help
        assert (cmd.help or "").strip() == help_text, (
            f"update the help of {name!r} in cfa.cli.COMMANDS to match its module"
        )
