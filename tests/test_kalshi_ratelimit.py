"""Token buckets: budgets, refill, cancels first."""

from __future__ import annotations

import asyncio

import pytest

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


def test_bucket_capacities_follow_the_docs() -> None:
    # Basic write buckets hold one second of budget; writes above Basic two; reads two
    # seconds for Basic and Advanced, one above (Rate Limits and Tiers)
    limiters = {
        n: RateLimiter(Budget.tier(n)) for n in ("basic", "advanced", "premier", "prestige")
    }
    caps = {n: (lim.read.capacity, lim.write.capacity) for n, lim in limiters.items()}
    assert caps == {
        "basic": (400, 100),
        "advanced": (600, 600),
        "premier": (1000, 2000),
        "prestige": (10000, 16000),
    }


def test_max_batch_fits_the_write_bucket_per_tier() -> None:
    basic = RateLimiter(Budget.tier("basic"))  # 100 tokens, 20 kept for cancels
    assert basic.max_batch("write", 10) == 8
    assert basic.max_batch("cancel", 2) == 50
    premier = RateLimiter(Budget.tier("premier"))  # 2,000 tokens, 400 kept for cancels
    assert premier.max_batch("write", 10) == 160
    assert premier.max_batch("cancel", 2) == 1000
    with pytest.raises(ValueError, match="exceeds"):
        RateLimiter(Budget(write_rate=5)).max_batch("write", 10)


async def test_a_cost_above_capacity_is_refused_not_sent() -> None:
    c = FakeClock()
    b = TokenBucket(100, 100, c)
    with pytest.raises(ValueError, match="split it"):
        b.try_take(250)
    assert b.tokens == 100  # nothing taken
    lim = RateLimiter(Budget.tier("basic"))
    with pytest.raises(ValueError):
        await lim.acquire("write", 250)  # a 25-order batch on Basic would be a 429 every time


def test_budget_from_account_limits() -> None:
    data = {
        "usage_tier": "premier",
        "read": {"refill_rate": 1000, "bucket_capacity": 1000},
        "write": {"refill_rate": 1000, "bucket_capacity": 2000},
    }
    b = Budget.from_limits(data)
    assert b == Budget(1000, 1000, 1.0, 2.0) == Budget.tier("premier")
    with pytest.raises(ValueError, match="'write'"):
        Budget.from_limits({"read": data["read"]})
    with pytest.raises(ValueError, match="positive"):
        Budget.from_limits({**data, "read": {"refill_rate": 0, "bucket_capacity": 5}})
    lim = RateLimiter(Budget.tier("basic"))
    lim.write.tokens = 30
    lim.set_budget(b)
    assert lim.write.capacity == 2000 and lim.cancel_reserve == 400
    assert 30 <= lim.write.tokens < 40  # tokens carry over (plus a moment's refill)


async def test_single_writes_to_a_shard_draw_from_that_shards_bucket() -> None:
    """rate_limits: "Sharded exchanges have per-shard Write budgets" — a single order write
    naming exchange_index >= 1 bills that shard's bucket (full tier budget each); shard 0,
    auto-routed writes and batches bill the unscoped one."""
    c = FakeClock()
    lim = RateLimiter(Budget(write_rate=100, write_burst_s=1.0), cancel_reserve=0, clock=c)
    for _ in range(10):  # shard 0's (unscoped) bucket: 100 tokens, now empty
        await lim.acquire("write", 10, shard=0)
    assert lim.write.tokens == 0
    for _ in range(10):  # shard 2 has its own 100, untouched by shard 0's spending
        await lim.acquire("write", 10, shard=2)
    await lim.acquire("cancel", 2, shard=3)
    assert lim.waited_s == 0.0
    assert lim.write_bucket(2).tokens == 0 and lim.write_bucket(3).tokens == 98
    assert lim.write_bucket(None) is lim.write and lim.write_bucket(-1) is lim.write
    lim.throttled("write", 3)  # a 429 on shard 3 backs off shard 3 only
    assert lim.write_bucket(3).tokens == 0 and lim.write_bucket(2) is not lim.write_bucket(3)
    lim.set_budget(Budget(write_rate=200, write_burst_s=1.0))  # the account's tier, read later
    assert lim.write_bucket(2).capacity == 200 and lim.write_bucket(2).tokens == 0
