"""`cfa run --exchange kalshi` trades the stand-in through REST and WebSocket with the same loop."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest
from kalshi_standin.fixtures import (
    MARKETS,
    make_world,
    standin_thread,
    use_standin,
    write_test_pem,
)
from typer.testing import CliRunner

from cfa.cli import app
from cfa.runtime.replay import replay_exact


def test_cfa_run_on_the_kalshi_standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pem = write_test_pem(tmp_path / "k.pem")
    policy = tmp_path / "fast.yaml"
    text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
    policy.write_text(
        re.sub(r"min_samples: \d+", "min_samples: 1", re.sub(r"max_s: \d+", "max_s: 0.5", text))
    )
    db = tmp_path / "live.db"
    with standin_thread(churn_interval=0.002) as s:
        use_standin(monkeypatch, s, pem)
        r = CliRunner().invoke(
            app,
            [
                "run",
                "--exchange",
                "kalshi",
                "-m",
                MARKETS[0],
                "--duration",
                "3s",
                "--policy",
                str(policy),
                "--db",
                str(db),
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
        assert "Run summary" in r.output and "left resting" not in r.output
        assert all(o.status != "resting" for o in s.world.orders.values()), "no orphan order"
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from orders where action = 'place'").fetchone()[0] > 0
        assert (
            c.execute(
                "select json_extract(payload, '$.exchange') from runs where kind='start'"
            ).fetchone()[0]
            == "kalshi"
        )
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert "PRIVATE KEY" not in dump


def test_cfa_run_is_ready_within_seconds_from_rest_history(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One market with two hours of REST history goes READY on its first book, with σ and k
    seeded (``source="warmup"``, the history named); one without history stays on the cold
    path and goes READY only when ``warmup.max_s`` (3 s here) runs out. Default σ warm-up
    otherwise: 12 long returns, 175 s of live book."""
    pem = write_test_pem(tmp_path / "k.pem")
    policy = tmp_path / "warm.yaml"
    text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
    policy.write_text(re.sub(r"max_s: \d+", "max_s: 3", text))
    db = tmp_path / "warm.db"
    world = make_world()
    world.add_history(MARKETS[0], minutes=120, sigma=0.004, trades_per_min=8.0)
    with standin_thread(world=world, churn_interval=0.002) as s:
        use_standin(monkeypatch, s, pem)
        args = ["run", "--exchange", "kalshi", "-m", MARKETS[0], "-m", MARKETS[1]]
        args += ["--duration", "5s", "--policy", str(policy), "--db", str(db), "--quiet"]
        r = CliRunner().invoke(app, [*args, "--no-agents"])
        assert r.exit_code == 0, r.output
        assert all(o.status != "resting" for o in s.world.orders.values()), "no orphan order"
    with sqlite3.connect(db) as c:
        (start_ms,) = c.execute("select ts_ms from runs where kind = 'start'").fetchone()
        ready = {
            m: (ts - start_ms, json.loads(d)["reason"])
            for m, ts, d in c.execute(
                "select market, ts_ms, detail from risk_events "
                "where kind = 'loop_state' and code = 'ready'"
            )
        }
        warm = {
            m: (code, json.loads(d))
            for m, code, d in c.execute(
                "select market, code, detail from risk_events where kind = 'warm_start'"
            )
        }
        changes = c.execute(
            "select market, param, source, reason from param_changes where source = 'warmup'"
        ).fetchall()
        placed = dict(
            c.execute("select market, count(*) from orders where action = 'place' group by market")
        )
    hot_ms, hot_reason = ready[MARKETS[0]]
    cold_ms, cold_reason = ready[MARKETS[1]]
    print(f"time to READY: with history {hot_ms} ms, without {cold_ms} ms")
    # from the run's start row: connecting and subscribing included (slower on a loaded box);
    # the cold market waits max_s (3 s) from the same first book
    assert hot_ms < 3000 and cold_ms - hot_ms >= 2500, ready
    assert re.search(r"REST history: 1(19|20) two-sided 1-min candles", hot_reason), hot_reason
    assert cold_ms >= 3000 and "timed out" in cold_reason
    code, detail = warm[MARKETS[0]]
    assert code == "seeded" and detail["used"] and detail["requests"] == 2
    assert detail["candles"] >= 119 and detail["trades"] > 500 and detail["trades_complete"]
    assert detail["sigma"]["used"] and detail["k"]["used"]
    code, detail = warm[MARKETS[1]]
    assert code == "cold" and not detail["used"] and detail["candles"] == 0
    assert "no candle" in detail["sigma"]["why"]
    hot = {p: reason for m, p, _, reason in changes if m == MARKETS[0]}
    assert set(hot) == {"sigma", "k"}, changes
    assert "REST history" in hot["sigma"] and "REST trades" in hot["k"]
    assert [p for m, p, _, _ in changes if m == MARKETS[1]] == ["sigma"]
    assert placed.get(MARKETS[0], 0) > 0, "the seeded market quoted"
    # the audit holds the history the warm start knew: an exact replay seeds the same way
    with sqlite3.connect(db) as c:
        (run_id,) = c.execute("select run_id from runs where kind = 'start'").fetchone()
    report = asyncio.run(replay_exact(db, run_id))
    assert report.ok, report.mismatches[:3]
    assert report.per_market[MARKETS[0]][0] > 0
