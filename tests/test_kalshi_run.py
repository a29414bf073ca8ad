"""`cfa run --exchange kalshi` trades the stand-in through REST and WebSocket with the same loop."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from kalshi_standin import test_key
from kalshi_standin.fixtures import KEY_ID, MARKETS, standin_thread
from typer.testing import CliRunner

from cfa.cli import app


def test_cfa_run_on_the_kalshi_standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        test_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    policy = tmp_path / "fast.yaml"
    text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
    policy.write_text(
        re.sub(r"min_samples: \d+", "min_samples: 1", re.sub(r"max_s: \d+", "max_s: 0.5", text))
    )
    db = tmp_path / "live.db"
    with standin_thread(churn_interval=0.002) as s:
        monkeypatch.setenv("CFA_KALSHI_BASE_URL", s.base_url)
        monkeypatch.setenv("CFA_KALSHI_WS_URL", s.ws_url)
        monkeypatch.setenv("CFA_KALSHI_KEY_ID", KEY_ID)
        monkeypatch.setenv("CFA_KALSHI_PRIVATE_KEY_PATH", str(pem))
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
