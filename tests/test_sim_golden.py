"""The simulator's event stream is pinned byte for byte: a digest of every event and fill.

Each case streams every market of one scenario (two markets, so the exchange's merge order
counts too) for ``DURATION`` simulated seconds while a scripted quoter joins the touch, crosses
it now and then and amends, so matching, our fills and the background flow all enter the
digest. The digests were recorded before the simulator was optimised (issue 13); a change to
event generation or matching that is meant to keep streams identical must keep them. A
deliberate change of the stream updates ``GOLDEN`` and says so in the commit (seeds change
meaning).
"""

from __future__ import annotations

import contextlib
import hashlib

import pytest

from cfa.core.types import BookDelta, BookSnapshot, OrderRequest, Side
from cfa.exchange.base import OrderNotFound, OrderRejected
from cfa.exchange.sim import SimExchange

DURATION = 240.0

GOLDEN: dict[tuple[str, int], tuple[str, int]] = {
    ("calm", 1): ("bd5c966845e0f8a2c2fc1d910967c6a5f0a355f13f1c812fa6d6e7b099cce97f", 28375),
    ("calm", 7): ("ee160ba96ed492964f655c7e9ccc1131834808a82a8d67ca4439f3ab96e43710", 40424),
    ("thin", 1): ("5b5d79cc5ee6bd6eb040f5bfcb9e4f269f4a580d7dfd8c1cd5e0f230cb3c642d", 3169),
    ("thin", 7): ("62eb0ea94712c89500e8dee3b55f0cd6d238c7409cdc582d6e109f7227c6203c", 3493),
    ("regime-shift", 1): (
        "ef83a70eb5965f766ecf3a16f58709412480e491b24acd424c8252aa2b655ebe",
        33119,
    ),
    ("regime-shift", 7): (
        "f621475fa830e653eac0c5f75039bfbd3f85722fe6ea24d3938b15605faee9e4",
        34137,
    ),
    ("informed-flow", 1): (
        "bce2e8023ffeb7ee7d21f52e2ea5d8bb644810b6793803ed0b4d818b7f31ddd3",
        46030,
    ),
    ("informed-flow", 7): (
        "eb9f29e91a8e22ebc9b426457f86a2e2bf17038cc4c6c1a211c30507605e9f69",
        44327,
    ),
    ("close-approach", 1): (
        "77830c25a715e1866cced80121b7b423fdedc3ba0f705d719a9784125cef795a",
        67123,
    ),
    ("close-approach", 7): (
        "1fd1743b40fe0ba88189ec7b73e06c4e459f382196040e777a356f363a4962e8",
        77549,
    ),
}


async def stream_digest(scenario: str, seed: int) -> tuple[str, int]:
    """sha256 over ``repr`` of every event, then every fill; and the number of events."""
    ex = SimExchange.from_scenarios([scenario, scenario], seed=seed, duration=DURATION)
    h = hashlib.sha256()
    best: dict[str, tuple[int, int]] = {}
    n = 0
    async for ev in ex.stream(ex.tickers):
        h.update(repr(ev).encode())
        n += 1
        if isinstance(ev, BookSnapshot | BookDelta):
            m = ex.market(ev.ticker)
            b, a = m.best_bid_price(), m.best_ask_price()
            if b is not None and a is not None:
                best[ev.ticker] = (b, a)
        if n % 50 == 0:
            for t, (b, a) in best.items():
                await ex.cancel_all(t)
                for side, price in ((Side.BID, b), (Side.ASK, a)):
                    with contextlib.suppress(OrderRejected):
                        await ex.place_order(OrderRequest(t, f"{t}-{n}-{side}", side, price, 500))
        if n % 700 == 0 and best:
            t = ex.tickers[n // 700 % len(ex.tickers)]
            if t in best:
                with contextlib.suppress(OrderRejected):
                    await ex.place_order(
                        OrderRequest(t, f"take-{n}", Side.BID, best[t][1], 300, post_only=False)
                    )
                with contextlib.suppress(OrderNotFound, OrderRejected):
                    await ex.amend_order(f"{t}-{n - 50}-{Side.BID}", best[t][0], 400)
    for f in await ex.get_fills():
        h.update(repr(f).encode())
    return h.hexdigest(), n


CASES = [
    (s, seed)
    for s in ("calm", "thin", "regime-shift", "informed-flow", "close-approach")
    for seed in (1, 7)
]


@pytest.mark.parametrize(("scenario", "seed"), CASES)
async def test_event_stream_is_unchanged(scenario: str, seed: int) -> None:
    digest, n = await stream_digest(scenario, seed)
    assert n > 100
    assert GOLDEN[(scenario, seed)] == (digest, n)


async def test_get_trades_gives_the_streamed_trades_newest_last() -> None:
    """The compact store of recent trades gives back the trades the stream carried, also once
    more than ``RECENT_TRADES`` have printed (the store is a ring)."""
    from cfa.core.types import Trade
    from cfa.exchange.sim.matching import RECENT_TRADES

    for duration in (60.0, 3600.0):
        ex = SimExchange.from_scenarios(["informed-flow"], seed=3, duration=duration)
        t = ex.tickers[0]
        seen = [ev async for ev in ex.stream([t]) if isinstance(ev, Trade)]
        assert seen
        for limit in (1, 5, 100, RECENT_TRADES, RECENT_TRADES + 50):
            assert await ex.get_trades(t, limit) == seen[-min(limit, RECENT_TRADES) :]
        assert await ex.get_trades(t, 0) == []
    assert len(seen) > 2 * RECENT_TRADES
