"""Token buckets: budgets, refill, cancels first."""

from __future__ import annotations

import asyncio

from cfa.exchange.kalshi.ratelimit import Budget, RateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_bucket_refills_at_rate_up_to_capacity() -> None:
    c = FakeClock()
    b = TokenBucket(100, 100, c)
    assert b.try_take(60) == 0.0
    assert b.try_take(60) > 0  # 40 left
    c.t = 0.2  # +20
    assert b.try_take(60) == 0.0
    c.t = 100.0
    b._refill()
    assert b.tokens == 100


def test_tiers() -> None:
    assert Budget.tier("basic").read_rate == 200 and Budget.tier("basic").write_rate == 100
    assert Budget.tier("Premier").write_rate == 1000


async def test_cancels_go_first_when_tokens_are_short() -> None:
    lim = RateLimiter(Budget(read_rate=1000, write_rate=200, write_burst_s=0.1), cancel_reserve=6)
    order: list[str] = []
    # capacity 20 tokens: one create (10) leaves 10; the next create needs 10 + 6 reserve
    await lim.acquire("write", 10)

    async def create() -> None:
        await lim.acquire("write", 10)
        order.append("create")

    async def cancel() -> None:
        await lim.acquire("cancel", 2)
        order.append("cancel")

    await asyncio.gather(create(), cancel(), cancel())
    assert order[:2] == ["cancel", "cancel"] and order[-1] == "create"
