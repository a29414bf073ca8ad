"""`cfa govern` against a running `cfa run` in another process, through the shared audit store."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from live_session import (
    approval_script,
    start_run,
    stop,
    wait_approval_requests,
    wait_for,
    wait_quoting,
)
from store_backends import rows as _rows
from typer.testing import CliRunner

from cfa.cli import app

runner = CliRunner()


def _applied(db: Path | str, after_seq: int, actor: str | None = None) -> list[tuple[int, str]]:
    """``(seq, payload)`` of the governance results with status applied after ``after_seq``."""
    rows = _rows(
        db,
        "select seq, actor, payload from governance_actions where seq > ? order by seq",
        after_seq,
    )
    return [
        (seq, payload)
        for seq, who, payload in rows
        if json.loads(payload or "{}").get("status") == "applied" and actor in (None, who)
    ]


_wait = wait_for


def _govern(db: Path | str, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["govern", *args, "--db", str(db)])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def running(module_store_target: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A `cfa run` at 20x real time on each backend (a SQLite file, a PostgreSQL schema), in a
    temporary directory (a PostgreSQL store's default anchor file goes to the working
    directory), shared by this module's tests: the one that ends it runs last."""
    db = module_store_target
    proc = start_run(db, tmp_path_factory.mktemp("run"))
    try:
        wait_quoting(db)
        yield db, proc
    finally:
        stop(proc)


def test_bad_governance_input_is_refused(running: Any) -> None:
    db, _ = running
    m = _rows(db, "select market from param_changes where market != '' limit 1")[0][0]
    cases = [
        (["halt", "NOPE", "--reason", "x"], "unknown market 'NOPE'"),
        (["override", m, "--gamma", "1e6", "--reason", "x"], "outside the policy bounds"),
        (["override", m, "--reason", "x"], "give --gamma and/or --sigma"),
        (["freeze", m], "Missing option '--reason'"),
        (["halt", "--reason", "x"], "give a MARKET or --all"),
    ]
    for args, message in cases:
        code, out = _govern(db, *args)
        assert code != 0 and message in out, (args, out)


def test_halt_resume_override_freeze_from_another_process(running: Any) -> None:
    db, proc = running
    markets = [
        m for (m,) in _rows(db, "select distinct market from param_changes where market != ''")
    ]
    assert markets
    m = markets[0]
    # Halt everything: applied within a second, resting orders cancelled, nothing new placed.
    seq = _rows(db, "select max(seq) from governance_actions")[0][0] or 0
    code, out = _govern(db, "halt", "--all", "--reason", "test halt", "--operator", "alice")
    assert code == 0, out
    result = _wait(lambda: _applied(db, seq), 5, "the halt to be applied")
    payload = json.loads(result[0][1])
    latency = payload["applied_wall"] - payload["requested_wall"]
    print(f"kill switch: request to applied and orders cancelled in {latency * 1000:.0f} ms")
    assert latency < 1.0
    halt_seq = result[0][0]
    time.sleep(1.0)
    after = _rows(
        db, "select action from orders where seq > ? and action in ('place', 'amend')", halt_seq
    )
    assert after == [], "no order may be placed while halted"
    cancels = _rows(
        db,
        "select count(*) from orders where seq > ? and action = 'cancel' and reason = 'halted'",
        seq,
    )[0][0]
    assert cancels > 0, "the halt cancelled the resting orders"
    states = _rows(
        db, "select state from risk_events where kind = 'trading_state' and seq > ?", seq
    )
    assert ("HALTED",) in states
    # Resume: quoting starts again.
    code, out = _govern(db, "resume", "--all", "--reason", "go", "--operator", "alice")
    assert code == 0, out
    _wait(
        lambda: _rows(db, "select 1 from orders where seq > ? and action = 'place'", halt_seq),
        10,
        "new orders",
    )
    # Override and freeze are applied and recorded with who did them.
    code, out = _govern(db, "override", m, "--gamma", "5", "--ttl", "10m", "--reason", "wider")
    assert code == 0, out
    _wait(
        lambda: _rows(
            db, "select 1 from param_changes where market = ? and param = 'gamma' and new = 5.0", m
        ),
        5,
        "the override",
    )
    code, out = _govern(
        db, "freeze", m, "--param", "sigma", "--reason", "news", "--operator", "bob"
    )
    assert code == 0, out
    _wait(lambda: _applied(db, 0, "person:bob"), 5, "the freeze")
    code, out = _govern(db, "status", "--json")
    status = json.loads(out)
    assert "sigma" in next(r for r in status["markets"] if r["market"] == m)["frozen"]
    # SIGTERM ends the run cleanly: orders cancelled, summary printed.
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Run summary" in out and "left resting" not in out


def test_govern_without_a_db_says_so(tmp_path: Path) -> None:
    code, out = _govern(tmp_path / "none.db", "status")
    assert code != 0 and "no audit store here" in out


async def test_govern_against_a_stopped_session_says_so_and_fails(tmp_path: Path) -> None:
    # Regression: `cfa govern halt --all` reported success with exit 0 when no session ran.
    from sim_run import record_sim_run

    db = tmp_path / "done.db"
    await record_sim_run(db, ["calm"], 120.0, "stopped")
    before = _rows(db, "select count(*) from governance_actions")[0][0]
    code, out = _govern(db, "halt", "--all", "--reason", "kill switch")
    assert code != 0 and "no session is running" in out and "nothing was requested" in out
    assert _rows(db, "select count(*) from governance_actions")[0][0] == before


def test_people_list_approve_and_deny_pending_changes(tmp_path: Path) -> None:
    # The market agent asks for +40 % on gamma (above the 30 % approval step); the governance
    # agent's script is empty (it abstains), so a person decides.
    db = tmp_path / "live.db"
    proc = start_run(db, tmp_path, markets=1, reasoner=approval_script(tmp_path / "s.jsonl"))
    try:
        wait_approval_requests(db)
        code, out = _govern(db, "pending", "--json")
        assert code == 0, out
        (req,) = json.loads(out)["pending"]
        assert req["param"] == "gamma" and req["value"] == 0.14 and req["base"] == 0.1
        code, out = _govern(db, "deny", "no-such-id", "--reason", "x")
        assert code != 0 and "not pending" in out
        code, out = _govern(db, "approve", req["request_id"], "--reason", "ok", "--operator", "eve")
        assert code == 0, out
        _wait(
            lambda: _rows(db, "select 1 from param_changes where param = 'gamma' and new = 0.14"),
            10,
            "the approved change",
        )
        decided = _wait(
            lambda: _rows(
                db,
                "select actor from governance_actions where action = 'approval_decided'"
                " and json_extract(payload, '$.status') = 'approved'",
            ),
            5,
            "the decision row",
        )
        assert decided[0][0] == "person:eve"
        code, out = _govern(db, "pending")
        assert code == 0 and "nothing waits for approval" in out
    finally:
        proc.kill()
        proc.wait()


def test_with_approvals_by_person_the_governance_agent_leaves_them_to_people(
    tmp_path: Path,
) -> None:
    # `make demo` runs --approvals person so that a person approves in `cfa console`: the
    # heuristic governance agent, which approves within bounds, must not see those requests,
    # and the market agent asking again must not replace the one a person is looking at.
    db = tmp_path / "people.db"
    r = runner.invoke(
        app,
        [
            "run",
            "--duration",
            "20m",
            "-n",
            "2",
            "--approvals",
            "person",
            "--quiet",
            "--db",
            str(db),
        ],
    )
    assert r.exit_code == 0, r.output
    asked = _rows(db, "select count(*) from governance_actions where action = 'approval_requested'")
    assert asked[0][0] >= 1
    kinds = {k for (k,) in _rows(db, "select action from governance_actions")}
    assert "approval_decided" not in kinds and "approval_superseded" not in kinds
    assert "approval_expired" in kinds  # nobody answered: it expired, audited
    gov_tools = _rows(db, "select tool from tool_calls where agent like 'governance%'")
    assert gov_tools and all(t == "no_action" for (t,) in gov_tools)
    r = runner.invoke(app, ["run", "--duration", "1m", "--approvals", "people", "--db", str(db)])
    assert r.exit_code != 0 and "--approvals: expected governance or person" in r.output
