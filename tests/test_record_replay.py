"""A live feed recorded with `cfa record` replays through the same loop (KalshiFeedExchange)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kalshi_standin.fixtures import MARKETS, standin_thread, use_standin, write_test_pem
from typer.testing import CliRunner

from cfa.audit import AuditStore
from cfa.cli import app
from cfa.exchange.feed import KalshiFeedExchange
from cfa.risk.policy import Warmup, load_policy
from cfa.runtime.session import Session


def test_recorded_feed_replays_through_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pem = write_test_pem(tmp_path / "k.pem")
    out = tmp_path / "feed.ndjson"
    with standin_thread(churn_interval=0.002) as s:
        use_standin(monkeypatch, s, pem)
        r = CliRunner().invoke(
            app, ["record", "-m", MARKETS[0], "--duration", "1s", "--out", str(out)]
        )
        assert r.exit_code == 0, r.output
    asyncio.run(_replay(out, tmp_path / "replay.db"))


async def _replay(feed: Path, db: Path) -> None:
    ex = KalshiFeedExchange(feed)
    markets = await ex.get_markets()
    assert [m.ticker for m in markets] == [MARKETS[0]]
    store = AuditStore.open(db)
    policy = load_policy("default").model_copy(update={"warmup": Warmup(min_samples=1, max_s=0.2)})
    session = Session(ex, markets, policy, store, store.start_run({"exchange": "feed"}))
    rows = await session.run(govern=False)
    store.close()
    assert session.events > 10 and rows[0].events == session.events
    assert session.leftover_orders == 0
