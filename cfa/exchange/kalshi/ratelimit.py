"""Client-side token buckets mirroring Kalshi's read and write budgets (reference §6).

Kalshi bills every request in tokens (getting_started/rate_limits: 10 by default; a V2 cancel 2
per order, batched or not; a V2 batch create 10 per order) against a **read** and a **write**
bucket refilled at the tier's per-second budget. Spending client-side first keeps cfa from ever
seeing the 429s. A batch is billed whole on arrival ("the whole batch must fit in the bucket at
once"): one that costs more than the bucket holds is a 429 every time, so batches are split
with :meth:`RateLimiter.max_batch` and :meth:`TokenBucket.try_take` refuses a cost above
capacity instead of letting it through.

Sharded exchanges have per-shard write budgets (rate_limits: "Sharded exchanges have per-shard
Write budgets"): a single order write naming ``exchange_index >= 1`` draws from that shard's own
write bucket, each with the full tier budget; shard 0, auto-routed writes and every batch bill
the unscoped bucket; reads are not shard-scoped. ``acquire(..., shard=)`` follows that.

Cancels come first: a cancel waits only for its own tokens, while any other write must leave
``cancel_reserve`` tokens in the write bucket and also waits while a cancel is queued. So when
tokens are short, pulling quotes is never starved by placing them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_COST = 10
"""Tokens per request unless listed below."""
CANCEL_COST = 2
"""Tokens per cancelled order (V2 single or batch cancel)."""
BATCH_CREATE_COST = DEFAULT_COST
"""Tokens per order of a V2 batch create ("submitting 25 orders costs 25 × 10 = 250")."""

TIERS: dict[str, tuple[int, int]] = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "expert": (600, 600),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prime": (4000, 4000),
    "prestige": (10000, 8000),
}
"""Per-second (read, write) token budgets per tier."""

Kind = Literal["read", "write", "cancel"]


class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; ``clock`` is monotonic seconds."""

    def __init__(
        self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self.tokens = float(capacity)
        self._t = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._t) * self.rate)
        self._t = now

    def try_take(self, cost: float, reserve: float = 0.0) -> float:
        """Take ``cost`` tokens if ``cost + reserve`` are there: return 0.0; else the seconds
        to wait before trying again (nothing taken). ``reserve`` is capped so that a cost the
        bucket can hold is always served eventually; a ``cost`` above ``capacity`` raises
        :class:`ValueError` (Kalshi would answer 429 however long the caller waited)."""
        if cost > self.capacity:
            raise ValueError(
                f"a request of {cost:g} tokens can never fit a bucket of {self.capacity:g} "
                "tokens (Kalshi answers 429 every time): split it"
            )
        self._refill()
        need = min(cost + reserve, self.capacity)
        if self.tokens >= need:
            self.tokens -= cost
            return 0.0
        return (need - self.tokens) / self.rate

    def drain(self) -> None:
        """Empty the bucket (after a 429: the server's view is emptier than ours)."""
        self._refill()
        self.tokens = 0.0


@dataclass(frozen=True, slots=True)
class Budget:
    """Tier budgets: tokens per second and bucket capacity in seconds of budget."""

    read_rate: float = 200.0
    write_rate: float = 100.0
    read_burst_s: float = 2.0
    write_burst_s: float = 1.0

    @classmethod
    def tier(cls, name: str) -> Budget:
        """Kalshi's published budget of a tier (``basic`` … ``prestige``)."""
        read, write = TIERS[name.lower()]
        low = name.lower() in ("basic", "advanced")
        return cls(read, write, 2.0 if low else 1.0, 1.0 if name.lower() == "basic" else 2.0)

    @classmethod
    def from_limits(cls, data: Mapping[str, Any]) -> Budget:
        """From a Get Account API Limits answer (``GET /account/limits``: ``read`` and
        ``write`` each ``{refill_rate, bucket_capacity}`` in tokens and tokens per second).
        Raises :class:`ValueError` naming the field that is missing or not positive."""
        rates: dict[str, tuple[float, float]] = {}
        for key in ("read", "write"):
            b = data.get(key)
            if not isinstance(b, Mapping):
                raise ValueError(f"account limits: no {key!r} bucket in {dict(data)!r}")
            try:
                rate, cap = float(b["refill_rate"]), float(b["bucket_capacity"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"account limits: bad {key!r} bucket {b!r}") from None
            if rate <= 0 or cap <= 0:
                raise ValueError(f"account limits: {key!r} bucket must be positive, got {b!r}")
            rates[key] = (rate, cap)
        (rr, rc), (wr, wc) = rates["read"], rates["write"]
        return cls(rr, wr, rc / rr, wc / wr)


class RateLimiter:
    """Read and write buckets with cancel priority. ``acquire`` awaits until tokens are spent."""

    def __init__(
        self,
        budget: Budget | None = None,
        *,
        cancel_reserve: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        b = budget or Budget()
        self.budget = b
        self._clock = clock
        self._reserve_given = cancel_reserve
        self.read = TokenBucket(b.read_rate, b.read_rate * b.read_burst_s, clock)
        self.write = TokenBucket(b.write_rate, b.write_rate * b.write_burst_s, clock)
        self.cancel_reserve = (
            cancel_reserve if cancel_reserve is not None else 0.2 * self.write.capacity
        )
        self._cancels_waiting = 0
        self._shard_write: dict[int, TokenBucket] = {}
        """Per-shard write buckets (shards >= 1), made on first use."""
        self.waited_s = 0.0
        """Total seconds callers spent waiting for tokens (a health figure)."""

    def set_budget(self, budget: Budget) -> None:
        """Adopt ``budget`` (the account's tier, read from Kalshi): new rates and capacities;
        the tokens held carry over, capped at the new capacities."""
        self.budget = budget
        for name, rate, burst in (
            ("read", budget.read_rate, budget.read_burst_s),
            ("write", budget.write_rate, budget.write_burst_s),
        ):
            old: TokenBucket = getattr(self, name)
            old._refill()
            new = TokenBucket(rate, rate * burst, self._clock)
            new.tokens = min(old.tokens, new.capacity)
            setattr(self, name, new)
        for shard, old_b in list(self._shard_write.items()):
            old_b._refill()
            nb = TokenBucket(self.write.rate, self.write.capacity, self._clock)
            nb.tokens = min(old_b.tokens, nb.capacity)
            self._shard_write[shard] = nb
        if self._reserve_given is None:
            self.cancel_reserve = 0.2 * self.write.capacity

    def max_batch(self, kind: Kind, item_cost: float) -> int:
        """Most items of ``item_cost`` tokens each that one batch of ``kind`` may hold: the
        write bucket's capacity (less the cancel reserve for non-cancel writes, so a full
        create batch never starves cancels), at least 1. Raises :class:`ValueError` when even
        one item exceeds the bucket."""
        bucket = self.read if kind == "read" else self.write
        if item_cost <= 0:
            raise ValueError(f"item_cost must be positive, got {item_cost!r}")
        if item_cost > bucket.capacity:
            raise ValueError(
                f"one item of {item_cost:g} tokens exceeds the {kind} bucket "
                f"({bucket.capacity:g} tokens)"
            )
        room = bucket.capacity - (self.cancel_reserve if kind == "write" else 0.0)
        return max(1, int(room // item_cost))

    def write_bucket(self, shard: int | None = None) -> TokenBucket:
        """The write bucket a single order write to ``shard`` draws from: that shard's own
        (created on first use, full tier budget) for ``shard >= 1``, else the unscoped one."""
        if shard is None or shard < 1:
            return self.write
        b = self._shard_write.get(shard)
        if b is None:
            b = TokenBucket(self.write.rate, self.write.capacity, self._clock)
            self._shard_write[shard] = b
        return b

    async def acquire(
        self, kind: Kind, cost: float = DEFAULT_COST, shard: int | None = None
    ) -> None:
        """Spend ``cost`` tokens of the bucket for ``kind`` (writes: of ``shard``'s bucket,
        see :meth:`write_bucket`; batches pass no shard); cancels are served first."""
        if kind == "read":
            await self._wait(lambda: self.read.try_take(cost))
            return
        bucket = self.write_bucket(shard)
        if kind == "cancel":
            self._cancels_waiting += 1
            try:
                await self._wait(lambda: bucket.try_take(cost))
            finally:
                self._cancels_waiting -= 1
            return

        def other() -> float:
            if self._cancels_waiting:
                return 0.005
            return bucket.try_take(cost, self.cancel_reserve)

        await self._wait(other)

    async def _wait(self, attempt: Callable[[], float]) -> None:
        while True:
            wait = attempt()
            if wait <= 0:
                return
            wait = min(max(wait, 0.001), 1.0)
            self.waited_s += wait
            await asyncio.sleep(wait)

    def throttled(self, kind: Kind, shard: int | None = None) -> None:
        """Kalshi answered 429: empty that bucket so callers back off."""
        (self.read if kind == "read" else self.write_bucket(shard)).drain()
