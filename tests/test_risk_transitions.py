"""Automatic trading-state transitions: close taper, loss limits, error breaker, dead feed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from cfa.audit import AuditStore
from cfa.core.types import TradingState
from cfa.exchange.base import Event, ExchangeError
from cfa.exchange.sim import SimExchange
from cfa.risk.policy import Policy, load_policy
from cfa.runtime.session import Session


def _policy(**changes: Any) -> Policy:
    base = load_policy("default").model_dump()
    for path, value in changes.items():
        d = base
        *head, last = path.split("__")
        for k in head:
            d = d[k]
        d[last] = value
    return Policy.model_validate(base)


async def _session(
    tmp_path: Path, scenarios: list[str], seconds: float, policy: Policy, ex: Any = None
) -> Session:
    ex = ex or SimExchange.from_scenarios(scenarios, seed=2, duration=seconds)
    await ex.start()
    store = AuditStore.open(tmp_path / "r.db")
    s = Session(ex, await ex.get_markets(), policy, store, store.start_run({}))
    await s.run()
    store.close()
    return s


def _states(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as c:
        return [
            (m, st, d)
            for m, st, d in c.execute(
                "select market, state, json_extract(detail, '$.source') from risk_events"
                " where kind = 'trading_state' order by seq"
            )
        ]


async def test_close_taper_reduce_only_then_halted(tmp_path: Path) -> None:
    # close-approach closes 45 minutes in; taper at 15 and 2 minutes before close.
    s = await _session(tmp_path, ["close-approach"], 3000.0, load_policy("default"))
    got = [(st, src) for _, st, src in _states(tmp_path / "r.db")]
    assert got[:2] == [("REDUCE_ONLY", "close_taper"), ("HALTED", "close_taper")]
    assert s.leftover_orders == 0


async def test_market_loss_limit_halts_the_market(tmp_path: Path) -> None:
    s = await _session(tmp_path, ["informed-flow", "calm"], 1800.0, _policy(loss__market_loss=0.05))
    halted = [(m, src) for m, st, src in _states(tmp_path / "r.db") if st == "HALTED"]
    assert halted and all(src == "breaker:market_loss" for _, src in halted)
    for m, _ in halted:
        assert s.states.market_state(m) is TradingState.HALTED
    with sqlite3.connect(tmp_path / "r.db") as c:
        reasons = [
            r
            for (r,) in c.execute(
                "select json_extract(detail, '$.reason') from risk_events"
                " where kind = 'trading_state' and state = 'HALTED'"
            )
        ]
    assert reasons and all("below -0.05" in r for r in reasons)


async def test_drawdown_halts_everything(tmp_path: Path) -> None:
    s = await _session(
        tmp_path,
        ["informed-flow"],
        1800.0,
        _policy(loss__max_drawdown=0.05, loss__market_loss=1000.0),
    )
    assert s.states.global_state is TradingState.HALTED
    assert ("", "HALTED", "breaker:drawdown") in _states(tmp_path / "r.db")


class _FailingPlaces(SimExchange):
    async def place_order(self, request: Any) -> Any:
        raise ExchangeError("server error", code="internal")


async def test_error_rate_breaker_halts_the_market(tmp_path: Path) -> None:
    ex = _FailingPlaces.from_scenarios(["calm"], seed=2, duration=600.0)
    s = await _session(tmp_path, [], 600.0, _policy(breakers__max_errors_per_min=3), ex=ex)
    (ticker,) = s.loops
    assert s.states.market_state(ticker) is TradingState.HALTED
    assert (ticker, "HALTED", "breaker:error_rate") in _states(tmp_path / "r.db")


class _WallClock:
    def now(self) -> float:
        return time.time()


class _StallingFeed:
    """The simulator's events, with the feed going silent for a while, on a wall clock."""

    def __init__(self, inner: SimExchange, stall_after: int, stall_s: float) -> None:
        self.inner = inner
        self.clock = _WallClock()
        self.stall_after = stall_after
        self.stall_s = stall_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def stream(self, tickers: Sequence[str]) -> AsyncIterator[Event]:
        n = 0
        async for ev in self.inner.stream(tickers):
            n += 1
            if n == self.stall_after:
                await asyncio.sleep(self.stall_s)
            yield ev


async def test_dead_feed_cancels_until_data_flows_again(tmp_path: Path) -> None:
    inner = SimExchange.from_scenarios(["calm"], seed=2, duration=300.0)
    feed = _StallingFeed(inner, stall_after=8000, stall_s=1.5)
    s = await _session(
        tmp_path, [], 300.0, _policy(feed__stale_after_s=0.5, warmup__max_s=5.0), ex=feed
    )
    got = _states(tmp_path / "r.db")
    assert ("", "HALTED", "feed_watchdog") in got and ("", "ACTIVE", "feed_watchdog") in got
    assert s.states.global_state is TradingState.ACTIVE
