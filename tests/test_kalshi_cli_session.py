"""The market loop on Kalshi (stand-in) end to end, and the ``markets`` / ``record`` commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer
from kalshi_standin.fixtures import (
    KEY_ID,
    MARKETS,
    adapter,
    running_standin,
    standin_thread,
    write_test_pem,
)
from typer.testing import CliRunner

from cfa.audit import AuditStore
from cfa.cli.kalshi_cmds import markets, record
from cfa.core.types import Side
from cfa.exchange.kalshi import frames
from cfa.risk.policy import Warmup, load_policy
from cfa.runtime.session import Session


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("markets")(markets)
    app.command("record")(record)
    return app


def _env(monkeypatch: pytest.MonkeyPatch, base: str, ws: str) -> None:
    for k in ("KEY_ID", "PRIVATE_KEY_PATH", "ENV"):
        monkeypatch.delenv(f"CFA_KALSHI_{k}", raising=False)
    monkeypatch.setenv("CFA_KALSHI_BASE_URL", base)
    monkeypatch.setenv("CFA_KALSHI_WS_URL", ws)


async def test_session_runs_live_on_the_standin_and_leaves_nothing(tmp_path: Path) -> None:
    async with running_standin(churn_interval=0.002) as s:
        ex = adapter(s)
        await ex.start()
        infos = await ex.get_markets(list(MARKETS))
        store = AuditStore.open(tmp_path / "k.db")
        run_id = store.start_run({"exchange": "kalshi-standin"})
        pol = load_policy("default")
        pol = pol.model_copy(update={"warmup": Warmup(min_samples=1, max_s=0.3)})
        session = Session(ex, infos, pol, store, run_id)

        async def takers() -> None:
            # background takers hit both sides every so often, so our quotes can fill
            for i in range(40):
                await asyncio.sleep(0.05)
                for t in MARKETS:
                    m = s.world.markets[t]
                    if i % 2 and m.yes:
                        s.world.taker(t, Side.ASK, max(m.yes) - 300, 100)
                    elif m.no:
                        s.world.taker(t, Side.BID, 10_000 - max(m.no) + 300, 100)
            session.stop.set()

        task = asyncio.create_task(takers())
        rows = await asyncio.wait_for(session.run(govern=False), 20)
        await task
        store.end_run(run_id, {"markets": [r.as_dict() for r in rows]})
        store.close()
        assert session.events > 100
        assert session.leftover_orders == 0
        assert all(o.status != "resting" for o in s.world.orders.values()), "no orphan order"
        placed = len(s.world.orders)
        print(
            f"events={session.events} orders={placed} fills={len(s.world.fills)} "
            f"stats={ex.rest.requests} requests"
        )
        assert placed > 0, "the loop quoted on the stand-in"
        assert len({o.client_order_id for o in s.world.orders.values()}) == placed
        await ex.close()


def test_cli_markets_lists_and_sorts(monkeypatch: pytest.MonkeyPatch) -> None:
    with standin_thread(churn_interval=None) as s:
        _env(monkeypatch, s.base_url, s.ws_url)
        r = CliRunner().invoke(_app(), ["markets", "--json", "--sort", "close"])
        assert r.exit_code == 0, r.output
        tickers = [m["ticker"] for m in json.loads(r.output)]
        assert sorted(tickers) == sorted(MARKETS)
        r = CliRunner().invoke(_app(), ["markets", "--series", "KXDECI"])
        assert r.exit_code == 0 and "KXDECI" in r.output and "KXSTANDIN" not in r.output
        r = CliRunner().invoke(_app(), ["markets", "--sort", "nope"])
        assert r.exit_code != 0


def test_cli_record_without_credentials_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, "http://127.0.0.1:9/trade-api/v2", "ws://127.0.0.1:9/trade-api/ws/v2")
    r = CliRunner().invoke(_app(), ["record", "--market", "X", "--duration", "1s"])
    assert r.exit_code != 0
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1
    assert "CFA_KALSHI_KEY_ID" in lines[0] and "CFA_KALSHI_PRIVATE_KEY_PATH" in lines[0]


def test_cli_record_writes_replayable_frames(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pem = write_test_pem(tmp_path / "k.pem")
    out = tmp_path / "feed.ndjson"
    with standin_thread(churn_interval=0.002) as s:
        _env(monkeypatch, s.base_url, s.ws_url)
        monkeypatch.setenv("CFA_KALSHI_KEY_ID", KEY_ID)
        monkeypatch.setenv("CFA_KALSHI_PRIVATE_KEY_PATH", str(pem))
        r = CliRunner().invoke(
            _app(), ["record", "-m", MARKETS[0], "--duration", "0.6s", "--out", str(out)]
        )
        assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "cfa-kalshi-recording" and header["markets"][0]["ticker"] == MARKETS[0]
    recs = [frames.parse_frame(json.loads(x)["frame"], recv_ts=1.0) for x in lines[1:]]
    kinds = [type(r).__name__ for r in recs if r is not None]
    # Channels are not ordered among themselves (a ticker frame may come first); the book's
    # own stream starts with its snapshot.
    books = [k for k in kinds if k in ("BookSnapshot", "BookDelta")]
    assert books[0] == "BookSnapshot" and books.count("BookDelta") > 10
