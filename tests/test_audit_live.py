"""Audit durability at live speed: a session fed 2 events/s commits each order row within 0.5 s
of wall time (read from a second SQLite connection while the run goes on), beats its heartbeat
meanwhile and marks it stopped at the end.

Shared helpers (the slow exchange double, a fast-warming policy) are used by the other
``test_audit_*`` session tests too.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from cfa.audit import AuditStore, verify
from cfa.audit.heartbeat import session_status
from cfa.core.types import Order, OrderRequest
from cfa.exchange.base import Event
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import Policy, load_policy
from cfa.runtime.session import Session


class PacedExchange:
    """The simulator behind the Exchange interface, its stream throttled to ``rate`` events per
    wall second (a live feed) once ``fast_until`` simulated seconds have passed (the warm-up runs
    at full speed), with the wall time of every order placement."""

    def __init__(self, sim: SimExchange, rate: float | None, fast_until: float = 0.0) -> None:
        self.sim = sim
        self.clock = sim.clock
        self.rate = rate
        self.fast_until = DEFAULT_START_TS + fast_until
        self.placed_at: list[float] = []
        """``time.monotonic()`` when each ``place_order`` returned."""
        self.paced_from: float | None = None
        """``time.monotonic()`` of the first paced event."""
        self.paced = 0
        """Events emitted at ``rate``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sim, name)

    async def stream(self, tickers: Sequence[str]) -> AsyncGenerator[Event, None]:
        async for ev in self.sim.stream(tickers):
            if self.rate is not None and ev.ts >= self.fast_until:
                if self.paced_from is None:
                    self.paced_from = time.monotonic()
                self.paced += 1
                await asyncio.sleep(1.0 / self.rate)
            yield ev

    async def place_order(self, request: OrderRequest) -> Order:
        order = await self.sim.place_order(request)
        self.placed_at.append(time.monotonic())
        return order


def quick_policy() -> Policy:
    """The default policy, but quoting after 1 s of (simulated) warm-up."""
    pol = load_policy("default")
    return pol.model_copy(update={"warmup": pol.warmup.model_copy(update={"max_s": 1.0})})


async def start_session(
    db: Path, rate: float | None, *, seconds: float = 120.0, **open_kw: Any
) -> tuple[Session, PacedExchange, AuditStore]:
    sim = SimExchange.from_scenarios(["calm"], seed=5, start_ts=DEFAULT_START_TS, duration=seconds)
    ex = PacedExchange(sim, rate, fast_until=0.98)  # quoting starts at 1.0 s, paced
    await ex.start()
    markets = await ex.get_markets()
    store = AuditStore.open(db, **open_kw)
    run_id = store.start_run({"test": "live"}, ts_ms=round(DEFAULT_START_TS * 1000))
    return Session(ex, markets, quick_policy(), store, run_id), ex, store  # type: ignore[arg-type]


class OrderWatcher(threading.Thread):
    """Polls a second SQLite connection every 5 ms: when did the n-th placement become
    readable?"""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.seen_at: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.db.exists():
            time.sleep(0.005)
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1.0)
        try:
            while not self.stop.is_set():
                try:
                    n = conn.execute(
                        "SELECT count(*) FROM orders WHERE action = 'place'"
                    ).fetchone()[0]
                except sqlite3.Error:
                    n = len(self.seen_at)
                now = time.monotonic()
                while len(self.seen_at) < n:
                    self.seen_at.append(now)
                time.sleep(0.005)
        finally:
            conn.close()


async def test_orders_are_committed_within_half_a_second_at_2_events_per_s(
    tmp_path: Path,
) -> None:
    db = tmp_path / "live.db"
    session, ex, store = await start_session(db, rate=2.0)
    watcher = OrderWatcher(db)
    watcher.start()
    statuses: list[tuple[bool, str]] = []

    async def probe() -> None:
        await asyncio.sleep(1.5)
        statuses.append(session_status(db))

    asyncio.get_running_loop().call_later(2.2, session.stop.set)
    task = asyncio.create_task(probe())
    t0 = time.monotonic()
    await session.run()
    await task
    wall = time.monotonic() - t0
    watcher.stop.set()
    watcher.join()
    store.end_run(session.run_id, {})
    store.close()
    assert ex.paced <= 2 * wall + 2, "the double emits 2 events/s"
    assert ex.placed_at, "the session placed orders"
    # Placements recorded during the run (the shutdown's own flush is not what is measured).
    during = [t for t in ex.placed_at if t < t0 + 2.1]
    assert during
    lags = [seen - placed for placed, seen in zip(during, watcher.seen_at, strict=False)]
    assert len(lags) == len(during), (during, watcher.seen_at)
    assert max(lags) < 0.5, lags
    print(f"flush latency at 2 events/s: max {max(lags) * 1000:.0f} ms over {len(lags)} orders")
    assert statuses and statuses[0][0] is True, statuses
    assert session.run_id in statuses[0][1]
    alive, detail = session_status(db)
    assert alive is False and "stopped" in detail, detail
    assert verify(db).ok


async def test_max_speed_run_flushes_by_wall_time_too(tmp_path: Path) -> None:
    # No pacing: the stream rarely waits, so the hot path's clock check must do the flushing.
    db = tmp_path / "fast.db"
    session, _ex, store = await start_session(db, rate=None, seconds=600.0, batch_rows=10**6)
    flushes: list[float] = []
    real_flush = store.flush

    def counting_flush() -> int:
        flushes.append(time.monotonic())
        return real_flush()

    store.flush = counting_flush  # type: ignore[method-assign]
    t0 = time.monotonic()
    await session.run()
    wall = time.monotonic() - t0
    store.end_run(session.run_id, {})
    store.close()
    gaps = [b - a for a, b in zip([t0, *flushes], flushes, strict=False)]
    assert session.events > 1000
    assert max(gaps) < 0.25 + 0.15, (max(gaps), wall)
    assert verify(db).ok
