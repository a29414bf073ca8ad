"""Tickers show whole in every cfa table, however narrow the terminal; ``cfa markets --json``.

Each table is rendered 80 columns wide with a long Kalshi ticker; the test asserts the ticker
sits whole on one line of the output (rich would otherwise fold it over lines or cut it to
``KXNFLGAME-2…``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import typer
from kalshi_standin import StandIn, World, test_key
from kalshi_standin.fixtures import KEY_ID
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from cfa.agents.reasoners.scripted import ScriptedReasoner
from cfa.audit import AuditStore
from cfa.cli import app, govern
from cfa.cli.kalshi_cmds import markets
from cfa.cli.live import LiveView, live_table, summary_table
from cfa.cli.tables import add_ticker_column
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import load_policy
from cfa.runtime.runs import close_run, open_run
from cfa.runtime.session import MarketSummary, Session

LONG = "KXNFLGAME-26NOV27DENKC-KC"
OTHER = "KXCPIYOY-26DEC-T3.0"
SCENARIOS = Path(__file__).resolve().parents[1] / "cfa" / "exchange" / "scenarios"
runner = CliRunner()


def whole(text: str, ticker: str = LONG) -> bool:
    """``ticker`` appears, unbroken and on its own (not inside a longer id), on one line."""
    return re.search(rf"(?m)(?<![\w:.-]){re.escape(ticker)}(?![\w:.…-])", text) is not None


def render(renderable: Any, width: int = 80) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_ticker_column_keeps_its_ticker_whole_when_every_other_column_must_give() -> None:
    t = Table(title="crowded")
    add_ticker_column(t, "market", [LONG, "total"])
    for col in ("state", "fills", "volume", "fees $", "realised $", "marked $", "max |inv|"):
        t.add_column(col, justify="right")
    t.add_row(LONG, "ACTIVE: a long error text", "12", "1234", "1.23", "+12.34", "-5.67", "100")
    t.add_row("total", "", "12", "1234", "1.23", "+12.34", "-5.67", "")
    for width in (80, 60, 40):
        out = render(t, width)
        assert whole(out), out
        assert max(len(line) for line in out.splitlines()) <= width
    # Without the helper rich cuts it: the failure this guards against.
    plain = Table()
    for col in ("market", "state", "fills", "volume", "fees $", "realised $", "marked $"):
        plain.add_column(col)
    plain.add_row(LONG, "ACTIVE", "12", "1234", "1.23", "+12.34", "-5.67")
    assert not whole(render(plain, 60))


# -- a recorded simulator run on a market with a long ticker -------------------------------------


def _scenario(tmp: Path) -> Path:
    text = (SCENARIOS / "calm.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^name: .*$", "name: nfl", text)
    text = re.sub(r"(?m)^  series_ticker: .*$", "  series_ticker: KXNFLGAME", text)
    text = re.sub(r"(?m)^  event_ticker: .*$", '  event_ticker: "KXNFLGAME-26NOV27DENKC"', text)
    text = re.sub(r"(?m)^  ticker: .*$", f'  ticker: "{LONG}"', text)
    path = tmp / "nfl.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Session, list[Any]]:
    """A 10-minute run of the long-ticker market and a calm one; the market agent asks for a
    γ step big enough to need a person's approval, so ``cfa govern pending`` has a row."""
    tmp = tmp_path_factory.mktemp("tables")
    script = tmp / "script.jsonl"
    call = {"name": "set_gamma", "arguments": {"value": 0.14, "rationale": "wider"}}
    script.write_text(json.dumps({"calls": [call]}) + "\n", encoding="utf-8")
    db = tmp / "run.db"

    async def go() -> tuple[str, Session, list[Any]]:
        scenarios = [str(_scenario(tmp)), "calm"]
        ex = SimExchange.from_scenarios(
            scenarios, seed=7, start_ts=DEFAULT_START_TS, duration=600.0
        )
        store = AuditStore.open(db)
        pol = load_policy("default")
        config = {
            "exchange": "sim",
            "scenarios": scenarios,
            "seed": 7,
            "duration_s": 600.0,
            "policy": pol.model_dump(mode="json"),
        }
        session = await open_run(ex, store, pol, config)
        session.attach_agents(ScriptedReasoner(str(script)), interval_s=60.0)
        wall0 = time.perf_counter()
        rows = await session.run()
        await ex.close()
        close_run(session, store, rows, wall0)
        store.close()
        return session.run_id, session, rows

    run_id, session, rows = asyncio.run(go())
    assert {r.ticker for r in rows} == {LONG, OTHER}
    return db, run_id, session, rows


def test_run_live_table_and_summary_show_tickers_whole(
    sim_run: tuple[Path, str, Session, list[MarketSummary]],
) -> None:
    _, _, session, rows = sim_run
    for width in (80, 100, 160):
        view = LiveView(session, DEFAULT_START_TS, 600.0, width)
        out = render(view.render(), width)
        assert whole(out) and whole(out, OTHER), out
        assert max(len(line) for line in out.splitlines()) <= width, out
    narrow = render(live_table(session, wide=False, width=80))
    assert whole(narrow) and "mid" in narrow and "bid" in narrow and "ask" in narrow
    out = render(summary_table(rows))
    assert whole(out) and whole(out, OTHER) and "Run summary" in out, out


def test_cfa_run_summary_shows_tickers_whole_at_80_columns(tmp_path: Path) -> None:
    # The simulator's own tickers (up to KXINXU-26NOV27H1600-T6949.9999) used to come out as
    # "KXCPIYO…" in the run summary.
    db = tmp_path / "run.db"
    args = ["run", "--duration", "2m", "--seed", "3", "--db", str(db), "-n", "3", "--no-agents"]
    res = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    with sqlite3.connect(db) as c:
        tickers = [m for (m,) in c.execute("select distinct market from market_events")]
    assert len(tickers) == 3 and max(len(t) for t in tickers) > 25
    summary = res.output[res.output.index("Run summary") :]
    for t in tickers:
        assert whole(summary, t), res.output
    assert max(len(line) for line in res.output.splitlines() if "KX" in line) <= 80
    rows = [line for line in summary.splitlines() if "KX" in line or "total" in line]
    assert rows and not any("…" in line for line in rows), summary  # no figure cut either
    assert "mark $" in summary  # the marked PnL column is always kept


def test_traces_table_shows_tickers_whole(
    sim_run: tuple[Path, str, Session, list[MarketSummary]],
) -> None:
    db = sim_run[0]
    res = runner.invoke(app, ["traces", "--db", str(db), "--limit", "0"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert whole(res.output) and whole(res.output, OTHER), res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80
    # Narrow, it leaves out the columns `cfa traces show` has; wide, it shows them all.
    assert "reasoner/model" not in res.output and "rationale" in res.output
    res = runner.invoke(app, ["traces", "--db", str(db), "--limit", "0"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and whole(res.output), res.output
    assert all(h in res.output for h in ("agent", "reasoner/model", "tool", "rationale"))


def test_govern_status_and_pending_show_tickers_whole(
    sim_run: tuple[Path, str, Session, list[MarketSummary]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sim_run[0]
    res = runner.invoke(app, ["govern", "status", "--db", str(db)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert whole(res.output) and whole(res.output, OTHER), res.output
    # The run's approval requests expired when it ended; list them as if it were still going.
    with sqlite3.connect(db) as c:
        asked = [
            json.loads(p)
            for (p,) in c.execute(
                "select payload from governance_actions where action = 'approval_requested'"
            )
        ]
    assert {r["market"] for r in asked} == {LONG, OTHER}
    monkeypatch.setattr(govern, "pending_requests", lambda db, run_id: asked)
    res = runner.invoke(app, ["govern", "pending", "--db", str(db)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "waiting for approval" in res.output and whole(res.output), res.output
    for r in asked:  # the ids people copy into `cfa govern approve` show whole too
        assert whole(res.output, r["request_id"]), res.output


def test_replay_tables_show_tickers_whole(
    sim_run: tuple[Path, str, Session, list[MarketSummary]], tmp_path: Path
) -> None:
    db, run_id, _, _ = sim_run
    res = runner.invoke(app, ["replay", run_id, "--db", str(db)], env={"COLUMNS": "80"})
    assert "exact replay" in res.output and whole(res.output), res.output
    args = ["replay", run_id, "--db", str(db), "--mode", "counterfactual"]
    args += ["--reasoner", "heuristic", "--out-db", str(tmp_path / "cf.db")]
    res = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "counterfactual" in res.output and whole(res.output), res.output


# -- cfa markets against the Kalshi stand-in ----------------------------------------------------


@contextmanager
def _standin(world: World) -> Iterator[StandIn]:
    """The stand-in on ``world``, served from its own loop in a daemon thread."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        s = StandIn(test_key().public_key(), KEY_ID, world=world, churn_interval=None)
        loop.run_until_complete(s.start())
        box["standin"] = s
        ready.set()
        loop.run_forever()
        loop.run_until_complete(s.stop())
        loop.close()

    th = threading.Thread(target=main, daemon=True)
    th.start()
    assert ready.wait(10)
    try:
        yield box["standin"]
    finally:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        th.join(10)


@pytest.fixture
def kalshi(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World(seed=5)
    m = w.add_market(LONG, title="Denver at Kansas City: Kansas City wins", close_in=7200.0)
    m.exchange_index = 2  # a market on another matching-engine shard
    w.add_market("KXDECI-26DEC31-B40", structure="tapered_deci_cent", close_in=3600.0)
    with _standin(w) as s:
        for k in ("KEY_ID", "PRIVATE_KEY_PATH", "ENV"):
            monkeypatch.delenv(f"CFA_KALSHI_{k}", raising=False)
        monkeypatch.setenv("CFA_KALSHI_BASE_URL", s.base_url)
        monkeypatch.setenv("CFA_KALSHI_WS_URL", s.ws_url)
        yield w


def _markets_app() -> typer.Typer:
    a = typer.Typer()
    a.command("markets")(markets)
    a.command("noop")(lambda: None)  # two commands, so "markets" stays a subcommand
    return a


def test_markets_json_is_an_array_with_the_table_fields_and_the_grid(kalshi: World) -> None:
    res = runner.invoke(_markets_app(), ["markets", "--json", "--sort", "close"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert isinstance(rows, list) and [r["ticker"] for r in rows] == [
        "KXDECI-26DEC31-B40",
        LONG,
    ]
    by = {r["ticker"]: r for r in rows}
    nfl, deci = by[LONG], by["KXDECI-26DEC31-B40"]
    m = kalshi.markets[LONG]
    assert nfl["title"] == "Denver at Kansas City: Kansas City wins"
    assert nfl["event_ticker"] == "KXNFLGAME-26NOV27DENKC" and nfl["series_ticker"] == "KXNFLGAME"
    assert nfl["bid"] == "0.4700" and nfl["ask"] == "0.4900" and nfl["volume"] is not None
    assert nfl["status"] == m.status
    # Close time both ways: ISO-8601 UTC and epoch seconds, the same instant (to the second).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", nfl["close_time"])
    assert abs(nfl["close_ts"] - m.close_ts) < 1.0
    from datetime import datetime

    parsed = datetime.fromisoformat(nfl["close_time"].replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - nfl["close_ts"]) < 1.0
    assert nfl["price_level_structure"] == "linear_cent"
    assert nfl["price_ranges"] == [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]
    assert deci["price_level_structure"] == "tapered_deci_cent"
    assert [r["step"] for r in deci["price_ranges"]] == ["0.0010", "0.0100", "0.0010"]
    assert nfl["exchange_index"] == 2 and deci["exchange_index"] == 0
    # Every cell the table shows is in the JSON.
    res = runner.invoke(_markets_app(), ["markets", "--sort", "close"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    for field in ("bid", "ask"):
        assert nfl[field] in res.output


def test_markets_table_shows_tickers_whole_at_80_columns(kalshi: World) -> None:
    res = runner.invoke(_markets_app(), ["markets"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert whole(res.output) and whole(res.output, "KXDECI-26DEC31-B40"), res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80
