"""Chunked event delivery (``event_chunks``, ``SimExchange.stream_chunks``) and the loop's
synchronous fast path (``MarketLoop.feed``) change nothing but the cost: the same seed gives
the same events, orders and fills as one awaited event at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim_run import trade_log

from cfa.exchange.base import event_chunks
from cfa.exchange.sim import SimExchange


class _OneByOne:  # forwards everything but the class-level stream_chunks
    """The simulator seen through :meth:`stream` only (no ``stream_chunks``): the session then
    gets one event per chunk, the way it gets a live venue's events."""

    def __init__(self, inner: SimExchange) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # stream_chunks too: event_chunks must not use it


async def _run(tmp: Path, name: str, chunked: bool) -> tuple[Any, ...]:
    ex = SimExchange.from_scenarios(["calm", "informed-flow", "thin"], seed=3, duration=900.0)
    await ex.start()
    return await trade_log(ex if chunked else _OneByOne(ex), tmp / f"{name}.db")


async def test_chunks_reproduce_one_event_at_a_time(tmp_path: Path) -> None:
    events, orders, fills = await _run(tmp_path, "chunks", chunked=True)
    events1, orders1, fills1 = await _run(tmp_path, "single", chunked=False)
    assert events == events1 > 10_000
    assert orders and fills, "the run must trade for the comparison to mean something"
    assert orders == orders1
    assert fills == fills1


async def test_sim_stream_is_its_chunks_flattened() -> None:
    a = SimExchange.from_scenarios(["calm", "thin"], seed=5, duration=120.0)
    b = SimExchange.from_scenarios(["calm", "thin"], seed=5, duration=120.0)
    await a.start()
    await b.start()
    flat = [ev async for ev in a.stream(a.tickers)]
    chunked = [ev async for chunk in event_chunks(b, b.tickers) for ev in chunk]
    assert flat == chunked and len(flat) > 1_000
