"""Offline replay: exact re-runs reproduce every order action; decision diffs; counterfactuals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfa.agents.reasoners import heuristic
from cfa.agents.reasoners.heuristic import HeuristicReasoner
from cfa.agents.reasoners.scripted import ScriptedReasoner
from cfa.cli import app
from cfa.runtime.replay import replay_counterfactual, replay_decisions, replay_exact

runner = CliRunner()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("replay") / "run.db"
    r = runner.invoke(app, ["run", "--duration", "15m", "--seed", "4", "--db", str(db), "--quiet"])
    assert r.exit_code == 0, r.output
    run_id = r.output.split("run ")[-1].split(" ")[0]
    return db, run_id


async def test_exact_replay_reproduces_every_order_action(recorded: tuple[Path, str]) -> None:
    db, run_id = recorded
    report = await replay_exact(db, run_id)
    assert report.ok, report.mismatches
    assert report.compared > 100
    assert all(a == b and a > 0 for a, b in report.per_market.values())


def test_exact_replay_cli_and_unknown_run(recorded: tuple[Path, str]) -> None:
    db, run_id = recorded
    r = runner.invoke(app, ["replay", run_id[:12], "--db", str(db), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["ok"] is True
    r = runner.invoke(app, ["replay", "nope", "--db", str(db)])
    assert r.exit_code != 0 and "no run 'nope'" in r.output


async def test_decision_diff_against_a_changed_heuristic(
    recorded: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, run_id = recorded
    same = await replay_decisions(db, run_id, HeuristicReasoner())
    assert same and all(d.same for d in same)
    monkeypatch.setattr(heuristic, "STEP", 1.1)
    changed = await replay_decisions(db, run_id, HeuristicReasoner())
    differ = [d for d in changed if not d.same]
    assert differ, "a smaller step changes the set_* values"
    assert all(d.recorded[0]["name"] == d.replayed[0]["name"] for d in differ)


async def test_counterfactual_with_a_do_nothing_reasoner(
    recorded: tuple[Path, str], tmp_path: Path
) -> None:
    db, run_id = recorded
    script = tmp_path / "keep.jsonl"
    script.write_text("")  # exhausted from the start: every decision is an audited abstain
    result = await replay_counterfactual(db, run_id, ScriptedReasoner(script), tmp_path / "cf.db")
    assert {r["ticker"] for r in result["original"]} == {
        r["ticker"] for r in result["counterfactual"]
    }
    assert result["original"] != result["counterfactual"]
