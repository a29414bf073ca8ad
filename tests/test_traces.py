"""``cfa traces``: list filters and ``show`` checked against the audit store itself."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sim_run import record_sim_run
from typer.testing import CliRunner

from cfa.cli.traces import traces_app
from cfa.core.types import QTY_SCALE
from cfa.reports.decisions import own_entries

runner = CliRunner()


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("traces") / "run.db"
    run_id = asyncio.run(
        record_sim_run(db, ["calm", "informed-flow"], 420.0, "traces", governance_interval_s=120.0)
    )
    return db, run_id


def _q(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as c:
        return c.execute(sql, params).fetchall()


def _list(db: Path, *args: str) -> list[dict[str, Any]]:
    res = runner.invoke(traces_app, ["--db", str(db), "--limit", "0", "--json", *args])
    assert res.exit_code == 0, res.output
    out: list[dict[str, Any]] = json.loads(res.output)
    return out


def test_list_all_decisions_of_the_run(run_db: tuple[Path, str]) -> None:
    db, run_id = run_db
    out = _list(db)
    rows = _q(db, "SELECT seq, decision_id, market, agent, outcome FROM decisions ORDER BY seq")
    assert len(rows) >= 10
    assert [(d["seq"], d["decision_id"], d["market"], d["agent"], d["outcome"]) for d in out] == [
        tuple(r) for r in rows
    ]
    assert {d["run_id"] for d in out} == {run_id}
    assert all(d["reasoner"] == "heuristic" and d["model"] for d in out)
    assert any(d["tools"] for d in out) and all(isinstance(d["rationale"], str) for d in out)
    # Human output: a table with the count line.
    res = runner.invoke(traces_app, ["--db", str(db), "--limit", "3"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and f"3 of {len(rows)} decisions" in res.output


def test_filters(run_db: tuple[Path, str]) -> None:
    db, run_id = run_db
    market = _q(db, "SELECT market FROM fills LIMIT 1")[0][0]
    out = _list(db, "--market", market, "--run", run_id[:10])
    assert out and {d["market"] for d in out} == {market}
    assert len(out) == _q(db, "SELECT count(*) FROM decisions WHERE market = ?", market)[0][0]

    gov = _list(db, "--agent", "governance")
    assert gov and {d["agent"] for d in gov} == {"governance"}
    assert len(gov) == _q(db, "SELECT count(*) FROM decisions WHERE agent = 'governance'")[0][0]

    for outcome in ("keep", "applied"):
        got = _list(db, "--outcome", outcome)
        want = [r[0] for r in _q(db, "SELECT seq FROM decisions WHERE outcome = ?", outcome)]
        assert [d["seq"] for d in got] == want
    both = _list(db, "--outcome", "keep", "--outcome", "applied")
    assert len(both) == len(_list(db, "--outcome", "keep,applied"))

    ts = [r[0] for r in _q(db, "SELECT ts_ms FROM decisions ORDER BY seq")]
    lo, hi = ts[len(ts) // 4], ts[3 * len(ts) // 4]
    iso = datetime.fromtimestamp(lo / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    window = _list(db, "--since", iso, "--until", str(hi / 1000))
    assert [d["ts_ms"] for d in window] == [t for t in ts if lo <= t < hi]

    last = _list(db, "--limit", "0")[-4:]
    res = runner.invoke(traces_app, ["--db", str(db), "--limit", "4", "--json"])
    assert json.loads(res.output) == last


def test_show_json_matches_the_store(run_db: tuple[Path, str]) -> None:
    db, run_id = run_db
    market = _q(db, "SELECT market FROM fills LIMIT 1")[0][0]
    # The first market decision after which this market filled within 10 minutes.
    seq, ts_ms, payload = _q(
        db,
        "SELECT d.seq, d.ts_ms, d.payload FROM decisions d WHERE d.market = ? AND EXISTS "
        "(SELECT 1 FROM fills f WHERE f.market = d.market AND f.seq > d.seq) ORDER BY d.seq "
        "LIMIT 1",
        market,
    )[0]
    p = json.loads(payload)
    res = runner.invoke(traces_app, ["show", str(seq), "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    d = out["decision"]
    assert d["seq"] == seq and d["market"] == market and d["run_id"] == run_id
    assert d["decision_id"] == p["decision_id"] and d["outcome"] == p["verdict"]
    assert d["context"] == p["context"]
    assert d["params_before"] == p["params_before"] and d["params_after"] == p["params_after"]
    _, own = own_entries(p)
    assert [c["tool"] for c in d["tool_calls"]] == [o["tool"] for o in own]
    assert [c["verdict"] for c in d["tool_calls"]] == [o["verdict"] for o in own]
    assert d["latency_s"] == p["latency_s"]

    (f,) = out["followed"]
    assert f["market"] == market and f["window_s"] == 600.0
    end_ms = p["ts"] * 1000 + 600_000
    fills = _q(
        db,
        "SELECT fill_id, post_position FROM fills WHERE market = ? AND seq > ? "
        "AND json_extract(payload, '$.ts') <= ? ORDER BY seq",
        market,
        seq,
        end_ms / 1000,
    )
    assert [x["fill_id"] for x in f["fills"]] == [r[0] for r in fills]
    assert fills, "the chosen decision is followed by fills"
    # Inventory: what the agent saw, and the exchange's post-fill position after the window.
    assert f["before"]["inventory"] == pytest.approx(p["context"]["risk"]["inventory"])
    assert f["after"]["inventory"] == pytest.approx(fills[-1][1] / QTY_SCALE)
    assert [x["inventory_after"] for x in f["fills"]] == [r[1] / QTY_SCALE for r in fills]
    # Marked PnL at the decision agrees with what the agent was told (rounded to 4 places).
    assert float(f["before"]["marked_pnl"]) == pytest.approx(
        p["context"]["risk"]["marked_pnl"], abs=1e-3
    )
    change = float(f["after"]["marked_pnl"]) - float(f["before"]["marked_pnl"])
    assert float(f["marked_pnl_change"]) == pytest.approx(change, abs=1e-4)
    assert ts_ms <= f["to_ts"] * 1000


def test_show_by_decision_id_renders_for_people(run_db: tuple[Path, str]) -> None:
    db, _ = run_db
    did, seq = _q(
        db, "SELECT decision_id, seq FROM decisions WHERE agent = 'market' ORDER BY seq LIMIT 1"
    )[0]
    res = runner.invoke(
        traces_app, ["show", did, "--db", str(db), "--after", "2m"], env={"COLUMNS": "160"}
    )
    assert res.exit_code == 0, res.output
    for text in (
        "Context the agent saw",
        "Rationale",
        "Tool calls",
        "Parameters",
        "What followed",
        f"seq {seq}",
        "marked PnL",
    ):
        assert text in res.output, text
    gov = _q(db, "SELECT seq FROM decisions WHERE agent = 'governance' LIMIT 1")
    if gov:
        res = runner.invoke(traces_app, ["show", str(gov[0][0]), "--db", str(db), "--json"])
        assert res.exit_code == 0 and json.loads(res.output)["followed"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show", "nope-1"], "no decision"),
        (["show", "999999999"], "no decision"),
        (["--outcome", "maybe"], "--outcome"),
        (["--agent", "robot"], "--agent"),
        (["--since", "yesterday-ish"], "--since"),
        (["--run", "zzz"], "no run"),
        (["show", "1", "--after", "soon"], "--after"),
    ],
)
def test_errors_are_one_line(run_db: tuple[Path, str], args: list[str], needle: str) -> None:
    db, _ = run_db
    if args[0] == "show":
        args = [*args[:2], "--db", str(db), *args[2:]]
    else:
        args = ["--db", str(db), *args]
    res = runner.invoke(traces_app, args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and needle in res.output
    assert res.output.count("\n") == 1


def test_missing_db_is_one_line(tmp_path: Path) -> None:
    for args in (["--db", str(tmp_path / "x.db")], ["show", "1", "--db", str(tmp_path / "x.db")]):
        res = runner.invoke(traces_app, args)
        assert res.exit_code == 2 and res.output.startswith("error: "), res.output


def test_own_entries_strip_the_threads_earlier_decisions() -> None:
    call = {"name": "keep", "arguments": "{}", "id": "x"}
    old = [{"attempt": 1, "calls": [call], "error": None}]
    new = [
        {"attempt": 1, "calls": [call, call], "error": None},
        {"attempt": 2, "calls": [call], "error": None},
    ]
    outcomes = [{"tool": "old"}, {"tool": "a"}, {"tool": "b"}, {"tool": "c"}]
    payload = {"responses": old + new, "outcomes": outcomes, "attempts": 2, "phase": "decision"}
    resp, out = own_entries(payload)
    assert resp == new and [o["tool"] for o in out] == ["a", "b", "c"]
    # An approval adds its own outcome; an abstain (error) none.
    approval = dict(payload, phase="approval", outcomes=[*outcomes, {"tool": "approve_change"}])
    assert [o["tool"] for o in own_entries(approval)[1]] == ["a", "b", "c", "approve_change"]
    abstain = {
        "responses": [*old, {"calls": [], "error": "timeout"}],
        "outcomes": outcomes[:1],
        "attempts": 1,
    }
    assert own_entries(abstain)[1] == []
