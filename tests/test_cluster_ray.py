"""Many markets over a real local Ray cluster (2 CPUs, started once for the module), one SQLite
audit store: grouping, a whole run, a halt reaching every actor, an actor killed mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_backends import rows as _rows
from typer.testing import CliRunner

from cfa.audit import AuditStore, verify
from cfa.cli import app
from cfa.core.types import OrderRequest, Side
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import load_policy
from cfa.runtime import cluster as cl

ray = pytest.importorskip("ray")
runner = CliRunner()

SCENARIOS = ["calm", "regime-shift", "event-ladder", "informed-flow", "event-exclusive", "thin"]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    try:
        yield
    finally:
        ray.shutdown()


# -- grouping --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.sampled_from(SCENARIOS), min_size=1, max_size=14),
    k=st.integers(min_value=1, max_value=6),
)
def test_groups_never_split_an_event_and_hold_every_market_once(names: list[str], k: int) -> None:
    markets, entries = cl.sim_markets(names, DEFAULT_START_TS)
    groups = cl.group_units(cl.units_of(markets, entries), k)
    assert 1 <= len(groups) <= k
    placed = [t for g in groups for u in g for t in u.tickers]
    assert sorted(placed) == sorted(m.ticker for m in markets)  # every market exactly once
    event_of = {m.ticker: m.event_ticker for m in markets}
    home: dict[str, int] = {}
    for i, g in enumerate(groups):
        for u in g:
            for t in u.tickers:
                assert home.setdefault(event_of[t], i) == i  # an event lives in one group
    # every scenario entry goes to the group of its markets, once
    got = sorted(e for g in groups for u in g for e in u.entries)
    assert got == list(range(len(names)))
    loads = [sum(u.size for u in g) for g in groups]
    biggest = max(u.size for g in groups for u in g)
    assert max(loads) - min(loads) <= biggest  # largest-first greedy: within one unit


def test_a_market_streams_the_same_events_alone_and_in_a_group() -> None:
    names = ["calm", "event-ladder", "calm", "informed-flow"]

    async def events(only: set[int] | None, keep: set[str]) -> list[str]:
        ex = SimExchange.from_scenarios(names, seed=5, duration=90, only=only)
        return [repr(ev) async for ev in ex.stream(ex.tickers) if ev.ticker in keep]

    for only in ({2}, {1}, {0, 3}):
        part = SimExchange.from_scenarios(names, seed=5, duration=90, only=only)
        keep = set(part.tickers)
        alone = asyncio.run(events(only, keep))
        whole = asyncio.run(events(None, keep))
        assert alone and alone == whole, only
    with pytest.raises(ValueError, match="entry 9"):
        SimExchange.from_scenarios(names, only={9})


# -- a whole run through the CLI --------------------------------------------------------------


def test_eight_markets_over_two_actors_write_one_verified_store(tmp_path: Path) -> None:
    db = tmp_path / "cluster.db"
    args = ["run", "-n", "8", "--duration", "4m", "--seed", "3", "--agent-interval", "30s"]
    res = runner.invoke(app, [*args, "--executor", "ray", "--db", str(db), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "over 2 Ray actors" in res.output
    (start,) = _rows(db, "select run_id, payload from runs where kind = 'start'")
    run_id, config = start[0], json.loads(start[1])
    assert config["executor"] == "ray" and len(config["actors"]) == 2
    tickers = [m["ticker"] for m in config["markets"]]
    assert len(tickers) == 8
    assert sorted(t for a in config["actors"] for t in a["markets"]) == sorted(tickers)
    # limits over all of a session's markets are split: the actors' add up to the policy's
    for key, total in (("max_gross_exposure", 1000.0), ("daily_loss", 100.0)):
        assert sum(a["limits"][key] for a in config["actors"]) == pytest.approx(total)
        assert config["policy"]["portfolio" if key.startswith("max_g") else "loss"][key] == total
    (end,) = _rows(db, "select payload from runs where kind = 'end'")
    summary = json.loads(end[0])
    assert [m["ticker"] for m in summary["markets"]] == tickers
    assert {a["status"] for a in summary["actors"]} == {"ok"} and not summary["lost_actors"]
    assert summary["events"] == sum(a["events"] for a in summary["actors"])
    # every market has rows, all under the one run id
    seen = {m for (m,) in _rows(db, "select distinct market from market_events")}
    assert seen == set(tickers)
    assert {r for (r,) in _rows(db, "select distinct run_id from market_events")} == {run_id}
    assert _rows(db, "select count(*) from orders where action = 'place'")[0][0] > 0
    # client order ids carry each market's number in the whole run: never shared by two actors
    number = {t: i for i, t in enumerate(tickers)}
    for market, coid in _rows(
        db, "select market, client_order_id from orders where action='place'"
    ):
        assert coid.startswith(f"cfa-{run_id[:8]}-{number[market]}-"), (market, coid)
    beats = {s for (s,) in _rows(db, "select session_id from cfa_heartbeat")}
    assert beats == {f"{run_id}/actor-0", f"{run_id}/actor-1"}
    assert verify(db).ok
    v = runner.invoke(app, ["audit", "verify", "--db", str(db)])
    assert v.exit_code == 0 and "ANCHORS OK" in v.output, v.output
    t = runner.invoke(app, ["traces", "--db", str(db), "--run", run_id])
    assert t.exit_code == 0, t.output
    assert _rows(db, "select count(*) from decisions")[0][0] > 0
    # same seed in one process: the same events per market (60 s of warm-up: no orders yet)
    local_db, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    short = ["run", "-n", "8", "--duration", "60s", "--seed", "3", "--quiet", "--no-anchors"]
    assert runner.invoke(app, [*short, "--db", str(local_db)]).exit_code == 0
    assert runner.invoke(app, [*short, "--db", str(ray_db), "--executor", "ray"]).exit_code == 0
    per_market = [
        {m["ticker"]: m["events"] for m in json.loads(p)["markets"]}
        for d in (local_db, ray_db)
        for (p,) in _rows(d, "select payload from runs where kind = 'end'")
    ]
    assert per_market[0] == per_market[1]


def test_local_run_does_not_import_ray(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cfa.cli import app\n"
        f"r = CliRunner().invoke(app, ['run', '-n', '1', '--duration', '30s', '--quiet',"
        f" '--db', {str(tmp_path / 'l.db')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('ray' in sys.modules, 'cfa.runtime.cluster' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_missing_ray_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    res = runner.invoke(
        app, ["run", "--executor", "ray", "--duration", "30s", "--db", str(tmp_path / "x.db")]
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        "error: the ray executor needs Ray: pip install 'cfa[ray]'"
    )
    bad = runner.invoke(app, ["run", "--actors", "2", "--db", str(tmp_path / "y.db")])
    assert bad.exit_code == 2 and "--executor ray" in bad.output


# -- governance and crashes on a running cluster ------------------------------------------------


def _start(
    db: str, names: list[str], duration: float, speed: float
) -> tuple[cl.ClusterRun, AuditStore, str]:
    store = AuditStore.open(db)
    markets, entries = cl.sim_markets(names, DEFAULT_START_TS)
    spec = cl.SimSpec(tuple(names), 11, DEFAULT_START_TS, duration, speed)
    run = cl.ClusterRun(
        store,
        str(db),
        load_policy("default"),
        {"exchange": "sim", "scenarios": names, "seed": 11},
        spec,
        markets,
        entries=entries,
        actors=2,
        start_ts=DEFAULT_START_TS,
        duration_s=duration,
    )
    run.start()
    return run, store, db


def _until(what: Callable[[], Any], timeout: float, run: cl.ClusterRun) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        run.poll(0.05)
    raise AssertionError(f"timed out after {timeout} s")


def test_a_halt_reaches_every_actor_within_a_second(store_target: str) -> None:
    """On both backends: one SQLite file, and one PostgreSQL schema for every actor."""
    names = ["calm", "thin", "calm", "thin"]  # two events: one per actor
    run, store, db = _start(store_target, names, duration=120, speed=1.0)
    try:
        run_id = run.run_id
        workers = {f"{run_id}/actor-0", f"{run_id}/actor-1"}
        _until(
            lambda: (
                workers
                <= {
                    s
                    for (s,) in _rows(
                        db, "select session_id from cfa_heartbeat where state='running'"
                    )
                }
            ),
            30,
            run,
        )
        halt = runner.invoke(
            app, ["govern", "halt", "--all", "--reason", "kill switch", "--db", str(db)]
        )
        assert halt.exit_code == 0, halt.output

        def results(action: str) -> list[dict[str, Any]]:
            rows = _rows(
                db,
                "select payload from governance_actions where action = ? order by seq",
                action,
            )
            return [p for (raw,) in rows if (p := json.loads(raw))["status"] != "requested"]

        applied = _until(lambda: len(results("halt")) >= 2 and results("halt"), 10, run)
        assert sorted(p["worker"] for p in applied) == ["actor-0", "actor-1"]
        assert {p["status"] for p in applied} == {"applied"}
        assert len({p["request_seq"] for p in applied}) == 1
        for p in applied:  # request row written → applied by each actor, wall time
            assert p["applied_wall"] - p["requested_wall"] < 1.0, p
        # a market's request: one answer, from the actor that holds it
        ticker = run.actors[1].tickers[0]
        freeze = runner.invoke(
            app, ["govern", "freeze", ticker, "--reason", "print", "--db", str(db)]
        )
        assert freeze.exit_code == 0, freeze.output
        (answer,) = _until(lambda: results("freeze"), 10, run)
        assert answer["worker"] == "actor-1" and answer["status"] == "applied"
        time.sleep(0.6)  # the other actor polled since: still one answer
        assert len(results("freeze")) == 1
        states = _rows(db, "select state from risk_events where kind = 'trading_state'")
        assert ("HALTED",) in states
    finally:
        run.stop()
        run.wait()
        run.end()
        store.close()
    assert verify(db).ok


def test_a_killed_actor_leaves_the_other_running_and_is_recorded(tmp_path: Path) -> None:
    names = ["calm", "regime-shift", "calm", "regime-shift"]
    run, store, db = _start(str(tmp_path / "live.db"), names, duration=360, speed=30.0)
    try:
        victim, survivor = run.actors
        placed = "select count(*) from orders where action = 'place' and market = ?"
        _until(lambda: _rows(db, placed, victim.tickers[0])[0][0] > 0, 40, run)
        pid = ray.get(victim.handle.pid.remote())
        os.kill(pid, signal.SIGKILL)
        run.wait()
    finally:
        summary = run.end()
        store.close()
    assert victim.lost and victim.result is None
    assert survivor.result is not None and not survivor.lost
    assert survivor.result["clock_end"] == pytest.approx(DEFAULT_START_TS + 360)
    (lost,) = summary["lost_actors"]
    assert lost["actor"] == victim.worker and lost["markets"] == victim.tickers
    ((raw,),) = _rows(db, "select detail from risk_events where kind = 'actor_lost'")
    detail = json.loads(raw)
    assert detail["actor"] == victim.worker and detail["markets"] == victim.tickers
    assert detail["orders"] == "gone with the actor's embedded exchange"
    assert {o["market"] for o in detail["resting_orders"]} <= set(victim.tickers)
    assert detail["resting_orders"], "quoting markets had orders resting when killed"
    by_ticker = {m["ticker"]: m for m in summary["markets"]}
    assert all(by_ticker[t]["state"] == "lost" for t in victim.tickers)
    assert all(by_ticker[t]["state"] == "STOPPED" for t in survivor.tickers)
    assert verify(db).ok


def test_the_driver_cancels_only_the_lost_actors_orders_on_a_venue_that_outlives_it() -> None:
    ex = SimExchange.from_scenarios(["calm", "thin"], seed=2, duration=60)
    calm, thin = ex.tickers

    async def scenario() -> tuple[list[str], list[str]]:
        await ex.start()
        ex.run_until(DEFAULT_START_TS + 5)
        placed = {}
        for ticker, coid in (
            (calm, "cfa-20261203-1-1"),  # market 1 of the run: the lost actor's
            (calm, "cfa-20261203-10-1"),  # market 10: another actor's, same prefix digits
            (thin, "cfa-20261203-1-2"),  # a market the lost actor did not hold
            (calm, "manual-1"),  # not cfa's
        ):
            req = OrderRequest(ticker, coid, Side.BID, 1000, 100)  # 10 cents, 1 contract
            placed[coid] = (await ex.place_order(req)).order_id
        cancelled = await cl.cancel_orphans(lambda: ex, [calm], ("cfa-20261203-1-",))
        left = [o.client_order_id for o in await ex.get_orders(None, resting_only=True)]
        return [placed["cfa-20261203-1-1"]], cancelled + sorted(left)

    want, got = asyncio.run(scenario())
    assert got == [*want, "cfa-20261203-1-2", "cfa-20261203-10-1", "manual-1"]


def test_a_cluster_run_on_postgresql_verifies_reads_and_replays(
    pg_schema: str, tmp_path: Path
) -> None:
    """The issue's bar: a Ray run of many simulated markets writes one PostgreSQL trail that
    `cfa audit verify`, `cfa traces` and `cfa replay` read (the replay reproduces every order
    action, each actor's session on its own)."""
    from store_backends import schema_url

    db = schema_url(pg_schema)
    args = ["run", "-n", "6", "-s", "calm", "-s", "thin", "-s", "event-ladder", "--seed", "5"]
    res = runner.invoke(
        app, [*args, "--duration", "3m", "--executor", "ray", "--db", db, "--quiet", "--no-anchors"]
    )
    assert res.exit_code == 0, res.output
    ((run_id, raw),) = _rows(db, "select run_id, payload from runs where kind = 'start'")
    config = json.loads(raw)
    assert len(config["actors"]) == 2
    assert _rows(db, "select count(*) from orders where action = 'place'")[0][0] > 0
    v = runner.invoke(app, ["audit", "verify", "--db", db])
    assert v.exit_code == 0 and "OK" in v.output, v.output
    t = runner.invoke(app, ["traces", "--db", db, "--run", run_id])
    assert t.exit_code == 0, t.output
    r = runner.invoke(app, ["replay", run_id, "--db", db])
    assert r.exit_code == 0 and "every order action reproduced exactly" in r.output, r.output
    out = tmp_path / "report.html"
    rep = runner.invoke(app, ["report", run_id, "--db", db, "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    html = out.read_text(encoding="utf-8")
    assert run_id in html and '<span class="ok">OK</span>' in html  # its chain check
