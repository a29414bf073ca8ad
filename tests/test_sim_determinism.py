"""Simulator determinism: same seed and same calls give identical events and fills."""

from __future__ import annotations

import contextlib

from cfa.core.types import BookDelta, BookSnapshot, Fill, OrderRequest, Side, Trade
from cfa.exchange.base import Event, OrderNotFound, OrderRejected
from cfa.exchange.sim import SimExchange

SCENARIOS = ["informed-flow", "close-approach"]


async def scripted_run(seed: int, n_events: int = 12_000) -> tuple[list[Event], list[Fill]]:
    """Stream two markets while a simple quoter joins the touch every 40 events."""
    ex = SimExchange.from_scenarios(SCENARIOS, seed=seed, duration=3600)
    events: list[Event] = []
    best: dict[str, tuple[int, int]] = {}
    n = 0
    async for ev in ex.stream(ex.tickers):
        events.append(ev)
        n += 1
        if isinstance(ev, BookSnapshot | BookDelta):
            m = ex.market(ev.ticker)
            b, a = m.best_bid_price(), m.best_ask_price()
            if b is not None and a is not None:
                best[ev.ticker] = (b, a)
        if n % 40 == 0:
            for t, (b, a) in best.items():
                await ex.cancel_all(t)
                for side, price in ((Side.BID, b), (Side.ASK, a)):
                    with contextlib.suppress(OrderRejected):
                        await ex.place_order(OrderRequest(t, f"{t}-{n}-{side}", side, price, 500))
        if n % 1000 == 0:
            # an occasional taking order and an amend of something that may be gone
            t = ex.tickers[0]
            if t in best:
                await ex.place_order(
                    OrderRequest(t, f"take-{n}", Side.BID, best[t][1], 300, post_only=False)
                )
            with contextlib.suppress(OrderNotFound, OrderRejected):
                await ex.amend_order("sim-o00000003", best[t][0], 400)
        if n >= n_events:
            break
    return events, await ex.get_fills()


async def test_same_seed_same_events_and_fills() -> None:
    ev1, fills1 = await scripted_run(seed=42)
    ev2, fills2 = await scripted_run(seed=42)
    assert len(ev1) == len(ev2)
    assert ev1 == ev2
    assert fills1 == fills2
    assert fills1, "the scripted quoter should trade"
    assert any(isinstance(e, Trade) for e in ev1)
    assert {e.ticker for e in ev1 if isinstance(e, BookDelta)} == set(
        SimExchange.from_scenarios(SCENARIOS).tickers
    )


async def test_different_seed_different_world() -> None:
    ev1, fills1 = await scripted_run(seed=1, n_events=3000)
    ev2, fills2 = await scripted_run(seed=2, n_events=3000)
    assert ev1 != ev2
    assert fills1 != fills2


async def test_world_does_not_depend_on_who_listens() -> None:
    """Background events are the same whether or not anyone streams a market."""
    a = SimExchange.from_scenarios(SCENARIOS, seed=9, duration=120)
    b = SimExchange.from_scenarios(SCENARIOS, seed=9, duration=120)
    t = a.tickers[1]
    only_t = [e async for e in a.stream([t])]
    both = [e async for e in b.stream(b.tickers)]
    assert only_t == [e for e in both if getattr(e, "ticker", None) == t]
