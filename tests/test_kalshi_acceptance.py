"""Issue 12's acceptance run: ``cfa run --exchange kalshi`` on a shard-0 and a shard-2 market at
once, against the stand-in serving books in the post-flip ``use_yes_price`` form under the
Basic tier's token buckets, READY within seconds from REST history, through a scripted series
of faults (lost create answers, 429s, a sequence gap, a terminal error on the fill channel, a
dropped WebSocket, a market pause and reactivation) with takers trading into our quotes — and
at the end no order left resting, no client order id placed twice, every fill of ours in the
audit store."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kalshi_standin import StandIn
from kalshi_standin.fixtures import (
    MARKETS,
    call_in,
    make_world,
    standin_thread,
    use_standin,
    write_test_pem,
)
from typer.testing import CliRunner

from cfa.cli import app
from cfa.core.types import QTY_SCALE, Side

T0 = MARKETS[0]
T2 = "KXBTC15M-26DEC311700-00"
"""A crypto market: on exchange shard 2 since 24 Aug 2026."""


def _script(s: StandIn) -> list[tuple[float, str, Callable[[], Any]]]:
    w = s.world

    def take(ticker: str) -> Callable[[], Any]:
        def hit() -> None:  # sell into the best bid, buy from the best ask: ours included
            for side, price in ((Side.ASK, 100), (Side.BID, 9_900)):
                call_in(s, w.taker, ticker, side, price, 30 * QTY_SCALE)

        return hit

    def fault(path: str, kind: str, times: int = 1) -> None:
        call_in(s, s.inject, "POST", path, kind, times=times)

    return [
        (1.0, "taker on both markets", lambda: (take(T0)(), take(T2)())),
        (1.3, "create lands, answer 500", lambda: fault(r"/orders$", "500_after")),
        (1.5, "two 429s", lambda: fault(r"/orders", "429", times=2)),
        (1.8, "sequence gap on shard 0", lambda: call_in(s, s.gap, T0)),
        (2.1, "terminal error on fill", lambda: call_in(s, s.channel_error, "fill", 10)),
        (2.4, "taker while fills resubscribe", take(T2)),
        (2.8, "dropped WebSocket", lambda: call_in(s, s.drop_websockets)),
        (3.4, "taker after reconnect", lambda: (take(T0)(), take(T2)())),
        (3.8, "pause shard-2 market", lambda: call_in(s, w.deactivate, T2)),
        (4.6, "reactivate it (cancels resting)", lambda: call_in(s, w.activate, T2)),
        (5.2, "taker after reactivation", lambda: (take(T0)(), take(T2)())),
    ]


@pytest.mark.slow
def test_two_shards_every_fault_no_orphan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pem = write_test_pem(tmp_path / "k.pem")
    policy = tmp_path / "p.yaml"
    text = (Path(__file__).parents[1] / "policies" / "default.yaml").read_text()
    policy.write_text(re.sub(r"max_s: \d+", "max_s: 30", text))
    world = make_world()
    world.add_market(T2, exchange_index=2, yes_band=(4000, 4800), no_band=(4300, 5100))
    world.fund(2, Decimal(5_000))
    for t in (T0, T2):
        world.add_history(t, minutes=120, sigma=0.004, trades_per_min=8.0)
    db = tmp_path / "accept.db"
    fired: list[str] = []
    with standin_thread(world=world, churn_interval=0.003, book_form="flipped", tier="basic") as s:
        use_standin(monkeypatch, s, pem)
        t0 = time.monotonic()

        def play() -> None:
            for at, what, act in _script(s):
                time.sleep(max(0.0, at - (time.monotonic() - t0)))
                act()
                fired.append(what)

        player = threading.Thread(target=play, daemon=True)
        player.start()
        args = ["run", "--exchange", "kalshi", "-m", T0, "-m", T2, "--duration", "7s"]
        r = CliRunner().invoke(
            app, [*args, "--policy", str(policy), "--db", str(db), "--quiet", "--no-agents"]
        )
        player.join(10)
        assert r.exit_code == 0, r.output
        assert len(fired) == len(_script(s)), fired
        orders = list(s.world.orders.values())
        resting = [o.order_id for o in orders if o.status == "resting"]
        assert resting == [], f"orphan orders: {resting}"
        coids = [o.client_order_id for o in orders]
        assert len(coids) == len(set(coids)) == s.world.creates, "an order was placed twice"
        shards = {s.world.markets[o.ticker].exchange_index for o in orders}
        assert shards == {0, 2}, "both shards traded"
        ours = {o.order_id for o in orders}
        venue_fills = {f["trade_id"] for f in s.world.fills if f["order_id"] in ours}
        assert s.faults.fired, "the faults fired"
    assert venue_fills, "takers traded with our quotes"
    with sqlite3.connect(db) as c:
        (start_ms,) = c.execute("select ts_ms from runs where kind = 'start'").fetchone()
        ready = {
            m: ts - start_ms
            for m, ts in c.execute(
                "select market, ts_ms from risk_events where kind = 'loop_state' and code = 'ready'"
            )
        }
        warm = dict(c.execute("select market, code from risk_events where kind = 'warm_start'"))
        audited = {f for (f,) in c.execute("select fill_id from fills")}
        status = [
            code
            for (code,) in c.execute(
                "select code from risk_events where kind = 'market_status' and market = ? "
                "order by ts_ms",
                (T2,),
            )
        ]
    assert warm == {T0: "seeded", T2: "seeded"}
    assert set(ready) == {T0, T2} and max(ready.values()) < 3_000, ready
    assert venue_fills <= audited, f"fills missing from the audit: {venue_fills - audited}"
    assert status[:3] == ["paused", "reactivated", "reconciled"], status
    gaps = [r.getMessage() for r in caplog.records if "seq gap" in r.getMessage()]
    print(
        f"orders {len(orders)}, our fills {len(venue_fills)}, READY ms {ready}, "
        f"faults fired {len(s.faults.fired)}, seq gaps {len(gaps)}, T2 status {status}"
    )
    assert 1 <= len(gaps) <= 3, f"one lost delta, one resync, no storm: {gaps[:5]}"
