"""`cfa run --exchange kalshi --paper`: the full loop on the stand-in's live market data with
fills from the venue emulator, and not one request to Kalshi's order or portfolio endpoints."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from kalshi_standin.fixtures import KEY_ID, MARKETS, make_world, standin_thread, write_test_pem
from typer.testing import CliRunner

from cfa.cli import app


def _policy(tmp_path: Path) -> Path:
    policy = tmp_path / "fast.yaml"
    text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
    policy.write_text(
        re.sub(r"min_samples: \d+", "min_samples: 1", re.sub(r"max_s: \d+", "max_s: 0.5", text))
    )
    return policy


@pytest.mark.parametrize("keyed", [True, False], ids=["websocket", "rest-poll"])
def test_cfa_run_paper_on_the_standin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, keyed: bool
) -> None:
    db = tmp_path / "paper.db"
    for var in ("CFA_KALSHI_KEY_ID", "CFA_KALSHI_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(var, raising=False)
    world = make_world()
    world.add_history(MARKETS[0], minutes=60, sigma=0.004, trades_per_min=8.0)
    with standin_thread(world=world, churn_interval=0.002) as s:
        monkeypatch.setenv("CFA_KALSHI_BASE_URL", s.base_url)
        monkeypatch.setenv("CFA_KALSHI_WS_URL", s.ws_url)
        if keyed:
            pem = write_test_pem(tmp_path / "k.pem")
            monkeypatch.setenv("CFA_KALSHI_KEY_ID", KEY_ID)
            monkeypatch.setenv("CFA_KALSHI_PRIVATE_KEY_PATH", str(pem))
        r = CliRunner().invoke(
            app,
            [
                "run",
                "--exchange",
                "kalshi",
                "--paper",
                "--fill-model",
                "touch",
                "-m",
                MARKETS[0],
                "--duration",
                "2s",
                "--policy",
                str(_policy(tmp_path)),
                "--db",
                str(db),
                "--quiet",
                "--no-anchors",
                "--poll-interval",
                "0.2s",
            ],
        )
        assert r.exit_code == 0, r.output
        assert "Run summary" in r.output, r.output
        assert "no order was sent to Kalshi" in r.output, r.output
        assert ("polled over public REST" in r.output) is not keyed
        private = [q for q in s.requests if q[1].startswith("/portfolio")]
        assert private == [], f"paper trading called {private[:5]}"
        assert not s.world.orders, "an order reached the stand-in"
        assert (s.ws_connections > 0) is keyed
    with sqlite3.connect(db) as c:
        cfg = json.loads(c.execute("select payload from runs where kind='start'").fetchone()[0])
        assert cfg["exchange"] == "kalshi" and cfg["paper"] is True
        assert cfg["fill_model"] == "touch"
        assert cfg["paper_feed"] == ("websocket" if keyed else "rest")
        placed = c.execute("select count(*) from orders where action = 'place'").fetchone()[0]
        assert placed > 0, "the loop quoted on the paper venue"
        warm = c.execute("select code from risk_events where kind = 'warm_start'").fetchall()
        assert warm == [("seeded",)], "paper runs warm-start from public REST history too"
    out = tmp_path / "r.html"
    rep = CliRunner().invoke(app, ["report", "latest", "--db", str(db), "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    assert "kalshi (paper trading)" in out.read_text(encoding="utf-8")


def test_paper_needs_kalshi_and_a_known_fill_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CFA_KALSHI_KEY_ID", "CFA_KALSHI_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(var, raising=False)
    r = CliRunner().invoke(app, ["run", "--exchange", "kalshi", "-m", "X", "--quiet"])
    assert r.exit_code != 0 and "Kalshi credentials missing" in r.output
    assert "add --paper" in r.output, "live trading without a key points to paper trading"
    r = CliRunner().invoke(app, ["run", "--paper", "--no-agents", "--quiet"])
    assert r.exit_code != 0 and "--paper needs --exchange kalshi" in r.output
    r = CliRunner().invoke(
        app, ["run", "--exchange", "kalshi", "--paper", "--fill-model", "best", "-m", "X"]
    )
    assert r.exit_code != 0 and "--fill-model: use one of through, touch, queue" in r.output
